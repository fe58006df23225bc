//! What a scenario needs that the machine may not have: a server on PATH,
//! the example plugins from `plugins/build.sh`, Python with nats-py and
//! httpx. Each is started or checked on first use and the outcome kept, so
//! a start-up error is reported for every scenario that needs it, not
//! retried; something missing skips the scenario, something broken fails
//! it.

use std::fs;
use std::future::Future;
use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, Context, Result};

use crate::config::{hostile_manifest, HOSTILE_MODES};
use crate::scenarios::Problem;
use wasmhook_testkit::process::which;

/// Why something a scenario needs is not there.
#[derive(Debug, Clone)]
pub enum Unavailable {
    /// Not installed or not built: the scenario is skipped.
    Missing(String),
    /// Installed but it did not start: the scenario fails.
    Broken(String),
}

/// `Missing` unless `program` is on PATH.
pub fn on_path(program: &str) -> Result<(), Unavailable> {
    match which(program) {
        Some(_) => Ok(()),
        None => Err(Unavailable::Missing(format!("{program} is not on PATH"))),
    }
}

/// `Broken`, with the whole chain of `error`.
pub fn broken(error: anyhow::Error) -> Unavailable {
    Unavailable::Broken(format!("{error:#}"))
}

/// Starts something on first use and keeps the outcome, so a start-up
/// error is reported for every scenario that needs it, not retried.
/// `start` is awaited only on first use.
pub async fn started<T>(
    slot: &mut Option<Result<T, Unavailable>>,
    start: impl Future<Output = Result<T, Unavailable>>,
) -> Result<&T, Problem> {
    if slot.is_none() {
        *slot = Some(start.await);
    }
    match slot.as_ref().expect("started above") {
        Ok(value) => Ok(value),
        Err(Unavailable::Missing(why)) => Err(Problem::Skip(why.clone())),
        Err(Unavailable::Broken(why)) => Err(Problem::Fail(anyhow!("{why}"))),
    }
}

/// Copies the example plugins the Wasm rows use (and, for `hostile`, the
/// misbehave copies) from `dist` into `target`.
pub fn copy_plugins(dist: &Path, target: &Path, hostile: bool) -> Result<(), Unavailable> {
    let needed: &[&str] = if hostile {
        &["high-value-order", "slack-message", "misbehave"]
    } else {
        &["high-value-order", "slack-message"]
    };
    for name in needed {
        let wasm = dist.join(format!("{name}.wasm"));
        if !wasm.exists() {
            return Err(Unavailable::Missing(format!(
                "{} is missing: run plugins/build.sh first",
                wasm.display()
            )));
        }
    }
    let copy = || -> Result<()> {
        fs::create_dir_all(target)?;
        for name in ["high-value-order", "slack-message"] {
            for file in [format!("{name}.wasm"), format!("{name}.toml")] {
                if dist.join(&file).exists() {
                    fs::copy(dist.join(&file), target.join(&file))
                        .with_context(|| format!("copying {file}"))?;
                }
            }
        }
        if hostile {
            for mode in HOSTILE_MODES {
                let name = format!("misbehave-{mode}");
                fs::copy(
                    dist.join("misbehave.wasm"),
                    target.join(format!("{name}.wasm")),
                )
                .with_context(|| format!("copying misbehave.wasm as {name}.wasm"))?;
                fs::write(target.join(format!("{name}.toml")), hostile_manifest(mode))
                    .with_context(|| format!("writing {name}.toml"))?;
            }
        }
        Ok(())
    };
    copy().map_err(broken)
}

/// Python 3 with nats-py and httpx, or why not.
pub fn python_ready() -> Result<()> {
    let output = Command::new("python3")
        .args(["-c", "import nats, httpx"])
        .output()
        .context("python3 is not on PATH")?;
    if !output.status.success() {
        anyhow::bail!(
            "python3 cannot import nats-py and httpx (pip install nats-py httpx): {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    Ok(())
}
