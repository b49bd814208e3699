//! Where libraries run: a [`Backend`] loads library versions, and each
//! loaded version is a [`LibraryRuntime`] (defined beside the [`Job`](super::Job)
//! it is handed, in `run.rs`) that the executor hands admitted executions to.

use std::{path::Path, sync::Arc};

use super::LibraryRuntime;
use crate::loader::{LoadError, NodeInfo};

/// Where libraries run: loads one version of a library (its bytes already
/// read and trusted) and reads its node definitions.
pub trait Backend: Send + Sync {
    fn load(&self, path: &Path, bytes: &[u8]) -> Result<Loaded, LoadError>;
}

/// A library version loaded by a [`Backend`].
pub struct Loaded {
    /// The nano-plugin-abi version it was built against; for a Python
    /// library, the interpreter that runs it ("python 3.11.7 (/usr/bin/python3)").
    pub abi_version: String,
    /// Its nodes, in the order the library lists them.
    pub nodes: Vec<NodeInfo>,
    pub runtime: Arc<dyn LibraryRuntime>,
    /// For a group of `node.py` files: the members refused (path, why),
    /// while the others serve.
    pub refused_members: Vec<(std::path::PathBuf, String)>,
}
