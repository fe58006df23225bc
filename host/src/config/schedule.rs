//! `[[schedule]]`: cron-driven webhooks.
//!
//! Each schedule becomes an observer named `schedule:NAME` that only the
//! scheduler feeds, with one webhook resolved by the same
//! [`super::webhook::resolve`] as an `[[observer.webhook]]`, so every webhook
//! key, template and check applies unchanged, and delivery needs no special
//! case: signing, retries and the DLQ find the observer by name.

use std::time::Duration;

use super::egress::Outgoing;
use super::{file, invalid, retry, webhook, ConfigError, PluginRef};
use crate::delivery::retry::RetryPolicy;
use crate::event::Operation;
use crate::observer::Observer;
use crate::schedule::{self, CronSchedule};

/// Resolves the schedules and appends their observers to `observers` (after
/// the configured ones, whose names they must not take).
pub(super) fn resolve(
    raw: Vec<file::ScheduleSection>,
    global_retry: &RetryPolicy,
    env: &dyn Fn(&str) -> Option<String>,
    outgoing: &Outgoing<'_>,
    refs: &mut Vec<PluginRef>,
    observers: &mut Vec<Observer>,
) -> Result<Vec<CronSchedule>, ConfigError> {
    let mut schedules: Vec<CronSchedule> = Vec::with_capacity(raw.len());
    for (index, section) in raw.into_iter().enumerate() {
        let name = section.name.trim().to_string();
        // The name ends up in an admin URL path, an event id and a sled key.
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                format!("schedule[{index}].name"),
                format!(
                    "{:?} is not a name of letters, digits, '-', '_' and '.'",
                    section.name
                ),
            ));
        }
        let key = format!("schedule[{index}] ({name:?})");
        let observer = schedule::observer_name(&name);
        if schedules.iter().any(|s| s.name == name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("schedule name {name:?} is used twice"),
            ));
        }
        if observers.iter().any(|o| o.name == observer) {
            return Err(invalid(
                format!("{key}.name"),
                format!("an [[observer]] is already named {observer:?}"),
            ));
        }
        let tolerance = section.tolerance.unwrap_or(schedule::DEFAULT_TOLERANCE);
        if tolerance < Duration::from_secs(1) {
            return Err(invalid(
                format!("{key}.tolerance"),
                "must be at least 1s: a run is always stored a little after its time",
            ));
        }
        let timezone = match section.timezone.as_deref() {
            None => chrono_tz::UTC,
            Some(text) => text.trim().parse::<chrono_tz::Tz>().map_err(|_| {
                invalid(
                    format!("{key}.timezone"),
                    format!("{text:?} is not an IANA time zone like \"Europe/Berlin\" or \"UTC\""),
                )
            })?,
        };
        let cron = CronSchedule::new(&name, &section.cron, tolerance, timezone)
            .map_err(|e| invalid(format!("{key}.cron"), e.to_string()))?;
        let retry = match &section.retry {
            Some(retry) => retry::resolve(retry, global_retry, &format!("{key}.retry"))?,
            None => global_retry.clone(),
        };
        let webhook: file::WebhookSection =
            serde_path_to_error::deserialize(toml::Value::Table(section.webhook)).map_err(|e| {
                let path = e.path().to_string();
                let at = if path == "." {
                    key.clone()
                } else {
                    format!("{key}.{path}")
                };
                let message = e.into_inner().to_string();
                invalid(
                    at,
                    super::suggest::unknown_field(message.lines().next().unwrap_or_default()),
                )
            })?;
        let mut webhook = webhook::resolve(webhook, &key, env, outgoing, refs)?;
        // Its position, as for an unnamed observer webhook: the admin API
        // switches it as `schedule:NAME/0`.
        webhook.name = "0".into();
        let mut webhooks = vec![webhook];
        webhook::adopt_observer(&mut webhooks, &observer, &retry);
        observers.push(Observer {
            name: observer,
            entity: name.to_ascii_lowercase(),
            events: vec![Operation::Other(schedule::OPERATION.into())],
            condition: None,
            retry,
            webhooks,
            scheduled: true,
        });
        schedules.push(cron);
    }
    Ok(schedules)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("wasmhook.toml"), &|name| {
            (name == "TOKEN").then(|| "t0k".to_string())
        })
    }

    const DAILY: &str = r#"
[webhooks.retry]
max_attempts = 4

