//! The web console at `/ui`, driven in a real headless Chromium (Debian's
//! `chromium` and `chromium-driver`) over WebDriver: log in through the
//! form, act on every page, and check that event data never runs as code.
//! The login, cookie and CSRF rules are also checked with a plain HTTP
//! client.
//!
//! WebDriver (with `fantoccini`) rather than the DevTools protocol: clicks,
//! typing and waiting for elements are what a user does, and WebDriver has
//! them as single commands; the DevTools protocol would need a WebSocket
//! client and input events composed by hand.
//!
//! `WASMHOOK_CONSOLE_SCREENSHOTS=DIR` saves a PNG of each page in DIR (the
//! ones in `docs/console/` come from there).

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use wasmhook_testkit::process;

use crate::utils::{fraiseql_order, free_port, plugin_dist, InProcess, TestReceiver};

const TOKEN: &str = "console-admin-token";

/// How long a wait for the page may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// Event fields that would run if the console ever parsed data as HTML.
const SCRIPT: &str = "<script>window.__pwned=1</script>";
const IMAGE: &str = r#"<img src=x onerror="window.__pwned=1">"#;

/// A headless Chromium driven by its chromedriver on a free port; both are
/// stopped when this is dropped.
struct Browser {
    client: Client,
    driver: Child,
    base: String,
    screenshots: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Browser {
    /// A fresh browser (no cookies) for the wasmhook at `base`.
    async fn start(base: &str) -> Browser {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("chromedriver.log");
        let mut command = Command::new("chromedriver");
        command.arg(format!("--port={port}"));
        // Its own process group, so that the browsers it starts are ended
        // with it (see `Drop`), even when a test fails half-way.
        command.process_group(0);
        let mut driver = process::spawn_logged(command, &log).unwrap_or_else(|e| {
            panic!(
                "{e:#}: the console tests need Debian's chromium and chromium-driver (see .ci/run)"
            )
        });
        if let Err(e) =
            process::wait_listening(&mut driver, port, "chromedriver", &log, PATIENCE).await
        {
            end_group(&mut driver);
            panic!("{e:#}");
        }
        let profile = dir.path().join("profile");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": [
                    "--headless=new",
                    // The tests run as root in CI, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,860",
                    format!("--user-data-dir={}", profile.display()),
                    "--no-first-run",
                    "--no-default-browser-check",
                    // Nothing leaves the machine: no background requests, and
                    // every other host goes to a proxy that does not exist
                    // (loopback is never proxied) and resolves to nothing.
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-domain-reliability",
                    "--disable-client-side-phishing-detection",
                    "--disable-features=Translate,OptimizationHints,MediaRouter",
                    "--no-pings",
                    "--proxy-server=http://127.0.0.1:9",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => client,
            Err(e) => {
                end_group(&mut driver);
                panic!("no browser session: {e}\n{}", process::tail(&log, 30));
            }
        };
        let screenshots = std::env::var_os("WASMHOOK_CONSOLE_SCREENSHOTS").map(PathBuf::from);
        if let Some(dir) = &screenshots {
            std::fs::create_dir_all(dir).unwrap();
        }
        Browser {
            client,
            driver,
            base: base.to_string(),
            screenshots,
            _dir: dir,
        }
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    /// Logs in through the form and waits for the console.
    async fn log_in(&self) {
        self.goto("/ui").await;
        assert_eq!(
            self.path().await,
            "/ui/login",
            "an unauthenticated visit is sent to the login form"
        );
        self.type_into("#token", TOKEN).await;
        self.click("button[type=submit]").await;
        self.wait_for("the console after logging in", "#nav a.active")
            .await;
        assert_eq!(self.path().await, "/ui");
    }

    /// Clicks the element `css` finds, once it is there.
    async fn click(&self, css: &str) {
        eventually(&format!("clicking {css}"), || async {
            self.client.find(Locator::Css(css)).await?.click().await?;
            Ok(Some(()))
        })
        .await
    }

    async fn type_into(&self, css: &str, text: &str) {
        eventually(&format!("typing into {css}"), || async {
            let input = self.client.find(Locator::Css(css)).await?;
            input.clear().await?;
            input.send_keys(text).await?;
            Ok(Some(()))
        })
        .await
    }

    async fn wait_for(&self, what: &str, css: &str) {
        eventually(what, || async {
            Ok(self.client.find(Locator::Css(css)).await.ok().map(|_| ()))
        })
        .await
    }

    /// Waits until the text of what `css` finds contains `needle`.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        eventually(&format!("{needle:?} in {css}"), || async {
            let text = self.client.find(Locator::Css(css)).await?.text().await?;
            Ok(text.contains(needle).then_some(text))
        })
        .await
    }

    /// Waits until nothing matches `css`.
    async fn wait_gone(&self, what: &str, css: &str) {
        eventually(what, || async {
            Ok(self
                .client
                .find_all(Locator::Css(css))
                .await?
                .is_empty()
                .then_some(()))
        })
        .await
    }

    /// The script's result.
    async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// The page's text as a user sees it (and can search).
    async fn text(&self) -> String {
        self.eval("return document.body.innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Event data on the page must be text, never markup that runs.
    async fn assert_nothing_ran(&self) {
        let checks = self
            .eval(
                "return {pwned: typeof window.__pwned, \
                 scripts: document.scripts.length, \
                 images: document.querySelectorAll('img').length}",
            )
            .await;
        assert_eq!(checks["pwned"], "undefined", "event data ran as script");
        assert_eq!(checks["scripts"], 1, "only the console's own script");
        assert_eq!(checks["images"], 0, "event data became an element");
    }

    /// Saves the page as DIR/NAME.png when screenshots are asked for.
    async fn screenshot(&self, name: &str) {
        if let Some(dir) = &self.screenshots {
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    fn wants_screenshots(&self) -> bool {
        self.screenshots.is_some()
    }

    /// Ends the session (chromedriver closes the browser), then chromedriver.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        end_group(&mut self.driver);
    }
}

/// SIGKILLs chromedriver's process group: chromedriver and the browser
/// processes it started, which a killed chromedriver would leave behind.
fn end_group(driver: &mut Child) {
    if let (Ok(None), Ok(pid)) = (driver.try_wait(), i32::try_from(driver.id())) {
        // SAFETY: signalling the process group our own, not yet reaped,
        // child leads (it was started with `process_group(0)`).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = driver.wait();
}

/// Polls `probe` until it gives `Some`, for at most [`PATIENCE`]. WebDriver
/// errors count as "not yet": the console re-renders while it polls, so an
/// element found a moment ago may be gone.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, CmdError>>,
{
    let deadline = Instant::now() + PATIENCE;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what} (last WebDriver error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `check` holds, for at most [`PATIENCE`].
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, || {
        let checked = check();
        async move { Ok(checked.await.then_some(())) }
    })
    .await
}

/// wasmhook with the admin token, two observers (one selects with a
/// condition plugin), and their webhooks on `receiver`.
async fn start(receiver: &TestReceiver) -> (InProcess, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugin_dist().join("high-value-order.wasm"),
        plugins.path().join("high-value-order.wasm"),
    )
    .unwrap();
    std::fs::write(
        plugins.path().join("high-value-order.toml"),
        "[config]\nthreshold = 1000\n",
    )
    .unwrap();
    let config = format!(
        "[server]\nadmin_token = \"{TOKEN}\"\n\
         [webhooks.retry]\ninitial_delay = \"50ms\"\nmax_attempts = 3\n\
         [plugins]\ndir = {:?}\ncache_dir = {:?}\n\
         [[observer]]\nname = \"orders\"\nentity = \"order\"\ncondition = \"status != 'draft'\"\n\
         [[observer.webhook]]\nname = \"ship\"\nurl = \"{}\"\n\
         [[observer]]\nname = \"big_orders\"\nentity = \"order\"\ncondition = \"plugin:high-value-order\"\n\
         [[observer.webhook]]\nname = \"analytics\"\nurl = \"{}\"\n",
        plugins.path().display().to_string(),
        plugins.path().join("cache").display().to_string(),
        receiver.url("/ship"),
        receiver.url("/analytics"),
    );
    (InProcess::start(&config).await, plugins)
}

/// Posts one order; returns its event id.
async fn post_order(wasmhook: &InProcess, entity: Value) -> String {
    let (status, body) = wasmhook
        .post_events(fraiseql_order("created", entity, None).to_string())
        .await;
    assert_eq!(status, 202, "{body}");
    body["events"][0]["event_id"].as_str().unwrap().to_string()
}

/// The admin API as the CLI reads it (bearer token).
async fn admin(wasmhook: &InProcess, path: &str) -> Value {
    reqwest::Client::new()
        .get(wasmhook.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn dlq_events(wasmhook: &InProcess) -> Vec<String> {
    admin(wasmhook, "/admin/dlq")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

fn got_body(receiver: &TestReceiver, path: &str, text: &str) -> Vec<crate::utils::Received> {
    receiver
        .on(path)
        .into_iter()
        .filter(|r| r.status == 200 && String::from_utf8_lossy(&r.body).contains(text))
        .collect()
}

/// Sends a little traffic for a while, so the overview's chart has a line.
async fn some_traffic(wasmhook: &InProcess, seconds: u64) {
    for i in 0..seconds * 2 {
        let batch: Vec<String> = (0..(2 + (i * 7) % 9))
            .map(|j| {
                fraiseql_order(
                    "created",
                    json!({"id": format!("t-{i}-{j}"), "status": "paid", "total": 400 * j}),
                    None,
                )
                .to_string()
            })
            .collect();
        wasmhook.post_events(batch.join("\n")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Everything but the delivery log: login, overview, DLQ (show, retry,
/// retry all, purge), switching a webhook off and on, plugins, escaping,
/// logout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_dlq_observers_and_escaping() {
    let receiver = TestReceiver::start().await;
    let (wasmhook, _plugins) = start(&receiver).await;
    let browser = Browser::start(&format!("http://{}", wasmhook.addr)).await;

    // Unauthenticated: every page leads to the login form; a wrong token
    // is refused there.
    browser.goto("/ui#/dlq").await;
    assert_eq!(browser.path().await, "/ui/login");
    browser.type_into("#token", "not-the-token").await;
    browser.click("button[type=submit]").await;
    browser.wait_text("p.error", "not the admin token").await;
    browser.log_in().await;

    // Overview.
    post_order(
        &wasmhook,
        json!({"id": "o-1", "status": "paid", "total": 1500}),
    )
    .await;
    receiver
        .wait_until("o-1 on both webhooks", PATIENCE, |r| r.len() >= 2)
        .await;
    browser
        .wait_text("#stat-delivered .sub", "2 delivered")
        .await;
    browser.wait_text("#stat-source .value", "connected").await;
    if browser.wants_screenshots() {
        receiver.set_status(503);
        some_traffic(&wasmhook, 3).await;
        receiver.set_status(200);
        some_traffic(&wasmhook, 20).await;
        browser.wait_text("#main", "http_503").await;
        browser.screenshot("overview").await;
        until("the traffic to settle", || async {
            admin(&wasmhook, "/admin/overview").await["outbox"] == 0
        })
        .await;
    }

    // A delivery dies (the receiver answers 400); its event's fields are
    // markup, and stay text on the list and on the entry's page.
    receiver.answer_when(Some(("die-please", 400)));
    let hostile = post_order(
        &wasmhook,
        json!({"id": "o-evil", "status": "paid", "total": 10, "note": format!("die-please {SCRIPT}"), "html": IMAGE}),
    )
    .await;
    browser.click("#nav a[data-page=dlq]").await;
    let row = format!("tr.letter[data-event=\"{hostile}\"]");
    browser.wait_text(&row, "orders").await;
    assert!(
        browser.text().await.contains(&hostile),
        "full event ids are page text"
    );
    let letters = admin(&wasmhook, "/admin/dlq").await;
    let entry = letters
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event_id"] == hostile.as_str())
        .and_then(|l| l["id"].as_str())
        .unwrap()
        .to_string();
    browser.assert_nothing_ran().await;
    browser.screenshot("dlq").await;
    browser.click(&format!("{row} td.id a")).await;
    let event = browser.wait_text("#event", "die-please").await;
    assert!(
        event.contains(SCRIPT) && event.contains(r#"<img src=x onerror=\"window.__pwned=1\">"#),
        "{event}"
    );
    assert!(
        browser.text().await.contains(&entry),
        "full entry ids are page text"
    );
    browser.assert_nothing_ran().await;

    // Retry it from its page once the receiver takes it: the same delivery
    // arrives, and the entry leaves the DLQ.
    receiver.answer_when(None);
    browser.click("#retry").await;
    let arrived = receiver
        .wait_until("the retried delivery", PATIENCE, |r| {
            r.iter()
                .any(|r| r.status == 200 && r.header("x-wasmhook-delivery") == entry)
        })
        .await;
    assert!(arrived.iter().any(|r| r.status == 200 && r.path == "/ship"));
    browser
        .wait_gone("the retried entry to leave the list", &row)
        .await;

    // Retry all, then purge (confirmed) what died after. The DLQ starts
    // empty (the screenshots' traffic leaves entries).
    let (status, _) = crate::utils::post(&wasmhook.url("/admin/dlq/purge"), "").await;
    assert_eq!(status, 401);
    let purged = reqwest::Client::new()
        .post(wasmhook.url("/admin/dlq/purge"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    receiver.answer_when(Some(("die-please", 400)));
    for id in ["o-d1", "o-d2"] {
        post_order(
            &wasmhook,
            json!({"id": id, "status": "paid", "total": 10, "note": "die-please"}),
        )
        .await;
    }
    until("2 entries in the DLQ", || async {
        dlq_events(&wasmhook).await.len() == 2
    })
    .await;
    browser.wait_text(".toolbar", "2 entries").await;
    receiver.answer_when(None);
    browser.click("#retry-all").await;
    browser.wait_text(".notice", "Retried 2 entries").await;
    receiver
        .wait_until("both retried", PATIENCE, |_| {
            got_body(&receiver, "/ship", "o-d1").len() == 1
                && got_body(&receiver, "/ship", "o-d2").len() == 1
        })
        .await;
    receiver.answer_when(Some(("die-please", 400)));
    post_order(
        &wasmhook,
        json!({"id": "o-d3", "status": "paid", "total": 10, "note": "die-please"}),
    )
    .await;
    browser.wait_text(".toolbar", "1 entry").await;
    browser.click("#purge").await;
    browser.click("#purge-confirm").await;
    browser.wait_text(".notice", "Purged 1 entries").await;
    browser.wait_text("#dlq", "The DLQ is empty.").await;
    assert!(dlq_events(&wasmhook).await.is_empty());
    receiver.answer_when(None);

    // Switch the ship webhook off: a new order's delivery waits in the
    // outbox; on again, it arrives.
    browser.click("#nav a[data-page=observers]").await;
    let ship = "tr.webhook[data-webhook=\"orders/0\"]";
    let state = format!("{ship} .badge");
    browser.wait_text(&state, "on").await;
    browser
        .wait_text("[data-observer=orders]", "status != 'draft'")
        .await;
    browser
        .wait_text("[data-observer=big_orders]", "plugin:high-value-order")
        .await;
    browser.click(&format!("{ship} button.switch")).await;
    browser.wait_text(&state, "off").await;
    browser.wait_text(".notice", "switched off").await;
    browser.screenshot("observers").await;
    post_order(
        &wasmhook,
        json!({"id": "o-wait", "status": "paid", "total": 10}),
    )
    .await;
    browser.click("#nav a[data-page=overview]").await;
    browser.wait_text("#stat-outbox .value", "1").await;
    browser.wait_text("#stat-switched .value", "1").await;
    assert!(
        got_body(&receiver, "/ship", "o-wait").is_empty()
            && receiver
                .requests()
                .iter()
                .all(|r| !String::from_utf8_lossy(&r.body).contains("o-wait")),
        "a switched-off webhook gets nothing"
    );
    browser.click("#nav a[data-page=observers]").await;
    browser.click(&format!("{ship} button.switch")).await;
    browser
        .wait_text(".notice", "1 waiting deliveries resumed")
        .await;
    receiver
        .wait_until("the waiting delivery", PATIENCE, |_| {
            got_body(&receiver, "/ship", "o-wait").len() == 1
        })
        .await;
    browser.wait_text(&state, "on").await;
    browser.click("#nav a[data-page=overview]").await;
    browser.wait_text("#stat-outbox .value", "0").await;

    // Plugins: the condition plugin has been called for every order.
    browser.click("#nav a[data-page=plugins]").await;
    let plugin = "tr.plugin[data-plugin=high-value-order]";
    browser.wait_text(plugin, "condition").await;
    let calls = browser
        .wait_text(&format!("{plugin} td:nth-child(4)"), "")
        .await;
    let calls: u64 = calls.replace(',', "").trim().parse().unwrap();
    assert!(
        calls >= 6,
        "each of the 6 orders was checked by the plugin: {calls} calls"
    );
    browser.screenshot("plugins").await;

    // Log out: the console is closed again.
    browser.click("header form button").await;
    browser.wait_for("the login form", "#token").await;
    browser.goto("/ui").await;
    assert_eq!(browser.path().await, "/ui/login");

    browser.close().await;
    wasmhook.stop().await;
}

/// The delivery log's pages (GET /admin/deliveries, GET
/// /admin/deliveries/{id}, POST /admin/deliveries/{id}/resend): search by
/// event id, page back, open a delivery, resend it, and escaping there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_deliveries_search_and_resend() {
    let receiver = TestReceiver::start().await;
    let (wasmhook, _plugins) = start(&receiver).await;
    let browser = Browser::start(&format!("http://{}", wasmhook.addr)).await;
    browser.log_in().await;

    // An order over 1000 goes to both observers' webhooks.
    let event = post_order(
        &wasmhook,
        json!({"id": "o-log", "status": "paid", "total": 1500}),
    )
    .await;
    receiver
        .wait_until("both deliveries", PATIENCE, |r| r.len() == 2)
        .await;
    let first = receiver.on("/ship")[0]
        .header("x-wasmhook-delivery")
        .to_string();

    browser.click("#nav a[data-page=deliveries]").await;
    browser
        .type_into("#delivery-filters input[name=event]", &event)
        .await;
    browser.click("#delivery-filters button[type=submit]").await;
    let rows = eventually("two deliveries of the event", || async {
        let rows = browser.client.find_all(Locator::Css("tr.delivery")).await?;
        Ok((rows.len() == 2).then_some(rows.len()))
    })
    .await;
    assert_eq!(rows, 2);
    browser.wait_text("#deliveries", "delivered").await;
    let text = browser.text().await;
    assert!(
        text.contains(&event) && text.contains(&first),
        "full ids are page text"
    );
    browser.screenshot("deliveries").await;

    // Its detail: the request, the attempt; resend: the receiver gets it
    // again, under the same delivery id.
    browser
        .click(&format!("tr.delivery[data-id=\"{first}\"] td.id a"))
        .await;
    browser.wait_text("#timeline", "200").await;
    browser.wait_text("#main", "/ship").await;
    browser.wait_text("#event", "o-log").await;
    browser.screenshot("delivery").await;
    browser.click("#resend").await;
    browser.wait_text(".notice", "Resent").await;
    let resent = receiver
        .wait_until("the resent delivery", PATIENCE, |_| {
            receiver.on("/ship").len() == 2
        })
        .await;
    let ship: Vec<_> = resent.iter().filter(|r| r.path == "/ship").collect();
    assert_eq!(ship[1].header("x-wasmhook-delivery"), first);
    assert_eq!(ship[1].json()["id"], "o-log");

    // Markup in an event stays text on the delivery's page.
    let hostile = post_order(
        &wasmhook,
        json!({"id": "o-evil", "status": "paid", "total": 10, "note": SCRIPT, "html": IMAGE}),
    )
    .await;
    browser
        .goto(&format!("/ui#/deliveries?event={hostile}"))
        .await;
    browser.click("tr.delivery td.id a").await;
    let shown = browser.wait_text("#event", "o-evil").await;
    assert!(shown.contains(SCRIPT), "{shown}");
    browser.wait_text("#request-body", "o-evil").await;
    browser.assert_nothing_ran().await;

    // 60 more orders: the list shows 50, and "Older" the rest.
    let orders: Vec<String> = (0..60)
        .map(|i| {
            fraiseql_order(
                "created",
                json!({"id": format!("p-{i}"), "status": "paid", "total": 5}),
                None,
            )
            .to_string()
        })
        .collect();
    wasmhook.post_events(orders.join("\n")).await;
    receiver
        .wait_until("60 more", PATIENCE, |r| r.len() >= 64)
        .await;
    browser.goto("/ui#/deliveries?observer=orders").await;
    eventually("a full first page", || async {
        Ok((browser
            .client
            .find_all(Locator::Css("tr.delivery"))
            .await?
            .len()
            == 50)
            .then_some(()))
    })
    .await;
    browser.click("#older").await;
    eventually("the older page", || async {
        let rows = browser
            .client
            .find_all(Locator::Css("tr.delivery"))
            .await?
            .len();
        Ok((rows > 0 && rows < 50).then_some(()))
    })
    .await;

    // A filter that does not parse: the page says which.
    browser.goto("/ui#/deliveries?since=yesterday-ish").await;
    browser.wait_text(".error", "since").await;

    browser.close().await;
    wasmhook.stop().await;
}

/// The login, the cookie and the CSRF rule, with a plain HTTP client; and
/// the console's assets.
#[tokio::test]
async fn console_login_cookie_and_csrf() {
    let receiver = TestReceiver::start().await;
    let config = format!(
        "[server]\nadmin_token = \"{TOKEN}\"\n[[observer]]\nname = \"orders\"\nentity = \"order\"\n\
         [[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/ship?token=abc&team=7")
    );
    let wasmhook = InProcess::start(&config).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
    };

    let page = http.get(wasmhook.url("/ui")).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(location(&page).as_deref(), Some("/ui/login"));
    let form = http.get(wasmhook.url("/ui/login")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("name=\"token\""));

    let wrong = http
        .post(wasmhook.url("/ui/login"))
        .form(&[("token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let right = http
        .post(wasmhook.url("/ui/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 303);
    assert_eq!(location(&right).as_deref(), Some("/ui"));
    let set = right.headers()["set-cookie"].to_str().unwrap().to_string();
    assert_eq!(
        set,
        format!("wasmhook_admin={TOKEN}; HttpOnly; SameSite=Strict; Path=/")
    );
    let cookie = format!("wasmhook_admin={TOKEN}");

    let page = http
        .get(wasmhook.url("/ui"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Log out"));

    // Every asset the page names is served, with its type, for good.
    for (asset, kind) in [
        ("console.js", "text/javascript"),
        ("console.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let start = html
            .find(&format!("/ui/assets/{asset}?v="))
            .unwrap_or_else(|| panic!("{asset} in {html}"));
        let end = start + html[start..].find('"').unwrap();
        let response = http
            .get(wasmhook.url(&html[start..end]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert!(response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
    }
    let missing = http
        .get(wasmhook.url("/ui/assets/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // The cookie opens the admin API: reads as they are, writes only with
    // the console's header.
    let overview = http
        .get(wasmhook.url("/admin/overview"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), 200);
    let overview: Value = overview.json().await.unwrap();
    for key in [
        "events_accepted",
        "delivered",
        "failures",
        "outbox",
        "dlq",
        "source",
    ] {
        assert!(overview.get(key).is_some(), "{key} in {overview}");
    }
    let forged = http
        .post(wasmhook.url("/admin/dlq/purge"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let message: Value = forged.json().await.unwrap();
    assert!(
        message["error"]
            .as_str()
            .unwrap()
            .contains("X-Wasmhook-Console"),
        "{message}"
    );
    let console = http
        .post(wasmhook.url("/admin/dlq/purge"))
        .header("cookie", &cookie)
        .header("x-wasmhook-console", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(console.status(), 200);
    let bearer = http
        .post(wasmhook.url("/admin/dlq/purge"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearer.status(),
        200,
        "the CLI's bearer token needs no header"
    );
    let stale = http
        .get(wasmhook.url("/admin/dlq"))
        .header("cookie", "wasmhook_admin=old-token")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401);

    // The observers as configured, their URLs' credentials hidden.
    let observers: Value = http
        .get(wasmhook.url("/admin/observers"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(observers[0]["name"], "orders");
    assert_eq!(observers[0]["webhooks"][0]["enabled"], true);
    let url = observers[0]["webhooks"][0]["url"].as_str().unwrap();
    assert!(url.ends_with("/ship?token=***&team=7"), "{url}");
    let plugins: Value = http
        .get(wasmhook.url("/admin/plugins/stats"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plugins, json!([]));

    let out = http
        .post(wasmhook.url("/ui/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    wasmhook.stop().await;

    // Without an admin token the console is open, and has no login.
    let open = InProcess::start(&format!(
        "[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/x")
    ))
    .await;
    let page = http.get(open.url("/ui")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(!page.text().await.unwrap().contains("Log out"));
    let login = http.get(open.url("/ui/login")).send().await.unwrap();
    assert_eq!(location(&login).as_deref(), Some("/ui"));
    open.stop().await;
}
