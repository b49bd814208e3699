//! The `nano-server` binary: parses the command line and dispatches to the
//! library (`serve`, or one of the commands).

use std::{path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser};
use nano_server::{
    build, catalog,
    config::{self, Config, Isolation, Overrides},
    python_env, scaffold,
    serve::serve,
    telemetry::{self, LogFormat},
};
use tracing_subscriber::EnvFilter;

/// glibc malloc was 14% of the server's CPU under load (perf); mimalloc keeps
/// per-thread free lists. Plugins keep their own allocator: everything that
/// crosses the ABI carries the vtable of the side that allocated it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves compiled node plugins over the Nano protocol.
///
/// Without a subcommand, serves the nodes of the configuration.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Subcommand>,
    /// The configuration file: TOML, or the SDKs' `nanoserver.json` (read as
    /// JSON by its `.json` extension). [default: `config.toml` in the current
    /// folder, else `nanoserver.json` there]
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides `host`).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on (overrides `port` and $PORT); 0 picks a free one.
    #[arg(long)]
    port: Option<u16>,
    /// Folder scanned for node libraries (overrides `nodes_path`).
    #[arg(long)]
    nodes_path: Option<PathBuf>,
    /// Where plugin code runs (overrides `isolation`): `process` (each
    /// library in a worker process) or `in-process`.
    #[arg(long, value_enum)]
    isolation: Option<Isolation>,
    /// How log lines on stderr are written (overrides `log_format`): `text`,
    /// or `json` (one object per line).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Creates a node crate from the plugin template (or, with --python, an SDK `node.py`).
    New {
        /// Crate name, e.g. `word_count` (the node uid becomes `word-count`).
        name: String,
        /// Category shown in the orchestrator.
        #[arg(long, default_value = "Custom")]
        category: String,
        /// Folder to create [default: nodes/<category>/<name>].
        #[arg(long)]
        path: Option<PathBuf>,
        /// The nano-plugin-abi crate to depend on [default: found from the path].
        #[arg(long, conflicts_with = "python")]
        abi_path: Option<PathBuf>,
        /// A Python SDK node (`node.py`) instead of a Rust crate.
        #[arg(long)]
        python: bool,
    },
    /// Builds every node crate under a folder and installs each library in
    /// its crate's folder, where the server finds it; gives each Python node
    /// folder with requirements.txt or pyproject.toml a .venv with them.
    Build {
        /// Folder to search for node crates and Python node folders.
        #[arg(default_value = "nodes")]
        dir: PathBuf,
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
    },
    /// Loads one library as the server would and shows its nodes, or why it
    /// would be refused (exit code 1).
    Inspect {
        /// The library file.
        library: PathBuf,
        /// Print the node definitions as JSON.
        #[arg(long)]
        json: bool,
        /// Load it in a worker process (default: a library that crashes
        /// while loading is reported) or in this process (for a debugger).
        #[arg(long, value_enum, default_value = "process")]
        isolation: Isolation,
    },
    /// Lists what the server would serve from a configuration, without listening.
    Nodes {
        /// The configuration file, as for serving [default: `config.toml`,
        /// else `nanoserver.json`].
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Overrides the configuration's `isolation`.
        #[arg(long, value_enum)]
        isolation: Option<Isolation>,
    },
    /// Prints a completion script for a shell, e.g. `nano-server completions
    /// bash > ~/.local/share/bash-completion/completions/nano-server`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Prints this command's manual page (roff), e.g. `nano-server man |
    /// man -l -`.
    Man,
}

// No command for people: parsed apart from `Cli`, so it stays out of
// `--help`, the completion scripts and the man page (clap_complete lists
// hidden subcommands).
/// A worker process of process isolation (started by the server).
#[derive(Debug, Parser)]
#[command(bin_name = "nano-server worker")]
struct WorkerArgs {
    /// Node threads at most.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// The library it runs (for `ps`; it arrives over the channel).
    #[arg(long)]
    library: Option<String>,
}

