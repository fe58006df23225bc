//! The tokenizer: condition text in, tokens with their columns out (columns
//! count characters, as an editor does).

use serde_json::{Number, Value};

use super::{CmpOp, ConditionError};

/// What the parser says was found at the end of the text.
pub(super) const END_OF_INPUT: &str = "end of input";

#[derive(Debug, Clone)]
pub(super) enum Kind {
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
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) column: usize,
    pub(super) text: String,
}

impl Token {
    pub(super) fn error(&self, expected: &str) -> ConditionError {
        ConditionError::new(self.column, expected, self.text.as_str())
    }
}

pub(super) fn tokenize(source: &str) -> Result<Vec<Token>, ConditionError> {
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
