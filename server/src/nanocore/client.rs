//! NanoCore's HTTP API, as the Python SDK 0.2.x calls it: one client for the
//! whole server (connection reuse, TLS on rustls with the ring provider),
//! built when first needed, every call with the bearer token, every failure
//! turned into an error a node author can read in an `error` status.

use std::time::Duration;

/// A failed call: what the node sees (see [`nano_plugin_abi::services::ServiceError`]).
pub use nano_plugin_abi::host_wire::Failure;
use nano_plugin_abi::host_wire::{AssetFilter, ErrorKind, Upload};
use reqwest::{StatusCode, multipart};
use serde_json::Value;

/// Where NanoCore is and how to reach it.
pub struct Client {
    /// `NANOCORE_HTTP_ENDPOINT` without its trailing `/`; `None` when unset.
    base: Option<String>,
    token: Option<String>,
}

impl Client {
    /// A client for `endpoint` (empty: not configured) with `token`.
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        let base = endpoint.trim().trim_end_matches('/');
        Self {
            base: (!base.is_empty()).then(|| base.to_owned()),
            token: token.filter(|t| !t.is_empty()),
        }
    }

    fn base(&self) -> Result<&str, Failure> {
        self.base.as_deref().ok_or_else(|| {
            Failure::new(
                ErrorKind::NotConfigured,
                "NANOCORE_HTTP_ENDPOINT is not set: this server cannot reach NanoCore for assets and resources",
            )
        })
    }

    /// NanoCore's URL for `path`.
    pub fn url(&self, path: &str) -> Result<String, Failure> {
        Ok(format!("{}{path}", self.base()?))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder, Failure> {
        let url = self.url(path)?;
        let http = http_client()
            .map_err(|err| Failure::new(ErrorKind::Other, format!("cannot create the HTTP client: {err:#}")))?;
        let request = http.request(method, url);
        Ok(match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    /// Sends `request`; a success status or the failure it stands for.
    /// `hash` names the asset a 404 is about.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        hash: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(match (status, hash) {
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) if self.token.is_none() => Failure::new(
                ErrorKind::Unauthorized,
                format!(
                    "NanoCore refused the request ({}): NANOCORE_TOKEN is not set",
                    status.as_u16()
                ),
            ),
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => Failure::new(
                ErrorKind::Unauthorized,
                format!("NanoCore refused the token ({})", status.as_u16()),
            ),
            (StatusCode::NOT_FOUND, Some(hash)) => {
                Failure::new(ErrorKind::NotFound, format!("asset not found: {hash}"))
            }
            _ => Failure::new(
                ErrorKind::Other,
                format!("NanoCore answered {} to {what}: {}", status.as_u16(), excerpt(&body)),
            ),
        })
    }

    /// A transport error (no answer at all).
    pub fn transport(&self, err: reqwest::Error) -> Failure {
        let base = self.base.as_deref().unwrap_or("?");
        if err.is_connect() || err.is_timeout() {
            Failure::new(
                ErrorKind::Unreachable,
                format!("NanoCore is not reachable at {base}: {}", root_cause(&err)),
            )
        } else {
            Failure::new(
                ErrorKind::Other,
                format!("talking to NanoCore at {base}: {}", root_cause(&err)),
            )
        }
    }

    async fn json(&self, request: reqwest::RequestBuilder, what: &str, hash: Option<&str>) -> Result<Value, Failure> {
        let response = self.send(request, what, hash).await?;
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Failure::new(
                ErrorKind::Other,
                format!(
                    "NanoCore's answer to {what} is not JSON ({e}): {}",
                    excerpt(&String::from_utf8_lossy(&bytes))
                ),
            )
        })
    }

    /// `GET /assets/{hash}/download`: the response, to read in chunks.
    pub async fn download(&self, hash: &str) -> Result<reqwest::Response, Failure> {
        let path = format!("/assets/{hash}/download");
        self.send(self.request(reqwest::Method::GET, &path)?, "a download", Some(hash))
            .await
    }

    /// `GET /assets/{hash}/exists`.
    pub async fn exists(&self, hash: &str) -> Result<Value, Failure> {
        let path = format!("/assets/{hash}/exists");
        self.json(self.request(reqwest::Method::GET, &path)?, "exists", Some(hash))
            .await
    }

    /// `GET /assets/{hash}/presigned`.
    pub async fn presigned(&self, hash: &str) -> Result<Value, Failure> {
        let path = format!("/assets/{hash}/presigned");
        self.json(self.request(reqwest::Method::GET, &path)?, "presigned", Some(hash))
            .await
    }

    /// `GET /assets?type=&hash=`.
    pub async fn list(&self, filter: &AssetFilter) -> Result<Value, Failure> {
        let mut query = Vec::new();
        if let Some(kind) = &filter.kind {
            query.push(("type", kind.as_str()));
        }
        if let Some(hash) = &filter.hash {
            query.push(("hash", hash.as_str()));
        }
        let listed = self
            .json(
                self.request(reqwest::Method::GET, "/assets")?.query(&query),
                "list",
                None,
            )
            .await?;
        match listed {
            Value::Array(_) => Ok(listed),
            // Some NanoCore versions wrap the list.
            Value::Object(mut object) => match object.remove("assets") {
                Some(list @ Value::Array(_)) => Ok(list),
                _ => Err(Failure::new(ErrorKind::Other, "NanoCore's asset list is not a list")),
            },
            _ => Err(Failure::new(ErrorKind::Other, "NanoCore's asset list is not a list")),
        }
    }

    /// `POST /assets` (multipart): `file` from `body` (its length known
    /// when `size` is given), then `type` and `meta` (as JSON).
    pub async fn upload(&self, body: reqwest::Body, size: Option<u64>, options: &Upload) -> Result<Value, Failure> {
        let mut file = match size {
            Some(size) => multipart::Part::stream_with_length(body, size),
            None => multipart::Part::stream(body),
        };
        file = file.file_name(upload_file_name(options.filename.as_deref()));
        let mut form = multipart::Form::new().part("file", file);
        if let Some(kind) = &options.kind {
            form = form.text("type", kind.clone());
        }
        if let Some(meta) = &options.meta {
            form = form.text("meta", meta.to_string());
        }
        self.json(
            self.request(reqwest::Method::POST, "/assets")?.multipart(form),
            "an upload",
            None,
        )
        .await
    }

    /// `POST /resources` with `action` and `data`.
    pub async fn resources(&self, server_uid: &str, action: &str, data: Value) -> Result<Value, Failure> {
        let body = serde_json::json!({"serverUid": server_uid, "action": action, "data": data});
        let request = self
            .request(reqwest::Method::POST, "/resources")?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let response = self.send(request, &format!("{action} of a resource"), None).await?;
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

/// The server's one HTTP client (NanoCore's API, trace export): built when
/// first needed, so a server that calls nothing never depends on it, then
/// shared by every caller (clones share its connection pool).
///
/// Without CA certificates on the system (a minimal container image) it
/// trusts no root, with a warning: plain HTTP still works, HTTPS fails at
/// the handshake saying why.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    // reqwest's rustls is built without a provider: install ring, once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = || {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Between two reads, not in total: large downloads take what they take.
            .read_timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("nano-server/", env!("CARGO_PKG_VERSION")))
    };
    let client = match builder().build() {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!(
                "cannot use the system's CA certificates ({}): HTTPS calls (NanoCore, a trace collector) \
                 will fail; plain HTTP works",
                root_cause(&err)
            );
            builder()
                .tls_certs_only(Vec::<reqwest::tls::Certificate>::new())
                .build()?
        }
    };
    Ok(CLIENT.get_or_init(|| client).clone())
}

