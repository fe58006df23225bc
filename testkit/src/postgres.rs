//! A private PostgreSQL cluster: `initdb` into a temporary directory, then
//! `pg_ctl start` on a free port with its own socket directory, trust
//! authentication on loopback for the `postgres` superuser.
//!
//! PostgreSQL refuses to run as root, so as root the cluster's files belong
//! to the `postgres` account and `initdb`/`pg_ctl` run through
//! `runuser -u postgres --`. The server binaries are Debian's
//! (`/usr/lib/postgresql/15/bin`, else the newest version there, else
//! `pg_ctl` on `PATH`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::ports::{free_port, wait_for_port};
use crate::process::{is_root, tail, version_of, which};

/// The server binaries the tests were written against.
pub const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The account that owns the cluster when we run as root.
const OWNER: &str = "postgres";

/// `/usr/lib/postgresql/15/bin` if it has `pg_ctl`, else the newest
/// `/usr/lib/postgresql/N/bin` (Debian's layout, where the server binaries
/// are not on `PATH`), else the directory of `pg_ctl` on `PATH`.
pub fn bin_dir() -> Option<PathBuf> {
    let preferred = PathBuf::from(DEFAULT_BIN);
    if preferred.join("pg_ctl").exists() {
        return Some(preferred);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let pg_ctl = std::fs::canonicalize(which("pg_ctl")?).ok()?;
    pg_ctl.parent().map(Path::to_path_buf)
}

/// How `pg_ctl stop` shuts the server down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Waits for clients to disconnect.
    Smart,
    /// Disconnects clients, shuts down cleanly.
    Fast,
    /// Aborts, as a crash would (recovery on the next start).
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// Server settings. The defaults suit tests: fsync off (tests kill
/// wasmhook or stop the server cleanly, never the machine).
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    fsync: bool,
    max_connections: Option<u32>,
    tls: Option<crate::CertFiles>,
}

impl PgOptions {
    /// The test defaults.
    pub fn new() -> PgOptions {
        PgOptions::default()
    }

    /// Keeps fsync on (PostgreSQL's default), e.g. for measurements.
    pub fn fsync(mut self, on: bool) -> PgOptions {
        self.fsync = on;
        self
    }

    /// Sets `max_connections`.
    pub fn max_connections(mut self, n: u32) -> PgOptions {
        self.max_connections = Some(n);
        self
    }

    /// TLS with this server certificate, and TCP connections only over TLS
    /// (`hostssl` in pg_hba.conf; plain TCP is rejected). The cluster's own
    /// clients ([`PgCluster::client`]) use its Unix socket.
    pub fn tls_only(mut self, server: crate::CertFiles) -> PgOptions {
        self.tls = Some(server);
        self
    }

    /// Initialises and starts a cluster.
    ///
    /// # Errors
    ///
    /// When the binaries or the `postgres` account are missing, or `initdb`
    /// or `pg_ctl` fail (with their output and the server log).
    pub async fn start(self) -> Result<PgCluster> {
        let bin = bin_dir().context(
            "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and on PATH)",
        )?;
        // Under the system temp dir, which the `postgres` account can reach.
        let dir = tempfile::Builder::new()
            .prefix("wasmhook-pg-")
            .tempdir()
            .context("creating the PostgreSQL directory")?;
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&sockets)?;
        let as_user = is_root().then_some(OWNER);
        if let Some(user) = as_user {
            let mut chown = Command::new("chown");
            chown
                .arg("-R")
                .arg(format!("{user}:{user}"))
                .arg(dir.path());
            run(&mut chown, "chown (is there a postgres account?)").await?;
        }
        let cluster = PgCluster {
            port: free_port(),
            log: dir.path().join("postgres.log"),
            bin,
            data,
            sockets,
            as_user,
            options: self,
            _dir: dir,
        };
        let mut initdb = cluster.command("initdb");
        initdb.arg("-D").arg(&cluster.data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(&mut initdb, "initdb").await?;
        if let Some(server) = &cluster.options.tls {
            cluster.install_tls(server).await?;
        }
        cluster.start_again().await?;
        Ok(cluster)
    }
}

/// A running private cluster, stopped (immediate) on drop and its files
/// removed.
pub struct PgCluster {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    sockets: PathBuf,
    log: PathBuf,
    as_user: Option<&'static str>,
    options: PgOptions,
    // The cluster's files; dropped last.
    _dir: tempfile::TempDir,
}

impl PgCluster {
    /// Initialises and starts a cluster with the test defaults.
    ///
    /// # Errors
    ///
    /// As [`PgOptions::start`].
    pub async fn start() -> Result<PgCluster> {
        PgOptions::new().start().await
    }

