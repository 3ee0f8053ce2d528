//! A private PostgreSQL cluster: the embedded default of `count serve`, and
//! the harness every test runs against (the same code).
//!
//! The cluster lives under one base directory:
//! - `pg/`: the data directory (`initdb` on first use);
//! - `run/`: the Unix socket directory, readable by the cluster's owner only,
//!   so local trust authentication admits nobody else;
//! - `password`: the password of user `postgres` for TCP connections on
//!   127.0.0.1 (SCRAM);
//! - `postgres.log`: the server log.
//!
//! PostgreSQL refuses to run as root: when this process is root, the cluster
//! runs as the `postgres` OS user and the base directory is given to it.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::unistd::{Uid, User};

use crate::error::{Error, Result};

/// The OS user a cluster runs as when this process is root.
const SERVICE_USER: &str = "postgres";

/// The database count's schema lives in, in a cluster of its own (the
/// embedded default, the tests', the bench's). queries/create_database.sql
/// names it too, checked by a test.
pub const DATABASE: &str = "count";

/// How to set up and start a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The base directory (created when missing).
    pub base_dir: PathBuf,
    /// Where `initdb`, `pg_ctl` and `postgres` are; found when `None`.
    pub bin_dir: Option<PathBuf>,
    /// Extra `postgresql.conf` settings, e.g. `shared_preload_libraries`.
    pub settings: Vec<(String, String)>,
    /// Skip fsync in `initdb` and the server: for throwaway test clusters,
    /// where only process crashes (not power loss) are simulated.
    pub no_sync: bool,
}

impl ClusterOptions {
    /// Durable defaults for a cluster under `base_dir`.
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        ClusterOptions {
            base_dir: base_dir.into(),
            bin_dir: None,
            settings: Vec::new(),
            no_sync: false,
        }
    }
}

/// A running private cluster. Dropping it stops the server if this value
/// started it (not if it attached to one that was already running).
#[derive(Debug)]
pub struct Cluster {
    options: ClusterOptions,
    bin_dir: PathBuf,
    owner: Option<User>,
    port: u16,
    started_here: bool,
}

/// Where [`ClusterOptions::base_dir`] defaults to: `/var/lib/count` for root
/// (a directory the `postgres` user can reach), the user's data directory
/// otherwise.
pub fn default_base_dir() -> PathBuf {
    if Uid::effective().is_root() {
        PathBuf::from("/var/lib/count")
    } else {
        dirs::data_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("count")
    }
}

/// What a count data directory holds: the cluster, its socket directory, the
/// password file and the server's log.
const DATA_DIR_ENTRIES: [&str; 4] = ["pg", "run", "password", "postgres.log"];

/// Refuses a directory that holds anything but a count data directory's
/// entries: setting up would chmod it to 0700 and, as root, chown it to
/// `postgres`, which a mistyped `--data-dir` (say `/etc`) must never do.
fn refuse_foreign_dir(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()))(e)),
    };
    for entry in entries {
        let name = entry
            .map_err(Error::io(format!("reading {}", dir.display())))?
            .file_name();
        if !DATA_DIR_ENTRIES.iter().any(|known| name == *known) {
            return Err(Error::Cluster(format!(
                "{} is not empty and not a count data directory (it holds {}): \
                 choose a new or empty --data-dir",
                dir.display(),
                name.to_string_lossy()
            )));
        }
    }
    Ok(())
}

impl Cluster {
    /// Creates the cluster on first use, then starts it on a free port on
    /// 127.0.0.1, or attaches to it if it is already running.
    pub fn start(options: &ClusterOptions) -> Result<Cluster> {
        let bin_dir = match &options.bin_dir {
            Some(dir) => dir.clone(),
            None => find_bin_dir()?,
        };
        let owner = if Uid::effective().is_root() {
            let user = User::from_name(SERVICE_USER)
                .map_err(|e| Error::Cluster(format!("looking up user {SERVICE_USER}: {e}")))?
                .ok_or_else(|| {
                    Error::Cluster(format!(
                        "running as root needs an OS user '{SERVICE_USER}' to run PostgreSQL \
                         (install postgresql-15, or run as another user)"
                    ))
                })?;
            Some(user)
        } else {
            None
        };
        let mut cluster = Cluster {
            options: options.clone(),
            bin_dir,
            owner,
            port: 0,
            started_here: false,
        };
        cluster.prepare_dirs()?;
        if !cluster.data_dir().join("PG_VERSION").exists() {
            cluster.init()?;
        }
        if let Some(port) = cluster.running_port()? {
            tracing::info!(port, dir = %cluster.data_dir().display(), "attached to running PostgreSQL");
            cluster.port = port;
            return Ok(cluster);
        }
        cluster.launch()?;
        Ok(cluster)
    }

