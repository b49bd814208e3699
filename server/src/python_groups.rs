//! `[python] group`: which `node.py` files share one worker process. The
//! reconciler serves *units*: a compiled library is a unit of its own, and
//! so is a `node.py` alone in its group; two or more `node.py` files of one
//! group are one unit, keyed by the group's folder, loaded, restarted and
//! swapped together (an edit of one reloads them all, with the same drain).
//!
//! A group's worker is given every member in its `hello` ([`manifest`]);
//! what the worker answers for each is in `docs/worker-protocol.md`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::execution::{PythonGroup, is_python_library};

/// What the reconciler loads as one library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The library's path: the file, or for a group of several `node.py`
    /// files, the group's folder.
    pub key: PathBuf,
    /// Its files, sorted (one, unless it is a group).
    pub members: Vec<PathBuf>,
}

impl Unit {
    pub fn is_group(&self) -> bool {
        self.members.len() > 1 || self.members.first() != Some(&self.key)
    }
}

/// Files a folder may hold that make it a node pack (`group = "pack"`).
const PACK_MARKERS: &[&str] = &[".venv", "requirements.txt", "pyproject.toml"];

/// The units for the plugin files `files` (sorted, under `root`).
/// `configured_interpreter`: `[python] interpreter` is set, so every file
/// runs on it (`group = "project"` then makes one group).
pub fn units(root: &Path, files: &[PathBuf], group: PythonGroup, configured_interpreter: bool) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut groups: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for file in files {
        if !is_python_library(file) || group == PythonGroup::Library {
            units.push(Unit {
                key: file.clone(),
                members: vec![file.clone()],
            });
            continue;
        }
        let folder = match group {
            PythonGroup::Pack => nearest(root, file, |folder| {
                PACK_MARKERS.iter().any(|marker| folder.join(marker).exists())
            }),
            PythonGroup::Project if configured_interpreter => root.to_owned(),
            PythonGroup::Project | PythonGroup::Library => {
                nearest(root, file, |folder| folder.join(VENV_PYTHON).is_file())
            }
        };
        groups.entry(folder).or_default().push(file.clone());
    }
    for (folder, mut members) in groups {
        members.sort();
        let key = if members.len() == 1 { members[0].clone() } else { folder };
        units.push(Unit { key, members });
    }
    units.sort_by(|a, b| a.key.cmp(&b.key));
    units
}

/// A virtual environment's interpreter, relative to its folder.
pub const VENV_PYTHON: &str = ".venv/bin/python";

/// The nearest folder holding `file`, from its own up to `root`, for which
/// `is` holds; `root` if none does.
pub fn nearest(root: &Path, file: &Path, is: impl Fn(&Path) -> bool) -> PathBuf {
    let mut folder = file.parent();
    while let Some(current) = folder {
        if is(current) {
            return current.to_owned();
        }
        if current == root || !current.starts_with(root) {
            break;
        }
        folder = current.parent();
    }
    root.to_owned()
}

/// What a group's library bytes are: its members and their sources, as the
/// reconciler read and trusted them.
#[derive(Serialize, Deserialize)]
pub struct Manifest {
    pub members: Vec<Member>,
}

#[derive(Serialize, Deserialize)]
pub struct Member {
    pub path: String,
    pub source: String,
}

/// The bytes the reconciler hands the backend for a group.
pub fn manifest(members: &[(PathBuf, Vec<u8>)]) -> Vec<u8> {
    serde_json::to_vec(&Manifest {
        members: members
            .iter()
            .map(|(path, bytes)| Member {
                path: path.display().to_string(),
                source: String::from_utf8_lossy(bytes).into_owned(),
            })
            .collect(),
    })
    .expect("a manifest always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[&str]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for relative in files {
            let path = dir.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "").unwrap();
            if relative.ends_with("node.py") || relative.ends_with(".so") {
                paths.push(path);
            }
        }
        paths.sort();
        (dir, paths)
    }

    fn keys(root: &Path, units: &[Unit]) -> Vec<(String, usize)> {
        units
            .iter()
            .map(|u| (u.key.strip_prefix(root).unwrap().display().to_string(), u.members.len()))
            .collect()
    }

    #[test]
    fn each_mode_groups_as_documented() {
        let (dir, files) = project(&[
            "a/node.py",
            "b/node.py",
            "vision/requirements.txt",
            "vision/detect/node.py",
            "vision/track/node.py",
            "solo/.venv/bin/python",
            "solo/node.py",
            "native/libx.so",
        ]);
        let root = dir.path();
        let library = units(root, &files, PythonGroup::Library, false);
        assert_eq!(library.len(), 6);
        assert!(library.iter().all(|u| !u.is_group()));

        let pack = units(root, &files, PythonGroup::Pack, false);
        assert_eq!(
            keys(root, &pack),
            vec![
                (String::new(), 2),
                ("native/libx.so".to_owned(), 1),
                ("solo/node.py".to_owned(), 1),
                ("vision".to_owned(), 2)
            ]
        );

        // The project shares one interpreter but the folder with its own.
        let project = units(root, &files, PythonGroup::Project, false);
        assert_eq!(
            keys(root, &project),
            vec![
                (String::new(), 4),
                ("native/libx.so".to_owned(), 1),
                ("solo/node.py".to_owned(), 1)
            ]
        );
        // A configured interpreter runs them all: one group.
        let configured = units(root, &files, PythonGroup::Project, true);
        assert_eq!(
            keys(root, &configured),
            vec![(String::new(), 5), ("native/libx.so".to_owned(), 1)]
        );
    }
}
