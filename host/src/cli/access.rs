//! How CLI commands reach the database: directly when no `wasmhook run`
//! holds it (sled allows one process), otherwise through the running
//! process's admin API at `server.listen`. PostgreSQL holds no lock, so
//! there the running process is asked first when it answers: a retry is
//! then scheduled and a switch applies at once, as with sled.

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::config::Config;
use crate::store::{BackendSettings, Store};

/// Where the database is reached.
pub(super) enum Access {
    Direct(Store),
    Admin {
        base: String,
        token: Option<String>,
        client: reqwest::Client,
    },
}

impl Access {
    pub(super) async fn open(config: &Config) -> Result<Access> {
        if matches!(config.storage.backend, BackendSettings::Postgres(_)) {
            let admin = Access::admin(config)?;
            if admin.answers().await {
                return Ok(admin);
            }
        }
        match Store::open(&config.storage).await {
            Ok(store) => Ok(Access::Direct(store)),
            Err(e) if e.is_locked() => Access::admin(config),
            Err(e) => Err(e).with_context(|| {
                format!("cannot open the database ({})", config.storage.location())
            }),
        }
    }

    /// The admin API of the wasmhook running with this config.
    fn admin(config: &Config) -> Result<Access> {
        let mut addr = config.server.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(Access::Admin {
            base: format!("http://{addr}/admin"),
            token: config.server.admin_token.clone(),
            client: reqwest::Client::builder().no_proxy().build()?,
        })
    }

    /// True when a wasmhook answers at the admin API's address.
    async fn answers(&self) -> bool {
        let Access::Admin { base, client, .. } = self else {
            return false;
        };
        let health = format!("{}/healthz", base.trim_end_matches("/admin"));
        client
            .get(health)
            .timeout(std::time::Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Done with the database: rows this command put in the outbox are
    /// given up, so that a running node takes them at once.
    pub(super) async fn close(&self) -> Result<()> {
        if let Access::Direct(store) = self {
            store.close().await?;
        }
        Ok(())
    }

    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value> {
        let Access::Admin {
            base,
            token,
            client,
        } = self
        else {
            bail!("not connected to a running wasmhook");
        };
        let mut request = client.request(method, format!("{base}{path}")).query(query);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("the database is locked by a running wasmhook, and its admin API at {base} did not answer"))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no details");
            bail!("admin API answered {status}: {message}");
        }
        Ok(value)
    }
}
