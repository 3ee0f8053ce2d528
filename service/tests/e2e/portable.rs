//! The portable path's lint: the SQL a CockroachDB user gets (migrations/,
//! sql/ and the service's queries that run without the extension) keeps to
//! what CockroachDB supports from [`FLOOR`] on, and new migrations stay
//! safe without transactional DDL. Each rule names the construct, why it is
//! out, and where CockroachDB's documentation or issue tracker says so:
//! this table is the one list (docs/sql.md, "Portability", points here).
//!
//! No CockroachDB can run on the development machines, so this lint, the
//! e2e suite's SERIALIZABLE pass and `plpgsql_check` stand in for running
//! there.

use std::path::{Path, PathBuf};

use regex::Regex;

/// The oldest CockroachDB release the portable SQL is written for.
pub(crate) const FLOOR: &str = "v25.2";

/// One construct outside the subset.
struct Rule {
    /// What the construct is, in a failure message.
    name: &'static str,
    /// Matched, case-insensitively, against the SQL with comments and
    /// string literals blanked out.
    pattern: &'static str,
    /// Why it is out, and the evidence.
    why: &'static str,
}

/// Constructs the portable SQL must not use, with the evidence: `#n` is
/// https://github.com/cockroachdb/cockroach/issues/n, a page name is
/// https://www.cockroachlabs.com/docs/v25.2/<page> ("known-limitations"
/// lists the PL/pgSQL and routine limitations).
const RULES: &[Rule] = &[
    Rule {
        name: "a data-modifying WITH",
        pattern: r"\bAS\s*(NOT\s+)?(MATERIALIZED\s*)?\(\s*(INSERT|UPDATE|DELETE|UPSERT)\b",
        why: "refused in function bodies before v25.1 (#92961), untested there after, and a plan \
              calling a routine that writes may run as if read-only (#147568): use RETURNING … \
              INTO, a count and then the statement, or a set-returning function",
    },
    Rule {
        name: "PERFORM",
        pattern: r"\bPERFORM\b",
        why: "not in CockroachDB's PL/pgSQL (#117744, known-limitations): SELECT … INTO",
    },
    Rule {
        name: "FOUND",
        pattern: r"\bFOUND\b",
        why: "the FOUND variable is not supported (#122306, known-limitations): test what \
              SELECT … INTO or RETURNING … INTO assigned",
    },
    Rule {
        name: "GET DIAGNOSTICS",
        pattern: r"\bGET\s+(CURRENT\s+|STACKED\s+)?DIAGNOSTICS\b",
        why: "not in CockroachDB's PL/pgSQL (#117744, known-limitations)",
    },
    Rule {
        name: "EXECUTE or ASSERT in PL/pgSQL",
        pattern: r"(^|;|\bBEGIN|\bTHEN|\bELSE|\bLOOP|\bQUERY)\s*(EXECUTE|ASSERT)\b",
        why: "dynamic SQL and ASSERT are not in CockroachDB's PL/pgSQL (#117744, known-limitations)",
    },
    Rule {
        name: "a loop over a query, or FOREACH",
        pattern: r"\bFOR\s+\w+\s+IN\s+(SELECT|WITH|EXECUTE|INSERT|UPDATE|DELETE)\b|\bFOREACH\b",
        why: "not in CockroachDB's PL/pgSQL (#105246, known-limitations): one set-based statement",
    },
    Rule {
        name: "%TYPE or %ROWTYPE",
        pattern: r"%\s*(ROW)?TYPE\b",
        why: "not supported (#114676, known-limitations)",
    },
    Rule {
        name: "a named-argument call",
        pattern: r"\w\s*=>|[(,]\s*\w+\s*:=",
        why: "not supported for routines (#122264, known-limitations): pass arguments by position",
    },
    Rule {
        name: "a SET clause on a function",
        pattern: r"\bRETURNS\b[^$;]*\bSET\s+\w+\s*(=|TO)\s|\$\$[^$;]*\bSET\s+\w+\s*(=|TO)\s|\bALTER\s+FUNCTION\b[^;]*\bSET\b",
        why: "CREATE and ALTER FUNCTION take no SET in CockroachDB (create-function): a \
              PostgreSQL-only setting goes in a query the service runs only there \
              (service/queries/postgres_reads.sql)",
    },
    Rule {
        name: "isfinite",
        pattern: r"\bisfinite\s*\(",
        why: "not among CockroachDB's functions (functions-and-operators): compare with \
              'infinity' and '-infinity'",
    },
    Rule {
        name: "an advisory lock",
        pattern: r"\bpg_(try_)?advisory",
        why: "unsupported, some defined as no-ops that lock nothing (postgresql-compatibility, \
              \"Other unsupported features\"): take turns on a row lock or a lease row",
    },
    Rule {
        name: "LISTEN, NOTIFY or LOCK TABLE",
        pattern: r"\b(LISTEN|UNLISTEN|NOTIFY|pg_notify)\b|\bLOCK\s+(TABLE\b|count\.)",
        why: "not among CockroachDB's statements (sql-statements)",
    },
    Rule {
        name: "a temporary table",
        pattern: r"\bCREATE\s+(LOCAL\s+|GLOBAL\s+)?TEMP(ORARY)?\b|\bpg_temp\b|\bON\s+COMMIT\s+DROP\b",
        why: "not in routines (#121375, known-limitations), and off by default elsewhere \
              (temporary-tables)",
    },
    Rule {
        name: "a PostgreSQL system column",
        pattern: r"\b(ctid|xmin|xmax|cmin|cmax|tableoid)\b",
        why: "PostgreSQL's storage: CockroachDB tables have none of them",
    },
    Rule {
        name: "a PostgreSQL catalog, reg* cast or privilege function",
        pattern: r"\bpg_(catalog|class|proc|namespace|attribute|stat\w*|locks|database|extension|available_extensions|settings|index|inherits)\b|::\s*reg(class|proc|procedure|type|namespace|role)\b|\bto_reg\w+\s*\(|\bhas_\w+_privilege\s*\(|\binformation_schema\.routines\b",
        why: "CockroachDB's pg_catalog is an emulation, and its information_schema.routines is \
              empty (information-schema): ask by calling, or let the service choose by \
              version() (db/engine.rs)",
    },
];

