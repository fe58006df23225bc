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

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::event::Event;

/// Nesting limit for `(` and `!`: far deeper than any hand-written condition,
/// shallow enough that the recursive parser and evaluator cannot overflow the
/// stack on a hostile config.
const MAX_DEPTH: usize = 64;

const EXPECT_VALUE: &str = "a value, path or '('";
const EXPECT_COMPARISON: &str = "'==', '!=', '>', '>=', '<', '<=' or IN";
const EXPECT_END: &str = "end of condition";
const EXPECT_CLOSE: &str = "')'";
const END_OF_INPUT: &str = "end of input";

/// What a missing value reads as, so that lookups can return a reference.
static NULL: Value = Value::Null;

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
        let mut parser = Parser {
            tokens: tokenize(source)?,
            pos: 0,
            depth: 0,
        };
        let expr = parser.or()?;
        let end = parser.next();
        if !matches!(end.kind, Kind::End) {
            return Err(end.error(EXPECT_END));
        }
        Ok(Condition {
            expr,
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
// AST and evaluation
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
    fn eval(&self, event: &Event) -> bool {
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

    /// The operand used directly as a boolean.
    fn into_expr(self) -> Expr {
        match self {
            Operand::Group(expr) => *expr,
            operand => Expr::Truthy(operand),
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
    fn new(segments: Vec<(String, usize)>) -> Path {
        Path(
            segments
                .into_iter()
                .map(|(name, _)| Segment {
                    index: name.parse().ok(),
                    key: name.into_boxed_str(),
                })
                .collect(),
        )
    }

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

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Kind {
    Literal(Value),
    /// Segment names with their columns (for errors about a segment).
    Path(Vec<(String, usize)>),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    /// `!` or the keyword `NOT`; only the keyword starts `NOT IN`.
    Not {
        keyword: bool,
    },
    In,
    Cmp(CmpOp),
    /// A character that starts no token; the parser reports it with what it
    /// expected at that place.
    Unknown,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    column: usize,
    text: String,
}

impl Token {
    fn error(&self, expected: &str) -> ConditionError {
        ConditionError::new(self.column, expected, self.text.as_str())
    }
}

fn tokenize(source: &str) -> Result<Vec<Token>, ConditionError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let next = chars.get(i + 1).copied();
        let kind = match c {
            '(' | ')' | ',' => {
                i += 1;
                match c {
                    '(' => Kind::LParen,
                    ')' => Kind::RParen,
                    _ => Kind::Comma,
                }
            }
            '&' | '|' | '=' => {
                if next != Some(c) {
                    return Err(ConditionError::new(
                        start + 1,
                        format!("'{c}{c}'"),
                        c.to_string(),
                    ));
                }
                i += 2;
                match c {
                    '&' => Kind::And,
                    '|' => Kind::Or,
                    _ => Kind::Cmp(CmpOp::Eq),
                }
            }
            '!' | '<' | '>' => {
                let with_eq = next == Some('=');
                i += if with_eq { 2 } else { 1 };
                match (c, with_eq) {
                    ('!', true) => Kind::Cmp(CmpOp::Ne),
                    ('!', false) => Kind::Not { keyword: false },
                    ('<', true) => Kind::Cmp(CmpOp::Le),
                    ('<', false) => Kind::Cmp(CmpOp::Lt),
                    (_, true) => Kind::Cmp(CmpOp::Ge),
                    (_, false) => Kind::Cmp(CmpOp::Gt),
                }
            }
            '\'' | '"' => {
                let (text, end) = lex_string(&chars, start)?;
                i = end;
                Kind::Literal(Value::String(text))
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let (number, end) = lex_number(&chars, start)?;
                i = end;
                Kind::Literal(Value::Number(number))
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let (kind, end) = lex_word(&chars, start)?;
                i = end;
                kind
            }
            _ => {
                i += 1;
                Kind::Unknown
            }
        };
        tokens.push(Token {
            kind,
            column: start + 1,
            text: chars[start..i].iter().collect(),
        });
    }
    tokens.push(Token {
        kind: Kind::End,
        column: chars.len() + 1,
        text: END_OF_INPUT.to_string(),
    });
    Ok(tokens)
}

/// A quoted string starting at `start`; returns its value and the index after
/// the closing quote.
fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), ConditionError> {
    let quote = chars[start];
    let unterminated = || {
        ConditionError::new(
            start + 1,
            format!("a closing {quote} for the string starting here"),
            END_OF_INPUT,
        )
    };
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => return Err(unterminated()),
            Some('\\') => match chars.get(i + 1) {
                Some(&escaped @ ('\'' | '"' | '\\')) => {
                    text.push(escaped);
                    i += 2;
                }
                Some(other) => {
                    return Err(ConditionError::new(
                        i + 1,
                        r#"an escape \', \" or \\"#,
                        format!("\\{other}"),
                    ))
                }
                None => return Err(unterminated()),
            },
            Some(&c) if c == quote => return Ok((text, i + 1)),
            Some(&c) => {
                text.push(c);
                i += 1;
            }
        }
    }
}

