//! wasmhook against the real FraiseQL: events are published with
//! FraiseQL's own code (observer transport, CDC sink, change-log migrations
//! and capture trigger), the real `wasmhook` binary runs as a child
//! process, and a test receiver checks what it delivers.
//!
//! Every test starts its own servers (nats-server, PostgreSQL 15) through
//! `wasmhook-testkit`, on free loopback ports.

mod cdc;
mod changelog;
mod jetstream;
mod nats;
mod receiver;
mod signature;
mod wasmhook;

use std::sync::Once;

use wasmhook_fraiseql_compat::FRAISEQL_VERSION;

/// The secret of `[webhooks.signing]` in every config here.
pub const SECRET: &str = "compat-secret";

/// One body for every observer: the operation, event id, old row, changed
/// fields, envelope fields and the row, so a test sees what wasmhook made
/// of FraiseQL's envelope.
pub const BODY_TEMPLATE: &str = r#"{"op": "{{_event}}", "id": "{{_event_id}}", "entity": "{{_entity}}", "old": {{_old}}, "changed": {{_changed}}, "tenant": {{_tenant_id}}, "status": {{ status }}, "data": {{_json}}}"#;

/// `[webhooks]` for every config: loopback receivers allowed, quick
/// retries, FraiseQL v2 signatures.
pub fn webhooks_section() -> String {
    webhooks("")
}

/// [`webhooks_section`] with `extra` keys in `[webhooks]` (lines ending in
/// a newline).
pub fn webhooks(extra: &str) -> String {
    format!(
        "[webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n{extra}\
         [webhooks.retry]\ninitial_delay = \"10ms\"\nmax_delay = \"200ms\"\nmax_attempts = 50\n\
         [webhooks.signing]\nscheme = \"fraiseql-v2\"\nsecret = \"{SECRET}\"\n"
    )
}

/// An `[[observer]]` on entity `Order` posting [`BODY_TEMPLATE`] to `url`;
/// `extra` adds keys such as `event = "UPDATE"` or a condition.
pub fn observer(name: &str, extra: &str, url: &str) -> String {
    format!(
        "[[observer]]\nname = \"{name}\"\nentity = \"Order\"\n{extra}\n\
         [[observer.webhook]]\nurl = \"{url}\"\nbody_template = '''{BODY_TEMPLATE}'''\n"
    )
}

/// FraiseQL's NATS clients refuse plaintext `nats://` and loopback hosts
/// unless a development environment opts in (`fraiseql_guard::deployment`,
/// `fraiseql_observers::insecure_guard`). Set once, before any test thread
/// reads the environment: every test calls this first.
pub fn fraiseql_dev_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("FRAISEQL_ENV", "development");
        std::env::set_var("FRAISEQL_NATS_ALLOW_PLAINTEXT", "true");
        // NatsTransport also runs the outbound SSRF check on its URL, which
        // blocks 127.0.0.1 without this.
        std::env::set_var("FRAISEQL_OBSERVERS_ALLOW_INSECURE", "true");
    });
}

/// The versions of package `name` in a Cargo.lock.
fn locked_versions(lock: &str, name: &str) -> Vec<String> {
    let mut lines = lock.lines();
    let mut versions = Vec::new();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"") {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|l| l.strip_suffix('"'))
            {
                versions.push(version.to_string());
            }
        }
    }
    versions
}

#[test]
fn the_fraiseql_version_is_pinned_once_and_locked() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let manifest = std::fs::read_to_string(format!("{dir}/Cargo.toml")).unwrap();
    let lock = std::fs::read_to_string(format!("{dir}/../../Cargo.lock")).unwrap();
    for name in ["fraiseql-observers", "fraiseql-cdc-sinks"] {
        let pin = format!("{name} = {{ version = \"={FRAISEQL_VERSION}\"");
        assert!(
            manifest.contains(&pin),
            "Cargo.toml pins {name} to FRAISEQL_VERSION ({pin})"
        );
        assert_eq!(
            locked_versions(&lock, name),
            vec![FRAISEQL_VERSION.to_string()],
            "Cargo.lock has {name} {FRAISEQL_VERSION} only"
        );
    }
}
