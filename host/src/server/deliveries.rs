//! The delivery log on the admin API: `GET /admin/deliveries` (filters as
//! query parameters, newest first, paged by `before`), `GET
//! /admin/deliveries/{id}`, `POST /admin/deliveries/{id}/resend` and
//! `POST /admin/deliveries/resend` (a JSON filter).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query as Params, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{problem, storage_problem, AppState};
use crate::config::{parse_duration, parse_instant};
use crate::store::{DeliveryStatus, Entry, Query};

/// The most a page may hold.
pub const MAX_LIMIT: usize = 1000;

/// Reads a listing's `limit`; an error names the parameter.
pub fn limit_of(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| format!("limit: {value:?} is not a number from 1 to {MAX_LIMIT}"))
}

/// Reads a listing's filters; an error names the parameter.
pub fn query_of<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Query, String> {
    let mut query = Query::default();
    for (name, value) in params {
        let text = || (!value.is_empty()).then(|| value.to_string());
        match name {
            "event" => query.event = text(),
            "observer" => query.observer = text(),
            "before" => query.before = text(),
            "status" if value.is_empty() => {}
            "status" => {
                query.status = Some(
                    value
                        .parse::<DeliveryStatus>()
                        .map_err(|e| format!("status: {e}"))?,
                )
            }
            "since" | "until" if value.is_empty() => {}
            "since" => query.since_ms = Some(parse_instant(value).map_err(|e| format!("since: {e}"))?),
            "until" => query.until_ms = Some(parse_instant(value).map_err(|e| format!("until: {e}"))?),
            "limit" => query.limit = limit_of(value)?,
            other => {
                return Err(format!(
                    "unknown parameter {other:?}; use event, observer, status, since, until, limit or before"
                ))
            }
        }
    }
    Ok(query)
}

/// `GET /admin/deliveries`: `{"deliveries": [..], "next": id | null}`.
pub(super) async fn list(
    State(state): State<AppState>,
    Params(params): Params<Vec<(String, String)>>,
) -> Response {
    let query = match query_of(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(query) => query,
        Err(message) => return problem(StatusCode::BAD_REQUEST, message),
    };
    let pipeline = &state.pipeline;
    match pipeline.store().deliveries(&query).await {
        Ok(found) => {
            let next = (found.len() == query.limit)
                .then(|| found.last().map(|l| l.delivery.id.clone()))
                .flatten();
            let entries: Vec<Entry> = found
                .iter()
                .map(|l| l.entry(pipeline.webhook_name(&l.delivery.observer, l.delivery.webhook)))
                .collect();
            Json(json!({ "deliveries": entries, "next": next })).into_response()
        }
        Err(e) => storage_problem(&e),
    }
}

/// `GET /admin/deliveries/{id}`.
pub(super) async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let pipeline = &state.pipeline;
    match pipeline.store().delivery(&id).await {
        Ok(logged) => Json(
            logged
                .detail(pipeline.webhook_name(&logged.delivery.observer, logged.delivery.webhook)),
        )
        .into_response(),
        Err(e) => storage_problem(&e),
    }
}

/// `POST /admin/deliveries/{id}/resend`.
pub(super) async fn resend(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.pipeline.resend(&id).await {
        Ok(()) => Json(json!({ "resent": 1 })).into_response(),
        Err(e) => storage_problem(&e),
    }
}

/// `POST /admin/deliveries/{id}/cancel`: a pending delivery into the DLQ.
pub(super) async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.pipeline.cancel(&id).await {
        Ok(()) => Json(json!({ "cancelled": 1 })).into_response(),
        Err(e) => storage_problem(&e),
    }
}

/// The body of `POST /admin/schedule`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// When: an RFC 3339 time, or a wait like `+30s`.
    pub at: String,
    /// Where to.
    pub url: String,
    /// HTTP method (POST by default).
    #[serde(default)]
    pub method: Option<String>,
    /// Extra headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body: JSON, sent as it is (a string is sent as its text).
    #[serde(default)]
    pub body: serde_json::Value,
}

