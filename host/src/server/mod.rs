//! HTTP routes on the one listener: `POST /events` (the embedded source),
//! `/healthz`, and the admin API under `/admin` that the CLI uses while
//! `wasmhook run` holds the database.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tracing::{error, info};

use std::sync::Arc;

use axum::http::{HeaderMap, Method, Uri};

use crate::incoming::replay::Seen;
use crate::incoming::Receiver;
use crate::pipeline::Pipeline;
use crate::source::{envelope, http};
use crate::store::{Filter, Page, StoreError, Summary};

mod auth;
mod console;
pub mod deliveries;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The running pipeline.
    pub pipeline: Pipeline,
    /// Bearer token for `/admin`, if set.
    pub admin_token: Option<String>,
    /// Bearer tokens for `POST /events`; none: open (on loopback, or by choice).
    pub ingest_tokens: Arc<[String]>,
    /// Replay memory of the incoming receivers.
    pub seen: Seen,
    /// The process's metrics.
    pub metrics: crate::metrics::Metrics,
    /// Whether the source is connected.
    pub connected: crate::source::Connected,
    /// Switched-off webhooks.
    pub switches: crate::delivery::switches::Switches,
    /// For receivers' `publish_subject`, when any has one.
    pub nats: Option<async_nats::Client>,
}

/// Builds the router; `ingest` mounts `POST /events` (the `http` backend).
pub fn router(
    state: AppState,
    ingest: bool,
    max_body_bytes: usize,
    receivers: &[Receiver],
) -> Router {
    let admin = Router::new()
        .route("/dlq", get(dlq_list))
        .route("/dlq/retry-all", post(dlq_retry_all))
        .route("/dlq/purge", post(dlq_purge))
        .route("/dlq/{id}", get(dlq_show))
        .route("/dlq/{id}/retry", post(dlq_retry))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/resend", post(deliveries::resend_all))
        .route("/deliveries/{id}", get(deliveries::show))
        .route("/deliveries/{id}/resend", post(deliveries::resend))
        .route("/deliveries/{id}/cancel", post(deliveries::cancel))
        .route("/schedule", post(deliveries::schedule))
        .route("/plugins", get(plugin_list))
        .route("/webhooks", get(webhook_list))
        .route(
            "/webhooks/{observer}/{index}/{action}",
            post(webhook_switch),
        )
        .merge(console::admin_routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/admin", admin)
        .merge(console::routes());
    if ingest {
        router = router.route(
            "/events",
            post(ingest_events).route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_ingest,
            )),
        );
    }
    for receiver in receivers {
        let limit = receiver.max_payload_bytes;
        let receiver = Arc::new(receiver.clone());
        router = router.route(
            &receiver.path.clone(),
            post(
                move |state: State<AppState>,
                      method: Method,
                      uri: Uri,
                      headers: HeaderMap,
                      body: Bytes| {
                    receive(state, receiver.clone(), method, uri, headers, body)
                },
            )
            .layer(DefaultBodyLimit::max(limit)),
        );
    }
    router
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn storage_problem(error: &StoreError) -> Response {
    match error {
        StoreError::NotFound(_) | StoreError::NoDelivery(_) => {
            problem(StatusCode::NOT_FOUND, error.to_string())
        }
        StoreError::NotRetryable(_) | StoreError::Pending(_) | StoreError::Finished(_) => {
            problem(StatusCode::CONFLICT, error.to_string())
        }
        _ => {
            error!(%error, "storage failure");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable; the request was not stored",
            )
        }
    }
}

