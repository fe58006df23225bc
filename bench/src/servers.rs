//! The child processes a run needs: `nats-server`, `redis-server`, a private
//! PostgreSQL cluster and wasmhook itself, each on a free loopback port with
//! its state in a temporary directory, and each stopped when dropped.
//!
//! They are real servers, started fresh, because the durable paths are only
//! worth measuring against the real thing; nothing is shared with whatever
//! else runs on the machine.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A port nothing listens on right now. Another process could take it
/// before our child binds it; on a quiet loopback that does not happen in
/// practice, and the child's start-up error would say so if it did.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// The first `name` on `PATH`, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Starts `command` with its output in `log`, and asks the kernel to kill it
/// if the harness dies first, so an interrupted run leaves no servers behind.
fn spawn(mut command: Command, log: &Path) -> Result<Child> {
    let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .spawn()
        .with_context(|| format!("starting {program}"))
}

/// The last lines of a log, for error messages.
pub fn tail(log: &Path, lines: usize) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until `addr` accepts TCP connections, or the child exits.
fn wait_for_port(child: &mut Child, addr: SocketAddr, what: &str, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited ({status}) before listening:\n{}",
                tail(log, 20)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{what} did not listen on {addr} within 20 s:\n{}",
                tail(log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Terminates a child politely, then firmly.
fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// `nats-server -js` with its store in a temporary directory.
pub struct Nats {
    child: Child,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    /// `nats-server --version`, for the report.
    pub version: String,
}

impl Nats {
    /// Starts it. The config raises the per-connection pending limit and
    /// the write deadline, because a full-speed run deliberately builds a
    /// backlog and core NATS would otherwise cut wasmhook off as a slow
    /// consumer: that would measure the server's defaults, not wasmhook.
    pub fn start(dir: &Path) -> Result<Nats> {
        let binary = which("nats-server").context("nats-server is not on PATH")?;
        let port = free_port()?;
        let store = dir.join("jetstream");
        let conf = dir.join("nats.conf");
        fs::write(
            &conf,
            format!(
                "host: 127.0.0.1\nport: {port}\nmax_pending: 1GB\nmax_payload: 8MB\n\
                 write_deadline: \"60s\"\njetstream {{\n  store_dir: {store}\n}}\n",
                store = serde_json::to_string(&store.display().to_string())?
            ),
        )?;
        let log = dir.join("nats.log");
        let mut command = Command::new(&binary);
        command.arg("-c").arg(&conf);
        let mut child = spawn(command, &log)?;
        wait_for_port(
            &mut child,
            ([127, 0, 0, 1], port).into(),
            "nats-server",
            &log,
        )?;
        Ok(Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            version: version_of(&binary, "--version"),
        })
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// `redis-server` with the append-only file on and fsynced every second:
/// Redis' own durable setting, comparable to JetStream's file store, since
/// the Redis Streams source is measured as a durable source.
pub struct Redis {
    child: Child,
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    /// `redis-server --version`, for the report.
    pub version: String,
}

impl Redis {
    /// Starts it, or explains that it is missing.
    pub fn start(dir: &Path) -> Result<Redis> {
        let binary = which("redis-server").context("redis-server is not on PATH")?;
        let port = free_port()?;
        let data = dir.join("redis");
        fs::create_dir_all(&data)?;
        let log = dir.join("redis.log");
        let mut command = Command::new(&binary);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .arg("--dir")
            .arg(&data);
        let mut child = spawn(command, &log)?;
        wait_for_port(
            &mut child,
            ([127, 0, 0, 1], port).into(),
            "redis-server",
            &log,
        )?;
        Ok(Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
            version: version_of(&binary, "--version"),
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// A private PostgreSQL cluster (`initdb` + `pg_ctl start`), with trust
/// authentication on loopback for the `postgres` superuser. PostgreSQL
/// refuses to run as root, so as root the cluster belongs to the
/// `postgres` account and is driven through `runuser`.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    as_user: Option<String>,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub dsn: String,
    /// The server's major version directory or `pg_ctl --version`.
    pub version: String,
    // Dropped last: the cluster's files.
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Initialises and starts a cluster, or explains why it cannot.
    pub fn start() -> Result<Postgres> {
        let bin = postgres_bin_dir().context(
            "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and on PATH)",
        )?;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let as_user = root.then(|| "postgres".to_string());
        // Not under the run's own temporary directory: that one is private
        // to root, and the server must be able to reach its files.
        let dir = tempfile::Builder::new()
            .prefix("wasmhook-bench-pg-")
            .tempdir()
            .context("creating the PostgreSQL directory")?;
        if let Some(user) = &as_user {
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path())
                .status()
                .context("running chown")?;
            if !status.success() {
                bail!(
                    "chown {user} {} failed (is there a {user} account?)",
                    dir.path().display()
                );
            }
        }
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        let log = dir.path().join("postgres.log");
        let run = |program: &str, args: &[&std::ffi::OsStr]| -> Result<()> {
            let mut command = match &as_user {
                Some(user) => {
                    let mut c = Command::new("runuser");
                    c.args(["-u", user, "--"]).arg(bin.join(program));
                    c
                }
                None => Command::new(bin.join(program)),
            };
            let output = command
                .args(args)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {program}"))?;
            if !output.status.success() {
                bail!(
                    "{program} failed ({}): {}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(())
        };
        run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        )?;
        // `mkdir` as the owner, so the server can create its socket there.
        if let Some(user) = &as_user {
            Command::new("runuser")
                .args(["-u", user, "--", "mkdir", "-p"])
                .arg(&sock)
                .status()
                .context("creating the socket directory")?;
        } else {
            fs::create_dir_all(&sock)?;
        }
        let port = free_port()?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=50",
            sock.display()
        );
        run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "start".as_ref(),
            ],
        )
        .with_context(|| format!("starting PostgreSQL:\n{}", tail(&log, 20)))?;
        Ok(Postgres {
            version: bin
                .parent()
                .and_then(|p| p.file_name())
                .map(|v| format!("PostgreSQL {}", v.to_string_lossy()))
                .unwrap_or_else(|| "PostgreSQL".into()),
            bin,
            data,
            as_user,
            dsn: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            _dir: dir,
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut command = match &self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(self.bin.join("pg_ctl"));
                c
            }
            None => Command::new(self.bin.join("pg_ctl")),
        };
        let _ = command
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest `/usr/lib/postgresql/N/bin` (Debian's layout, where the
/// server binaries are not on PATH), else the directory of `pg_ctl` on PATH.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
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
    let pg_ctl = fs::canonicalize(which("pg_ctl")?).ok()?;
    pg_ctl.parent().map(Path::to_path_buf)
}

fn version_of(binary: &Path, flag: &str) -> String {
    Command::new(binary)
        .arg(flag)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| binary.display().to_string())
}

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// User plus system CPU seconds so far.
    pub cpu_s: f64,
    /// Peak resident set size (VmHWM) in bytes.
    pub peak_rss: u64,
}

impl ProcStats {
    /// Reads them for `pid`.
    pub fn of(pid: u32) -> Result<ProcStats> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // The command name may contain spaces and parentheses: the fields
        // we want are counted from the last ')'.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("unexpected /proc/PID/stat format")?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of stat(5) (utime, stime); `after` starts at field 3.
        let ticks = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .context("unexpected /proc/PID/stat format")
        };
        let ticks = ticks(11)? + ticks(12)?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let peak_kb = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        Ok(ProcStats {
            cpu_s: ticks as f64 / hz,
            peak_rss: peak_kb * 1024,
        })
    }
}

