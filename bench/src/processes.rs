//! The processes a run measures: wasmhook itself and the reference
//! subscriber, each stopped when dropped, and their CPU time and memory.
//! The servers they read from (nats-server, redis-server, PostgreSQL) come
//! from `wasmhook-testkit`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use wasmhook_testkit::process::{die_with_thread, spawn_logged, stop, tail};

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
        let child = spawn_logged(command, &log)?;
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
        stop(&mut self.child, Duration::from_secs(8));
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
        die_with_thread(&mut command);
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
                stop(&mut child, Duration::from_secs(1));
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
        stop(&mut self.child, Duration::from_secs(2));
    }
}
