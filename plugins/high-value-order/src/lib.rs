//! Condition: true when the order's `total` is over `config.threshold`.

use serde::Deserialize;
use wasmhook_sdk::{condition, Error, Event, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Totals strictly above this are high-value.
    #[serde(default = "default_threshold")]
    threshold: f64,
}

fn default_threshold() -> f64 {
    1000.0
}

fn high_value(event: &Event) -> Result<bool, Error> {
    Ok(total(event)? > threshold()?)
}

/// The threshold, read once per instance: a warm instance serves many calls
/// and its config cannot change under it (a new `NAME.toml` means new
/// instances).
#[cfg(target_arch = "wasm32")]
fn threshold() -> Result<f64, Error> {
    static THRESHOLD: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    if let Some(threshold) = THRESHOLD.get() {
        return Ok(*threshold);
    }
    let config: Config = wasmhook_sdk::config()?;
    Ok(*THRESHOLD.get_or_init(|| config.threshold))
}

/// Natively (unit tests) each test sets its own config.
#[cfg(not(target_arch = "wasm32"))]
fn threshold() -> Result<f64, Error> {
    Ok(wasmhook_sdk::config::<Config>()?.threshold)
}

condition!(high_value);

/// The row's `total`: a JSON number, or a string holding a decimal number
/// (as some databases serialize `NUMERIC`).
fn total(event: &Event) -> Result<f64, Error> {
    let total = match event.get("total") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
        None => return Err(Error::invalid_input("the event's row has no `total`")),
    };
    match total {
        Some(total) if total.is_finite() => Ok(total),
        _ => Err(Error::invalid_input(format!(
            "`total` is not a number: {}",
            event
                .get("total")
                .map_or_else(String::new, Value::to_string)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use wasmhook_sdk::{json, testing};

    use super::*;

    fn order(total: Value) -> Event {
        Event::builder("Order", "INSERT")
            .data(json!({"id": "ord-1", "total": total}))
            .build()
    }

    #[test]
    fn compares_numbers_and_numeric_strings() {
        testing::set_config(r#"{"threshold": 1000}"#);
        assert_eq!(high_value(&order(json!(1500))), Ok(true));
        assert_eq!(high_value(&order(json!(1000))), Ok(false));
        assert_eq!(high_value(&order(json!(" 1000.01 "))), Ok(true));
        assert_eq!(high_value(&order(json!("12"))), Ok(false));
    }

    #[test]
    fn threshold_defaults_to_1000() {
        testing::set_config("{}");
        assert_eq!(high_value(&order(json!(1001))), Ok(true));
        assert_eq!(high_value(&order(json!(999))), Ok(false));
    }

    #[test]
    fn rejects_non_numeric_totals() {
        testing::set_config("{}");
        for total in [json!("abc"), json!("inf"), json!(null), json!([1])] {
            let error = high_value(&order(total.clone())).unwrap_err();
            assert!(matches!(error, Error::InvalidInput(_)), "{total}: {error}");
        }
        let no_total = Event::builder("Order", "INSERT").data(json!({})).build();
        assert!(matches!(high_value(&no_total), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn bad_config_is_a_config_error() {
        testing::set_config(r#"{"threshold": "high"}"#);
        assert!(matches!(
            high_value(&order(json!(1))),
            Err(Error::Config(_))
        ));
        testing::set_config(r#"{"treshold": 5}"#);
        assert!(matches!(
            high_value(&order(json!(1))),
            Err(Error::Config(_))
        ));
    }
}
