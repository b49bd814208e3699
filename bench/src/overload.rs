//! The overload scenario (bench/run.sh runs it after the suite): what a
//! server does when asked for more than it can do.
//!
//! For each server under test (nano-server with the example nodes, in both
//! isolation modes: `--isolation in-process` and `--isolation process`; the
//! Python SDK peer; optionally a `--baseline` nano-server build, run
//! in-process), one at a time and freshly started:
//!
//! 1. its closed-loop capacity C: the suite's load generator (`load.rs`,
//!    `simple-text`) for a few seconds;
//! 2. an open loop at `factor` × C executions per second (3× by default):
//!    requests are sent on a fixed schedule over several WebSocket
//!    connections, whether or not earlier ones were answered, for N seconds;
//! 3. no more sending; outstanding answers are awaited for up to `--wait`
//!    seconds.
//!
//! Reported per server: offered/s, completed/s, refused (error statuses
//! saying "busy"), other errors, requests never answered, p50/p99 latency of
//! the completed ones (from the moment the request was handed to the socket
//! to its final status), and memory: the peak RSS (`VmHWM`, read at the end)
//! and the highest `VmRSS` sampled every 100 ms. Memory is the server's plus
//! its worker processes' (process isolation): the sampled figure is the
//! highest sum, the peak the sum of each process's own peak.
//!
//! Usage: overload --server target/release/nano-server --libs target/release
//!        [--peer bench/peer/run.sh] [--baseline <other nano-server>] [--seconds 10]

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt, stream::SplitSink, stream::SplitStream};
use hdrhistogram::Histogram;
use nano_bench::{
    frames::{final_status, histogram_up_to, may_be_final, request_frame},
    load::{self, Load, Report},
    probe::machine,
    servers::{
        Isolation, RssSampler, Running, examples_config, in_process_if_supported, nano_command, start_peer,
        tree_peak_rss_kib, tree_rss,
    },
    stamp::commit_stamp,
};
use tokio::{net::TcpStream, sync::watch, time::MissedTickBehavior};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

#[derive(Parser)]
struct Args {
    /// The nano-server binary.
    #[arg(long)]
    server: PathBuf,
    /// Folder with the built example plugin libraries.
    #[arg(long)]
    libs: PathBuf,
    /// Script that runs the Python SDK peer on the port it is given.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Another nano-server binary (e.g. built from an older commit), put
    /// through the same scenario with the same config, in-process.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Seconds of open-loop sending.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of the closed-loop capacity measurement (after 1 s warm-up).
    #[arg(long, default_value_t = 5)]
    capacity_seconds: u64,
    /// Offered load as a multiple of the measured capacity.
    #[arg(long, default_value_t = 3.0)]
    factor: f64,
    /// WebSocket connections, in both phases.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Executions in flight per connection while measuring the capacity.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Longest wait, once sending stopped, for the outstanding answers.
    #[arg(long, default_value_t = 30)]
    wait: u64,
}

const PATIENCE: Duration = Duration::from_secs(120);
const RSS_SAMPLE: Duration = Duration::from_millis(100);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts one server under test.
type Starter<'a> = Box<dyn Fn() -> anyhow::Result<Running> + 'a>;

/// One cell of a table row, from a column's figures.
type Cell<'a, T> = Box<dyn Fn(&T) -> String + 'a>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.factor.is_nan() || args.factor <= 0.0 || args.connections == 0 || args.seconds == 0 {
        bail!("--factor, --connections and --seconds must be positive");
    }
    // First line of the output (bench/results/overload.txt): what was measured.
    println!("{}", commit_stamp());
    let dir = tempfile::tempdir()?;
    let config = examples_config(&args.libs, dir.path())?;

    let mut outcomes = Vec::new();
    let mut servers: Vec<(&str, Starter)> = vec![
        ("in-process", nano(&args.server, &config, Some(Isolation::InProcess))),
        ("process", nano(&args.server, &config, Some(Isolation::Process))),
    ];
    if let Some(baseline) = &args.baseline {
        // A build from before process isolation refuses the flag (and runs
        // in-process anyway).
        servers.push(("baseline", nano(baseline, &config, in_process_if_supported(baseline))));
    }
    if let Some(peer) = &args.peer {
        servers.push(("Python SDK", Box::new(|| start_peer(peer, PATIENCE))));
    }
    for (name, start) in &servers {
        eprintln!("== {name}");
        outcomes.push(scenario(name, start()?, &args).await?);
    }
    print_table(&args, &outcomes);
    Ok(())
}

