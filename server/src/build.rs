//! `nano-server build`: builds the node crates under a folder with cargo and
//! installs each library into its crate's folder, where the scanner finds it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::Context as _;
use serde::Deserialize;

/// A crate under the nodes folder that builds a plugin library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCrate {
    pub dir: PathBuf,
    pub name: String,
    /// A workspace of its own (what `nano-server new` creates), as opposed
    /// to a member of an enclosing workspace.
    pub standalone: bool,
}

impl NodeCrate {
    /// The installed library's path.
    pub fn library(&self) -> PathBuf {
        self.dir.join(format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            self.name.replace('-', "_"),
            std::env::consts::DLL_SUFFIX
        ))
    }

    /// Whether a change at `path` calls for a build: one of the crate's
    /// sources (`src/**`, `Cargo.toml`), or the crate folder itself. A new
    /// crate may be reported only by its folder: files written right after
    /// the folder was created land before the watcher watches it.
    pub fn is_source(&self, path: &Path) -> bool {
        path == self.dir || path == self.dir.join("Cargo.toml") || path.starts_with(self.dir.join("src"))
    }

    /// Whether the library is missing or older than a source file.
    pub fn is_stale(&self) -> bool {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let Some(built) = modified(&self.library()) else {
            return true;
        };
        let sources = crate::loader::walk(&self.dir.join("src"), "the crate's src folder").unwrap_or_default();
        let newest = sources
            .iter()
            .filter(|(_, is_dir)| !is_dir)
            .map(|(path, _)| modified(path))
            .fold(modified(&self.dir.join("Cargo.toml")), Option::max);
        newest.is_some_and(|source| source > built)
    }
}

/// Where standalone node crates under `root` share their build output:
/// beside the nodes folder, not inside it (the watcher would see every
/// object file), e.g. `target/nano-nodes` for `nodes/`.
pub fn shared_target_dir(root: &Path) -> PathBuf {
    let root = if root.is_absolute() {
        root.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(root)
    };
    root.parent().unwrap_or(&root).join("target").join("nano-nodes")
}

/// How to run cargo for a build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub release: bool,
    /// Target dir for standalone crates.
    pub target_dir: PathBuf,
    /// Capture the compiler's output (for the server's log) instead of
    /// letting it through to the terminal.
    pub capture: bool,
}

/// A failed build, with what the compiler said when captured.
#[derive(Debug, thiserror::Error)]
#[error("cargo build failed for {name}{}", if output.is_empty() { String::new() } else { format!(":\n{output}") })]
pub struct BuildFailed {
    pub name: String,
    pub output: String,
}

/// Every crate with a `cdylib` target under `root` (build output skipped).
pub fn find_node_crates(root: &Path) -> anyhow::Result<Vec<NodeCrate>> {
    let folders =
        crate::loader::walk(root, "the nodes folder").with_context(|| format!("cannot read {}", root.display()))?;
    let mut crates = Vec::new();
    let candidates =
        std::iter::once(root.to_owned()).chain(folders.into_iter().filter(|(_, is_dir)| *is_dir).map(|(path, _)| path));
    for dir in candidates {
        let manifest = dir.join("Cargo.toml");
        if manifest.is_file()
            && let Some((name, standalone)) = cdylib_package(&manifest)?
        {
            crates.push(NodeCrate { dir, name, standalone });
        }
    }
    crates.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(crates)
}

fn cdylib_package(manifest: &Path) -> anyhow::Result<Option<(String, bool)>> {
    #[derive(Deserialize)]
    struct Manifest {
        package: Option<Package>,
        lib: Option<Lib>,
        workspace: Option<toml::Table>,
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
    let standalone = parsed.workspace.is_some();
    Ok(parsed.package.filter(|_| is_plugin).map(|p| (p.name, standalone)))
}

/// Builds one crate and installs its library next to its manifest; returns
/// the installed path. Compiler output goes to the terminal as cargo prints it.
pub fn build_and_install(node: &NodeCrate, options: &BuildOptions) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--lib")
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(node.dir.join("Cargo.toml"))
        .stdout(Stdio::piped())
        .stderr(if options.capture {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    if node.standalone {
        command.arg("--target-dir").arg(&options.target_dir);
    }
    if options.release {
        command.arg("--release");
    }
    let output = command.output().context("cannot run cargo")?;
    if !output.status.success() {
        return Err(BuildFailed {
            name: node.name.clone(),
            output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }
        .into());
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
    // Never group- or world-writable, whatever the umask: the server refuses
    // such libraries.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))?;
    }
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

/// Builds node crates from source in the background, one at a time, off the
/// request path; the installed library then reaches the server through the
/// watcher like any other replaced library.
#[derive(Clone)]
pub struct SourceBuilder {
    queue: std::sync::mpsc::Sender<NodeCrate>,
    root: PathBuf,
}

impl SourceBuilder {
    /// Starts the builder thread for the node crates under `root`.
    pub fn start(root: PathBuf, release: bool) -> std::io::Result<Self> {
        let (queue, requests) = std::sync::mpsc::channel::<NodeCrate>();
        let options = BuildOptions {
            release,
            target_dir: shared_target_dir(&root),
            capture: true,
        };
        std::thread::Builder::new()
            .name("nano-builder".to_owned())
            .spawn(move || {
                while let Ok(first) = requests.recv() {
                    // Coalesce what queued up meanwhile: one build per crate.
                    let mut batch = vec![first];
                    for next in requests.try_iter() {
                        if !batch.contains(&next) {
                            batch.push(next);
                        }
                    }
                    for node in batch {
                        build_logged(&node, &options);
                    }
                }
            })?;
        Ok(Self { queue, root })
    }

    /// Builds, now and on this thread, every crate whose library is missing
    /// or older than its sources (start-up).
    pub fn build_stale(&self, release: bool) {
        let options = BuildOptions {
            release,
            target_dir: shared_target_dir(&self.root),
            capture: true,
        };
        match find_node_crates(&self.root) {
            Ok(crates) => {
                for node in crates.iter().filter(|c| c.is_stale()) {
                    build_logged(node, &options);
                }
            }
            Err(err) => tracing::warn!("cannot look for node crates: {err:#}"),
        }
    }

    /// Queues a build of each crate one of `changed` is a source of.
    pub fn sources_changed<'a>(&self, changed: impl IntoIterator<Item = &'a PathBuf>) {
        let changed: Vec<&PathBuf> = changed.into_iter().collect();
        if changed
            .iter()
            .all(|p| p.components().any(|c| c.as_os_str() == "target"))
        {
            return;
        }
        let Ok(crates) = find_node_crates(&self.root) else {
            return;
        };
        for node in crates {
            if changed.iter().any(|path| node.is_source(path)) {
                tracing::info!(node_crate = %node.name, "sources changed; building");
                let _ = self.queue.send(node);
            }
        }
    }
}

fn build_logged(node: &NodeCrate, options: &BuildOptions) {
    let started = std::time::Instant::now();
    match build_and_install(node, options) {
        Ok(installed) => tracing::info!(
            node_crate = %node.name,
            library = %installed.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "built {} from source",
            node.name
        ),
        Err(err) => tracing::warn!(
            node_crate = %node.name,
            "build of {} failed; the previous version keeps serving: {err:#}",
            node.name
        ),
    }
}
