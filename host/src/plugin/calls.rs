//! Typed calls, one per role: each looks the plugin up, is admitted (a
//! concurrency slot, not suspended), runs within its budget and is counted
//! (`measured`), and turns the guest's answer into plain Rust values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::admission::{self, Admission, Outcome};
use super::bindings::types;
use super::runtime::{Bound, Loaded};
use super::{IncomingRequest, PluginError, Plugins, Role, Transformed, Verdict};
use crate::event::Event;

impl Plugins {
    /// Looks the plugin up once, runs `call` on it, and counts the call by
    /// result in the plugin's own counters.
    fn measured<T: Send>(
        &self,
        name: &str,
        role: Role,
        call: impl FnOnce(&Loaded) -> Result<T, PluginError> + Send,
    ) -> Result<T, PluginError> {
        let plugin = match self.get(name, role) {
            Ok(plugin) => plugin,
            Err(e) => {
                self.metrics.plugin_call(name, "not_loaded", Duration::ZERO);
                return Err(e);
            }
        };
        // Suspension is checked once a slot is free: a plugin suspended
        // while this call waited fails it at once. The call's time counts
        // from here, and two clock reads serve every check (a read is a
        // few percent of a warm call).
        let reserved = self.reserved.iter().any(|held| Arc::ptr_eq(held, &plugin));
        let _slot = if reserved {
            None
        } else {
            Some(plugin.slots.take())
        };
        let started = Instant::now();
        let probe = match plugin.suspension.admit(name, started) {
            Admission::Run { probe } => probe,
            Admission::Refused(e) => {
                if let Some(counters) = &plugin.counters {
                    counters.suspended();
                }
                return Err(e);
            }
        };
        let result = if plugin.pace.proven_quick() {
            call(&plugin)
        } else {
            admission::aside(|| call(&plugin))
        };
        let ended = Instant::now();
        if plugin.pace.took(ended - started) {
            info!(plugin = %name, ms = (ended - started).as_millis() as u64, "plugin call was slow (by its fuel or its time): this version's calls now run off the async workers");
        }
        let threshold = plugin.manifest.limits.suspend_after;
        match plugin.suspension.record(&result, probe, threshold, ended) {
            Outcome::Unchanged => {}
            Outcome::Suspended(backoff) => {
                warn!(plugin = %name, seconds = backoff.as_secs(), failures = threshold, error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(), "plugin suspended after failing calls in a row; its calls fail until a probe call succeeds");
            }
            Outcome::Resumed => {
                info!(plugin = %name, "plugin serves again: a probe call succeeded")
            }
        }
        if let Some(counters) = &plugin.counters {
            let trapped = matches!(result, Err(PluginError::Trap { .. }));
            counters.record(result.is_ok(), trapped, ended - started);
        }
        result
    }

    /// Runs a condition plugin.
    pub fn condition(&self, name: &str, event: &Event) -> Result<bool, PluginError> {
        self.measured(name, Role::Condition, |plugin| {
            let input = wit_event(event);
            let metadata = metadata_json(event);
            let answer = plugin.call(&self.runtime, "evaluate", |store, bound| {
                store.data_mut().set_metadata(metadata);
                match bound {
                    Bound::Condition(b) => {
                        b.wasmhook_plugin_condition().call_evaluate(store, &input)
                    }
                    _ => unreachable!("role checked by get"),
                }
            })?;
            answer.map_err(|e| guest_error(&plugin.name, e))
        })
    }

    /// Runs a transform plugin; `body` is what the webhook's template rendered.
    pub fn transform(
        &self,
        name: &str,
        event: &Event,
        body: Option<&[u8]>,
    ) -> Result<Transformed, PluginError> {
        self.measured(name, Role::Transform, |plugin| {
            let input = wit_event(event);
            let metadata = metadata_json(event);
            let body = body.map(<[u8]>::to_vec);
            let answer = plugin.call(&self.runtime, "transform", |store, bound| {
                store.data_mut().set_metadata(metadata);
                match bound {
                    Bound::Transform(b) => {
                        b.wasmhook_plugin_transform()
                            .call_transform(store, &input, body.as_deref())
                    }
                    _ => unreachable!("role checked by get"),
                }
            })?;
            let payload = answer.map_err(|e| guest_error(&plugin.name, e))?;
            let limit = plugin.manifest.limits.max_output_bytes;
            if payload.body.len() > limit {
                return Err(PluginError::Output {
                    plugin: plugin.name.to_string(),
                    message: format!(
                        "a body of {} bytes, over its limit of {limit}",
                        payload.body.len()
                    ),
                });
            }
            Ok(Transformed {
                body: payload.body,
                headers: payload
                    .headers
                    .into_iter()
                    .map(|h| (h.name, h.value))
                    .collect(),
                content_type: payload.content_type,
            })
        })
    }

