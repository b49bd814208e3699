//! Soak test: minutes of mixed WebSocket and HTTP load against the real
//! server (process isolation, its default), with hot swaps, malformed
//! frames, stops, clients that leave mid-execution and crashes (a worker
//! killed with SIGKILL every few seconds). Checks that every accepted
//! execution of a client that stayed got exactly one right final status
//! (the crash error is right for a node whose worker was killed), and that
//! the RSS of the server and its workers together stays flat: the last
//! sample within 10% of the sample at a quarter of the run.
//!
//! Usage: soak <nano-server> <seconds> <libs dir>   (see bench/soak.sh)

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use nano_bench::{
    servers::{descendants, tree_rss},
    stamp::commit_stamp,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

/// Decides whether a final status is the right answer.
type Check = Box<dyn Fn(&Value) -> bool + Send>;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Default)]
struct Tally {
    executions: AtomicU64,
    http: AtomicU64,
    stops: AtomicU64,
    leavers: AtomicU64,
    malformed: AtomicU64,
    swaps: AtomicU64,
    /// Workers killed, and executions that ended with their crash error.
    crashes: AtomicU64,
    crashed_executions: AtomicU64,
    /// Wrong answers, missing or duplicate final statuses: must stay 0.
    failures: AtomicU64,
}

fn lib(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: soak <nano-server> <seconds> <dir with the built plugin libraries>");
    }
    let seconds: u64 = args[2].parse()?;
    // First line of the output (bench/results/soak.txt): what was measured.
    println!("{}", commit_stamp());
    let libs = PathBuf::from(&args[3]);
    let dir = tempfile::tempdir()?;
    let nodes = dir.path().join("nodes");
    for (folder, stem) in [
        ("processing/simple_text_node", "simple_text_node"),
        ("utility/progress_node", "progress_node"),
        ("test/test_plugin", "test_plugin"),
    ] {
        std::fs::create_dir_all(nodes.join(folder))?;
        std::fs::copy(lib(&libs, stem), lib(&nodes.join(folder), stem))?;
    }
    let versions = [
        std::fs::read(lib(&libs, "swap_v1"))?,
        std::fs::read(lib(&libs, "swap_v2"))?,
    ];
    let swap_path = lib(&nodes.join("test/swap"), "swap");
    std::fs::create_dir_all(swap_path.parent().unwrap())?;
    std::fs::write(&swap_path, &versions[0])?;
    std::fs::write(
        dir.path().join("config.toml"),
        "server_uid = \"soak\"\nport = 0\nwatch_debounce_time = 200\nmax_concurrent_executions = 16\n",
    )?;

    let mut child = tokio::process::Command::new(&args[1])
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("pid")?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut port = 0;
    while let Some(line) = lines.next_line().await? {
        if let Some(address) = line.strip_prefix("nano-server listening on http://") {
            port = address.rsplit(':').next().unwrap().parse()?;
        }
        if line == "[NANOSERVER_READY]" {
            break;
        }
    }
    let url = format!("ws://127.0.0.1:{port}/");
    let http = format!("http://127.0.0.1:{port}");
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tree_kib = || tree_rss(pid).map(|t| t.total_kib()).unwrap_or(0);
    let rss_start = tree_kib();
    println!("soak: {seconds} s against pid {pid} on port {port}; RSS (server + workers) at start {rss_start} KiB");

    let mut tasks = Vec::new();
    for worker in 0..6 {
        tasks.push(tokio::spawn(ws_worker(
            url.clone(),
            worker,
            deadline,
            Arc::clone(&tally),
        )));
    }
    tasks.push(tokio::spawn(http_worker(http.clone(), deadline, Arc::clone(&tally))));
    tasks.push(tokio::spawn(stopper(url.clone(), deadline, Arc::clone(&tally))));
    tasks.push(tokio::spawn(leaver(url.clone(), deadline, Arc::clone(&tally))));
    tasks.push(tokio::spawn(malformed(url.clone(), deadline, Arc::clone(&tally))));
    let swapper = {
        let tally = Arc::clone(&tally);
        tokio::spawn(async move {
            let mut i = 1;
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let staging = swap_path.with_extension("staging");
                std::fs::write(&staging, &versions[i % 2]).unwrap();
                std::fs::rename(&staging, &swap_path).unwrap();
                tally.swaps.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<(), anyhow::Error>(())
        })
    };
    tasks.push(swapper);
    tasks.push(tokio::spawn(crasher(pid, deadline, Arc::clone(&tally))));
    let every = Duration::from_secs((seconds / 20).max(1));
    let mut progress = tokio::time::interval(every);
    progress.tick().await;
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let report = async {
        loop {
            progress.tick().await;
            let at = seconds.saturating_sub(deadline.saturating_duration_since(Instant::now()).as_secs());
            let rss = tree_kib();
            samples.push((at, rss));
            println!(
                "  {at:>4} s: {} executions, RSS (server + workers) {rss} KiB, crashes {}, failures {}",
                tally.executions.load(Ordering::Relaxed) + tally.http.load(Ordering::Relaxed),
                tally.crashes.load(Ordering::Relaxed),
                tally.failures.load(Ordering::Relaxed)
            );
        }
    };
    tokio::select! {
        _ = futures_util::future::join_all(tasks) => {},
        () = report => {},
    }
    let rss_end = tree_kib();
    let alive = child.try_wait()?.is_none();
    let t = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!("soak done after {seconds} s:");
    println!("  WebSocket executions checked: {}", t(&tally.executions));
    println!("  HTTP executions checked:      {}", t(&tally.http));
    println!("  stops (ack + one final):      {}", t(&tally.stops));
    println!("  clients that left mid-run:    {}", t(&tally.leavers));
    println!("  malformed frames sent:        {}", t(&tally.malformed));
    println!("  hot swaps:                    {}", t(&tally.swaps));
    println!(
        "  workers killed (SIGKILL):     {} ({} executions ended with the crash error)",
        t(&tally.crashes),
        t(&tally.crashed_executions)
    );
    println!(
        "  failures (wrong, missing or duplicate final status): {}",
        t(&tally.failures)
    );
    println!("  RSS (server + workers): {rss_start} KiB at start, {rss_end} KiB at end; server alive: {alive}");
    // Flat: the last sample within 10% of the one at a quarter of the run
    // (the first quarter warms up: allocator, connection pools, workers).
    let quarter = samples.iter().find(|(at, _)| *at >= seconds / 4).map(|(_, rss)| *rss);
    let flat = match (quarter, samples.last()) {
        (Some(quarter), Some((_, last))) => {
            let ratio = *last as f64 / quarter as f64;
            println!("  flat: last sample / sample at a quarter = {last} / {quarter} KiB = {ratio:.3} (bound 1.10)");
            ratio <= 1.10
        }
        _ => {
            println!("  flat: too short a run to tell");
            true
        }
    };
    if t(&tally.failures) > 0 || !alive || !flat {
        bail!("soak failed");
    }
    Ok(())
}