/// Starts `server` with `config`, plugins run as `isolation` says.
fn nano<'a>(server: &'a Path, config: &'a Path, isolation: Option<Isolation>) -> Starter<'a> {
    Box::new(move || Running::start(nano_command(server, config, isolation), None, PATIENCE))
}

/// What one server did.
struct Outcome {
    name: String,
    capacity: Report,
    /// `factor` × the capacity.
    target_rate: f64,
    open: OpenLoop,
    /// Server plus workers, as are the two below.
    rss_before_kib: Option<u64>,
    max_sampled_rss_kib: Option<u64>,
    peak_rss_kib: Option<u64>,
    /// Worker processes before the open loop and at its end.
    workers_before: Option<usize>,
    workers_after: Option<usize>,
    alive: bool,
}

async fn scenario(name: &str, mut server: Running, args: &Args) -> anyhow::Result<Outcome> {
    let pid = server.child.id();
    let url = server.ws_url();
    let capacity = load::websocket(
        &url,
        Load {
            connections: args.connections,
            in_flight: args.in_flight,
            duration: Duration::from_secs(args.capacity_seconds.max(1)),
            warmup: Duration::from_secs(1),
            server_pid: Some(pid),
            fresh_instances: false,
        },
    )
    .await
    .with_context(|| format!("{name}: measuring the capacity"))?;
    let c = capacity.per_second();
    eprintln!(
        "{name}: closed-loop capacity {c:.0} executions/s ({} errors)",
        capacity.errors
    );
    if c < 1.0 {
        bail!("{name}: no capacity measured ({} executions)", capacity.executions);
    }
    let target_rate = c * args.factor;
    eprintln!(
        "{name}: open loop at {target_rate:.0}/s for {} s over {} connections, then up to {} s for answers",
        args.seconds, args.connections, args.wait
    );
    let before = tree_rss(pid).ok();
    let sampler = RssSampler::start(pid, RSS_SAMPLE);
    let open = open_loop(
        &url,
        args.connections,
        target_rate,
        Duration::from_secs(args.seconds),
        Duration::from_secs(args.wait),
    )
    .await
    .with_context(|| format!("{name}: open loop"))?;
    let max_sampled_rss_kib = sampler.finish();
    let peak_rss_kib = tree_peak_rss_kib(pid).ok();
    let workers_after = tree_rss(pid).ok().map(|t| t.workers_kib.len());
    let alive = server.child.try_wait()?.is_none();
    eprintln!(
        "{name}: sent {}, completed {}, refused {}, other errors {}, wrong {}, never answered {}",
        open.sent, open.completed, open.refused, open.other_errors, open.wrong, open.unanswered
    );
    for note in &open.notes {
        eprintln!("{name}: {note}");
    }
    drop(server);
    Ok(Outcome {
        name: name.to_owned(),
        capacity,
        target_rate,
        open,
        rss_before_kib: before.as_ref().map(|t| t.total_kib()),
        max_sampled_rss_kib,
        peak_rss_kib,
        workers_before: before.map(|t| t.workers_kib.len()),
        workers_after,
        alive,
    })
}

