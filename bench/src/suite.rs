//! The benchmark suite (bench/run.sh runs it): nano-server in both
//! isolation modes (`--isolation in-process`: libraries mapped into the
//! server; `--isolation process`, the server's default: each library in a
//! worker process) against the published Python SDK (the peer) and a bare
//! WebSocket server (the floor), all measured by the same load generator in
//! the same run, plus startup time and idle memory. Prints one table with
//! the ratios and the targets. In process mode, CPU and memory are the
//! server's plus its worker processes'.
//!
//! With `--baseline <another nano-server binary>` (say, one built from an
//! older commit), that build runs next to the main one with the same config
//! (in-process: `--isolation in-process`, or nothing for a build from before
//! the flag) and is measured in every round right beside the in-process
//! column, so the table can show new / baseline round by round: how a
//! change moved throughput and the server's CPU per execution.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use clap::Parser;
use nano_bench::{
    load::{self, Load, Report},
    probe::{MachineSpeed, machine},
    servers::{
        Isolation, Running, TreeRss, examples_config, in_process_if_supported, install, nano_command, start_peer,
        write_config,
    },
    stamp::commit_stamp,
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
    /// Another nano-server binary (e.g. built from an older commit): started
    /// with the same config, in-process, and measured right next to
    /// `--server --isolation in-process` in every round; the table adds a
    /// baseline column and new / baseline ratios.
    #[arg(long)]
    baseline: Option<PathBuf>,
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
    /// turn; per case the run with the median throughput is reported, and
    /// every ratio is taken round by round (this 2-core VM is noisy).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

const PATIENCE: Duration = Duration::from_secs(120);

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Starts a server `times` times; the median time to ready, and the RSS of
/// the last one and of its worker processes after it sat idle for two
/// seconds.
fn startup(times: usize, mut start: impl FnMut() -> anyhow::Result<Running>) -> anyhow::Result<(Duration, TreeRss)> {
    let mut startups = Vec::new();
    let mut rss = TreeRss::default();
    for i in 0..times.max(1) {
        let server = start()?;
        startups.push(server.startup);
        if i + 1 == times.max(1) {
            std::thread::sleep(Duration::from_secs(2));
            rss = server.tree_rss()?;
        }
    }
    Ok((median(startups), rss))
}

/// One cell of a table row, from a column's figures.
type Cell<'a, T> = Box<dyn Fn(&T) -> String + 'a>;

struct Row {
    ws: Option<Report>,
    http: Option<Report>,
    startup: Option<Duration>,
    startup_100: Option<Duration>,
    /// Idle, with the example nodes: the server's RSS and its workers'.
    rss: Option<TreeRss>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // First line of the output (bench/results/suite.txt): what was measured.
    println!("{}", commit_stamp());
    let load = Load {
        connections: args.connections,
        in_flight: args.in_flight,
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(2),
        server_pid: None,
        fresh_instances: false,
    };
    let dir = tempfile::tempdir()?;
    let examples_config = examples_config(&args.libs, dir.path())?;
    let hundred = dir.path().join("hundred");
    for i in 0..100 {
        install(&args.libs, &hundred, &format!("copies/n{i:03}"), "simple_text_node")?;
    }
    let hundred_config = write_config(&hundred, &hundred)?;
    let nano = |binary: &Path, config: &Path, isolation: Option<Isolation>| {
        Running::start(nano_command(binary, config, isolation), None, PATIENCE)
    };
    let in_process = Some(Isolation::InProcess);
    let process = Some(Isolation::Process);
    // A baseline from before process isolation refuses the flag (and runs
    // in-process anyway).
    let base_isolation = args.baseline.as_deref().and_then(in_process_if_supported);

    eprintln!("== startup and idle memory");
    let (nano_startup, nano_rss) = startup(args.startups, || nano(&args.server, &examples_config, in_process))?;
    let (nano_startup_100, _) = startup(args.startups, || nano(&args.server, &hundred_config, in_process))?;
    let (proc_startup, proc_rss) = startup(args.startups, || nano(&args.server, &examples_config, process))?;
    let (proc_startup_100, _) = startup(args.startups, || nano(&args.server, &hundred_config, process))?;
    let base_startup = match &args.baseline {
        Some(baseline) => Some((
            startup(args.startups, || nano(baseline, &examples_config, base_isolation))?,
            startup(args.startups, || nano(baseline, &hundred_config, base_isolation))?.0,
        )),
        None => None,
    };
    let peer_startup = match &args.peer {
        Some(peer) => Some(startup(args.startups.min(3), || start_peer(peer, PATIENCE))?),
        None => None,
    };

    eprintln!("== throughput: {load:?}");
    // Every server runs at once (idle ones cost nothing) and the runs are
    // interleaved, round by round: this VM changes speed for minutes at a
    // time, and a ratio between two series is only fair when both saw the
    // same machine; so every ratio is taken within a round.
    let floor = Running::start(Command::new(&args.floor), None, PATIENCE)?;
    let server = nano(&args.server, &examples_config, in_process)?;
    let proc_server = nano(&args.server, &examples_config, process)?;
    let baseline = args
        .baseline
        .as_deref()
        .map(|b| nano(b, &examples_config, base_isolation))
        .transpose()?;
    let peer = args.peer.as_deref().map(|p| start_peer(p, PATIENCE)).transpose()?;
    let mut rounds = Rounds::default();
    for round in 1..=args.repeats.max(1) {
        let speed = MachineSpeed::measure();
        eprintln!("-- round {round}: {speed}");
        rounds.speeds.push(speed);
        rounds.floor_ws.push(measure(
            "floor, WebSocket",
            load::websocket(&floor.ws_url(), on(&floor, load)).await?,
        ));
        // In-process goes in the middle, process mode on one side and the
        // baseline on the other (both compared with in-process), and the
        // order turns around every other round, so no build always runs
        // first, on the warmer machine.
        let reversed = round % 2 == 0;
        for http in [false, true] {
            let (transport, nano_series, proc_series, base_series) = if http {
                (
                    "HTTP",
                    &mut rounds.nano_http,
                    &mut rounds.proc_http,
                    &mut rounds.base_http,
                )
            } else {
                (
                    "WebSocket",
                    &mut rounds.nano_ws,
                    &mut rounds.proc_ws,
                    &mut rounds.base_ws,
                )
            };
            let mut builds: Vec<(&str, &Running, &mut Vec<Report>)> = vec![
                ("nano-server process", &proc_server, proc_series),
                ("nano-server in-process", &server, nano_series),
            ];
            if let Some(baseline) = &baseline {
                builds.push(("baseline", baseline, base_series));
            }
            if reversed {
                builds.reverse();
            }
            for (name, running, series) in builds {
                let report = if http {
                    load::http(&running.base, on(running, load)).await?
                } else {
                    load::websocket(&running.ws_url(), on(running, load)).await?
                };
                series.push(measure(&format!("{name}, {transport}"), report));
            }
        }
        if let Some(peer) = &peer {
            rounds.peer_ws.push(measure(
                "Python SDK, WebSocket",
                load::websocket(&peer.ws_url(), on(peer, load)).await?,
            ));
        }
    }

    let nano_row = Row {
        ws: median_of(&rounds.nano_ws),
        http: median_of(&rounds.nano_http),
        startup: Some(nano_startup),
        startup_100: Some(nano_startup_100),
        rss: Some(nano_rss),
    };
    let proc_row = Row {
        ws: median_of(&rounds.proc_ws),
        http: median_of(&rounds.proc_http),
        startup: Some(proc_startup),
        startup_100: Some(proc_startup_100),
        rss: Some(proc_rss),
    };
    let base_row = base_startup.map(|((startup, rss), startup_100)| Row {
        ws: median_of(&rounds.base_ws),
        http: median_of(&rounds.base_http),
        startup: Some(startup),
        startup_100: Some(startup_100),
        rss: Some(rss),
    });
    let peer_row = Row {
        ws: median_of(&rounds.peer_ws),
        http: None,
        startup: peer_startup.as_ref().map(|(s, _)| *s),
        startup_100: None,
        rss: peer_startup.map(|(_, r)| r),
    };
    let floor_row = Row {
        ws: median_of(&rounds.floor_ws),
        http: None,
        startup: None,
        startup_100: None,
        rss: None,
    };
    let abi = read_abi(&args.criterion);
    let mut columns = vec![("in-process", &nano_row), ("process", &proc_row)];
    if let Some(base_row) = &base_row {
        columns.push(("baseline", base_row));
    }
    columns.extend([("Python SDK", &peer_row), ("floor", &floor_row)]);
    let modes = Modes {
        in_process: &nano_row,
        process: &proc_row,
        base_isolation,
    };
    print_table(&args, &load, &columns, &modes, abi, &rounds);
    Ok(())
}

/// The two nano-server columns, for the targets, and how the baseline ran.
struct Modes<'a> {
    in_process: &'a Row,
    process: &'a Row,
    base_isolation: Option<Isolation>,
}