[[schedule]]
name = "daily-report"
cron = "0 9 * * *"
url = "http://127.0.0.1:3002/webhooks/scheduled/daily-report"
body = { report = "daily", at = "{{ _timestamp }}" }
headers = { Authorization = "Bearer ${TOKEN}" }
retry = { initial_delay = "2s" }
"#;

    #[test]
    fn a_schedule_becomes_an_observer_only_its_scheduler_feeds() {
        let config = load(DAILY).unwrap();
        let [schedule] = &config.schedules[..] else {
            panic!("one schedule: {:?}", config.schedules);
        };
        assert_eq!(schedule.name, "daily-report");
        assert_eq!(schedule.expression, "0 9 * * *");
        assert_eq!(schedule.tolerance, crate::schedule::DEFAULT_TOLERANCE);
        let observer = config.observer("schedule:daily-report").unwrap();
        assert!(observer.scheduled);
        // The schedule's retry overrides [webhooks.retry] key by key.
        assert_eq!(observer.retry.max_attempts, 4);
        assert_eq!(observer.retry.initial_delay.as_secs(), 2);
        let webhook = &observer.webhooks[0];
        assert_eq!(webhook.name, "0");
        assert_eq!(webhook.method, "POST");
        assert_eq!(webhook.request.headers[0].0, "Authorization");
        assert!(
            webhook.request.max_payload_bytes.is_some(),
            "the global default applies"
        );
    }

    #[test]
    fn six_fields_and_a_tolerance_are_read() {
        let config = load(
            "[[schedule]]\nname = \"tick\"\ncron = \"*/5 * * * * *\"\ntolerance = \"10m\"\nurl = \"http://x/t\"\n",
        )
        .unwrap();
        assert_eq!(config.schedules[0].tolerance.as_secs(), 600);
        assert!(config.observer("schedule:tick").is_some());
    }

    #[test]
    fn errors_name_the_schedule_and_the_key() {
        let ok =
            "[[schedule]]\nname = \"daily-report\"\ncron = \"0 9 * * *\"\nurl = \"http://x/r\"\n";
        for (text, expected) in [
            (
                ok.replace("0 9 * * *", "0 9 * *"),
                "wasmhook.toml: schedule[0] (\"daily-report\").cron: \"0 9 * *\" is not a cron expression",
            ),
            (
                ok.replace("0 9 * * *", "0 0 30 2 *"),
                "schedule[0] (\"daily-report\").cron: \"0 0 30 2 *\" never matches",
            ),
            (
                ok.replace("url = \"http://x/r\"", "url = \"ftp://x/r\""),
                "schedule[0] (\"daily-report\").url: \"ftp://x/r\" is not an http or https URL",
            ),
            (
                ok.replace("url = \"http://x/r\"", ""),
                "schedule[0] (\"daily-report\").url: a webhook needs url or url_env",
            ),
            (
                format!("{ok}body = {{ at = \"{{{{ _nope }}}}\" }}\n"),
                "schedule[0] (\"daily-report\").body.at:",
            ),
            (
                format!("{ok}crom = \"0 9 * * *\"\n"),
                "schedule[0] (\"daily-report\").crom: unknown field `crom`",
            ),
            (
                format!("{ok}method = \"TRACE\"\n"),
                "schedule[0] (\"daily-report\").method: \"TRACE\" is not POST",
            ),
            (
                format!("{ok}tolerance = \"10ms\"\n"),
                "schedule[0] (\"daily-report\").tolerance: must be at least 1s",
            ),
            (
                format!("{ok}retry = {{ max_attempts = 0 }}\n"),
                "schedule[0] (\"daily-report\").retry.max_attempts: must be at least 1",
            ),
            (
                ok.replace("daily-report", "daily report"),
                "schedule[0].name: \"daily report\" is not a name",
            ),
            (
                format!("{ok}{ok}"),
                "schedule[1] (\"daily-report\").name: schedule name \"daily-report\" is used twice",
            ),
            (
                format!(
                    "[[observer]]\nname = \"schedule:daily-report\"\nentity = \"x\"\n\
                     [[observer.webhook]]\nurl = \"http://x/o\"\n{ok}"
                ),
                "schedule[0] (\"daily-report\").name: an [[observer]] is already named \"schedule:daily-report\"",
            ),
            (
                ok.replace("cron = \"0 9 * * *\"\n", ""),
                "wasmhook.toml: schedule[0]: missing field `cron`",
            ),
        ] {
            let e = load(&text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text}\n got: {e}\nwant: {expected}");
        }
    }
}
