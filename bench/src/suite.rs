//! The benchmark suite (bench/run.sh runs it): nano-server against the
//! published Python SDK (the peer) and a bare WebSocket server (the floor),
//! all measured by the same load generator in the same run, plus startup
//! time and idle memory. Prints one table with the ratios and the targets.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context;
use clap::Parser;
use nano_bench::{
    load::{self, Load, Report},
    probe::MachineSpeed,
    servers::{Running, free_port, write_config},
};

#[derive(Parser)]
struct Args {
    /// The nano-server binary.
    #[arg(long)]
    server: PathBuf,
    /// The floor binary.
    #[arg(long)]
    floor: PathBuf,
    /// Folder with the built example plugin libraries.
    #[arg(long)]
    libs: PathBuf,
    /// Script that runs the Python SDK peer on the port it is given.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Where criterion wrote the ABI micro-benchmark.
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// WebSocket connections (HTTP opens connections × in-flight).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Executions in flight per connection.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Measured seconds per throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Startup measurements per case (the median is reported).
    #[arg(long, default_value_t = 5)]
    startups: usize,
    /// Rounds of throughput runs: each round measures every server once, in
    /// turn; per case the run with the median throughput is reported (this
    /// 2-core VM is noisy).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

const EXAMPLES: [(&str, &str); 3] = [
    ("processing/simple_text_node", "simple_text_node"),
    ("processing/complex_math_node", "complex_math_node"),
    ("utility/progress_node", "progress_node"),
];

const PATIENCE: Duration = Duration::from_secs(120);

fn lib_file(stem: &str) -> String {
    format!("{}{stem}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

fn install(libs: &Path, to: &Path, folder: &str, stem: &str) -> anyhow::Result<()> {
    let dir = to.join(folder);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(libs.join(lib_file(stem)), dir.join(lib_file(stem)))
        .with_context(|| format!("copying {stem} from {}", libs.display()))?;
    Ok(())
}

fn nano(args: &Args, config: &Path) -> Command {
    let mut command = Command::new(&args.server);
    command.arg("--config").arg(config).env("RUST_LOG", "warn");
    command
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Starts a server `times` times; the median time to ready, and the RSS of
/// the last one after it sat idle for two seconds.
fn startup(times: usize, mut start: impl FnMut() -> anyhow::Result<Running>) -> anyhow::Result<(Duration, u64)> {
    let mut startups = Vec::new();
    let mut rss = 0;
    for i in 0..times {
        let server = start()?;
        startups.push(server.startup);
        if i + 1 == times {
            std::thread::sleep(Duration::from_secs(2));
            rss = server.rss_kib()?;
        }
    }
    Ok((median(startups), rss))
}

struct Row {
    ws: Option<Report>,
    http: Option<Report>,
    startup: Option<Duration>,
    startup_100: Option<Duration>,
    rss_kib: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let load = Load {
        connections: args.connections,
        in_flight: args.in_flight,
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(2),
        server_pid: None,
    };
    let dir = tempfile::tempdir()?;
    let examples = dir.path().join("examples");
    for (folder, stem) in EXAMPLES {
        install(&args.libs, &examples, folder, stem)?;
    }
    let hundred = dir.path().join("hundred");
    for i in 0..100 {
        install(&args.libs, &hundred, &format!("copies/n{i:03}"), "simple_text_node")?;
    }
    let examples_config = write_config(&dir.path().join("examples"), &examples)?;
    let hundred_config = write_config(&dir.path().join("hundred"), &hundred)?;

    eprintln!("== startup and idle memory");
    let (nano_startup, nano_rss) = startup(args.startups, || {
        Running::start(nano(&args, &examples_config), None, PATIENCE)
    })?;
    let (nano_startup_100, _) = startup(args.startups, || {
        Running::start(nano(&args, &hundred_config), None, PATIENCE)
    })?;
    let peer_start = |peer: &Path| -> anyhow::Result<Running> {
        let port = free_port()?;
        let mut command = Command::new("bash");
        command.arg(peer).arg(port.to_string()).env("NANOSDK_LOG_LEVEL", "warn");
        Running::start(command, Some(port), PATIENCE)
    };
    let peer_startup = match &args.peer {
        Some(peer) => Some(startup(args.startups.min(3), || peer_start(peer))?),
        None => None,
    };

    eprintln!("== throughput: {load:?}");
    // Every server runs at once (idle ones cost nothing) and the runs are
    // interleaved, round by round: this VM changes speed for minutes at a
    // time, and a ratio between two series is only fair when both saw the
    // same machine.
    let floor = Running::start(Command::new(&args.floor), None, PATIENCE)?;
    let server = Running::start(nano(&args, &examples_config), None, PATIENCE)?;
    let peer = args.peer.as_deref().map(peer_start).transpose()?;
    let mut floor_ws = Vec::new();
    let mut nano_ws = Vec::new();
    let mut nano_http = Vec::new();
    let mut peer_ws = Vec::new();
    let mut speeds = Vec::new();
    for round in 1..=args.repeats.max(1) {
        let speed = MachineSpeed::measure();
        eprintln!("-- round {round}: {speed}");
        speeds.push(speed);
        floor_ws.push(measure(
            "floor, WebSocket",
            load::websocket(&floor.ws_url(), on(&floor, load)).await?,
        ));
        nano_ws.push(measure(
            "nano-server, WebSocket",
            load::websocket(&server.ws_url(), on(&server, load)).await?,
        ));
        nano_http.push(measure(
            "nano-server, HTTP",
            load::http(&server.base, on(&server, load)).await?,
        ));
        if let Some(peer) = &peer {
            peer_ws.push(measure(
                "Python SDK, WebSocket",
                load::websocket(&peer.ws_url(), on(peer, load)).await?,
            ));
        }
    }
    let peer_ws = (!peer_ws.is_empty()).then(|| median_of(&peer_ws));
    let rounds = Rounds {
        floor_ws,
        nano_ws,
        nano_http,
        speeds,
    };
    let (floor_ws, nano_ws, nano_http) = (
        median_of(&rounds.floor_ws),
        median_of(&rounds.nano_ws),
        median_of(&rounds.nano_http),
    );

    let nano_row = Row {
        ws: Some(nano_ws),
        http: Some(nano_http),
        startup: Some(nano_startup),
        startup_100: Some(nano_startup_100),
        rss_kib: Some(nano_rss),
    };
    let peer_row = Row {
        ws: peer_ws,
        http: None,
        startup: peer_startup.map(|(s, _)| s),
        startup_100: None,
        rss_kib: peer_startup.map(|(_, r)| r),
    };
    let floor_row = Row {
        ws: Some(floor_ws),
        http: None,
        startup: None,
        startup_100: None,
        rss_kib: None,
    };
    let abi = read_abi(&args.criterion);
    print_table(&args, &load, &nano_row, &peer_row, &floor_row, abi, &rounds);
    Ok(())
}

/// The load, with the server's CPU measured.
fn on(server: &Running, load: Load) -> Load {
    Load {
        server_pid: Some(server.child.id()),
        ..load
    }
}

/// The report with the median throughput; errors in any run count.
fn median_of(reports: &[Report]) -> Report {
    let mut sorted: Vec<&Report> = reports.iter().collect();
    sorted.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    let mut median = sorted[sorted.len() / 2].clone();
    median.errors = reports.iter().map(|r| r.errors).sum();
    median
}

/// Every round's reports, for the ratios round by round.
struct Rounds {
    floor_ws: Vec<Report>,
    nano_ws: Vec<Report>,
    nano_http: Vec<Report>,
    /// The machine's speed before each round.
    speeds: Vec<MachineSpeed>,
}

impl Rounds {
    /// `a / b` in each round: the lowest and the highest.
    fn spread(a: &[Report], b: &[Report]) -> (f64, f64) {
        a.iter()
            .zip(b)
            .map(|(a, b)| a.per_second() / b.per_second())
            .fold((f64::INFINITY, 0.0), |(lo, hi), r| (lo.min(r), hi.max(r)))
    }
}

fn measure(what: &str, report: Report) -> Report {
    eprintln!(
        "{what}: {:.0} executions/s, p50 {} µs, p99 {} µs, {} errors, server CPU {} µs/execution",
        report.per_second(),
        report.quantile_us(0.5),
        report.quantile_us(0.99),
        report.errors,
        report
            .cpu_us_per_execution()
            .map_or("?".to_owned(), |c| format!("{c:.1}"))
    );
    report
}

/// Criterion's mean estimates (ns) for `abi/loaded` and `abi/direct`.
fn read_abi(criterion: &Path) -> Option<(f64, f64)> {
    let mean = |name: &str| -> Option<f64> {
        let text = std::fs::read_to_string(criterion.join("abi").join(name).join("new/estimates.json")).ok()?;
        let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
        doc["mean"]["point_estimate"].as_f64()
    };
    Some((mean("loaded")?, mean("direct")?))
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores ({model}); client and servers share them")
}

fn print_table(
    args: &Args,
    load: &Load,
    nano: &Row,
    peer: &Row,
    floor: &Row,
    abi: Option<(f64, f64)>,
    rounds: &Rounds,
) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "—".to_owned());
    let rate = |r: &Option<Report>| opt(r.as_ref().map(|r| format!("{:.0}", r.per_second())));
    let q = |r: &Option<Report>, q: f64| opt(r.as_ref().map(|r| format!("{}", r.quantile_us(q))));
    let errors = |r: &Option<Report>| opt(r.as_ref().map(|r| format!("{}", r.errors)));
    let cpu = |r: &Option<Report>| {
        opt(r
            .as_ref()
            .and_then(Report::cpu_us_per_execution)
            .map(|c| format!("{c:.1}")))
    };
    let ms = |d: Option<Duration>| opt(d.map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0)));
    let mib = |k: Option<u64>| opt(k.map(|k| format!("{:.1}", k as f64 / 1024.0)));

