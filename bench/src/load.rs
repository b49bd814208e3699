//! The load generator: drives a node server with `simple-text` executions
//! (`uppercase = true`) over the Nano WebSocket protocol or the HTTP execute
//! route, checks every answer, and measures throughput and latency.
//!
//! The same code measures every server in a run (nano-server, the Python
//! SDK, the bare floor), so the client's own cost is the same for each.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    frames::{TextOutputs, final_status, histogram, http_body, is_right, request_frame},
    servers::tree_cpu,
};

/// How hard to push.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Connections (WebSocket) or concurrent request loops (HTTP: each
    /// request in flight needs its own HTTP/1.1 connection, so HTTP opens
    /// `connections × in_flight` of them).
    pub connections: usize,
    /// Executions in flight per connection.
    pub in_flight: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Load applied first and not measured.
    pub warmup: Duration,
    /// The server's process, to measure the CPU it and its child processes
    /// (process isolation's workers) spend in the window (Linux `/proc`),
    /// when known.
    pub server_pid: Option<u32>,
    /// A fresh workflow instance id for every execution (an orchestrator
    /// starting new workflows), instead of one per connection (reused).
    pub fresh_instances: bool,
}

/// What one measurement found.
#[derive(Clone, Debug)]
pub struct Report {
    /// Executions answered correctly within the measured window.
    pub executions: u64,
    /// Wrong answers, error statuses, HTTP failures (any phase).
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    /// CPU time (user + system) the server used in the window, its worker
    /// processes included.
    pub server_cpu: Option<Duration>,
    /// Of `server_cpu`, what its worker processes used (`None` when it had
    /// none: in-process, or another server).
    pub worker_cpu: Option<Duration>,
}

impl Report {
    pub fn per_second(&self) -> f64 {
        self.executions as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU (its workers' included) per execution, in microseconds.
    pub fn cpu_us_per_execution(&self) -> Option<f64> {
        self.per_execution_us(self.server_cpu?)
    }

    /// The workers' share of [`Self::cpu_us_per_execution`].
    pub fn worker_cpu_us_per_execution(&self) -> Option<f64> {
        self.per_execution_us(self.worker_cpu?)
    }

    fn per_execution_us(&self, cpu: Duration) -> Option<f64> {
        (self.executions > 0).then(|| cpu.as_secs_f64() * 1e6 / self.executions as f64)
    }

    /// A latency quantile in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }
}

/// The measurement window, shared by every connection.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn new(load: &Load) -> Self {
        let start = Instant::now() + load.warmup;
        Self {
            start,
            end: start + load.duration,
        }
    }

    fn counts(&self, sent: Instant, now: Instant) -> bool {
        sent >= self.start && now <= self.end
    }
}

/// CPU time in the window: (the server and its workers together, the
/// workers' share). The workers' share is `None` when the server had no
/// child process at either reading (in-process, or another server).
type WindowCpu = (Duration, Option<Duration>);

/// The CPU time the server and its worker processes spent between the
/// window's start and end.
async fn cpu_in_window(pid: u32, window: Window) -> Option<WindowCpu> {
    tokio::time::sleep_until(window.start.into()).await;
    let before = tree_cpu(pid)?;
    tokio::time::sleep_until(window.end.into()).await;
    let after = tree_cpu(pid)?;
    let workers = (before.live_workers + after.live_workers > 0).then(|| after.workers.saturating_sub(before.workers));
    Some((after.total().saturating_sub(before.total()), workers))
}

/// What one connection (or HTTP lane) counted: executions, errors, latencies.
type Tally = (u64, u64, Histogram<u64>);

/// Sums the connections' tallies and the server's CPU into one report.
async fn gather(
    window: Window,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Tally>>>,
    cpu: Option<tokio::task::JoinHandle<Option<WindowCpu>>>,
) -> anyhow::Result<Report> {
    let mut report = Report {
        executions: 0,
        errors: 0,
        elapsed: window.end - window.start,
        latency: histogram(),
        server_cpu: None,
        worker_cpu: None,
    };
    for task in tasks {
        let (executions, errors, latency) = task.await??;
        report.executions += executions;
        report.errors += errors;
        report.latency.add(latency)?;
    }
    if let Some((total, workers)) = match cpu {
        Some(cpu) => cpu.await?,
        None => None,
    } {
        report.server_cpu = Some(total);
        report.worker_cpu = workers;
    }
    Ok(report)
}

/// Drives `url` (`ws://host:port/`) over the Nano WebSocket protocol.
pub async fn websocket(url: &str, load: Load) -> anyhow::Result<Report> {
    let window = Window::new(&load);
    let cpu = load.server_pid.map(|pid| tokio::spawn(cpu_in_window(pid, window)));
    let mut tasks = Vec::new();
    for c in 0..load.connections {
        let url = url.to_owned();
        tasks.push(tokio::spawn(ws_connection(
            url,
            c,
            load.in_flight,
            load.fresh_instances,
            window,
        )));
    }
    gather(window, tasks, cpu).await
}