/// The name an upload is sent to NanoCore under: the last component of what
/// the node or browser gave, so a name like `../../etc/passwd` (or its
/// Windows form) can never reach a path at NanoCore; `upload` when nothing
/// usable is left.
fn upload_file_name(given: Option<&str>) -> String {
    let last = given.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    let name: String = last.chars().filter(|c| !c.is_control()).collect();
    match name.trim() {
        "" | "." | ".." => "upload".to_owned(),
        name => name.to_owned(),
    }
}

/// The innermost cause: "Connection refused (os error 111)" rather than
/// "error sending request".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::upload_file_name;

    #[test]
    fn upload_names_lose_their_path() {
        for (given, sent) in [
            (Some("../../../etc/passwd"), "passwd"),
            (Some("/abs/photo.png"), "photo.png"),
            (Some("..\\..\\windows\\evil.dll"), "evil.dll"),
            (Some("dir/sub\\mixed.txt"), "mixed.txt"),
            (Some("plain name.txt"), "plain name.txt"),
            (Some("line\r\nbreak.txt"), "linebreak.txt"),
            (Some("../"), "upload"),
            (Some(".."), "upload"),
            (Some(""), "upload"),
            (None, "upload"),
        ] {
            assert_eq!(upload_file_name(given), sent, "{given:?}");
        }
    }
}
