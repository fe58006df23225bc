//! A private `redis-server` with its append-only file in a directory the
//! caller keeps, so a restart on the same directory keeps streams and groups.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process;

/// When the append-only file is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every write: nothing acknowledged is lost on a crash (tests).
    Always,
    /// Once a second: Redis' own durable setting (the bench's comparison
    /// with JetStream's file store).
    EverySec,
}

impl Fsync {
    fn as_arg(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
        }
    }
}

/// A `redis-server` on 127.0.0.1, SIGKILLed on drop.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    fsync: Fsync,
    /// TLS-only: `--tls-port` and its files instead of a plain port.
    tls: Option<RedisTls>,
    log: PathBuf,
    child: Option<Child>,
    // Holds redis.log; dropped last.
    _logs: tempfile::TempDir,
}

/// A TLS-only server's files.
#[derive(Debug, Clone)]
struct RedisTls {
    server: crate::CertFiles,
    ca_file: PathBuf,
    client_certs: bool,
}

impl RedisServer {
    /// Starts it on `port` with its data in `dir` (created if missing),
    /// fsyncing every write.
    ///
    /// # Errors
    ///
    /// When `redis-server` is missing, exits, or does not listen in time.
    pub async fn start(port: u16, dir: &Path) -> Result<RedisServer> {
        RedisServer::start_with(port, dir, Fsync::Always).await
    }

    /// [`RedisServer::start`] with another fsync policy.
    ///
    /// # Errors
    ///
    /// As [`RedisServer::start`].
    pub async fn start_with(port: u16, dir: &Path, fsync: Fsync) -> Result<RedisServer> {
        RedisServer::launch(port, dir, fsync, None).await
    }

    async fn launch(
        port: u16,
        dir: &Path,
        fsync: Fsync,
        tls: Option<RedisTls>,
    ) -> Result<RedisServer> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let logs = tempfile::Builder::new()
            .prefix("wasmhook-redis-")
            .tempdir()
            .context("creating the redis-server log directory")?;
        let mut server = RedisServer {
            port,
            dir: dir.to_path_buf(),
            fsync,
            tls,
            log: logs.path().join("redis.log"),
            child: None,
            _logs: logs,
        };
        server.restart().await?;
        Ok(server)
    }

    /// A server that speaks only TLS on `port`, with `server`'s certificate;
    /// with `client_certs`, clients must show a certificate `ca_file`'s CA
    /// signed (`--tls-auth-clients yes`).
    ///
    /// # Errors
    ///
    /// As [`RedisServer::start`].
    pub async fn start_tls(
        port: u16,
        dir: &Path,
        server: crate::CertFiles,
        ca_file: &Path,
        client_certs: bool,
    ) -> Result<RedisServer> {
        let tls = RedisTls {
            server,
            ca_file: ca_file.to_path_buf(),
            client_certs,
        };
        RedisServer::launch(port, dir, Fsync::Always, Some(tls)).await
    }

    /// Starts it again on the same port and directory (after
    /// [`RedisServer::stop`] or [`RedisServer::kill`]; a running one is
    /// killed first).
    ///
    /// # Errors
    ///
    /// As [`RedisServer::start`].
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.server.cert)
                .arg("--tls-key-file")
                .arg(&tls.server.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca_file)
                .args([
                    "--tls-auth-clients",
                    if tls.client_certs { "yes" } else { "no" },
                ]),
        };
        command
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", self.fsync.as_arg()])
            .args(["--save", ""]);
        let mut child = process::spawn_logged(command, &self.log)?;
        let listening = process::wait_listening(
            &mut child,
            self.port,
            "redis-server",
            &self.log,
            Duration::from_secs(20),
        )
        .await;
        let loaded = match listening {
            // A TLS-only server cannot be probed in plain text; it starts
            // from an empty directory in the tests that use it.
            Ok(()) if self.tls.is_some() => Ok(()),
            Ok(()) => self.wait_loaded().await,
            Err(error) => Err(error),
        };
        if let Err(error) = loaded {
            process::kill(&mut child);
            return Err(error);
        }
        self.child = Some(child);
        Ok(())
    }

    /// Waits until it has loaded its append-only file: it listens before
    /// that and answers `-LOADING` to data commands meanwhile.
    async fn wait_loaded(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match probe(self.port).await {
                Ok(answer) if answer.starts_with(':') => return Ok(()),
                Ok(answer) if !answer.starts_with("-LOADING") => {
                    bail!("redis-server answered {answer:?} to EXISTS")
                }
                _ if Instant::now() > deadline => {
                    bail!(
                        "redis-server did not finish loading within 20 s:\n{}",
                        process::tail(&self.log, 20)
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Shuts it down as an operator would (SIGTERM: Redis flushes and
    /// exits) and waits; SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::stop(&mut child, Duration::from_secs(10));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(&mut child);
        }
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://localhost:PORT` for a TLS
    /// server (its certificate names `localhost`).
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(_) => format!("rediss://localhost:{}", self.port),
        }
    }

    /// Its log.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `redis-server --version`, for reports.
    pub fn version() -> String {
        process::version_of(Path::new("redis-server"), "--version")
    }
}

/// Sends `EXISTS` (refused while loading, unlike `PING`) as an inline
/// command; returns the first reply line.
async fn probe(port: u16) -> std::io::Result<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"EXISTS wasmhook-testkit-probe\r\n")
        .await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let read = reader.read_line(&mut line);
    match tokio::time::timeout(Duration::from_secs(2), read).await {
        Ok(result) => result.map(|_| line),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{accepts, free_port};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn command(port: u16, line: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream.write_all(line.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 256];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn keeps_writes_across_a_stop_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut redis = RedisServer::start(free_port(), dir.path()).await.unwrap();
        assert_eq!(command(redis.port, "PING\r\n").await, "+PONG\r\n");
        assert_eq!(command(redis.port, "SET k v\r\n").await, "+OK\r\n");
        redis.stop();
        assert!(!accepts(redis.port).await);
        redis.restart().await.unwrap();
        assert_eq!(command(redis.port, "GET k\r\n").await, "$1\r\nv\r\n");
        let port = redis.port;
        drop(redis);
        assert!(!accepts(port).await, "killed on drop");
    }
}
