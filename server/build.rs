//! Stamps each build with an id, so a worker process started from another
//! build of the binary than its server's is refused at the handshake.

fn main() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    println!(
        "cargo:rustc-env=NANO_BUILD_ID={}-{nanos:x}-{:x}",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        std::process::id()
    );
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
}
