//! The host-service wire: the messages a plugin and the server exchange for
//! NanoCore's assets and resources. Both sides use these types (the plugin
//! in [`services`](crate::services), the server in its `nanocore` module,
//! the `testing` store in memory), so neither writes the JSON by hand.
//!
//! # Framing
//!
//! One call is one `HostCallbacks::host_call(request, body)` across the
//! boundary (in process isolation, the worker forwards it to the server
//! unchanged):
//!
//! - `request` is a JSON [`Call`], tagged by `op`;
//! - `body` is raw bytes: an upload's content or next chunk, else empty;
//! - the answer is `Ok(HostAnswer { json, bytes })`, `json` being the
//!   answer named in the table below and `bytes` a download's chunk, or
//!   `Err(json)` with a JSON [`Failure`].
//!
//! | `op` | request fields | body | answer `json` | answer `bytes` |
//! |---|---|---|---|---|
//! | `open` | `hash` | | [`Opened`] | |
//! | `read` | `stream`, `max` | | [`Done`] | up to `max` bytes; none at the end |
//! | `close` | `stream` | | [`Done`] | |
//! | `exists` | `hash` | | [`Exists`] (NanoCore's answer) | |
//! | `list` | [`AssetFilter`]'s fields | | a list of [`AssetInfo`] (NanoCore's) | |
//! | `presigned` | `hash` | | [`PresignedUrl`] (NanoCore's) | |
//! | `download_url` | `hash` | | [`Url`] | |
//! | `upload` | [`Upload`]'s fields | the content | [`AssetInfo`] (NanoCore's) | |
//! | `upload_begin` | `upload` ([`Upload`]), `size` | | [`Begun`] | |
//! | `upload_write` | `upload` (the id) | the next chunk | [`Done`] | |
//! | `upload_finish` | `upload` (the id) | | [`AssetInfo`] (NanoCore's) | |
//! | `upload_cancel` | `upload` (the id) | | [`Done`] | |
//! | `allocate` | [`Resource`]'s fields | | [`Allocated`] | |
//! | `free` | `resourceId` | | [`Done`] | |
//!
//! "NanoCore's" answers are forwarded as NanoCore sent them: the plugin
//! reads the fields it knows, so a newer plugin can read fields this
//! crate does not name yet.
//!
//! # Evolution rules
//!
//! Plugins built against any 0.1.x (from 0.1.2, which introduced the wire)
//! talk to any server of 0.1.2 or later, so the bytes of every message
//! here stay as they are: the unit tests below pin each one.
//!
//! - Never rename or remove an `op` or a field; never change a field's type.
//! - A new call is a new `op`; a server that does not know it answers a
//!   [`Failure`] of kind `other`, which the plugin reports.
//! - A new field is optional (`#[serde(default)]`), so an old peer's
//!   message without it still reads.
//! - Answer fields keep the order the 0.1.2 server wrote them in
//!   (alphabetical: it built them as `serde_json::Value`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest chunk one read of an asset stream or one upload write carries.
pub const CHUNK_BYTES: usize = 256 << 10;

/// One host service call: the `request` of `host_call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Call {
    /// Opens asset `hash` for reading; answers [`Opened`].
    Open { hash: String },
    /// Reads up to `max` bytes of `stream`; the bytes come in the answer's
    /// `bytes`, none at the stream's end (which closes it).
    Read { stream: u64, max: u32 },
    /// Closes `stream` before its end.
    Close { stream: u64 },
    /// Answers [`Exists`].
    Exists { hash: String },
    /// Answers a list of [`AssetInfo`].
    List(AssetFilter),
    /// Answers a [`PresignedUrl`].
    Presigned { hash: String },
    /// Answers [`Url`].
    DownloadUrl { hash: String },
    /// Stores the body as an asset in one call; answers its [`AssetInfo`].
    Upload(Upload),
    /// Starts an upload sent in chunks; answers [`Begun`].
    UploadBegin { upload: Upload, size: Option<u64> },
    /// The body is the next chunk of upload `upload`.
    UploadWrite { upload: u64 },
    /// Ends upload `upload`; answers the asset's [`AssetInfo`].
    UploadFinish { upload: u64 },
    /// Drops upload `upload`.
    UploadCancel { upload: u64 },
    /// Reserves a resource; answers [`Allocated`].
    Allocate(Resource),
    /// Frees a resource.
    Free {
        #[serde(rename = "resourceId")]
        resource_id: String,
    },
}

