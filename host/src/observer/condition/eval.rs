//! Evaluation: walks a parsed [`Condition`](super::Condition)'s AST over one
//! event's borrowed JSON. Runs for every event and every observer, so it
//! never allocates.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::{CmpOp, Expr, Operand, Path};
use crate::event::Event;

/// What a missing value reads as, so that lookups can return a reference.
static NULL: Value = Value::Null;

/// A borrowed view of a value during evaluation; missing and `null` are the
/// same thing here.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Null,
    Bool(bool),
    Num(&'a Number),
    Str(&'a str),
    Array(&'a [Value]),
    Object(&'a Map<String, Value>),
}

impl Expr {
    pub(super) fn eval(&self, event: &Event) -> bool {
        match self {
            Expr::Or(terms) => terms.iter().any(|term| term.eval(event)),
            Expr::And(terms) => terms.iter().all(|term| term.eval(event)),
            Expr::Not(inner) => !inner.eval(event),
            Expr::Compare(left, op, right) => op.apply(left.value(event), right.value(event)),
            Expr::In {
                operand,
                list,
                negated,
            } => {
                let value = operand.value(event);
                list.iter().any(|item| equals(value, Val::of(Some(item)))) != *negated
            }
            Expr::Truthy(operand) => operand.value(event).truthy(),
        }
    }
}

impl Operand {
    fn value<'a>(&'a self, event: &'a Event) -> Val<'a> {
        match self {
            Operand::Literal(value) => Val::of(Some(value)),
            Operand::New(path) => Val::of(path.walk(&event.data)),
            Operand::Old(path) => Val::of(event.old.as_ref().and_then(|old| path.walk(old))),
            Operand::Changed(path) => Val::Bool(path.changed(event)),
            Operand::Entity => Val::Str(&event.entity),
            Operand::Operation => Val::Str(event.operation.as_str()),
            Operand::EntityId => event.entity_id.as_deref().map_or(Val::Null, Val::Str),
            Operand::Meta(path) => Val::of(path.walk_map(&event.meta)),
            Operand::Group(expr) => Val::Bool(expr.eval(event)),
        }
    }
}

impl CmpOp {
    fn apply(self, left: Val<'_>, right: Val<'_>) -> bool {
        match self {
            CmpOp::Eq => equals(left, right),
            CmpOp::Ne => !equals(left, right),
            CmpOp::Gt => order(left, right) == Some(Ordering::Greater),
            CmpOp::Ge => matches!(
                order(left, right),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            CmpOp::Lt => order(left, right) == Some(Ordering::Less),
            CmpOp::Le => matches!(order(left, right), Some(Ordering::Less | Ordering::Equal)),
        }
    }
}

impl Path {
    /// [`crate::event::lookup`] without the per-call split and parse.
    fn walk<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut current = root;
        for segment in self.0.iter() {
            current = match current {
                Value::Object(map) => map.get(&*segment.key)?,
                Value::Array(items) => items.get(segment.index?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// [`Path::walk`] from a map (the event's metadata) instead of a value.
    fn walk_map<'a>(&self, root: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.0.split_first()?;
        let mut current = root.get(&*first.key)?;
        for segment in rest {
            current = match current {
                Value::Object(map) => map.get(&*segment.key)?,
                Value::Array(items) => items.get(segment.index?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    fn changed(&self, event: &Event) -> bool {
        let Some(old) = &event.old else {
            return false;
        };
        self.walk(old).unwrap_or(&NULL) != self.walk(&event.data).unwrap_or(&NULL)
    }
}

impl<'a> Val<'a> {
    fn of(value: Option<&'a Value>) -> Val<'a> {
        match value {
            None | Some(Value::Null) => Val::Null,
            Some(Value::Bool(b)) => Val::Bool(*b),
            Some(Value::Number(n)) => Val::Num(n),
            Some(Value::String(s)) => Val::Str(s),
            Some(Value::Array(items)) => Val::Array(items),
            Some(Value::Object(map)) => Val::Object(map),
        }
    }

    fn truthy(self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => b,
            Val::Num(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Val::Str(s) => !s.is_empty(),
            Val::Array(items) => !items.is_empty(),
            Val::Object(map) => !map.is_empty(),
        }
    }
}

fn equals(left: Val<'_>, right: Val<'_>) -> bool {
    match (left, right) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(a), Val::Bool(b)) => a == b,
        (Val::Str(a), Val::Str(b)) => a == b,
        (Val::Array(a), Val::Array(b)) => a == b,
        (Val::Object(a), Val::Object(b)) => a == b,
        (Val::Num(_), Val::Num(_)) | (Val::Num(_), Val::Str(_)) | (Val::Str(_), Val::Num(_)) => {
            order(left, right) == Some(Ordering::Equal)
        }
        _ => false,
    }
}

/// `None` when the two values cannot be ordered, which makes every ordering
/// comparison false.
fn order(left: Val<'_>, right: Val<'_>) -> Option<Ordering> {
    match (left, right) {
        (Val::Num(a), Val::Num(b)) => compare_numbers(a, b),
        (Val::Str(a), Val::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Val::Num(a), Val::Str(b)) => compare_numbers(a, &numeric(b)?),
        (Val::Str(a), Val::Num(b)) => compare_numbers(&numeric(a)?, b),
        _ => None,
    }
}

/// Exact for integers (`9007199254740993` is not `9007199254740992`), as
/// `f64` otherwise.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return Some(a.cmp(&b));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// A string holding a finite number (`"1234.50"`), read as one; no allocation.
fn numeric(text: &str) -> Option<Number> {
    if let Ok(int) = text.parse::<i64>() {
        return Some(Number::from(int));
    }
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

#[cfg(test)]
mod tests {
    use super::super::Condition;
    use crate::event::test_support::order_update;
    use serde_json::{json, Value};

    /// Evaluates `condition` against an UPDATE from `old` to `new`; an `old`
    /// of JSON `null` stands for "no previous row" (an INSERT, or an envelope
    /// without `old`).
    fn check(condition: &str, old: Value, new: Value, expected: bool) -> Result<(), String> {
        let parsed = Condition::parse(condition).map_err(|e| format!("{condition}: {e}"))?;
        let no_old = old.is_null();
        let mut event = order_update(old, new);
        if no_old {
            event.old = None;
        }
        let got = parsed.eval(&event);
        if got == expected {
            Ok(())
        } else {
            Err(format!("{condition}: expected {expected}, got {got}"))
        }
    }

    /// `old` for an event without a previous row.
    const NONE: Value = Value::Null;

    /// `(condition, old row, new row, expected)`; one line per case so the
    /// table reads as a specification.
    #[rustfmt::skip]
    fn cases() -> Vec<(&'static str, Value, Value, bool)> {
        vec![
            // The documented examples.
            ("status.changed() && status == 'shipped'", json!({"status": "pending"}), json!({"status": "shipped"}), true),
            ("status.changed() && status == 'shipped'", json!({"status": "shipped"}), json!({"status": "shipped"}), false),
            ("total > 1000", NONE, json!({"total": 1500}), true),
            ("total > 1000", NONE, json!({"total": 1000}), false),
            ("country IN ('DE','FR')", NONE, json!({"country": "FR"}), true),
            ("country IN ('DE','FR')", NONE, json!({"country": "IT"}), false),
            ("(status == 'shipped' && total > 500) || is_priority", NONE, json!({"status": "shipped", "total": 600, "is_priority": false}), true),
            ("(status == 'shipped' && total > 500) || is_priority", NONE, json!({"status": "pending", "total": 600, "is_priority": true}), true),
            ("(status == 'shipped' && total > 500) || is_priority", NONE, json!({"status": "pending", "total": 600, "is_priority": false}), false),
            // .changed()
            ("status.changed()", NONE, json!({"status": "shipped"}), false),
            ("status.changed()", json!({}), json!({"status": "shipped"}), true),
            ("status.changed()", json!({"status": null}), json!({}), false),
            ("customer.address.country.changed()", json!({"customer": {"address": {"country": "DE"}}}), json!({"customer": {"address": {"country": "FR"}}}), true),
            ("status.changed() == false", json!({"status": "a"}), json!({"status": "a"}), true),
            // .old / .new
            ("status.old == 'pending' && status.new == 'shipped'", json!({"status": "pending"}), json!({"status": "shipped"}), true),
            ("status.old == 'pending'", NONE, json!({"status": "pending"}), false),
            ("status.old == null", NONE, json!({"status": "pending"}), true),
            ("total.new > total.old", json!({"total": 5}), json!({"total": 7}), true),
            // Every comparison operator.
            ("total == 1e3", NONE, json!({"total": 1000}), true),
            ("total != 5", NONE, json!({"total": 5.0}), false),
            ("total >= 1000", NONE, json!({"total": 1000}), true),
            ("total < 1000.5", NONE, json!({"total": 1000}), true),
            ("total <= -1", NONE, json!({"total": -1}), true),
            ("total > limit", NONE, json!({"total": 5, "limit": 3}), true),
            ("'b' > 'a'", NONE, json!({}), true),
            ("'10' < '9'", NONE, json!({}), true),
            // IN / NOT IN
            ("country NOT IN ('DE', \"FR\")", NONE, json!({"country": "IT"}), true),
            ("qty in (1, 2, 3)", NONE, json!({"qty": 2}), true),
            ("qty not in (1, 2, 3)", NONE, json!({"qty": 4}), true),
            ("amount IN (1234.5, 99)", NONE, json!({"amount": "1234.50"}), true),
            ("missing IN (null)", NONE, json!({}), true),
            // Precedence, !, parentheses, keyword aliases.
            ("a || b && c", NONE, json!({"a": true, "b": false, "c": false}), true),
            ("(a || b) && c", NONE, json!({"a": true, "b": false, "c": false}), false),
            ("!a", NONE, json!({"a": false}), true),
            ("!!a", NONE, json!({"a": true}), true),
            ("!status == 'shipped'", NONE, json!({"status": "shipped"}), false),
            ("!(a && b)", NONE, json!({"a": true, "b": true}), false),
            ("not a and b", NONE, json!({"a": false, "b": true}), true),
            ("a OR b", NONE, json!({"a": false, "b": false}), false),
            ("(total > 1) == TRUE", NONE, json!({"total": 5}), true),
            ("(total) > 1", NONE, json!({"total": 5}), true),
            // Nested and array paths.
            ("customer.address.country == 'FR'", NONE, json!({"customer": {"address": {"country": "FR"}}}), true),
            ("items.0.sku == 'A-1'", NONE, json!({"items": [{"sku": "A-1"}]}), true),
            ("items.1.sku == null", NONE, json!({"items": [{"sku": "A-1"}]}), true),
            ("items.x == null", NONE, json!({"items": [1]}), true),
            ("matrix.1.0 == 3", NONE, json!({"matrix": [[1, 2], [3, 4]]}), true),
            // Missing fields and null.
            ("missing == null", NONE, json!({}), true),
            ("missing != 'x'", NONE, json!({}), true),
            ("missing > 0", NONE, json!({}), false),
            ("missing < 0", NONE, json!({}), false),
            ("discount == null", NONE, json!({"discount": null}), true),
            ("null == null", NONE, json!({}), true),
            // Numeric strings.
            ("amount > 1000", NONE, json!({"amount": "1234.50"}), true),
            ("amount == 1234.5", NONE, json!({"amount": "1234.50"}), true),
            ("1000 < amount", NONE, json!({"amount": "1234.50"}), true),
            ("amount > 1000", NONE, json!({"amount": "lots"}), false),
            // Exact integers.
            ("id > 9007199254740992", NONE, json!({"id": 9007199254740993_i64}), true),
            ("u > 9223372036854775807", NONE, json!({"u": u64::MAX}), true),
            // Type mismatches.
            ("status > 5", NONE, json!({"status": "shipped"}), false),
            ("status == 5", NONE, json!({"status": "shipped"}), false),
            ("status != 5", NONE, json!({"status": "shipped"}), true),
            ("flag == 'true'", NONE, json!({"flag": true}), false),
            ("flag > false", NONE, json!({"flag": true}), false),
            // Truthiness.
            ("note", NONE, json!({"note": ""}), false),
            ("note", NONE, json!({"note": "x"}), true),
            ("tags", NONE, json!({"tags": []}), false),
            ("tags", NONE, json!({"tags": [1]}), true),
            ("count", NONE, json!({"count": 0}), false),
            ("count", NONE, json!({"count": 0.5}), true),
            ("meta", NONE, json!({"meta": {}}), false),
            ("missing", NONE, json!({}), false),
            ("true && !null", NONE, json!({}), true),
            // Pseudo-fields and escapes.
            ("_entity == 'Order' && _event == 'UPDATE' && _id == 'ord-1'", NONE, json!({}), true),
            ("_event IN ('INSERT', 'DELETE')", NONE, json!({}), false),
            ("name == 'O\\'Brien' && quote == \"say \\\"hi\\\" \\\\o/\"", NONE, json!({"name": "O'Brien", "quote": "say \"hi\" \\o/"}), true),
        ]
    }

    #[test]
    fn evaluates_the_table() {
        let cases = cases();
        assert!(cases.len() >= 40);
        let failures: Vec<String> = cases
            .into_iter()
            .filter_map(|(condition, old, new, expected)| {
                check(condition, old, new, expected).err()
            })
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn metadata_is_reached_with_an_underscore() {
        let mut event = order_update(
            json!({"status": "paid"}),
            json!({"status": "shipped", "_tenant_id": "row"}),
        );
        event.meta.insert("tenant_id".into(), json!("t-1"));
        event
            .meta
            .insert("trace_context".into(), json!({"traceparent": "00-ab"}));
        event
            .meta
            .insert("session".into(), json!({"x-hasura-role": "admin"}));
        event.meta.insert("schema".into(), json!("billing"));
        for (condition, expected) in [
            (
                "_session.x-hasura-role == 'admin' && _schema == 'billing'",
                true,
            ),
            ("_session.x-hasura-user-id", false),
            ("_tenant_id == 't-1'", true),
            ("_tenant_id == 'row'", false),
            ("_trace_context.traceparent == '00-ab'", true),
            ("_user_id == null", true),
            ("_user_id", false),
            ("_tenant_id && status.changed()", true),
        ] {
            let parsed = Condition::parse(condition).unwrap();
            assert_eq!(parsed.eval(&event), expected, "{condition}");
        }
    }
}
