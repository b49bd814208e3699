//! The end-to-end tests: the real `nano-server` binary with real plugins over
//! real sockets. One binary, so `support` compiles and links once; each
//! module is one area of behaviour (`cargo test --test e2e -- protocol::`).

mod support;

mod authoring;
mod backpressure;
mod config;
mod ecosystem;
mod faults;
mod hardening;
mod hot_swap;
mod http_api;
mod isolation;
mod limits;
mod loading;
mod nanocore;
mod protocol;
mod python;
mod security;
mod telemetry;
mod ui;
