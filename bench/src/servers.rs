//! Starting the servers under test and watching them: time to
//! `[NANOSERVER_READY]`, the address they listen on, their RSS and CPU time,
//! with those of their child processes (process isolation's workers).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A server process, killed when dropped.
pub struct Running {
    pub child: Child,
    /// From exec to the `[NANOSERVER_READY]` line.
    pub startup: Duration,
    /// `http://host:port` when the server printed one, else the given port.
    pub base: String,
}

impl Running {
    /// Starts `command` and waits (up to `patience`) for `[NANOSERVER_READY]`
    /// on its stdout. `port` is where it listens when it does not print a
    /// `http://…` address itself.
    pub fn start(mut command: Command, port: Option<u16>, patience: Duration) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send((line, Instant::now())).is_err() {
                    // Keep draining so the server never blocks on a full pipe.
                    continue;
                }
            }
        });
        let mut base = port.map(|p| format!("http://127.0.0.1:{p}"));
        let deadline = started + patience;
        loop {
            let timeout = deadline.saturating_duration_since(Instant::now());
            let Ok((line, at)) = received.recv_timeout(timeout) else {
                let _ = child.kill();
                bail!("{command:?}: no [NANOSERVER_READY] within {patience:?}");
            };
            if let Some(address) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                base = Some(address.trim_end_matches('/').to_owned());
            }
            if line.trim() == "[NANOSERVER_READY]" {
                let base = base.context("the server printed no address and none was given")?;
                return Ok(Self {
                    child,
                    startup: at - started,
                    base,
                });
            }
        }
    }

    pub fn ws_url(&self) -> String {
        format!("{}/", self.base.replacen("http://", "ws://", 1))
    }

    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.child.id())
    }

    /// The RSS of the server and of each of its descendants (workers).
    pub fn tree_rss(&self) -> anyhow::Result<TreeRss> {
        tree_rss(self.child.id())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of a process, from /proc (Linux).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// The highest resident set size a process has had so far (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM")
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} not found in /proc/{pid}/status"))
}

/// Every process descended from `pid` (its children, theirs, …), from
/// `/proc/<pid>/task/*/children` where the kernel has it, else by scanning
/// `/proc/*/stat` for parent pids. Processes that end meanwhile may be
/// listed or not.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut parents = vec![pid];
    let mut scanned: Option<HashMap<u32, Vec<u32>>> = None;
    while let Some(parent) = parents.pop() {
        let children = match children_of(parent) {
            Some(children) => children,
            None => scanned
                .get_or_insert_with(children_by_scan)
                .get(&parent)
                .cloned()
                .unwrap_or_default(),
        };
        for child in children {
            if child != pid && !found.contains(&child) {
                found.push(child);
                parents.push(child);
            }
        }
    }
    found
}

/// The children of `pid` from `/proc/<pid>/task/*/children`; `None` when the
/// kernel has no such file (`CONFIG_PROC_CHILDREN`) or the process is gone.
fn children_of(pid: u32) -> Option<Vec<u32>> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let text = std::fs::read_to_string(task.ok()?.path().join("children")).ok()?;
        children.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    Some(children)
}

/// Parent pid → children, for every process in `/proc`.
fn children_by_scan() -> HashMap<u32, Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    children
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces): index 0 is the state (field 3 of proc(5)), 1 the parent pid.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect())
}

/// (own utime + stime, reaped children's cutime + cstime) of a process, in
/// clock ticks.
fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let fields = stat_fields(pid)?;
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((field(11)? + field(12)?, field(13)? + field(14)?))
}

fn clock_ticks_per_second() -> u64 {
    unsafe extern "C" {
        fn sysconf(name: i32) -> i64;
    }
    const SC_CLK_TCK: i32 = 2; // Linux
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { sysconf(SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// CPU time (user + system) a server and its worker processes used so far.
#[derive(Clone, Copy, Debug)]
pub struct TreeCpu {
    /// The server process itself.
    pub server: Duration,
    /// Its descendants: the live ones, and the ones that ended and were
    /// reaped (their time moves to their parent's `cutime`/`cstime`).
    pub workers: Duration,
    /// Descendants alive at the reading.
    pub live_workers: usize,
}

impl TreeCpu {
    pub fn total(&self) -> Duration {
        self.server + self.workers
    }
}

/// CPU time of `pid` and of its descendants, from `/proc` (Linux); `None`
/// when the process is gone.
pub fn tree_cpu(pid: u32) -> Option<TreeCpu> {
    let (own, reaped) = cpu_ticks(pid)?;
    let workers = descendants(pid);
    // A descendant that ends between the listing and the reading counts
    // nothing here; its time reaches `reaped` of its parent once reaped.
    let worker_ticks: u64 = workers.iter().filter_map(|&w| cpu_ticks(w)).map(|(a, b)| a + b).sum();
    let tick = |t: u64| Duration::from_secs_f64(t as f64 / clock_ticks_per_second() as f64);
    Some(TreeCpu {
        server: tick(own),
        workers: tick(reaped + worker_ticks),
        live_workers: workers.len(),
    })
}

/// The RSS of a server and of each of its descendants (process
/// isolation's workers), KiB.
#[derive(Clone, Debug, Default)]
pub struct TreeRss {
    pub server_kib: u64,
    pub workers_kib: Vec<u64>,
}

impl TreeRss {
    /// Server plus workers.
    pub fn total_kib(&self) -> u64 {
        self.server_kib + self.workers_kib.iter().sum::<u64>()
    }

    /// The workers' RSS summed, divided by their count; `None` without workers.
    pub fn per_worker_kib(&self) -> Option<f64> {
        (!self.workers_kib.is_empty())
            .then(|| self.workers_kib.iter().sum::<u64>() as f64 / self.workers_kib.len() as f64)
    }
}

/// The RSS of `pid` and of each of its descendants (ones that end meanwhile,
/// or zombies, which have no RSS, are left out).
pub fn tree_rss(pid: u32) -> anyhow::Result<TreeRss> {
    Ok(TreeRss {
        server_kib: rss_kib(pid)?,
        workers_kib: descendants(pid).into_iter().filter_map(|w| rss_kib(w).ok()).collect(),
    })
}

/// `VmHWM` of `pid` plus that of each of its live descendants: an upper
/// bound of the tree's peak (the peaks need not coincide).
pub fn tree_peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let workers: u64 = descendants(pid).into_iter().filter_map(|w| peak_rss_kib(w).ok()).sum();
    Ok(peak_rss_kib(pid)? + workers)
}

/// Reads the RSS of a process plus its descendants (process isolation's
/// workers) every `every` on a thread of its own (the async runtime may be
/// saturated by the load) and keeps the highest sum.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<u64>>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut max = None;
            loop {
                if let Ok(tree) = tree_rss(pid) {
                    max = max.max(Some(tree.total_kib()));
                }
                if stopped.load(Ordering::Relaxed) {
                    return max;
                }
                std::thread::sleep(every);
            }
        });
        Self { stop, thread }
    }

    /// The highest RSS sum sampled (KiB), after one last sample.
    pub fn finish(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}

