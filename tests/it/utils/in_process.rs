//! wasmhook running inside the test process, on a loopback port.

use std::net::SocketAddr;
use std::path::Path;

use tokio::sync::oneshot;

use super::http::post;

/// wasmhook running in this process on port 0.
pub struct InProcess {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), wasmhook::RunError>>>,
}

impl InProcess {
    /// Starts with `config` (TOML); `[storage] path` is set to a temp dir.
    pub async fn start(config: &str) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(config, dir).await
    }

    pub async fn start_in(config: &str, dir: tempfile::TempDir) -> InProcess {
        // RUST_LOG=wasmhook=debug shows the process's logs in a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let text = format!(
            "{}\n[storage]\npath = {:?}\n",
            config,
            dir.path().join("db").display().to_string()
        );
        let config = wasmhook::config::Config::from_toml(&text, Path::new("test.toml"), &|name| {
            std::env::var(name).ok()
        })
        .unwrap_or_else(|e| panic!("test config: {e}"));
        let mut config = config;
        // Receivers here are on loopback, which the SSRF guard refuses by
        // default: tests allow it explicitly, unless one tests the guard.
        if !text.contains("allowed_networks") {
            config.http.allowed_networks =
                vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(wasmhook::run(config, listener, async move {
            let _ = stopped.await;
        }));
        InProcess {
            addr,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post_events(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        post(&self.url("/events"), body).await
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The `/metrics` page, as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops gracefully and returns the temp dir (the database survives).
    pub async fn stop(self) -> tempfile::TempDir {
        let InProcess {
            dir, stop, task, ..
        } = self;
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(task) = task {
            task.await.unwrap().unwrap();
        }
        dir
    }
}
