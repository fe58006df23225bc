//! The observer stage's condition language.
//!
//! What comes in: an observer's or webhook's `condition` string, in the
//! FraiseQL spelling (`status.changed() && status == 'shipped' && total > 1000`),
//! once, at start-up. What goes out: a [`Condition`], or a [`ConditionError`]
//! naming the column of the mistake, so that a bad config stops the process
//! before it accepts a single event. After that, every normalised [`Event`]
//! comes in and a `bool` goes out: does the observer (or webhook) fire.
//!
//! Evaluation runs for every event and every observer, so everything that can
//! be done once is done in [`Condition::parse`]: dotted paths are split into
//! segments with array indices pre-parsed, literals become JSON values, and
//! `.old`, `.new` and `.changed()` become distinct AST nodes. [`Condition::eval`]
//! only walks borrowed JSON and never allocates.
//!
//! Grammar, lowest precedence first (keywords are case-insensitive):
//!
//! ```text
//! condition  := or
//! or         := and (("||" | OR) and)*
//! and        := unary (("&&" | AND) unary)*
//! unary      := ("!" | NOT) unary | comparison
//! comparison := primary [ ("==" | "!=" | ">" | ">=" | "<" | "<=") primary
//!                       | [NOT] IN "(" literal ("," literal)* ")" ]
//! primary    := literal | path | path ".changed()" | "(" or ")"
//! path       := name ("." (name | index))* [".old" | ".new"] | _entity | _event | _id
//! literal    := 'text' | "text" | number | TRUE | FALSE | NULL
//! ```
//!
//! Semantics, in short: a path reads the new row (`.old` the previous one); a
//! missing value is `null`; numbers compare numerically, also against strings
//! that hold a number (Postgres `NUMERIC` is often sent as a string); strings
//! order by bytes; `==` between other differing types is false and ordering
//! them is false; a value used as a boolean is truthy unless it is `false`,
//! `null`, missing, `0`, `""`, `[]` or `{}`.
//!
//! Because `.old`, `.new` and `.changed` are suffixes, a row field with one of
//! those names is reached as `flags.changed.new`, and `true`, `and`, ... as a
//! bare field name as `and.new`.
//!
//! The work is split as it happens: `lexer` turns the text into tokens,
//! `parser` builds the AST defined here, `eval` walks it for each event.

mod eval;
mod lexer;
mod parser;

use serde_json::Value;

use crate::event::Event;

/// A parsed condition, ready to be evaluated against any number of events.
///
/// Parsing is separate from evaluation so that syntax errors surface at
/// start-up and the per-event work is only a walk over a small AST.
#[derive(Debug, Clone)]
pub struct Condition {
    expr: Expr,
    source: String,
}

impl Condition {
    /// Parses a condition once, at start-up, so that a typo in the config
    /// fails loudly with a column instead of silently never matching.
    pub fn parse(source: &str) -> Result<Condition, ConditionError> {
        Ok(Condition {
            expr: parser::parse(source)?,
            source: source.to_string(),
        })
    }

    /// Whether the event is selected. Never fails: a missing field or a type
    /// mismatch makes a comparison false rather than dropping the event on
    /// the floor with an error.
    pub fn eval(&self, event: &Event) -> bool {
        self.expr.eval(event)
    }

    /// The condition as written, for logs and error messages that must show
    /// the user their own text rather than our AST.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// A syntax error in a condition, located precisely enough to fix the config
/// without guessing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: expected {expected}, found {found}")]
pub struct ConditionError {
    /// 1-based column of the offending token, counted in characters so that
    /// it matches what an editor shows even for non-ASCII text.
    pub column: usize,
    /// What the parser could have accepted there.
    pub expected: String,
    /// The offending token as written, or `end of input`.
    pub found: String,
}

impl ConditionError {
    fn new(column: usize, expected: impl Into<String>, found: impl Into<String>) -> Self {
        ConditionError {
            column,
            expected: expected.into(),
            found: found.into(),
        }
    }
}

// ---------------------------------------------------------------------------
// The AST: what the parser builds and the evaluator walks
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Expr {
    Or(Box<[Expr]>),
    And(Box<[Expr]>),
    Not(Box<Expr>),
    Compare(Operand, CmpOp, Operand),
    In {
        operand: Operand,
        list: Box<[Value]>,
        negated: bool,
    },
    Truthy(Operand),
}

#[derive(Debug, Clone)]
enum Operand {
    Literal(Value),
    /// A path in the new row (`event.data`).
    New(Path),
    /// A path in the previous row (`event.old`).
    Old(Path),
    /// `path.changed()`.
    Changed(Path),
    /// `_entity`.
    Entity,
    /// `_event`.
    Operation,
    /// `_id`.
    EntityId,
    /// `_tenant_id`, `_trace_context.traceparent`, ...: a path in the
    /// event's metadata (`crate::event::META_FIELDS`).
    Meta(Path),
    /// A parenthesised boolean expression used as a comparison operand.
    Group(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A dotted path, split at parse time.
#[derive(Debug, Clone)]
struct Path(Box<[Segment]>);

/// One path segment; `index` is the segment parsed as an array index, as
/// [`crate::event::lookup`] would parse it, but done once.
#[derive(Debug, Clone)]
struct Segment {
    key: Box<str>,
    index: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_its_source_and_can_be_shared() {
        fn shareable<T: std::fmt::Debug + Clone + Send + Sync>() {}
        shareable::<Condition>();
        let source = "status == 'shipped'";
        assert_eq!(Condition::parse(source).unwrap().source(), source);
    }
}
