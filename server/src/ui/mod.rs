//! The browser pages under `/ui/`: a node playground (a form drawn from a
//! node's definition, run through the HTTP API with its event stream) and
//! an operator page. Plain HTML, CSS and JavaScript modules embedded in the
//! binary: no toolchain, no network, no framework.
//!
//! The files are static and load without the bearer token; the pages ask
//! for it and send it with every data call (see `assets/api.js`). Every
//! response carries `Content-Security-Policy: default-src 'self'` (plus the
//! images of NanoCore's origin when it is configured), so no inline script
//! or style runs, and the pages may not be framed.

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};

use crate::state::ServerState;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("nodes.js", JS),
    asset!("node.js", JS),
    asset!("form.js", JS),
    asset!("server.js", JS),
];

/// The routes of the pages: `/ui` (redirects), `/ui/` and every path under
/// it (a file, else the page, which routes in the browser).
pub(crate) fn router() -> Router<ServerState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(page))
        .route("/ui/{*path}", get(file))
}

async fn page(State(state): State<ServerState>, headers: HeaderMap) -> Response {
    asset_response(&ASSETS[0], &state, &headers)
}

async fn file(State(state): State<ServerState>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|asset| asset.name == path) {
        Some(asset) => asset_response(asset, &state, &headers),
        // A page's address (`/ui/nodes/simple-text`): the app routes it.
        None if !path.rsplit('/').next().unwrap_or("").contains('.') => asset_response(&ASSETS[0], &state, &headers),
        None => with_policy(StatusCode::NOT_FOUND.into_response(), &state),
    }
}

/// `asset` with its validator (`ETag`, answered with 304 when the browser
/// has it) and the pages' security headers.
fn asset_response(asset: &Asset, state: &ServerState, headers: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(asset.body.as_bytes()));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let response_headers = response.headers_mut();
    // Revalidated on every load: an upgraded server serves new pages at once.
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        response_headers.insert(header::ETAG, etag);
    }
    with_policy(response, state)
}

/// The pages' security headers.
fn with_policy(mut response: Response, state: &ServerState) -> Response {
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(&state.identity.nanocore_http_endpoint)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `default-src 'self'`; with NanoCore configured, its origin may serve
/// images too (presigned URLs of `asset:image` outputs).
fn content_security_policy(nanocore_endpoint: &str) -> String {
    let origin = nanocore_endpoint
        .trim()
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|uri| Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?)))
        .filter(|origin| origin.bytes().all(|b| b.is_ascii_graphic()) && !origin.contains(';'));
    match origin {
        Some(origin) => format!("default-src 'self'; img-src 'self' {origin}"),
        None => "default-src 'self'".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_images_from_nanocore_only() {
        assert_eq!(content_security_policy(""), "default-src 'self'");
        assert_eq!(content_security_policy("not a url"), "default-src 'self'");
        assert_eq!(
            content_security_policy("http://127.0.0.1:8080/api/"),
            "default-src 'self'; img-src 'self' http://127.0.0.1:8080"
        );
    }

    #[test]
    fn every_file_is_embedded_once() {
        let mut names: Vec<&str> = ASSETS.iter().map(|asset| asset.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        assert_eq!(ASSETS[0].name, "index.html");
    }
}
