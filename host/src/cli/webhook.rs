//! `wasmhook webhook list|enable|disable`: switch a webhook off (its
//! deliveries wait in the outbox) and on again.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

use super::access::Access;
use crate::config::Config;
use crate::delivery::switches::Switches;

#[derive(Debug, Subcommand)]
pub(super) enum WebhookCommand {
    /// List the switched-off webhooks.
    List,
    /// Stop delivering to a webhook; its deliveries wait until it is enabled.
    Disable {
        /// Observer name.
        observer: String,
        /// Position of the webhook in the observer (0 for the first).
        index: usize,
    },
    /// Deliver to a webhook again, starting with what waited.
    Enable {
        /// Observer name.
        observer: String,
        /// Position of the webhook in the observer (0 for the first).
        index: usize,
    },
}

pub(super) async fn execute(config: &Config, command: WebhookCommand) -> Result<ExitCode> {
    if let WebhookCommand::Disable { observer, index }
    | WebhookCommand::Enable { observer, index } = &command
    {
        let known = config
            .observer(observer)
            .is_some_and(|o| *index < o.webhooks.len());
        if !known {
            bail!(
                "observer {observer:?} has no webhook #{index} in {}",
                config.file.display()
            );
        }
    }
    let access = Access::open(config).await?;
    match (&access, command) {
        (Access::Direct(store), WebhookCommand::List) => {
            let list = Switches::open(store).await?.list();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        (Access::Direct(store), WebhookCommand::Disable { observer, index }) => {
            Switches::open(store)
                .await?
                .disable(&observer, index)
                .await?;
            println!("disabled {observer} #{index}");
        }
        (Access::Direct(store), WebhookCommand::Enable { observer, index }) => {
            Switches::open(store)
                .await?
                .enable(&observer, index)
                .await?;
            println!("enabled {observer} #{index}; its deliveries resume when wasmhook runs");
        }
        (Access::Admin { .. }, WebhookCommand::List) => {
            let answer = access
                .call(reqwest::Method::GET, "/webhooks", &[], None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&answer["disabled"])?);
        }
        (Access::Admin { .. }, WebhookCommand::Disable { observer, index }) => {
            access
                .call(
                    reqwest::Method::POST,
                    &format!("/webhooks/{observer}/{index}/disable"),
                    &[],
                    None,
                )
                .await?;
            println!("disabled {observer} #{index}");
        }
        (Access::Admin { .. }, WebhookCommand::Enable { observer, index }) => {
            let answer = access
                .call(
                    reqwest::Method::POST,
                    &format!("/webhooks/{observer}/{index}/enable"),
                    &[],
                    None,
                )
                .await?;
            println!(
                "enabled {observer} #{index}; {} waiting deliveries resumed",
                answer["resumed"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
