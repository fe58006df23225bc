//! TEST FIXTURE, not an example: a transform that misbehaves in the way
//! `config.mode` names, so the host's sandbox limits can be tested.
//!
//! Every mode but `start` misbehaves when `transform` is called; `start`
//! panics while the component is being instantiated (see [`_initialize`]).

use std::hint::black_box;

use serde::Deserialize;
use wasmhook_sdk::{transform, Error, Event, Payload};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: Mode,
    /// For `slow` and `sleep`: how long to wait, in milliseconds.
    #[serde(default = "default_ms")]
    ms: u64,
}

fn default_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Ok,
    Loop,
    Memory,
    Recursion,
    Trap,
    Huge,
    Slow,
    Escape,
    Start,
    Remember,
    Sleep,
    /// Not misbehaviour: answers with the event's metadata, so the host's
    /// `event-context` can be tested.
    Metadata,
}

/// The size of the `huge` body.
const HUGE_BYTES: usize = 64 << 20;

fn misbehave(event: &Event, body: Option<&[u8]>) -> Result<Payload, Error> {
    let config: Config = wasmhook_sdk::config()?;
    match config.mode {
        Mode::Ok => echo(event, body),
        Mode::Loop => spin_forever(),
        Mode::Memory => hog_memory(),
        Mode::Recursion => Ok(Payload::new(recurse(0).to_string())),
        Mode::Trap => trap(),
        Mode::Huge => Ok(Payload::new(vec![b'x'; HUGE_BYTES]).with_content_type("text/plain")),
        Mode::Escape => escape(),
        Mode::Remember => remember(),
        Mode::Metadata => Payload::json(&wasmhook_sdk::metadata()),
        Mode::Sleep => {
            // A WASI sleep (`monotonic-clock.subscribe-duration`, then
            // `pollable.block`): the guest waits in a host call, where no
            // fuel is spent and no epoch check runs.
            std::thread::sleep(std::time::Duration::from_millis(config.ms));
            echo(event, body)
        }
        // Unreachable in a component: instantiation already trapped.
        Mode::Start => echo(event, body),
        Mode::Slow => {
            let start = wasmhook_sdk::now_ms();
            while wasmhook_sdk::now_ms().saturating_sub(start) < config.ms {
                black_box(());
            }
            echo(event, body)
        }
    }
}

transform!(misbehave);

/// Runs while the component is instantiated, before any export is called:
/// wit-component (inside `wasm-component-ld` for `wasm32-wasip2`, and
/// `xtask componentize` for the fallback) sees a core export named
/// `_initialize` and adds a start function calling it, as the last step of
/// instantiation. A trap here fails the instantiation itself.
///
/// It panics when the config says `mode = "start"`; the host's `config`
/// import already works at this point. Any other mode, or a config that does
/// not parse (the call reports that), does nothing.
///
/// Static constructors (`.init_array`) would not do: neither target links
/// an `_initialize` of its own, and wit-bindgen runs the constructors at the
/// first export call, not at instantiation. So this is a plain export,
/// and it leaves `__wasm_call_ctors` to wit-bindgen.
#[cfg(target_arch = "wasm32")]
#[no_mangle]
extern "C" fn _initialize() {
    if let Ok(Config {
        mode: Mode::Start, ..
    }) = wasmhook_sdk::config()
    {
        panic!("misbehave: mode = \"start\" panics while the component is instantiated");
    }
}

/// Tries every way out of the sandbox and reports what happened: a file,
/// the environment, arguments, a socket. The host grants none of them.
fn escape() -> Result<Payload, Error> {
    let file = match std::fs::read("/etc/passwd") {
        Ok(bytes) => format!("read {} bytes", bytes.len()),
        Err(e) => format!("denied: {e}"),
    };
    let dir = match std::fs::read_dir("/") {
        Ok(entries) => format!("listed {} entries", entries.count()),
        Err(e) => format!("denied: {e}"),
    };
    let network = match std::net::TcpStream::connect("127.0.0.1:22") {
        Ok(_) => "connected".to_string(),
        Err(e) => format!("denied: {e}"),
    };
    Payload::json(&wasmhook_sdk::json!({
        "file": file,
        "dir": dir,
        "env": std::env::vars().count(),
        "args": std::env::args().count(),
        "network": network,
    }))
}

