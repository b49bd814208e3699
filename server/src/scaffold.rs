//! `nano-server new`: a node crate from the plugin template, which is
//! embedded in the binary so an installed `nano-server` can scaffold too;
//! with `--python`, an SDK-style `node.py` from `plugin-template/python`.
//!
//! The generated crate is a workspace of its own with a path dependency on
//! `nano-plugin-abi`, so it builds the same inside this repository and
//! outside it.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::config::{Config, Overrides, absolute};

const TEMPLATE_MANIFEST: &str = include_str!("../../plugin-template/Cargo.toml");
const TEMPLATE_LIB: &str = include_str!("../../plugin-template/src/lib.rs");
const TEMPLATE_PYTHON: &str = include_str!("../../plugin-template/python/node.py");
/// Where `plugin-abi` was when this binary was built (a fallback).
const BUILT_ABI_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-abi");

/// Why `name` cannot be a crate name, if it cannot.
pub fn invalid_name(name: &str) -> Option<String> {
    const KEYWORDS: &[&str] = &[
        "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for", "if", "impl",
        "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self", "static", "struct",
        "super", "trait", "true", "type", "unsafe", "use", "where", "while", "async", "await", "dyn", "abstract",
        "become", "box", "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
        "gen", "std", "core", "alloc", "test",
    ];
    let first = name.chars().next();
    if name.is_empty() {
        Some("the name is empty".to_owned())
    } else if !first.is_some_and(|c| c.is_ascii_alphabetic()) {
        Some("it must start with an ASCII letter".to_owned())
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some(format!(
            "`{bad}` is not allowed: use ASCII letters, digits, `_` and `-`"
        ))
    } else if KEYWORDS.contains(&name) {
        Some("it is a Rust keyword or reserved crate name".to_owned())
    } else if name.len() > 64 {
        Some("it is longer than 64 characters".to_owned())
    } else {
        None
    }
}

/// What the new node is called, in each form the template needs.
struct Names {
    crate_name: String,
    lib_name: String,
    uid: String,
    display: String,
    type_name: String,
}

impl Names {
    fn new(name: &str) -> Self {
        let words: Vec<String> = name
            .split(['_', '-'])
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut chars = w.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        Self {
            crate_name: name.to_owned(),
            lib_name: name.replace('-', "_"),
            uid: name.replace('_', "-").to_ascii_lowercase(),
            display: words.join(" "),
            type_name: words.concat(),
        }
    }
}

/// Creates the crate in `dir`; returns the files written.
pub fn create(name: &str, category: &str, dir: &Path, abi_dir: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    if let Some(why) = invalid_name(name) {
        bail!("`{name}` is not a valid crate name: {why}");
    }
    if dir.exists() {
        bail!("refusing to overwrite {}: it already exists", dir.display());
    }
    let names = Names::new(name);
    let abi = match abi_dir {
        Some(abi) => abi.to_owned(),
        None => find_plugin_abi(dir).context("cannot find the nano-plugin-abi crate; pass --abi-path <dir>")?,
    };
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("cannot create {}", dir.display()))?;
    // Relative inside the same checkout (it moves with it), absolute outside.
    let checkout = abi.parent().map(absolute);
    let abi_reference = match checkout {
        Some(root) if absolute(dir).starts_with(&root) => relative_to(&abi, dir).unwrap_or(abi),
        _ => absolute(&abi),
    };
    let manifest = dir.join("Cargo.toml");
    let lib = dir.join("src/lib.rs");
    std::fs::write(&manifest, manifest_text(&names, &abi_reference))?;
    std::fs::write(&lib, lib_text(&names, category))?;
    let mut written = vec![manifest, lib];
    // Same dependency versions as the server (and a shared build cache).
    if let Some(lock) = enclosing_lockfile(dir) {
        let copy = dir.join("Cargo.lock");
        std::fs::copy(&lock, &copy)?;
        written.push(copy);
    }
    Ok(written)
}

/// Creates `dir/node.py`, a Python SDK node named after `name`; returns the
/// file written.
pub fn create_python(name: &str, category: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if let Some(why) = invalid_name(name) {
        bail!("`{name}` is not a valid node name: {why}");
    }
    if dir.exists() {
        bail!("refusing to overwrite {}: it already exists", dir.display());
    }
    let names = Names::new(name);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join("node.py");
    std::fs::write(&file, python_text(&names, category))?;
    Ok(vec![file])
}

