//! The browser pages (`/ui`) in real headless Chromium, driven through
//! chromedriver (Debian's `chromium` and `chromium-driver` packages) against
//! the real binary: the node list, a run with its outputs, progress, Stop,
//! live updates, the token, assets through NanoCore, the server page.
//!
//! Without `/usr/bin/chromedriver` the browser tests print why and pass
//! (`cargo test --workspace` runs without a browser); with
//! `NANO_TEST_REQUIRE_BROWSER=1` (CI) they fail instead. The browser tests
//! take turns: each runs its own chromedriver and Chromium (`support::Browser`).
//!
//! `NANO_UI_SCREENSHOTS=1` also writes the README's screenshots
//! (`docs/ui-*.png`) as the tests pass through each page.

use std::time::{Duration, Instant};

use fantoccini::key::Key;
use nanocore_standin::StandIn;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Browser, NodesDir, PATIENCE, Server};

/// The selector of a node's entry (or a form field, an output…).
fn attr(name: &str, value: &str) -> String {
    format!("[{name}={}]", json!(value))
}

/// The five example nodes, and a file that is not a plugin.
fn all_examples() -> NodesDir {
    NodesDir::examples()
        .with_plugin("image/image_resize_node", "image_resize_node")
        .with_plugin("utility/asset_digest_node", "asset_digest_node")
}

#[tokio::test]
async fn the_node_list_shows_the_example_nodes_and_refused_libraries() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    let nodes = all_examples().with_plugin("broken", "not_a_plugin");
    let server = Server::start(&nodes);
    browser.goto(&server.http("/ui/")).await;

    browser
        .until(
            "the five example nodes are listed",
            "return document.querySelectorAll('[data-node-uid]').length === 5",
        )
        .await;
    let mut uids = browser
        .run("return [...document.querySelectorAll('[data-node-uid]')].map(e => e.dataset.nodeUid)")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    uids.sort();
    assert_eq!(
        uids,
        [
            "asset-digest",
            "complex-math",
            "image-resize",
            "progress-steps",
            "simple-text"
        ]
    );
    let entry = browser.text_of(&attr("data-node-uid", "simple-text")).await;
    assert!(
        entry.contains("simple-text") && entry.contains("libsimple_text_node"),
        "{entry}"
    );
    let refused = browser.text_of("[data-refused-library]").await;
    assert!(refused.contains("not_a_plugin"), "{refused}");
    assert!(browser.count("[data-refused] [data-refused-library]").await == 1);
    browser.screenshot("ui-nodes").await;

    // At phone width nothing runs off the side.
    browser.client().set_window_size(390, 844).await.unwrap();
    browser
        .until(
            "the page fits a phone's width",
            "return document.documentElement.scrollWidth <= window.innerWidth",
        )
        .await;

    // A link of the list leads to the node's page without a reload.
    browser.run("window.notReloaded = true").await;
    browser
        .find(&format!("{} a", attr("data-node-uid", "complex-math")))
        .await
        .click()
        .await
        .unwrap();
    browser.find(&attr("data-field", "operation")).await;
    assert_eq!(browser.run("return window.notReloaded === true").await, json!(true));
    browser.expect_no_errors().await;
    browser.close().await;
}

#[tokio::test]
async fn simple_text_with_uppercase_ticked_returns_hello_using_the_keyboard_alone() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    let server = Server::start(&NodesDir::examples());
    browser.goto(&server.http("/ui/nodes/simple-text")).await;

    // Type the text, Tab to the checkbox, Space ticks it, Tab to Run, Enter.
    let text = browser.find(&attr("data-field", "text")).await;
    text.click().await.unwrap();
    text.send_keys("hello").await.unwrap();
    browser.press(&Key::Tab.to_string()).await;
    let focused = browser.run("return document.activeElement.dataset.field").await;
    assert_eq!(focused, json!("uppercase"), "Tab goes from the text to the checkbox");
    browser.press(" ").await;
    let ticked = format!(
        "return document.querySelector({}).checked",
        json!(attr("data-field", "uppercase"))
    );
    assert_eq!(browser.run(&ticked).await, json!(true));
    browser.press(&Key::Tab.to_string()).await;
    let focused = browser.run("return document.activeElement.dataset.action").await;
    assert_eq!(focused, json!("run"), "Tab goes on to Run");
    browser.press(&Key::Enter.to_string()).await;

    assert_eq!(browser.text_of(&attr("data-output", "text")).await, "HELLO");
    assert_eq!(browser.text_of("[data-run-status=complete]").await, "Complete.");
    assert!(browser.text_of("[data-duration]").await.starts_with("Finished in "));
    // The page never loaded anything from elsewhere, nor ran inline code.
    let csp = reqwest::get(server.http("/ui/nodes/simple-text")).await.unwrap();
    assert_eq!(csp.headers()["content-security-policy"], "default-src 'self'");
    browser.expect_no_errors().await;
    browser.close().await;
}

