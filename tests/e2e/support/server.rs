//! The server under test: the real `nano-server` binary on a free port,
//! started through [`ServerBuilder`] and killed on drop.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex, mpsc},
    time::Duration,
};

use serde_json::Value;

use super::{BUILD_PATIENCE, NodesDir, PATIENCE, install_tls_provider, isolation_override, proc_status_kib};

/// A running `nano-server` process, killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    logs: Arc<(Mutex<String>, Condvar)>,
    _config: tempfile::TempDir,
}

/// How a test wants its server: `Server::builder(&nodes).config("..")
/// .env("K", "V").rust_log("debug").isolated().start()`.
pub struct ServerBuilder<'a> {
    nodes: &'a NodesDir,
    config: String,
    env: Vec<(String, String)>,
    rust_log: String,
    isolated: bool,
}

impl ServerBuilder<'_> {
    /// Extra config.toml lines (appended; may be called again).
    pub fn config(mut self, lines: &str) -> Self {
        self.config.push_str(lines);
        self.config.push('\n');
        self
    }

    /// An environment variable for the server (inherited by its workers).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The `RUST_LOG` filter; `info` unless set.
    pub fn rust_log(mut self, filter: &str) -> Self {
        filter.clone_into(&mut self.rust_log);
        self
    }

    /// In process isolation whatever `NANO_TEST_ISOLATION` says.
    pub fn isolated(mut self) -> Self {
        self.isolated = true;
        self
    }

    /// Starts the server on a free port serving the nodes folder; returns
    /// once it is ready.
    pub fn start(self) -> Server {
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("config.toml");
        let isolation = if self.isolated { "isolation = \"process\"\n" } else { "" };
        std::fs::write(
            &config,
            format!(
                "domain = \"test.nanograph\"\nserver_name = \"Test Server\"\nserver_uid = \"test-server\"\n\
                 server_package_id = \"test-package\"\n{isolation}{}\n",
                self.config
            ),
        )
        .unwrap();
        let isolation = if self.isolated {
            Some("process".to_owned())
        } else {
            isolation_override()
        };
        let mut command = server_command_in(&config, isolation);
        command
            .arg("--port")
            .arg("0")
            .arg("--nodes-path")
            .arg(self.nodes.path())
            .env("RUST_LOG", &self.rust_log);
        command.envs(self.env);
        Server::spawn(command, config_dir, PATIENCE)
    }
}

impl Server {
    /// Starts the server on a free port serving `nodes`, configured as
    /// every test's server is; [`builder`](Self::builder) for more.
    pub fn start(nodes: &NodesDir) -> Self {
        Self::builder(nodes).start()
    }

