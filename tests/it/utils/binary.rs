//! The real wasmhook binary: one-shot commands, `wasmhook run` as a child
//! process, and killing it on progress; and the plugins `plugins/build.sh`
//! built.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use wasmhook_testkit::wait_for_port;

use super::events::delivered;
use super::receiver::TestReceiver;

/// The real binary, built by cargo for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wasmhook"))
}

/// Runs `wasmhook ARGS` to completion; returns (exit code, stdout, stderr).
pub fn wasmhook(args: &[&str], cwd: &Path) -> (i32, String, String) {
    wasmhook_env(args, cwd, &[])
}

/// [`wasmhook`] with extra environment variables.
pub fn wasmhook_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .output()
        .unwrap();
    code_and_text(output)
}

/// [`wasmhook`] with `input` on stdin.
pub fn wasmhook_stdin(args: &[&str], cwd: &Path, input: &[u8]) -> (i32, String, String) {
    let mut command = Command::new(binary());
    command.args(args).current_dir(cwd);
    code_and_text(output_with_stdin(&mut command, input))
}

/// Runs `command` to completion with `input` on its stdin.
pub fn output_with_stdin(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn code_and_text(output: Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Where `plugins/build.sh` puts the example and test plugins.
pub fn plugin_dist() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    assert!(
        dir.join("high-value-order.wasm").exists(),
        "plugin components are missing: run plugins/build.sh first ({} is empty)",
        dir.display()
    );
    dir
}

/// `wasmhook run` as a child process, killed (SIGKILL) on drop.
pub struct Running {
    pub child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl Running {
    pub async fn start(config_path: &Path, cwd: &Path, port: u16) -> Running {
        Self::start_with_env(config_path, cwd, port, &[]).await
    }

    /// With extra environment variables (for `${VAR}` in the config).
    pub async fn start_with_env(
        config_path: &Path,
        cwd: &Path,
        port: u16,
        env: &[(&str, &str)],
    ) -> Running {
        let log_path = cwd.join(format!(
            "wasmhook-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config_path)
            .current_dir(cwd)
            .env("RUST_LOG", "wasmhook=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for_port(port, Duration::from_secs(15)).await.unwrap();
        Running {
            child,
            port,
            log: log_path,
        }
    }

    /// What the process has logged so far (at debug level).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the binary with `config` and SIGKILLs it `rounds` times, each time
/// once a further share of `total` events has arrived: kills land on
/// progress, not after a fixed time, however loaded the machine is. Checks
/// that the kills landed mid-stream.
pub async fn kill_on_progress(
    what: &str,
    config: &Path,
    dir: &Path,
    port: u16,
    receiver: &TestReceiver,
    total: i64,
    rounds: i64,
) {
    for round in 0..rounds {
        let mut running = Running::start(config, dir, port).await;
        let target = (round + 1) * total / (rounds + 1);
        receiver
            .wait_until("progress before the kill", Duration::from_secs(120), |r| {
                delivered(r).len() as i64 >= target
            })
            .await;
        running.kill9();
        let done = delivered(&receiver.requests()).len();
        eprintln!(
            "{what}: after kill {}: {done} of {total} delivered",
            round + 1
        );
    }
    assert!(
        (delivered(&receiver.requests()).len() as i64) < total,
        "{what}: the kills must land mid-stream"
    );
}

/// The kill tests' scale: `WASMHOOK_KILLS` kills across
/// `WASMHOOK_KILL_EVENTS` events (3 kills and `events` in CI; the recorded
/// runs in docs/RELIABILITY.md use 20 and 20000).
pub fn kill_scale(events: i64) -> (i64, i64) {
    let get = |name: &str, default: i64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (
        get("WASMHOOK_KILLS", 3),
        get("WASMHOOK_KILL_EVENTS", events),
    )
}