#[tokio::test]
async fn progress_steps_shows_the_bar_advancing_to_100_percent() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    let server = Server::start(&NodesDir::examples());
    browser.goto(&server.http("/ui/nodes/progress-steps")).await;

    let steps = browser.find(&attr("data-field", "steps")).await;
    steps.clear().await.unwrap();
    steps.send_keys("5").await.unwrap();
    let delay = browser.find(&attr("data-field", "delay_ms")).await;
    delay.clear().await.unwrap();
    delay.send_keys("250").await.unwrap();
    browser.find("[data-action=run]").await.click().await.unwrap();

    // Every value the bar shows until the run completes.
    let mut seen = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = browser
            .run(
                "const bar = document.querySelector('[data-progress]'); \
                 return [bar.closest('[hidden]') ? null : Number(bar.dataset.progress), \
                         document.querySelector('[data-run-status]').dataset.runStatus]",
            )
            .await;
        if let Some(value) = now[0].as_f64()
            && seen.last() != Some(&value)
        {
            seen.push(value);
        }
        if now[1] == "complete" {
            break;
        }
        assert!(Instant::now() < deadline, "the run never completed; seen {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "the bar only advances: {seen:?}");
    assert!(seen.iter().any(|v| *v > 0.0 && *v < 100.0), "seen between: {seen:?}");
    assert_eq!(seen.last(), Some(&100.0), "{seen:?}");
    assert_eq!(
        browser
            .run("return document.querySelector('progress[data-progress]').value")
            .await,
        json!(100)
    );
    assert_eq!(browser.text_of(&attr("data-output", "result")).await, "done");
    browser.expect_no_errors().await;
    browser.close().await;
}

#[tokio::test]
async fn stop_ends_a_run_with_the_aborted_error() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    let server = Server::start(&NodesDir::examples());
    browser.goto(&server.http("/ui/nodes/progress-steps")).await;

    let steps = browser.find(&attr("data-field", "steps")).await;
    steps.clear().await.unwrap();
    steps.send_keys("1000").await.unwrap();
    assert_eq!(
        browser
            .run("return document.querySelector('[data-action=stop]').disabled")
            .await,
        json!(true),
        "nothing to stop yet"
    );
    browser.find("[data-action=run]").await.click().await.unwrap();
    // Running: the first step reported.
    browser
        .until(
            "the run is under way",
            "return Number(document.querySelector('[data-progress]').dataset.progress) > 0",
        )
        .await;
    browser.find("[data-action=stop]").await.click().await.unwrap();

    let error = browser.text_of("[data-error]:not([hidden])").await;
    assert!(
        error.contains("Stopped.") && error.contains("Execution aborted"),
        "{error}"
    );
    assert_eq!(
        browser
            .run("return document.querySelector('[data-run-status]').dataset.runStatus")
            .await,
        json!("error")
    );
    crate::support::eventually("the abort is counted once the node returned", || async {
        server
            .metric("nano_executions_total{node=\"progress-steps\",outcome=\"aborted\"}")
            .await
            == 1.0
    })
    .await;
    // Run works again afterwards.
    assert_eq!(
        browser
            .run("return document.querySelector('[data-action=run]').disabled")
            .await,
        json!(false)
    );
    browser.expect_no_errors().await;
    browser.close().await;
}

