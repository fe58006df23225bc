//! Bearer tokens on the listener: `POST /events` (`ingest_token`) and
//! `/admin` (`admin_token`). Compared in constant time, so response timing
//! tells nothing about how much of a guess was right; never logged.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{problem, AppState};

/// Whether `headers` carry `Authorization: Bearer <one of tokens>`. Every
/// token is compared, so the time taken does not say which one matched.
pub(crate) fn bearer_matches(headers: &HeaderMap, tokens: &[String]) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return false;
    };
    tokens.iter().fold(false, |matched, token| {
        constant_time_eq(given.as_bytes(), token.as_bytes()) | matched
    })
}

/// `/admin` when `admin_token` is set.
pub(super) async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.admin_token {
        if !bearer_matches(request.headers(), std::slice::from_ref(token)) {
            return problem(
                StatusCode::UNAUTHORIZED,
                "admin API: missing or wrong bearer token",
            );
        }
    }
    next.run(request).await
}

/// `POST /events` when `ingest_token(s)` is set; nothing is read or stored
/// for a request without the token.
pub(super) async fn require_ingest(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !state.ingest_tokens.is_empty() && !bearer_matches(request.headers(), &state.ingest_tokens) {
        return problem(
            StatusCode::UNAUTHORIZED,
            "POST /events: missing or wrong bearer token (server.ingest_token)",
        );
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn any_configured_token_is_accepted_and_nothing_else() {
        let tokens = vec!["new-token".to_string(), "old-token".to_string()];
        assert!(bearer_matches(&with("Bearer new-token"), &tokens));
        assert!(bearer_matches(&with("Bearer old-token"), &tokens));
        for refused in [
            "Bearer new-toke",
            "Bearer new-token ",
            "new-token",
            "Basic new-token",
            "Bearer ",
        ] {
            assert!(!bearer_matches(&with(refused), &tokens), "{refused:?}");
        }
        assert!(!bearer_matches(&HeaderMap::new(), &tokens));
        assert!(!bearer_matches(&with("Bearer x"), &[]));
    }
}
