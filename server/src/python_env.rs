//! `nano-server build` for Python node folders: a folder holding a
//! `node.py` that declares its dependencies (`requirements.txt` or
//! `pyproject.toml`) gets a `.venv` of its own, made with the standard
//! `venv` and `pip`, which the server then runs that node on (the library
//! folder's `.venv` comes before the project's and `python3` on PATH).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The files that declare a Python node folder's dependencies, in the
/// order they are looked for.
const DECLARATIONS: [&str; 2] = ["requirements.txt", "pyproject.toml"];

/// A Python node folder that declares dependencies.
#[derive(Debug)]
pub struct PythonPack {
    pub folder: PathBuf,
    /// `requirements.txt` or `pyproject.toml`.
    pub declares: &'static str,
}

/// Every folder under `root` holding a (not disabled) `node.py` and a
/// dependency declaration, found as the server finds libraries.
pub fn find_python_packs(root: &Path) -> anyhow::Result<Vec<PythonPack>> {
    let mut packs: Vec<PythonPack> = Vec::new();
    for library in crate::loader::scan(root).with_context(|| format!("cannot search {}", root.display()))? {
        if library.file_name().is_none_or(|name| name != "node.py") {
            continue;
        }
        let Some(folder) = library.parent() else { continue };
        if packs.iter().any(|pack| pack.folder == folder) {
            continue;
        }
        if let Some(declares) = DECLARATIONS.into_iter().find(|file| folder.join(file).is_file()) {
            packs.push(PythonPack {
                folder: folder.to_owned(),
                declares,
            });
        }
    }
    packs.sort_by(|a, b| a.folder.cmp(&b.folder));
    Ok(packs)
}

/// Makes `pack`'s `.venv` with `python` (unless it has one) and installs
/// what it declares into it; returns the environment's interpreter.
pub fn prepare(pack: &PythonPack, python: &Path) -> anyhow::Result<PathBuf> {
    let venv = pack.folder.join(".venv");
    let interpreter = venv.join("bin").join("python");
    if !interpreter.is_file() {
        run(
            Command::new(python).arg("-m").arg("venv").arg(&venv),
            "creating the .venv",
        )?;
    }
    let mut install = Command::new(&interpreter);
    install
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"])
        .current_dir(&pack.folder);
    match pack.declares {
        "requirements.txt" => install.args(["-r", "requirements.txt"]),
        _ => install.arg("."),
    };
    run(&mut install, &format!("installing {}", pack.declares))?;
    Ok(interpreter)
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("{what}: cannot run {}", command.get_program().to_string_lossy()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_node_folders_that_declare_dependencies_are_packs() {
        let root = tempfile::tempdir().unwrap();
        let write = |relative: &str| {
            let path = root.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        };
        write("a/node.py");
        write("a/requirements.txt");
        write("b/node.py");
        write("b/pyproject.toml");
        write("plain/node.py");
        write("no_node/requirements.txt");
        write("off/disabled.node.py");
        write("off/requirements.txt");
        let packs = find_python_packs(root.path()).unwrap();
        let found: Vec<(String, &str)> = packs
            .iter()
            .map(|p| {
                (
                    p.folder.strip_prefix(root.path()).unwrap().display().to_string(),
                    p.declares,
                )
            })
            .collect();
        assert_eq!(
            found,
            [("a".to_owned(), "requirements.txt"), ("b".to_owned(), "pyproject.toml")]
        );
    }
}
