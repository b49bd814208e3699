//! Discovery: which files under `nodes_path` are plugin libraries. The one
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
            if name == "target" || name.to_string_lossy().starts_with('.') {
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
/// extension, not disabled.
pub fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(OsStr::to_str) else {
        return false;
    };
    let disabled = name.starts_with("disabled.") || name.contains(".disabled.");
    !disabled && path.extension() == Some(OsStr::new(std::env::consts::DLL_EXTENSION))
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

/// The warning for a nodes folder of the Python SDK's `node.py` files with
/// no compiled library and no node crate to build: a Python project pointed
/// at this server. `None` otherwise (or when `root` cannot be read).
pub fn python_nodes_warning(root: &Path) -> Option<&'static str> {
    let mut python = false;
    for (path, is_dir) in walk(root, "nodes_path").ok()? {
        let name = path.file_name().and_then(OsStr::to_str).unwrap_or_default();
        if is_dir {
            continue;
        } else if is_plugin_file(&path) || name == "Cargo.toml" {
            return None;
        }
        python |= name == "node.py";
    }
    python.then_some(
        "nodes_path holds Python nodes (node.py) and no compiled libraries: this is nano-server, which serves \
         Rust plugins; run the project with the Python SDK, or see README \"Write your first node\"",
    )
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
        assert!(!is_plugin_file(Path::new("nodes/a/node.py")));
    }

    #[test]
    fn python_nodes_alone_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let write = |relative: &str| {
            let path = dir.path().join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "").unwrap();
        };
        assert_eq!(python_nodes_warning(dir.path()), None, "an empty folder");
        write("processing/simple_text_node/node.py");
        write("processing/simple_text_node/__init__.py");
        let warning = python_nodes_warning(dir.path()).unwrap();
        assert!(
            warning.contains("node.py") && warning.contains("Python SDK"),
            "{warning}"
        );
        write("text/shout/Cargo.toml");
        assert_eq!(python_nodes_warning(dir.path()), None, "a crate to build");
        fs::remove_file(dir.path().join("text/shout/Cargo.toml")).unwrap();
        write(&format!("text/shout/libshout.{}", std::env::consts::DLL_EXTENSION));
        assert_eq!(python_nodes_warning(dir.path()), None, "a library");
    }
}
