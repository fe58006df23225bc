//! The parser: tokens in, the AST out (recursive descent, one method per
//! grammar rule in the module docs), with the nesting bounded so a hostile
//! config cannot overflow the stack.

use super::lexer::{tokenize, Kind, Token};
use super::{ConditionError, Expr, Operand, Path, Segment};

/// Nesting limit for `(` and `!`: far deeper than any hand-written condition,
/// shallow enough that the recursive parser and evaluator cannot overflow the
/// stack on a hostile config.
const MAX_DEPTH: usize = 64;

const EXPECT_VALUE: &str = "a value, path or '('";
const EXPECT_COMPARISON: &str = "'==', '!=', '>', '>=', '<', '<=' or IN";
const EXPECT_END: &str = "end of condition";
const EXPECT_CLOSE: &str = "')'";

/// Parses a whole condition: it must end where the text does.
pub(super) fn parse(source: &str) -> Result<Expr, ConditionError> {
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
    Ok(expr)
}

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

impl Operand {
    /// The operand used directly as a boolean.
    fn into_expr(self) -> Expr {
        match self {
            Operand::Group(expr) => *expr,
            operand => Expr::Truthy(operand),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::condition::Condition;

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
}
