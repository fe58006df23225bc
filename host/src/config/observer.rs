//! `[[observer]]`: which events (entity, operations, condition), the retry
//! policy, and its webhooks (`webhook`).

use super::egress::Outgoing;
use super::{compile_condition, file, invalid, retry, webhook, ConfigError, PluginRef};
use crate::delivery::retry::RetryPolicy;
use crate::event::Operation;
use crate::incoming::Receiver;
use crate::observer::Observer;

/// Every `[[observer]]`, in file order; names must be unique. An observer
/// of events a receiver turns in (its entity is the receiver's name) takes
/// any operation, as providers name their own event types.
pub(super) fn resolve_all(
    raw: Vec<file::ObserverSection>,
    receivers: &[Receiver],
    retry: &RetryPolicy,
    env: &dyn Fn(&str) -> Option<String>,
    outgoing: &Outgoing<'_>,
    refs: &mut Vec<PluginRef>,
) -> Result<Vec<Observer>, ConfigError> {
    let receiver_names: Vec<String> = receivers
        .iter()
        .map(|r| r.name.to_ascii_lowercase())
        .collect();
    let mut observers = Vec::with_capacity(raw.len());
    for (index, section) in raw.into_iter().enumerate() {
        let key = format!("observer[{index}]");
        if observers.iter().any(|o: &Observer| o.name == section.name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("observer name {:?} is used twice", section.name),
            ));
        }
        // Events from a receiver carry the provider's event types
        // (`push`), not INSERT/UPDATE/DELETE.
        let any_operation = receiver_names.contains(&section.entity.trim().to_ascii_lowercase());
        observers.push(resolve(
            section,
            &key,
            retry,
            env,
            outgoing,
            refs,
            any_operation,
        )?);
    }
    Ok(observers)
}

fn resolve(
    raw: file::ObserverSection,
    key: &str,
    global_retry: &RetryPolicy,
    env: &dyn Fn(&str) -> Option<String>,
    outgoing: &Outgoing<'_>,
    refs: &mut Vec<PluginRef>,
    any_operation: bool,
) -> Result<Observer, ConfigError> {
    if raw.name.trim().is_empty() {
        return Err(invalid(format!("{key}.name"), "must not be empty"));
    }
    if raw.name == crate::schedule::ONE_OFF {
        return Err(invalid(
            format!("{key}.name"),
            format!(
                "{:?} is reserved for one-off scheduled deliveries",
                raw.name
            ),
        ));
    }
    let key = format!("{key} ({:?})", raw.name);
    if raw.entity.trim().is_empty() {
        return Err(invalid(format!("{key}.entity"), "must not be empty"));
    }
    let events = match raw.event {
        None => Vec::new(),
        Some(file::OneOrMany::One(name)) => {
            vec![operation(&name, &format!("{key}.event"), any_operation)?]
        }
        Some(file::OneOrMany::Many(names)) => names
            .iter()
            .enumerate()
            .map(|(i, name)| operation(name, &format!("{key}.event[{i}]"), any_operation))
            .collect::<Result<_, _>>()?,
    };
    let condition = compile_condition(raw.condition.as_deref(), &format!("{key}.condition"), refs)?;
    let retry = match &raw.retry {
        Some(section) => retry::resolve(section, global_retry, &format!("{key}.retry"))?,
        None => global_retry.clone(),
    };
    if raw.webhook.is_empty() {
        return Err(invalid(
            format!("{key}.webhook"),
            "an observer needs at least one [[observer.webhook]]",
        ));
    }
    let mut webhooks: Vec<_> = raw
        .webhook
        .into_iter()
        .enumerate()
        .map(|(i, w)| webhook::resolve(w, &format!("{key}.webhook[{i}]"), env, outgoing, refs))
        .collect::<Result<_, _>>()?;
    webhook::adopt_observer(&mut webhooks, &raw.name, &retry);
    Ok(Observer {
        name: raw.name,
        entity: raw.entity.trim().to_ascii_lowercase(),
        events,
        condition,
        retry,
        webhooks,
        scheduled: false,
    })
}

/// Operations beyond row changes that envelopes carry: FraiseQL's CUSTOM
/// mutations and Hasura's MANUAL invocations. Any other name is taken for a
/// typo, except on the observers of incoming webhooks, whose event types
/// are the provider's.
const OTHER_OPERATIONS: [&str; 2] = ["CUSTOM", "MANUAL"];

fn operation(name: &str, key: &str, any_operation: bool) -> Result<Operation, ConfigError> {
    match Operation::parse(name) {
        Operation::Other(other)
            if !any_operation && !OTHER_OPERATIONS.contains(&other.as_str()) =>
        {
            Err(invalid(
                key,
                format!("{other:?} is not INSERT, UPDATE, DELETE, CUSTOM or MANUAL"),
            ))
        }
        op => Ok(op),
    }
}
