//! A stand-in for NanoCore's HTTP API, for end-to-end tests and benchmarks:
//! the asset endpoints (upload, download, exists, list, presigned URLs) and
//! the resource notifications, in the shapes the Python SDK `nanograph-sdk`
//! 0.2.3 uses (`sdk_check.py` beside this crate checks that against the SDK
//! itself).
//!
//! It serves real HTTP on `127.0.0.1`, from its own thread and tokio
//! runtime, so a test on any runtime (or none) can use it:
//!
//! ```
//! let core = nanocore_standin::StandIn::start("secret");
//! let hash = core.put(b"hello".to_vec(), "text");
//! assert_eq!(core.get(&hash).unwrap().bytes, &b"hello"[..]);
//! // Point the server under test at core.url() with token core.token().
//! ```

use std::{
    net::{Ipv4Addr, TcpListener},
    sync::Arc,
    thread::JoinHandle,
    time::Duration,
};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

mod routes;
mod store;

pub use store::Asset;
use store::{Store, Upload, content_hash};

/// A running stand-in NanoCore; dropping it stops the server.
pub struct StandIn {
    store: Arc<Store>,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Serves on a free port of 127.0.0.1, accepting `token` as the bearer
    /// token. Connections are accepted as soon as this returns.
    ///
    /// # Panics
    /// If no port can be bound or no thread started: this is test tooling.
    pub fn start(token: &str) -> StandIn {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let url = format!("http://{}", listener.local_addr().expect("bound address"));
        let store = Arc::new(Store::new(token, url.clone()));
        let app = routes::router(store.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("nanocore-standin".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("stand-in runtime");
                runtime.block_on(async {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here drops every open connection with it.
            })
            .expect("spawn the stand-in thread");
        StandIn {
            store,
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`, without a trailing `/`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The bearer token it accepts.
    pub fn token(&self) -> &str {
        self.store.token()
    }

    /// Stores `bytes` as an asset of type `kind` (as if uploaded without a
    /// file name or meta) and answers its id, `sha256:<hex>`.
    pub fn put(&self, bytes: Vec<u8>, kind: &str) -> String {
        let hash = content_hash(&bytes);
        let upload = Upload {
            name: None,
            kind: Some(kind.to_owned()),
            meta_text: None,
        };
        self.store.insert(&hash, Bytes::from(bytes), upload);
        hash
    }

    /// The asset stored under `hash`, if any.
    pub fn get(&self, hash: &str) -> Option<Asset> {
        self.store.get(hash)
    }

    /// The JSON bodies received on `POST /resources`, in order of arrival
    /// (malformed ones included; bodies that were not JSON are not).
    pub fn resource_calls(&self) -> Vec<Value> {
        self.store.resource_calls()
    }

    /// Blocks the calling thread until at least `n` resource calls arrived,
    /// or `timeout` passed, and answers all calls so far (fewer than `n` on
    /// timeout). The calls must come from another thread or process, e.g.
    /// the server under test.
    pub fn wait_resource_calls(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.store.wait_resource_calls(n, timeout)
    }

    /// How many requests were refused for a missing or wrong bearer token.
    pub fn unauthorized_count(&self) -> usize {
        self.store.unauthorized_count()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    /// A reqwest client. In workspace builds reqwest's features include the
    /// server's `rustls-no-provider`, so install ring first.
    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    use super::*;
    use futures_util::stream;
    use reqwest::{
        StatusCode,
        multipart::{Form, Part},
    };
    use serde_json::json;

    /// A file part of unknown length, so the request goes out chunked.
    fn chunked_file(pieces: &[&'static [u8]]) -> Part {
        let chunks = pieces
            .iter()
            .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p)))
            .collect::<Vec<_>>();
        Part::stream(reqwest::Body::wrap_stream(stream::iter(chunks))).file_name("greeting.txt")
    }

    #[tokio::test]
    async fn an_upload_is_stored_by_content_and_downloads_back() {
        let core = StandIn::start("secret");
        let client = client();
        let upload = |meta: &str| {
            let form = Form::new()
                .part("file", chunked_file(&[b"hello ", b"world"]))
                .text("type", "text")
                .text("meta", meta.to_owned());
            client
                .post(format!("{}/assets", core.url()))
                .bearer_auth("secret")
                .multipart(form)
                .send()
        };

        let first: Value = upload("{'k': 1}").await.unwrap().json().await.unwrap();
        let hash = first["hash"].as_str().unwrap().to_owned();
        assert_eq!(hash, content_hash(b"hello world"));
        assert_eq!(first["size"], 11);
        assert_eq!(first["alreadyExists"], false);
        assert_eq!(first["meta"], "{'k': 1}", "a Python repr comes back as text");
        assert!(!core.get(&hash).unwrap().meta_is_json);

        let second: Value = upload(r#"{"k": 1}"#).await.unwrap().json().await.unwrap();
        assert_eq!(
            (second["hash"].as_str(), &second["alreadyExists"]),
            (Some(hash.as_str()), &json!(true))
        );
        assert_eq!(second["meta"], json!({ "k": 1 }));
        let stored = core.get(&hash).unwrap();
        assert_eq!(
            (stored.name.as_str(), stored.kind.as_str(), stored.meta_is_json),
            ("greeting.txt", "text", true)
        );

        let download = client
            .get(format!("{}/assets/{hash}/download", core.url()))
            .bearer_auth("secret");
        let body = download.send().await.unwrap().bytes().await.unwrap();
        assert_eq!(body, &b"hello world"[..]);

        let refused = client
            .get(format!("{}/assets/{hash}/download", core.url()))
            .bearer_auth("wrong");
        assert_eq!(refused.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
        let refused_upload = client.post(format!("{}/assets", core.url())).bearer_auth("wrong");
        let form = Form::new().part("file", chunked_file(&[b"not stored"]));
        assert_eq!(
            refused_upload.multipart(form).send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(core.unauthorized_count(), 2);
    }

    #[tokio::test]
    async fn resource_calls_are_recorded_in_order() {
        let core = StandIn::start("secret");
        let client = client();
        let calls = [
            json!({ "serverUid": "s", "action": "ALLOCATE",
                    "data": { "resourceId": "r", "type": "model", "name": "m", "vramUsage": 0, "metadata": {} } }),
            json!({ "serverUid": "s", "action": "FREE", "data": { "resourceId": "r" } }),
        ];
        for call in &calls {
            let sent = client
                .post(format!("{}/resources", core.url()))
                .bearer_auth("secret")
                .json(call);
            let answer: Value = sent.send().await.unwrap().json().await.unwrap();
            assert_eq!(answer["success"], true);
        }
        assert_eq!(core.wait_resource_calls(2, Duration::from_secs(5)), calls);
    }
}
