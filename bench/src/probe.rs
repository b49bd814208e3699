//! How fast the machine is right now, independent of any server: a CPU
//! loop and a thread ping-pong. The suite prints both before every round so
//! a slow round can be told apart from a slow server (this 2-core VM
//! changes speed for minutes at a time).

use std::{
    hint::black_box,
    sync::mpsc,
    time::{Duration, Instant},
};

/// What the probes measured.
#[derive(Clone, Copy, Debug)]
pub struct MachineSpeed {
    /// A fixed integer loop on one thread (no syscalls, no memory traffic).
    pub cpu: Duration,
    /// One wake-up of another thread and back, averaged: what every
    /// hand-over between a server's threads costs.
    pub ping_pong: Duration,
}

impl MachineSpeed {
    pub fn measure() -> Self {
        Self {
            cpu: cpu_loop(),
            ping_pong: ping_pong(),
        }
    }
}

impl std::fmt::Display for MachineSpeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU loop {:.1} ms, thread ping-pong {:.1} µs",
            self.cpu.as_secs_f64() * 1e3,
            self.ping_pong.as_secs_f64() * 1e6
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

/// 20,000 round trips between two threads over channels, per round trip.
fn ping_pong() -> Duration {
    const ROUNDS: u32 = 20_000;
    let (to_echo, echo_in) = mpsc::sync_channel::<u32>(0);
    let (echo_out, back) = mpsc::sync_channel::<u32>(0);
    let echo = std::thread::spawn(move || {
        while let Ok(n) = echo_in.recv() {
            if echo_out.send(n).is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    for n in 0..ROUNDS {
        to_echo.send(n).expect("the echo thread runs");
        back.recv().expect("the echo thread answers");
    }
    let elapsed = started.elapsed();
    drop(to_echo);
    let _ = echo.join();
    elapsed / ROUNDS
}
