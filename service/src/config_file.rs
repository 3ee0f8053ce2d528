//! The optional TOML configuration file (`--config FILE` or `COUNT_CONFIG`).
//!
//! Precedence is flags > environment > file > defaults. clap already gives
//! flags precedence over `COUNT_*` variables and those over defaults; the
//! file slots in by turning each of its keys into the matching `COUNT_*`
//! variable, unless the environment sets that variable already. A key is a
//! flag's name (`flush-interval = "2s"`, or `flush_interval`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Result};

/// Reads the configuration file named on the command line or in
/// `COUNT_CONFIG`, if any, into the environment. Must run before any other
/// thread starts (it sets environment variables).
pub fn load(args: &[OsString]) -> Result<Option<PathBuf>> {
    let Some(path) =
        path_from(args).or_else(|| std::env::var_os("COUNT_CONFIG").map(PathBuf::from))
    else {
        return Ok(None);
    };
    let field = format!("config file {}", path.display());
    let text =
        std::fs::read_to_string(&path).map_err(Error::io(format!("reading {}", path.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| Error::invalid(&field, format!("{e}")))?;
    let known = known_variables();
    for (key, value) in table {
        let variable = format!("COUNT_{}", key.to_uppercase().replace('-', "_"));
        if !known.contains(&variable) || variable == "COUNT_CONFIG" {
            return Err(Error::invalid(&field, format!("unknown key '{key}'")));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(Error::invalid(
                    &field,
                    format!(
                        "'{key}' must be a string, number or boolean, got {}",
                        other.type_str()
                    ),
                ));
            }
        };
        if std::env::var_os(&variable).is_none() {
            // SAFETY: called from `main` before the runtime or any other
            // thread exists, so nothing reads the environment concurrently.
            unsafe { std::env::set_var(&variable, value) };
        }
    }
    Ok(Some(path))
}

/// `--config FILE` or `--config=FILE` anywhere on the command line.
fn path_from(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// Every `COUNT_*` variable some flag reads.
fn known_variables() -> Vec<String> {
    fn collect(command: &clap::Command, into: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                into.push(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            collect(sub, into);
        }
    }
    let mut known = Vec::new();
    collect(&Cli::command(), &mut known);
    known
}

/// `url` with any password replaced by `***`, for printing.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
        return url.to_owned();
    }
    // key=value form: password=... up to the next space.
    url.split(' ')
        .map(|part| match part.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgresql://count:s3cret@db:5432/count?sslmode=require"),
            "postgresql://count:***@db:5432/count?sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://count@db/count"),
            "postgresql://count@db/count"
        );
        assert_eq!(
            redact_url("host=db user=count password=s3cret dbname=count"),
            "host=db user=count password=*** dbname=count"
        );
    }

    #[test]
    fn the_config_flag_is_found_anywhere() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            path_from(&args(&["count", "serve", "--config", "/etc/c.toml"])),
            Some("/etc/c.toml".into())
        );
        assert_eq!(
            path_from(&args(&["count", "--config=c.toml", "serve"])),
            Some("c.toml".into())
        );
        assert_eq!(path_from(&args(&["count", "serve"])), None);
    }
}