    /// A server for `nodes` with the test identity (`test-server`), `info`
    /// logs and the suite's isolation mode, until the builder says otherwise.
    pub fn builder(nodes: &NodesDir) -> ServerBuilder<'_> {
        ServerBuilder {
            nodes,
            config: String::new(),
            env: Vec::new(),
            rust_log: "info".to_owned(),
            isolated: false,
        }
    }

    /// Starts the server as a user would: in `project` (the current
    /// directory), with `--config config.toml` and the paths in it relative.
    /// It may build node crates before it is ready: waits up to BUILD_PATIENCE.
    pub fn in_project(project: &Path) -> Self {
        let mut command = server_command(Path::new("config.toml"));
        command.current_dir(project).arg("--port").arg("0");
        Self::spawn(command, tempfile::tempdir().unwrap(), BUILD_PATIENCE)
    }

    /// Starts the server from a command the test made (e.g. with
    /// [`server_command_bare`]); it must make the server print its address.
    pub fn from_command(command: Command) -> Self {
        Self::spawn(command, tempfile::tempdir().unwrap(), PATIENCE)
    }

    /// The worker processes alive now (children running `nano-server worker`),
    /// as (pid, library).
    pub fn workers(&self) -> Vec<(u32, String)> {
        let parent = self.child.id();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The fields after the command name, which may hold spaces.
            let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                continue;
            };
            let ppid: u32 = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            if ppid != parent {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a == "worker") {
                let library = args
                    .iter()
                    .position(|a| a == "--library")
                    .and_then(|i| args.get(i + 1))
                    .cloned()
                    .unwrap_or_default();
                found.push((pid, library));
            }
        }
        found
    }

    /// Resident memory of the server and its workers together, in KiB.
    pub fn total_rss_kib(&self) -> u64 {
        self.total_status_kib("VmRSS:")
    }

    /// Anonymous resident memory (the heap: what a leak grows) of the server
    /// and its workers together, in KiB. Unlike `total_rss_kib` it leaves
    /// out the binary's code pages, which fault in as code runs for the
    /// first time, sooner or later depending on load.
    pub fn total_anon_kib(&self) -> u64 {
        self.total_status_kib("RssAnon:")
    }

    fn total_status_kib(&self, field: &str) -> u64 {
        let kib = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(field))
                        .and_then(|v| v.split_whitespace().next().and_then(|k| k.parse::<u64>().ok()))
                })
                .unwrap_or(0)
        };
        kib(self.child.id()) + self.workers().iter().map(|(pid, _)| kib(*pid)).sum::<u64>()
    }

    /// Sends SIGKILL to the server (and waits for it to be gone).
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sets the peak resident memory (`VmHWM`) of the server and its
    /// workers back to what they hold now, so a later peak is a growth.
    pub fn reset_peak_rss(&self) {
        for pid in std::iter::once(self.child.id()).chain(self.workers().into_iter().map(|(pid, _)| pid)) {
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        }
    }

    /// Peak resident memory of the server and its workers together since
    /// [`reset_peak_rss`](Self::reset_peak_rss), in KiB.
    pub fn total_peak_rss_kib(&self) -> u64 {
        std::iter::once(self.child.id())
            .chain(self.workers().into_iter().map(|(pid, _)| pid))
            .map(|pid| proc_status_kib(pid, "VmHWM:"))
            .sum()
    }

    fn spawn(mut command: Command, config_dir: tempfile::TempDir, patience: Duration) -> Self {
        install_tls_provider();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nano-server starts");

        let logs = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let sink = Arc::clone(&logs);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let (text, changed) = &*sink;
                let mut text = text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                changed.notify_all();
            }
        });

        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut port = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("nano-server listening on http://") {
                    port = address.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                }
                if line == "[NANOSERVER_READY]" {
                    let _ = ready_tx.send(port);
                }
            }
        });
        let port = match ready_rx.recv_timeout(patience) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                panic!("server not ready ({other:?}); logs:\n{}", logs.0.lock().unwrap());
            }
        };
        Self {
            child,
            port,
            logs,
            _config: config_dir,
        }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    pub async fn status_document(&self) -> Value {
        reqwest::get(self.http("/")).await.unwrap().json().await.unwrap()
    }

    pub fn logs(&self) -> String {
        self.logs.0.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; returns that log line.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_log_within(needle, PATIENCE)
    }

    /// [`wait_for_log`](Self::wait_for_log) with its own patience.
    pub fn wait_for_log_within(&self, needle: &str, patience: Duration) -> String {
        let (text, changed) = &*self.logs;
        let (text, timeout) = changed
            .wait_timeout_while(text.lock().unwrap(), patience, |t| !t.contains(needle))
            .unwrap();
        assert!(!timeout.timed_out(), "log never contained {needle:?}; logs:\n{text}");
        text.lines().find(|l| l.contains(needle)).unwrap().to_owned()
    }

    /// Waits until the log contains `needle` at least `count` times.
    pub fn wait_for_log_count(&self, needle: &str, count: usize) {
        let (text, changed) = &*self.logs;
        let (text, timeout) = changed
            .wait_timeout_while(text.lock().unwrap(), PATIENCE, |t| t.matches(needle).count() < count)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "log never had {count} × {needle:?}; logs:\n{text}"
        );
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends SIGINT (what Ctrl-C sends).
    pub fn interrupt(&self) {
        self.signal("INT");
    }

    /// Sends SIGHUP (what a closed terminal sends).
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The server's resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    /// The server's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_field("VmHWM:")
    }

    fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self) -> i32 {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(std::time::Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of one Prometheus sample, e.g.
    /// `nano_executions_total{node="simple-text",outcome="complete"}` (0 if absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = reqwest::get(self.http("/metrics")).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server binary, with the orchestrator's variables cleared so the
/// test's environment cannot leak in.
pub fn server_command(config: &Path) -> Command {
    server_command_in(config, isolation_override())
}

/// The server command with `--isolation isolation` (if any).
fn server_command_in(config: &Path, isolation: Option<String>) -> Command {
    let mut command = command_without_config(isolation);
    command.arg("--config").arg(config);
    command
}

/// The server binary without `--config` (it picks its file), with the
/// orchestrator's variables cleared and `NANO_TEST_ISOLATION` applied.
pub fn server_command_bare() -> Command {
    command_without_config(isolation_override())
}

fn command_without_config(isolation: Option<String>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nano-server"));
    command.env("RUST_LOG", "info").env("RUST_BACKTRACE", "0");
    if let Some(mode) = isolation {
        command.arg("--isolation").arg(mode);
    }
    for var in [
        "PORT",
        "DOMAIN",
        "SERVER_UID",
        "SERVER_DISPLAY_NAME",
        "SERVER_PACKAGE_ID",
        "NANOCORE_HTTP_ENDPOINT",
        "NANOCORE_ENDPOINT",
    ] {
        command.env_remove(var);
    }
    command
}

/// Runs the binary to completion: (exit code, stdout, stderr).
pub fn run_server_to_exit(command: &mut Command) -> (i32, String, String) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), stdout, stderr)
}