/// The portable files: every migration, sql/ but pg_cron's schedule, and
/// the service's queries but those that only run on PostgreSQL.
fn portable_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for (dir, postgres_only) in [
        ("migrations", &[][..]),
        // pg_cron is a PostgreSQL extension: CockroachDB schedules jobs
        // its own way (docs/operations.md).
        ("sql", &["cron.sql"][..]),
        (
            "service/queries",
            // The extension's, the embedded cluster's and the PostgreSQL
            // variant's: the service runs them only where version() says
            // PostgreSQL (db/store.rs, db/cluster.rs).
            &POSTGRES_ONLY_QUERIES[..],
        ),
    ] {
        for entry in std::fs::read_dir(root.join(dir)).expect(dir) {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".sql") && !postgres_only.contains(&name.as_str()) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The service's queries that run only on PostgreSQL.
const POSTGRES_ONLY_QUERIES: [&str; 10] = [
    "create_database.sql",
    "create_extension.sql",
    "database_exists.sql",
    "extension_available.sql",
    "extension_installed.sql",
    "extension_version.sql",
    "postgres_reads.sql",
    "postgres_series_key.sql",
    "prepare_partitions.sql",
    "update_extension.sql",
];

/// `sql` with its comments and the insides of its string literals blanked
/// out (dollar-quoted bodies are kept: they are SQL too), so that rules
/// match code, not prose or messages.
fn code_of(sql: &str) -> String {
    let mut code = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        code.push('\n');
                        break;
                    }
                }
            }
            '\'' => {
                code.push('\'');
                while let Some(c) = chars.next() {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                            continue;
                        }
                        code.push('\'');
                        break;
                    }
                    code.push(if c == '\n' { '\n' } else { ' ' });
                }
            }
            _ => code.push(c),
        }
    }
    code
}

/// The rules' violations in `sql`, as `file:line: construct: why`.
fn violations(file: &str, sql: &str) -> Vec<String> {
    let code = code_of(sql);
    let mut found = Vec::new();
    for rule in RULES {
        let pattern = Regex::new(&format!("(?i){}", rule.pattern)).expect("rule pattern");
        for hit in pattern.find_iter(&code) {
            let line = code[..hit.start()].matches('\n').count() + 1;
            found.push(format!("{file}:{line}: {}: {}", rule.name, rule.why));
        }
    }
    found
}