/// What the open loop counted, over all connections.
struct OpenLoop {
    /// Sending time (the schedule's length).
    duration: Duration,
    sent: u64,
    /// Right `complete` answers, in all.
    completed: u64,
    /// Right `complete` answers that arrived while sending.
    completed_while_sending: u64,
    /// Error statuses whose message says "busy".
    refused: u64,
    /// Other error statuses, and unreadable frames.
    other_errors: u64,
    /// `complete` with the wrong output, second final statuses, answers to
    /// nothing asked.
    wrong: u64,
    /// Sent, and no final status within the wait.
    unanswered: u64,
    /// Of the completed ones, from send to final status (µs).
    latency: Histogram<u64>,
    /// The last final status, after sending stopped.
    last_answer_after_end: Option<Duration>,
    /// The longest a request was handed to the socket after its time.
    max_send_lag: Duration,
    /// Connections that ended before every answer was in (closed by the
    /// server, say, for not reading fast enough).
    connections_lost: usize,
    /// Connections that ended early, the first few odd answers.
    notes: Vec<String>,
}

async fn open_loop(
    url: &str,
    connections: usize,
    rate: f64,
    duration: Duration,
    wait: Duration,
) -> anyhow::Result<OpenLoop> {
    let mut sockets = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        sockets.push(ws);
    }
    let origin = Instant::now();
    // Every task is spawned before the schedule starts.
    let start = origin + Duration::from_millis(100);
    let end = start + duration;
    let deadline = end + wait;
    let per_connection = rate / connections as f64;
    let mut lanes = Vec::with_capacity(connections);
    for (c, ws) in sockets.into_iter().enumerate() {
        // The connections' schedules interleave: together, one send every 1/rate.
        let first = start + Duration::from_secs_f64(c as f64 / rate);
        let slots = (per_connection * duration.as_secs_f64()).ceil() as usize + 1;
        let sent_at: Arc<[AtomicU32]> = (0..slots).map(|_| AtomicU32::new(0)).collect();
        let (sink, stream) = ws.split();
        let (done, sent) = watch::channel(None);
        let clock = Clock {
            origin,
            start,
            end,
            deadline,
        };
        let sender = tokio::spawn(send_on_schedule(
            sink,
            format!("overload-{c}"),
            per_connection,
            first,
            clock,
            Arc::clone(&sent_at),
            done,
        ));
        let reader = tokio::spawn(read_answers(stream, sent_at, sent, clock));
        lanes.push((sender, reader));
    }
    let mut total = OpenLoop {
        duration,
        sent: 0,
        completed: 0,
        completed_while_sending: 0,
        refused: 0,
        other_errors: 0,
        wrong: 0,
        unanswered: 0,
        latency: histogram_up_to(duration.as_secs() + wait.as_secs() + 60),
        last_answer_after_end: None,
        max_send_lag: Duration::ZERO,
        connections_lost: 0,
        notes: Vec::new(),
    };
    for (c, (sender, reader)) in lanes.into_iter().enumerate() {
        let Sent {
            sink,
            sent,
            max_lag,
            error,
        } = sender.await?;
        let lane = reader.await?;
        // Closed only now: the server must not drop executions of a
        // connection whose answers are still awaited.
        drop(sink);
        total.sent += sent;
        total.max_send_lag = total.max_send_lag.max(max_lag);
        total.completed += lane.completed;
        total.completed_while_sending += lane.completed_while_sending;
        total.refused += lane.refused;
        total.other_errors += lane.other_errors;
        total.wrong += lane.wrong;
        total.unanswered += sent.saturating_sub(lane.answered);
        total.latency.add(&lane.latency)?;
        total.last_answer_after_end = total.last_answer_after_end.max(lane.last_answer_after_end);
        match (lane.lost, error) {
            // The sender's error, if any, follows from the lost connection.
            (Some(lost), _) => {
                total.connections_lost += 1;
                total.notes.push(format!("connection {c}: {lost}"));
            }
            (None, Some(err)) => total
                .notes
                .push(format!("connection {c}: sending stopped early: {err}")),
            (None, None) => {}
        }
        total
            .notes
            .extend(lane.notes.into_iter().map(|n| format!("connection {c}: {n}")));
    }
    Ok(total)
}

/// Times as microseconds since `origin`, plus one (0 means "not sent"), so
/// the sender can hand them to the reader through atomics.
#[derive(Clone, Copy)]
struct Clock {
    origin: Instant,
    /// When sending starts.
    start: Instant,
    /// When sending stops.
    end: Instant,
    /// When waiting for answers stops.
    deadline: Instant,
}

