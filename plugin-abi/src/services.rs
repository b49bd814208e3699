//! NanoCore's host services for nodes: assets (images, audio, models stored
//! by NanoCore, named by the SHA-256 of their content) and resources (GPU
//! memory reserved through NanoCore).
//!
//! A node reaches them through its [`Context`](crate::Context):
//!
//! ```no_run
//! use nano_plugin_abi::{prelude::*, services::Upload};
//! use serde_json::json;
//!
//! # fn run(ctx: &Context) -> NodeResult {
//! let hash: String = ctx.input("image")?;
//! let bytes = ctx.assets().resolve(&hash)?; // the whole asset
//! let mut reader = ctx.assets().open(&hash)?; // or a std::io::Read, in chunks
//! let asset = ctx.assets().upload(
//!     &bytes,
//!     &Upload::new().kind("image").filename("copy.png").meta(json!({"source": hash})),
//! )?;
//! Ok(Outputs::new().with("image", asset.hash))
//! # }
//! ```
//!
//! The plugin carries no HTTP client: every call goes to the server, which
//! makes it with its own client and NanoCore's token (in process isolation
//! the worker forwards it over its channel and never sees the token).
//! Errors read well in an `error` status (`asset not found: sha256:…`,
//! `NanoCore is not reachable at …`); `?` turns them into a [`NodeError`].

use std::{
    fmt,
    io::{self, Read, Write},
    path::Path,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::context::{Host, NodeError};

/// Largest chunk one read of an asset stream or one upload write carries.
pub const CHUNK_BYTES: usize = 256 << 10;

/// What went wrong with a host service call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not an asset id (`sha256:` and 64 hex digits).
    InvalidHash,
    /// NanoCore has no asset with this hash.
    NotFound,
    /// `NANOCORE_HTTP_ENDPOINT` is not set on the server.
    NotConfigured,
    /// NanoCore cannot be reached (connection refused, timeout, DNS).
    Unreachable,
    /// NanoCore refused the token.
    Unauthorized,
    /// The execution was aborted while the call ran.
    Aborted,
    /// The host has no services (a server older than this crate).
    Unsupported,
    /// Anything else (NanoCore answered an error, a local file failed).
    Other,
}

/// A failed host service call: its kind and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    kind: ErrorKind,
    message: String,
}

impl ServiceError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<ServiceError> for NodeError {
    fn from(err: ServiceError) -> Self {
        NodeError::new(err.message)
    }
}

impl From<ServiceError> for io::Error {
    fn from(err: ServiceError) -> Self {
        let kind = match err.kind {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::Aborted => io::ErrorKind::Interrupted,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

/// Checks that `hash` names an asset: `sha256:` and 64 hex digits.
pub fn check_hash(hash: &str) -> Result<(), ServiceError> {
    match hash.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        _ => Err(ServiceError::new(
            ErrorKind::InvalidHash,
            format!("not an asset id: {hash:?} (expected sha256: and 64 hex digits)"),
        )),
    }
}

/// An asset as NanoCore describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetInfo {
    /// `sha256:<hex>` of the content.
    pub hash: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The asset type (`image`, `audio`, …).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub meta: Value,
    #[serde(default)]
    pub ephemeral: bool,
    /// True when NanoCore already had this content (uploads only).
    #[serde(rename = "alreadyExists", default)]
    pub already_exists: bool,
}

/// A time-limited URL to download an asset without the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignedUrl {
    pub url: String,
    /// Seconds the URL stays valid.
    #[serde(rename = "expiresIn", default)]
    pub expires_in: Option<u64>,
}

/// How to store an upload: its type, file name and metadata (JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

impl Upload {
    /// No type, file name or metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// The asset type (`image`, `audio`, …).
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// The file name NanoCore records.
    pub fn filename(mut self, filename: impl Into<String>) -> Self {
        self.filename = Some(filename.into());
        self
    }

    /// Metadata, sent as JSON.
    pub fn meta(mut self, meta: Value) -> Self {
        self.meta = Some(meta);
        self
    }
}

/// Which assets [`Assets::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetFilter {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// A GPU (or other) resource to reserve through NanoCore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Its id; the server makes one up when empty.
    #[serde(rename = "resourceId", default)]
    pub resource_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// Video memory it takes, in bytes.
    #[serde(rename = "vramUsage", default)]
    pub vram_usage: u64,
    #[serde(default)]
    pub metadata: Value,
}

