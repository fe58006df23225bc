//! `wasmhook plugin ...`: what is in the plugins folder, and a dry run of
//! one plugin against an event file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;

use crate::config::Config;
use crate::plugin::{Change, IncomingRequest, Plugins, Role, Verdict};
use crate::source::envelope;

#[derive(Debug, Subcommand)]
pub(super) enum PluginCommand {
    /// List the plugins in the folder: name, role, file, size, limits.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run one plugin once and print its result or its error.
    Test {
        /// Plugin name (the file stem).
        name: String,
        /// Event file (any envelope wasmhook accepts), for conditions and transforms.
        #[arg(long)]
        event: Option<PathBuf>,
        /// Rendered body handed to a transform.
        #[arg(long)]
        body: Option<PathBuf>,
        /// Input bytes for an encryption plugin.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Key for an encryption plugin (hex or base64).
        #[arg(long)]
        key: Option<String>,
        /// Decrypt instead of encrypt.
        #[arg(long)]
        decrypt: bool,
        /// Request file for a verifier: {"method", "path", "headers": {..}, "body": ".."}.
        #[arg(long)]
        request: Option<PathBuf>,
        /// Secret for a verifier.
        #[arg(long)]
        secret: Option<String>,
    },
}

/// Loads the folder named by `--dir`, or by the config's `[plugins] dir`.
fn open(config_path: &Path, dir: Option<PathBuf>) -> Result<Plugins> {
    let (dir, cache) = match dir {
        // Compiled artifacts are cached per user, so repeated runs (the Python
        // example takes seconds to compile) are quick.
        Some(dir) => (
            dir,
            Some(std::env::temp_dir().join("wasmhook-plugin-cache")),
        ),
        None => {
            let config = Config::load(config_path)
                .context("reading the plugins folder from the config (or pass --dir)")?;
            (config.plugins.dir, Some(config.plugins.cache_dir))
        }
    };
    let (plugins, changes) = Plugins::load(&dir, cache)?;
    for change in changes {
        if let Change::Failed(name, e) = change {
            eprintln!("warning: {name}: {e}");
        }
    }
    Ok(plugins)
}

pub(super) fn execute(
    config: &Path,
    dir: Option<PathBuf>,
    command: PluginCommand,
) -> Result<ExitCode> {
    let plugins = open(config, dir)?;
    match command {
        PluginCommand::List { json } => {
            let list = plugins.list();
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no plugins in {}", plugins.dir().display());
            } else {
                println!(
                    "{:<24} {:<11} {:>10}  {:>12} {:>8} {:>8}  {:<6} file",
                    "name", "role", "size", "fuel", "memory", "timeout", "mode"
                );
                for p in list {
                    println!(
                        "{:<24} {:<11} {:>10}  {:>12} {:>6}Mi {:>6}ms  {:<6} {}",
                        p.name,
                        p.role.to_string(),
                        p.size,
                        p.limits.fuel,
                        p.limits.memory_bytes >> 20,
                        p.limits.timeout.as_millis(),
                        format!("{:?}", p.isolation).to_lowercase(),
                        p.file.display()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Test {
            name,
            event,
            body,
            input,
            key,
            decrypt,
            request,
            secret,
        } => {
            let role = plugins.role(&name).ok_or_else(|| {
                anyhow!(
                    "plugin {name:?} is not loaded from {}",
                    plugins.dir().display()
                )
            })?;
            let read = |path: &Option<PathBuf>, what: &str| -> Result<Vec<u8>> {
                let path = path
                    .as_ref()
                    .ok_or_else(|| anyhow!("a {role} plugin needs --{what} FILE"))?;
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            };
            match role {
                Role::Condition | Role::Transform => {
                    let bytes = read(&event, "event")?;
                    let document =
                        serde_json::from_slice(&bytes).context("the event file is not JSON")?;
                    let event = envelope::parse(document, "cli")
                        .map_err(|e| anyhow!("the event file: {e}"))?;
                    if role == Role::Condition {
                        println!("{}", plugins.condition(&name, &event)?);
                    } else {
                        let body = body
                            .map(|p| {
                                std::fs::read(&p)
                                    .with_context(|| format!("cannot read {}", p.display()))
                            })
                            .transpose()?;
                        let out = plugins.transform(&name, &event, body.as_deref())?;
                        println!(
                            "content-type: {}",
                            out.content_type.as_deref().unwrap_or("application/json")
                        );
                        for (h, v) in &out.headers {
                            println!("{h}: {v}");
                        }
                        println!();
                        println!("{}", show(&out.body));
                    }
                }
                Role::Encryption => {
                    let bytes = read(&input, "input")?;
                    let key = key.ok_or_else(|| {
                        anyhow!("an encryption plugin needs --key (hex or base64)")
                    })?;
                    let key = crate::config::decode_key(&key, "--key")?;
                    let out = if decrypt {
                        plugins.decrypt(&name, &bytes, &key)?
                    } else {
                        plugins.encrypt(&name, &bytes, &key)?
                    };
                    println!("{}", show(&out));
                }
                Role::Verifier => {
                    let bytes = read(&request, "request")?;
                    let request = parse_request(&bytes)?;
                    let secret = secret.ok_or_else(|| anyhow!("a verifier needs --secret"))?;
                    let now = crate::clock::now_ms() / 1000;
                    match plugins.verify(&name, &request, secret.as_bytes(), now)? {
                        Verdict::Ok => println!("ok"),
                        Verdict::Rejected(reason) => {
                            println!("rejected: {reason}");
                            return Ok(ExitCode::from(2));
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show(bytes: &[u8]) -> String {
    use base64::Engine;
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
    }
}

fn parse_request(bytes: &[u8]) -> Result<IncomingRequest> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default = "post")]
        method: String,
        #[serde(default)]
        path: String,
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        body: String,
    }
    fn post() -> String {
        "POST".into()
    }
    let file: File = serde_json::from_slice(bytes).context("the request file must be JSON: {\"method\", \"path\", \"headers\": {..}, \"body\": \"..\"}")?;
    if file.method.is_empty() {
        bail!("the request file has an empty method");
    }
    Ok(IncomingRequest {
        method: file.method,
        path: file.path,
        headers: file.headers.into_iter().collect(),
        body: file.body.into_bytes(),
    })
}