impl Clock {
    fn stamp(&self, at: Instant) -> u32 {
        u32::try_from((at - self.origin).as_micros() + 1).unwrap_or(u32::MAX)
    }
}

/// What one connection's sender did.
struct Sent {
    /// Kept open until the answers are in.
    sink: SplitSink<Ws, Message>,
    /// Requests handed to the socket (flushed).
    sent: u64,
    /// The longest a request waited past its scheduled time to be handed
    /// to the socket: the client's CPU, or a server that reads slowly (TCP
    /// pushes back).
    max_lag: Duration,
    /// What stopped the sending early.
    error: Option<String>,
}

/// Sends execution k at `first + k / per_second` (k = 0, 1, …) until the end,
/// whatever the answers: every millisecond it hands the socket whatever fell
/// due since the last tick, then flushes. Nothing new is sent after the end;
/// a flush that a server's slow reading holds up may finish later (until
/// the deadline).
async fn send_on_schedule(
    mut sink: SplitSink<Ws, Message>,
    instance: String,
    per_second: f64,
    first: Instant,
    clock: Clock,
    sent_at: Arc<[AtomicU32]>,
    done: watch::Sender<Option<u64>>,
) -> Sent {
    let slots = sent_at.len() as u64;
    let (mut next, mut flushed) = (0u64, 0u64);
    let mut max_lag = Duration::ZERO;
    let mut tick = tokio::time::interval_at(first.into(), Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let sending = async {
        loop {
            tick.tick().await;
            let now = Instant::now();
            let scheduled = first + Duration::from_secs_f64(next as f64 / per_second);
            if now >= clock.end {
                // What fell due before the end and is still unsent stays so.
                if scheduled < clock.end && next < slots {
                    max_lag = max_lag.max(now - scheduled);
                }
                return anyhow::Ok(());
            }
            let due = (((now - first).as_secs_f64() * per_second) as u64 + 1).min(slots);
            if next >= due {
                continue;
            }
            max_lag = max_lag.max(now.saturating_duration_since(scheduled));
            while next < due {
                // Stamped before it can be answered; the reader reads it.
                sent_at[next as usize].store(clock.stamp(Instant::now()), Ordering::Release);
                sink.feed(Message::text(request_frame(&instance, next))).await?;
                next += 1;
            }
            sink.flush().await?;
            flushed = next;
        }
    };
    let error = match tokio::time::timeout_at(clock.deadline.into(), sending).await {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(format!("{err:#}")),
        Err(_) => Some(format!(
            "still blocked sending at the deadline: {} requests never left the client",
            next - flushed
        )),
    };
    let _ = done.send(Some(flushed));
    Sent {
        sink,
        sent: flushed,
        max_lag,
        error,
    }
}

/// One connection's answers.
struct Lane {
    /// First final statuses of executions sent on this connection.
    answered: u64,
    completed: u64,
    completed_while_sending: u64,
    refused: u64,
    other_errors: u64,
    wrong: u64,
    latency: Histogram<u64>,
    last_answer_after_end: Option<Duration>,
    /// Why the connection ended before every answer was in.
    lost: Option<String>,
    notes: Vec<String>,
}

/// Reads final statuses until every execution sent was answered, or until
/// the deadline.
async fn read_answers(
    mut stream: SplitStream<Ws>,
    sent_at: Arc<[AtomicU32]>,
    mut sent: watch::Receiver<Option<u64>>,
    clock: Clock,
) -> Lane {
    let mut lane = Lane {
        answered: 0,
        completed: 0,
        completed_while_sending: 0,
        refused: 0,
        other_errors: 0,
        wrong: 0,
        latency: histogram_up_to((clock.deadline - clock.origin).as_secs() + 60),
        last_answer_after_end: None,
        lost: None,
        notes: Vec::new(),
    };
    let mut answered = vec![false; sent_at.len()];
    let mut total: Option<u64> = None;
    let mut odd = 0;
    let mut note = |lane: &mut Lane, text: String| {
        odd += 1;
        if odd <= 3 {
            lane.notes.push(text);
        }
    };
    loop {
        if total.is_some_and(|total| lane.answered >= total) {
            break;
        }
        let message = tokio::select! {
            biased;
            message = stream.next() => message,
            changed = sent.changed(), if total.is_none() => {
                // The sender is done (or gone, then it sent nothing more).
                total = Some((*sent.borrow()).unwrap_or(0));
                if changed.is_err() && total == Some(0) {
                    total = Some(lane.answered);
                }
                continue;
            }
            () = tokio::time::sleep_until(clock.deadline.into()) => break,
        };
        // Any end of the connection here comes before every answer was in.
        let at = || format!("{:.2} s after sending started", clock.start.elapsed().as_secs_f64());
        let message = match message {
            Some(Ok(Message::Close(frame))) => {
                lane.lost = Some(match frame {
                    Some(frame) => format!(
                        "the server closed the connection {}: {} {}",
                        at(),
                        u16::from(frame.code),
                        frame.reason.as_str()
                    ),
                    None => format!("the server closed the connection {}", at()),
                });
                break;
            }
            Some(Ok(message)) => message,
            Some(Err(err)) => {
                lane.lost = Some(format!("the connection failed {}: {err}", at()));
                break;
            }
            None => {
                lane.lost = Some(format!("the connection ended {}", at()));
                break;
            }
        };
        let Message::Text(text) = message else { continue };
        // Reading has to keep up with a server answering flat out, on cores
        // the sending shares: `running` statuses are skipped unparsed.
        if !may_be_final(text.as_str()) {
            continue;
        }
        let status = match final_status(text.as_str()) {
            Ok(Some(status)) => status,
            Ok(None) => continue,
            Err(err) => {
                lane.other_errors += 1;
                note(&mut lane, format!("unreadable frame ({err}): {}", text.as_str()));
                continue;
            }
        };
        let now = Instant::now();
        let n = status.node_id;
        let sent_stamp = usize::try_from(n)
            .ok()
            .and_then(|i| sent_at.get(i))
            .map_or(0, |at| at.load(Ordering::Acquire));
        if sent_stamp == 0 || std::mem::replace(&mut answered[n as usize], true) {
            lane.wrong += 1; // an answer to nothing asked, or a second one
            note(&mut lane, format!("unexpected final status for {n}: {}", status.kind));
            continue;
        }
        lane.answered += 1;
        if now > clock.end {
            lane.last_answer_after_end = Some(now - clock.end);
        }
        if status.is_complete() {
            if status.is_right() {
                lane.completed += 1;
                if now <= clock.end {
                    lane.completed_while_sending += 1;
                }
                let micros = clock.stamp(now).saturating_sub(sent_stamp);
                lane.latency.saturating_record(u64::from(micros.max(1)));
            } else {
                lane.wrong += 1;
                note(&mut lane, format!("wrong answer to {n}"));
            }
        } else if status
            .message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("busy"))
        {
            lane.refused += 1;
        } else {
            lane.other_errors += 1;
            note(&mut lane, format!("error for {n}: {:?}", status.message));
        }
    }
    lane
}