/// NanoCore's assets, for one execution: [`Context::assets`](crate::Context::assets).
#[derive(Clone, Copy)]
pub struct Assets<'a> {
    host: &'a dyn Host,
}

impl<'a> Assets<'a> {
    pub(crate) fn new(host: &'a dyn Host) -> Self {
        Self { host }
    }

    /// The whole content of asset `hash`, in memory (fetched in chunks).
    pub fn resolve(&self, hash: &str) -> Result<Vec<u8>, ServiceError> {
        let mut reader = self.open(hash)?;
        let mut bytes = Vec::with_capacity(reader.size().unwrap_or(0).min(1 << 30) as usize);
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| unwrap_io(Path::new(hash), e))?;
        Ok(bytes)
    }

    /// Asset `hash` as a reader, fetched in chunks of at most
    /// [`CHUNK_BYTES`] as it is read: large assets never sit in memory.
    pub fn open(&self, hash: &str) -> Result<AssetReader<'a>, ServiceError> {
        check_hash(hash)?;
        let opened: wire::Opened = answer(call(self.host, &wire::Call::Open { hash: hash.into() }, &[])?)?;
        Ok(AssetReader {
            host: self.host,
            stream: opened.stream,
            size: opened.size,
            pending: Vec::new(),
            offset: 0,
            done: false,
        })
    }

    /// Downloads asset `hash` into the file at `path` (created or
    /// truncated), in chunks; returns its size.
    pub fn download_to(&self, hash: &str, path: impl AsRef<Path>) -> Result<u64, ServiceError> {
        let path = path.as_ref();
        let mut reader = self.open(hash)?;
        let mut file = std::fs::File::create(path).map_err(|e| local(path, e))?;
        let size = io::copy(&mut reader, &mut file).map_err(|e| unwrap_io(path, e))?;
        file.flush().map_err(|e| local(path, e))?;
        Ok(size)
    }

    /// Whether NanoCore has asset `hash`.
    pub fn exists(&self, hash: &str) -> Result<bool, ServiceError> {
        check_hash(hash)?;
        let exists: wire::Exists = answer(call(self.host, &wire::Call::Exists { hash: hash.into() }, &[])?)?;
        Ok(exists.exists)
    }

    /// The assets matching `filter`.
    pub fn list(&self, filter: &AssetFilter) -> Result<Vec<AssetInfo>, ServiceError> {
        if let Some(hash) = &filter.hash {
            check_hash(hash)?;
        }
        answer(call(self.host, &wire::Call::List(filter.clone()), &[])?)
    }

    /// A time-limited URL that downloads asset `hash` without the token.
    pub fn presigned_url(&self, hash: &str) -> Result<PresignedUrl, ServiceError> {
        check_hash(hash)?;
        answer(call(self.host, &wire::Call::Presigned { hash: hash.into() }, &[])?)
    }

    /// NanoCore's download URL of asset `hash` (it needs the token, which
    /// only the server holds: hand out [`presigned_url`](Self::presigned_url)
    /// to anything else).
    pub fn download_url(&self, hash: &str) -> Result<String, ServiceError> {
        check_hash(hash)?;
        let url: wire::Url = answer(call(self.host, &wire::Call::DownloadUrl { hash: hash.into() }, &[])?)?;
        Ok(url.url)
    }

    /// Stores `bytes` as an asset (sent in chunks when large).
    pub fn upload(&self, bytes: &[u8], options: &Upload) -> Result<AssetInfo, ServiceError> {
        if bytes.len() <= CHUNK_BYTES {
            return answer(call(self.host, &wire::Call::Upload(options.clone()), bytes)?);
        }
        let mut rest = bytes;
        self.upload_chunks(options.clone(), bytes.len() as u64, |chunk| {
            let (head, tail) = rest.split_at(rest.len().min(chunk.len()));
            chunk[..head.len()].copy_from_slice(head);
            rest = tail;
            Ok(head.len())
        })
    }

    /// Stores the file at `path` as an asset, sent in chunks (its file name
    /// is used when `options` names none).
    pub fn upload_file(&self, path: impl AsRef<Path>, options: &Upload) -> Result<AssetInfo, ServiceError> {
        let path = path.as_ref();
        let mut file = std::fs::File::open(path).map_err(|e| local(path, e))?;
        let size = file.metadata().map_err(|e| local(path, e))?.len();
        let mut options = options.clone();
        if options.filename.is_none() {
            options.filename = path.file_name().map(|n| n.to_string_lossy().into_owned());
        }
        self.upload_chunks(options, size, |chunk| {
            loop {
                match file.read(chunk) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    read => return read.map_err(|e| local(path, e)),
                }
            }
        })
    }

    /// Uploads `size` bytes that `fill` hands over chunk by chunk (0 at
    /// the end), each sent as it comes.
    fn upload_chunks(
        &self,
        options: Upload,
        size: u64,
        mut fill: impl FnMut(&mut [u8]) -> Result<usize, ServiceError>,
    ) -> Result<AssetInfo, ServiceError> {
        let begun: wire::Begun = answer(call(
            self.host,
            &wire::Call::UploadBegin {
                upload: options,
                size: Some(size),
            },
            &[],
        )?)?;
        let upload = begun.upload;
        let mut chunk = vec![0; CHUNK_BYTES];
        let mut sent = 0u64;
        let outcome = loop {
            if self.host.is_aborted() {
                break Err(ServiceError::new(ErrorKind::Aborted, "Execution aborted"));
            }
            let want = (size - sent).min(CHUNK_BYTES as u64) as usize;
            let n = match fill(&mut chunk[..want]) {
                Ok(0) if sent == size => break Ok(()),
                Ok(0) => break Err(ServiceError::new(ErrorKind::Other, "the content ended before its size")),
                Ok(n) => n,
                Err(err) => break Err(err),
            };
            if let Err(err) = call(self.host, &wire::Call::UploadWrite { upload }, &chunk[..n]) {
                break Err(err);
            }
            sent += n as u64;
        };
        match outcome {
            Ok(()) => answer(call(self.host, &wire::Call::UploadFinish { upload }, &[])?),
            Err(err) => {
                let _ = call(self.host, &wire::Call::UploadCancel { upload }, &[]);
                Err(err)
            }
        }
    }
}