    println!();
    println!("nano-server benchmark suite");
    println!("machine: {}", machine());
    println!(
        "load: {} WebSocket connections x {} executions in flight, simple-text uppercase, {} s measured after {} s warm-up; HTTP: {} connections, 1 in flight each; median of {} interleaved rounds",
        load.connections,
        load.in_flight,
        load.duration.as_secs(),
        load.warmup.as_secs(),
        load.connections * load.in_flight,
        args.repeats.max(1)
    );
    println!();
    let rows: Vec<(&str, [String; 3])> = vec![
        (
            "WebSocket executions/s",
            [rate(&nano.ws), rate(&peer.ws), rate(&floor.ws)],
        ),
        (
            "WebSocket p50 latency (µs)",
            [q(&nano.ws, 0.5), q(&peer.ws, 0.5), q(&floor.ws, 0.5)],
        ),
        (
            "WebSocket p99 latency (µs)",
            [q(&nano.ws, 0.99), q(&peer.ws, 0.99), q(&floor.ws, 0.99)],
        ),
        (
            "WebSocket errors",
            [errors(&nano.ws), errors(&peer.ws), errors(&floor.ws)],
        ),
        (
            "WebSocket server CPU/exec (µs)",
            [cpu(&nano.ws), cpu(&peer.ws), cpu(&floor.ws)],
        ),
        (
            "HTTP executions/s",
            [rate(&nano.http), rate(&peer.http), rate(&floor.http)],
        ),
        (
            "HTTP p50 latency (µs)",
            [q(&nano.http, 0.5), q(&peer.http, 0.5), q(&floor.http, 0.5)],
        ),
        (
            "HTTP p99 latency (µs)",
            [q(&nano.http, 0.99), q(&peer.http, 0.99), q(&floor.http, 0.99)],
        ),
        (
            "HTTP errors",
            [errors(&nano.http), errors(&peer.http), errors(&floor.http)],
        ),
        (
            "HTTP server CPU/exec (µs)",
            [cpu(&nano.http), cpu(&peer.http), cpu(&floor.http)],
        ),
        (
            "startup, 3 example nodes (ms)",
            [ms(nano.startup), ms(peer.startup), ms(floor.startup)],
        ),
        (
            "startup, 100 libraries (ms)",
            [ms(nano.startup_100), ms(peer.startup_100), ms(floor.startup_100)],
        ),
        (
            "idle RSS, example nodes (MiB)",
            [mib(nano.rss_kib), mib(peer.rss_kib), mib(floor.rss_kib)],
        ),
    ];
    println!("{:<32} {:>14} {:>14} {:>14}", "", "nano-server", "Python SDK", "floor");
    for (label, [a, b, c]) in &rows {
        println!("{label:<32} {a:>14} {b:>14} {c:>14}");
    }
    if let Some((loaded, direct)) = abi {
        println!(
            "{:<32} {:>14}",
            "ABI call, loaded / direct (ns)",
            format!("{loaded:.0} / {direct:.0}")
        );
    }