impl Call {
    /// The operation's name (its `op`), for logs and errors.
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

/// A failed call: the `Err` of `host_call`, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: ErrorKind,
    /// For humans: it ends up in the node's `error` status.
    pub message: String,
}

impl Failure {
    /// A failure of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The failure of every call to a host that offers no services.
    pub fn unsupported() -> Self {
        Self::new(
            ErrorKind::Unsupported,
            "this server offers no NanoCore services (it was built against nano-plugin-abi 0.1.1 or older)",
        )
    }

    /// As JSON, the way `host_call` returns it.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

/// The answer to [`Call::Open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    /// The content's length, when NanoCore said.
    pub size: Option<u64>,
    /// The id to [`Call::Read`] and [`Call::Close`] it by.
    pub stream: u64,
}

/// The answer to calls that return nothing but success: `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}

/// The answer to [`Call::Exists`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exists {
    pub exists: bool,
}

/// The answer to [`Call::DownloadUrl`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Url {
    pub url: String,
}

/// The answer to [`Call::UploadBegin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Begun {
    /// The id to [`Call::UploadWrite`], finish or cancel it by.
    pub upload: u64,
}

/// The answer to [`Call::Allocate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocated {
    #[serde(rename = "resourceId")]
    pub resource_id: String,
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

/// Which assets a [`Call::List`] returns.
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