/// The load, with the server's CPU measured.
fn on(server: &Running, load: Load) -> Load {
    Load {
        server_pid: Some(server.child.id()),
        ..load
    }
}

/// The round with the median throughput (none when the series was not
/// measured); errors in any round count.
fn median_of(reports: &[Report]) -> Option<Report> {
    let mut sorted: Vec<&Report> = reports.iter().collect();
    sorted.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    let mut median = (*sorted.get(sorted.len() / 2)?).clone();
    median.errors = reports.iter().map(|r| r.errors).sum();
    Some(median)
}

/// Every round's reports, for the ratios round by round; a series that was
/// not measured (no peer, no baseline) stays empty.
#[derive(Default)]
struct Rounds {
    floor_ws: Vec<Report>,
    /// nano-server `--isolation in-process`.
    nano_ws: Vec<Report>,
    nano_http: Vec<Report>,
    /// nano-server `--isolation process`.
    proc_ws: Vec<Report>,
    proc_http: Vec<Report>,
    peer_ws: Vec<Report>,
    base_ws: Vec<Report>,
    base_http: Vec<Report>,
    /// The machine's speed before each round.
    speeds: Vec<MachineSpeed>,
}

/// A ratio taken in each round on its own (the two measurements of one
/// round), summarised over the rounds.
#[derive(Clone, Copy, Debug)]
struct Spread {
    median: f64,
    lowest: f64,
    highest: f64,
    /// False for a single figure that is not a per-round ratio.
    per_round: bool,
}

