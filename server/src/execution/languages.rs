//! [`Languages`]: the [`Backend`] that sends each library to the backend
//! for its language: `node.py` files to the Python workers, compiled
//! plugins to the configured backend (in-process or process).

use std::{path::Path, sync::Arc};

use super::{Backend, Loaded};
use crate::loader::LoadError;

/// The name of a Python SDK library.
pub const PYTHON_LIBRARY: &str = "node.py";

/// Whether `path` is a Python SDK library (`node.py`).
pub fn is_python_library(path: &Path) -> bool {
    path.file_name().is_some_and(|name| name == PYTHON_LIBRARY)
}

/// Whether `path` is served by the Python workers: a `node.py`, or the
/// folder of a group of them (`[python] group`; compiled libraries are
/// always files).
pub fn is_python_unit(path: &Path) -> bool {
    is_python_library(path) || path.is_dir()
}

/// Routes each library to the backend for its language.
pub struct Languages {
    pub native: Arc<dyn Backend>,
    /// `None` where there are no worker processes (no Unix).
    pub python: Option<Arc<dyn Backend>>,
}

impl Backend for Languages {
    fn load(&self, path: &Path, bytes: &[u8]) -> Result<Loaded, LoadError> {
        if !is_python_unit(path) {
            return self.native.load(path, bytes);
        }
        match &self.python {
            Some(python) => python.load(path, bytes),
            None => Err(LoadError::Worker(
                "Python nodes run in worker processes, which need Linux or macOS".to_owned(),
            )),
        }
    }
}