    println!();
    println!("targets (ratios within this run)");
    let mut missed = 0;
    let mut target =
        |name: &str, value: Option<f64>, shown: &dyn Fn(f64) -> String, ok: &dyn Fn(f64) -> bool| match value {
            Some(v) => {
                let met = ok(v);
                missed += usize::from(!met);
                println!("  {name:<48} {:>12}  {}", shown(v), if met { "met" } else { "MISSED" });
            }
            None => println!("  {name:<48} {:>12}  not measured", "—"),
        };
    let per_s = |r: &Option<Report>| r.as_ref().map(Report::per_second);
    let p99 = |r: &Option<Report>| r.as_ref().map(|r| r.quantile_us(0.99) as f64);
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    target(
        "WebSocket throughput >= 25x the Python SDK",
        ratio(per_s(&nano.ws), per_s(&peer.ws)),
        &|v| format!("{v:.1}x"),
        &|v| v >= 25.0,
    );
    target(
        "WebSocket throughput >= 60% of the floor",
        ratio(per_s(&nano.ws), per_s(&floor.ws)),
        &|v| format!("{:.0}%", v * 100.0),
        &|v| v >= 0.6,
    );
    target(
        "WebSocket p99 <= 2x the floor's p99",
        ratio(p99(&nano.ws), p99(&floor.ws)),
        &|v| format!("{v:.2}x"),
        &|v| v <= 2.0,
    );
    target(
        "HTTP throughput >= 50% of WebSocket",
        ratio(per_s(&nano.http), per_s(&nano.ws)),
        &|v| format!("{:.0}%", v * 100.0),
        &|v| v >= 0.5,
    );
    target(
        "ABI call overhead (loaded - direct) < 2 µs",
        abi.map(|(loaded, direct)| (loaded - direct) / 1000.0),
        &|v| format!("{v:.3} µs"),
        &|v| v < 2.0,
    );
    target(
        "startup with 100 libraries < 300 ms",
        nano.startup_100.map(|d| d.as_secs_f64() * 1000.0),
        &|v| format!("{v:.0} ms"),
        &|v| v < 300.0,
    );
    target(
        "idle RSS with the example nodes < 20 MB",
        nano.rss_kib.map(|k| k as f64 * 1024.0 / 1e6),
        &|v| format!("{v:.1} MB"),
        &|v| v < 20.0,
    );
    let (ws_lo, ws_hi) = Rounds::spread(&rounds.nano_ws, &rounds.floor_ws);
    let (http_lo, http_hi) = Rounds::spread(&rounds.nano_http, &rounds.nano_ws);
    println!();
    println!("the same ratios round by round (lowest - highest)");
    println!(
        "  WebSocket / floor                                  {:.0}% - {:.0}%",
        ws_lo * 100.0,
        ws_hi * 100.0
    );
    println!(
        "  HTTP / WebSocket                                   {:.0}% - {:.0}%",
        http_lo * 100.0,
        http_hi * 100.0
    );
    println!();
    println!("round by round: the machine's speed, then executions/s (nano WebSocket, HTTP, floor)");
    for (i, speed) in rounds.speeds.iter().enumerate() {
        println!(
            "  {}: {speed}; {:.0} / {:.0} / {:.0}",
            i + 1,
            rounds.nano_ws[i].per_second(),
            rounds.nano_http[i].per_second(),
            rounds.floor_ws[i].per_second()
        );
    }
    println!();
    println!(
        "{}",
        if missed == 0 {
            "all targets met".to_owned()
        } else {
            format!("{missed} target(s) missed")
        }
    );
}