impl Spread {
    fn single(value: f64) -> Self {
        Self {
            median: value,
            lowest: value,
            highest: value,
            per_round: false,
        }
    }

    /// Median (the mean of the middle two for an even count), lowest and
    /// highest of the rounds' values; `None` when there are none.
    fn of(mut values: Vec<f64>) -> Option<Self> {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => values[n / 2],
            _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        };
        Some(Self {
            median,
            lowest: values[0],
            highest: values[n - 1],
            per_round: true,
        })
    }

    /// `value(a) / value(b)` in each round where both were measured.
    fn per_round(a: &[Report], b: &[Report], value: impl Fn(&Report) -> Option<f64>) -> Option<Self> {
        Self::of(
            a.iter()
                .zip(b)
                .filter_map(|(a, b)| Some(value(a)? / value(b)?))
                .collect(),
        )
    }

    /// `median (lowest – highest)`, each figure shown by `shown`.
    fn show(&self, shown: &dyn Fn(f64) -> String) -> String {
        if self.per_round {
            format!(
                "{} ({} – {})",
                shown(self.median),
                shown(self.lowest),
                shown(self.highest)
            )
        } else {
            shown(self.median)
        }
    }
}

fn throughput(r: &Report) -> Option<f64> {
    Some(r.per_second())
}

