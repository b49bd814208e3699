//! NanoCore's assets for the browser pages: an upload for an `asset:*`
//! input and a presigned URL to show an image. The server makes both calls
//! with its own client and NanoCore's token, which never reaches the
//! browser. Served with the pages (`ui`).

use axum::{
    Json,
    extract::{
        Multipart, Path, State,
        multipart::{Field, MultipartError, MultipartRejection},
    },
    http::StatusCode,
};
use bytes::Bytes;
use nano_plugin_abi::services::{ErrorKind, Upload, check_hash};
use serde_json::Value;
use tokio::sync::mpsc;

use super::ApiError;
use crate::{nanocore, state::ServerState};

/// A NanoCore failure as an answer to the browser.
fn nanocore_error(failure: nanocore::Failure) -> ApiError {
    let code = match failure.kind {
        ErrorKind::InvalidHash => StatusCode::BAD_REQUEST,
        // Not configured: this server has no assets to offer.
        ErrorKind::NotFound | ErrorKind::NotConfigured => StatusCode::NOT_FOUND,
        // NanoCore refused or failed the server's own call.
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(code, failure.message)
}

/// Uploads a file to NanoCore, for an `asset:*` input. Multipart, as
/// NanoCore's own `POST /assets`: the optional `type` and `meta` (JSON)
/// parts first, then `file`, which is streamed through.
#[utoipa::path(post, path = "/assets", tag = "assets",
    request_body(content_type = "multipart/form-data", description = "`type` (e.g. `image`), `meta` (JSON), then `file`"),
    responses(
        (status = 200, description = "NanoCore's answer: the asset (`hash`, `name`, `type`, `size`…)", body = Object),
        (status = 400, description = "Not multipart, no `file` part, or `meta` is not JSON", body = super::ErrorBody),
        (status = 404, description = "NANOCORE_HTTP_ENDPOINT is not set", body = super::ErrorBody),
        (status = 413, description = "Body over max_request_bytes", body = super::ErrorBody),
        (status = 502, description = "NanoCore refused or failed the upload, or is not reachable", body = super::ErrorBody)))]
pub(crate) async fn upload_asset(
    State(state): State<ServerState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let client = state.setup.services.client();
    client.url("/assets").map_err(nanocore_error)?;
    let mut multipart = multipart.map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
    let mut options = Upload::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("type") => options.kind = Some(field.text().await.map_err(multipart_error)?),
            Some("meta") => {
                let text = field.text().await.map_err(multipart_error)?;
                let meta = serde_json::from_str(&text)
                    .map_err(|err| ApiError::bad_request(format!("`meta` is not JSON: {err}")))?;
                options.meta = Some(meta);
            }
            Some("file") => {
                options.filename = field.file_name().map(str::to_owned);
                return upload(client, field, &options).await.map(Json);
            }
            _ => {}
        }
    }
    Err(ApiError::bad_request("no `file` part"))
}

/// Streams `file` into NanoCore's upload as it arrives.
async fn upload(client: &nanocore::Client, mut file: Field<'_>, options: &Upload) -> Result<Value, ApiError> {
    let (chunks, body) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|chunk| (chunk, body))
    }));
    let forward = async move {
        loop {
            match file.chunk().await {
                Ok(Some(chunk)) => {
                    if chunks.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(err) => {
                    let _ = chunks.send(Err(std::io::Error::other(err.to_string()))).await;
                    return Err(err);
                }
            }
        }
    };
    let (uploaded, forwarded) = tokio::join!(client.upload(body, None, options), forward);
    // The browser's side failing (too large, cut off) says more than NanoCore's.
    forwarded.map_err(multipart_error)?;
    uploaded.map_err(nanocore_error)
}

/// What the browser's side of an upload did wrong. A body that stops
/// arriving (the client hung up mid-upload) is the client's doing, not the
/// server's: 400 and a debug line, where axum says 500 (an ERROR in the log).
fn multipart_error(err: MultipartError) -> ApiError {
    let status = err.status();
    if status.is_server_error() {
        tracing::debug!(error = %err.body_text(), "upload cut off by the client");
        return ApiError::bad_request(format!("the upload was cut off: {}", err.body_text()));
    }
    ApiError::new(status, err.body_text())
}

/// A presigned URL for an asset, to show it in the browser without the token.
#[utoipa::path(get, path = "/assets/{hash}/presigned", tag = "assets",
    params(("hash" = String, Path, description = "Asset id: `sha256:` and 64 hex digits")),
    responses(
        (status = 200, description = "NanoCore's answer (`url`, `expiresIn`)", body = Object),
        (status = 400, description = "Not an asset id", body = super::ErrorBody),
        (status = 404, description = "No such asset, or NANOCORE_HTTP_ENDPOINT is not set", body = super::ErrorBody),
        (status = 502, description = "NanoCore refused or failed the call, or is not reachable", body = super::ErrorBody)))]
pub(crate) async fn presigned_asset(
    State(state): State<ServerState>,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_hash(&hash).map_err(|err| ApiError::bad_request(err.message()))?;
    let client = state.setup.services.client();
    client.presigned(&hash).await.map(Json).map_err(nanocore_error)
}