#[tokio::test]
async fn a_node_added_while_the_page_is_open_appears_without_a_reload() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    let nodes = NodesDir::examples();
    let server = Server::builder(&nodes).config("watch_debounce_time = 100").start();
    browser.goto(&server.http("/ui/")).await;
    browser
        .until(
            "the three nodes are listed",
            "return document.querySelectorAll('[data-node-uid]').length === 3",
        )
        .await;
    browser.run("window.notReloaded = true").await;

    let library = crate::support::plugin("asset_digest_node");
    let target = nodes.path().join("utility/asset_digest_node");
    std::fs::create_dir_all(&target).unwrap();
    // Written beside, then renamed in: the watcher never sees half a file.
    let staged = nodes.path().join(".staged");
    std::fs::copy(&library, &staged).unwrap();
    std::fs::rename(&staged, target.join(library.file_name().unwrap())).unwrap();

    let entry = browser.text_of(&attr("data-node-uid", "asset-digest")).await;
    assert!(entry.contains("asset-digest"), "{entry}");
    assert_eq!(browser.count("[data-node-uid]").await, 4);
    assert_eq!(browser.run("return window.notReloaded === true").await, json!(true));
    assert_eq!(
        browser
            .run("return document.querySelector('[data-live]').dataset.live")
            .await,
        json!("live")
    );
    browser.expect_no_errors().await;
    browser.close().await;
}

#[tokio::test]
async fn with_a_token_set_nothing_runs_before_it_is_entered() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    const TOKEN: &str = "ui-test-s3cret";
    let server = Server::builder(&NodesDir::examples())
        .config(&format!("auth_token = \"{TOKEN}\""))
        .start();

    // The page loads without the token, and asks for it.
    browser.goto(&server.http("/ui/nodes/simple-text")).await;
    browser.find("[data-token]").await;
    assert_eq!(browser.count("[data-action=run]").await, 0, "no Run before the token");
    assert_eq!(browser.count("[data-node-uid]").await, 0);

    // A wrong token is refused, and asked for again.
    let field = browser.find("[data-token]").await;
    field.send_keys(&format!("wrong{}", Key::Enter)).await.unwrap();
    let refused = browser.text_of(".token [role=alert]").await;
    assert!(refused.contains("refused"), "{refused}");
    assert_eq!(browser.count("[data-action=run]").await, 0);

    let field = browser.find("[data-token]").await;
    field.send_keys(&format!("{TOKEN}{}", Key::Enter)).await.unwrap();
    let text = browser.find(&attr("data-field", "text")).await;
    text.send_keys("hello").await.unwrap();
    browser
        .find(&attr("data-field", "uppercase"))
        .await
        .click()
        .await
        .unwrap();
    browser.find("[data-action=run]").await.click().await.unwrap();
    assert_eq!(browser.text_of(&attr("data-output", "text")).await, "HELLO");

    // Kept for the tab: another page asks no more.
    browser.find("[data-nav=nodes]").await.click().await.unwrap();
    browser
        .until(
            "the nodes are listed",
            "return document.querySelectorAll('[data-node-uid]').length === 3",
        )
        .await;
    assert_eq!(
        browser
            .run(&format!(
                "return sessionStorage.getItem('nano-server-token') === {}",
                json!(TOKEN)
            ))
            .await,
        json!(true)
    );
    // The token never went into an address (request logs record them).
    let url = browser.client().current_url().await.unwrap();
    assert!(!url.as_str().contains(TOKEN), "{url}");
    assert!(!server.logs().contains(TOKEN));

    // Exactly one execution ran: the one after the token.
    let metrics = reqwest::Client::new()
        .get(server.http("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let executions: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("nano_executions_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(executions, 1.0, "{metrics}");
    browser.close().await;
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 160])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