fn p99(r: &Report) -> Option<f64> {
    Some(r.quantile_us(0.99) as f64)
}

fn cpu_per_execution(r: &Report) -> Option<f64> {
    r.cpu_us_per_execution()
}

fn percent(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

fn percent_1(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn times(v: f64) -> String {
    format!("{v:.2}x")
}

fn measure(what: &str, report: Report) -> Report {
    eprintln!(
        "{what}: {:.0} executions/s, p50 {} µs, p99 {} µs, {} errors, server CPU {} µs/execution{}",
        report.per_second(),
        report.quantile_us(0.5),
        report.quantile_us(0.99),
        report.errors,
        report
            .cpu_us_per_execution()
            .map_or("?".to_owned(), |c| format!("{c:.1}")),
        report
            .worker_cpu_us_per_execution()
            .map_or(String::new(), |c| format!(" (of which workers {c:.1})"))
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

fn print_table(
    args: &Args,
    load: &Load,
    columns: &[(&str, &Row)],
    modes: &Modes,
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
    let worker_cpu = |r: &Option<Report>| {
        opt(r
            .as_ref()
            .and_then(Report::worker_cpu_us_per_execution)
            .map(|c| format!("{c:.1}")))
    };
    let ms = |d: Option<Duration>| opt(d.map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0)));
    let mib = |k: Option<f64>| opt(k.map(|k| format!("{:.1}", k / 1024.0)));
    let repeats = args.repeats.max(1);

    println!();
    println!("nano-server benchmark suite");
    println!("machine: {}", machine());
    println!(
        "load: {} WebSocket connections x {} executions in flight, simple-text uppercase, {} s measured after {} s warm-up; HTTP: {} connections, 1 in flight each; {repeats} interleaved rounds, figures from the median round per case",
        load.connections,
        load.in_flight,
        load.duration.as_secs(),
        load.warmup.as_secs(),
        load.connections * load.in_flight,
    );
    println!(
        "startup: exec to [NANOSERVER_READY], median of {}; idle RSS: with the 3 example nodes, 2 s after ready",
        args.startups.max(1)
    );
    println!(
        "in-process: {} --isolation in-process (libraries mapped into the server)",
        args.server.display()
    );
    println!(
        "process: {} --isolation process (the default: each library in a worker process; its CPU and RSS figures include the workers')",
        args.server.display()
    );
    if let Some(baseline) = &args.baseline {
        println!(
            "baseline: {} ({}same config; measured next to in-process in every round, first in every other round)",
            baseline.display(),
            match modes.base_isolation {
                Some(isolation) => format!("--isolation {}; ", isolation.as_str()),
                None => "takes no --isolation, so in-process; ".to_owned(),
            }
        );
    }
    println!();
    let rows: Vec<(&str, Cell<Row>)> = vec![
        ("WebSocket executions/s", Box::new(|r: &Row| rate(&r.ws))),
        ("WebSocket p50 latency (µs)", Box::new(|r: &Row| q(&r.ws, 0.5))),
        ("WebSocket p99 latency (µs)", Box::new(|r: &Row| q(&r.ws, 0.99))),
        ("WebSocket errors", Box::new(|r: &Row| errors(&r.ws))),
        ("WebSocket server CPU/exec (µs)", Box::new(|r: &Row| cpu(&r.ws))),
        ("  of which in workers (µs)", Box::new(|r: &Row| worker_cpu(&r.ws))),
        ("HTTP executions/s", Box::new(|r: &Row| rate(&r.http))),
        ("HTTP p50 latency (µs)", Box::new(|r: &Row| q(&r.http, 0.5))),
        ("HTTP p99 latency (µs)", Box::new(|r: &Row| q(&r.http, 0.99))),
        ("HTTP errors", Box::new(|r: &Row| errors(&r.http))),
        ("HTTP server CPU/exec (µs)", Box::new(|r: &Row| cpu(&r.http))),
        ("  of which in workers (µs)", Box::new(|r: &Row| worker_cpu(&r.http))),
        ("startup, 3 example nodes (ms)", Box::new(|r: &Row| ms(r.startup))),
        ("startup, 100 libraries (ms)", Box::new(|r: &Row| ms(r.startup_100))),
        (
            "idle RSS, server process (MiB)",
            Box::new(|r: &Row| mib(r.rss.as_ref().map(|t| t.server_kib as f64))),
        ),
        (
            "idle worker processes",
            Box::new(|r: &Row| opt(r.rss.as_ref().map(|t| t.workers_kib.len().to_string()))),
        ),
        (
            "idle RSS per worker (MiB)",
            Box::new(|r: &Row| mib(r.rss.as_ref().and_then(TreeRss::per_worker_kib))),
        ),
        (
            "idle RSS, server + workers (MiB)",
            Box::new(|r: &Row| mib(r.rss.as_ref().map(|t| t.total_kib() as f64))),
        ),
    ];
    print!("{:<34}", "");
    for (name, _) in columns {
        print!(" {name:>14}");
    }
    println!();
    for (label, cell) in &rows {
        print!("{label:<34}");
        for (_, row) in columns {
            print!(" {:>14}", cell(row));
        }
        println!();
    }
    if let Some((loaded, direct)) = abi {
        println!(
            "{:<34} {:>14}",
            "ABI call, loaded / direct (ns)",
            format!("{loaded:.0} / {direct:.0}")
        );
    }

    let nano = modes.in_process;
    let process = modes.process;
    println!();
    println!(
        "targets: ratios taken round by round, shown as median (lowest – highest) over {repeats} round(s), judged on the median"
    );
    let mut missed = 0;
    let mut target =
        |name: &str, value: Option<Spread>, shown: &dyn Fn(f64) -> String, ok: &dyn Fn(f64) -> bool| match value {
            Some(v) => {
                let met = ok(v.median);
                missed += usize::from(!met);
                println!(
                    "  {name:<58} {:>24}  {}",
                    v.show(shown),
                    if met { "met" } else { "MISSED" }
                );
            }
            None => println!("  {name:<58} {:>24}  not measured", "—"),
        };
    target(
        "in-process: WebSocket throughput >= 25x the Python SDK",
        Spread::per_round(&rounds.nano_ws, &rounds.peer_ws, throughput),
        &|v| format!("{v:.1}x"),
        &|v| v >= 25.0,
    );
    target(
        "in-process: WebSocket throughput >= 60% of the floor",
        Spread::per_round(&rounds.nano_ws, &rounds.floor_ws, throughput),
        &percent,
        &|v| v >= 0.6,
    );
    target(
        "in-process: WebSocket p99 <= 2x the floor's p99",
        Spread::per_round(&rounds.nano_ws, &rounds.floor_ws, p99),
        &times,
        &|v| v <= 2.0,
    );
    target(
        "in-process: HTTP throughput >= 50% of WebSocket",
        Spread::per_round(&rounds.nano_http, &rounds.nano_ws, throughput),
        &percent,
        &|v| v >= 0.5,
    );
    target(
        "in-process: ABI call overhead (loaded - direct) < 2 µs",
        abi.map(|(loaded, direct)| Spread::single((loaded - direct) / 1000.0)),
        &|v| format!("{v:.3} µs"),
        &|v| v < 2.0,
    );
    target(
        "in-process: startup with 100 libraries < 300 ms",
        nano.startup_100.map(|d| Spread::single(d.as_secs_f64() * 1000.0)),
        &|v| format!("{v:.0} ms"),
        &|v| v < 300.0,
    );
    target(
        "in-process: idle RSS with the example nodes < 20 MB",
        nano.rss
            .as_ref()
            .map(|t| Spread::single(t.server_kib as f64 * 1024.0 / 1e6)),
        &|v| format!("{v:.1} MB"),
        &|v| v < 20.0,
    );
    target(
        "process: WebSocket throughput >= 50% of in-process",
        Spread::per_round(&rounds.proc_ws, &rounds.nano_ws, throughput),
        &percent,
        &|v| v >= 0.5,
    );
    target(
        "process: WebSocket p99 <= 2x the in-process p99",
        Spread::per_round(&rounds.proc_ws, &rounds.nano_ws, p99),
        &times,
        &|v| v <= 2.0,
    );
    target(
        "process: startup with 100 libraries < 2 s",
        process.startup_100.map(|d| Spread::single(d.as_secs_f64() * 1000.0)),
        &|v| format!("{v:.0} ms"),
        &|v| v < 2000.0,
    );
    if args.baseline.is_some() {
        target(
            "in-process: WebSocket server CPU/exec <= 105% of baseline",
            Spread::per_round(&rounds.nano_ws, &rounds.base_ws, cpu_per_execution),
            &percent_1,
            &|v| v <= 1.05,
        );
        target(
            "in-process: HTTP server CPU/exec <= 105% of baseline",
            Spread::per_round(&rounds.nano_http, &rounds.base_http, cpu_per_execution),
            &percent_1,
            &|v| v <= 1.05,
        );
    }
    let compare = |title: &str, a: (&[Report], &[Report]), b: (&[Report], &[Report])| {
        println!();
        println!("{title}, round by round: median (lowest – highest)");
        let (a_ws, a_http) = a;
        let (b_ws, b_http) = b;
        for (name, a, b, value, shown) in [
            (
                "WebSocket executions/s",
                a_ws,
                b_ws,
                throughput as fn(&Report) -> Option<f64>,
                percent_1 as fn(f64) -> String,
            ),
            ("WebSocket p99 latency", a_ws, b_ws, p99, times),
            (
                "WebSocket server CPU/execution",
                a_ws,
                b_ws,
                cpu_per_execution,
                percent_1,
            ),
            ("HTTP executions/s", a_http, b_http, throughput, percent_1),
            ("HTTP p99 latency", a_http, b_http, p99, times),
            (
                "HTTP server CPU/execution",
                a_http,
                b_http,
                cpu_per_execution,
                percent_1,
            ),
        ] {
            let shown = Spread::per_round(a, b, value).map_or("—".to_owned(), |s| s.show(&shown));
            println!("  {name:<58} {shown:>24}");
        }
    };
    compare(
        "process / in-process (CPU: server + workers)",
        (&rounds.proc_ws, &rounds.proc_http),
        (&rounds.nano_ws, &rounds.nano_http),
    );
    if args.baseline.is_some() {
        compare(
            "in-process / baseline",
            (&rounds.nano_ws, &rounds.nano_http),
            (&rounds.base_ws, &rounds.base_http),
        );
    }

    println!();
    let mut series: Vec<(&str, &[Report])> = vec![
        ("in-process WebSocket", &rounds.nano_ws),
        ("in-process HTTP", &rounds.nano_http),
        ("process WebSocket", &rounds.proc_ws),
        ("process HTTP", &rounds.proc_http),
    ];
    if args.baseline.is_some() {
        series.extend([
            ("baseline WebSocket", &rounds.base_ws[..]),
            ("baseline HTTP", &rounds.base_http),
        ]);
    }
    series.push(("floor", &rounds.floor_ws));
    if !rounds.peer_ws.is_empty() {
        series.push(("Python SDK", &rounds.peer_ws));
    }
    println!(
        "round by round: the machine's speed, then executions/s ({})",
        series.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    );
    for (i, speed) in rounds.speeds.iter().enumerate() {
        let rates: Vec<String> = series
            .iter()
            .map(|(_, reports)| opt(reports.get(i).map(|r| format!("{:.0}", r.per_second()))))
            .collect();
        println!("  {}: {speed}; {}", i + 1, rates.join(" / "));
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