    /// Starts it (again, after [`PgCluster::stop`]) on the same port and
    /// data directory, waiting until it accepts connections.
    ///
    /// # Errors
    ///
    /// When `pg_ctl start` fails (with the end of the server log).
    pub async fn start_again(&self) -> Result<()> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.sockets.display()
        );
        if !self.options.fsync {
            options.push_str(" -c fsync=off");
        }
        if let Some(n) = self.options.max_connections {
            options.push_str(&format!(" -c max_connections={n}"));
        }
        if self.options.tls.is_some() {
            options.push_str(" -c ssl=on");
        }
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "120", "-o", &options, "start"]);
        if let Err(error) = run(&mut pg_ctl, "pg_ctl start").await {
            bail!("{error:#}\nserver log:\n{}", tail(&self.log, 20));
        }
        wait_for_port(self.port, Duration::from_secs(30)).await
    }

    /// `pg_ctl stop -m MODE`, waiting until it is down.
    ///
    /// # Errors
    ///
    /// When `pg_ctl stop` fails.
    pub async fn stop(&self, mode: StopMode) -> Result<()> {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode.as_arg(), "-w", "-t", "120", "stop"]);
        run(&mut pg_ctl, "pg_ctl stop").await
    }

    /// A fast stop, then a start on the same port and data.
    ///
    /// # Errors
    ///
    /// As [`PgCluster::stop`] and [`PgCluster::start_again`].
    pub async fn restart(&self) -> Result<()> {
        self.stop(StopMode::Fast).await?;
        self.start_again().await
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `db` on this cluster.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A client connected to the `postgres` database (its connection runs
    /// on a spawned task).
    ///
    /// # Errors
    ///
    /// When the connection fails.
    pub async fn client(&self) -> Result<tokio_postgres::Client> {
        self.client_for("postgres").await
    }

    /// A client connected to database `db`.
    ///
    /// # Errors
    ///
    /// When the connection fails.
    pub async fn client_for(&self, db: &str) -> Result<tokio_postgres::Client> {
        // Through the Unix socket: a TLS-only cluster refuses plain TCP.
        let conninfo = format!(
            "host={} port={} user=postgres dbname={db}",
            self.sockets.display(),
            self.port
        );
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {}", self.url_for(db)))?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Puts the server certificate in the data directory (owned by the
    /// server's account, the key readable by it alone, as PostgreSQL
    /// demands) and allows TCP only over TLS.
    async fn install_tls(&self, server: &crate::CertFiles) -> Result<()> {
        let cert = self.data.join("server.crt");
        let key = self.data.join("server.key");
        std::fs::copy(&server.cert, &cert).context("copying the server certificate")?;
        std::fs::copy(&server.key, &key).context("copying the server key")?;
        std::fs::write(
            self.data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .context("writing pg_hba.conf")?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        }
        if let Some(user) = self.as_user {
            let mut chown = Command::new("chown");
            chown
                .arg(format!("{user}:{user}"))
                .arg(&cert)
                .arg(&key)
                .arg(self.data.join("pg_hba.conf"));
            run(&mut chown, "chown of the TLS files").await?;
        }
        Ok(())
    }

    /// Creates database `name` and returns its URL.
    ///
    /// # Errors
    ///
    /// When the name is not a plain identifier or `CREATE DATABASE` fails.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("database name {name:?}: use letters, digits and _");
        }
        self.client()
            .await?
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(self.url_for(name))
    }

    /// The server's log.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `postgres --version`, e.g. `postgres (PostgreSQL) 15.14`.
    pub fn version(&self) -> String {
        version_of(&self.bin.join("postgres"), "--version")
    }

    /// `program` from the server binaries, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.as_user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let path = self.bin.join("pg_ctl");
        let mut command = match self.as_user {
            Some(user) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => std::process::Command::new(path),
        };
        let _ = command
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `command` to completion; an error with its output if it fails.
async fn run(command: &mut Command, what: &str) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| {
            format!("{what}: cannot run it (is postgresql-15 installed? see .ci/run)")
        })?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::accepts;

    #[tokio::test]
    async fn a_cluster_answers_queries_creates_databases_and_restarts() {
        let pg = PgCluster::start().await.unwrap();
        assert!(pg.version().contains("PostgreSQL"), "{}", pg.version());
        let db = pg.client().await.unwrap();
        let one: i32 = db.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
        let fsync: String = db.query_one("SHOW fsync", &[]).await.unwrap().get(0);
        assert_eq!(fsync, "off");

        let url = pg.create_database("app_1").await.unwrap();
        assert!(url.ends_with("/app_1"), "{url}");
        let app = pg.client_for("app_1").await.unwrap();
        app.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (7)")
            .await
            .unwrap();
        assert!(pg.create_database("no; way").await.is_err());

        pg.restart().await.unwrap();
        let app = pg.client_for("app_1").await.unwrap();
        let v: i32 = app.query_one("SELECT v FROM t", &[]).await.unwrap().get(0);
        assert_eq!(v, 7, "data survives a restart");

        pg.stop(StopMode::Immediate).await.unwrap();
        assert!(!accepts(pg.port).await);
        pg.start_again().await.unwrap();
        assert!(accepts(pg.port).await);
        let port = pg.port;
        drop(pg);
        assert!(!accepts(port).await, "stopped on drop");
    }
}