/// A port that was free a moment ago, for servers that need one given.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A nano-server config serving `nodes` on a free port.
pub fn write_config(dir: &Path, nodes: &Path) -> anyhow::Result<PathBuf> {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "server_uid = \"nano-bench\"\nport = 0\nnodes_path = {:?}\n",
            nodes.display().to_string()
        ),
    )?;
    Ok(config)
}

/// The example nodes: (folder under the nodes path, library stem).
pub const EXAMPLES: [(&str, &str); 3] = [
    ("processing/simple_text_node", "simple_text_node"),
    ("processing/complex_math_node", "complex_math_node"),
    ("utility/progress_node", "progress_node"),
];

/// `libname.so` (or the platform's equivalent) of a library stem.
pub fn lib_file(stem: &str) -> String {
    format!("{}{stem}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// Copies the built library `stem` from `libs` into `to/folder/`.
pub fn install(libs: &Path, to: &Path, folder: &str, stem: &str) -> anyhow::Result<()> {
    let dir = to.join(folder);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(libs.join(lib_file(stem)), dir.join(lib_file(stem)))
        .with_context(|| format!("copying {stem} from {}", libs.display()))?;
    Ok(())
}

/// Installs the three example nodes from `libs` into `dir/examples` and
/// writes a config serving them ([`write_config`], the shipped defaults
/// otherwise); returns the config's path.
pub fn examples_config(libs: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let examples = dir.join("examples");
    for (folder, stem) in EXAMPLES {
        install(libs, &examples, folder, stem)?;
    }
    write_config(&examples, &examples)
}

/// Where nano-server runs plugin code (its `--isolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// Libraries mapped into the server.
    InProcess,
    /// Each library in a worker process of its own (the server's default).
    Process,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProcess => "in-process",
            Self::Process => "process",
        }
    }
}

/// The command that runs a nano-server binary with `config`, plugins run as
/// `isolation` says (`None`: the binary's default; for builds older than
/// the `--isolation` flag, which refuse it).
pub fn nano_command(server: &Path, config: &Path, isolation: Option<Isolation>) -> Command {
    let mut command = Command::new(server);
    command.arg("--config").arg(config).env("RUST_LOG", "warn");
    if let Some(isolation) = isolation {
        command.arg("--isolation").arg(isolation.as_str());
    }
    command
}

/// Whether a nano-server binary takes `--isolation` (builds from before
/// process isolation do not, and map libraries into the server).
pub fn takes_isolation(server: &Path) -> bool {
    Command::new(server)
        .arg("--help")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--isolation"))
}

/// `--isolation in-process` for a build that takes the flag, nothing for
/// an older one (in-process is all it does): how a `--baseline` build runs
/// next to the in-process column.
pub fn in_process_if_supported(server: &Path) -> Option<Isolation> {
    takes_isolation(server).then_some(Isolation::InProcess)
}

/// Starts the Python SDK peer: `bash <script> <free port>` (bench/peer/run.sh).
pub fn start_peer(script: &Path, patience: Duration) -> anyhow::Result<Running> {
    let port = free_port()?;
    let mut command = Command::new("bash");
    command
        .arg(script)
        .arg(port.to_string())
        .env("NANOSDK_LOG_LEVEL", "warn");
    Running::start(command, Some(port), patience)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_children_and_their_cpu_and_rss() {
        // sh -> sleep: a child and a grandchild of this process (the sleep
        // ends on its own soon after).
        let mut child = Command::new("sh").args(["-c", "sleep 2 & wait"]).spawn().expect("sh");
        let (me, sh) = (std::process::id(), child.id());
        let deadline = Instant::now() + Duration::from_secs(2);
        let grandchildren = || children_by_scan().get(&sh).cloned().unwrap_or_default();
        while grandchildren().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (found, sleep) = (descendants(me), grandchildren());
        let scanned = children_by_scan();
        let cpu = tree_cpu(me);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&sh), "{found:?}");
        assert!(
            !sleep.is_empty() && sleep.iter().all(|p| found.contains(p)),
            "{found:?} {sleep:?}"
        );
        assert!(scanned.get(&me).is_some_and(|c| c.contains(&sh)));
        assert!(cpu.is_some_and(|cpu| cpu.live_workers >= 2), "{cpu:?}");
        assert!(tree_rss(me).expect("rss").server_kib > 0);
    }
}
