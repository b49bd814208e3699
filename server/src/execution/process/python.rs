//! The [`Python`] [`WorkerKind`]: an interpreter running nanograph-sdk
//! `node.py` files with the runtime embedded in this binary
//! (`server/python/nano_worker/`), written once per server to a private
//! folder and started as `<python> -m nano_worker --channel-fd 3`. Its
//! frames are JSON ([`python_wire`]).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use tokio::process::Command;

use super::{exit::StartError, kind::WorkerKind, python_wire};
use crate::execution::{
    PYTHON_LIBRARY, PythonSettings,
    wire::{self, FromWorker, ToWorker},
};

/// The runtime's files, by path relative to the folder put on `PYTHONPATH`.
const RUNTIME: &[(&str, &str)] = &[
    (
        "nano_worker/__init__.py",
        include_str!("../../../python/nano_worker/__init__.py"),
    ),
    (
        "nano_worker/__main__.py",
        include_str!("../../../python/nano_worker/__main__.py"),
    ),
    (
        "nano_worker/channel.py",
        include_str!("../../../python/nano_worker/channel.py"),
    ),
    (
        "nano_worker/executor.py",
        include_str!("../../../python/nano_worker/executor.py"),
    ),
    (
        "nano_worker/loader.py",
        include_str!("../../../python/nano_worker/loader.py"),
    ),
    (
        "nano_worker/registry.py",
        include_str!("../../../python/nano_worker/registry.py"),
    ),
    (
        "nano_worker/services.py",
        include_str!("../../../python/nano_worker/services.py"),
    ),
    (
        "nano_worker/_compat/nanosdk_py/__init__.py",
        include_str!("../../../python/nano_worker/_compat/nanosdk_py/__init__.py"),
    ),
    (
        "nano_worker/_compat/nanograph_sdk/__init__.py",
        include_str!("../../../python/nano_worker/_compat/nanograph_sdk/__init__.py"),
    ),
    (
        "nano_worker/_compat/nanograph_sdk/types/__init__.py",
        include_str!("../../../python/nano_worker/_compat/nanograph_sdk/types/__init__.py"),
    ),
    (
        "nano_worker/_compat/nanograph_sdk/types/assets.py",
        include_str!("../../../python/nano_worker/_compat/nanograph_sdk/types/assets.py"),
    ),
    (
        "nano_worker/_compat/nanograph_sdk/core/__init__.py",
        include_str!("../../../python/nano_worker/_compat/nanograph_sdk/core/__init__.py"),
    ),
    (
        "nano_worker/_compat/nanograph_sdk/core/interfaces.py",
        include_str!("../../../python/nano_worker/_compat/nanograph_sdk/core/interfaces.py"),
    ),
    (
        "nano_worker/_compat/nanograph_sdk/core/asset_uploader.py",
        include_str!("../../../python/nano_worker/_compat/nanograph_sdk/core/asset_uploader.py"),
    ),
    (
        "nano_worker/_compat/nanograph_sdk/core/sdk.py",
        include_str!("../../../python/nano_worker/_compat/nanograph_sdk/core/sdk.py"),
    ),
    (
        "nano_worker/_compat/nanograph_sdk/core/asset_resolver.py",
        include_str!("../../../python/nano_worker/_compat/nanograph_sdk/core/asset_resolver.py"),
    ),
    (
        "nano_worker/_compat/nanograph_sdk/core/resource_manager.py",
        include_str!("../../../python/nano_worker/_compat/nanograph_sdk/core/resource_manager.py"),
    ),
];

/// The interpreter found on `PATH` when nothing more specific is.
const PATH_INTERPRETER: &str = "python3";

/// A Python interpreter running one `node.py` per worker.
pub(crate) struct Python {
    settings: PythonSettings,
    /// `nodes_path`: worker labels are relative to it.
    nodes_root: PathBuf,
    /// The private folder holding `nano_worker/`, written on first use
    /// (its error, if it could not be).
    runtime: OnceLock<Result<tempfile::TempDir, String>>,
    /// Whether "no interpreter" was logged (once per server).
    told_missing: AtomicBool,
}

impl Python {
    pub(crate) fn new(settings: PythonSettings, nodes_root: PathBuf) -> Self {
        Self {
            settings,
            nodes_root,
            runtime: OnceLock::new(),
            told_missing: AtomicBool::new(false),
        }
    }

    /// The folder `nano_worker/` was written to (mode 0700, created once).
    fn runtime_dir(&self) -> Result<&Path, StartError> {
        self.runtime
            .get_or_init(|| write_runtime().map_err(|err| format!("cannot write the Python worker runtime: {err}")))
            .as_ref()
            .map(tempfile::TempDir::path)
            .map_err(|err| StartError::Refused(err.clone()))
    }