#[tokio::test]
async fn an_image_is_uploaded_through_the_server_and_the_result_shown_as_an_image() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    const NANOCORE_TOKEN: &str = "nanocore-s3cret";
    let nanocore = StandIn::start(NANOCORE_TOKEN);
    let nodes = NodesDir::empty().with_plugin("image/image_resize_node", "image_resize_node");
    let endpoint = nanocore.url();
    let server = Server::builder(&nodes)
        .env("NANOCORE_HTTP_ENDPOINT", endpoint.as_str())
        .env("NANOCORE_TOKEN", NANOCORE_TOKEN)
        .start();
    let pictures = tempfile::tempdir().unwrap();
    let picture = pictures.path().join("gradient.png");
    std::fs::write(&picture, png(640, 480)).unwrap();
    browser.goto(&server.http("/ui/nodes/image-resize")).await;

    browser
        .find(&attr("data-upload", "image"))
        .await
        .send_keys(picture.to_str().unwrap())
        .await
        .unwrap();
    let hash = browser
        .until(
            "the upload fills in the asset id",
            &format!(
                "const v = document.querySelector({}).value; return v.startsWith('sha256:') && v",
                json!(attr("data-field", "image"))
            ),
        )
        .await;
    let hash = hash.as_str().unwrap().to_owned();
    let uploaded = nanocore.get(&hash).expect("the file reached NanoCore");
    assert_eq!(uploaded.kind, "image");
    assert_eq!(uploaded.name, "gradient.png");

    let width = browser.find(&attr("data-field", "width")).await;
    width.clear().await.unwrap();
    width.send_keys("64").await.unwrap();
    browser.find("[data-action=run]").await.click().await.unwrap();
    // Shown through a presigned URL: loaded, 64 × 48.
    let size = browser
        .until(
            "the output image is shown",
            &format!(
                "const img = document.querySelector({}); \
                 return img && img.complete && img.naturalWidth > 0 && [img.naturalWidth, img.naturalHeight, img.src]",
                json!(format!("{} img", attr("data-output", "image")))
            ),
        )
        .await;
    assert_eq!((size[0].as_u64(), size[1].as_u64()), (Some(64), Some(48)));
    assert!(size[2].as_str().unwrap().starts_with(&nanocore.url()), "{size}");
    // NanoCore's token never reached the browser.
    let page = browser
        .run("return document.documentElement.outerHTML + JSON.stringify(sessionStorage) + performance.getEntries().map(e => e.name).join()")
        .await;
    assert!(!page.as_str().unwrap().contains(NANOCORE_TOKEN));
    browser.screenshot("ui-node").await;
    browser.expect_no_errors().await;
    browser.close().await;
}

#[tokio::test]
async fn the_server_page_shows_libraries_executions_and_the_last_failures() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    let nodes = all_examples().with_plugin("broken", "not_a_plugin");
    let server = Server::start(&nodes);
    let http = reqwest::Client::new();
    for body in [
        json!({"inputs": {"a": 1, "b": 0}, "parameters": {"operation": "divide"}, "instanceId": "wf-divides-by-zero"}),
        json!({"inputs": {"a": 6, "b": 7}, "parameters": {"operation": "multiply"}}),
    ] {
        http.post(server.http("/nodes/complex-math/execute"))
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    browser.goto(&server.http("/ui/server")).await;

    let failure = browser.text_of(&attr("data-failure", "complex-math")).await;
    assert!(
        failure.contains("division by zero") && failure.contains("error"),
        "{failure}"
    );
    // Which workflow run failed: its instanceId, to find it in the logs.
    assert!(failure.contains("wf-divides-by-zero"), "{failure}");
    assert_eq!(browser.count("[data-section=libraries] [data-library]").await, 5);
    let library = browser
        .text_of(&attr(
            "data-library",
            "processing/simple_text_node/libsimple_text_node.so",
        ))
        .await;
    assert!(library.contains("simple-text") && library.contains("0.1."), "{library}");
    let refused = browser.text_of("[data-section=refused] [data-refused-library]").await;
    assert!(refused.contains("not_a_plugin"), "{refused}");
    let identity = browser.text_of("[data-section=identity]").await;
    assert!(
        identity.contains("Test Server") && identity.contains("test-server"),
        "{identity}"
    );
    let counters = browser.text_of("[data-section=counters]").await;
    assert!(
        counters.contains("complete 1") && counters.contains("error 1"),
        "{counters}"
    );
    browser.screenshot("ui-server").await;
    browser.expect_no_errors().await;
    browser.close().await;
}

// Without a browser: the routes behind the pages.

