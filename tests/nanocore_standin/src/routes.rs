//! The HTTP API, as the Python SDK `nanograph-sdk` 0.2.3 calls it: every
//! route but `/presigned/{hash}` needs `Authorization: Bearer <token>`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State, multipart::MultipartRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use crate::store::{Hasher, Store, Upload, is_asset_id};

pub(crate) fn router(store: Arc<Store>) -> Router {
    let with_bearer = Router::new()
        .route("/assets", get(list_assets).post(upload_asset))
        .route("/assets/{hash}/download", get(download))
        .route("/assets/{hash}/exists", get(exists))
        .route("/assets/{hash}/presigned", get(presign))
        .route("/resources", post(resources))
        .route_layer(middleware::from_fn_with_state(store.clone(), require_bearer));
    Router::new()
        .route("/presigned/{hash}", get(presigned_download))
        .merge(with_bearer)
        // Benchmarks upload 300 MiB; axum's default limit is 2 MB.
        .layer(DefaultBodyLimit::disable())
        .with_state(store)
}

/// A failed request: its status and a JSON `{"error": "..."}` body.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad_request(message: impl ToString) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.to_string())
}

/// How much of a refused request's body is read before answering 401.
const UNAUTHORIZED_BODY_DRAINED: usize = 16 << 20;

async fn require_bearer(State(store): State<Arc<Store>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if presented.and_then(|v| v.strip_prefix("Bearer ")) == Some(store.token()) {
        return next.run(request).await;
    }
    store.count_unauthorized();
    // Read (and drop) what the client is still sending, up to a bound: a
    // response before the body is read makes hyper close the connection,
    // and the client then sees a broken pipe rather than the 401.
    let _ = axum::body::to_bytes(request.into_body(), UNAUTHORIZED_BODY_DRAINED).await;
    ApiError(StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into()).into_response()
}

/// The stored bytes of a well-formed, known asset id.
fn stored_bytes(store: &Store, hash: &str) -> Result<Bytes, ApiError> {
    if !is_asset_id(hash) {
        return Err(bad_request("asset ids are sha256:<64 lowercase hex>"));
    }
    store
        .get(hash)
        .map(|a| a.bytes)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no asset {hash}")))
}

/// The bytes as a body that shares the stored buffer (no copy).
fn bytes_response(bytes: Bytes) -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ),
        (header::CONTENT_LENGTH, HeaderValue::from(bytes.len())),
    ];
    (headers, Body::from(bytes)).into_response()
}

async fn download(State(store): State<Arc<Store>>, Path(hash): Path<String>) -> Result<Response, ApiError> {
    stored_bytes(&store, &hash).map(bytes_response)
}

async fn exists(State(store): State<Arc<Store>>, Path(hash): Path<String>) -> Result<Json<Value>, ApiError> {
    if !is_asset_id(&hash) {
        return Err(bad_request("asset ids are sha256:<64 lowercase hex>"));
    }
    Ok(Json(json!({ "exists": store.get(&hash).is_some() })))
}

async fn presign(State(store): State<Arc<Store>>, Path(hash): Path<String>) -> Result<Json<Value>, ApiError> {
    stored_bytes(&store, &hash)?;
    let url = format!("{}/presigned/{hash}?sig={}", store.base_url(), store.signature(&hash));
    Ok(Json(json!({ "url": url, "expiresIn": 3600 })))
}

async fn presigned_download(
    State(store): State<Arc<Store>>,
    Path(hash): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if query.get("sig").map(String::as_str) != Some(store.signature(&hash).as_str()) {
        return Err(ApiError(StatusCode::FORBIDDEN, "bad or missing sig".into()));
    }
    stored_bytes(&store, &hash).map(bytes_response)
}

async fn list_assets(
    State(store): State<Arc<Store>>,
    Query(filter): Query<HashMap<String, String>>,
) -> Json<Vec<Value>> {
    Json(store.list(
        filter.get("type").map(String::as_str),
        filter.get("hash").map(String::as_str),
    ))
}

/// `POST /assets`: a `file` part (any transfer encoding, any size) and
/// optional text parts `type` and `meta`; other parts are ignored.
async fn upload_asset(
    State(store): State<Arc<Store>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let mut multipart = multipart.map_err(|e| bad_request(e.body_text()))?;
    // The whole body's length bounds the file's: reserving it up front
    // spares regrowing (and copying) a large upload. Chunked bodies have none.
    let size_hint = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let mut file = None;
    let mut upload = Upload {
        name: None,
        kind: None,
        meta_text: None,
    };
    while let Some(mut field) = multipart.next_field().await.map_err(|e| bad_request(e.body_text()))? {
        let part = field.name().unwrap_or_default().to_owned();
        match part.as_str() {
            "file" => {
                upload.name = field.file_name().map(str::to_owned);
                let mut content = BytesMut::with_capacity(size_hint);
                let mut hasher = Hasher::default();
                while let Some(chunk) = field.chunk().await.map_err(|e| bad_request(e.body_text()))? {
                    hasher.update(&chunk);
                    content.extend_from_slice(&chunk);
                }
                file = Some((hasher.finish(), content.freeze()));
            }
            "type" => upload.kind = Some(field.text().await.map_err(|e| bad_request(e.body_text()))?),
            "meta" => upload.meta_text = Some(field.text().await.map_err(|e| bad_request(e.body_text()))?),
            _ => {}
        }
    }
    let (hash, bytes) = file.ok_or_else(|| bad_request("no `file` part"))?;
    let (asset, already_exists) = store.insert(&hash, bytes, upload);
    Ok(Json(asset.to_json(&hash, already_exists)))
}

/// `POST /resources`: every JSON body is recorded, then checked against the
/// two shapes the SDK sends (ALLOCATE with the resource's description, FREE
/// with its id only).
async fn resources(State(store): State<Arc<Store>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let call: Value = serde_json::from_slice(&body).map_err(|e| bad_request(format!("body is not JSON: {e}")))?;
    store.record_resource_call(call.clone());
    let data = &call["data"];
    let resource_id = data["resourceId"].as_str();
    let well_formed = call["serverUid"].is_string()
        && resource_id.is_some()
        && match call["action"].as_str() {
            Some("ALLOCATE") => {
                data["type"].is_string()
                    && data["name"].is_string()
                    && data["vramUsage"].is_number()
                    && (data["metadata"].is_null() || data["metadata"].is_object())
            }
            Some("FREE") => true,
            _ => false,
        };
    if !well_formed {
        return Err(bad_request(
            "expected {serverUid, action: \"ALLOCATE\", data: {resourceId, type, name, vramUsage, metadata}} \
             or {serverUid, action: \"FREE\", data: {resourceId}}",
        ));
    }
    Ok(Json(
        json!({ "success": true, "action": call["action"], "resourceId": resource_id }),
    ))
}
