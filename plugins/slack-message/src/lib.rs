//! Transform: an order event becomes a Slack message (`text` + `blocks`).

use serde::Deserialize;
use serde_json::{json, Map, Value};
use wasmhook_sdk::{transform, Error, Event, Operation, Payload};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Overrides the incoming webhook's default channel (`#orders`).
    #[serde(default)]
    channel: Option<String>,
}

fn slack_message(event: &Event, _body: Option<&[u8]>) -> Result<Payload, Error> {
    let config: Config = wasmhook_sdk::config()?;
    Payload::json(&message(event, &config)?)
}

transform!(slack_message);

fn message(event: &Event, config: &Config) -> Result<Value, Error> {
    let Value::Object(row) = event.new() else {
        return Err(Error::invalid_input("the event's row is not a JSON object"));
    };
    let id = event
        .entity_id()
        .map(str::to_string)
        .or_else(|| row.get("id").map(plain))
        .unwrap_or_else(|| "(no id)".to_string());
    let status = row.get("status").map_or_else(|| "-".to_string(), plain);
    let total = total(row);
    let customer = customer(row);
    let headline = match event.operation() {
        Operation::Insert => "New order",
        Operation::Update => "Order updated",
        Operation::Delete => "Order deleted",
        Operation::Other(_) => "Order",
    };

    let text = format!("{headline} {id}: {status}, total {total}, customer {customer}");
    let markdown = format!(
        "*{headline} {}*\n*Status:* {}\n*Total:* {}\n*Customer:* {}",
        escape(&id),
        escape(&status),
        escape(&total),
        escape(&customer),
    );
    let mut message = json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": markdown}},
            {"type": "context", "elements": [{
                "type": "mrkdwn",
                "text": escape(&format!("{} {} at {}", event.entity(), event.operation(), event.timestamp())),
            }]},
        ],
    });
    if let Some(channel) = &config.channel {
        message["channel"] = json!(channel);
    }
    Ok(message)
}

/// A value as text: strings without their quotes, anything else as JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `total`, followed by `currency` when the row has one.
fn total(row: &Map<String, Value>) -> String {
    let Some(total) = row.get("total") else {
        return "-".to_string();
    };
    match row.get("currency").and_then(Value::as_str) {
        Some(currency) => format!("{} {currency}", plain(total)),
        None => plain(total),
    }
}

/// `customer` as a string, or its `name` and `<email>` when it is an object;
/// else `customer_name`/`customer_email`/`email` on the row.
fn customer(row: &Map<String, Value>) -> String {
    let (name, email) = match row.get("customer") {
        Some(Value::String(s)) => return s.clone(),
        Some(Value::Object(c)) => (c.get("name"), c.get("email")),
        _ => (
            row.get("customer_name"),
            row.get("customer_email").or_else(|| row.get("email")),
        ),
    };
    match (name.and_then(Value::as_str), email.and_then(Value::as_str)) {
        (Some(name), Some(email)) => format!("{name} <{email}>"),
        (Some(name), None) => name.to_string(),
        (None, Some(email)) => email.to_string(),
        (None, None) => "-".to_string(),
    }
}

/// Slack's mrkdwn escaping: only `&`, `<` and `>` are special.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use wasmhook_sdk::testing;

    use super::*;

    fn event(row: Value) -> Event {
        Event::builder("Order", "INSERT")
            .entity_id("ord-7")
            .timestamp("2026-03-02T14:00:00Z")
            .data(row)
            .build()
    }

    #[test]
    fn names_order_status_total_and_customer() {
        testing::set_config(r##"{"channel": "#sales"}"##);
        let row = json!({"id": "ord-7", "status": "paid", "total": 1250.5, "currency": "EUR",
                         "customer": {"name": "Ada", "email": "ada@example.com"}});
        let payload = slack_message(&event(row), None).unwrap();
        assert_eq!(payload.content_type.as_deref(), Some("application/json"));
        let message: Value = serde_json::from_slice(&payload.body).unwrap();
        assert_eq!(
            message["text"],
            "New order ord-7: paid, total 1250.5 EUR, customer Ada <ada@example.com>"
        );
        assert_eq!(message["channel"], "#sales");
        assert_eq!(message["blocks"][0]["type"], "section");
        assert_eq!(
            message["blocks"][0]["text"]["text"],
            "*New order ord-7*\n*Status:* paid\n*Total:* 1250.5 EUR\n*Customer:* Ada &lt;ada@example.com&gt;"
        );
    }

    #[test]
    fn missing_fields_are_dashes() {
        let message = message(&event(json!({})), &Config::default()).unwrap();
        assert_eq!(message["text"], "New order ord-7: -, total -, customer -");
        assert!(message.get("channel").is_none());
    }

    #[test]
    fn a_row_that_is_not_an_object_is_invalid_input() {
        let error = message(&event(json!([1])), &Config::default()).unwrap_err();
        assert!(matches!(error, Error::InvalidInput(_)));
    }
}