/// A message as JSON text. The types here have string keys only, so
/// encoding cannot fail.
pub fn to_json<T: Serialize + ?Sized>(message: &T) -> String {
    serde_json::to_string(message).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;

    const HASH: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// `message` encodes to exactly `bytes` (what 0.1.2 wrote) and reads back.
    fn pinned<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(message: T, bytes: &str) {
        assert_eq!(to_json(&message), bytes);
        assert_eq!(serde_json::from_str::<T>(bytes).unwrap(), message, "{bytes}");
    }

    #[test]
    fn calls_keep_the_bytes_plugins_send() {
        let upload = Upload::new().kind("image").filename("a.png").meta(json!({"w": 1}));
        let calls = [
            (Call::Open { hash: HASH.into() }, format!(r#"{{"op":"open","hash":"{HASH}"}}"#)),
            (
                Call::Read {
                    stream: 7,
                    max: CHUNK_BYTES as u32,
                },
                r#"{"op":"read","stream":7,"max":262144}"#.into(),
            ),
            (Call::Close { stream: 7 }, r#"{"op":"close","stream":7}"#.into()),
            (Call::Exists { hash: HASH.into() }, format!(r#"{{"op":"exists","hash":"{HASH}"}}"#)),
            (Call::List(AssetFilter::default()), r#"{"op":"list"}"#.into()),
            (
                Call::List(AssetFilter {
                    kind: Some("image".into()),
                    hash: Some(HASH.into()),
                }),
                format!(r#"{{"op":"list","type":"image","hash":"{HASH}"}}"#),
            ),
            (Call::Presigned { hash: HASH.into() }, format!(r#"{{"op":"presigned","hash":"{HASH}"}}"#)),
            (
                Call::DownloadUrl { hash: HASH.into() },
                format!(r#"{{"op":"download_url","hash":"{HASH}"}}"#),
            ),
            (Call::Upload(Upload::new()), r#"{"op":"upload"}"#.into()),
            (
                Call::Upload(upload.clone()),
                r#"{"op":"upload","type":"image","filename":"a.png","meta":{"w":1}}"#.into(),
            ),
            (
                Call::UploadBegin {
                    upload,
                    size: Some(10),
                },
                r#"{"op":"upload_begin","upload":{"type":"image","filename":"a.png","meta":{"w":1}},"size":10}"#.into(),
            ),
            (
                Call::UploadBegin {
                    upload: Upload::new(),
                    size: None,
                },
                r#"{"op":"upload_begin","upload":{},"size":null}"#.into(),
            ),
            (Call::UploadWrite { upload: 3 }, r#"{"op":"upload_write","upload":3}"#.into()),
            (Call::UploadFinish { upload: 3 }, r#"{"op":"upload_finish","upload":3}"#.into()),
            (Call::UploadCancel { upload: 3 }, r#"{"op":"upload_cancel","upload":3}"#.into()),
            (
                Call::Allocate(Resource {
                    resource_id: String::new(),
                    kind: "gpu".into(),
                    name: "model".into(),
                    vram_usage: 1 << 30,
                    metadata: json!({"device": 0}),
                }),
                r#"{"op":"allocate","resourceId":"","type":"gpu","name":"model","vramUsage":1073741824,"metadata":{"device":0}}"#
                    .into(),
            ),
            (
                Call::Free {
                    resource_id: "r-1".into(),
                },
                r#"{"op":"free","resourceId":"r-1"}"#.into(),
            ),
        ];
        for (call, bytes) in calls {
            assert_eq!(call.name(), serde_json::from_str::<Value>(&bytes).unwrap()["op"]);
            pinned(call, &bytes);
        }
    }

    #[test]
    fn answers_keep_the_bytes_the_server_wrote() {
        // The 0.1.2 server wrote these with `json!`, whose keys come out sorted.
        pinned(
            Opened {
                size: Some(1024),
                stream: 7,
            },
            r#"{"size":1024,"stream":7}"#,
        );
        pinned(Opened { size: None, stream: 7 }, r#"{"size":null,"stream":7}"#);
        pinned(Done {}, "{}");
        pinned(Exists { exists: true }, r#"{"exists":true}"#);
        pinned(
            Url {
                url: format!("http://nanocore/assets/{HASH}/download"),
            },
            &format!(r#"{{"url":"http://nanocore/assets/{HASH}/download"}}"#),
        );
        pinned(Begun { upload: 3 }, r#"{"upload":3}"#);
        pinned(
            Allocated {
                resource_id: "r-1".into(),
            },
            r#"{"resourceId":"r-1"}"#,
        );
        pinned(
            PresignedUrl {
                url: "http://x".into(),
                expires_in: Some(3600),
            },
            r#"{"url":"http://x","expiresIn":3600}"#,
        );
    }

    #[test]
    fn failures_keep_their_bytes() {
        pinned(
            Failure::new(ErrorKind::NotFound, format!("asset not found: {HASH}")),
            &format!(r#"{{"kind":"not_found","message":"asset not found: {HASH}"}}"#),
        );
        let kinds = [
            (ErrorKind::InvalidHash, "invalid_hash"),
            (ErrorKind::NotConfigured, "not_configured"),
            (ErrorKind::Unreachable, "unreachable"),
            (ErrorKind::Unauthorized, "unauthorized"),
            (ErrorKind::Aborted, "aborted"),
            (ErrorKind::Other, "other"),
        ];
        for (kind, name) in kinds {
            pinned(
                Failure::new(kind, "m"),
                &format!(r#"{{"kind":"{name}","message":"m"}}"#),
            );
        }
        assert_eq!(
            Failure::unsupported().to_json(),
            r#"{"kind":"unsupported","message":"this server offers no NanoCore services (it was built against nano-plugin-abi 0.1.1 or older)"}"#
        );
    }

    #[test]
    fn nanocores_asset_json_reads_with_defaults() {
        let info: AssetInfo = serde_json::from_str(&format!(
            r#"{{"hash":"{HASH}","type":"image","size":4,"alreadyExists":true,"extra":1}}"#
        ))
        .unwrap();
        assert_eq!(info.kind.as_deref(), Some("image"));
        assert!(info.already_exists && !info.ephemeral && info.meta.is_null() && info.name.is_none());
        assert_eq!(
            to_json(&info),
            format!(
                r#"{{"hash":"{HASH}","name":null,"type":"image","size":4,"created_at":null,"meta":null,"ephemeral":false,"alreadyExists":true}}"#
            )
        );
    }
}