    /// The interpreter for the library in `folder`, first match wins:
    /// `[python] interpreter`, the nearest `.venv` from the library's
    /// folder up to `nodes_path` (its node pack's), the project's `.venv`,
    /// `python3` on `PATH`. `Err` lists where it looked.
    fn interpreter(&self, folder: &Path) -> Result<PathBuf, String> {
        let mut looked = Vec::new();
        if let Some(configured) = &self.settings.interpreter {
            if let Some(found) = executable(configured) {
                return Ok(found);
            }
            looked.push(format!("{} ([python] interpreter)", configured.display()));
            // What the configuration names is what runs: no fallback.
            return Err(looked.join(", "));
        }
        let pack = crate::python_groups::nearest(&self.nodes_root, &folder.join(PYTHON_LIBRARY), |dir| {
            dir.join(crate::python_groups::VENV_PYTHON).is_file()
        });
        for venv in [pack.as_path(), self.settings.project_root.as_path()] {
            let candidate = venv.join(crate::python_groups::VENV_PYTHON);
            if candidate.is_file() {
                return Ok(candidate);
            }
            looked.push(candidate.display().to_string());
        }
        match executable(Path::new(PATH_INTERPRETER)) {
            Some(found) => Ok(found),
            None => {
                looked.push(format!("{PATH_INTERPRETER} on PATH"));
                Err(looked.join(", "))
            }
        }
    }
}

impl WorkerKind for Python {
    fn command(&self, label: &str, _threads: usize) -> Result<Command, StartError> {
        let project = &self.settings.project_root;
        if project.join("nano_worker").exists() {
            return Err(StartError::Refused(format!(
                "the project folder {} has a `nano_worker` entry, which would shadow the Python worker runtime",
                project.display()
            )));
        }
        // A group's label is its folder; a library's, its node.py.
        let library = self.nodes_root.join(label);
        let folder = if library.is_dir() {
            library
        } else {
            library.parent().map_or_else(|| self.nodes_root.clone(), Path::to_owned)
        };
        let interpreter = self.interpreter(&folder).map_err(|looked| {
            if !self.told_missing.swap(true, Ordering::Relaxed) {
                tracing::error!(looked_for = %looked, "no Python interpreter found: node.py libraries are not served");
            }
            StartError::Refused(format!("no Python interpreter found (looked for {looked})"))
        })?;
        let runtime = self.runtime_dir()?;
        let mut python_path = OsString::from(runtime.as_os_str());
        if let Some(user) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
            python_path.push(":");
            python_path.push(user);
        }
        let mut command = Command::new(interpreter);
        command
            .arg("-m")
            .arg("nano_worker")
            .arg("--channel-fd")
            .arg(wire::CHANNEL_FD.to_string())
            .current_dir(project)
            .env("PYTHONPATH", python_path)
            .env("PYTHONUNBUFFERED", "1")
            // The server watches nodes_path: bytecode written there would
            // wake the watcher for nothing.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // A worker runs node code: it gets no credential of the server's.
            .env_remove("NANO_SERVER_TOKEN")
            .env_remove("NANOCORE_TOKEN")
            // Ctrl-C in a terminal reaches the server, which stops its workers in order.
            .process_group(0);
        Ok(command)
    }

    fn build_id(&self) -> Option<&str> {
        None
    }

    fn greeting(&self, path: &Path, bytes: &[u8]) -> Vec<ToWorker> {
        vec![ToWorker::Load {
            path: path.display().to_string(),
            bytes: bytes.to_vec(),
        }]
    }

    fn encode(&self, message: &ToWorker) -> Option<Bytes> {
        python_wire::encode(&self.settings.project_root, message)
    }

    fn decode(&self, frame: &[u8]) -> Result<FromWorker, String> {
        python_wire::decode(frame)
    }

    fn max_to_worker(&self) -> usize {
        wire::MAX_TO_WORKER
    }

    fn max_from_worker(&self) -> usize {
        wire::MAX_FROM_WORKER
    }

    fn clean_up(&self, _pid: u32) {}

    /// Outputs go to the client exactly as the node returned them, as
    /// under the SDK.
    fn outputs_any_json(&self) -> bool {
        true
    }
}

/// `program` if it is a file, else the first match on `PATH` for a bare name.
fn executable(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Writes the runtime to a new private folder (0700: only this user may
/// read what the workers import).
fn write_runtime() -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("nano-server-python-").tempdir()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    }
    for (relative, text) in RUNTIME {
        let path = dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `server/python/nano_worker/` is embedded.
    #[test]
    fn the_runtime_embeds_every_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
        let mut on_disk = Vec::new();
        let mut folders = vec![root.join("nano_worker")];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(folder).unwrap().flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.is_dir() && name != "__pycache__" {
                    folders.push(path);
                } else if name.ends_with(".py") {
                    on_disk.push(path.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = RUNTIME.iter().map(|(path, _)| (*path).to_owned()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn the_library_folders_venv_comes_before_the_projects() {
        let project = tempfile::tempdir().unwrap();
        let folder = project.path().join("nodes/a");
        let python = |dir: &Path| {
            let path = dir.join(".venv/bin/python");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "").unwrap();
            path
        };
        let kind = Python::new(
            PythonSettings {
                project_root: project.path().to_owned(),
                interpreter: None,
                workers: 1,
            },
            project.path().join("nodes"),
        );
        let projects = python(project.path());
        assert_eq!(kind.interpreter(&folder).unwrap(), projects);
        let libraries = python(&folder);
        assert_eq!(kind.interpreter(&folder).unwrap(), libraries);
    }

    #[test]
    fn a_configured_interpreter_that_is_missing_is_not_replaced() {
        let python = Python::new(
            PythonSettings {
                project_root: PathBuf::from("/nonexistent"),
                interpreter: Some(PathBuf::from("/nonexistent/python")),
                workers: 1,
            },
            PathBuf::from("/nonexistent/nodes"),
        );
        let looked = python.interpreter(Path::new("/nonexistent/nodes/a")).unwrap_err();
        assert!(looked.contains("[python] interpreter"), "{looked}");
    }
}
