//! How fast the machine is right now, independent of any server: a CPU
//! loop and a cache line passed between two cores. The suite prints both before every round so
//! a slow round can be told apart from a slow server (this 2-core VM
//! changes speed for minutes at a time).

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// What the probes measured.
#[derive(Clone, Copy, Debug)]
pub struct MachineSpeed {
    /// A fixed integer loop on one thread (no syscalls, no memory traffic).
    pub cpu: Duration,
    /// A cache line's round trip between two threads (see
    /// [`cache_line_round_trip`]).
    pub cache_line: Duration,
}

impl MachineSpeed {
    pub fn measure() -> Self {
        Self {
            cpu: cpu_loop(),
            cache_line: cache_line_round_trip(),
        }
    }
}

impl std::fmt::Display for MachineSpeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU loop {:.1} ms, cache line between cores {} ns",
            self.cpu.as_secs_f64() * 1e3,
            self.cache_line.as_nanos()
        )
    }
}

/// 50M rounds of xorshift: about 50 ms on a 3 GHz core.
fn cpu_loop() -> Duration {
    let started = Instant::now();
    let mut x = black_box(0x9E37_79B9_7F4A_7C15_u64);
    for _ in 0..50_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x);
    started.elapsed()
}

/// A cache line passed back and forth between two spinning threads, per
/// round trip: about 80 ns when the VM's two vCPUs sit on neighbouring
/// cores, about 400 ns when they sit far apart. That is what every
/// hand-over of data between a server's threads pays.
fn cache_line_round_trip() -> Duration {
    const ROUNDS: u64 = 500_000;
    let line = Arc::new(AtomicU64::new(0));
    let other = Arc::clone(&line);
    let echo = std::thread::spawn(move || {
        for i in 0..ROUNDS {
            while other.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            other.store(2 * i + 2, Ordering::Release);
        }
    });
    let started = Instant::now();
    for i in 0..ROUNDS {
        line.store(2 * i + 1, Ordering::Release);
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let elapsed = started.elapsed();
    let _ = echo.join();
    elapsed / ROUNDS as u32
}

/// The machine in one line: cores and CPU model (Linux `/proc/cpuinfo`).
pub fn machine() -> String {
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