fn request(instance: &str, node_id: u64, uid: &str, inputs: Value, params: Value) -> String {
    let parameters: Vec<Value> = params
        .as_object()
        .map(|m| m.iter().map(|(k, v)| json!({"name": k, "value": v})).collect())
        .unwrap_or_default();
    json!({"type": "request_execution", "instanceId": instance,
           "payload": {"nodeId": node_id, "nodeUid": uid, "inputs": inputs,
                       "graphNode": {"id": node_id, "parameters": parameters}}})
    .to_string()
}

async fn connect(url: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.next().await.context("handshake")??;
    Ok(ws)
}

/// Reads frames until the final status of `instance`; counts any final
/// status of another (earlier, finished) instance as a duplicate.
async fn final_of(ws: &mut Ws, instance: &str, finished: &mut HashMap<String, u32>) -> anyhow::Result<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .context("no final status within 60 s")?
            .context("closed")??;
        let Message::Text(text) = frame else { continue };
        let frame: Value = serde_json::from_str(text.as_str())?;
        if frame["type"] != "node_status" {
            continue;
        }
        let status = &frame["payload"]["status"];
        if status["type"] != "complete" && status["type"] != "error" {
            continue;
        }
        let id = frame["instanceId"].as_str().unwrap_or_default().to_owned();
        *finished.entry(id.clone()).or_default() += 1;
        if id == instance {
            return Ok(status.clone());
        }
    }
}

