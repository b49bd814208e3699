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
//! `NanoCore is not reachable at …`); `?` turns them into a
//! [`NodeError`](crate::NodeError). The messages behind these calls are the
//! [`host_wire`](crate::host_wire) contract.

use std::{
    fmt,
    io::{self, Read, Write},
    path::Path,
};

use serde::de::DeserializeOwned;

pub use crate::host_wire::{AssetFilter, AssetInfo, CHUNK_BYTES, ErrorKind, PresignedUrl, Resource, Upload};
use crate::{
    host::Host,
    host_wire::{Allocated, Begun, Call, Exists, Failure, Opened, Url},
};

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
        let opened: Opened = answer(call(self.host, &Call::Open { hash: hash.into() }, &[])?)?;
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
        let exists: Exists = answer(call(self.host, &Call::Exists { hash: hash.into() }, &[])?)?;
        Ok(exists.exists)
    }

    /// The assets matching `filter`.
    pub fn list(&self, filter: &AssetFilter) -> Result<Vec<AssetInfo>, ServiceError> {
        if let Some(hash) = &filter.hash {
            check_hash(hash)?;
        }
        answer(call(self.host, &Call::List(filter.clone()), &[])?)
    }

    /// A time-limited URL that downloads asset `hash` without the token.
    pub fn presigned_url(&self, hash: &str) -> Result<PresignedUrl, ServiceError> {
        check_hash(hash)?;
        answer(call(self.host, &Call::Presigned { hash: hash.into() }, &[])?)
    }

    /// NanoCore's download URL of asset `hash` (it needs the token, which
    /// only the server holds: hand out [`presigned_url`](Self::presigned_url)
    /// to anything else).
    pub fn download_url(&self, hash: &str) -> Result<String, ServiceError> {
        check_hash(hash)?;
        let url: Url = answer(call(self.host, &Call::DownloadUrl { hash: hash.into() }, &[])?)?;
        Ok(url.url)
    }

    /// Stores `bytes` as an asset (sent in chunks when large).
    pub fn upload(&self, bytes: &[u8], options: &Upload) -> Result<AssetInfo, ServiceError> {
        if bytes.len() <= CHUNK_BYTES {
            return answer(call(self.host, &Call::Upload(options.clone()), bytes)?);
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
        let begun: Begun = answer(call(
            self.host,
            &Call::UploadBegin {
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
            if let Err(err) = call(self.host, &Call::UploadWrite { upload }, &chunk[..n]) {
                break Err(err);
            }
            sent += n as u64;
        };
        match outcome {
            Ok(()) => answer(call(self.host, &Call::UploadFinish { upload }, &[])?),
            Err(err) => {
                let _ = call(self.host, &Call::UploadCancel { upload }, &[]);
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
                &Call::Read {
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
            let _ = call(self.host, &Call::Close { stream: self.stream }, &[]);
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
        let allocated: Allocated = answer(call(self.host, &Call::Allocate(resource.clone()), &[])?)?;
        Ok(allocated.resource_id)
    }

    /// Frees resource `resource_id`.
    pub fn free(&self, resource_id: &str) -> Result<(), ServiceError> {
        call(
            self.host,
            &Call::Free {
                resource_id: resource_id.into(),
            },
            &[],
        )?;
        Ok(())
    }
}

fn call(host: &dyn Host, request: &Call, body: &[u8]) -> Result<(String, Vec<u8>), ServiceError> {
    let request = serde_json::to_string(request).map_err(|e| ServiceError::new(ErrorKind::Other, e.to_string()))?;
    host.call(&request, body).map_err(|failure| {
        serde_json::from_str::<Failure>(&failure)
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
