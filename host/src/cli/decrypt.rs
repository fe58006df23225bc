//! `wasmhook decrypt`: opens the `wh1:` field envelopes of a body, for
//! receivers and for checking what was sent (built-in encryption and the
//! `aes-gcm-fields` plugin write the same envelope).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::payload::encrypt::FieldCipher;

/// The arguments of `decrypt`.
#[derive(Debug, clap::Args)]
pub(super) struct DecryptArgs {
    /// The AES-256 key, hex or base64, as in the webhook's `encryption.key`.
    #[arg(long, env = "WASMHOOK_ENCRYPTION_KEY", hide_env_values = true)]
    key: String,
    /// The encrypted fields, as in `encryption.fields` (comma-separated or repeated).
    #[arg(long = "fields", value_delimiter = ',', required = true)]
    fields: Vec<String>,
    /// The JSON body; standard input when absent.
    file: Option<PathBuf>,
}

pub(super) fn execute(args: DecryptArgs) -> Result<ExitCode> {
    let key = crate::config::decode_key(&args.key, "--key")?;
    let cipher = FieldCipher::new(&key, args.fields).context("--key")?;
    let body = match &args.file {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("cannot read standard input")?;
            body
        }
    };
    let opened = cipher.open(&body).context("cannot decrypt the body")?;
    println!("{}", String::from_utf8_lossy(&opened));
    Ok(ExitCode::SUCCESS)
}