/// Answers 202 only after every event's deliveries are on disk; any event
/// that cannot be read fails the whole request with 400, nothing stored,
/// so a client can fix and resend it as a unit.
async fn ingest_events(State(state): State<AppState>, body: Bytes) -> Response {
    let documents = match http::documents(&body) {
        Ok(documents) => documents,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.0),
    };
    let mut events = Vec::with_capacity(documents.len());
    for (index, document) in documents.into_iter().enumerate() {
        match envelope::parse(document, "http") {
            Ok(event) => events.push(event),
            Err(e) => return problem(StatusCode::BAD_REQUEST, format!("event {index}: {e}")),
        }
    }
    match state.pipeline.accept(&events).await {
        Ok(routed) => {
            let deliveries: usize = routed.iter().map(|r| r.deliveries.len()).sum();
            info!(events = events.len(), deliveries, "accepted");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "accepted": events.len(), "events": routed })),
            )
                .into_response()
        }
        Err(e) => storage_problem(&e),
    }
}

/// An incoming webhook: verify on the raw bytes, drop replays, filter by
/// event type, then store like any other event (202 once it is on disk).
async fn receive(
    State(state): State<AppState>,
    receiver: Arc<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let now = crate::clock::now_ms() / 1000;
    if let Err(refusal) = receiver.verify(
        method.as_str(),
        uri.path(),
        &headers,
        &body,
        now,
        state.pipeline.plugins(),
    ) {
        tracing::warn!(receiver = %receiver.name, reason = %refusal, "incoming webhook refused");
        state.metrics.incoming(&receiver.name, "refused");
        return problem(StatusCode::UNAUTHORIZED, "invalid or missing signature");
    }
    let event_type = receiver.event_type(&headers, &body);
    if !receiver.accepts(event_type.as_deref()) {
        state.metrics.incoming(&receiver.name, "ignored");
        return (StatusCode::OK, Json(json!({ "ignored": event_type }))).into_response();
    }
    let delivery_id = receiver.delivery_id(&headers, &body);
    let replay_key = delivery_id
        .as_ref()
        .map(|id| format!("{}/{id}", receiver.name));
    if let Some(key) = &replay_key {
        match state.seen.first_time(key, receiver.replay_window).await {
            Ok(true) => {}
            Ok(false) => {
                state.metrics.incoming(&receiver.name, "duplicate");
                return (StatusCode::OK, Json(json!({ "duplicate": delivery_id }))).into_response();
            }
            Err(e) => return storage_problem(&e),
        }
    }
    let event = receiver.event(delivery_id, event_type, &body);
    match state.pipeline.accept(std::slice::from_ref(&event)).await {
        Ok(routed) => {
            state.metrics.incoming(&receiver.name, "accepted");
            if let (Some(subject), Some(nats)) = (&receiver.publish_subject, &state.nats) {
                // Best effort (core NATS, at most once): the event is already
                // stored and its webhooks will go out either way.
                let payload = serde_json::to_vec(&event).unwrap_or_default();
                if let Err(e) = nats.publish(subject.clone(), payload.into()).await {
                    tracing::warn!(receiver = %receiver.name, %subject, error = %e, "cannot publish the incoming event");
                }
            }
            (
                StatusCode::ACCEPTED,
                Json(json!({ "accepted": 1, "events": routed })),
            )
                .into_response()
        }
        Err(e) => {
            state.metrics.incoming(&receiver.name, "error");
            if let Some(key) = &replay_key {
                // The sender will retry; that retry must not count as a replay.
                let _ = state.seen.forget(key).await;
            }
            storage_problem(&e)
        }
    }
}