async fn ws_worker(url: String, worker: u64, deadline: Instant, tally: Arc<Tally>) -> anyhow::Result<()> {
    let mut ws = connect(&url).await?;
    let mut finished = HashMap::new();
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let instance = format!("w{worker}-{n}");
        let (frame, check): (String, Check) = match n % 5 {
            0 => (
                request(
                    &instance,
                    n,
                    "simple-text",
                    json!({"text": [format!("t{n}")]}),
                    json!({"uppercase": true}),
                ),
                Box::new(move |s| s["outputs"]["text"] == json!([format!("T{n}")])),
            ),
            // Its worker is the one the crasher kills: the crash error is
            // a right answer too.
            1 => (
                request(
                    &instance,
                    n,
                    "progress-steps",
                    json!({}),
                    json!({"steps": 3, "delay_ms": 5}),
                ),
                Box::new(|s| s["outputs"]["result"] == json!(["done"]) || is_crash(s)),
            ),
            2 => (
                request(&instance, n, "swap-node", json!({}), json!({})),
                Box::new(|s| {
                    s["type"] == "complete"
                        && (s["outputs"]["version"] == json!(["1.0.0"]) || s["outputs"]["version"] == json!(["2.0.0"]))
                }),
            ),
            3 => (
                request(&instance, n, "test-panic", json!({}), json!({})),
                Box::new(|s| s["message"] == "node panicked: deliberate test panic"),
            ),
            _ => (
                request(&instance, n, "no-such-node", json!({}), json!({})),
                Box::new(|s| s["message"] == "Node definition not found: no-such-node"),
            ),
        };
        ws.send(Message::text(frame)).await?;
        match final_of(&mut ws, &instance, &mut finished).await {
            Ok(status) if check(&status) => {
                if is_crash(&status) {
                    tally.crashed_executions.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(status) => {
                eprintln!("wrong final for {instance}: {status}");
                tally.failures.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                eprintln!("{instance}: {err:#}");
                tally.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        tally.executions.fetch_add(1, Ordering::Relaxed);
    }
    let duplicates = finished.values().filter(|c| **c > 1).count() as u64;
    tally.failures.fetch_add(duplicates, Ordering::Relaxed);
    Ok(())
}

/// The error of an execution whose worker was killed (while it ran, or as
/// it was handed over: "… had just exited").
fn is_crash(status: &Value) -> bool {
    status["type"] == "error"
        && status["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("node crashed: the worker for utility/progress_node/"))
}

/// Kills the progress node's worker with SIGKILL every 7 s: a crash, which
/// the server must turn into one error per execution it held and a restart.
async fn crasher(server: u32, deadline: Instant, tally: Arc<Tally>) -> anyhow::Result<()> {
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(7)).await;
        let worker = descendants(server).into_iter().find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("progress_node"))
        });
        if let Some(pid) = worker
            && std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        {
            tally.crashes.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

async fn http_worker(base: String, deadline: Instant, tally: Arc<Tally>) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let response = client
            .post(format!("{base}/nodes/simple-text/execute"))
            .body(json!({"inputs": {"text": format!("h{n}")}}).to_string())
            .send()
            .await?;
        let ok =
            response.status() == 200 && response.json::<Value>().await?["outputs"]["text"] == json!([format!("h{n}")]);
        if !ok {
            tally.failures.fetch_add(1, Ordering::Relaxed);
        }
        tally.http.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Starts long executions and stops them: an ack, then exactly one error.
async fn stopper(url: String, deadline: Instant, tally: Arc<Tally>) -> anyhow::Result<()> {
    let mut ws = connect(&url).await?;
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let instance = format!("stop-{n}");
        ws.send(Message::text(request(
            &instance,
            1,
            "progress-steps",
            json!({}),
            json!({"steps": 100, "delay_ms": 10}),
        )))
        .await?;
        ws.send(Message::text(
            json!({"type": "stop_workflow_instance", "instanceId": instance}).to_string(),
        ))
        .await?;
        let mut finals = 0;
        let mut acked = false;
        while !(acked && finals >= 1) {
            let frame = tokio::time::timeout(Duration::from_secs(60), ws.next())
                .await?
                .context("closed")??;
            let Message::Text(text) = frame else { continue };
            let frame: Value = serde_json::from_str(text.as_str())?;
            if frame["type"] == "ack_stop_workflow" {
                acked = true;
            } else if frame["instanceId"] == instance.as_str() && frame["payload"]["status"]["type"] == "complete" {
                tally.failures.fetch_add(1, Ordering::Relaxed);
                finals += 1;
            } else if frame["instanceId"] == instance.as_str() && frame["payload"]["status"]["type"] == "error" {
                finals += 1;
            }
        }
        tally.stops.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Connects, starts something slow, and disconnects mid-execution.
async fn leaver(url: String, deadline: Instant, tally: Arc<Tally>) -> anyhow::Result<()> {
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let mut ws = connect(&url).await?;
        ws.send(Message::text(request(
            &format!("leave-{n}"),
            1,
            "progress-steps",
            json!({}),
            json!({"steps": 100, "delay_ms": 10}),
        )))
        .await?;
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(ws);
        tally.leavers.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Bursts of malformed frames, each followed by a valid execution.
async fn malformed(url: String, deadline: Instant, tally: Arc<Tally>) -> anyhow::Result<()> {
    let mut ws = connect(&url).await?;
    let mut finished = HashMap::new();
    let garbage = [
        "not json",
        "{}",
        r#"{"type":"dance"}"#,
        r#"{"type":"request_execution"}"#,
        "[[[[[[1]]]]]]",
        r#"{"type":"request_execution","instanceId":"x","payload":{"nodeId":1}}"#,
    ];
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        for bad in garbage {
            ws.send(Message::text(bad)).await?;
            tally.malformed.fetch_add(1, Ordering::Relaxed);
        }
        ws.send(Message::binary(vec![0u8, 1, 2])).await?;
        let instance = format!("m-{n}");
        ws.send(Message::text(request(
            &instance,
            1,
            "simple-text",
            json!({"text": "ok"}),
            json!({}),
        )))
        .await?;
        let status = final_of(&mut ws, &instance, &mut finished).await?;
        if status["outputs"]["text"] != json!(["ok"]) {
            tally.failures.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
