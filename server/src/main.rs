//! The `nano-server` binary: parses the command line and dispatches to the
//! library (`serve`, or one of the commands).

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::Parser;
use nano_server::{
    build, catalog,
    config::{Config, Isolation, Overrides},
    scaffold,
    serve::serve,
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
    /// The configuration file.
    #[arg(long, short, default_value = "config.toml")]
    config: PathBuf,
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
}

#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Creates a node crate from the plugin template.
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
        #[arg(long)]
        abi_path: Option<PathBuf>,
    },
    /// Builds every node crate under a folder and installs each library in
    /// its crate's folder, where the server finds it.
    Build {
        /// Folder to search for node crates.
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
        /// The configuration file.
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        /// Overrides the configuration's `isolation`.
        #[arg(long, value_enum)]
        isolation: Option<Isolation>,
    },
    /// A worker process of process isolation (started by the server).
    #[command(hide = true)]
    Worker {
        /// Node threads at most.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// The library it runs (for `ps`; it arrives over the channel).
        #[arg(long)]
        library: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Subcommand::New {
            name,
            category,
            path,
            abi_path,
        }) => return new_node(&name, &category, path, abi_path.as_deref()),
        Some(Subcommand::Build { dir, release }) => return build_nodes(&dir, release),
        Some(Subcommand::Inspect {
            library,
            json,
            isolation,
        }) => return catalog::inspect(&library, json, isolation),
        Some(Subcommand::Nodes { config, isolation }) => return catalog::list_nodes(&config, isolation),
        Some(Subcommand::Worker { threads, .. }) => return nano_server::run_worker(threads),
        None => {}
    }
    let overrides = Overrides {
        host: cli.host,
        port: cli.port,
        nodes_path: cli.nodes_path,
        isolation: cli.isolation,
    };
    let config = match Config::load(&cli.config, &overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("nano-server: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("nano-server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("nano-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
}

fn new_node(name: &str, category: &str, path: Option<PathBuf>, abi: Option<&std::path::Path>) -> ExitCode {
    if let Some(why) = scaffold::invalid_name(name) {
        eprintln!("nano-server new: `{name}` is not a valid crate name: {why}");
        return ExitCode::from(2);
    }
    let dir = path.unwrap_or_else(|| PathBuf::from("nodes").join(category.to_lowercase()).join(name));
    match scaffold::create(name, category, &dir, abi) {
        Ok(files) => {
            for file in files {
                println!("created {}", file.display());
            }
            println!("next: edit {}/src/lib.rs, then `nano-server build`", dir.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("nano-server new: {err:#}");
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
    if crates.is_empty() {
        eprintln!(
            "nano-server build: no node crate (a Cargo.toml with a cdylib) under {}",
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
    println!("{} of {} node crate(s) built", crates.len() - failed, crates.len());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
