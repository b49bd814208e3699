//! Hot-swap benchmark: swap latency and memory growth per swap, in each
//! isolation mode.
//!
//! Per mode (`--isolation in-process`, `--isolation process`, or both, one
//! after the other: the default), starts the real `nano-server` with one
//! library in a temporary nodes folder, then replaces the library (atomic
//! rename) with alternating versions. Latency is measured from the moment the
//! new file is complete (the rename returned) to (a) the `definitions_update`
//! arriving on a WebSocket client and (b) the new version answering: an HTTP
//! client runs `swap-node` every millisecond from the rename on, until the
//! version it reports changes. Both are shown beyond the debounce setting
//! too. Memory is the RSS of the server plus its worker processes (process
//! isolation), from /proc, before and after more swaps: in process mode
//! each version runs in a worker of its own, which exits once replaced, so
//! the sum stays flat.
//!
//! Usage: swap-bench <nano-server> <libswap_v1> <libswap_v2> [swaps] [rss_swaps] [debounce_ms]
//!        [--isolation in-process|process|both]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use nano_bench::{
    probe::machine,
    servers::{Isolation, Running, TreeRss, descendants, nano_command},
    stamp::commit_stamp,
};
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Modes {
    InProcess,
    Process,
    /// In-process, then process.
    Both,
}

#[derive(Parser)]
struct Args {
    /// The nano-server binary.
    server: PathBuf,
    /// Two versions of a library exporting `swap-node` (which answers with
    /// its version): tests/plugins/swap_v1 and swap_v2.
    v1: PathBuf,
    v2: PathBuf,
    /// Swaps timed.
    #[arg(default_value_t = 50)]
    swaps: usize,
    /// Further swaps, for the memory growth.
    #[arg(default_value_t = 100)]
    rss_swaps: usize,
    /// The server's `watch_debounce_time` (ms).
    #[arg(default_value_t = 100)]
    debounce_ms: u64,
    /// Where the server runs plugin code.
    #[arg(long, value_enum, default_value = "both")]
    isolation: Modes,
}

/// Longest wait for a swap to show.
const SWAP_PATIENCE: Duration = Duration::from_secs(30);
/// The target in process mode: the new version answers within the debounce
/// plus this (median over the timed swaps).
const PROCESS_TARGET_MS: f64 = 100.0;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    if args.swaps == 0 {
        bail!("swaps must be at least 1");
    }
    let versions = [
        std::fs::read(&args.v1).with_context(|| format!("reading {}", args.v1.display()))?,
        std::fs::read(&args.v2).with_context(|| format!("reading {}", args.v2.display()))?,
    ];
    // First line of the output (bench/results/swap.txt): what was measured.
    println!("{}", commit_stamp());
    println!("machine: {}", machine());
    let modes: &[Isolation] = match args.isolation {
        Modes::InProcess => &[Isolation::InProcess],
        Modes::Process => &[Isolation::Process],
        Modes::Both => &[Isolation::InProcess, Isolation::Process],
    };
    let mut outcomes = Vec::new();
    for &mode in modes {
        eprintln!("swap-bench: isolation = {}", mode.as_str());
        let outcome = run(&args, &versions, mode).await?;
        outcome.print(&args, versions[0].len().max(versions[1].len()));
        outcomes.push(outcome);
    }

    println!();
    println!("summary (debounce {} ms)", args.debounce_ms);
    for o in &outcomes {
        println!(
            "  {:<11} new version answers: median {:+.1} ms, max {:+.1} ms beyond the debounce; server + workers RSS {:+.1} KiB per swap",
            o.mode.as_str(),
            o.answers.median - args.debounce_ms as f64,
            o.answers.max - args.debounce_ms as f64,
            o.rss_per_swap_kib(),
        );
    }
    if let Some(process) = outcomes.iter().find(|o| o.mode == Isolation::Process) {
        let beyond = process.answers.median - args.debounce_ms as f64;
        println!(
            "  target, process: new version answers < {PROCESS_TARGET_MS:.0} ms beyond the debounce (median): {beyond:+.1} ms  {}",
            if beyond < PROCESS_TARGET_MS { "met" } else { "MISSED" }
        );
    }
    Ok(())
}

/// min, median, max of some latencies (ms).
struct Spread {
    min: f64,
    median: f64,
    max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self {
            min: values[0],
            median: values[values.len() / 2],
            max: values[values.len() - 1],
        }
    }

    fn show(&self, minus: f64) -> String {
        format!(
            "min {:.2} ms, median {:.2} ms, max {:.2} ms",
            self.min - minus,
            self.median - minus,
            self.max - minus
        )
    }
}

