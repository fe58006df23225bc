use std::path::Path;

use super::*;
use crate::delivery::retry::Backoff;
use crate::event::Operation;
use crate::signing::Algorithm;

fn env(name: &str) -> Option<String> {
    match name {
        "SHIP_TOKEN" => Some("tok".into()),
        "SHIP_URL" => Some("http://127.0.0.1:9000/from-env".into()),
        "SECRET" => Some("s3cret".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("wasmhook.toml"), &env)
}

const FULL: &str = r#"
[server]
listen = "127.0.0.1:9999"

[webhooks.signing]
secret = "${SECRET}"
algorithm = "sha512"

[webhooks.retry]
max_attempts = 3
initial_delay = "100ms"
max_delay = "5s"

[[observer]]
name = "on_order_shipped"
entity = "Order"
event = ["UPDATE", "insert"]
condition = "status.changed() && status == 'shipped'"
retry = { max_attempts = 5, backoff = "linear", initial_delay = "1s" }

  [[observer.webhook]]
  url = "http://127.0.0.1:9000/ship"
  headers = { Authorization = "Bearer ${SHIP_TOKEN}" }
  condition = "country IN ('DE', 'FR', 'UK')"
  body = { order_id = "{{ id }}", total = "{{ total }}" }

  [[observer.webhook]]
  url_env = "SHIP_URL"
  method = "put"
  body_template = '''{"data": {{_json}}}'''
"#;

#[test]
fn reads_a_full_config() {
    let config = load(FULL).unwrap();
    assert_eq!(config.server.listen.port(), 9999);
    assert_eq!(
        config.signer.as_ref().map(|s| s.algorithm()),
        Some(Algorithm::Sha512)
    );
    assert_eq!(config.retry.max_attempts, 3);
    let o = &config.observers[0];
    assert_eq!(o.entity, "order");
    assert_eq!(o.events, vec![Operation::Update, Operation::Insert]);
    // The observer's override keeps the global keys it does not name.
    assert_eq!(
        (o.retry.max_attempts, o.retry.backoff),
        (5, Backoff::Linear)
    );
    assert_eq!(o.retry.initial_delay, Duration::from_secs(1));
    assert_eq!(o.retry.max_delay, Duration::from_secs(5));
    assert_eq!(o.webhooks[0].request.headers[0].0, "Authorization");
    assert_eq!(o.webhooks[1].url, "http://127.0.0.1:9000/from-env");
    assert_eq!(o.webhooks[1].method, "PUT");
    assert_eq!(config.source, SourceConfig::Http);
}

#[test]
fn defaults_need_nothing() {
    let config = load("").unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert!(config.signer.is_none());
    assert_eq!(config.retry, RetryPolicy::default());
    let nats = load("[observers]\nbackend = \"nats\"\n").unwrap();
    assert_eq!(
        nats.source,
        SourceConfig::Nats {
            url: "nats://127.0.0.1:4222".into(),
            subjects: vec!["fraiseql.>".into(), "entity.change.>".into()],
            auth: Default::default(),
        }
    );
    let streams =
        load("[server]\nlisten = \"127.0.0.1:9001\"\n[observers]\nbackend = \"redis-streams\"\n")
            .unwrap();
    let SourceConfig::RedisStreams(streams) = streams.source else {
        panic!("redis-streams")
    };
    assert_eq!(
        (
            streams.stream.as_str(),
            streams.group.as_str(),
            streams.field.as_str()
        ),
        ("fraiseql_events", "wasmhook", "payload")
    );
    // Stable across restarts, distinct per process on one host.
    assert!(streams.consumer.ends_with("-9001"), "{}", streams.consumer);
    assert_eq!(streams.claim_idle, Duration::from_secs(30));
    let log = load(
        "[observers]\nbackend = \"postgres-log\"\npostgres_url = \"postgres://127.0.0.1/app\"\n",
    )
    .unwrap();
    let SourceConfig::PostgresLog(log) = log.source else {
        panic!("postgres-log")
    };
    assert_eq!(log.table, "wasmhook.event_log");
}

fn webhook_config(extra: &str) -> String {
    format!("[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"http://x/\"\n{extra}\n")
}

#[test]
fn errors_name_the_file_and_key() {
    for (text, expected) in [
        ("[server]\nlisten = \"nope\"".to_string(), "wasmhook.toml: server.listen: \"nope\" is not an address"),
        ("[server]\nlistn = 1".to_string(), "wasmhook.toml: server.listn: unknown field `listn`, expected one of `listen`"),
        ("[server]\nlistn = 1".to_string(), "; did you mean `listen`?"),
        ("[webhooks.retry]\nmax_attempt = 1".to_string(), "webhooks.retry.max_attempt: unknown field `max_attempt`, expected one of"),
        ("[webhooks.retry]\nmax_attempt = 1".to_string(), "; did you mean `max_attempts`?"),
        ("[[schedule]]\nname = \"s\"\ncron = \"* * * * *\"\nurll = \"http://x/\"".to_string(), "did you mean `url`?"),
        ("[observers]\nbackend = \"kafka\"".to_string(), "observers.backend: \"kafka\" is not a known backend"),
        ("[observers]\nbackend = \"postgres\"".to_string(), "observers.postgres_url: backend \"postgres\" needs a connection string"),
        ("[observers]\nbackend = \"postgres-log\"\npostgres_url = \"postgres://a:pw@h/db\"\nlog_table = \"Log; drop\"".to_string(), "observers.log_table: \"Log; drop\" is not a table name"),
        ("[observers]\nbackend = \"postgres\"\npostgres_url = \"postgres://a:secret@h:notaport/db\"".to_string(), "observers.postgres_url: \"postgres://a:***@h:notaport/db\" is not a PostgreSQL connection string"),
        ("[observers]\nbackend = \"redis-streams\"\nclaim_idle = \"0s\"".to_string(), "observers.claim_idle: must be greater than 0"),
        ("[observers]\nbackend = \"redis-streams\"\ngroup = \"a b\"".to_string(), "observers.group: \"a b\" is not a name"),
        ("[observers]\nbackend = \"redis\"\nchannels = []".to_string(), "observers.channels: needs at least one non-empty entry"),
        ("[server]\nshutdown_timeout = \"forever\"".to_string(), "server.shutdown_timeout: \"forever\" is not a duration"),
        ("[webhooks.signing]\nenabled = true".to_string(), "webhooks.signing.secret: signing is enabled but no secret is set"),
        ("[webhooks.signing]\nscheme = \"standard-webhooks\"\nsecrets = [\"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\", \"nope\"]".to_string(), "webhooks.signing.secrets: secret #1 is not a Standard Webhooks secret"),
        ("[webhooks.signing]\nscheme = \"standard-webhooks\"\nalgorithm = \"sha512\"\nsecret = \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\"".to_string(), "webhooks.signing.algorithm: Standard Webhooks signs with sha256 only"),
        ("[webhooks.signing]\nscheme = \"svix\"\nsecret = \"x\"".to_string(), "webhooks.signing.scheme: \"svix\" is not \"fraiseql\", \"fraiseql-v2\" or \"standard-webhooks\""),
        ("[webhooks.signing]\nsecret = \"a\"\nsecrets = [\"b\"]".to_string(), "webhooks.signing: set secret or secrets"),
        ("[webhooks.retry]\nbackoff = \"random\"".to_string(), "webhooks.retry.backoff: \"random\" is not"),
        ("[webhooks.retry]\ninitial_delay = \"soon\"".to_string(), "webhooks.retry.initial_delay: \"soon\" is not a duration"),
        ("[webhooks.retry]\nmax_attempts = 0".to_string(), "webhooks.retry.max_attempts: must be at least 1"),
        ("[webhooks.retry]\njitter = 1.5".to_string(), "webhooks.retry.jitter: must be a fraction"),
        ("[webhooks.retry]\nretry_on = [999]".to_string(), "webhooks.retry.retry_on: 999 is not an HTTP status code"),
        ("x = ".to_string(), "wasmhook.toml: TOML parse error at line 1, column 5"),
        (webhook_config("headers = { A = \"${MISSING}\" }"), "observer[0].webhook[0].headers.A: environment variable MISSING is not set"),
        (webhook_config("condition = \"total >\""), "observer[0] (\"o\").webhook[0].condition: column 8: expected a value"),
        (webhook_config("body = { a = \"{{ _nope }}\" }"), "observer[0] (\"o\").webhook[0].body.a:"),
        (webhook_config("body_template = \"{{ id \""), "observer[0] (\"o\").webhook[0].body_template: column 1"),
        (webhook_config("body = {}\nbody_template = \"x\""), "set body or body_template, not both"),
        (webhook_config("body_format = \"svix\""), "observer[0] (\"o\").webhook[0].body_format: \"svix\" is not a body format; use \"hasura\""),
        (webhook_config("body_format = \"hasura\"\nbody = {}"), "webhook[0].body_format: builds the whole body"),
        (webhook_config("method = \"TRACE\""), "webhook[0].method: \"TRACE\" is not POST"),
        (webhook_config("url_env = \"NOPE\""), "set url or url_env, not both"),
        (webhook_config("encryption = { algorithm = \"DES\", key = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\", fields = [\"a\"] }"), "webhook[0].encryption.algorithm: \"DES\" is not \"AES-256-GCM\""),
        (webhook_config("encryption = { key = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\" }"), "webhook[0].encryption.fields: name the body fields to encrypt"),
        (webhook_config("encryption = { key = \"0011\", fields = [\"a\"] }"), "webhook[0].encryption.key: the AES-256-GCM key must be 32 bytes, not 2"),
        (webhook_config("encryption = { key = \"0011\", plugin = \"p\", algorithm = \"AES-256-GCM\" }"), "set plugin or algorithm, not both"),
        (webhook_config("max_payload_bytes = 0"), "webhook[0].max_payload_bytes: must be greater than 0"),
        (webhook_config("signing = true"), "webhook[0].signing: `signing = true` is the default"),
        (webhook_config("signing = { scheme = \"standard-webhooks\", secret = \"plain\" }"), "webhook[0].signing.secrets: secret #0 is not a Standard Webhooks secret"),
        (webhook_config("ordering = \"time\""), "webhook[0].ordering: \"time\" is not \"entity\" or \"none\""),
        (webhook_config("ordering = \"entity\"\nbatch = { size = 5 }"), "ordering = \"entity\" and batch cannot be combined"),
        (webhook_config("rate_limit = { max_per_second = 0 }"), "webhook[0].rate_limit.max_per_second: must be a number greater than 0"),
        (webhook_config("batch = { size = 0 }"), "webhook[0].batch.size: must be greater than 0"),
        ("[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"http://{{ host }}/x\"".to_string(), "webhook[0].url: \"http://{{ host }}/x\": placeholders may stand in the path or query only"),
        ("[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"http://h{{ id }}/x\"".to_string(), "placeholders may stand in the path or query only"),
        ("[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"http://h/{{ id \"".to_string(), "webhook[0].url: column 10"),
        ("[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"ftp://h/{{ id }}\"".to_string(), "is not an http or https URL"),
        (webhook_config("query = { a = \"{{ nope\" }"), "webhook[0].query.a: column 1"),
        (webhook_config("proxy = true"), "webhook[0].proxy: give the proxy's URL, or false"),
        (webhook_config("client_cert = true"), "webhook[0].client_cert: give { cert_file, key_file }"),
        (webhook_config("client_cert = { cert_file = \"/no/such.pem\", key_file = \"k.pem\" }"), "webhook[0].client_cert.cert_file: cannot read /no/such.pem"),
        (webhook_config("no_proxy = [\"a.example\"]"), "webhook[0].no_proxy: no_proxy lists hosts that skip the proxy, and this webhook has none"),
        (webhook_config("proxy = \"ftp://u:hunter2@p:21\""), "webhook[0].proxy: \"ftp://u:***@p/\" is not an http://"),
        ("[webhooks]\nno_proxy = [\"a\"]".to_string(), "webhooks.no_proxy: no_proxy lists hosts that skip the proxy; set webhooks.proxy too"),
        ("[webhooks]\nproxy = \"http://p:3128\"\nno_proxy = [\"a,b\"]".to_string(), "webhooks.no_proxy: no_proxy entry \"a,b\" must be one host"),
        ("[webhooks]\nproxy = \"not a url\"".to_string(), "webhooks.proxy: not a URL"),
        ("[webhooks.rate_limiting]\nenabled = true".to_string(), "webhooks.rate_limiting.max_per_second: rate limiting is enabled but max_per_second is not set"),
        ("[webhooks.rate_limiting]\nmax_per_second = 5\nper = \"ip\"".to_string(), "webhooks.rate_limiting.per: \"ip\" is not \"destination\" or \"webhook\""),
        ("[webhooks.circuit_breaker]\nfailure_threshold = 0".to_string(), "webhooks.circuit_breaker.failure_threshold: must be greater than 0"),
        ("[webhooks.batching]\nbatch_size = 5\nsize = 5".to_string(), "webhooks.batching: set size or batch_size, not both"),
        ("[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"ftp://x\"".to_string(), "webhook[0].url: \"ftp://x\" is not an http or https URL"),
        ("[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl_env = \"NOPE\"".to_string(), "webhook[0].url_env: environment variable NOPE is not set"),
        ("[[observer]]\nname = \"o\"\nentity = \"order\"".to_string(), "observer[0] (\"o\").webhook: an observer needs at least one"),
        ("[[observer]]\nname = \"o\"\nentity = \"order\"\nevent = \"UPSERT\"\n[[observer.webhook]]\nurl = \"http://x\"".to_string(), "observer[0] (\"o\").event: \"UPSERT\" is not INSERT, UPDATE, DELETE, CUSTOM or MANUAL"),
        (format!("{}{}", webhook_config(""), webhook_config("")), "observer[1].name: observer name \"o\" is used twice"),
        ("[[observer]]\nname = \"o\"\n".to_string(), "observer[0]: missing field `entity`"),
    ] {
        let message = load(&text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(expected), "{text:?}\n  gave: {message}\n  want: {expected}");
    }
}

/// Webhooks that leave the same way share one egress (one HTTP client);
/// a webhook's own proxy or `false` makes another.
#[test]
fn webhooks_inherit_the_proxy_and_share_egresses() {
    let config = load(
        "[webhooks]\nproxy = \"http://user:pw@proxy.internal:3128\"\nno_proxy = [\"internal.example\"]\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n\
         [[observer.webhook]]\nurl = \"http://a/\"\n\
         [[observer.webhook]]\nurl = \"http://b/\"\n\
         [[observer.webhook]]\nurl = \"http://c/\"\nproxy = false\n\
         [[observer.webhook]]\nurl = \"http://d/\"\nno_proxy = [\"d\"]\n\
         [[observer.webhook]]\nurl = \"http://e/\"\nproxy = false\n",
    )
    .unwrap();
    let webhooks = &config.observers[0].webhooks;
    assert_eq!(config.http.egresses.len(), 3, "{:?}", config.http.egresses);
    assert!(Arc::ptr_eq(&config.http.egresses[0], &webhooks[0].egress));
    assert!(Arc::ptr_eq(&webhooks[0].egress, &webhooks[1].egress));
    assert!(webhooks[2].egress.proxy.is_none());
    assert!(Arc::ptr_eq(&webhooks[2].egress, &webhooks[4].egress));
    let own = webhooks[3].egress.proxy.as_ref().unwrap();
    assert_eq!(own.no_proxy, vec!["d".to_string()]);
    assert_eq!(own.url.host_str(), Some("proxy.internal"));
    let shown = format!("{:?}", config.http.egresses);
    assert!(!shown.contains("pw@"), "{shown}");
}

#[test]
fn sizes_and_dlq_settings() {
    for (text, bytes) in [
        ("1GB", 1_000_000_000),
        ("500MB", 500_000_000),
        ("64KiB", 65_536),
        ("1048576", 1_048_576),
        ("2 MiB", 2_097_152),
    ] {
        assert_eq!(parse_size(text), Ok(bytes), "{text}");
    }
    assert!(parse_size("lots").unwrap_err().contains("is not a size"));
    let config = load("[webhooks.dlq]\nretention = \"2d\"\nmax_size = \"1GB\"\n").unwrap();
    assert_eq!(
        config.dlq,
        DlqConfig {
            retention: Some(Duration::from_secs(2 * 86_400)),
            max_bytes: Some(1_000_000_000)
        }
    );
    assert_eq!(
        load("").unwrap().dlq.retention,
        Some(Duration::from_secs(7 * 86_400)),
        "FraiseQL's default"
    );
    assert_eq!(
        load("[webhooks.dlq]\nretention = \"forever\"\n")
            .unwrap()
            .dlq
            .retention,
        None
    );
    let error = load("[webhooks.dlq]\nmax_size = \"big\"\n")
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("webhooks.dlq.max_size"), "{error}");
    for key in ["cache_capacity_mb", "min_free_mb"] {
        let error = load(&format!("[storage]\n{key} = 9223372036854775807\n"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains(&format!("storage.{key}")) && error.contains("too large"),
            "{error}"
        );
    }
}

#[test]
fn fraiseql_v2_spellings_are_read() {
    let config = load(
        r#"
[webhooks.signing]
scheme = "fraiseql-v2"
secret = "s"

[webhooks.retry]
max_attempts = 4
backoff_strategy = "linear"
initial_delay_ms = 250
max_delay_ms = 8000

[webhooks.incoming.fraiseql]
path = "/in/fraiseql"
scheme = "fraiseql-v2"
secret = "s"
"#,
    )
    .unwrap();
    assert_eq!(
        config.signer.as_ref().map(Signer::scheme),
        Some("fraiseql-v2")
    );
    assert_eq!(
        (
            config.retry.backoff,
            config.retry.initial_delay,
            config.retry.max_delay
        ),
        (
            Backoff::Linear,
            Duration::from_millis(250),
            Duration::from_secs(8)
        )
    );
    let e = load("[webhooks.signing]\nscheme = \"fraiseql-v2\"\nsecret = \"s\"\nheader = \"X\"")
        .unwrap_err();
    assert!(
        e.to_string().contains("FraiseQL v2 fixes its header names"),
        "{e}"
    );
}

#[test]
fn a_listener_beyond_loopback_needs_tokens_or_an_explicit_opt_out() {
    let open = load("[server]\nlisten = \"0.0.0.0:8080\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        open.starts_with(
            "wasmhook.toml: server.ingest_token: server.listen 0.0.0.0:8080 is reachable"
        ),
        "{open}"
    );
    let no_admin = load("[server]\nlisten = \"0.0.0.0:8080\"\ningest_token = \"t\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        no_admin.contains("server.admin_token: server.listen"),
        "{no_admin}"
    );
    let ok = load("[server]\nlisten = \"0.0.0.0:8080\"\ningest_tokens = [\"new\", \"old\"]\nadmin_token = \"a\"\n")
        .unwrap();
    assert_eq!(ok.server.ingest_tokens, vec!["new", "old"]);
    assert!(
        !format!("{:?}", ok.server).contains("new"),
        "tokens stay out of Debug"
    );
    load("[server]\nlisten = \"0.0.0.0:8080\"\nallow_unauthenticated_ingest = true\nallow_unauthenticated_admin = true\n")
        .unwrap();
    // Not serving POST /events: no ingest token needed.
    load("[server]\nlisten = \"0.0.0.0:8080\"\nadmin_token = \"a\"\n[observers]\nbackend = \"nats\"\n").unwrap();
    load("[server]\nlisten = \"127.0.0.1:8080\"\n").unwrap();
    let both = load("[server]\ningest_token = \"a\"\ningest_tokens = [\"b\"]\n").unwrap_err();
    assert!(both.to_string().contains("not both"), "{both}");
}

/// The TOML blocks of FraiseQL's observer and webhook docs
/// (`shared/seeds`), verbatim but for line breaks: each loads, read as
/// wasmhook's keys, or is refused with an error that names the key and
/// says what wasmhook does instead.
#[test]
fn fraiseql_doc_blocks_load_or_are_refused_with_advice() {
    let env = |name: &str| match name {
        "WEBHOOK_SIGNING_SECRET" | "WEBHOOK_SECRET" => Some("s3cret".to_string()),
        "GITHUB_WEBHOOK_SECRET" | "STRIPE_WEBHOOK_SECRET" | "CUSTOM_WEBHOOK_SECRET" => {
            Some("in-secret".to_string())
        }
        _ => None,
    };
    let load = |text: &str| Config::from_toml(text, Path::new("fraiseql.toml"), &env);
    let signing = load(
        "[webhooks]\nsigning_enabled = true\nsigning_secret = \"${WEBHOOK_SIGNING_SECRET}\"\n\
         signing_algorithm = \"sha256\" # or \"sha512\"\n\
         # Headers for signature\nsignature_header = \"X-FraiseQL-Signature\"\n\
         timestamp_header = \"X-FraiseQL-Timestamp\"\n",
    )
    .unwrap();
    let signer = signing.signer.expect("signing is on");
    assert_eq!(signer.header, "X-FraiseQL-Signature");
    assert_eq!(signer.algorithm(), Algorithm::Sha256);

    let incoming = load(
        "[webhooks.incoming.github]\nenabled = true\npath = \"/webhooks/github\"\n\
         secret = \"${GITHUB_WEBHOOK_SECRET}\"\nsignature_header = \"X-Hub-Signature-256\"\n\
         events = [\"push\", \"pull_request\", \"issues\"]\n\
         [webhooks.incoming.stripe]\nenabled = true\npath = \"/webhooks/stripe\"\n\
         secret = \"${STRIPE_WEBHOOK_SECRET}\"\nsignature_header = \"Stripe-Signature\"\n\
         tolerance_seconds = 300\n\
         [webhooks.incoming.custom]\nenabled = true\npath = \"/webhooks/custom\"\n\
         secret = \"${CUSTOM_WEBHOOK_SECRET}\"\nsignature_header = \"X-Signature\"\n\
         signature_format = \"sha256={signature}\"\ntimestamp_header = \"X-Timestamp\"\n",
    )
    .unwrap();
    let paths: Vec<&str> = incoming.receivers.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/webhooks/custom", "/webhooks/github", "/webhooks/stripe"]
    );

    let retry = load(
        "[webhooks.retry]\nenabled = true\nmax_attempts = 5\ninitial_delay_ms = 1000\n\
         max_delay_ms = 60000\nbackoff_multiplier = 2.0\n\
         # Retry on these status codes\nretry_status_codes = [408, 429, 500, 502, 503, 504]\n",
    )
    .unwrap();
    assert_eq!(retry.retry.max_attempts, 5);
    assert_eq!(retry.retry.initial_delay, Duration::from_secs(1));
    assert_eq!(retry.retry.max_delay, Duration::from_secs(60));
    assert_eq!(retry.retry.multiplier, 2.0);
    let off = load("[webhooks.retry]\nenabled = false\n").unwrap();
    assert_eq!(off.retry.max_attempts, 1);

    let limits = load(
        "[webhooks]\n# Connection timeout\nconnect_timeout_ms = 5000\n\
         # Request timeout\nrequest_timeout_ms = 30000\n\
         # Max payload size\nmax_payload_bytes = 1048576 # 1MB\n\
         # Max concurrent requests\nmax_concurrent = 100\n",
    )
    .unwrap();
    assert_eq!(limits.http.request_timeout, Duration::from_secs(30));
    let timeout = load("[webhooks]\ntimeout = \"60s\"\n").unwrap();
    assert_eq!(timeout.http.request_timeout, Duration::from_secs(60));
    let dispatch = load(
        "[webhooks.dispatch]\n# Don't block mutation on webhook completion\nasync = true\ntimeout = \"30s\"\n",
    )
    .unwrap();
    assert_eq!(dispatch.http.request_timeout, Duration::from_secs(30));

    for block in [
        "[webhooks.signing]\nenabled = true\nalgorithm = \"sha256\"\nsecret = \"${WEBHOOK_SECRET}\"\n\
         header = \"X-FraiseQL-Signature\"\ntimestamp_header = \"X-FraiseQL-Timestamp\"\n",
        "[webhooks.retry]\nmax_attempts = 3\nbackoff = \"exponential\"\ninitial_delay = \"100ms\"\nmax_delay = \"5s\"\n",
        "[webhooks.retry]\n# Retry on transient errors\nretry_on = [408, 429, 500, 502, 503, 504]\n\
         # Don't retry on client errors\ndont_retry_on = [400, 401, 403, 404, 422]\n",
        "[webhooks.batching]\nenabled = true\nbatch_size = 50\ntimeout = \"10s\"\n",
        "[webhooks.rate_limiting]\nenabled = true\nmax_per_second = 100\nburst = 200\n",
        "[webhooks.dlq]\nenabled = true\nretention_days = 7\n",
        "[storage]\nbackend = \"postgres\"\npostgres_url = \"postgres://wasmhook@db/app\"\n\
         [webhooks.dlq]\nenabled = true\nbackend = \"postgresql\"\nretention = \"7d\"\nmax_size = \"10GB\"\n",
    ] {
        load(block).unwrap_or_else(|e| panic!("{block}\n{e}"));
    }

    for (block, expected) in [
        (
            "[webhooks.dlq]\nenabled = true\nstorage = \"postgres\" # or \"redis\"\nretention_days = 7\n\
             [webhooks.dlq.postgres]\ntable_name = \"tb_webhook_dlq\"\n",
            "fraiseql.toml: webhooks.dlq.backend: \"postgres\": the DLQ lives in wasmhook's own storage",
        ),
        (
            "[webhooks.dlq]\nenabled = true\nbackend = \"postgresql\"\ntable = \"webhook_dlq\"\nretention = \"7d\"\nmax_size = \"10GB\"\n",
            "webhooks.dlq.backend: \"postgresql\": the DLQ lives in wasmhook's own storage",
        ),
        (
            "[webhooks.dlq]\nbackend = \"nats\"\nstream = \"WEBHOOK_DLQ\"\nbucket = \"webhook-failures\"\n",
            "webhooks.dlq.backend: \"nats\"",
        ),
        (
            "[webhooks.dlq]\nbackend = \"file\"\npath = \"/var/log/fraiseql/webhook_dlq.jsonl\"\nrotation = \"daily\"\ncompress = true\n",
            "`wasmhook dlq list --json` writes it out as JSON",
        ),
        (
            "[webhooks.dlq]\ntable = \"webhook_dlq\"\n",
            "webhooks.dlq.table: FraiseQL's DLQ \"table\" has no counterpart",
        ),
        (
            "[webhooks.dlq]\nretension = \"7d\"\n",
            "webhooks.dlq.retension: unknown field `retension`, expected one of `retention`",
        ),
        (
            "[webhooks.dispatch]\n# Don't block mutation on webhook completion\nasync = true\ntimeout = \"30s\"\n\
             # Queue failed webhooks in background\nbackground_retry = true\nmax_queue_size = 1000\n",
            "webhooks.dispatch.max_queue_size: wasmhook has no in-memory queue to size",
        ),
        (
            "[webhooks.dispatch]\nasync = false\n",
            "webhooks.dispatch.async: wasmhook always delivers in the background",
        ),
        (
            "[webhooks.dlq]\nenabled = false\n",
            "webhooks.dlq.enabled: the DLQ cannot be turned off",
        ),
        (
            "[webhooks]\ntest_url = \"https://abc123.ngrok.io/webhook\"\n",
            "webhooks.test_url: wasmhook has no test URL setting: run `wasmhook listen`",
        ),
        (
            "[observability.prometheus]\nenabled = true\nport = 9090\nnamespace = \"fraiseql\"\n",
            "observability.prometheus.port: metrics are served at /metrics on server.listen",
        ),
        (
            "[webhooks]\nsigning_secret = \"a\"\n[webhooks.signing]\nsecret = \"b\"\n",
            "webhooks.signing_secret: is FraiseQL's spelling of webhooks.signing.secret, which is set too",
        ),
        (
            "[webhooks.retry]\nenabled = false\nmax_attempts = 5\n",
            "webhooks.retry.enabled: enabled = false means one attempt",
        ),
        (
            "[webhooks.incoming.github]\npath = \"/gh\"\nsecret = \"x\"\nsignature_header = \"X-Signature\"\n",
            "webhooks.incoming.github.signature_header: github signs in X-Hub-Signature-256, not \"X-Signature\"",
        ),
        (
            "[webhooks.incoming.shop]\npath = \"/shop\"\nsecret = \"x\"\n",
            "webhooks.incoming.shop.scheme: name how requests are verified",
        ),
        (
            "[webhooks.incoming.github]\npath = \"/ui/github\"\nsecret = \"x\"\n",
            "webhooks.incoming.github.path: \"/ui/github\" is a path wasmhook uses itself",
        ),
    ] {
        let message = load(block).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(expected), "{block}\n  gave: {message}\n  want: {expected}");
    }
}

#[test]
fn a_schedule_reads_its_time_zone() {
    let schedule = |zone: &str| {
        load(&format!(
            "[[schedule]]\nname = \"report\"\ncron = \"0 9 * * *\"\ntimezone = \"{zone}\"\nurl = \"http://x/\"\n"
        ))
    };
    let config = schedule("Europe/Berlin").unwrap();
    assert_eq!(config.schedules[0].timezone, chrono_tz::Europe::Berlin);
    let error = schedule("Europe/Berln").unwrap_err().to_string();
    assert!(
        error.contains(
            "schedule[0] (\"report\").timezone: \"Europe/Berln\" is not an IANA time zone"
        ),
        "{error}"
    );
}

#[test]
fn storage_is_sled_unless_postgres_is_chosen() {
    let config = load("").unwrap();
    assert_eq!(config.storage.path, Path::new("wasmhook-data"));
    assert!(matches!(
        config.storage.backend,
        crate::store::BackendSettings::Sled {
            cache_capacity_bytes: 16_777_216,
            min_free_bytes: 268_435_456,
        }
    ));
    let config =
        load("[storage]\nbackend = \"sled\"\npath = \"db\"\ncache_capacity_mb = 32\n").unwrap();
    assert!(matches!(
        config.storage.backend,
        crate::store::BackendSettings::Sled {
            cache_capacity_bytes: 33_554_432,
            ..
        }
    ));
    assert_eq!(config.storage.location(), "sled at db");
}

#[test]
fn storage_reads_postgres_settings_with_defaults() {
    let config = load(
        "[storage]\nbackend = \"postgres\"\npath = \"node\"\n\
         postgres_url = \"postgres://hook:s3cret@db.internal:5433/app?sslmode=disable\"\n",
    )
    .unwrap();
    let crate::store::BackendSettings::Postgres(pg) = &config.storage.backend else {
        panic!("{:?}", config.storage)
    };
    assert_eq!(pg.schema, "wasmhook");
    assert_eq!(pg.lease, Duration::from_secs(30));
    assert_eq!(pg.max_connections, 16);
    assert_eq!(pg.target.config.get_dbname(), Some("app"));
    assert_eq!(pg.target.config.get_application_name(), Some("wasmhook"));
    assert_eq!(
        config.storage.path,
        Path::new("node"),
        "node-local files stay"
    );
    assert_eq!(
        config.storage.location(),
        "PostgreSQL postgres://hook@db.internal:5433/app, schema wasmhook"
    );
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");

    let config = load(
        "[storage]\nbackend = \"postgres\"\n\
         postgres_url = \"host=db user=hook password=s3cret dbname=app\"\n\
         schema = \"hooks_2\"\nlease = \"5s\"\nmax_connections = 4\n",
    )
    .unwrap();
    let crate::store::BackendSettings::Postgres(pg) = &config.storage.backend else {
        panic!("{:?}", config.storage)
    };
    assert_eq!(
        (pg.schema.as_str(), pg.lease, pg.max_connections),
        ("hooks_2", Duration::from_secs(5), 4)
    );
    assert_eq!(
        load("[storage]\nbackend = \"postgres\"\npostgres_url = \"postgres://h/db\"\nlease = 90000\n")
            .map(|c| match c.storage.backend {
                crate::store::BackendSettings::Postgres(pg) => pg.lease,
                _ => Duration::ZERO,
            })
            .unwrap(),
        Duration::from_secs(90),
        "a number is milliseconds, as elsewhere"
    );
}

#[test]
fn storage_postgres_takes_the_observers_tls_files_as_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not read here").unwrap();
    let config = load(&format!(
        "[observers]\ntls = {{ ca_file = {:?} }}\n\
         [storage]\nbackend = \"postgres\"\npostgres_url = \"postgres://h/db?sslmode=verify-full\"\n",
        ca.display().to_string()
    ))
    .unwrap();
    let crate::store::BackendSettings::Postgres(pg) = &config.storage.backend else {
        panic!("{:?}", config.storage)
    };
    assert_eq!(pg.target.files.ca_file.as_deref(), Some(ca.as_path()));
    assert_eq!(pg.target.mode, crate::tls::postgres::SslMode::VerifyFull);
    // The connection string's own file wins.
    let config = load(&format!(
        "[observers]\ntls = {{ ca_file = {:?} }}\n\
         [storage]\nbackend = \"postgres\"\npostgres_url = \"postgres://h/db?sslrootcert=/own.pem\"\n",
        ca.display().to_string()
    ))
    .unwrap();
    let crate::store::BackendSettings::Postgres(pg) = &config.storage.backend else {
        panic!("{:?}", config.storage)
    };
    assert_eq!(
        pg.target.files.ca_file.as_deref(),
        Some(Path::new("/own.pem"))
    );
}

#[test]
fn storage_errors_name_the_key_and_hide_the_password() {
    let pg = "[storage]\nbackend = \"postgres\"\npostgres_url = \"postgres://h/db\"\n";
    let cases = [
        (
            "[storage]\nbackend = \"postgres\"\n".to_string(),
            "storage.postgres_url: storage.backend = \"postgres\" needs a connection string",
        ),
        (
            "[storage]\nbackend = \"postgres\"\npostgres_url = \"  \"\n".to_string(),
            "storage.postgres_url: storage.backend = \"postgres\" needs",
        ),
        (
            "[storage]\nbackend = \"rocksdb\"\n".to_string(),
            "storage.backend: \"rocksdb\" is not a storage backend; expected \"sled\" or \"postgres\"",
        ),
        (
            "[storage]\nbackend = \"postgres\"\npostgres_url = \"postgres://a:hunter2@h:notaport/db\"\n".to_string(),
            "storage.postgres_url: \"postgres://a:***@h:notaport/db\" is not a PostgreSQL connection string",
        ),
        (
            "[storage]\nbackend = \"postgres\"\npostgres_url = \"host=h password=hunter2 sslmode=sometimes\"\n".to_string(),
            "storage.postgres_url: \"host=h password=*** sslmode=sometimes\" is not a PostgreSQL connection string",
        ),
        (
            format!("{pg}schema = \"Hooks\"\n"),
            "storage.schema: \"Hooks\" is not a plain schema name",
        ),
        (
            format!("{pg}schema = \"hooks; drop table x\"\n"),
            "storage.schema: \"hooks; drop table x\" is not a plain schema name",
        ),
        (
            format!("{pg}schema = \"pg_catalog\"\n"),
            "storage.schema: \"pg_catalog\" is not a plain schema name",
        ),
        (
            format!("{pg}lease = \"soon\"\n"),
            "storage.lease",
        ),
        (
            format!("{pg}lease = \"200ms\"\n"),
            "storage.lease: 200ms is too short",
        ),
        (
            format!("{pg}max_connections = 0\n"),
            "storage.max_connections: must be greater than 0",
        ),
        (
            format!("{pg}cache_capacity_mb = 8\n"),
            "storage.cache_capacity_mb: is sled's",
        ),
        (
            "[storage]\npostgres_url = \"postgres://h/db\"\n".to_string(),
            "storage.postgres_url: is only read with storage.backend = \"postgres\"",
        ),
        (
            "[storage]\nlease = \"5s\"\n".to_string(),
            "storage.lease: is only read with storage.backend = \"postgres\"",
        ),
    ];
    for (text, expected) in cases {
        let error = load(&text).err().unwrap().to_string();
        assert!(error.contains(expected), "{text}\n{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