    /// Runs an encryption plugin's `encrypt`.
    pub fn encrypt(
        &self,
        name: &str,
        plaintext: &[u8],
        key: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        self.crypt(name, plaintext, key, true)
    }

    /// Runs an encryption plugin's `decrypt`.
    pub fn decrypt(
        &self,
        name: &str,
        ciphertext: &[u8],
        key: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        self.crypt(name, ciphertext, key, false)
    }

    fn crypt(
        &self,
        name: &str,
        input: &[u8],
        key: &[u8],
        encrypt: bool,
    ) -> Result<Vec<u8>, PluginError> {
        self.measured(name, Role::Encryption, |plugin| {
            let what = if encrypt { "encrypt" } else { "decrypt" };
            let answer = plugin.call(&self.runtime, what, |store, bound| match bound {
                Bound::Encryption(b) if encrypt => b
                    .wasmhook_plugin_encryption()
                    .call_encrypt(store, input, key),
                Bound::Encryption(b) => b
                    .wasmhook_plugin_encryption()
                    .call_decrypt(store, input, key),
                _ => unreachable!("role checked by get"),
            })?;
            let output = answer.map_err(|e| guest_error(&plugin.name, e))?;
            let limit = plugin.manifest.limits.max_output_bytes;
            if output.len() > limit {
                return Err(PluginError::Output {
                    plugin: plugin.name.to_string(),
                    message: format!("{} bytes, over its limit of {limit}", output.len()),
                });
            }
            Ok(output)
        })
    }

    /// Runs a verifier plugin; `now` is Unix seconds.
    pub fn verify(
        &self,
        name: &str,
        request: &IncomingRequest,
        secret: &[u8],
        now: u64,
    ) -> Result<Verdict, PluginError> {
        self.measured(name, Role::Verifier, |plugin| {
            let input = types::Request {
                method: request.method.clone(),
                path: request.path.clone(),
                headers: request
                    .headers
                    .iter()
                    .map(|(name, value)| types::Header {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                body: request.body.clone(),
            };
            let answer = plugin.call(&self.runtime, "verify", |store, bound| match bound {
                Bound::Verifier(b) => b
                    .wasmhook_plugin_verifier()
                    .call_verify(store, &input, secret, now),
                _ => unreachable!("role checked by get"),
            })?;
            match answer.map_err(|e| guest_error(&plugin.name, e))? {
                types::Verdict::Ok => Ok(Verdict::Ok),
                types::Verdict::Rejected(reason) => Ok(Verdict::Rejected(reason)),
            }
        })
    }
}

fn wit_event(event: &Event) -> types::Event {
    types::Event {
        meta: types::EventMeta {
            id: event.id.clone(),
            entity: event.entity.clone(),
            operation: event.operation.as_str().to_string(),
            entity_id: event.entity_id.clone(),
            timestamp: event.timestamp.clone(),
            source: event.source.clone(),
        },
        // `to_string` would go through `fmt::Write`, a call per token.
        data: json_text(&event.data),
        old: event.old.as_ref().map(json_text),
    }
}

/// The event's metadata as a JSON object, what `event-context.metadata`
/// answers during its calls.
fn metadata_json(event: &Event) -> String {
    serde_json::to_string(&event.meta).unwrap_or_else(|_| "{}".to_string())
}

/// A row as JSON text; a `Value` always serialises.
fn json_text(value: &serde_json::Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn guest_error(plugin: &str, error: types::Error) -> PluginError {
    let (kind, message) = match error {
        types::Error::InvalidInput(m) => ("invalid-input", m),
        types::Error::Config(m) => ("config", m),
        types::Error::Failed(m) => ("failed", m),
    };
    PluginError::Guest {
        plugin: plugin.to_string(),
        kind,
        message,
    }
}
