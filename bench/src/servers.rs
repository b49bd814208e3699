//! Starting the servers under test and watching them: time to
//! `[NANOSERVER_READY]`, the address they listen on, their RSS.

use std::{
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

/// Reads a process's RSS every `every` on a thread of its own (the async
/// runtime may be saturated by the load) and keeps the highest.
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
                if let Ok(kib) = rss_kib(pid) {
                    max = max.max(Some(kib));
                }
                if stopped.load(Ordering::Relaxed) {
                    return max;
                }
                std::thread::sleep(every);
            }
        });
        Self { stop, thread }
    }

    /// The highest RSS sampled (KiB), after one last sample.
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

/// The command that runs a nano-server binary with `config`.
pub fn nano_command(server: &Path, config: &Path) -> Command {
    let mut command = Command::new(server);
    command.arg("--config").arg(config).env("RUST_LOG", "warn");
    command
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
