//! The plugins the tests serve: the workspace's plugin crates, and three
//! built outside it (two ship another `nano-plugin-abi`, one aborts on
//! panic), all built once per test run.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use super::workspace_root;

const PLUGIN_CRATES: &[&str] = &[
    "simple_text_node",
    "complex_math_node",
    "progress_node",
    "image_resize_node",
    "asset_digest_node",
    "test_plugin",
    "init_panic_plugin",
    "not_a_plugin",
    "node-template",
    "swap_v1",
    "swap_v2",
    "assets_plugin",
];

/// A plugin with a workspace of its own, built into the one target folder
/// they share (so their common dependencies, abi_stable first, compile once).
struct OutsidePlugin {
    manifest: &'static str,
    /// Its library's stem, e.g. `nano_plugin_abi`.
    library: &'static str,
    /// The folder its library is copied to, under the shared target folder.
    copy_to: &'static str,
    what: &'static str,
}

const FOREIGN_ABI: OutsidePlugin = OutsidePlugin {
    manifest: "tests/plugins/foreign_abi_plugin/Cargo.toml",
    library: "nano_plugin_abi",
    copy_to: "foreign-abi",
    what: "building the foreign-ABI test plugin",
};

const OLD_ABI: OutsidePlugin = OutsidePlugin {
    manifest: "tests/plugins/abi_0_1_0_plugin/Cargo.toml",
    library: "nano_plugin_abi",
    copy_to: "old-abi",
    what: "building the plugin frozen at nano-plugin-abi 0.1.0",
};

const FAULT: OutsidePlugin = OutsidePlugin {
    manifest: "tests/plugins/fault_plugin/Cargo.toml",
    library: "nano_fault_plugin",
    copy_to: "fault",
    what: "building the fault plugin (panic = \"abort\")",
};

/// The folder holding the server binary (target/debug or target/release).
fn artifact_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_nano-server"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The target folder the out-of-workspace plugins share, beside the
/// workspace's own profiles.
fn outside_target_dir() -> PathBuf {
    artifact_dir().parent().unwrap().join("test-plugins")
}

/// Builds every plugin the tests use (a no-op when up to date) and returns
/// the folder the workspace's libraries are in. Once per test binary: the
/// tests that need a plugin wait here for the first one to build them.
fn built_plugins() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = artifact_dir();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut build = Command::new(env!("CARGO"));
        build.arg("build").current_dir(workspace_root());
        for name in PLUGIN_CRATES {
            build.args(["-p", name]);
        }
        if release {
            build.arg("--release");
        }
        run(&mut build, "building the test plugins");
        for plugin in [&FOREIGN_ABI, &OLD_ABI, &FAULT] {
            build_outside(plugin);
        }
        dir
    })
}

/// Two of the plugins are both the crate `nano_plugin_abi`, so in a shared
/// target folder they write the same library file: each is relinked (its
/// dependencies stay built) and copied out to a folder of its own.
fn build_outside(plugin: &OutsidePlugin) {
    let target = outside_target_dir();
    let file = lib_name(plugin.library);
    for stale in [target.join("debug").join(&file), target.join("debug/deps").join(&file)] {
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", stale.display()),
        }
    }
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "--manifest-path", plugin.manifest, "--target-dir"])
        .arg(&target)
        .current_dir(workspace_root());
    run(&mut build, plugin.what);
    let copy = target.join(plugin.copy_to);
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(target.join("debug").join(&file), copy.join(&file)).unwrap();
}

fn run(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// The library of an out-of-workspace plugin, once built.
fn outside_plugin(plugin: &OutsidePlugin) -> PathBuf {
    built_plugins();
    outside_target_dir().join(plugin.copy_to).join(lib_name(plugin.library))
}

/// The built library of a workspace plugin crate, e.g. `simple_text_node`.
pub fn plugin(crate_name: &str) -> PathBuf {
    built_plugins().join(lib_name(&crate_name.replace('-', "_")))
}

/// The library built against nano-plugin-abi 0.2.0 with another layout.
pub fn foreign_abi_plugin() -> PathBuf {
    outside_plugin(&FOREIGN_ABI)
}

/// The library built against nano-plugin-abi 0.1.0, before `shutdown`.
pub fn abi_0_1_0_plugin() -> PathBuf {
    outside_plugin(&OLD_ABI)
}

/// The plugin whose nodes crash, abort, exit, overflow their stack, leak or
/// hang on purpose (built with `panic = "abort"`).
pub fn fault_plugin() -> PathBuf {
    outside_plugin(&FAULT)
}

/// A library's file name on this platform, e.g. `libswap.so`.
pub fn lib_name(stem: &str) -> String {
    format!("{}{stem}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// A temporary nodes folder.
pub struct NodesDir {
    pub dir: tempfile::TempDir,
}

impl NodesDir {
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The example nodes plus the test plugin (`test-echo`, `test-chatty`,
    /// `test-panic`, …) in `test/`.
    pub fn examples_and_test_plugin() -> Self {
        Self::examples().with_plugin("test", "test_plugin")
    }

    /// The three example nodes, in the seed's folder layout.
    pub fn examples() -> Self {
        Self::empty()
            .with_plugin("processing/simple_text_node", "simple_text_node")
            .with_plugin("processing/complex_math_node", "complex_math_node")
            .with_plugin("utility/progress_node", "progress_node")
    }

    /// Copies plugin `crate_name` into `folder` under its library name.
    pub fn with_plugin(self, folder: &str, crate_name: &str) -> Self {
        let file = plugin(crate_name);
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        self.with_file(&format!("{folder}/{name}"), &std::fs::read(&file).unwrap())
    }

    pub fn with_file(self, relative: &str, bytes: &[u8]) -> Self {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