fn python_text(names: &Names, category: &str) -> String {
    // Python string literals: the category is the only free text.
    let category = category.replace('\\', "\\\\").replace('\'', "\\'");
    TEMPLATE_PYTHON
        .replace("'template-node'", &format!("'{}'", names.uid))
        .replace("'Template Node'", &format!("'{}'", names.display))
        .replace("'category': 'Examples'", &format!("'category': '{category}'"))
}

/// What to do after creating the Python node `name` in `dir`: a server
/// watching the folder serves it at once; otherwise, start one.
pub fn next_steps_python(name: &str, dir: &Path) -> Vec<String> {
    let names = Names::new(name);
    let edit = format!("next: edit {}", dir.join("node.py").display());
    match building_server(dir, false) {
        Some(url) => vec![
            format!("{edit} and save"),
            format!(
                "the server on {url} watches its nodes_path: it serves node `{}` now, in a Python worker, and \
                 again after every save",
                names.uid
            ),
        ],
        None => vec![
            edit,
            format!(
                "a server whose nodes_path holds it serves node `{}` in a Python worker (python3 on PATH, or \
                 [python] interpreter; see docs/python-nodes.md)",
                names.uid
            ),
        ],
    }
}

/// What to do after creating crate `name` in `dir`: when a server that builds
/// sources serves the folder `dir` is in, saving is enough; otherwise, the
/// command that builds it and where its library lands.
pub fn next_steps(name: &str, dir: &Path) -> Vec<String> {
    let names = Names::new(name);
    let edit = format!("next: edit {}", dir.join("src").join("lib.rs").display());
    match building_server(dir, true) {
        Some(url) => vec![
            format!("{edit} and save"),
            format!(
                "the server on {url} builds node sources under its nodes_path: it builds `{}` now and again on \
                 every save, and serves node `{}`",
                names.crate_name, names.uid
            ),
        ],
        None => {
            let library = dir.join(format!(
                "{}{}{}",
                std::env::consts::DLL_PREFIX,
                names.lib_name,
                std::env::consts::DLL_SUFFIX
            ));
            vec![
                edit,
                format!(
                    "then build it: `nano-server build {}` (add --release to optimise) installs {}",
                    dir.display(),
                    library.display()
                ),
                format!(
                    "a server whose nodes_path holds it serves node `{}` (and swaps in each new build)",
                    names.uid
                ),
            ]
        }
    }
}

/// How long `new` may spend looking for a running server.
const PROBE_BUDGET: Duration = Duration::from_millis(300);

