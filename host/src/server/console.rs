//! The web console: `GET /ui`, one page of plain HTML, CSS and JavaScript
//! embedded in the binary (`console/`), which reads and acts through the
//! admin API; its login (`/ui/login`, the admin token kept in an HttpOnly,
//! SameSite=Strict cookie, see `auth`); and the admin endpoints only it
//! needs: `/admin/overview`, `/admin/observers`, `/admin/plugins/stats`.
//!
//! Without an `admin_token` the console is open, like the admin API.

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{auth, AppState};
use crate::metrics::{PluginCounts, WebhookCounts};
use crate::observer::Rule;
use crate::store::redact;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The files under `/ui/assets/`, all of them.
const ASSETS: &[Asset] = &[
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("console/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("console/console.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("console/favicon.svg"),
    },
];

const INDEX: &str = include_str!("console/index.html");
const LOGIN: &str = include_str!("console/login.html");

/// What a console page may load and do: only this origin's scripts and
/// styles, nothing inline, no frames. Escaping is the console's first
/// defence against event data; this is the second.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// The `/ui` routes; the pages check the cookie themselves (a missing one
/// is a redirect to the login form, not a 401), the assets are public.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/{name}", get(asset))
}

/// The admin endpoints the console reads, mounted under `/admin` behind
/// `auth::require_admin`.
pub(super) fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/overview", get(overview))
        .route("/observers", get(observers))
        .route("/plugins/stats", get(plugin_stats))
}

/// A hash of the assets, put in their URLs so a browser may keep them for
/// good and still loads the new ones after an upgrade.
fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash = Sha256::new();
        for asset in ASSETS {
            hash.update(asset.body.as_bytes());
        }
        hex::encode(&hash.finalize()[..6])
    })
}

fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

/// Whether this request may see the console's pages.
fn signed_in(state: &AppState, headers: &HeaderMap) -> bool {
    match &state.admin_token {
        None => true,
        Some(token) => auth::cookie_matches(headers, token),
    }
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !signed_in(&state, &headers) {
        return Redirect::to("/ui/login").into_response();
    }
    // The log-out button only means something when there is a login.
    let logout = if state.admin_token.is_some() {
        r#"<form method="post" action="/ui/logout"><button class="quiet" type="submit">Log out</button></form>"#
    } else {
        ""
    };
    let html = INDEX
        .replace("{{version}}", version())
        .replace("{{logout}}", logout);
    page(StatusCode::OK, html)
}

fn login_page(status: StatusCode, message: &str) -> Response {
    // The message is one of ours, never user input.
    let html = LOGIN
        .replace("{{version}}", version())
        .replace("{{message}}", message);
    page(status, html)
}

async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.admin_token.is_none() || signed_in(&state, &headers) {
        return Redirect::to("/ui").into_response();
    }
    login_page(StatusCode::OK, "")
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<Login>) -> Response {
    let Some(token) = &state.admin_token else {
        return Redirect::to("/ui").into_response();
    };
    if !auth::token_matches(&form.token, std::slice::from_ref(token)) {
        tracing::warn!("console login refused: wrong admin token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            r#"<p class="error" role="alert">That is not the admin token.</p>"#,
        );
    }
    with_cookie(Redirect::to("/ui"), &auth::login_cookie(token))
}

async fn logout() -> Response {
    with_cookie(Redirect::to("/ui/login"), &auth::logout_cookie())
}

fn with_cookie(redirect: Redirect, cookie: &str) -> Response {
    let mut response = redirect.into_response();
    match HeaderValue::from_str(cookie) {
        Ok(value) => {
            response.headers_mut().insert(header::SET_COOKIE, value);
            response
        }
        // The value is percent-encoded: only visible ASCII, always valid.
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                // The URLs carry the version: a new build has new URLs.
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            asset.body,
        )
            .into_response(),
        None => super::problem(StatusCode::NOT_FOUND, format!("no console asset {name:?}")),
    }
}