fn skip_digits(chars: &[char], mut i: usize) -> usize {
    while chars.get(i).is_some_and(char::is_ascii_digit) {
        i += 1;
    }
    i
}

/// `-?digits(.digits)?([eE][+-]?digits)?`, as an exact integer when it is one.
fn lex_number(chars: &[char], start: usize) -> Result<(Number, usize), ConditionError> {
    let mut i = start;
    if chars.get(i) == Some(&'-') {
        i += 1;
    }
    i = skip_digits(chars, i);
    let mut integer = true;
    if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
        integer = false;
        i = skip_digits(chars, i + 1);
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        if chars.get(j).is_some_and(char::is_ascii_digit) {
            integer = false;
            i = skip_digits(chars, j);
        }
    }
    let text: String = chars[start..i].iter().collect();
    let exact = if integer {
        (text.parse::<i64>().ok().map(Number::from))
            .or_else(|| text.parse::<u64>().ok().map(Number::from))
    } else {
        None
    };
    match exact.or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64)) {
        Some(number) => Ok((number, i)),
        None => Err(ConditionError::new(start + 1, "a finite number", text)),
    }
}

/// The metadata of Hasura's session variables, whose names hold `-`.
const SESSION: &str = "_session";

fn is_name_char(c: &char) -> bool {
    c.is_ascii_alphanumeric() || *c == '_'
}

