//! Plain HTTP calls to a wasmhook under test, in-process or the binary.

use std::time::Duration;

/// POSTs `body` to `url`; returns the status and the JSON answer (`Null`
/// when it is not JSON).
pub async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let value = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, value)
}

/// Waits until `/readyz` answers `status`.
pub async fn readyz(url: &str, status: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(url).await.map(|r| r.status().as_u16()).ok() != Some(status) {
        assert!(
            std::time::Instant::now() < deadline,
            "{url} never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
