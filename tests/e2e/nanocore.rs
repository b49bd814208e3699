//! NanoCore's host services (assets and resources) end to end: the real
//! binary, the example nodes that use them, and a stand-in NanoCore (a real
//! HTTP server speaking NanoCore's shapes, checked against the Python SDK's
//! own client in `.ci/run`). Runs in both isolation modes.

use std::time::{Duration, Instant};

use nanocore_standin::StandIn;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{NodesDir, Server, fault_plugin, lib_name, plugin, process_isolation};

const TOKEN: &str = "standin-secret";

/// The asset nodes (and the fault plugin, which can hold a resource).
fn asset_nodes() -> NodesDir {
    NodesDir::empty()
        .with_plugin("image/image_resize_node", "image_resize_node")
        .with_plugin("utility/asset_digest_node", "asset_digest_node")
        .with_plugin("test/assets", "assets_plugin")
        .with_file(
            &format!("test/{}", lib_name("nano_fault_plugin")),
            &std::fs::read(fault_plugin()).unwrap(),
        )
}

fn start(nodes: &NodesDir, nanocore: &str, token: &str) -> Server {
    Server::builder(nodes)
        .env("NANOCORE_HTTP_ENDPOINT", nanocore)
        .env("NANOCORE_TOKEN", token)
        .start()
}