/// What one mode measured.
struct Outcome {
    mode: Isolation,
    /// Rename returned -> `definitions_update` (ms).
    update: Spread,
    /// Rename returned -> the first execution answered by the new version (ms).
    answers: Spread,
    rss_before: TreeRss,
    rss_after: TreeRss,
    /// (in library mappings, the rest), summed over server and workers.
    split_before: (u64, u64),
    split_after: (u64, u64),
    private_copies: usize,
    rss_swaps: usize,
}

impl Outcome {
    fn rss_per_swap_kib(&self) -> f64 {
        (self.rss_after.total_kib() as f64 - self.rss_before.total_kib() as f64) / self.rss_swaps as f64
    }

    fn print(&self, args: &Args, lib_size: usize) {
        let debounce = args.debounce_ms as f64;
        let swaps = self.rss_swaps as f64;
        println!();
        println!("== isolation: {}", self.mode.as_str());
        println!(
            "swap latency over {} swaps (debounce {} ms), from the library file complete (rename returned):",
            args.swaps, args.debounce_ms
        );
        println!("  -> definitions_update:   {}", self.update.show(0.0));
        println!("  -> new version answers:  {}", self.answers.show(0.0));
        println!("  beyond the debounce:");
        println!("     definitions_update:   {}", self.update.show(debounce));
        println!("     new version answers:  {}", self.answers.show(debounce));
        let workers = |t: &TreeRss| match t.per_worker_kib() {
            Some(each) => format!(
                "{} worker(s), {} KiB ({each:.0} KiB each)",
                t.workers_kib.len(),
                t.workers_kib.iter().sum::<u64>()
            ),
            None => "no workers".to_owned(),
        };
        println!(
            "memory over {} more swaps of a {:.1} KiB library (server + its worker processes):",
            args.rss_swaps,
            lib_size as f64 / 1024.0
        );
        println!(
            "  before: server {} KiB, {}; total {} KiB",
            self.rss_before.server_kib,
            workers(&self.rss_before),
            self.rss_before.total_kib()
        );
        println!(
            "  after:  server {} KiB, {}; total {} KiB",
            self.rss_after.server_kib,
            workers(&self.rss_after),
            self.rss_after.total_kib()
        );
        let per_swap = self.rss_per_swap_kib();
        println!(
            "  total: {per_swap:+.1} KiB per swap ({:.1}% of the library size); server alone {:+.1} KiB per swap",
            per_swap * 1024.0 / lib_size as f64 * 100.0,
            (self.rss_after.server_kib as f64 - self.rss_before.server_kib as f64) / swaps
        );
        println!(
            "  of which in library mappings: {:+.1} KiB per swap; everything else (heap, stacks): {:+.1} KiB per swap",
            (self.split_after.0 as f64 - self.split_before.0 as f64) / swaps,
            (self.split_after.1 as f64 - self.split_before.1 as f64) / swaps
        );
        println!("  private copies left on disk: {}", self.private_copies);
    }
}

async fn run(args: &Args, versions: &[Vec<u8>; 2], mode: Isolation) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let nodes = dir.path().join("nodes");
    let library = nodes.join("bench/swap/libswap.so");
    std::fs::create_dir_all(library.parent().context("library folder")?)?;
    std::fs::write(&library, &versions[0])?;
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "server_uid = \"bench\"\nport = 0\nnodes_path = {:?}\nwatch_debounce_time = {}\n",
            nodes.display().to_string(),
            args.debounce_ms
        ),
    )?;
    let server = Running::start(
        nano_command(&args.server, &config, Some(mode)),
        None,
        Duration::from_secs(60),
    )?;
    let pid = server.child.id();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await?;
    ws.next().await.context("handshake")??;
    let http = reqwest::Client::new();
    let execute = format!("{}/nodes/swap-node/execute", server.base);
    let mut version = run_swap_node(&http, &execute)
        .await?
        .context("swap-node does not answer")?;

    let mut next = 1;
    let swap_once = |next: &mut usize| -> anyhow::Result<Instant> {
        let staging = library.with_extension("staging");
        std::fs::write(&staging, &versions[*next % 2])?;
        std::fs::rename(&staging, &library)?;
        *next += 1;
        Ok(Instant::now())
    };

    // Warm-up swap, so the first measured one does not pay one-time costs.
    swap_once(&mut next)?;
    let (_, new) = swap_shows(&mut ws, &http, &execute, &version).await?;
    version = new;

    let (mut update, mut answers) = (Vec::with_capacity(args.swaps), Vec::with_capacity(args.swaps));
    for _ in 0..args.swaps {
        let complete = swap_once(&mut next)?;
        let ((updated, answered), new) = swap_shows(&mut ws, &http, &execute, &version).await?;
        version = new;
        update.push((updated - complete).as_secs_f64() * 1000.0);
        answers.push((answered - complete).as_secs_f64() * 1000.0);
    }

    let workers = settled_workers(pid, None).await;
    let rss_before = server.tree_rss()?;
    let split_before = rss_split_kib(pid)?;
    for _ in 0..args.rss_swaps {
        swap_once(&mut next)?;
        wait_update(&mut ws).await?;
    }
    // Replaced workers exit once idle; wait for them (a few seconds at most).
    settled_workers(pid, Some(workers)).await;
    let rss_after = server.tree_rss()?;
    let split_after = rss_split_kib(pid)?;
    let private_copies = count_private_copies(pid)?;
    drop(server);
    Ok(Outcome {
        mode,
        update: Spread::of(update),
        answers: Spread::of(answers),
        rss_before,
        rss_after,
        split_before,
        split_after,
        private_copies,
        rss_swaps: args.rss_swaps.max(1),
    })
}

