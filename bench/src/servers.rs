//! Starting the servers under test and watching them: time to
//! `[NANOSERVER_READY]`, the address they listen on, their RSS.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS not found")
}

/// A port that was free a moment ago, for servers that need one given.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A nano-server config serving `nodes` on a free port.
pub fn write_config(dir: &Path, nodes: &Path) -> anyhow::Result<std::path::PathBuf> {
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