#[test]
fn the_portable_sql_keeps_to_the_cockroachdb_subset() {
    let files = portable_files();
    assert!(files.len() >= 15, "{files:?}");
    let mut found = Vec::new();
    for path in &files {
        let sql = std::fs::read_to_string(path).expect("read");
        found.extend(violations(&path.display().to_string(), &sql));
    }
    assert!(
        found.is_empty(),
        "outside CockroachDB {FLOOR}'s subset:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_rule_finds_what_it_names() {
    // Each rule against a line that breaks it, and the blanking against
    // the same words in a comment and a message.
    let broken = [
        "WITH gone AS (DELETE FROM count.requests RETURNING 1) SELECT count(*) FROM gone;",
        "BEGIN PERFORM count.apply_retention(); END",
        "IF NOT FOUND THEN RETURN 0; END IF;",
        "GET DIAGNOSTICS n = ROW_COUNT;",
        "IF true THEN EXECUTE format('SELECT %s', 1); END IF;",
        "FOR r IN SELECT 1 LOOP END LOOP;",
        "DECLARE t count.requests%ROWTYPE;",
        "SELECT count.totals(now(), now(), time_zone => 'UTC');",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql STABLE SET jit = off AS $$ SELECT 1 $$;",
        "IF NOT isfinite(t) THEN",
        "SELECT pg_advisory_xact_lock(1);",
        "NOTIFY count;",
        "CREATE TEMP TABLE t (i int);",
        "SELECT ctid FROM count.requests;",
        "SELECT 'count.add_batch'::regprocedure;",
    ];
    assert_eq!(broken.len(), RULES.len());
    for (sql, rule) in broken.iter().zip(RULES) {
        let found = violations("x.sql", sql);
        assert!(
            found.len() == 1 && found[0].contains(rule.name),
            "{sql}: {found:?}"
        );
    }
    // Other spellings of the same constructs.
    for (sql, name) in [
        ("RETURN QUERY EXECUTE 'SELECT 1';", "EXECUTE or ASSERT"),
        (
            "SELECT count.totals(now(), now(), time_zone := 'UTC');",
            "named-argument",
        ),
        ("ALTER FUNCTION count.totals SET jit = off;", "a SET clause"),
        (
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql SET jit = off;",
            "a SET clause",
        ),
    ] {
        let found = violations("x.sql", sql);
        assert!(found.iter().any(|f| f.contains(name)), "{sql}: {found:?}");
    }
    let quiet = "-- GET DIAGNOSTICS and NOTIFY in a comment\n\
                 RAISE EXCEPTION USING MESSAGE = 'LOCK TABLE count.x, pg_advisory_lock, it''s ctid';\n\
                 UPDATE count.tiers SET keep = NULL RETURNING tier INTO turn;\n\
                 GRANT EXECUTE ON FUNCTION count.rollup_due() TO count_app;";
    assert_eq!(violations("x.sql", quiet), Vec::<String>::new());
}

/// Migrations released before these rules (0.1.0): never edited, so they
/// keep their shape; docs/operations.md says what that means on CockroachDB.
const RELEASED_BEFORE_THE_RULES: [&str; 2] = ["V1__schema.sql", "V2__monthly_totals.sql"];

/// What is wrong with `migration` (one file's SQL) under the rules for new
/// migrations: CockroachDB commits each schema change on its own, so a
/// migration stopped halfway is run again whole, and every statement must
/// find its own work done (docs/operations.md, "Migrations").
fn migration_faults(migration: &str) -> Vec<String> {
    let needs_if_not_exists =
        Regex::new(r"^CREATE\s+(UNIQUE\s+)?(TABLE|INDEX|SCHEMA|SEQUENCE)\b").expect("pattern");
    let adds = Regex::new(r"\bADD\s+(COLUMN\s+)?(IF\s+NOT\s+EXISTS\s+)?(\w+)").expect("pattern");
    let drops = Regex::new(r"\bDROP\s+(COLUMN|CONSTRAINT)\s+(IF\s+EXISTS\b)?").expect("pattern");
    let starts_with_any =
        |statement: &str, heads: &[&str]| heads.iter().any(|h| statement.starts_with(h));
    let code = code_of(migration).to_uppercase();
    let mut faults = Vec::new();
    if code.contains("$$") {
        faults
            .push("a function body: functions belong in sql/, which is installed whole".to_owned());
    }
    let (mut schema, mut data) = (false, false);
    for statement in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let head: Vec<&str> = statement.split_whitespace().take(4).collect();
        match head[0] {
            "CREATE" | "ALTER" | "DROP" | "COMMENT" | "GRANT" | "REVOKE" => schema = true,
            "INSERT" | "UPDATE" | "DELETE" | "UPSERT" => data = true,
            other => faults.push(format!(
                "a statement that is neither schema nor data: {other}"
            )),
        }
        let head = head.join(" ");
        if needs_if_not_exists.is_match(statement) && !statement.contains("IF NOT EXISTS") {
            faults.push(format!("{head}… without IF NOT EXISTS"));
        }
        if statement.starts_with("CREATE VIEW") {
            faults.push("CREATE VIEW without OR REPLACE".to_owned());
        }
        if statement.starts_with("DROP") && !statement.contains("IF EXISTS") {
            faults.push(format!("{head}… without IF EXISTS"));
        }
        if statement.starts_with("ALTER") {
            for add in adds.captures_iter(statement) {
                let what = &add[3];
                if what == "CONSTRAINT" {
                    // No ADD CONSTRAINT IF NOT EXISTS: drop it first, in
                    // the same statement.
                    if !statement.contains("DROP CONSTRAINT IF EXISTS") {
                        faults.push(
                            "ADD CONSTRAINT without DROP CONSTRAINT IF EXISTS before it".to_owned(),
                        );
                    }
                } else if add.get(2).is_none() {
                    faults.push(format!("ADD COLUMN {what} without IF NOT EXISTS"));
                }
            }
            if drops
                .captures_iter(statement)
                .any(|drop| drop.get(2).is_none())
            {
                faults.push("DROP COLUMN or CONSTRAINT without IF EXISTS".to_owned());
            }
            if statement.contains(" RENAME ") {
                faults.push("RENAME: a second run finds the old name gone".to_owned());
            }
        }
        if starts_with_any(
            statement,
            &["CREATE TYPE", "CREATE DOMAIN", "CREATE ROLE", "CREATE USER"],
        ) {
            faults.push(format!(
                "{head}…: cannot be made re-runnable; not in a migration"
            ));
        }
        if statement.starts_with("INSERT") && !statement.contains("ON CONFLICT") {
            faults.push(
                "INSERT without ON CONFLICT: a second run would add its rows again".to_owned(),
            );
        }
    }
    if schema && data {
        faults.push(
            "schema changes and data in one migration: CockroachDB refuses writes to a table \
             created in the same transaction unless autocommit_before_ddl is on, and with it on \
             the two are not atomic; split them"
                .to_owned(),
        );
    }
    faults
}

