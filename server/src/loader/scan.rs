//! Discovery: which files under `nodes_path` are libraries (compiled
//! plugins, and Python SDK `node.py` files). The one
//! directory walker of the server (the `build` command's search for node
//! crates and its staleness check use it too), so every part skips the same
//! entries and follows links the same way.

use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
};

/// Every entry under `root` (not `root` itself), depth first, as `(path,
/// is_folder)`. Build output (`target/`) and hidden entries are skipped; a
/// symbolic link is followed only if it resolves inside `root`, and each
/// folder is visited once (links may make one reachable twice, or in a loop).
/// `scope` names `root` in the warning about a link pointing out of it.
pub fn walk(root: &Path, scope: &str) -> std::io::Result<Vec<(PathBuf, bool)>> {
    let canonical_root = fs::canonicalize(root)?;
    let mut visited = std::collections::HashSet::from([canonical_root.clone()]);
    let mut found = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            // Build output, hidden entries (`.venv`), Python's caches and
            // installed packages are never a project's own libraries.
            if name == "target"
                || name == "__pycache__"
                || name == "site-packages"
                || name.to_string_lossy().starts_with('.')
            {
                continue;
            }
            let path = entry.path();
            let mut kind = entry.file_type()?;
            if kind.is_symlink() {
                match fs::canonicalize(&path) {
                    Ok(target) if target.starts_with(&canonical_root) => kind = fs::metadata(&path)?.file_type(),
                    Ok(target) => {
                        tracing::warn!(
                            link = %path.display(),
                            target = %target.display(),
                            "not following {}: it points outside {scope}",
                            path.display()
                        );
                        continue;
                    }
                    Err(_) => continue, // dangling
                }
            }
            if kind.is_dir() {
                if visited.insert(fs::canonicalize(&path)?) {
                    dirs.push(path.clone());
                    found.push((path, true));
                }
            } else {
                found.push((path, false));
            }
        }
    }
    Ok(found)
}

/// Whether a file name is one the scanner loads: the platform's library
/// extension, or a Python SDK library (`node.py`), not disabled.
pub fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(OsStr::to_str) else {
        return false;
    };
    let disabled = name.starts_with("disabled.") || name.contains(".disabled.");
    !disabled && (path.extension() == Some(OsStr::new(std::env::consts::DLL_EXTENSION)) || name == "node.py")
}

/// Every plugin file under `root`, recursively, sorted (so duplicate uids
/// always resolve the same way).
pub fn scan(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = walk(root, "nodes_path")?
        .into_iter()
        .filter(|(path, is_dir)| !is_dir && is_plugin_file(path))
        .map(|(path, _)| path)
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_plugin_files() {
        let ext = std::env::consts::DLL_EXTENSION;
        assert!(is_plugin_file(Path::new(&format!("nodes/a/libx.{ext}"))));
        assert!(!is_plugin_file(Path::new(&format!("nodes/a/disabled.libx.{ext}"))));
        assert!(!is_plugin_file(Path::new(&format!("nodes/a/libx.disabled.{ext}"))));
        assert!(is_plugin_file(Path::new("nodes/a/node.py")));
        assert!(!is_plugin_file(Path::new("nodes/a/helpers.py")));
    }

    #[test]
    fn python_libraries_are_found_but_not_in_virtual_environments_or_caches() {
        let dir = tempfile::tempdir().unwrap();
        let write = |relative: &str| {
            let path = dir.path().join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "").unwrap();
        };
        write("processing/text/node.py");
        write("processing/text/helpers.py");
        write("processing/text/.venv/lib/python3.11/site-packages/x/node.py");
        write("processing/venv/lib/python3.11/site-packages/y/node.py");
        write("processing/text/__pycache__/node.py");
        write("off/disabled.node.py");
        let found = scan(dir.path()).unwrap();
        assert_eq!(found, vec![dir.path().join("processing/text/node.py")]);
    }
}