    /// The TCP port the server listens on (127.0.0.1); its Unix socket is
    /// named after the same port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Unix socket directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.options.base_dir.join("run")
    }

    /// A libpq URL for `database`, over the Unix socket as user `postgres`:
    /// what `psql` and the service use.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql://postgres@/{database}?host={}&port={}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// (Test support.)
    #[cfg(feature = "test-support")]
    /// The base directory (data, sockets, log, password).
    pub fn base_dir(&self) -> &Path {
        &self.options.base_dir
    }

    /// (Test support.)
    #[cfg(feature = "test-support")]
    /// The password of user `postgres` for TCP connections on 127.0.0.1.
    pub fn password(&self) -> Result<String> {
        let path = self.options.base_dir.join("password");
        let text =
            fs::read_to_string(&path).map_err(Error::io(format!("reading {}", path.display())))?;
        Ok(text.trim().to_owned())
    }

    /// (Test support.)
    #[cfg(feature = "test-support")]
    /// Gives `path` to the OS user the cluster runs as (for files the server
    /// must read, such as TLS keys).
    pub fn give(&self, path: &Path) -> Result<()> {
        self.give_to_owner(path)
    }

    /// A tokio-postgres configuration for `database`.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.socket_dir())
            .port(self.port)
            .user("postgres")
            .dbname(database)
            .application_name("count");
        config
    }

    /// Creates [`DATABASE`] unless it exists.
    pub async fn create_database(&self) -> Result<()> {
        let client = self.connect("postgres").await?;
        let exists: bool = client
            .query_one(
                include_str!("../../queries/database_exists.sql"),
                &[&DATABASE],
            )
            .await?
            .get(0);
        if !exists {
            client
                .batch_execute(include_str!("../../queries/create_database.sql"))
                .await?;
        }
        Ok(())
    }

    /// Creates the `count` extension in [`DATABASE`], or updates it to
    /// the installed version, when this PostgreSQL has it installed. Returns
    /// whether the extension is there.
    pub async fn create_extension(&self) -> Result<bool> {
        let client = self.connect(DATABASE).await?;
        let available: bool = client
            .query_one(include_str!("../../queries/extension_available.sql"), &[])
            .await?
            .get(0);
        if available {
            client
                .batch_execute(include_str!("../../queries/create_extension.sql"))
                .await?;
        }
        Ok(available)
    }

    /// A connection to `database` as the superuser; it closes when the
    /// client is dropped.
    async fn connect(&self, database: &str) -> Result<tokio_postgres::Client> {
        let (client, connection) = self.config(database).connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Stops the server (fast shutdown: open sessions are ended, committed
    /// work is kept).
    pub fn stop(&mut self) -> Result<()> {
        self.run_checked(self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"]))?;
        self.started_here = false;
        Ok(())
    }

    /// Kills the postmaster with SIGKILL, as a crash would: the next start
    /// goes through crash recovery.
    pub fn kill(&mut self) -> Result<()> {
        let pid = self.postmaster_pid()?.ok_or_else(|| {
            Error::Cluster(format!("{} is not running", self.data_dir().display()))
        })?;
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| Error::Cluster(format!("killing postmaster {pid}: {e}")))?;
        // Wait until the children are gone too, or the next start fails.
        for _ in 0..200 {
            if self.running_port()?.is_none() {
                self.started_here = false;
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(Error::Cluster(format!(
            "postmaster {pid} did not exit after SIGKILL"
        )))
    }

    /// (Test support.)
    #[cfg(feature = "test-support")]
    /// Starts the server again after [`Cluster::stop`] or [`Cluster::kill`],
    /// on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.write_settings(self.port)?;
        // After a kill, the old backends may hold shared memory for a moment.
        let mut attempts = 0;
        loop {
            match self.run_checked(self.pg_ctl_start()) {
                Ok(()) => break,
                Err(e) if attempts >= 20 => return Err(e),
                Err(_) => attempts += 1,
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        self.started_here = true;
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.options.base_dir.join("pg")
    }

    fn prepare_dirs(&self) -> Result<()> {
        refuse_foreign_dir(&self.options.base_dir)?;
        for dir in [self.options.base_dir.clone(), self.socket_dir()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(Error::io(format!("creating {}", dir.display())))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(Error::io(format!("setting the mode of {}", dir.display())))?;
            self.give_to_owner(&dir)?;
        }
        Ok(())
    }

    fn give_to_owner(&self, path: &Path) -> Result<()> {
        if let Some(user) = &self.owner {
            nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
                Error::Cluster(format!("giving {} to {}: {e}", path.display(), user.name))
            })?;
        }
        Ok(())
    }

    fn init(&self) -> Result<()> {
        let password_file = self.options.base_dir.join("password");
        let password = random_password()?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&password_file)
            .map_err(Error::io(format!("creating {}", password_file.display())))?;
        writeln!(file, "{password}")
            .map_err(Error::io(format!("writing {}", password_file.display())))?;
        self.give_to_owner(&password_file)?;

        let mut initdb = self.command("initdb");
        initdb
            .arg("--pgdata")
            .arg(self.data_dir())
            .args([
                "--username",
                "postgres",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
            ])
            .args(["--auth-local", "trust", "--auth-host", "scram-sha-256"])
            .arg("--pwfile")
            .arg(&password_file);
        if self.options.no_sync {
            initdb.arg("--no-sync");
        }
        tracing::info!(dir = %self.data_dir().display(), "creating PostgreSQL cluster");
        self.run_checked(initdb)?;
        let conf = self.data_dir().join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(Error::io(format!("opening {}", conf.display())))?;
        writeln!(file, "\n# Port, sockets and settings: rewritten by count at every start.\ninclude_if_exists = 'count.conf'")
            .map_err(Error::io(format!("writing {}", conf.display())))?;
        Ok(())
    }

    /// Writes `count.conf`: the port, sockets and the caller's settings.
    fn write_settings(&self, port: u16) -> Result<()> {
        let mut settings = vec![
            ("port".to_owned(), port.to_string()),
            ("listen_addresses".to_owned(), "127.0.0.1".to_owned()),
            (
                "unix_socket_directories".to_owned(),
                self.socket_dir().display().to_string(),
            ),
        ];
        if self.options.no_sync {
            settings.push(("fsync".to_owned(), "off".to_owned()));
        }
        settings.extend(self.options.settings.iter().cloned());
        let text: String = settings
            .iter()
            .map(|(name, value)| format!("{name} = '{}'\n", value.replace('\'', "''")))
            .collect();
        let path = self.data_dir().join("count.conf");
        fs::write(&path, text).map_err(Error::io(format!("writing {}", path.display())))?;
        self.give_to_owner(&path)
    }

    fn launch(&mut self) -> Result<()> {
        // A free port can be taken between our probe and the server's bind:
        // try a few.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            self.write_settings(port)?;
            match self.run_checked(self.pg_ctl_start()) {
                Ok(()) => {
                    self.port = port;
                    self.started_here = true;
                    tracing::info!(port, dir = %self.data_dir().display(), "started PostgreSQL");
                    return Ok(());
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Cluster("could not start".to_owned())))
    }

    fn pg_ctl_start(&self) -> Command {
        let log = self.options.base_dir.join("postgres.log");
        let mut command = self.pg_ctl(&["start", "-w", "-t", "120"]);
        command.arg("-l").arg(log);
        command
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut command = self.command("pg_ctl");
        command.arg("-D").arg(self.data_dir()).args(args);
        command
    }

    /// The port of the running server, from `postmaster.pid`, or `None` when
    /// no server runs on this data directory.
    fn running_port(&self) -> Result<Option<u16>> {
        if self.postmaster_pid()?.is_none() {
            return Ok(None);
        }
        let pid_file = self.data_dir().join("postmaster.pid");
        let text = fs::read_to_string(&pid_file)
            .map_err(Error::io(format!("reading {}", pid_file.display())))?;
        let port = text
            .lines()
            .nth(3)
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| Error::Cluster(format!("no port in {}", pid_file.display())))?;
        Ok(Some(port))
    }

    /// The postmaster's pid when a server runs on this data directory.
    pub fn postmaster_pid(&self) -> Result<Option<nix::unistd::Pid>> {
        let pid_file = self.data_dir().join("postmaster.pid");
        let Ok(text) = fs::read_to_string(&pid_file) else {
            return Ok(None);
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return Ok(None);
        };
        let pid = nix::unistd::Pid::from_raw(pid);
        // Signal 0 probes for the process without touching it.
        Ok(nix::sys::signal::kill(pid, None).is_ok().then_some(pid))
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command
            .current_dir(&self.options.base_dir)
            .env_remove("PGDATA");
        if let Some(user) = &self.owner {
            command
                .uid(user.uid.as_raw())
                .gid(user.gid.as_raw())
                .env("HOME", &user.dir)
                .env("USER", &user.name);
        }
        command
    }

    fn run_checked(&self, mut command: Command) -> Result<()> {
        let output: Output = command
            .output()
            .map_err(Error::io(format!("running {:?}", command.get_program())))?;
        if output.status.success() {
            return Ok(());
        }
        let mut message = format!(
            "{:?} failed ({}): {}{}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim(),
        );
        let log = self.options.base_dir.join("postgres.log");
        if let Ok(text) = fs::read_to_string(&log) {
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            message.push_str("; server log: ");
            message.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
        }
        Err(Error::Cluster(message))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started_here
            && let Err(e) = self.stop()
        {
            tracing::warn!(%e, "stopping PostgreSQL");
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`, else
/// whatever `pg_config --bindir` says.
fn find_bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let output = Command::new("pg_config").arg("--bindir").output();
    match output {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").exists() {
                return Ok(dir);
            }
            Err(Error::Cluster(format!("no initdb in {}", dir.display())))
        }
        _ => Err(Error::Cluster(
            "no PostgreSQL server binaries found (install postgresql-15, or pass --pg-bin-dir)"
                .to_owned(),
        )),
    }
}

/// Ports the clusters pick from: below Linux's ephemeral range (32768 and
/// up), so a port a stopped cluster will restart on is not handed to some
/// other socket's `bind(0)` meanwhile.
const CLUSTER_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free port from [`CLUSTER_PORTS`], picked at random.
fn free_port() -> Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    let span = u64::from(CLUSTER_PORTS.end - CLUSTER_PORTS.start);
    for _ in 0..100 {
        // A fresh RandomState is randomly keyed: a cheap random number.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = CLUSTER_PORTS.start + (random % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::Cluster(format!(
        "no free port in {}..{} after 100 tries",
        CLUSTER_PORTS.start, CLUSTER_PORTS.end
    )))
}

fn random_password() -> Result<String> {
    let mut bytes = [0u8; 18];
    let mut urandom = fs::File::open("/dev/urandom").map_err(Error::io("opening /dev/urandom"))?;
    std::io::Read::read_exact(&mut urandom, &mut bytes)
        .map_err(Error::io("reading /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_database_query_names_the_database() {
        assert_eq!(
            include_str!("../../queries/create_database.sql").trim(),
            format!("CREATE DATABASE {DATABASE}")
        );
    }

    #[test]
    fn a_count_data_directory_is_reused_and_any_other_content_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        assert!(refuse_foreign_dir(&dir.path().join("new")).is_ok());
        for entry in DATA_DIR_ENTRIES {
            fs::write(dir.path().join(entry), "").expect("write");
        }
        assert!(refuse_foreign_dir(dir.path()).is_ok());
        fs::write(dir.path().join("notes.txt"), "").expect("write");
        let error = refuse_foreign_dir(dir.path()).expect_err("refused");
        assert!(
            error.to_string().contains("(it holds notes.txt)"),
            "{error}"
        );
    }
}
