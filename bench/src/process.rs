//! What processes cost, read from `/proc`: CPU seconds and resident memory.
//! Unreadable figures count as 0: a process that is gone has stopped
//! costing anything.

use std::time::Duration;

use count_service::db::cluster::Cluster;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of `/proc/PID/stat` after the command name (which is in
/// parentheses and may hold spaces): index 0 is field 3 (state).
fn stat_fields(pid: u32) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect()
}

/// Field `n` (1-based, as `man proc` numbers them) of a process's stat.
fn field(fields: &[u64], n: usize) -> u64 {
    fields.get(n - 3).copied().unwrap_or(0)
}

/// User + system CPU seconds `pid` has used, and with `reaped`, those of its
/// children that exited and were waited for as well.
pub(crate) fn cpu_seconds(pid: u32, reaped: bool) -> f64 {
    let fields = stat_fields(pid);
    // utime, stime (fields 14, 15); cutime, cstime (16, 17).
    let mut ticks = field(&fields, 14) + field(&fields, 15);
    if reaped {
        ticks += field(&fields, 16) + field(&fields, 17);
    }
    ticks as f64 / TICKS_PER_SECOND
}

/// CPU seconds the cluster's processes have used: the postmaster, every
/// backend that has exited (the postmaster reaps them), and every process
/// still running under it.
pub(crate) fn postgres_cpu_seconds(cluster: &Cluster) -> f64 {
    let Ok(Some(postmaster)) = cluster.postmaster_pid() else {
        return 0.0;
    };
    let postmaster = postmaster.as_raw().unsigned_abs();
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        // The parent pid is field 4.
        .filter(|&pid| field(&stat_fields(pid), 4) == u64::from(postmaster))
        .map(|pid| cpu_seconds(pid, false))
        .sum();
    cpu_seconds(postmaster, true) + children
}

/// CPU seconds of this process's children that exited and were waited for
/// (one read: the difference of two is the children reaped between them).
pub(crate) fn reaped_children_seconds() -> f64 {
    let fields = stat_fields(std::process::id());
    (field(&fields, 16) + field(&fields, 17)) as f64 / TICKS_PER_SECOND
}

/// A child process killed (and waited for) when dropped, so that a failing
/// run leaves nothing running. The service's tests use it too.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident memory of `pid` in kB (0 once it is gone). The service's
/// memory tests read it too.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A running peak-RSS sampler of one process.
pub(crate) struct RssSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    /// Samples `pid`'s resident memory every 20 ms until stopped.
    pub(crate) fn start(pid: u32) -> RssSampler {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(rss_kb(pid));
                tokio::select! {
                    _ = &mut stopped => return peak,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        });
        RssSampler { stop, task }
    }

    /// The peak in kB.
    pub(crate) async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}

/// CPU seconds of one measured stretch, of a server process and of
/// PostgreSQL.
pub(crate) struct CpuMeter<'a> {
    server: u32,
    cluster: &'a Cluster,
    server_start: f64,
    postgres_start: f64,
}

impl<'a> CpuMeter<'a> {
    /// Starts metering `server` (a child of this process) and `cluster`.
    pub(crate) fn start(server: u32, cluster: &'a Cluster) -> CpuMeter<'a> {
        CpuMeter {
            server,
            cluster,
            server_start: cpu_seconds(server, false),
            postgres_start: postgres_cpu_seconds(cluster),
        }
    }

    /// Server and PostgreSQL CPU seconds used since the start.
    pub(crate) fn read(&self) -> (f64, f64) {
        (
            cpu_seconds(self.server, false) - self.server_start,
            postgres_cpu_seconds(self.cluster) - self.postgres_start,
        )
    }
}