/// An asset being read in chunks: [`Assets::open`]. Dropping it cancels
/// the download.
pub struct AssetReader<'a> {
    host: &'a dyn Host,
    stream: u64,
    size: Option<u64>,
    pending: Vec<u8>,
    offset: usize,
    done: bool,
}

impl AssetReader<'_> {
    /// The asset's size, when NanoCore said.
    pub fn size(&self) -> Option<u64> {
        self.size
    }
}

impl Read for AssetReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offset == self.pending.len() {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            if self.host.is_aborted() {
                return Err(ServiceError::new(ErrorKind::Aborted, "Execution aborted").into());
            }
            let (_, chunk) = call(
                self.host,
                &wire::Call::Read {
                    stream: self.stream,
                    max: CHUNK_BYTES as u32,
                },
                &[],
            )?;
            if chunk.is_empty() {
                self.done = true;
                return Ok(0);
            }
            self.pending = chunk;
            self.offset = 0;
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

impl Drop for AssetReader<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = call(self.host, &wire::Call::Close { stream: self.stream }, &[]);
        }
    }
}

/// NanoCore's resources, for one execution: [`Context::resources`](crate::Context::resources).
/// The server remembers what a library version allocated: what is still
/// allocated when its worker ends (or the server stops) is freed for it.
#[derive(Clone, Copy)]
pub struct Resources<'a> {
    host: &'a dyn Host,
}

impl<'a> Resources<'a> {
    pub(crate) fn new(host: &'a dyn Host) -> Self {
        Self { host }
    }

    /// Reserves `resource`; returns its id (made up by the server when
    /// `resource.resource_id` is empty).
    pub fn allocate(&self, resource: &Resource) -> Result<String, ServiceError> {
        let allocated: wire::Allocated = answer(call(self.host, &wire::Call::Allocate(resource.clone()), &[])?)?;
        Ok(allocated.resource_id)
    }

