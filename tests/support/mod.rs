//! Shared by the end-to-end tests: builds the real plugins, starts the real
//! `nano-server` binary on a free port, and talks to it over real sockets.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex, OnceLock, mpsc},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

/// How long any single awaited event may take before the test fails.
/// Generous: it only bounds how long a failing test hangs, and builds of
/// node crates under a fully parallel test run on 2 cores take a while.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// For waits that include a cargo build of a node crate: on a fresh machine
/// the first one compiles the plugin's dependencies.
pub const BUILD_PATIENCE: Duration = Duration::from_secs(600);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The folder holding the server binary (target/debug or target/release).
fn artifact_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_nano-server"))
        .parent()
        .unwrap()
        .to_owned()
}

const PLUGIN_CRATES: &[&str] = &[
    "simple_text_node",
    "complex_math_node",
    "progress_node",
    "image_resize_node",
    "asset_digest_node",
    "test_plugin",
    "init_panic_plugin",
    "not_a_plugin",
    "node-template",
    "swap_v1",
    "swap_v2",
    "assets_plugin",
];

/// Builds every plugin the tests use (a no-op when up to date) and returns
/// the folder the libraries are in.
fn built_plugins() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = artifact_dir();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut build = Command::new(env!("CARGO"));
        build.arg("build").current_dir(workspace_root());
        for name in PLUGIN_CRATES {
            build.args(["-p", name]);
        }
        if release {
            build.arg("--release");
        }
        run(&mut build, "building the test plugins");

        let mut foreign = Command::new(env!("CARGO"));
        foreign
            .args([
                "build",
                "--manifest-path",
                "tests/plugins/foreign_abi_plugin/Cargo.toml",
                "--target-dir",
            ])
            .arg(dir.parent().unwrap().join("foreign-abi"))
            .current_dir(workspace_root());
        run(&mut foreign, "building the foreign-ABI test plugin");

        let mut old = Command::new(env!("CARGO"));
        old.args([
            "build",
            "--manifest-path",
            "tests/plugins/abi_0_1_0_plugin/Cargo.toml",
            "--target-dir",
        ])
        .arg(dir.parent().unwrap().join("old-abi"))
        .current_dir(workspace_root());
        run(&mut old, "building the plugin frozen at nano-plugin-abi 0.1.0");

        let mut fault = Command::new(env!("CARGO"));
        fault
            .args([
                "build",
                "--manifest-path",
                "tests/plugins/fault_plugin/Cargo.toml",
                "--target-dir",
            ])
            .arg(dir.parent().unwrap().join("fault"))
            .current_dir(workspace_root());
        run(&mut fault, "building the fault plugin (panic = \"abort\")");
        dir
    })
}