async fn get(server: &Server, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(server.http(path)).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn the_pages_are_embedded_and_served_with_their_policy() {
    let server = Server::builder(&NodesDir::examples())
        .config("auth_token = \"t\"")
        .start();
    for (path, kind) in [
        ("/ui/", "text/html"),
        ("/ui/nodes/simple-text", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let (status, headers, body) = get(&server, path).await;
        assert_eq!(status, StatusCode::OK, "{path} loads without the token");
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        assert_eq!(headers["content-security-policy"], "default-src 'self'", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(!body.is_empty());
    }
    let (status, _, _) = get(&server, "/ui/missing.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, headers, _) = get(&server, "/ui").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers["location"], "/ui/");
    // The data behind them needs the token.
    for path in ["/server", "/libraries", "/events/definitions"] {
        let (status, _, _) = get(&server, path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // No inline script or style anywhere: the policy would block it.
    let (_, _, html) = get(&server, "/ui/").await;
    assert!(!html.contains("<script>") && !html.contains("style="), "{html}");
}

#[tokio::test]
async fn ui_false_turns_the_pages_and_their_asset_routes_off() {
    let server = Server::builder(&NodesDir::examples()).config("ui = false").start();
    for path in ["/ui/", "/ui/app.js", "/assets/sha256:00/presigned"] {
        let (status, _, _) = get(&server, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, _, doc) = get(&server, "/openapi.json").await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["paths"].get("/assets").is_none());
    // The server's state stays: it is the HTTP API, for scripts too.
    let (status, _, _) = get(&server, "/libraries").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_definitions_event_stream_follows_changes_and_refusals() {
    use futures_util::StreamExt;

    let nodes = NodesDir::examples();
    let server = Server::builder(&nodes).config("watch_debounce_time = 100").start();
    let response = reqwest::Client::new()
        .get(server.http("/events/definitions"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut next = async || -> (String, Value) {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let event = block
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap_or("")
                    .to_owned();
                let data: String = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                if data.is_empty() {
                    continue;
                }
                return (event, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout(PATIENCE, stream.next())
                .await
                .expect("an event in time")
                .expect("the stream stays open")
                .unwrap();
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    let (event, definitions) = next().await;
    assert_eq!(event, "definitions");
    assert_eq!(definitions.as_array().unwrap().len(), 3);
    let (event, libraries) = next().await;
    assert_eq!(event, "libraries");
    assert_eq!(libraries["libraries"].as_array().unwrap().len(), 3);
    assert_eq!(libraries["libraries"][0]["swaps"], 0);
    assert!(libraries["refused"].as_array().unwrap().is_empty());

    // A file that is not a library: refused, with why; the definitions stay.
    std::fs::write(nodes.path().join(crate::support::lib_name("junk")), b"not a library").unwrap();
    let (event, libraries) = next().await;
    assert_eq!(event, "libraries", "{libraries}");
    let refused = &libraries["refused"][0];
    assert_eq!(refused["path"], crate::support::lib_name("junk"));
    assert!(!refused["reason"].as_str().unwrap().is_empty(), "{refused}");

    // A new node: both.
    let library = crate::support::plugin("asset_digest_node");
    let staged = nodes.path().join(".staged");
    std::fs::copy(&library, &staged).unwrap();
    std::fs::rename(&staged, nodes.path().join(library.file_name().unwrap())).unwrap();
    let (event, definitions) = next().await;
    assert_eq!(event, "definitions");
    assert!(
        definitions
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["uid"] == "asset-digest")
    );
    let (event, libraries) = next().await;
    assert_eq!(event, "libraries");
    assert_eq!(libraries["libraries"].as_array().unwrap().len(), 4);

    // The junk goes: its refusal too.
    std::fs::remove_file(nodes.path().join(crate::support::lib_name("junk"))).unwrap();
    let (event, libraries) = next().await;
    assert_eq!(event, "libraries");
    assert!(libraries["refused"].as_array().unwrap().is_empty(), "{libraries}");

    // A new version of a library is a swap.
    let path = format!("swap/{}", crate::support::lib_name("swap"));
    let swap = |libraries: &Value| {
        let entries = libraries["libraries"].as_array().unwrap();
        entries.iter().find(|entry| entry["path"] == path.as_str()).cloned()
    };
    std::fs::create_dir_all(nodes.path().join("swap")).unwrap();
    for (version, swaps) in [("swap_v1", 0), ("swap_v2", 1)] {
        std::fs::copy(crate::support::plugin(version), &staged).unwrap();
        std::fs::rename(&staged, nodes.path().join(&path)).unwrap();
        let entry = loop {
            let (event, data) = next().await;
            if event == "libraries"
                && let Some(entry) = swap(&data)
                && entry["swaps"] == swaps
            {
                break entry;
            }
        };
        assert!(entry["loadedAtMs"].as_u64().unwrap() > 0, "{entry}");
        assert!(entry["abiVersion"].as_str().unwrap().starts_with("0.1."), "{entry}");
        assert_eq!(entry["up"], true);
    }
}