/// A keyword or a dotted path. Segments after the first may be numeric
/// (`items.0.sku`), which is why paths are lexed whole rather than as
/// identifier, dot, number: `matrix.0.1` must not contain the number `0.1`.
fn lex_word(chars: &[char], start: usize) -> Result<(Kind, usize), ConditionError> {
    let mut segments = Vec::new();
    let mut i = start;
    loop {
        let segment_start = i;
        // Session variables are named like HTTP headers (`x-hasura-role`):
        // under `_session`, a segment may hold `-` after its first letter.
        let hyphens = segments.first().is_some_and(|(first, _)| first == SESSION);
        while chars
            .get(i)
            .is_some_and(|c| is_name_char(c) || (hyphens && *c == '-' && i > segment_start))
        {
            i += 1;
        }
        segments.push((
            chars[segment_start..i].iter().collect::<String>(),
            segment_start + 1,
        ));
        if chars.get(i) != Some(&'.') {
            break;
        }
        match chars.get(i + 1) {
            Some(c) if is_name_char(c) => i += 1,
            other => {
                let found = match other {
                    None => END_OF_INPUT.to_string(),
                    Some(c) if c.is_whitespace() => "whitespace".to_string(),
                    Some(c) => c.to_string(),
                };
                return Err(ConditionError::new(i + 2, "a field name after '.'", found));
            }
        }
    }
    if let [(word, _)] = segments.as_slice() {
        let keyword = match word.to_ascii_lowercase().as_str() {
            "and" => Some(Kind::And),
            "or" => Some(Kind::Or),
            "not" => Some(Kind::Not { keyword: true }),
            "in" => Some(Kind::In),
            "true" => Some(Kind::Literal(Value::Bool(true))),
            "false" => Some(Kind::Literal(Value::Bool(false))),
            "null" => Some(Kind::Literal(Value::Null)),
            _ => None,
        };
        if let Some(keyword) = keyword {
            return Ok((keyword, i));
        }
    }
    Ok((Kind::Path(segments), i))
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

struct Parser {
    /// Always ends with a `Kind::End` token, which `next` never moves past.
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.pos].clone();
        if !matches!(token.kind, Kind::End) {
            self.pos += 1;
        }
        token
    }

    fn nest(&mut self, at: &Token) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(at.error(&format!("at most {MAX_DEPTH} nested '(' or '!'")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ConditionError> {
        let first = self.and()?;
        if !matches!(self.peek().kind, Kind::Or) {
            return Ok(first);
        }
        let mut terms = vec![first];
        while matches!(self.peek().kind, Kind::Or) {
            self.next();
            terms.push(self.and()?);
        }
        Ok(Expr::Or(terms.into_boxed_slice()))
    }

    fn and(&mut self) -> Result<Expr, ConditionError> {
        let first = self.unary()?;
        if !matches!(self.peek().kind, Kind::And) {
            return Ok(first);
        }
        let mut terms = vec![first];
        while matches!(self.peek().kind, Kind::And) {
            self.next();
            terms.push(self.unary()?);
        }
        Ok(Expr::And(terms.into_boxed_slice()))
    }

    fn unary(&mut self) -> Result<Expr, ConditionError> {
        if !matches!(self.peek().kind, Kind::Not { .. }) {
            return self.comparison();
        }
        let bang = self.next();
        self.nest(&bang)?;
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(Expr::Not(Box::new(inner)))
    }

    fn comparison(&mut self) -> Result<Expr, ConditionError> {
        let left = self.primary()?;
        let token = self.peek().clone();
        match token.kind {
            Kind::Cmp(op) => {
                self.next();
                Ok(Expr::Compare(left, op, self.primary()?))
            }
            Kind::In => {
                self.next();
                self.in_list(left, false)
            }
            Kind::Not { keyword: true } => {
                self.next();
                let token = self.next();
                if !matches!(token.kind, Kind::In) {
                    return Err(token.error("IN after NOT"));
                }
                self.in_list(left, true)
            }
            Kind::And | Kind::Or | Kind::RParen | Kind::End => Ok(left.into_expr()),
            _ => Err(token.error(EXPECT_COMPARISON)),
        }
    }

    fn in_list(&mut self, operand: Operand, negated: bool) -> Result<Expr, ConditionError> {
        let open = self.next();
        if !matches!(open.kind, Kind::LParen) {
            return Err(open.error("'(' after IN"));
        }
        let mut list = Vec::new();
        loop {
            let item = self.next();
            match item.kind {
                Kind::Literal(value) => list.push(value),
                _ => return Err(item.error("a literal (string, number, true, false or null)")),
            }
            let separator = self.next();
            match separator.kind {
                Kind::Comma => {}
                Kind::RParen => break,
                _ => return Err(separator.error("',' or ')'")),
            }
        }
        Ok(Expr::In {
            operand,
            list: list.into_boxed_slice(),
            negated,
        })
    }

    fn primary(&mut self) -> Result<Operand, ConditionError> {
        let token = self.next();
        match token.kind {
            Kind::Literal(value) => Ok(Operand::Literal(value)),
            Kind::Path(segments) => self.path(segments),
            Kind::LParen => {
                self.nest(&token)?;
                let inner = self.or()?;
                self.depth -= 1;
                let close = self.next();
                if !matches!(close.kind, Kind::RParen) {
                    return Err(close.error(EXPECT_CLOSE));
                }
                // `(total) > 5` compares the value, not its truthiness.
                Ok(match inner {
                    Expr::Truthy(operand) => operand,
                    expr => Operand::Group(Box::new(expr)),
                })
            }
            _ => Err(token.error(EXPECT_VALUE)),
        }
    }

    /// Resolves the suffixes (`.changed()`, `.old`, `.new`) and pseudo-fields.
    fn path(&mut self, mut segments: Vec<(String, usize)>) -> Result<Operand, ConditionError> {
        let Some((last, last_column)) = segments.last().cloned() else {
            return Err(self.peek().error(EXPECT_VALUE));
        };
        if segments.len() > 1 && last == "changed" {
            let open = self.next();
            if !matches!(open.kind, Kind::LParen) {
                return Err(open.error("'()' after '.changed'"));
            }
            let close = self.next();
            if !matches!(close.kind, Kind::RParen) {
                return Err(close.error(EXPECT_CLOSE));
            }
            segments.pop();
            if let [_, .., (suffix, column)] = segments.as_slice() {
                if suffix == "old" || suffix == "new" {
                    return Err(ConditionError::new(
                        *column,
                        "a path without '.old' or '.new' before '.changed()'",
                        suffix.as_str(),
                    ));
                }
            }
            return Ok(Operand::Changed(Path::new(segments)));
        }
        if matches!(self.peek().kind, Kind::LParen) {
            return Err(ConditionError::new(
                last_column,
                "'.changed()' (the only function) after a path",
                last,
            ));
        }
        if let Some(name) = segments[0].0.strip_prefix('_') {
            if crate::event::META_FIELDS.contains(&name) {
                segments[0].0 = name.to_string();
                return Ok(Operand::Meta(Path::new(segments)));
            }
        }
        if segments.len() > 1 && (last == "old" || last == "new") {
            segments.pop();
            let path = Path::new(segments);
            return Ok(if last == "old" {
                Operand::Old(path)
            } else {
                Operand::New(path)
            });
        }
        if segments.len() == 1 {
            match last.as_str() {
                "_entity" => return Ok(Operand::Entity),
                "_event" => return Ok(Operand::Operation),
                "_id" => return Ok(Operand::EntityId),
                _ => {}
            }
        }
        Ok(Operand::New(Path::new(segments)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::test_support::order_update;
    use serde_json::json;

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
        for (condition, expected) in [
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

    fn check_err(source: &str, column: usize, expected: &str) -> Result<(), String> {
        match Condition::parse(source) {
            Ok(_) => Err(format!("{source:?}: parsed, expected an error")),
            Err(e) if e.column == column && e.expected.contains(expected) => Ok(()),
            Err(e) => Err(format!(
                "{source:?}: wanted column {column} expecting {expected:?}, got {e}"
            )),
        }
    }

    #[test]
    fn rejects_syntax_errors_with_their_column() {
        let cases = [
            ("", 1, EXPECT_VALUE),
            ("   ", 4, EXPECT_VALUE),
            ("a &&", 5, EXPECT_VALUE),
            ("total > $5", 9, EXPECT_VALUE),
            ("'é' == é", 8, EXPECT_VALUE),
            ("status == 'shipped", 11, "closing '"),
            ("x == 'a\\n'", 8, "an escape"),
            ("(status == 'x'", 15, "')'"),
            ("status == 'x')", 14, EXPECT_END),
            ("a == b == c", 8, EXPECT_END),
            ("status.changed", 15, "'()' after '.changed'"),
            ("status.changed(", 16, "')'"),
            ("status.changed && x", 16, "'()' after '.changed'"),
            ("status.old.changed()", 8, "without '.old'"),
            ("status.upper() == 'X'", 8, "'.changed()'"),
            ("status # 'x'", 8, EXPECT_COMPARISON),
            ("status 'shipped'", 8, EXPECT_COMPARISON),
            ("status = 'x'", 8, "'=='"),
            ("a & b", 3, "'&&'"),
            ("a | b", 3, "'||'"),
            ("status.", 8, "a field name after '.'"),
            ("country IN 'DE'", 12, "'(' after IN"),
            ("country IN ('DE' 'FR')", 18, "',' or ')'"),
            ("country IN ()", 13, "a literal"),
            ("country IN (status)", 13, "a literal"),
            ("country NOT LIKE 'x'", 13, "IN after NOT"),
            ("1e999 > x", 1, "a finite number"),
        ];
        let failures: Vec<String> = cases
            .into_iter()
            .filter_map(|(source, column, expected)| check_err(source, column, expected).err())
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn error_message_names_column_expectation_and_token() {
        let err = Condition::parse("(status == 'x'").unwrap_err();
        assert_eq!(
            err.to_string(),
            "column 15: expected ')', found end of input"
        );
        let err = Condition::parse("status 'shipped'").unwrap_err();
        assert_eq!(err.found, "'shipped'");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}a{}", "(".repeat(1000), ")".repeat(1000));
        let err = Condition::parse(&deep).unwrap_err();
        assert_eq!(err.column, MAX_DEPTH + 1);
        assert!(err.expected.contains("nested"), "{err}");
        assert!(Condition::parse(&"!".repeat(1000)).is_err());
        let ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(Condition::parse(&ok).is_ok());
    }

    #[test]
    fn keeps_its_source_and_can_be_shared() {
        fn shareable<T: std::fmt::Debug + Clone + Send + Sync>() {}
        shareable::<Condition>();
        let source = "status == 'shipped'";
        assert_eq!(Condition::parse(source).unwrap().source(), source);
    }
}
