//! Tokens on the listener: `POST /events` (`ingest_token`) and `/admin`
//! (`admin_token`), as a bearer header or, for `/admin` and the web console,
//! as the console's cookie. Compared in constant time, so response timing
//! tells nothing about how much of a guess was right; never logged.
//!
//! A request authenticated by the cookie alone is one a browser may have
//! been tricked into sending; unless it only reads (GET, HEAD) it must
//! carry [`CONSOLE_HEADER`], which a page of another site cannot set
//! without a CORS preflight that wasmhook never grants.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::{problem, AppState};

/// The cookie the console keeps the admin token in.
pub(super) const COOKIE: &str = "wasmhook_admin";

/// The header the console sends with every request; required on writes
/// authenticated by the cookie.
pub(super) const CONSOLE_HEADER: &str = "x-wasmhook-console";

/// Bytes a cookie value may not hold as they are (RFC 6265's cookie-octet
/// excludes controls, space, `"`, `,`, `;` and `\`), and `%` itself so
/// that decoding gives back exactly the token.
const NOT_COOKIE_OCTET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// Whether `given` is one of `tokens`. Every token is compared, so the time
/// taken does not say which one matched.
pub(crate) fn token_matches(given: &str, tokens: &[String]) -> bool {
    tokens.iter().fold(false, |matched, token| {
        constant_time_eq(given.as_bytes(), token.as_bytes()) | matched
    })
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether `headers` carry `Authorization: Bearer <one of tokens>`.
pub(crate) fn bearer_matches(headers: &HeaderMap, tokens: &[String]) -> bool {
    bearer(headers).is_some_and(|given| token_matches(given, tokens))
}

/// The console cookie's value as sent, decoded; `None` without one.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| percent_decode_str(value).decode_utf8().ok())
        .map(|value| value.into_owned())
}

/// Whether `headers` carry the console cookie holding `token`.
pub(super) fn cookie_matches(headers: &HeaderMap, token: &str) -> bool {
    cookie_token(headers).is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

/// The `Set-Cookie` value that logs the console in with `token`: not
/// readable by scripts, never sent by a request another site starts.
pub(super) fn login_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        utf8_percent_encode(token, NOT_COOKIE_OCTET)
    )
}

/// The `Set-Cookie` value that logs the console out.
pub(super) fn logout_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Why a request to `/admin` is refused, with its status and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Neither a right bearer token nor a right cookie.
    Unauthenticated,
    /// A write authenticated by the cookie alone, without the console's
    /// header: possibly forged by another site.
    Forgeable,
}

impl Refusal {
    fn respond(self) -> Response {
        match self {
            Refusal::Unauthenticated => problem(
                StatusCode::UNAUTHORIZED,
                "admin API: missing or wrong bearer token",
            ),
            Refusal::Forgeable => problem(
                StatusCode::FORBIDDEN,
                "admin API: a write authenticated by the console cookie must carry the header \
                 X-Wasmhook-Console: 1 (cross-site request forgery protection)",
            ),
        }
    }
}

/// The rule of [`require_admin`]: open without a token; otherwise a right
/// bearer token, or the right cookie on a read or with the console's header.
pub(super) fn admin_check(
    method: &Method,
    headers: &HeaderMap,
    admin_token: Option<&str>,
) -> Result<(), Refusal> {
    let Some(token) = admin_token else {
        return Ok(());
    };
    if bearer(headers).is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())) {
        return Ok(());
    }
    if !cookie_matches(headers, token) {
        return Err(Refusal::Unauthenticated);
    }
    let reads = method == Method::GET || method == Method::HEAD;
    let from_console = headers
        .get(CONSOLE_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    if reads || from_console {
        Ok(())
    } else {
        Err(Refusal::Forgeable)
    }
}

/// `/admin` when `admin_token` is set (see [`admin_check`]).
pub(super) async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = admin_check(
        request.method(),
        request.headers(),
        state.admin_token.as_deref(),
    ) {
        return refusal.respond();
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

    fn cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, value.parse().unwrap());
        headers
    }

    #[test]
    fn admin_requests_need_the_token_as_bearer_or_cookie() {
        let token = Some("s3cret");
        let get = Method::GET;
        assert_eq!(admin_check(&get, &HeaderMap::new(), None), Ok(()));
        assert_eq!(
            admin_check(&Method::POST, &HeaderMap::new(), None),
            Ok(()),
            "no token: open"
        );
        assert_eq!(
            admin_check(&get, &HeaderMap::new(), token),
            Err(Refusal::Unauthenticated)
        );
        assert_eq!(admin_check(&get, &with("Bearer s3cret"), token), Ok(()));
        assert_eq!(
            admin_check(&Method::POST, &with("Bearer s3cret"), token),
            Ok(()),
            "a bearer header is never sent by a browser on its own"
        );
        assert_eq!(
            admin_check(&get, &with("Bearer wrong"), token),
            Err(Refusal::Unauthenticated)
        );
        assert_eq!(
            admin_check(&get, &cookie("theme=dark; wasmhook_admin=s3cret"), token),
            Ok(())
        );
        assert_eq!(
            admin_check(&Method::HEAD, &cookie("wasmhook_admin=s3cret"), token),
            Ok(())
        );
        for refused in [
            "wasmhook_admin=s3cre",
            "wasmhook_admin=",
            "wasmhook_admin",
            "other=s3cret",
            "xwasmhook_admin=s3cret",
        ] {
            assert_eq!(
                admin_check(&get, &cookie(refused), token),
                Err(Refusal::Unauthenticated),
                "{refused}"
            );
        }
    }

    #[test]
    fn cookie_writes_need_the_console_header() {
        let token = Some("s3cret");
        let mut headers = cookie("wasmhook_admin=s3cret");
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert_eq!(
                admin_check(&method, &headers, token),
                Err(Refusal::Forgeable),
                "{method}"
            );
        }
        headers.insert(CONSOLE_HEADER, "0".parse().unwrap());
        assert_eq!(
            admin_check(&Method::POST, &headers, token),
            Err(Refusal::Forgeable)
        );
        headers.insert(CONSOLE_HEADER, "1".parse().unwrap());
        assert_eq!(admin_check(&Method::POST, &headers, token), Ok(()));
        let mut wrong = cookie("wasmhook_admin=nope");
        wrong.insert(CONSOLE_HEADER, "1".parse().unwrap());
        assert_eq!(
            admin_check(&Method::POST, &wrong, token),
            Err(Refusal::Unauthenticated)
        );
    }

    #[test]
    fn the_login_cookie_gives_back_any_token() {
        for token in [
            "plain-token_1",
            "with space; and=equals,\"quotes\"",
            "100% é",
        ] {
            let set = login_cookie(token);
            assert!(
                set.ends_with("; HttpOnly; SameSite=Strict; Path=/"),
                "{set}"
            );
            let value = set.split(';').next().unwrap();
            assert!(
                !value[COOKIE.len() + 1..]
                    .bytes()
                    .any(|b| b" \",;\\".contains(&b) || !b.is_ascii_graphic()),
                "{value}"
            );
            assert!(cookie_matches(&cookie(value), token), "{token}");
        }
        assert!(logout_cookie().contains("Max-Age=0"));
    }
}