fn run(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// The isolation mode the end-to-end tests run the server in:
/// `NANO_TEST_ISOLATION=in-process` runs the whole suite in-process (CI
/// runs it both ways); otherwise the default, `process`.
pub fn isolation_override() -> Option<String> {
    std::env::var("NANO_TEST_ISOLATION")
        .ok()
        .filter(|mode| !mode.is_empty())
}

/// Whether the suite runs in process isolation (the default).
pub fn process_isolation() -> bool {
    isolation_override().is_none_or(|mode| mode == "process")
}

/// The node uids a status document (`GET /`) lists, sorted.
pub fn uids(doc: &Value) -> Vec<String> {
    let mut uids: Vec<String> = doc["nodeUIDs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    uids.sort();
    uids
}

/// The built library of a workspace plugin crate, e.g. `simple_text_node`.
pub fn plugin(crate_name: &str) -> PathBuf {
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    built_plugins().join(file)
}

/// The library built against nano-plugin-abi 0.2.0 with another layout.
pub fn foreign_abi_plugin() -> PathBuf {
    let dir = built_plugins().parent().unwrap().join("foreign-abi").join("debug");
    dir.join(format!(
        "{}nano_plugin_abi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// The plugin whose nodes crash, abort, exit, overflow their stack, leak or
/// hang on purpose (built with `panic = "abort"`).
pub fn fault_plugin() -> PathBuf {
    let dir = built_plugins().parent().unwrap().join("fault").join("debug");
    dir.join(format!(
        "{}nano_fault_plugin{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// The server's reqwest is built with rustls and no provider of its own
/// (it uses ring), and features are shared with the tests' reqwest: every
/// client in a test process needs the provider installed first. Every test
/// starts a server before it makes a request, so [`Server`] does it.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Field `field` (e.g. `VmRSS:`) of `/proc/<pid>/status`, in KiB; 0 when
/// the process is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// The library built against nano-plugin-abi 0.1.0, before `shutdown`.
pub fn abi_0_1_0_plugin() -> PathBuf {
    let dir = built_plugins().parent().unwrap().join("old-abi").join("debug");
    dir.join(format!(
        "{}nano_plugin_abi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

pub fn lib_name(stem: &str) -> String {
    format!("{}{stem}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// A temporary nodes folder.
pub struct NodesDir {
    pub dir: tempfile::TempDir,
}

impl NodesDir {
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The three example nodes, in the seed's folder layout.
    pub fn examples() -> Self {
        Self::empty()
            .with_plugin("processing/simple_text_node", "simple_text_node")
            .with_plugin("processing/complex_math_node", "complex_math_node")
            .with_plugin("utility/progress_node", "progress_node")
    }

    /// Copies plugin `crate_name` into `folder` under its library name.
    pub fn with_plugin(self, folder: &str, crate_name: &str) -> Self {
        let file = plugin(crate_name);
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        self.with_file(&format!("{folder}/{name}"), &std::fs::read(&file).unwrap())
    }

    pub fn with_file(self, relative: &str, bytes: &[u8]) -> Self {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A running `nano-server` process, killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    logs: Arc<(Mutex<String>, Condvar)>,
    _config: tempfile::TempDir,
}

impl Server {
    /// Starts the server on a free port serving `nodes`.
    pub fn start(nodes: &NodesDir) -> Self {
        Self::start_with(nodes, "")
    }

    /// Like [`start`](Self::start), with extra config.toml lines.
    pub fn start_with(nodes: &NodesDir, extra_config: &str) -> Self {
        Self::start_logging(nodes, extra_config, "info")
    }

    /// Starts the server as a user would: in `project` (the current
    /// directory), with `--config config.toml` and the paths in it relative.
    /// It may build node crates before it is ready: waits up to BUILD_PATIENCE.
    pub fn start_in(project: &Path) -> Self {
        let mut command = server_command(Path::new("config.toml"));
        command.current_dir(project).arg("--port").arg("0");
        Self::spawn(command, tempfile::tempdir().unwrap(), BUILD_PATIENCE)
    }

    /// Starts the server from a command the test made (e.g. with
    /// [`server_command_bare`]); it must make the server print its address.
    pub fn start_command(command: Command) -> Self {
        Self::spawn(command, tempfile::tempdir().unwrap(), PATIENCE)
    }

    /// In process isolation whatever `NANO_TEST_ISOLATION` says, with extra
    /// environment variables (inherited by its workers).
    pub fn start_isolated(nodes: &NodesDir, extra_config: &str, env: &[(&str, &str)]) -> Self {
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!("server_uid = \"test-server\"\nisolation = \"process\"\n{extra_config}\n"),
        )
        .unwrap();
        let mut command = server_command_in(&config, Some("process".to_owned()));
        command.arg("--port").arg("0").arg("--nodes-path").arg(nodes.path());
        for (name, value) in env {
            command.env(name, value);
        }
        Self::spawn(command, config_dir, PATIENCE)
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
        let rss = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next().and_then(|k| k.parse::<u64>().ok()))
                })
                .unwrap_or(0)
        };
        rss(self.child.id()) + self.workers().iter().map(|(pid, _)| rss(*pid)).sum::<u64>()
    }

    /// Sends SIGKILL to the server (and waits for it to be gone).
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Like [`start_with`](Self::start_with), with extra environment
    /// variables (inherited by its workers).
    pub fn start_env(nodes: &NodesDir, extra_config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_full(nodes, extra_config, "info", env)
    }

    /// Like [`start_with`](Self::start_with), with a `RUST_LOG` filter.
    pub fn start_logging(nodes: &NodesDir, extra_config: &str, rust_log: &str) -> Self {
        Self::start_full(nodes, extra_config, rust_log, &[])
    }

    fn start_full(nodes: &NodesDir, extra_config: &str, rust_log: &str, env: &[(&str, &str)]) -> Self {
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "domain = \"test.nanograph\"\nserver_name = \"Test Server\"\nserver_uid = \"test-server\"\n\
                 server_package_id = \"test-package\"\n{extra_config}\n"
            ),
        )
        .unwrap();
        let mut command = server_command(&config);
        command
            .arg("--port")
            .arg("0")
            .arg("--nodes-path")
            .arg(nodes.path())
            .env("RUST_LOG", rust_log);
        for (name, value) in env {
            command.env(name, value);
        }
        Self::spawn(command, config_dir, PATIENCE)
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

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// A `request_execution` frame; `params` maps parameter names to values.
pub fn request(instance: &str, node_id: Value, uid: &str, inputs: Value, params: Value) -> Value {
    let parameters: Vec<Value> = params
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "type": "request_execution",
        "serverUid": "orchestrator",
        "instanceId": instance,
        "payload": {
            "nodeId": node_id,
            "nodeUid": uid,
            "graphNode": {"id": node_id, "uid": uid, "parameters": parameters, "x": 10, "y": 20},
            "inputs": inputs,
        }
    })
}

/// A WebSocket client speaking the Nano protocol.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    pub handshake: Value,
    /// Frames received while waiting for something else.
    backlog: Vec<Value>,
}

impl Client {
    pub async fn connect(server: &Server) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .expect("WebSocket connects");
        let mut client = Self {
            ws,
            handshake: Value::Null,
            backlog: Vec::new(),
        };
        client.handshake = client.next_frame().await;
        assert_eq!(client.handshake["type"], "handshake");
        client
    }

    /// Connects with extra request headers; the HTTP status on refusal.
    pub async fn try_connect(server: &Server, headers: &[(&str, &str)]) -> Result<Self, u16> {
        use tokio_tungstenite::tungstenite::{
            Error,
            client::IntoClientRequest,
            http::{HeaderName, HeaderValue},
        };
        let mut request = server.ws_url().into_client_request().unwrap();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            request
                .headers_mut()
                .insert(name, HeaderValue::from_str(value).unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => {
                let mut client = Self {
                    ws,
                    handshake: Value::Null,
                    backlog: Vec::new(),
                };
                client.handshake = client.next_frame().await;
                Ok(client)
            }
            Err(Error::Http(response)) => Err(response.status().as_u16()),
            Err(other) => panic!("WebSocket connect failed: {other}"),
        }
    }

    /// The next raw message (close frames included), for limit tests.
    pub async fn next_message(&mut self) -> Option<Message> {
        tokio::time::timeout(PATIENCE, self.ws.next())
            .await
            .expect("a message in time")
            .map(|m| m.expect("the message reads"))
    }

    pub async fn send(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// The next text frame from the wire, as JSON.
    async fn next_frame(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame arrives in time")
                .expect("the connection stays open")
                .expect("the frame reads");
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).expect("server frames are JSON");
                }
                Message::Close(frame) => panic!("server closed the connection: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame matching `pred`, keeping the others for later.
    pub async fn recv_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        loop {
            let frame = self.next_frame().await;
            if pred(&frame) {
                return frame;
            }
            self.backlog.push(frame);
        }
    }

    /// The next frame of any kind (backlog first).
    pub async fn recv(&mut self) -> Value {
        self.recv_where(|_| true).await
    }

    /// The next status of execution (instance, node_id).
    pub async fn next_status(&mut self, instance: &str, node_id: &Value) -> Value {
        let frame = self
            .recv_where(|f| {
                f["type"] == "node_status" && f["instanceId"] == instance && &f["payload"]["nodeId"] == node_id
            })
            .await;
        frame["payload"]["status"].clone()
    }

    /// Every status of one execution, up to and including the final one.
    pub async fn statuses_until_final(&mut self, instance: &str, node_id: &Value) -> Vec<Value> {
        let mut statuses = Vec::new();
        loop {
            let status = self.next_status(instance, node_id).await;
            let done = is_final(&status);
            statuses.push(status);
            if done {
                return statuses;
            }
        }
    }

    /// Runs one execution and returns all its statuses.
    pub async fn execute(&mut self, uid: &str, inputs: Value, params: Value) -> Vec<Value> {
        let instance = format!("inst-{}", rand_suffix());
        self.send(&request(&instance, json!(1), uid, inputs, params)).await;
        self.statuses_until_final(&instance, &json!(1)).await
    }

    /// Frames received but not yet consumed.
    pub fn backlog(&self) -> &[Value] {
        &self.backlog
    }

    /// Reads until the server's close frame; its code (fails the test if
    /// the connection ends without one).
    pub async fn close_code(&mut self) -> tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode {
        loop {
            match self.next_message().await {
                Some(Message::Close(Some(frame))) => return frame.code,
                Some(Message::Close(None)) | None => panic!("closed without a close frame"),
                Some(_) => continue,
            }
        }
    }

    /// The raw WebSocket, for tests that read and write on their own.
    pub fn into_inner(self) -> WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>> {
        self.ws
    }
}

/// Polls `condition` until it holds (or fails the test after PATIENCE).
/// For state that is only visible by asking, e.g. a metric.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(std::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn is_final(status: &Value) -> bool {
    status["type"] == "complete" || status["type"] == "error"
}

/// The final status of a list of statuses.
pub fn final_status(statuses: &[Value]) -> &Value {
    let last = statuses.last().expect("at least one status");
    assert!(is_final(last), "last status is final: {statuses:?}");
    last
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) * 1000 + std::process::id() as u64 % 1000
}

impl Client {
    /// The next `definitions_update`.
    pub async fn next_update(&mut self) -> Value {
        self.recv_where(|f| f["type"] == "definitions_update").await
    }
}

/// The uids of a handshake or definitions_update, sorted.
pub fn definition_uids(frame: &Value) -> Vec<String> {
    let mut uids: Vec<String> = frame["payload"]["nodeDefinitions"]
        .as_array()
        .expect("nodeDefinitions")
        .iter()
        .map(|d| d["uid"].as_str().unwrap().to_owned())
        .collect();
    uids.sort();
    uids
}

/// The version of node `uid` in a handshake or definitions_update.
pub fn definition_version(frame: &Value, uid: &str) -> Option<String> {
    frame["payload"]["nodeDefinitions"]
        .as_array()?
        .iter()
        .find(|d| d["uid"] == uid)
        .map(|d| d["version"].as_str().unwrap_or_default().to_owned())
}
