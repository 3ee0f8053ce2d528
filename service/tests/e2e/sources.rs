//! Lists that a second file must repeat (where one source cannot serve
//! both), checked against their first: a new fallback function, or a new
//! migration, cannot be forgotten in the place that must follow it.

use std::collections::BTreeSet;
use std::path::Path;

/// The names of the functions `CREATE OR REPLACE FUNCTION count.<name>` in
/// `sql`.
fn created_functions(sql: &str) -> BTreeSet<String> {
    sql.match_indices("CREATE OR REPLACE FUNCTION count.")
        .map(|(at, prefix)| {
            let rest = &sql[at + prefix.len()..];
            rest[..rest.find('(').expect("(")].to_owned()
        })
        .collect()
}

#[test]
fn the_extension_drops_every_fallback_function_it_replaces() {
    let fallback: BTreeSet<String> = count_service::db::store::SQL_FUNCTIONS
        .iter()
        .flat_map(|sql| created_functions(sql))
        .collect();
    assert!(fallback.contains("add_batch") && fallback.contains("rollup_due"));
    let bootstrap = include_str!("../../../extension/queries/bootstrap.sql");
    for name in &fallback {
        assert!(
            bootstrap.contains(&format!("DROP FUNCTION IF EXISTS count.{name}(")),
            "extension/queries/bootstrap.sql does not drop the fallback's count.{name}"
        );
    }
}

#[test]
fn the_extension_s_tests_apply_every_migration() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tests = include_str!("../../../extension/src/tests.rs");
    let mut migrations = 0;
    for entry in std::fs::read_dir(root.join("migrations")).expect("migrations/") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".sql") {
            migrations += 1;
            assert!(
                tests.contains(&format!("../../migrations/{name}")),
                "extension/src/tests.rs does not apply migrations/{name}"
            );
        }
    }
    assert!(migrations >= 2);
}
