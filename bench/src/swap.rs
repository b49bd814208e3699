//! Hot-swap benchmark: swap latency and memory growth per swap.
//!
//! Starts the real `nano-server` with one library in a temporary nodes
//! folder, then replaces the library (atomic rename) with alternating
//! versions. Latency is measured from the moment the new file is complete
//! (the rename returned) to the `definitions_update` arriving on a WebSocket
//! client, minus the debounce setting. RSS is read from /proc.
//!
//! Usage: swap-bench <nano-server> <libswap_v1> <libswap_v2> [swaps] [rss_swaps] [debounce_ms]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use nano_bench::{servers::rss_kib, stamp::commit_stamp};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: swap-bench <nano-server> <libswap_v1> <libswap_v2> [swaps=50] [rss_swaps=100] [debounce_ms=100]");
    }
    let server = PathBuf::from(&args[1]);
    let versions = [std::fs::read(&args[2])?, std::fs::read(&args[3])?];
    let swaps: usize = args.get(4).map_or(Ok(50), |s| s.parse())?;
    let rss_swaps: usize = args.get(5).map_or(Ok(100), |s| s.parse())?;
    let debounce_ms: u64 = args.get(6).map_or(Ok(100), |s| s.parse())?;
    // First line of the output (bench/results/swap.txt): what was measured.
    println!("{}", commit_stamp());

    let dir = tempfile::tempdir()?;
    let nodes = dir.path().join("nodes");
    let library = nodes.join("bench/swap/libswap.so");
    std::fs::create_dir_all(library.parent().unwrap())?;
    std::fs::write(&library, &versions[0])?;
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("server_uid = \"bench\"\nport = 0\nwatch_debounce_time = {debounce_ms}\n"),
    )?;

    let mut child = tokio::process::Command::new(&server)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", server.display()))?;
    let pid = child.id().context("server pid")?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut port = None;
    while let Some(line) = lines.next_line().await? {
        if let Some(address) = line.strip_prefix("nano-server listening on http://") {
            port = address.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        }
        if line == "[NANOSERVER_READY]" {
            break;
        }
    }
    let port = port.context("server did not report its port")?;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/")).await?;
    ws.next().await.context("handshake")??;

    let lib_size = versions[0].len().max(versions[1].len());
    let mut latencies = Vec::with_capacity(swaps);
    let mut next = 1;
    let swap_once = |ws_next: usize| {
        let staging = library.with_extension("staging");
        std::fs::write(&staging, &versions[ws_next % 2]).expect("write staging");
        std::fs::rename(&staging, &library).expect("rename");
        Instant::now()
    };

    // Warm-up swap, so the first measured one does not pay one-time costs.
    swap_once(next);
    next += 1;
    wait_update(&mut ws).await?;

    for _ in 0..swaps {
        let complete = swap_once(next);
        next += 1;
        wait_update(&mut ws).await?;
        latencies.push(complete.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let median = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    let min = latencies[0];
    let debounce = debounce_ms as f64;

    let rss_before = rss_kib(pid)?;
    let (libs_before, other_before) = rss_split_kib(pid)?;
    for _ in 0..rss_swaps {
        swap_once(next);
        next += 1;
        wait_update(&mut ws).await?;
    }
    let rss_after = rss_kib(pid)?;
    let (libs_after, other_after) = rss_split_kib(pid)?;
    let private_copies = count_private_copies(pid)?;

    println!("swap latency, file complete -> definitions_update, over {swaps} swaps (debounce {debounce_ms} ms):");
    println!("  total:           min {min:.2} ms, median {median:.2} ms, max {max:.2} ms");
    println!(
        "  beyond debounce: median {:+.2} ms, max {:+.2} ms",
        median - debounce,
        max - debounce
    );
    println!(
        "memory over {rss_swaps} more swaps of a {:.1} KiB library:",
        lib_size as f64 / 1024.0
    );
    println!(
        "  RSS {rss_before} KiB -> {rss_after} KiB: {:.1} KiB per swap ({:.1}% of the library size)",
        (rss_after as f64 - rss_before as f64) / rss_swaps as f64,
        (rss_after as f64 - rss_before as f64) / rss_swaps as f64 * 1024.0 / lib_size as f64 * 100.0
    );
    println!(
        "  of which in library mappings: {:.1} KiB per swap; everything else (heap, stacks): {:.1} KiB per swap",
        (libs_after as f64 - libs_before as f64) / rss_swaps as f64,
        (other_after as f64 - other_before as f64) / rss_swaps as f64
    );
    println!("  private copies left on disk: {private_copies}");
    child.kill().await?;
    Ok(())
}

async fn wait_update(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> anyhow::Result<()> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
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

/// RSS in KiB split into (mappings of loaded plugin copies, the rest).
fn rss_split_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
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

/// Private copies of libraries still present on disk (the server deletes
/// each copy once mapped; the mapping stays valid).
fn count_private_copies(pid: u32) -> anyhow::Result<usize> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let present = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains("nano-server-"))
        .filter(|p| Path::new(p).exists())
        .collect::<std::collections::HashSet<_>>()
        .len();
    Ok(present)
}