/// A running `wasmhook run --config FILE`.
pub struct Wasmhook {
    child: Child,
    /// Its HTTP listener (health, metrics, ingest).
    pub addr: SocketAddr,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// For its health and metrics probes, built once: the harness polls
    /// `/metrics` every 20 ms while it waits for the outbox to drain, and
    /// a client per probe would read the system's certificates and open a
    /// connection each time.
    probe: reqwest::Client,
}

impl Wasmhook {
    /// Starts the binary with `config` in `dir` and waits for `/readyz`.
    /// The first start of a run with plugins compiles them (then cached), so
    /// readiness may take several seconds; that is outside every measurement.
    pub async fn start(binary: &Path, config: &Path, dir: &Path, addr: SocketAddr) -> Result<Self> {
        let log = dir.join("wasmhook.log");
        let mut command = Command::new(binary);
        command
            .arg("run")
            .arg("--config")
            .arg(config)
            .current_dir(dir)
            .env_remove("RUST_LOG");
        let child = spawn(command, &log)?;
        let mut wasmhook = Wasmhook {
            child,
            addr,
            log,
            probe: probe_client()?,
        };
        wasmhook.wait_ready().await?;
        Ok(wasmhook)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let url = format!("http://{}/readyz", self.addr);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(response) = self.probe.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "wasmhook was not ready within 90 s:\n{}",
                    tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An error with the end of its log if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("wasmhook exited ({status}):\n{}", tail(&self.log, 20));
        }
        Ok(())
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its CPU time and peak memory so far.
    pub fn stats(&self) -> Result<ProcStats> {
        ProcStats::of(self.pid())
    }

    /// A gauge or counter from `/metrics`, e.g. `wasmhook_outbox_size`.
    pub async fn metric(&self, name: &str) -> Result<f64> {
        let text = self
            .probe
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                (key == name).then(|| value.trim().parse::<f64>().ok())?
            })
            .with_context(|| format!("no {name} in /metrics"))
    }

    /// Whether `/healthz` answers within two seconds: a process that is up
    /// but does not answer has a blocked runtime.
    pub async fn answers_health(&self) -> bool {
        self.probe
            .get(format!("http://{}/healthz", self.addr))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// SIGTERM, then SIGKILL after a few seconds. Its config sets a short
    /// shutdown timeout, so a stalled receiver does not hold it up.
    pub fn stop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(8));
    }
}

impl Drop for Wasmhook {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client for health and metrics probes, which must never hang the run.
fn probe_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("building the HTTP client")
}

/// A child that prints one line when it is ready (the reference subscriber).
pub struct LineReady {
    child: Child,
}

impl LineReady {
    /// Starts `command` and waits for a line equal to `ready` on its stdout;
    /// its stderr goes to `log`.
    pub fn start(mut command: Command, ready: &str, log: &Path) -> Result<LineReady> {
        let err = fs::File::create(log)?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err);
        // SAFETY: as in `spawn`.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .context("starting the reference subscriber")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let seen = lines.any(|line| line.map(|l| l.trim() == ready).unwrap_or(false));
            let _ = tx.send(seen);
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(true) => Ok(LineReady { child }),
            _ => {
                stop_child(&mut child, Duration::from_secs(1));
                bail!("the reference subscriber did not start:\n{}", tail(log, 20))
            }
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if it has exited.
    pub fn check_alive(&mut self, log: &Path) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the reference subscriber exited ({status}):\n{}",
                tail(log, 20)
            );
        }
        Ok(())
    }
}

impl Drop for LineReady {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(2));
    }
}
