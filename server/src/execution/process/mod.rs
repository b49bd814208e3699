//! The process backend: every library version runs in a worker process of
//! its own (the server's binary, `nano-server worker`), so a node that
//! crashes, hangs or leaks takes down only that worker, never the server.
//!
//! Per library version ([`library`], its state machine in [`phase`]) one
//! worker serves new executions (a Python library: `[python] workers`, the
//! least-loaded taking each, each restarting on its own): a crashed one is restarted with
//! exponential backoff ([`restart`]), one whose node ignored an abort for
//! `abort_grace_ms` is replaced (the old one drains, bounded by
//! `worker_drain_ms`), one past `worker_memory_limit_mb` is ended
//! ([`supervisor`]), and a library whose worker dies while loading
//! [`restart::LOAD_CRASH_LIMIT`] times in a row is given up. [`spawn`]
//! starts a worker and [`worker`] is the server's handle on one; what runs
//! in it, and how its channel is encoded, is its
//! [`kind`]. The server never maps plugin code.

mod exit;
mod kind;
mod library;
mod phase;
mod python;
mod python_wire;
mod restart;
mod spawn;
mod supervisor;
mod worker;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Weak},
};

use tokio::runtime::Handle;

pub use self::library::OnFailed;
use self::{kind::WorkerKind, library::ProcessLibrary, worker::WorkerContext};
use super::{
    Backend, Loaded,
    settings::{ProcessSettings, PythonSettings},
};
use crate::{
    loader::{LoadError, parse_definitions},
    lock,
    nanocore::Services,
};

/// The process [`Backend`].
pub struct ProcessBackend {
    settings: Arc<ProcessSettings>,
    runtime: Handle,
    services: Arc<Services>,
    /// What runs in its workers.
    kind: Arc<dyn WorkerKind>,
    on_failed: Arc<Mutex<Option<OnFailed>>>,
    /// The last version loaded per path: a stop-first swap stops it first.
    latest: Mutex<HashMap<PathBuf, Weak<ProcessLibrary>>>,
    /// Worker processes per library (1 but for `[python] workers`).
    workers: usize,
}

impl ProcessBackend {
    pub fn new(settings: ProcessSettings, runtime: Handle, services: Arc<Services>) -> Self {
        Self {
            settings: Arc::new(settings),
            runtime,
            services,
            kind: Arc::new(kind::Native),
            on_failed: Arc::default(),
            latest: Mutex::default(),
            workers: 1,
        }
    }

    /// The backend for Python `node.py` libraries: each runs in
    /// `[python] workers` workers of the [`python::Python`] kind, under the
    /// same supervision.
    pub fn python(settings: ProcessSettings, python: PythonSettings, runtime: Handle, services: Arc<Services>) -> Self {
        let workers = python.workers.max(1);
        let kind = python::Python::new(python, settings.root.clone());
        Self {
            kind: Arc::new(kind),
            workers,
            ..Self::new(settings, runtime, services)
        }
    }

    /// What to do with a library that failed for good.
    pub fn on_failed(&self, hook: OnFailed) {
        *lock(&self.on_failed) = Some(hook);
    }
}

impl Backend for ProcessBackend {
    fn load(&self, path: &Path, bytes: &[u8]) -> Result<Loaded, LoadError> {
        let relative = path
            .strip_prefix(&self.settings.root)
            .unwrap_or(path)
            .display()
            .to_string();
        // A group of node.py files is named by its folder: `vision/`, or
        // `./` for nodes_path itself.
        let label: Arc<str> = match (path.is_dir(), relative.is_empty()) {
            (true, true) => "./".into(),
            (true, false) => format!("{relative}/").into(),
            (false, _) => relative.into(),
        };
        let context = Arc::new(WorkerContext {
            label,
            settings: Arc::clone(&self.settings),
            runtime: self.runtime.clone(),
            services: Arc::clone(&self.services),
            kind: Arc::clone(&self.kind),
        });
        let library = ProcessLibrary::new(
            context,
            path.to_owned(),
            bytes.to_vec(),
            Arc::clone(&self.on_failed),
            self.workers,
        );
        let stop_first = self.settings.stop_first || self.settings.stop_first_libraries.contains(library.label());
        let previous = lock(&self.latest).get(path).and_then(Weak::upgrade);
        let stopped = match previous {
            Some(old) if stop_first && old.stop_for_swap() => Some(old),
            _ => None,
        };
        let (sender, result) = std::sync::mpsc::channel();
        let starting = Arc::clone(&library);
        self.runtime.spawn(async move {
            let _ = sender.send(starting.start_first().await);
        });
        let loaded = result
            .recv()
            .map_err(|_| LoadError::Worker("the worker supervisor stopped".to_owned()))
            .and_then(|started| {
                let loaded = started?;
                Ok((
                    loaded.abi_version,
                    parse_definitions(&loaded.definitions)?,
                    loaded.refused,
                ))
            });
        match loaded {
            Ok((abi_version, nodes, refused)) => {
                // A stopped old version stays paused until the registry
                // serves this one and retires it: then what waited for it
                // is redirected here.
                lock(&self.latest).insert(path.to_owned(), Arc::downgrade(&library));
                Ok(Loaded {
                    abi_version,
                    nodes,
                    runtime: library,
                    refused_members: refused
                        .into_iter()
                        .map(|(path, why)| (PathBuf::from(path), why))
                        .collect(),
                })
            }
            Err(err) => {
                // The old version keeps serving: it gets a worker again.
                if let Some(old) = stopped {
                    old.resume();
                }
                Err(err)
            }
        }
    }
}
