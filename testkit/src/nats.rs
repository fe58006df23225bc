//! A private `nats-server`: plain, or with JetStream storing in a directory
//! the caller keeps, so it can be restarted on the same port with its data.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::ports::free_port;
use crate::process;

/// How long a started server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What to start: the port, JetStream and limits. [`NatsServer::start`] and
/// friends cover the usual cases.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    port: Option<u16>,
    jetstream: Option<PathBuf>,
    bench_limits: bool,
    extra: String,
}

impl NatsOptions {
    /// A plain server on a free port.
    pub fn new() -> NatsOptions {
        NatsOptions::default()
    }

    /// On `port` rather than a free one.
    pub fn port(mut self, port: u16) -> NatsOptions {
        self.port = Some(port);
        self
    }

    /// With JetStream, storing in `store` (created if missing). Reuse the
    /// directory to start a server with the same streams and consumers.
    pub fn jetstream(mut self, store: impl Into<PathBuf>) -> NatsOptions {
        self.jetstream = Some(store.into());
        self
    }

    /// Raises the per-connection pending limit (1 GB), the payload limit
    /// (8 MB) and the write deadline (60 s): a full-speed benchmark builds a
    /// backlog on purpose, and core NATS would otherwise cut the consumer
    /// off as slow, measuring the server's defaults rather than wasmhook.
    pub fn bench_limits(mut self) -> NatsOptions {
        self.bench_limits = true;
        self
    }

    /// Adds lines to the server's configuration file, e.g. a `tls { }` or
    /// `authorization { }` block.
    pub fn config(mut self, lines: &str) -> NatsOptions {
        self.extra.push_str(lines);
        self.extra.push('\n');
        self
    }

    /// Starts the server and waits until it listens.
    ///
    /// # Errors
    ///
    /// When `nats-server` is missing, exits, or does not listen in time.
    pub async fn start(self) -> Result<NatsServer> {
        let dir = tempfile::Builder::new()
            .prefix("wasmhook-nats-")
            .tempdir()
            .context("creating the nats-server directory")?;
        let port = self.port.unwrap_or_else(free_port);
        let conf = dir.path().join("nats.conf");
        std::fs::write(&conf, self.render(port)).context("writing nats.conf")?;
        let mut server = NatsServer {
            port,
            log: dir.path().join("nats.log"),
            conf,
            store: self.jetstream,
            child: None,
            _dir: dir,
        };
        server.launch().await?;
        Ok(server)
    }

    fn render(&self, port: u16) -> String {
        let mut conf = format!("host: 127.0.0.1\nport: {port}\n");
        if self.bench_limits {
            conf.push_str("max_pending: 1GB\nmax_payload: 8MB\nwrite_deadline: \"60s\"\n");
        }
        if let Some(store) = &self.jetstream {
            let _ = writeln!(
                conf,
                "jetstream {{\n  store_dir: {}\n}}",
                quote(&store.display().to_string())
            );
        }
        conf.push_str(&self.extra);
        conf
    }
}

/// A `nats-server` on 127.0.0.1, SIGKILLed on drop.
pub struct NatsServer {
    /// Its client port.
    pub port: u16,
    conf: PathBuf,
    log: PathBuf,
    store: Option<PathBuf>,
    child: Option<Child>,
    // Holds nats.conf and nats.log; dropped last.
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// A plain (core NATS) server on a free port.
    ///
    /// # Errors
    ///
    /// As [`NatsOptions::start`].
    pub async fn start() -> Result<NatsServer> {
        NatsOptions::new().start().await
    }

    /// A plain server on `port` (e.g. the port of one just killed).
    ///
    /// # Errors
    ///
    /// As [`NatsOptions::start`].
    pub async fn start_on(port: u16) -> Result<NatsServer> {
        NatsOptions::new().port(port).start().await
    }

    /// With JetStream on `port`, storing in `store`: reuse the directory to
    /// start it again with its data.
    ///
    /// # Errors
    ///
    /// As [`NatsOptions::start`].
    pub async fn start_jetstream(port: u16, store: &Path) -> Result<NatsServer> {
        NatsOptions::new().port(port).jetstream(store).start().await
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store, if JetStream is on.
    pub fn store(&self) -> Option<&Path> {
        self.store.as_deref()
    }

    /// Its log (stdout and stderr of every run).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `nats-server --version`, for reports.
    pub fn version() -> String {
        process::version_of(Path::new("nats-server"), "--version")
    }

    /// Whether its process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(&mut child);
        }
    }

    /// SIGTERM, as an operator would, and waits (SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::stop(&mut child, Duration::from_secs(5));
        }
    }

    /// Starts it again on the same port with the same store (killing the
    /// running process first, if any).
    ///
    /// # Errors
    ///
    /// As [`NatsOptions::start`].
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch().await
    }

    async fn launch(&mut self) -> Result<()> {
        let mut command = Command::new("nats-server");
        command.arg("-c").arg(&self.conf);
        let mut child = process::spawn_logged(command, &self.log)?;
        let listening = process::wait_listening(
            &mut child,
            self.port,
            "nats-server",
            &self.log,
            START_TIMEOUT,
        )
        .await;
        if let Err(error) = listening {
            process::kill(&mut child);
            return Err(error);
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A double-quoted string for nats.conf.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::accepts;

    #[tokio::test]
    async fn a_started_server_accepts_connections_and_is_gone_after_drop() {
        let server = NatsServer::start().await.unwrap();
        let port = server.port;
        assert!(accepts(port).await);
        assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
        drop(server);
        assert!(!accepts(port).await, "the server is killed on drop");
    }

    #[tokio::test]
    async fn it_speaks_nats() {
        use tokio::io::AsyncReadExt;
        let server = NatsServer::start().await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let mut greeting = [0u8; 4];
        stream.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"INFO");
    }

    #[tokio::test]
    async fn jetstream_restarts_on_the_same_port_and_store() {
        let store = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut server = NatsServer::start_jetstream(port, store.path())
            .await
            .unwrap();
        assert_eq!(server.store(), Some(store.path()));
        assert!(
            std::fs::read_dir(store.path()).unwrap().next().is_some(),
            "JetStream writes to its store"
        );
        server.kill();
        assert!(!server.is_running());
        assert!(!accepts(port).await);
        server.restart().await.unwrap();
        assert!(server.is_running());
        assert!(accepts(port).await);
    }

    #[test]
    fn renders_the_options() {
        let conf = NatsOptions::new()
            .jetstream("/tmp/a \"b\"")
            .bench_limits()
            .render(4222);
        assert!(conf.starts_with("host: 127.0.0.1\nport: 4222\n"), "{conf}");
        assert!(conf.contains("max_pending: 1GB"), "{conf}");
        assert!(conf.contains(r#"store_dir: "/tmp/a \"b\"""#), "{conf}");
    }
}
