//! How CLI commands reach the database: directly when no `wasmhook run`
//! holds it (sled allows one process), otherwise through the running
//! process's admin API at `server.listen`.

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::config::Config;
use crate::store::Store;

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
        match Store::open(&config.storage).await {
            Ok(store) => Ok(Access::Direct(store)),
            Err(e) if e.is_locked() => {
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
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot open the database at {}",
                    config.storage.path.display()
                )
            }),
        }
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