/// Ready when the source is connected and the database takes a write.
async fn readyz(State(state): State<AppState>) -> Response {
    let source = state.connected.get();
    let storage = state.pipeline.store().check_writable().await.is_ok();
    let status = if source && storage {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": source && storage, "source_connected": source, "storage_writable": storage }))).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let store = state.pipeline.store();
    let text = state
        .metrics
        .encode(store.dlq_len().await, store.outbox_len().await);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn webhook_list(State(state): State<AppState>) -> Response {
    Json(json!({ "disabled": state.switches.list() })).into_response()
}

/// `POST /admin/webhooks/OBSERVER/INDEX/enable|disable`.
async fn webhook_switch(
    State(state): State<AppState>,
    Path((observer, index, action)): Path<(String, usize, String)>,
) -> Response {
    let exists = state
        .pipeline
        .observers()
        .iter()
        .any(|o| o.name == observer && index < o.webhooks.len());
    if !exists {
        return problem(
            StatusCode::NOT_FOUND,
            format!("observer {observer:?} has no webhook #{index}"),
        );
    }
    let result = match action.as_str() {
        "disable" => state.switches.disable(&observer, index).await.map(|()| 0),
        "enable" => state.switches.enable(&observer, index).await.map(|keys| {
            let n = keys.len();
            state.pipeline.resume(keys);
            n
        }),
        other => {
            return problem(
                StatusCode::NOT_FOUND,
                format!("unknown action {other:?}; use enable or disable"),
            )
        }
    };
    match result {
        Ok(resumed) => Json(
            json!({ "observer": observer, "webhook": index, "action": action, "resumed": resumed }),
        )
        .into_response(),
        Err(e) => storage_problem(&e),
    }
}

async fn plugin_list(State(state): State<AppState>) -> Response {
    Json(state.pipeline.plugins().list()).into_response()
}

/// A DLQ listing's paging parameters: `after` (an entry id) and `limit`.
#[derive(serde::Deserialize)]
struct PageParams {
    after: Option<String>,
    limit: Option<String>,
}

async fn dlq_list(
    State(state): State<AppState>,
    Query(filter): Query<Filter>,
    Query(params): Query<PageParams>,
) -> Response {
    let limit = match params.limit.as_deref() {
        None | Some("") => None,
        Some(text) => match deliveries::limit_of(text) {
            Ok(n) => Some(n),
            Err(message) => return problem(StatusCode::BAD_REQUEST, message),
        },
    };
    let page = Page {
        after: params.after.filter(|after| !after.is_empty()),
        limit,
    };
    match state.pipeline.store().dlq_page(&filter, &page).await {
        Ok(letters) => Json(
            letters
                .iter()
                .map(|l| l.summary())
                .collect::<Vec<Summary>>(),
        )
        .into_response(),
        Err(e) => storage_problem(&e),
    }
}

async fn dlq_show(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.pipeline.store().dlq_get(&id).await {
        Ok(letter) => Json(letter.redacted()).into_response(),
        Err(e) => storage_problem(&e),
    }
}

async fn dlq_retry(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.pipeline.retry(&id).await {
        Ok(()) => Json(json!({ "requeued": 1 })).into_response(),
        Err(e) => storage_problem(&e),
    }
}

/// Reads an optional JSON filter body; curl users need not set a content type.
fn filter_of(body: &Bytes) -> Result<Filter, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Filter::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| format!("filter: {e}; expected {{\"observer\": .., \"older_than_ms\": ..}}"))
}

#[derive(serde::Deserialize)]
struct Spacing {
    #[serde(default)]
    delay_ms: u64,
}

/// Body: the filter; query `delay_ms` spreads the replays.
async fn dlq_retry_all(
    State(state): State<AppState>,
    Query(spacing): Query<Spacing>,
    body: Bytes,
) -> Response {
    let filter = match filter_of(&body) {
        Ok(filter) => filter,
        Err(message) => return problem(StatusCode::BAD_REQUEST, message),
    };
    match state
        .pipeline
        .retry_all(&filter, std::time::Duration::from_millis(spacing.delay_ms))
        .await
    {
        Ok(n) => Json(json!({ "requeued": n })).into_response(),
        Err(e) => storage_problem(&e),
    }
}

async fn dlq_purge(State(state): State<AppState>, body: Bytes) -> Response {
    let filter = match filter_of(&body) {
        Ok(filter) => filter,
        Err(message) => return problem(StatusCode::BAD_REQUEST, message),
    };
    match state.pipeline.store().dlq_purge(&filter).await {
        Ok(n) => Json(json!({ "purged": n })).into_response(),
        Err(e) => storage_problem(&e),
    }
}