    /// Frees resource `resource_id`.
    pub fn free(&self, resource_id: &str) -> Result<(), ServiceError> {
        call(
            self.host,
            &wire::Call::Free {
                resource_id: resource_id.into(),
            },
            &[],
        )?;
        Ok(())
    }
}

/// The failure (as JSON) of a call the host does not offer.
pub(crate) fn unsupported() -> String {
    failure(
        ErrorKind::Unsupported,
        "this server offers no NanoCore services (it was built against nano-plugin-abi 0.1.1 or older)",
    )
}

/// A failure as `host_call` returns it.
#[doc(hidden)]
pub fn failure(kind: ErrorKind, message: impl Into<String>) -> String {
    serde_json::to_string(&wire::Failure {
        kind,
        message: message.into(),
    })
    .unwrap_or_default()
}

fn call(host: &dyn Host, request: &wire::Call, body: &[u8]) -> Result<(String, Vec<u8>), ServiceError> {
    let request = serde_json::to_string(request).map_err(|e| ServiceError::new(ErrorKind::Other, e.to_string()))?;
    host.call(&request, body).map_err(|failure| {
        serde_json::from_str::<wire::Failure>(&failure)
            .map(|f| ServiceError::new(f.kind, f.message))
            .unwrap_or_else(|_| ServiceError::new(ErrorKind::Other, failure))
    })
}

fn answer<T: DeserializeOwned>((json, _): (String, Vec<u8>)) -> Result<T, ServiceError> {
    serde_json::from_str(&json).map_err(|e| {
        ServiceError::new(
            ErrorKind::Other,
            format!("unexpected answer from the server ({e}): {json}"),
        )
    })
}

fn local(path: &Path, err: io::Error) -> ServiceError {
    ServiceError::new(ErrorKind::Other, format!("{}: {err}", path.display()))
}

/// A reader's error back as the service error it carries.
fn unwrap_io(path: &Path, err: io::Error) -> ServiceError {
    match err.get_ref().and_then(|e| e.downcast_ref::<ServiceError>()) {
        Some(service) => service.clone(),
        None => local(path, err),
    }
}

/// The calls as they cross to the host (JSON), shared by the plugin side,
/// the server and the [`testing`](crate::testing) store.
#[doc(hidden)]
pub mod wire {
    use serde::{Deserialize, Serialize};

    use super::{AssetFilter, ErrorKind, Resource, Upload};

    /// One host service call.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "op", rename_all = "snake_case")]
    pub enum Call {
        /// Answers [`Opened`].
        Open {
            hash: String,
        },
        /// Answers up to `max` bytes of the stream; none at its end.
        Read {
            stream: u64,
            max: u32,
        },
        Close {
            stream: u64,
        },
        /// Answers [`Exists`].
        Exists {
            hash: String,
        },
        /// Answers a list of assets.
        List(AssetFilter),
        /// Answers a presigned URL.
        Presigned {
            hash: String,
        },
        /// Answers [`Url`].
        DownloadUrl {
            hash: String,
        },
        /// The body is the content; answers the asset.
        Upload(Upload),
        /// Answers [`Begun`].
        UploadBegin {
            upload: Upload,
            size: Option<u64>,
        },
        /// The body is the next chunk.
        UploadWrite {
            upload: u64,
        },
        /// Answers the asset.
        UploadFinish {
            upload: u64,
        },
        UploadCancel {
            upload: u64,
        },
        /// Answers [`Allocated`].
        Allocate(Resource),
        Free {
            #[serde(rename = "resourceId")]
            resource_id: String,
        },
    }