async fn ws_connection(
    url: String,
    connection: usize,
    in_flight: usize,
    fresh_instances: bool,
    window: Window,
) -> anyhow::Result<Tally> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(&url, None, true)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let (mut sink, mut stream) = ws.split();
    let reused = format!("load-{connection}");
    let instance = |n: u64| {
        if fresh_instances {
            format!("load-{connection}-{n}")
        } else {
            reused.clone()
        }
    };
    let mut latency = histogram();
    let (mut executions, mut errors) = (0u64, 0u64);
    let mut pending: HashMap<u64, Instant> = HashMap::with_capacity(in_flight * 2);
    let mut next = 0u64;
    for _ in 0..in_flight {
        sink.send(Message::text(request_frame(&instance(next), next))).await?;
        pending.insert(next, Instant::now());
        next += 1;
    }
    // After the window, no new requests; the ones in flight may finish.
    let drain_until = window.end + Duration::from_secs(30);
    while !pending.is_empty() {
        let message = match tokio::time::timeout_at(drain_until.into(), stream.next()).await {
            Ok(Some(message)) => message?,
            Ok(None) => bail!("{url}: the server closed the connection"),
            Err(_) => bail!("{url}: {} executions never finished", pending.len()),
        };
        let Message::Text(text) = message else { continue };
        let status = match final_status(text.as_str()) {
            Ok(Some(status)) => status,
            Ok(None) => continue,
            Err(err) => bail!("{url}: unreadable frame ({err}): {}", text.as_str()),
        };
        let n = status.node_id;
        let now = Instant::now();
        let Some(sent) = pending.remove(&n) else {
            errors += 1; // a second final status, or one for nothing asked
            continue;
        };
        if status.is_right() {
            if window.counts(sent, now) {
                executions += 1;
                latency.saturating_record((now - sent).as_micros() as u64);
            }
        } else {
            errors += 1;
            if errors <= 3 {
                eprintln!("wrong answer to {n}: {} {:?}", status.kind, status.message);
            }
        }
        if now < window.end {
            sink.send(Message::text(request_frame(&instance(next), next))).await?;
            pending.insert(next, Instant::now());
            next += 1;
        }
    }
    let _ = sink.close().await;
    Ok((executions, errors, latency))
}

#[derive(Deserialize)]
struct HttpAnswer {
    status: String,
    #[serde(default)]
    outputs: Option<TextOutputs>,
}

/// Drives `base` (`http://host:port`) with `POST /nodes/simple-text/execute`.
pub async fn http(base: &str, load: Load) -> anyhow::Result<Report> {
    let window = Window::new(&load);
    let authority = base
        .strip_prefix("http://")
        .context("base must start with http://")?
        .trim_end_matches('/')
        .to_owned();
    let cpu = load.server_pid.map(|pid| tokio::spawn(cpu_in_window(pid, window)));
    let mut tasks = Vec::new();
    for c in 0..load.connections * load.in_flight {
        tasks.push(tokio::spawn(http_connection(authority.clone(), c as u64, window)));
    }
    gather(window, tasks, cpu).await
}

async fn http_connection(authority: String, lane: u64, window: Window) -> anyhow::Result<Tally> {
    use http_body_util::{BodyExt, Full};
    use hyper::{Request, body::Bytes};

    let stream = tokio::net::TcpStream::connect(&authority).await?;
    stream.set_nodelay(true)?;
    let (mut sender, mut connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(stream)).await?;
    let mut latency = histogram();
    let (mut executions, mut errors) = (0u64, 0u64);
    // Numbers unique across lanes, so each answer is checked against its own input.
    let mut n = lane << 40;
    while Instant::now() < window.end {
        n += 1;
        let body = http_body(n);
        let request = Request::post("/nodes/simple-text/execute")
            .header("host", &authority)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let sent = Instant::now();
        // The connection is driven in this task too (no task per connection
        // and no wake-ups between the two): the generator stays light, so
        // the CPU it shares with the server goes to the server.
        let exchange = async {
            let response = sender.send_request(request).await?;
            let ok = response.status() == hyper::StatusCode::OK;
            let bytes = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((ok, bytes))
        };
        let (ok, bytes) = tokio::select! {
            biased;
            exchange = exchange => exchange?,
            closed = &mut connection => bail!("the server closed the connection: {closed:?}"),
        };
        let now = Instant::now();
        let right = ok
            && serde_json::from_slice::<HttpAnswer>(&bytes)
                .is_ok_and(|answer| is_right(n, &answer.status, answer.outputs.as_ref()));
        if !right {
            errors += 1;
            if errors <= 3 {
                eprintln!("wrong HTTP answer to {n}: {}", String::from_utf8_lossy(&bytes));
            }
        } else if window.counts(sent, now) {
            executions += 1;
            latency.saturating_record((now - sent).as_micros() as u64);
        }
    }
    Ok((executions, errors, latency))
}
