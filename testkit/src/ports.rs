//! Free loopback ports, and waiting for a server to listen on one.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// A port nothing listens on right now on 127.0.0.1.
///
/// Another process could take it before the caller's server binds it; on a
/// quiet loopback that does not happen in practice, and the server's
/// start-up error (see [`crate::process::wait_listening`]) says so if it does.
///
/// # Panics
///
/// If no loopback port can be bound at all.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding a free loopback port")
}

/// Waits until 127.0.0.1:`port` accepts TCP connections.
///
/// # Errors
///
/// When nothing listens there within `timeout`.
pub async fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if accepts(port).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listened on 127.0.0.1:{port} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether 127.0.0.1:`port` accepts a TCP connection now (within 200 ms).
pub async fn accepts(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    matches!(
        tokio::time::timeout(Duration::from_millis(200), connect).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    }

    #[tokio::test]
    async fn waits_for_a_listener_and_times_out_without_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        wait_for_port(port, Duration::from_secs(5)).await.unwrap();
        drop(listener);
        let error = wait_for_port(port, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("nothing listened"), "{error}");
    }
}
