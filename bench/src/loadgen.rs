//! The load generator on its own: point it at any Nano node server.
//!
//! Usage: loadgen ws ws://127.0.0.1:3017/ [--connections 4] [--in-flight 16] [--seconds 10]
//!        loadgen http http://127.0.0.1:3017 [...]
//!        (--fresh-instances: a new instanceId per execution; --pid: the server's CPU)

use std::time::Duration;

use clap::{Parser, ValueEnum};
use nano_bench::load::{self, Load};

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Ws,
    Http,
}

#[derive(Parser)]
struct Args {
    mode: Mode,
    /// `ws://host:port/` or `http://host:port`.
    url: String,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// The server's pid, to report the CPU it (and its worker processes,
    /// under process isolation) spends per execution.
    #[arg(long)]
    pid: Option<u32>,
    /// A fresh workflow instance id per execution (WebSocket), instead of
    /// one per connection.
    #[arg(long)]
    fresh_instances: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let load = Load {
        connections: args.connections,
        in_flight: args.in_flight,
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(args.warmup),
        server_pid: args.pid,
        fresh_instances: args.fresh_instances,
    };
    let report = match args.mode {
        Mode::Ws => load::websocket(&args.url, load).await?,
        Mode::Http => load::http(&args.url, load).await?,
    };
    println!(
        "{:.0} executions/s, p50 {} µs, p99 {} µs, {} executions, {} errors, server CPU {} µs/execution{}",
        report.per_second(),
        report.quantile_us(0.5),
        report.quantile_us(0.99),
        report.executions,
        report.errors,
        report
            .cpu_us_per_execution()
            .map_or("?".to_owned(), |c| format!("{c:.1}")),
        report
            .worker_cpu_us_per_execution()
            .map_or(String::new(), |c| format!(" (of which workers {c:.1})"))
    );
    if report.errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