async fn execute(server: &Server, uid: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(server.http(&format!("/nodes/{uid}/execute")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

#[tokio::test]
async fn image_resize_uploads_a_png_of_the_fitted_size_with_json_meta() {
    let nanocore = StandIn::start(TOKEN);
    let source = nanocore.put(png(640, 480), "image");
    let server = start(&asset_nodes(), &nanocore.url(), TOKEN);

    let (status, body) = execute(
        &server,
        "image-resize",
        json!({"inputs": {"image": [source]}, "parameters": {"width": 64}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hash = body["outputs"]["image"][0].as_str().unwrap().to_owned();
    assert_ne!(hash, source);
    let asset = nanocore.get(&hash).expect("the result was uploaded to NanoCore");
    let resized = image::load_from_memory_with_format(&asset.bytes, image::ImageFormat::Png).unwrap();
    assert_eq!((resized.width(), resized.height()), (64, 48));
    assert_eq!(asset.kind, "image");
    assert!(asset.name.ends_with("-64x48.png"), "{}", asset.name);
    assert!(asset.meta_is_json, "meta must be JSON: {:?}", asset.meta_text);
    let meta: Value = serde_json::from_str(asset.meta_text.as_deref().unwrap()).unwrap();
    assert_eq!(meta, json!({"source": source, "width": 64, "height": 48}));
}

#[tokio::test]
async fn asset_digest_streams_a_48_mib_asset_without_holding_it() {
    let nanocore = StandIn::start(TOKEN);
    let content: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let expected = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&content))
    };
    let hash = nanocore.put(content, "blob");
    let small = nanocore.put(b"warm-up".to_vec(), "blob");
    let server = start(&asset_nodes(), &nanocore.url(), TOKEN);
    // Warm up: the worker, the client's connection pool, the code paths.
    let (status, body) = execute(&server, "asset-digest", json!({"inputs": {"asset": small}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    server.reset_peak_rss();
    let before = server.total_rss_kib();
    let (status, body) = execute(&server, "asset-digest", json!({"inputs": {"asset": hash}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let growth_kib = server.total_peak_rss_kib().saturating_sub(before);
    eprintln!("digesting 48 MiB: server and workers grew by {growth_kib} KiB at peak");
    assert_eq!(body["outputs"]["sha256"], json!([expected]));
    assert_eq!(body["outputs"]["size"], json!([48u64 << 20]));
    assert!(
        growth_kib < 16 << 10,
        "digesting 48 MiB grew server and workers by {growth_kib} KiB (bound: 16 MiB)"
    );
}

#[tokio::test]
async fn upload_file_names_lose_their_path_before_they_reach_nanocore() {
    let nanocore = StandIn::start(TOKEN);
    let nodes = NodesDir::empty();
    let server = start(&nodes, &nanocore.url(), TOKEN);
    let http = reqwest::Client::new();
    for (i, (given, received)) in [
        ("../../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/srv/data/report.csv", "report.csv"),
        ("../", "upload"),
    ]
    .into_iter()
    .enumerate()
    {
        // Different bytes each time: the stand-in keeps one name per content.
        let file = reqwest::multipart::Part::bytes(format!("content {i}").into_bytes()).file_name(given);
        let response = http
            .post(server.http("/assets"))
            .multipart(reqwest::multipart::Form::new().part("file", file))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{given}");
        let asset: Value = response.json().await.unwrap();
        assert_eq!(asset["name"], received, "{given}");
        let stored = nanocore
            .get(asset["hash"].as_str().unwrap())
            .expect("stored at NanoCore");
        assert_eq!(stored.name, received, "{given}");
    }
}

#[tokio::test]
async fn without_ca_certificates_the_server_starts_and_reaches_nanocore_over_plain_http() {
    // What a minimal container image offers: no CA certificate anywhere.
    let no_certs_dir = tempfile::tempdir().unwrap();
    let empty = no_certs_dir.path().to_str().unwrap();
    let nodes = NodesDir::examples();
    let server = Server::builder(&nodes)
        .env("SSL_CERT_DIR", empty)
        .env("SSL_CERT_FILE", empty)
        .start();
    assert_eq!(reqwest::get(server.http("/")).await.unwrap().status(), StatusCode::OK);
    drop(server);

    // NanoCore over plain HTTP needs no certificate: the client still works.
    let nanocore = StandIn::start(TOKEN);
    let server = Server::builder(&nodes)
        .env("NANOCORE_HTTP_ENDPOINT", &nanocore.url())
        .env("NANOCORE_TOKEN", TOKEN)
        .env("SSL_CERT_DIR", empty)
        .env("SSL_CERT_FILE", empty)
        .start();
    let file = reqwest::multipart::Part::bytes(b"no roots needed".to_vec()).file_name("plain.txt");
    let response = reqwest::Client::new()
        .post(server.http("/assets"))
        .multipart(reqwest::multipart::Form::new().part("file", file))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let asset: Value = response.json().await.unwrap();
    assert!(nanocore.get(asset["hash"].as_str().unwrap()).is_some(), "{asset}");
    server.wait_for_log("cannot use the system's CA certificates");
}

#[tokio::test]
async fn an_unknown_asset_is_a_422_saying_not_found() {
    let nanocore = StandIn::start(TOKEN);
    let server = start(&asset_nodes(), &nanocore.url(), TOKEN);
    let unknown = format!("sha256:{}", "0".repeat(64));
    for uid in ["asset-digest", "image-resize"] {
        let input = if uid == "asset-digest" { "asset" } else { "image" };
        let (status, body) = execute(&server, uid, json!({"inputs": {input: [unknown]}})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["message"], format!("asset not found: {unknown}"), "{body}");
    }
    // Not a hash at all: refused before any request.
    let (status, body) = execute(&server, "asset-digest", json!({"inputs": {"asset": "cat.png"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["message"].as_str().unwrap().starts_with("not an asset id"),
        "{body}"
    );
    assert_eq!(nanocore.unauthorized_count(), 0);
}

#[tokio::test]
async fn a_wrong_token_and_an_endpoint_that_is_down_fail_clearly_and_quickly() {
    let nanocore = StandIn::start(TOKEN);
    let hash = nanocore.put(b"data".to_vec(), "blob");
    let server = start(&asset_nodes(), &nanocore.url(), "not-the-token");
    let started = Instant::now();
    let (status, body) = execute(&server, "asset-digest", json!({"inputs": {"asset": hash}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["message"], "NanoCore refused the token (401)", "{body}");
    assert!(nanocore.unauthorized_count() > 0);
    drop(server);

    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let down = format!("http://127.0.0.1:{closed}");
    let server = start(&asset_nodes(), &down, TOKEN);
    let (status, body) = execute(&server, "asset-digest", json!({"inputs": {"asset": hash}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = body["message"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("NanoCore is not reachable at {down}")),
        "{error}"
    );
    drop(server);

    // No endpoint at all.
    let server = Server::start(&asset_nodes());
    let (_, body) = execute(&server, "asset-digest", json!({"inputs": {"asset": hash}})).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("NANOCORE_HTTP_ENDPOINT is not set"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
}

/// The resource calls the stand-in received for `id`, as (action, data).
fn calls_for(nanocore: &StandIn, id: &str) -> Vec<(String, Value)> {
    nanocore
        .resource_calls()
        .into_iter()
        .filter(|call| call["data"]["resourceId"] == id)
        .map(|call| (call["action"].as_str().unwrap().to_owned(), call["data"].clone()))
        .collect()
}

#[tokio::test]
async fn a_resource_left_allocated_is_freed_when_its_version_ends() {
    let nanocore = StandIn::start(TOKEN);
    let nodes = asset_nodes();
    let mut server = start(&nodes, &nanocore.url(), TOKEN);
    let (status, body) = execute(
        &server,
        "fault",
        json!({"inputs": {}, "parameters": {"kind": "sleep", "ms": 0, "allocate": "model-a"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let calls = nanocore.resource_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["serverUid"], "test-server");
    assert_eq!(calls[0]["action"], "ALLOCATE");
    assert_eq!(
        calls[0]["data"],
        json!({"resourceId": "model-a", "type": "gpu", "name": "fault test model", "vramUsage": 1u64 << 30, "metadata": null})
    );

    if process_isolation() {
        // Replaced by another library: the old worker ends, and with it what
        // it held.
        let path = nodes.path().join(format!("test/{}", lib_name("nano_fault_plugin")));
        std::fs::write(&path, std::fs::read(plugin("test_plugin")).unwrap()).unwrap();
    } else {
        // In process the old version stays mapped: freed at shutdown.
        server.terminate();
        assert_eq!(server.wait_exit(), 0);
    }
    nanocore.wait_resource_calls(2, Duration::from_secs(30));
    assert_eq!(
        calls_for(&nanocore, "model-a"),
        vec![
            ("ALLOCATE".to_owned(), calls[0]["data"].clone()),
            ("FREE".to_owned(), json!({"resourceId": "model-a"}))
        ]
    );
    server.wait_for_log("freed resource model-a");
}

#[tokio::test]
async fn a_resource_held_by_a_node_that_crashes_is_freed() {
    if !process_isolation() {
        return; // A segfault in process takes the server down: that is the point of process isolation.
    }
    let nanocore = StandIn::start(TOKEN);
    let server = start(&asset_nodes(), &nanocore.url(), TOKEN);
    let (status, body) = execute(
        &server,
        "fault",
        json!({"inputs": {}, "parameters": {"kind": "segv", "allocate": "model-b"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("SIGSEGV"), "{body}");
    nanocore.wait_resource_calls(2, Duration::from_secs(30));
    let actions: Vec<String> = calls_for(&nanocore, "model-b").into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["ALLOCATE", "FREE"]);
}

#[tokio::test]
async fn every_asset_call_reaches_nanocore_through_the_server() {
    let nanocore = StandIn::start(TOKEN);
    // Three chunks and a bit: the reader, download and upload all go in pieces.
    let content: Vec<u8> = (0..(3 << 18) + 1234u32).map(|i| (i % 253) as u8).collect();
    let hash = nanocore.put(content.clone(), "blob");
    let server = start(&asset_nodes(), &nanocore.url(), TOKEN);
    let (status, body) = execute(&server, "test-assets", json!({"inputs": {"asset": hash}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["outputs"]["report"][0];
    let size = content.len() as u64;
    assert_eq!(report["downloaded"], size);
    assert_eq!(report["streamed"], size);
    assert_eq!(report["size"], size);
    assert_eq!(report["resolved"], true);
    // The same bytes uploaded from the file: the same hash, and NanoCore
    // already had them.
    assert_eq!(report["uploaded"], hash);
    assert_eq!(report["alreadyExists"], true);
    assert_eq!(report["uploadedName"], "copy.bin");
    assert_eq!(report["exists"], true);
    assert_eq!(report["unknownExists"], false);
    assert_eq!(report["listed"], json!([hash]));
    assert!(
        report["presigned"].as_str().unwrap().starts_with(&nanocore.url()),
        "{report}"
    );
    assert_eq!(
        report["downloadUrl"],
        format!("{}/assets/{hash}/download", nanocore.url())
    );
    let stored = nanocore.get(&hash).unwrap();
    assert_eq!(stored.bytes.len() as u64, size);
    assert!(stored.meta_is_json, "{:?}", stored.meta_text);
}