/// Waits until the server has `count` worker processes (or, without a
/// count, until the number stays the same for half a second), for up to
/// ten seconds; the number it ends with.
async fn settled_workers(pid: u32, count: Option<usize>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = descendants(pid).len();
    let mut steady_since = Instant::now();
    loop {
        if count == Some(last) || (count.is_none() && steady_since.elapsed() >= Duration::from_millis(500)) {
            return last;
        }
        if Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = descendants(pid).len();
        if now != last {
            last = now;
            steady_since = Instant::now();
        }
    }
}

/// After a swap: when the `definitions_update` arrived and when `swap-node`
/// first answered with another version than `old` (polled every
/// millisecond, from the swap on), and that version.
async fn swap_shows(
    ws: &mut Ws,
    http: &reqwest::Client,
    execute: &str,
    old: &str,
) -> anyhow::Result<((Instant, Instant), String)> {
    let updated = async {
        wait_update(ws).await?;
        anyhow::Ok(Instant::now())
    };
    let answered = async {
        loop {
            if let Some(version) = run_swap_node(http, execute).await?
                && version != old
            {
                return anyhow::Ok((Instant::now(), version));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let both = async { tokio::try_join!(updated, answered) };
    let (updated, (answered, version)) = tokio::time::timeout(SWAP_PATIENCE, both)
        .await
        .context("the new version did not show within 30 s")??;
    Ok(((updated, answered), version))
}

/// Runs `swap-node` once over HTTP: the version that answered, or `None`
/// when it did not complete (say, no version of it was loaded then).
async fn run_swap_node(http: &reqwest::Client, execute: &str) -> anyhow::Result<Option<String>> {
    let response = http
        .post(execute)
        .header("content-type", "application/json")
        .body(r#"{"inputs":{},"parameters":{"ms":0}}"#)
        .send()
        .await
        .with_context(|| format!("POST {execute}"))?;
    if !response.status().is_success() {
        return Ok(None);
    }
    let answer: serde_json::Value = response.json().await?;
    Ok(answer["outputs"]["version"][0].as_str().map(str::to_owned))
}

async fn wait_update(ws: &mut Ws) -> anyhow::Result<()> {
    loop {
        let frame = tokio::time::timeout(SWAP_PATIENCE, ws.next())
            .await
            .context("no definitions_update within 30 s")?
            .context("connection closed")??;
        if let Message::Text(text) = frame
            && text.as_str().contains("\"definitions_update\"")
        {
            return Ok(());
        }
    }
}

/// RSS in KiB split into (mappings of loaded plugin copies, the rest),
/// summed over the server and its descendants.
fn rss_split_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let (mut libs, mut other) = process_rss_split_kib(pid)?;
    for worker in descendants(pid) {
        // A worker that exits meanwhile counts nothing.
        if let Ok((l, o)) = process_rss_split_kib(worker) {
            libs += l;
            other += o;
        }
    }
    Ok((libs, other))
}

fn process_rss_split_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let (mut libs, mut other) = (0, 0);
    let mut in_library = false;
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: u64 = kib.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            if in_library {
                libs += kib;
            } else {
                other += kib;
            }
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            in_library = line.contains("/nano-server-");
        }
    }
    Ok((libs, other))
}

/// Private copies of libraries still present on disk, mapped by the server
/// or its workers (each deletes its copy once mapped; the mapping stays
/// valid).
fn count_private_copies(pid: u32) -> anyhow::Result<usize> {
    let mut present = std::collections::HashSet::new();
    for p in std::iter::once(pid).chain(descendants(pid)) {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{p}/maps")) else {
            continue;
        };
        present.extend(
            maps.lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .filter(|p| p.contains("nano-server-") && Path::new(p).exists())
                .map(str::to_owned),
        );
    }
    Ok(present.len())
}