/// The address of a running server that will serve `dir` when it changes:
/// the configuration in the current folder watches a `nodes_path` holding
/// `dir` (and builds sources, when `needs_build_sources`: a crate), and its port answers `GET /` with the status
/// document of the same server uid, within [`PROBE_BUDGET`].
fn building_server(dir: &Path, needs_build_sources: bool) -> Option<String> {
    let config = Config::load(&crate::config::default_file(), &Overrides::default()).ok()?;
    let builds = config.build_sources || !needs_build_sources;
    if !(builds && config.auto_watch && absolute(dir).starts_with(&config.nodes_path)) {
        return None;
    }
    let host = match config.host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" | "[::]" => "::1",
        host => host,
    };
    let address = (host, config.port).to_socket_addrs().ok()?.next()?;
    let deadline = Instant::now() + PROBE_BUDGET;
    let mut stream = TcpStream::connect_timeout(&address, PROBE_BUDGET).ok()?;
    let bearer = config
        .limits
        .auth_token
        .as_ref()
        .map(|token| format!("Authorization: Bearer {}\r\n", token.expose()))
        .unwrap_or_default();
    stream.set_write_timeout(Some(PROBE_BUDGET)).ok()?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {address}\r\n{bearer}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())?;
        stream.set_read_timeout(Some(left)).ok()?;
        match stream.read(&mut chunk).ok()? {
            0 => break,
            n if response.len() + n <= 1 << 20 => response.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
    let response = String::from_utf8(response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let status: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    (status["serverUid"] == config.identity.server_uid.as_str()).then(|| format!("http://{address}"))
}

fn manifest_text(names: &Names, abi: &Path) -> String {
    let mut out = String::new();
    for line in TEMPLATE_MANIFEST.lines() {
        let line = match line.trim() {
            l if l.starts_with("name = ") => format!("name = \"{}\"", names.crate_name),
            l if l.starts_with("description = ") => format!("description = \"{}: a nano-server node.\"", names.display),
            "edition.workspace = true" => "edition = \"2024\"".to_owned(),
            "rust-version.workspace = true" | "license.workspace = true" => continue,
            l if l.starts_with("# Outside this workspace") => continue,
            l if l.starts_with("nano-plugin-abi") => abi_dependency(l, abi),
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(
        "\n# A workspace of its own: the crate builds the same inside the nano-server\n\
         # repository and outside it.\n[workspace]\n",
    );
    out
}

/// The template's `nano-plugin-abi` entry (the dependency, or the
/// dev-dependency with `testing`) with a path instead of the workspace.
fn abi_dependency(line: &str, abi: &Path) -> String {
    let path = format!("path = \"{}\"", abi.display().to_string().replace('\\', "/"));
    match line {
        "nano-plugin-abi.workspace = true" => format!("nano-plugin-abi = {{ {path} }}"),
        _ => line.replace("workspace = true", &path),
    }
}

fn lib_text(names: &Names, category: &str) -> String {
    TEMPLATE_LIB
        .replace("TemplateNode", &names.type_name)
        .replace("\"template-node\"", &format!("\"{}\"", names.uid))
        .replace("\"Template Node\"", &format!("\"{}\"", names.display))
        .replace(".category(\"Examples\")", &format!(".category({category:?})"))
        .replace("libnode_template", &format!("lib{}", names.lib_name))
}

/// The `plugin-abi` folder of the nano-server checkout `dir` is in, else the
/// one this binary was built from.
fn find_plugin_abi(dir: &Path) -> Option<PathBuf> {
    let start = absolute(dir);
    let from_checkout = start.ancestors().map(|a| a.join("plugin-abi")).find(|candidate| {
        std::fs::read_to_string(candidate.join("Cargo.toml")).is_ok_and(|m| m.contains("name = \"nano-plugin-abi\""))
    });
    from_checkout.or_else(|| {
        let built = PathBuf::from(BUILT_ABI_DIR);
        built
            .join("Cargo.toml")
            .is_file()
            .then(|| built.canonicalize().unwrap_or(built))
    })
}

fn enclosing_lockfile(dir: &Path) -> Option<PathBuf> {
    let abi = find_plugin_abi(dir)?;
    let lock = abi.parent()?.join("Cargo.lock");
    lock.is_file().then_some(lock)
}

/// `target` as a path relative to `from` (both made absolute).
fn relative_to(target: &Path, from: &Path) -> Option<PathBuf> {
    let (target, from) = (absolute(target), absolute(from));
    let common = target
        .components()
        .zip(from.components())
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 {
        return None;
    }
    let mut out = PathBuf::new();
    for _ in from.components().skip(common) {
        out.push("..");
    }
    for part in target.components().skip(common) {
        out.push(part);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["word_count", "my-node", "n1"] {
            assert_eq!(invalid_name(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("1abc", "start"),
            ("my node", "` `"),
            ("fn", "keyword"),
            ("a/b", "`/`"),
        ] {
            let reason = invalid_name(bad).unwrap_or_default();
            assert!(reason.contains(why), "{bad:?}: {reason}");
        }
    }

    #[test]
    fn the_template_becomes_a_standalone_crate() {
        let names = Names::new("word_shout");
        let manifest = manifest_text(&names, Path::new("../../plugin-abi"));
        assert!(manifest.contains("name = \"word_shout\""));
        assert!(manifest.contains("nano-plugin-abi = { path = \"../../plugin-abi\" }"));
        let dev = manifest.split("[dev-dependencies]").nth(1).unwrap_or_default();
        assert!(
            dev.contains("nano-plugin-abi = { path = \"../../plugin-abi\", features = [\"testing\"] }"),
            "{manifest}"
        );
        assert!(manifest.contains("[workspace]"));
        assert!(!manifest.contains(".workspace = true"), "{manifest}");
        let lib = lib_text(&names, "Text");
        assert!(lib.contains("NodeDefinition::new(\"word-shout\", \"Word Shout\")"));
        assert!(lib.contains(".category(\"Text\")"));
        assert!(lib.contains("pub struct WordShout;"));
        assert!(lib.contains("export_nodes![WordShout]"));
        assert!(!lib.contains("TemplateNode") && !lib.contains("template-node"));
    }

    #[test]
    fn the_python_template_is_named_after_the_node() {
        let text = python_text(&Names::new("word_shout"), "It's text");
        assert!(text.contains("'uid': 'word-shout'"), "{text}");
        assert!(text.contains("'name': 'Word Shout'"), "{text}");
        assert!(text.contains(r"'category': 'It\'s text'"), "{text}");
        assert!(!text.contains("template-node"), "{text}");
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_to(Path::new("/r/plugin-abi"), Path::new("/r/nodes/text/x")),
            Some(PathBuf::from("../../../plugin-abi"))
        );
    }
}