fn main() -> ExitCode {
    #[cfg(unix)]
    if std::env::args_os().nth(1).is_some_and(|arg| arg == "worker") {
        let worker = WorkerArgs::parse_from(std::env::args_os().skip(1));
        return nano_server::run_worker(worker.threads);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Subcommand::New {
            name,
            category,
            path,
            abi_path,
            python,
        }) => return new_node(&name, &category, path, abi_path.as_deref(), python),
        Some(Subcommand::Build { dir, release }) => return build_nodes(&dir, release),
        Some(Subcommand::Inspect {
            library,
            json,
            isolation,
        }) => return catalog::inspect(&library, json, isolation),
        Some(Subcommand::Nodes { config, isolation }) => {
            return catalog::list_nodes(&config.unwrap_or_else(config::default_file), isolation);
        }
        Some(Subcommand::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "nano-server", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Some(Subcommand::Man) => return print_man_page(),
        None => {}
    }
    let overrides = Overrides {
        host: cli.host,
        port: cli.port,
        nodes_path: cli.nodes_path,
        isolation: cli.isolation,
    };
    // No `--config`: `config.toml` first, as always; an SDK project's
    // `nanoserver.json` when there is none.
    let config_file = cli.config.unwrap_or_else(config::default_file);
    let config = match Config::load(&config_file, &overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("nano-server: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("nano-server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Flushes batched trace spans when dropped, after serving.
    let _telemetry = telemetry::init(
        cli.log_format.unwrap_or(config.telemetry.log_format),
        log_filter(config.telemetry.log_filter.as_deref()),
        runtime.handle().clone(),
    );
    config.log_notes();
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("nano-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configured filter (`RUST_LOG`, else the SDK's `NANOSDK_LOG_LEVEL`,
/// `NANOCORE_LOG_LEVEL` or `LOG_LEVEL`), else `info`.
fn log_filter(configured: Option<&str>) -> EnvFilter {
    configured
        .and_then(|filter| EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

fn new_node(
    name: &str,
    category: &str,
    path: Option<PathBuf>,
    abi: Option<&std::path::Path>,
    python: bool,
) -> ExitCode {
    if let Some(why) = scaffold::invalid_name(name) {
        let what = if python { "node name" } else { "crate name" };
        eprintln!("nano-server new: `{name}` is not a valid {what}: {why}");
        return ExitCode::from(2);
    }
    let dir = path.unwrap_or_else(|| PathBuf::from("nodes").join(category.to_lowercase()).join(name));
    let created = if python {
        scaffold::create_python(name, category, &dir)
    } else {
        scaffold::create(name, category, &dir, abi)
    };
    match created {
        Ok(files) => {
            for file in files {
                println!("created {}", file.display());
            }
            let next = if python {
                scaffold::next_steps_python(name, &dir)
            } else {
                scaffold::next_steps(name, &dir)
            };
            for line in next {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("nano-server new: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `nano-server man`: the manual page, from the same definition as `--help`.
fn print_man_page() -> ExitCode {
    match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nano-server man: {err}");
            ExitCode::FAILURE
        }
    }
}

fn build_nodes(dir: &std::path::Path, release: bool) -> ExitCode {
    let crates = match build::find_node_crates(dir) {
        Ok(crates) => crates,
        Err(err) => {
            eprintln!("nano-server build: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let packs = match python_env::find_python_packs(dir) {
        Ok(packs) => packs,
        Err(err) => {
            eprintln!("nano-server build: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    if crates.is_empty() && packs.is_empty() {
        eprintln!(
            "nano-server build: no node crate (a Cargo.toml with a cdylib) and no Python node folder with \
             requirements.txt or pyproject.toml under {}",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let options = build::BuildOptions {
        release,
        target_dir: build::shared_target_dir(dir),
        capture: false,
    };
    let mut failed = 0;
    for node in &crates {
        match build::build_and_install(node, &options) {
            Ok(installed) => println!("built {} -> {}", node.name, installed.display()),
            Err(err) => {
                eprintln!("nano-server build: {err:#}");
                failed += 1;
            }
        }
    }
    if !crates.is_empty() {
        println!("{} of {} node crate(s) built", crates.len() - failed, crates.len());
    }
    let mut failed_packs = 0;
    for pack in &packs {
        match python_env::prepare(pack, std::path::Path::new("python3")) {
            Ok(interpreter) => println!(
                "prepared {} ({}) -> {}",
                pack.folder.display(),
                pack.declares,
                interpreter.display()
            ),
            Err(err) => {
                eprintln!("nano-server build: {}: {err:#}", pack.folder.display());
                failed_packs += 1;
            }
        }
    }
    if !packs.is_empty() {
        println!(
            "{} of {} Python node folder(s) prepared",
            packs.len() - failed_packs,
            packs.len()
        );
    }
    failed += failed_packs;
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