#[test]
fn new_migrations_can_run_again_and_never_mix_schema_and_data() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("migrations/") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if RELEASED_BEFORE_THE_RULES.contains(&name.as_str()) {
            continue;
        }
        let faults = migration_faults(&std::fs::read_to_string(&path).expect("read"));
        assert!(
            faults.is_empty(),
            "migrations/{name}:\n{}",
            faults.join("\n")
        );
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn the_migration_rules_find_what_they_name() {
    for (migration, fault) in [
        ("CREATE TABLE count.t (i int);", "without IF NOT EXISTS"),
        (
            "CREATE UNIQUE INDEX i ON count.t (i);",
            "without IF NOT EXISTS",
        ),
        ("CREATE VIEW count.v AS SELECT 1;", "without OR REPLACE"),
        ("DROP TABLE count.t;", "without IF EXISTS"),
        (
            "ALTER TABLE count.t ADD COLUMN j int;",
            "ADD COLUMN J without",
        ),
        ("ALTER TABLE count.t ADD j int;", "ADD COLUMN J without"),
        (
            "ALTER TABLE count.t ADD CONSTRAINT c CHECK (i > 0);",
            "ADD CONSTRAINT without",
        ),
        (
            "ALTER TABLE count.t DROP COLUMN j;",
            "DROP COLUMN or CONSTRAINT without",
        ),
        ("ALTER TABLE count.t RENAME COLUMN i TO j;", "RENAME"),
        (
            "CREATE TYPE count.k AS ENUM ('a');",
            "cannot be made re-runnable",
        ),
        ("INSERT INTO count.t VALUES (1);", "without ON CONFLICT"),
        (
            "CREATE TABLE IF NOT EXISTS count.t (i int PRIMARY KEY);\n\
             INSERT INTO count.t VALUES (1) ON CONFLICT DO NOTHING;",
            "schema changes and data",
        ),
        (
            "CREATE FUNCTION count.f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;",
            "a function body",
        ),
    ] {
        let faults = migration_faults(migration);
        assert!(
            faults.iter().any(|f| f.contains(fault)),
            "{migration}: {faults:?}"
        );
    }
    let fine = "-- CREATE TABLE in a comment; INSERT too\n\
                CREATE TABLE IF NOT EXISTS count.t (i int CHECK (i > 0));\n\
                ALTER TABLE count.t ADD COLUMN IF NOT EXISTS j int,\n\
                    DROP CONSTRAINT IF EXISTS c, ADD CONSTRAINT c CHECK (j > 0);";
    assert_eq!(migration_faults(fine), Vec::<String>::new());
}