impl ScheduleRequest {
    /// The one-off delivery it asks for; an error names the field.
    pub fn one_off(self) -> Result<crate::schedule::OneOff, String> {
        let at_ms = crate::config::parse_at(&self.at).map_err(|e| format!("at: {e}"))?;
        let url = reqwest::Url::parse(&self.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| format!("url: {:?} is not an http or https URL", self.url))?;
        let method = self
            .method
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "GET" | "DELETE") {
            return Err(format!(
                "method: {method:?} is not POST, PUT, PATCH, GET or DELETE"
            ));
        }
        let body = match self.body {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::String(text) => text.into_bytes(),
            other => other.to_string().into_bytes(),
        };
        Ok(crate::schedule::OneOff {
            at_ms,
            method,
            url: url.to_string(),
            headers: self.headers.into_iter().collect(),
            body,
        })
    }
}

/// `POST /admin/schedule`: a one-off delivery at a time;
/// `{"id": delivery id, "at": RFC 3339}`.
pub(super) async fn schedule(State(state): State<AppState>, body: Bytes) -> Response {
    let one_off = match serde_json::from_slice::<ScheduleRequest>(&body)
        .map_err(|e| {
            format!("schedule: {e}; expected {{\"at\": \"+30s\", \"url\": .., \"body\": ..}}")
        })
        .and_then(ScheduleRequest::one_off)
    {
        Ok(one_off) => one_off,
        Err(message) => return problem(StatusCode::BAD_REQUEST, message),
    };
    let at = crate::store::rfc3339(one_off.at_ms);
    let delivery = one_off.delivery(crate::clock::now_ms());
    match state.pipeline.schedule_once(delivery).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id, "at": at }))).into_response(),
        Err(e) => storage_problem(&e),
    }
}

/// The body of `POST /admin/deliveries/resend`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResendFilter {
    observer: Option<String>,
    event: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// One resend every this long (e.g. "1s").
    delay: Option<String>,
}

/// `POST /admin/deliveries/resend`: every finished delivery the JSON filter
/// picks; `{"resent": n}`.
pub(super) async fn resend_all(State(state): State<AppState>, body: Bytes) -> Response {
    let filter: ResendFilter = if body.iter().all(u8::is_ascii_whitespace) {
        ResendFilter::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(filter) => filter,
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    format!("filter: {e}; expected {{\"observer\": .., \"since\": \"2h\"}}"),
                )
            }
        }
    };
    let params = [
        ("observer", &filter.observer),
        ("event", &filter.event),
        ("status", &filter.status),
        ("since", &filter.since),
        ("until", &filter.until),
    ];
    let query = match query_of(
        params
            .iter()
            .filter_map(|(name, value)| value.as_deref().map(|v| (*name, v))),
    ) {
        Ok(query) => query,
        Err(message) => return problem(StatusCode::BAD_REQUEST, message),
    };
    let spacing = match filter.delay.as_deref().map(parse_duration).transpose() {
        Ok(delay) => delay.unwrap_or(Duration::ZERO),
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("delay: {e}")),
    };
    match state.pipeline.resend_all(&query, spacing).await {
        Ok(n) => Json(json!({ "resent": n })).into_response(),
        Err(e) => storage_problem(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_or_name_the_parameter() {
        let q = query_of([("status", "dead"), ("observer", "o"), ("limit", "5")]).unwrap();
        assert_eq!(q.status, Some(DeliveryStatus::Dead));
        assert_eq!(q.observer.as_deref(), Some("o"));
        assert_eq!(q.limit, 5);
        assert!(query_of([("since", "2h")]).unwrap().since_ms.is_some());
        for (name, value) in [
            ("status", "done"),
            ("since", "yesterday"),
            ("until", "soon"),
            ("limit", "0"),
            ("limit", "lots"),
            ("colour", "red"),
        ] {
            let error = query_of([(name, value)]).unwrap_err();
            assert!(error.contains(name), "{error}");
        }
    }
}