fn print_table(args: &Args, outcomes: &[Outcome]) {
    println!();
    println!("nano-server overload scenario");
    println!("machine: {}", machine());
    println!(
        "per server, freshly started: closed-loop capacity C ({} connections x {} in flight, {} s after 1 s warm-up), then an open loop at {}x C (fixed-rate sends over {} WebSocket connections, whatever the answers) for {} s, then up to {} s for the outstanding answers; simple-text uppercase",
        args.connections,
        args.in_flight,
        args.capacity_seconds.max(1),
        args.factor,
        args.connections,
        args.seconds,
        args.wait
    );
    println!(
        "in-process, process: {} --isolation in-process, --isolation process (config: write_config, the shipped defaults otherwise)",
        args.server.display()
    );
    println!("memory: the server's plus its worker processes' (process isolation); peak: the sum of each one's VmHWM");
    if let Some(baseline) = &args.baseline {
        println!(
            "baseline: {} {}",
            baseline.display(),
            if in_process_if_supported(baseline).is_some() {
                "--isolation in-process"
            } else {
                "(takes no --isolation: in-process)"
            }
        );
    }
    println!();
    let opt = |v: Option<String>| v.unwrap_or_else(|| "—".to_owned());
    let mib = |k: Option<u64>| opt(k.map(|k| format!("{:.1}", k as f64 / 1024.0)));
    let ms = |o: &OpenLoop, q: f64| {
        opt((o.completed > 0).then(|| format!("{:.1}", o.latency.value_at_quantile(q) as f64 / 1000.0)))
    };
    let per_s = |n: u64, o: &OpenLoop| format!("{:.0}", n as f64 / o.duration.as_secs_f64());
    let rows: Vec<(&str, Cell<Outcome>)> = vec![
        (
            "closed-loop capacity C (exec/s)",
            Box::new(|o: &Outcome| format!("{:.0}", o.capacity.per_second())),
        ),
        (
            "offered target (exec/s)",
            Box::new(|o: &Outcome| format!("{:.0}", o.target_rate)),
        ),
        ("offered (sent/s)", Box::new(|o: &Outcome| per_s(o.open.sent, &o.open))),
        (
            "sends' max lag (ms)",
            Box::new(|o: &Outcome| format!("{:.1}", o.open.max_send_lag.as_secs_f64() * 1000.0)),
        ),
        (
            "completed/s while sending",
            Box::new(|o: &Outcome| per_s(o.open.completed_while_sending, &o.open)),
        ),
        ("sent", Box::new(|o: &Outcome| o.open.sent.to_string())),
        (
            "completed (incl. the wait)",
            Box::new(|o: &Outcome| o.open.completed.to_string()),
        ),
        ("refused (busy)", Box::new(|o: &Outcome| o.open.refused.to_string())),
        ("other errors", Box::new(|o: &Outcome| o.open.other_errors.to_string())),
        (
            "wrong or duplicate answers",
            Box::new(|o: &Outcome| o.open.wrong.to_string()),
        ),
        (
            "never answered (within wait)",
            Box::new(|o: &Outcome| o.open.unanswered.to_string()),
        ),
        (
            "connections lost before the end",
            Box::new(|o: &Outcome| format!("{} of {}", o.open.connections_lost, args.connections)),
        ),
        ("completed p50 latency (ms)", Box::new(|o: &Outcome| ms(&o.open, 0.5))),
        ("completed p99 latency (ms)", Box::new(|o: &Outcome| ms(&o.open, 0.99))),
        (
            "last answer after sending (s)",
            Box::new(|o: &Outcome| opt(o.open.last_answer_after_end.map(|d| format!("{:.2}", d.as_secs_f64())))),
        ),
        (
            "worker processes, before / after",
            Box::new(|o: &Outcome| {
                let n = |w: Option<usize>| w.map_or("?".to_owned(), |w| w.to_string());
                format!("{} / {}", n(o.workers_before), n(o.workers_after))
            }),
        ),
        (
            "RSS before the open loop (MiB)",
            Box::new(|o: &Outcome| mib(o.rss_before_kib)),
        ),
        (
            "max RSS, sampled 100 ms (MiB)",
            Box::new(|o: &Outcome| mib(o.max_sampled_rss_kib)),
        ),
        ("peak RSS, VmHWM (MiB)", Box::new(|o: &Outcome| mib(o.peak_rss_kib))),
        (
            "server alive at the end",
            Box::new(|o: &Outcome| if o.alive { "yes" } else { "NO" }.to_owned()),
        ),
    ];
    print!("{:<32}", "");
    for outcome in outcomes {
        print!(" {:>14}", outcome.name);
    }
    println!();
    for (label, cell) in &rows {
        print!("{label:<32}");
        for outcome in outcomes {
            print!(" {:>14}", cell(outcome));
        }
        println!();
    }
    let notes: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.open.notes.iter().map(move |n| format!("  {}: {n}", o.name)))
        .collect();
    if !notes.is_empty() {
        println!();
        println!("notes");
        for note in notes {
            println!("{note}");
        }
    }
}