/// `GET /admin/overview`.
#[derive(Serialize)]
struct Overview {
    /// Unix milliseconds, so the console computes rates on the server's clock.
    now_ms: u64,
    events_accepted: u64,
    /// Attempts and 2xx answers, over every webhook.
    attempts: u64,
    delivered: u64,
    retries: u64,
    /// Failed attempts by reason.
    failures: std::collections::BTreeMap<String, u64>,
    outbox: usize,
    dlq: usize,
    /// Webhooks switched off.
    switched_off: usize,
    source: Source,
}

#[derive(Serialize)]
struct Source {
    connected: bool,
    lag: u64,
}

async fn overview(State(state): State<AppState>) -> Response {
    let store = state.pipeline.store();
    let totals = state.metrics.totals();
    let mut overview = Overview {
        now_ms: crate::clock::now_ms(),
        events_accepted: totals.events_accepted,
        attempts: 0,
        delivered: 0,
        retries: 0,
        failures: totals.failures,
        outbox: store.outbox_len().await,
        dlq: store.dlq_len().await,
        switched_off: state.switches.list().len(),
        source: Source {
            connected: state.connected.get(),
            lag: totals.source_lag,
        },
    };
    for observer in state.pipeline.observers() {
        for webhook in &observer.webhooks {
            let counts = state.metrics.webhook_counts(&observer.name, &webhook.name);
            overview.attempts += counts.attempts;
            overview.delivered += counts.delivered;
            overview.retries += counts.retries;
        }
    }
    Json(overview).into_response()
}

/// One observer as configured, for `GET /admin/observers`.
#[derive(Serialize)]
struct ObserverView {
    name: String,
    entity: String,
    /// Empty: every operation.
    operations: Vec<String>,
    condition: Option<String>,
    scheduled: bool,
    webhooks: Vec<WebhookView>,
}

#[derive(Serialize)]
struct WebhookView {
    index: usize,
    name: String,
    method: String,
    /// Credentials in it hidden, as `dlq show` does.
    url: String,
    condition: Option<String>,
    enabled: bool,
    /// Since the process started.
    counts: WebhookCounts,
}

fn rule_text(rule: &Rule) -> String {
    match rule {
        Rule::Expr(condition) => condition.source().to_string(),
        Rule::Plugin(name) => format!("plugin:{name}"),
    }
}

async fn observers(State(state): State<AppState>) -> Response {
    let views: Vec<ObserverView> = state
        .pipeline
        .observers()
        .iter()
        .map(|observer| ObserverView {
            name: observer.name.clone(),
            entity: observer.entity.clone(),
            operations: observer.events.iter().map(|o| o.to_string()).collect(),
            condition: observer.condition.as_ref().map(rule_text),
            scheduled: observer.scheduled,
            webhooks: observer
                .webhooks
                .iter()
                .enumerate()
                .map(|(index, webhook)| WebhookView {
                    index,
                    name: webhook.name.clone(),
                    method: webhook.method.clone(),
                    url: redact::url(&webhook.url),
                    condition: webhook.condition.as_ref().map(rule_text),
                    enabled: !state.switches.is_disabled(&observer.name, index),
                    counts: state.metrics.webhook_counts(&observer.name, &webhook.name),
                })
                .collect(),
        })
        .collect();
    Json(views).into_response()
}

/// One loaded plugin with its calls since start, for
/// `GET /admin/plugins/stats` (`GET /admin/plugins` lists them for the CLI).
#[derive(Serialize)]
struct PluginView {
    #[serde(flatten)]
    info: crate::plugin::PluginInfo,
    calls: PluginCounts,
}

async fn plugin_stats(State(state): State<AppState>) -> Response {
    let views: Vec<PluginView> = state
        .pipeline
        .plugins()
        .list()
        .into_iter()
        .map(|info| {
            let calls = state.metrics.plugin_counts(&info.name);
            PluginView { info, calls }
        })
        .collect();
    Json(views).into_response()
}
