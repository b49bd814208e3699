//! `nanocore-standin [--token TOKEN]`: serves a stand-in NanoCore and prints
//! one line, `NANOCORE_STANDIN <url>`, once it accepts connections. It serves
//! until killed or, when its standard input is a pipe, until that closes (so
//! a parent that dies takes it along).

use std::{
    io::{Read, Write},
    os::unix::fs::FileTypeExt,
    process::ExitCode,
};

use nanocore_standin::StandIn;

const USAGE: &str = "usage: nanocore-standin [--token TOKEN]   (default token: standin-token)";

fn main() -> ExitCode {
    let mut token = "standin-token".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), arg.strip_prefix("--token=")) {
            (_, Some(value)) => token = value.to_owned(),
            ("--token", None) => match args.next() {
                Some(value) => token = value,
                None => return usage_error(),
            },
            ("-h" | "--help", None) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => return usage_error(),
        }
    }

    let core = StandIn::start(&token);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "NANOCORE_STANDIN {}", core.url())
        .and_then(|()| stdout.flush())
        .expect("write to stdout");

    // Standard input that is /dev/null or a terminal says nothing about the
    // parent; only a pipe's end of file does.
    let stdin_is_pipe = std::fs::metadata("/dev/stdin").is_ok_and(|m| m.file_type().is_fifo());
    if stdin_is_pipe {
        let _ = std::io::copy(&mut std::io::stdin().lock().by_ref(), &mut std::io::sink());
    } else {
        loop {
            std::thread::park();
        }
    }
    ExitCode::SUCCESS
}

fn usage_error() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}