    impl Call {
        /// The operation's name, for logs and errors.
        pub fn name(&self) -> &'static str {
            match self {
                Call::Open { .. } => "open",
                Call::Read { .. } => "read",
                Call::Close { .. } => "close",
                Call::Exists { .. } => "exists",
                Call::List(_) => "list",
                Call::Presigned { .. } => "presigned",
                Call::DownloadUrl { .. } => "download_url",
                Call::Upload(_) => "upload",
                Call::UploadBegin { .. } => "upload_begin",
                Call::UploadWrite { .. } => "upload_write",
                Call::UploadFinish { .. } => "upload_finish",
                Call::UploadCancel { .. } => "upload_cancel",
                Call::Allocate(_) => "allocate",
                Call::Free { .. } => "free",
            }
        }
    }

    /// A failed call, as JSON in the `Err` of `host_call`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Failure {
        pub kind: ErrorKind,
        pub message: String,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Opened {
        pub stream: u64,
        pub size: Option<u64>,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Exists {
        pub exists: bool,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Url {
        pub url: String,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Begun {
        pub upload: u64,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Allocated {
        #[serde(rename = "resourceId")]
        pub resource_id: String,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        prelude::*,
        testing::{self, AssetStore},
    };

    /// Runs `f` as a node against `store`.
    fn with_ctx(store: &AssetStore, f: impl Fn(&Context) -> NodeResult + Send + Sync + 'static) -> NodeResult {
        struct Probe<F>(F);
        impl<F: Fn(&Context) -> NodeResult + Send + Sync + 'static> Node for Probe<F> {
            fn definition(&self) -> NodeDefinition {
                NodeDefinition::new("probe", "Probe")
            }
            fn execute(&self, ctx: &Context) -> NodeResult {
                (self.0)(ctx)
            }
        }
        testing::run_with(&Probe(f), json!({}), json!({}), store).result
    }

    #[test]
    fn a_reader_streams_a_large_asset_in_chunks_and_files_go_both_ways() {
        let store = AssetStore::new();
        let content: Vec<u8> = (0..(3 * CHUNK_BYTES + 17)).map(|i| (i % 251) as u8).collect();
        let hash = store.put(content.clone(), "blob");
        let dir = std::env::temp_dir().join(format!("nano-abi-services-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = with_ctx(&store, {
            let (hash, dir) = (hash.clone(), dir.clone());
            move |ctx| {
                let mut reader = ctx.assets().open(&hash)?;
                let mut read = Vec::new();
                reader.read_to_end(&mut read).map_err(NodeError::new)?;
                let size = ctx.assets().download_to(&hash, dir.join("copy.bin"))?;
                let uploaded = ctx
                    .assets()
                    .upload_file(dir.join("copy.bin"), &Upload::new().kind("blob"))?;
                Ok(Outputs::new()
                    .with("read", read.len())
                    .with("size", size)
                    .with("same", read == ctx.assets().resolve(&hash)?)
                    .with("again", ctx.assets().upload(&read, &Upload::new())?.hash == hash)
                    .with("uploaded", uploaded))
            }
        })
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(out.get("read"), Some(&json!([content.len()])));
        assert_eq!(out.get("size"), Some(&json!([content.len()])));
        assert_eq!(out.get("same"), Some(&json!([true])));
        assert_eq!(out.get("again"), Some(&json!([true])));
        let uploaded: AssetInfo = serde_json::from_value(out.get("uploaded").unwrap()[0].clone()).unwrap();
        assert_eq!(uploaded.hash, hash);
        assert!(uploaded.already_exists);
        assert_eq!(uploaded.name.as_deref(), Some("copy.bin"));
    }

    #[test]
    fn hashes_are_checked_before_any_call_and_errors_read_well() {
        let store = AssetStore::new();
        let err = with_ctx(&store, |ctx| {
            ctx.assets()
                .exists("sha256:abc")
                .map(|_| Outputs::new())
                .map_err(Into::into)
        })
        .unwrap_err();
        assert!(err.message().starts_with("not an asset id"), "{err}");
        let unknown = format!("sha256:{}", "ab".repeat(32));
        let err = with_ctx(&store, move |ctx| {
            ctx.assets()
                .resolve(&unknown)
                .map(|_| Outputs::new())
                .map_err(Into::into)
        })
        .unwrap_err();
        assert_eq!(err.message(), format!("asset not found: sha256:{}", "ab".repeat(32)));
    }

    #[test]
    fn resources_are_allocated_and_freed() {
        let store = AssetStore::new();
        let probe = store.clone();
        with_ctx(&store, move |ctx| {
            let id = ctx.resources().allocate(&Resource {
                kind: "gpu".into(),
                name: "model".into(),
                vram_usage: 1 << 30,
                ..Resource::default()
            })?;
            assert_eq!(probe.resources().len(), 1);
            ctx.resources().free(&id)?;
            Ok(Outputs::new())
        })
        .unwrap();
        assert!(store.resources().is_empty());
    }
}