/// What earlier calls on this instance left behind: a counter in static
/// memory and a list on the heap, both grown by each call. A warm instance
/// reports its earlier calls; a fresh one (`isolation = "fresh"`) must
/// always start from the component's initial memory and report none.
fn remember() -> Result<Payload, Error> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    static CALLS: AtomicU64 = AtomicU64::new(0);
    static KEPT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let calls_before = CALLS.fetch_add(1, Ordering::Relaxed);
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    let kept_before = kept.len();
    kept.push(format!("call {calls_before}"));
    Payload::json(&wasmhook_sdk::json!({
        "calls_before": calls_before,
        "kept_before": kept_before,
    }))
}

/// The rendered body if there is one, else the event's row as JSON.
fn echo(event: &Event, body: Option<&[u8]>) -> Result<Payload, Error> {
    match body {
        Some(body) => Ok(Payload::new(body)),
        None => Payload::json(event.new()),
    }
}

fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates (and touches) 1 MiB at a time, keeping every block alive.
fn hog_memory() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[0] = 1;
        blocks.push(black_box(block));
        black_box(&blocks);
    }
}

/// Unbounded, non-tail recursion. `black_box` on the argument and result
/// keeps the optimizer from proving anything about the depth or turning
/// the call into a loop; the frame array makes each level use stack memory.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 64];
    frame[(depth % 64) as usize] = depth as u8;
    let below = black_box(recurse(black_box(depth + 1)));
    below.wrapping_add(u64::from(black_box(&frame)[0]))
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    panic!("misbehave: trap")
}

#[cfg(test)]
mod tests {
    use wasmhook_sdk::{json, serde_json, testing, Value};

    use super::*;

    #[test]
    fn ok_echoes_the_body_or_the_row() {
        testing::set_config(r#"{"mode": "ok"}"#);
        let event = Event::builder("Order", "INSERT")
            .data(json!({"id": 1}))
            .build();
        assert_eq!(misbehave(&event, Some(b"raw")).unwrap().body, b"raw");
        assert_eq!(misbehave(&event, None).unwrap().body, br#"{"id":1}"#);
    }

    #[test]
    fn slow_waits_and_huge_is_64_mib() {
        let event = Event::builder("Order", "INSERT").build();
        testing::set_config(r#"{"mode": "slow", "ms": 20}"#);
        let start = wasmhook_sdk::now_ms();
        misbehave(&event, None).unwrap();
        assert!(wasmhook_sdk::now_ms() - start >= 20);
        testing::set_config(r#"{"mode": "huge"}"#);
        assert_eq!(misbehave(&event, None).unwrap().body.len(), 64 << 20);
    }

    #[test]
    fn remember_counts_the_calls_before_it() {
        testing::set_config(r#"{"mode": "remember"}"#);
        let event = Event::builder("Order", "INSERT").build();
        let read =
            || -> Value { serde_json::from_slice(&misbehave(&event, None).unwrap().body).unwrap() };
        let first = read();
        let second = read();
        assert_eq!(
            second["calls_before"],
            first["calls_before"].as_u64().unwrap() + 1
        );
        assert_eq!(
            second["kept_before"],
            first["kept_before"].as_u64().unwrap() + 1
        );
    }

    #[test]
    fn unknown_mode_is_a_config_error() {
        testing::set_config(r#"{"mode": "explode"}"#);
        let event = Event::builder("Order", "INSERT").build();
        assert!(matches!(misbehave(&event, None), Err(Error::Config(_))));
    }
}
