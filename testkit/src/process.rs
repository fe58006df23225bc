//! Child processes that die with the test: spawning with the output in a
//! log file, waiting for them to listen, stopping them, reading their logs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The first `name` on `PATH` that is an executable file.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether this process runs as root (PostgreSQL refuses to).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Starts `command` with stdin closed and stdout and stderr appended to
/// `log`, and asks the kernel to SIGKILL it if the thread that started it
/// ends first, so an interrupted run leaves no servers behind.
///
/// The signal follows the spawning *thread*: start servers from the test's
/// own thread or a runtime worker, not from `spawn_blocking`, whose threads
/// end when idle.
///
/// # Errors
///
/// When the log cannot be created or the program cannot be started.
pub fn spawn_logged(mut command: Command, log: &Path) -> Result<Child> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    die_with_thread(&mut command);
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .spawn()
        .with_context(|| format!("starting {program} (is it installed? see .ci/run)"))
}

/// Asks the kernel to SIGKILL the child `command` starts once the thread
/// that starts it ends (see [`spawn_logged`], which does this; for children
/// whose output goes elsewhere, e.g. a pipe).
pub fn die_with_thread(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Waits until 127.0.0.1:`port` accepts connections; fails early, with the
/// end of `log`, if `child` exits first.
///
/// # Errors
///
/// When the child exits or nothing listens within `timeout`.
pub async fn wait_listening(
    child: &mut Child,
    port: u16,
    what: &str,
    log: &Path,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if crate::ports::accepts(port).await {
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
                "{what} did not listen on 127.0.0.1:{port} within {timeout:?}:\n{}",
                tail(log, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM, then SIGKILL once `grace` has passed; returns how it ended.
pub fn stop(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    signal(child, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(child)
}

/// SIGKILL, and reaps it.
pub fn kill(child: &mut Child) -> Option<ExitStatus> {
    let _ = child.kill();
    child.wait().ok()
}

/// Sends `signal` to the child (nothing if it has been reaped already).
pub fn signal(child: &mut Child, signal: i32) {
    if let (Ok(None), Ok(pid)) = (child.try_wait(), i32::try_from(child.id())) {
        // SAFETY: signalling our own, not yet reaped, child by pid.
        unsafe { libc::kill(pid, signal) };
    }
}

/// The last `lines` lines of a log, for error messages.
pub fn tail(log: &Path, lines: usize) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What `binary flag` prints (e.g. `nats-server --version`), trimmed; the
/// binary's path if it prints nothing.
pub fn version_of(binary: &Path, flag: &str) -> String {
    Command::new(binary)
        .arg(flag)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| binary.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path() {
        assert!(which("sh").is_some());
        assert!(which("no-such-program-here").is_none());
    }

    #[tokio::test]
    async fn a_child_that_exits_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("child.log");
        let mut command = Command::new("sh");
        command.args(["-c", "echo going away; exit 3"]);
        let mut child = spawn_logged(command, &log).unwrap();
        let port = crate::ports::free_port();
        let error = wait_listening(&mut child, port, "sh", &log, Duration::from_secs(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("sh exited"), "{error}");
        assert!(error.contains("going away"), "{error}");
    }

    #[test]
    fn stop_terminates_and_kill_reaps() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let mut command = Command::new("sleep");
        command.arg("60");
        let mut child = spawn_logged(command, &log).unwrap();
        let status = stop(&mut child, Duration::from_secs(5)).unwrap();
        assert!(!status.success());
        let mut command = Command::new("sleep");
        command.arg("60");
        let mut child = spawn_logged(command, &log).unwrap();
        assert!(kill(&mut child).is_some());
        assert!(child.try_wait().unwrap().is_some());
    }
}
