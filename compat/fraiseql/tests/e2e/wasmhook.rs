//! The real `wasmhook` binary as a child process: config in a temp dir,
//! readiness by `/readyz`, kill -9 and restart on the same storage.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wasmhook_testkit::{free_port, process};

/// How long wasmhook may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `<target>/<profile>/wasmhook`, next to this test's own `deps/` directory
/// (or `WASMHOOK_BIN`). Built once with `cargo build -p wasmhook --bin
/// wasmhook` if it is missing; `cargo test --workspace` builds it before any
/// test runs.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("WASMHOOK_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the test's own path");
        // <target>/<profile>/deps/e2e-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("../debug"));
        let binary = profile_dir.join("wasmhook");
        if !binary.exists() {
            build(&profile_dir);
        }
        assert!(
            binary.exists(),
            "no wasmhook binary at {}",
            binary.display()
        );
        binary
    })
}

fn build(profile_dir: &Path) {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "-p", "wasmhook", "--bin", "wasmhook"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    eprintln!("building wasmhook: {cargo:?}");
    let status = cargo.status().expect("running cargo");
    assert!(
        status.success(),
        "cargo build -p wasmhook failed ({status})"
    );
}

/// A running `wasmhook run --config <dir>/wasmhook.toml`; SIGKILLed on
/// drop, printing the end of its log if the test is failing.
pub struct Wasmhook {
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Wasmhook {
    /// Starts it with `sections` (TOML: `[observers]`, `[webhooks]`,
    /// observers) plus `[server] listen` on a free port and `[storage] path`
    /// in a temp dir, and waits until `/readyz` answers 200.
    pub async fn start(sections: &str) -> Wasmhook {
        let mut wasmhook = Wasmhook::spawn(sections).await;
        wasmhook.wait_ready().await;
        wasmhook
    }

    /// [`Wasmhook::start`] without waiting for readiness (only for the HTTP
    /// listener).
    pub async fn spawn(sections: &str) -> Wasmhook {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("wasmhook.toml");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[storage]\npath = {:?}\n\n{sections}",
            dir.path().join("data").display().to_string()
        );
        std::fs::write(&config, text).unwrap();
        let mut wasmhook = Wasmhook {
            port,
            log: dir.path().join("wasmhook.log"),
            config,
            child: None,
            dir,
        };
        wasmhook.launch().await;
        wasmhook
    }

    async fn launch(&mut self) {
        let mut command = Command::new(binary());
        command
            .args(["run", "--config"])
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "wasmhook=debug");
        let mut child = process::spawn_logged(command, &self.log).unwrap();
        if let Err(error) =
            process::wait_listening(&mut child, self.port, "wasmhook", &self.log, READY_TIMEOUT)
                .await
        {
            process::kill(&mut child);
            panic!("{error:#}\nconfig:\n{}", self.config_text());
        }
        self.child = Some(child);
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The status `/readyz` answers now, if it answers.
    pub async fn readyz(&self) -> Option<u16> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let response = client.get(self.url("/readyz")).send().await.ok()?;
        Some(response.status().as_u16())
    }

    /// Waits until `/readyz` answers 200; panics with the log if it does
    /// not, or if the process exits.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.readyz().await == Some(200) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("wasmhook exited ({status}):\n{}", self.log_tail(40));
            }
            if Instant::now() > deadline {
                panic!(
                    "wasmhook's /readyz was not 200 within {READY_TIMEOUT:?}:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(&mut child);
        }
    }

    /// Starts it again with the same config, storage and port, and waits
    /// for readiness.
    pub async fn restart(&mut self) {
        self.kill9();
        self.launch().await;
        self.wait_ready().await;
    }

    /// The end of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        process::tail(&self.log, lines)
    }

    fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap_or_default()
    }
}

impl Drop for Wasmhook {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- wasmhook config ---\n{}\n--- end of wasmhook's log ---\n{}",
                self.config_text(),
                self.log_tail(60)
            );
        }
    }
}
