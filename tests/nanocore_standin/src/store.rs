//! What the stand-in remembers: the assets by hash, the bodies received on
//! `/resources`, and how many requests were turned away for their token.

use std::{
    collections::HashMap,
    sync::{
        Condvar, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One stored asset, as the test sees it.
#[derive(Clone, Debug)]
pub struct Asset {
    /// The content; cloning shares it, it is never copied.
    pub bytes: Bytes,
    /// The uploaded file name, or the hash when the upload had none.
    pub name: String,
    /// The `type` form part (`"file"` when absent).
    pub kind: String,
    /// The `meta` form part exactly as received.
    pub meta_text: Option<String>,
    /// Whether `meta_text` parsed as JSON (the Python SDK sends a Python
    /// `repr`, which does not; our server must send JSON).
    pub meta_is_json: bool,
    /// When it was first stored, RFC 3339 in UTC.
    pub created_at: String,
}

impl Asset {
    /// The asset as NanoCore describes it in JSON (`GET /assets`, `POST /assets`).
    pub(crate) fn to_json(&self, hash: &str, already_exists: bool) -> Value {
        let meta = match &self.meta_text {
            None => Value::Null,
            // A meta that is not JSON is handed back as the text received.
            Some(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
        };
        json!({
            "hash": hash,
            "name": self.name,
            "type": self.kind,
            "size": self.bytes.len(),
            "created_at": self.created_at,
            "meta": meta,
            "ephemeral": false,
            "alreadyExists": already_exists,
        })
    }
}

/// Everything the HTTP handlers and the test share; one per stand-in.
pub(crate) struct Store {
    token: String,
    base_url: String,
    assets: Mutex<Assets>,
    resource_calls: Mutex<Vec<Value>>,
    resource_call_arrived: Condvar,
    unauthorized: AtomicUsize,
}

/// The assets by hash, and their hashes in the order first stored (so
/// listings are stable).
#[derive(Default)]
struct Assets {
    by_hash: HashMap<String, Asset>,
    order: Vec<String>,
}

/// What an upload carried besides the bytes.
pub(crate) struct Upload {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub meta_text: Option<String>,
}

impl Store {
    pub(crate) fn new(token: &str, base_url: String) -> Store {
        Store {
            token: token.to_owned(),
            base_url,
            assets: Mutex::default(),
            resource_calls: Mutex::default(),
            resource_call_arrived: Condvar::new(),
            unauthorized: AtomicUsize::new(0),
        }
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stores `bytes` under `hash` (which the caller computed with
    /// [`Hasher`]) and answers the stored asset and whether it was already
    /// there. Storing the same bytes again keeps them and their creation time
    /// but takes the new upload's name, type and meta, so a test reads what
    /// the last uploader sent.
    pub(crate) fn insert(&self, hash: &str, bytes: Bytes, upload: Upload) -> (Asset, bool) {
        let meta_is_json = upload
            .meta_text
            .as_deref()
            .is_some_and(|t| serde_json::from_str::<Value>(t).is_ok());
        let mut assets = lock(&self.assets);
        let already_exists = assets.by_hash.contains_key(hash);
        let (bytes, created_at) = match assets.by_hash.get(hash) {
            Some(old) => (old.bytes.clone(), old.created_at.clone()),
            None => (bytes, rfc3339(SystemTime::now())),
        };
        let asset = Asset {
            bytes,
            name: upload.name.unwrap_or_else(|| hash.to_owned()),
            kind: upload.kind.unwrap_or_else(|| "file".to_owned()),
            meta_text: upload.meta_text,
            meta_is_json,
            created_at,
        };
        if !already_exists {
            assets.order.push(hash.to_owned());
        }
        assets.by_hash.insert(hash.to_owned(), asset.clone());
        (asset, already_exists)
    }

    pub(crate) fn get(&self, hash: &str) -> Option<Asset> {
        lock(&self.assets).by_hash.get(hash).cloned()
    }

    /// The assets matching the optional filters, in the order first stored.
    pub(crate) fn list(&self, kind: Option<&str>, hash: Option<&str>) -> Vec<Value> {
        let assets = lock(&self.assets);
        assets
            .order
            .iter()
            .filter(|h| hash.is_none_or(|want| want == h.as_str()))
            .map(|h| (h, &assets.by_hash[h]))
            .filter(|(_, a)| kind.is_none_or(|want| want == a.kind))
            .map(|(h, a)| a.to_json(h, false))
            .collect()
    }

    pub(crate) fn record_resource_call(&self, body: Value) {
        lock(&self.resource_calls).push(body);
        self.resource_call_arrived.notify_all();
    }

    pub(crate) fn resource_calls(&self) -> Vec<Value> {
        lock(&self.resource_calls).clone()
    }

    /// Blocks until at least `n` calls arrived or `timeout` passed, then
    /// answers all calls so far.
    pub(crate) fn wait_resource_calls(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut calls = lock(&self.resource_calls);
        while calls.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            calls = self
                .resource_call_arrived
                .wait_timeout(calls, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        calls.clone()
    }

    pub(crate) fn count_unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unauthorized_count(&self) -> usize {
        self.unauthorized.load(Ordering::Relaxed)
    }

    /// The `sig` of a presigned URL: only this stand-in can make one.
    pub(crate) fn signature(&self, hash: &str) -> String {
        let mut hasher = Hasher::default();
        hasher.update(self.token.as_bytes());
        hasher.update(b"\n");
        hasher.update(hash.as_bytes());
        hasher.finish()[7..39].to_owned()
    }
}

/// A poisoned lock only means a test panicked elsewhere; the data is still good.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Computes an asset id, `sha256:<64 lowercase hex>`, over bytes fed in pieces.
#[derive(Default)]
pub(crate) struct Hasher(Sha256);

impl Hasher {
    pub(crate) fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    pub(crate) fn finish(self) -> String {
        let digest = self.0.finalize();
        let mut id = String::with_capacity(71);
        id.push_str("sha256:");
        for byte in digest.iter() {
            id.push_str(&format!("{byte:02x}"));
        }
        id
    }
}

/// The asset id of `bytes`.
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    let mut hasher = Hasher::default();
    hasher.update(bytes);
    hasher.finish()
}

/// Whether `id` has the shape of an asset id.
pub(crate) fn is_asset_id(id: &str) -> bool {
    id.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// `time` as `YYYY-MM-DDThh:mm:ssZ` (days to a civil date after Howard
/// Hinnant's `civil_from_days`), to spare a date crate.
fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_827_696)),
            "2000-02-29T12:34:56Z"
        );
    }

    #[test]
    fn asset_ids_are_sha256_in_lowercase_hex() {
        let id = content_hash(b"abc");
        assert_eq!(
            id,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_asset_id(&id));
        assert!(!is_asset_id(&id.to_uppercase()));
        assert!(!is_asset_id("sha256:abc"));
    }
}
