//! `nano-server build`: builds the node crates under a folder with cargo and
//! installs each library into its crate's folder, where the scanner finds it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// A crate under the nodes folder that builds a plugin library.
#[derive(Debug)]
pub struct NodeCrate {
    pub dir: PathBuf,
    pub name: String,
}

/// Every crate with a `cdylib` target under `root` (build output skipped).
pub fn find_node_crates(root: &Path) -> anyhow::Result<Vec<NodeCrate>> {
    let mut crates = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let manifest = dir.join("Cargo.toml");
        if manifest.is_file() {
            if let Some(name) = cdylib_package(&manifest)? {
                crates.push(NodeCrate { dir: dir.clone(), name });
            }
        }
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            if entry.file_type()?.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
                dirs.push(entry.path());
            }
        }
    }
    crates.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(crates)
}

fn cdylib_package(manifest: &Path) -> anyhow::Result<Option<String>> {
    #[derive(Deserialize)]
    struct Manifest {
        package: Option<Package>,
        lib: Option<Lib>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
    }
    #[derive(Deserialize)]
    struct Lib {
        #[serde(rename = "crate-type", default)]
        crate_type: Vec<String>,
    }
    let text = std::fs::read_to_string(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let parsed: Manifest = toml::from_str(&text).with_context(|| format!("cannot parse {}", manifest.display()))?;
    let is_plugin = parsed
        .lib
        .is_some_and(|lib| lib.crate_type.iter().any(|t| t == "cdylib"));
    Ok(parsed.package.filter(|_| is_plugin).map(|p| p.name))
}

/// Builds one crate and installs its library next to its manifest; returns
/// the installed path. Compiler output goes to the terminal as cargo prints it.
pub fn build_and_install(node: &NodeCrate, release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--lib")
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(node.dir.join("Cargo.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if release {
        command.arg("--release");
    }
    let output = command.output().context("cannot run cargo")?;
    if !output.status.success() {
        bail!("cargo build failed for {} ({})", node.name, node.dir.display());
    }
    let library = built_library(&output.stdout, &node.name)
        .with_context(|| format!("cargo built {} but reported no dynamic library", node.name))?;
    let installed = node
        .dir
        .join(library.file_name().context("library path has no file name")?);
    // Write beside the target, then rename: a watching server never sees a
    // half-written library.
    let staging = node.dir.join(format!(".{}.installing", node.name));
    std::fs::copy(&library, &staging).with_context(|| format!("cannot copy {}", library.display()))?;
    std::fs::rename(&staging, &installed).with_context(|| format!("cannot install {}", installed.display()))?;
    Ok(installed)
}

/// The dynamic library of package `name` among cargo's JSON messages.
fn built_library(messages: &[u8], name: &str) -> Option<PathBuf> {
    #[derive(Deserialize)]
    struct Message {
        reason: String,
        #[serde(default)]
        target: Option<Target>,
        #[serde(default)]
        filenames: Vec<PathBuf>,
    }
    #[derive(Deserialize)]
    struct Target {
        name: String,
    }
    let lib_name = name.replace('-', "_");
    String::from_utf8_lossy(messages)
        .lines()
        .filter_map(|line| serde_json::from_str::<Message>(line).ok())
        .filter(|m| m.reason == "compiler-artifact" && m.target.as_ref().is_some_and(|t| t.name == lib_name))
        .flat_map(|m| m.filenames)
        .find(|f| f.extension().is_some_and(|e| e == std::env::consts::DLL_EXTENSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_library_among_cargo_messages() {
        let ext = std::env::consts::DLL_EXTENSION;
        let messages = format!(
            "{{\"reason\":\"compiler-artifact\",\"target\":{{\"name\":\"serde\"}},\"filenames\":[\"/t/libserde.rlib\"]}}\n\
             {{\"reason\":\"compiler-artifact\",\"target\":{{\"name\":\"my_node\"}},\"filenames\":[\"/t/libmy_node.{ext}\",\"/t/libmy_node.rlib\"]}}\n\
             {{\"reason\":\"build-finished\",\"success\":true}}\n"
        );
        assert_eq!(
            built_library(messages.as_bytes(), "my-node"),
            Some(PathBuf::from(format!("/t/libmy_node.{ext}")))
        );
        assert_eq!(built_library(messages.as_bytes(), "other"), None);
    }
}
