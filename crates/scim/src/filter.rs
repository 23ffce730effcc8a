//! SCIM filters (RFC 7644 §3.4.2.2): the syntax tree and its parser.
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! logExp    = FILTER SP ("and" / "or") SP FILTER      ; "and" binds tighter than "or"
//! compValue = false / null / true / number / string
//! ```
//!
//! Keywords and operators are case-insensitive, and so (leniently) are `true`, `false` and
//! `null`. Input longer than [`MAX_FILTER_LEN`] bytes or nested deeper than [`MAX_DEPTH`]
//! levels is refused, so that hostile input cannot exhaust the stack. Every refusal is a
//! 400 `invalidFilter` whose detail names the character where the parser stopped.

use std::fmt;

use serde_json::Value;

use crate::error::ScimError;
use crate::path::{AttrPath, parse_attr_path};

/// The longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 8 * 1024;
/// The deepest nesting of parentheses, `not ( … )` and `[ … ]` accepted.
pub const MAX_DEPTH: usize = 50;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `eq`: equal.
    Eq,
    /// `ne`: not equal.
    Ne,
    /// `co`: contains.
    Co,
    /// `sw`: starts with.
    Sw,
    /// `ew`: ends with.
    Ew,
    /// `gt`: greater than.
    Gt,
    /// `ge`: greater than or equal.
    Ge,
    /// `lt`: less than.
    Lt,
    /// `le`: less than or equal.
    Le,
}

impl CompareOp {
    /// Every operator.
    pub const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    /// The operator as written in a filter (`eq`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// The operator named `word`, in any case.
    pub fn from_word(word: &str) -> Option<CompareOp> {
        CompareOp::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }

    /// Whether the operator orders values (`gt`, `ge`, `lt`, `le`).
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `path op value`; `value` is a JSON string, number, boolean or null.
    Compare {
        /// The attribute compared.
        path: AttrPath,
        /// The operator.
        op: CompareOp,
        /// The literal compared with.
        value: Value,
    },
    /// `path pr`: the attribute has a non-empty value.
    Present(AttrPath),
    /// All of the filters (two or more).
    And(Vec<Filter>),
    /// Any of the filters (two or more).
    Or(Vec<Filter>),
    /// `not ( filter )`.
    Not(Box<Filter>),
    /// `path[filter]`: some value of the (multi-valued, complex) attribute matches `filter`,
    /// whose paths name sub-attributes.
    ValuePath {
        /// The attribute whose values are filtered.
        path: AttrPath,
        /// The filter on each value, with paths relative to it.
        filter: Box<Filter>,
    },
}

impl Filter {
    /// Parses a filter; malformed, too long or too deep input is a 400 `invalidFilter`.
    pub fn parse(text: &str) -> Result<Filter, ScimError> {
        let mut parser = Parser::new(text)?;
        parser.skip_ws();
        let filter = parser.or_expr()?;
        parser.skip_ws();
        if !parser.at_end() {
            return Err(parser.error(format!(
                "expected \"and\", \"or\" or the end, found {}",
                parser.found()
            )));
        }
        Ok(filter)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => {
                let literal = serde_json::to_string(value).map_err(|_| fmt::Error)?;
                write!(f, "{path} {op} {literal}")
            }
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::And(parts) => write_joined(f, parts, " and "),
            Filter::Or(parts) => write_joined(f, parts, " or "),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

/// Writes `parts` joined by `separator`, parenthesising the logical ones so that the text parses
/// back to the same tree.
fn write_joined(f: &mut fmt::Formatter<'_>, parts: &[Filter], separator: &str) -> fmt::Result {
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            f.write_str(separator)?;
        }
        let grouped = match part {
            Filter::And(_) => separator == " and ",
            Filter::Or(_) => true,
            _ => false,
        };
        if grouped {
            write!(f, "({part})")?
        } else {
            write!(f, "{part}")?
        }
    }
    Ok(())
}

/// The pieces of a PATCH `path` (RFC 7644 §3.5.2: `attrPath / valuePath [subAttr]`).
pub(crate) struct PathParts {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub_attr: Option<String>,
}

/// Parses a PATCH path: structural faults are 400 `invalidPath`, faults inside the brackets
/// 400 `invalidFilter`.
pub(crate) fn parse_patch_path(text: &str) -> Result<PathParts, ScimError> {
    let invalid =
        |reason: String| ScimError::invalid_path(format!("invalid PATCH path {text:?}: {reason}"));
    let Some(open) = text.find('[') else {
        let attr = parse_attr_path(text.trim()).map_err(invalid)?;
        return Ok(PathParts {
            attr,
            filter: None,
            sub_attr: None,
        });
    };
    let attr = parse_attr_path(text[..open].trim()).map_err(invalid)?;
    if attr.sub_attr.is_some() {
        return Err(invalid(
            "a value filter applies to an attribute, not a sub-attribute".into(),
        ));
    }
    let mut parser = Parser::new(text)?;
    parser.pos = open;
    let filter = parser.bracketed()?;
    let rest = text[parser.pos..].trim_end();
    let sub_attr = match rest.strip_prefix('.') {
        Some(sub) => Some(parse_sub_attr(sub).map_err(invalid)?),
        None if rest.is_empty() => None,
        None => {
            return Err(invalid(format!(
                "unexpected {rest:?} after the value filter"
            )));
        }
    };
    Ok(PathParts {
        attr,
        filter: Some(filter),
        sub_attr,
    })
}

fn parse_sub_attr(text: &str) -> Result<String, String> {
    let path = parse_attr_path(text)?;
    if path.urn.is_some() || path.sub_attr.is_some() {
        return Err(format!("{text:?} is not a sub-attribute name"));
    }
    Ok(path.name)
}

/// The value of a JSON number literal (RFC 8259 §6), `None` when `text` is not one or is out
/// of range.
fn number_value(text: &str) -> Option<Value> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let all_digits =
        |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    let whole_ok = all_digits(whole) && (whole == "0" || !whole.starts_with('0'));
    let exponent_ok = exponent
        .is_none_or(|exponent| all_digits(exponent.strip_prefix(['+', '-']).unwrap_or(exponent)));
    if !whole_ok || !fraction.is_none_or(all_digits) || !exponent_ok {
        return None;
    }
    if fraction.is_none() && exponent.is_none() {
        if let Ok(integer) = text.parse::<i64>() {
            return Some(Value::from(integer));
        }
        if let Ok(integer) = text.parse::<u64>() {
            return Some(Value::from(integer));
        }
    }
    let float = text.parse::<f64>().ok()?;
    serde_json::Number::from_f64(float)
        .filter(|_| float.is_finite())
        .map(Value::Number)
}

/// A recursive-descent parser over the filter text.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    in_value_path: bool,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, ScimError> {
        if text.len() > MAX_FILTER_LEN {
            return Err(ScimError::invalid_filter(format!(
                "the filter is {} bytes long; at most {MAX_FILTER_LEN} are accepted",
                text.len()
            )));
        }
        Ok(Parser {
            text,
            pos: 0,
            depth: 0,
            in_value_path: false,
        })
    }

    fn or_expr(&mut self) -> Result<Filter, ScimError> {
        self.logical("or", Self::and_expr, Filter::Or)
    }

    fn and_expr(&mut self) -> Result<Filter, ScimError> {
        self.logical("and", Self::unary, Filter::And)
    }

    /// `operand (keyword operand)*`, flattened into one node when the keyword occurs.
    fn logical(
        &mut self,
        keyword: &str,
        operand: fn(&mut Self) -> Result<Filter, ScimError>,
        build: fn(Vec<Filter>) -> Filter,
    ) -> Result<Filter, ScimError> {
        let mut parts = vec![operand(self)?];
        loop {
            let before = self.pos;
            self.skip_ws();
            if !self.eat_keyword(keyword) {
                self.pos = before;
                break;
            }
            self.skip_ws();
            parts.push(operand(self)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            build(parts)
        })
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        self.skip_ws();
        if self.peek() == Some('(') {
            return self.group();
        }
        let before = self.pos;
        if self.eat_keyword("not") {
            self.skip_ws();
            if self.peek() == Some('(') {
                return Ok(Filter::Not(Box::new(self.group()?)));
            }
            self.pos = before;
        }
        self.attr_expr()
    }

    /// `( filter )`.
    fn group(&mut self) -> Result<Filter, ScimError> {
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        let inner = self.or_expr()?;
        self.skip_ws();
        self.expect(')')?;
        self.depth -= 1;
        Ok(inner)
    }

    /// `path pr`, `path op value` or `path[filter]`.
    fn attr_expr(&mut self) -> Result<Filter, ScimError> {
        let path = self.attr_path()?;
        if self.peek() == Some('[') {
            return self.value_path(path);
        }
        self.skip_ws();
        let op_at = self.pos;
        let word = self.take_while(|c| c.is_ascii_alphabetic());
        if word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::from_word(word) else {
            self.pos = op_at;
            return Err(self.error(format!(
                "expected an operator (eq, ne, co, sw, ew, pr, gt, ge, lt, le) after {path}, found {}",
                self.found()
            )));
        };
        self.skip_ws();
        let value_at = self.pos;
        let value = self.literal()?;
        if op.is_ordering() && (value.is_boolean() || value.is_null()) {
            self.pos = value_at;
            return Err(self.error(format!(
                "\"{op}\" compares strings, numbers and date-times, not {value}"
            )));
        }
        Ok(Filter::Compare { path, op, value })
    }

    /// The attribute path at the cursor; inside a value filter, a sub-attribute name only.
    fn attr_path(&mut self) -> Result<AttrPath, ScimError> {
        let start = self.pos;
        let token = self.take_while(|c| c.is_ascii_alphanumeric() || "-_.:$".contains(c));
        if token.is_empty() {
            return Err(self.error(format!(
                "expected an attribute path, found {}",
                self.found()
            )));
        }
        let path = parse_attr_path(token).map_err(|reason| self.error_at(start, reason))?;
        if self.in_value_path && (path.urn.is_some() || path.sub_attr.is_some()) {
            return Err(self.error_at(
                start,
                format!("inside [ ] name a sub-attribute only, not {token:?}"),
            ));
        }
        Ok(path)
    }

    /// `path[filter]` in a filter (no sub-attribute may follow the bracket).
    fn value_path(&mut self, path: AttrPath) -> Result<Filter, ScimError> {
        if self.in_value_path {
            return Err(self.error("value filters cannot be nested".into()));
        }
        if path.sub_attr.is_some() {
            return Err(self.error(format!(
                "a value filter applies to an attribute, not to {path}"
            )));
        }
        let filter = self.bracketed()?;
        if self.peek() == Some('.') {
            return Err(
                self.error("a sub-attribute after \"]\" is allowed in a PATCH path only".into())
            );
        }
        Ok(Filter::ValuePath {
            path,
            filter: Box::new(filter),
        })
    }

    /// `[ filter ]` at the cursor, with paths relative to the filtered attribute.
    fn bracketed(&mut self) -> Result<Filter, ScimError> {
        self.enter()?;
        self.pos += 1;
        self.in_value_path = true;
        self.skip_ws();
        let filter = self.or_expr()?;
        self.skip_ws();
        self.expect(']')?;
        self.in_value_path = false;
        self.depth -= 1;
        Ok(filter)
    }

    /// A JSON string, number, `true`, `false` or `null`.
    fn literal(&mut self) -> Result<Value, ScimError> {
        match self.peek() {
            Some('"') => self.string(),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                let word = self.take_while(|c| c.is_ascii_alphanumeric());
                match word.to_ascii_lowercase().as_str() {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    "null" => Ok(Value::Null),
                    _ => Err(self.error_at(
                        start,
                        format!("expected a value, found {word:?} (strings need double quotes)"),
                    )),
                }
            }
            _ => Err(self.error(format!("expected a value, found {}", self.found()))),
        }
    }

    /// A JSON string with its escapes.
    fn string(&mut self) -> Result<Value, ScimError> {
        let start = self.pos;
        let mut chars = self.text[start + 1..].char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    chars.next();
                }
                Some((offset, '"')) => break start + 1 + offset,
                Some(_) => {}
                None => return Err(self.error_at(start, "the string is not terminated".into())),
            }
        };
        let literal = &self.text[start..=end];
        let text: String = serde_json::from_str(literal)
            .map_err(|error| self.error_at(start, format!("invalid string {literal}: {error}")))?;
        self.pos = end + 1;
        Ok(Value::String(text))
    }

    /// A JSON number: integers exactly, the others as the nearest `f64`.
    fn number(&mut self) -> Result<Value, ScimError> {
        let start = self.pos;
        let literal = self.take_while(|c| c.is_ascii_digit() || "+-.eE".contains(c));
        number_value(literal)
            .ok_or_else(|| self.error_at(start, format!("invalid number {literal:?}")))
    }

    /// Takes `keyword` (any case) when it stands at the cursor as a whole word.
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let rest = &self.text[self.pos..];
        let matches = rest
            .get(..keyword.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(keyword));
        let whole = matches
            && rest[keyword.len()..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == '(');
        if whole {
            self.pos += keyword.len();
        }
        whole
    }

    fn enter(&mut self) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("the filter nests deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn expect(&mut self, wanted: char) -> Result<(), ScimError> {
        if self.peek() == Some(wanted) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected \"{wanted}\", found {}", self.found())))
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = &self.text[self.pos..];
        let length = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        self.pos += length;
        &rest[..length]
    }

    fn skip_ws(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    /// What stands at the cursor, for error messages.
    fn found(&self) -> String {
        let rest = &self.text[self.pos..];
        if rest.is_empty() {
            return "the end of the filter".into();
        }
        let word: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(20)
            .collect();
        format!("{word:?}")
    }

    fn error(&self, reason: String) -> ScimError {
        self.error_at(self.pos, reason)
    }

    fn error_at(&self, pos: usize, reason: String) -> ScimError {
        let character = self.text[..pos].chars().count() + 1;
        ScimError::invalid_filter(format!("invalid filter at character {character}: {reason}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;
    use serde_json::json;

    fn compare(path: &str, op: CompareOp, value: Value) -> Filter {
        Filter::Compare {
            path: AttrPath::parse(path).unwrap(),
            op,
            value,
        }
    }

    fn parse_err(text: &str) -> ScimError {
        let error = Filter::parse(text).unwrap_err();
        assert_eq!(
            (error.status, error.scim_type),
            (400, Some(ScimType::InvalidFilter)),
            "{text:?}"
        );
        error
    }

    #[test]
    fn given_each_operator_when_parsed_then_a_comparison_with_that_operator() {
        for op in CompareOp::ALL {
            let filter = Filter::parse(&format!("userName {op} \"bjensen\"")).unwrap();
            assert_eq!(filter, compare("userName", op, json!("bjensen")));
        }
    }

    #[test]
    fn given_operators_and_keywords_in_upper_case_when_parsed_then_the_same_tree() {
        let upper =
            Filter::parse("NOT (userName EQ \"a\") AND title PR OR active Eq TRUE").unwrap();
        let lower =
            Filter::parse("not (userName eq \"a\") and title pr or active eq true").unwrap();
        assert_eq!(upper, lower);
    }

    #[test]
    fn given_pr_when_parsed_then_present() {
        assert_eq!(
            Filter::parse("title pr").unwrap(),
            Filter::Present(AttrPath::new("title"))
        );
    }

    #[test]
    fn given_literals_when_parsed_then_json_values() {
        assert_eq!(
            Filter::parse("a eq true").unwrap(),
            compare("a", CompareOp::Eq, json!(true))
        );
        assert_eq!(
            Filter::parse("a eq false").unwrap(),
            compare("a", CompareOp::Eq, json!(false))
        );
        assert_eq!(
            Filter::parse("a eq null").unwrap(),
            compare("a", CompareOp::Eq, json!(null))
        );
        assert_eq!(
            Filter::parse("a gt -12").unwrap(),
            compare("a", CompareOp::Gt, json!(-12))
        );
        assert_eq!(
            Filter::parse("a le 1.5e3").unwrap(),
            compare("a", CompareOp::Le, json!(1500.0))
        );
    }

    #[test]
    fn given_number_literals_when_parsed_then_exact_values_or_refusals() {
        assert_eq!(number_value("0"), Some(json!(0)));
        assert_eq!(number_value("-0.5"), Some(json!(-0.5)));
        assert_eq!(number_value("18446744073709551615"), Some(json!(u64::MAX)));
        assert_eq!(
            number_value("424244351441.79724"),
            Some(json!(424_244_351_441.797_24))
        );
        assert_eq!(number_value("2E+2"), Some(json!(200.0)));
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "+1", "1.2.3", "--1", "1e400", "1-2",
        ] {
            assert_eq!(number_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn given_string_escapes_when_parsed_then_unescaped() {
        let filter = Filter::parse(r#"displayName eq "Ada \"the\" Countess\\\u00e9""#).unwrap();
        assert_eq!(
            filter,
            compare(
                "displayName",
                CompareOp::Eq,
                json!("Ada \"the\" Countess\\é")
            )
        );
    }

    #[test]
    fn given_and_and_or_when_parsed_then_and_binds_tighter() {
        let filter = Filter::parse("a pr or b pr and c pr").unwrap();
        let expected = Filter::Or(vec![
            Filter::Present(AttrPath::new("a")),
            Filter::And(vec![
                Filter::Present(AttrPath::new("b")),
                Filter::Present(AttrPath::new("c")),
            ]),
        ]);
        assert_eq!(filter, expected);
    }

    #[test]
    fn given_parentheses_when_parsed_then_they_override_precedence() {
        let filter = Filter::parse("(a pr or b pr) and c pr").unwrap();
        let expected = Filter::And(vec![
            Filter::Or(vec![
                Filter::Present(AttrPath::new("a")),
                Filter::Present(AttrPath::new("b")),
            ]),
            Filter::Present(AttrPath::new("c")),
        ]);
        assert_eq!(filter, expected);
    }

    #[test]
    fn given_a_chain_of_ands_when_parsed_then_one_flat_node() {
        let filter = Filter::parse("a pr and b pr and c pr").unwrap();
        assert!(matches!(&filter, Filter::And(parts) if parts.len() == 3));
    }

    #[test]
    fn given_not_when_parsed_then_negation_of_the_group() {
        let filter = Filter::parse("not(emails co \"example.org\")").unwrap();
        assert_eq!(
            filter,
            Filter::Not(Box::new(compare(
                "emails",
                CompareOp::Co,
                json!("example.org")
            )))
        );
    }

    #[test]
    fn given_an_attribute_called_not_when_parsed_then_an_attribute() {
        assert_eq!(
            Filter::parse("not pr").unwrap(),
            Filter::Present(AttrPath::new("not"))
        );
    }

    #[test]
    fn given_a_value_filter_when_parsed_then_value_path_with_relative_paths() {
        let filter =
            Filter::parse(r#"emails[type eq "work" and value co "@example.com"]"#).unwrap();
        let expected = Filter::ValuePath {
            path: AttrPath::new("emails"),
            filter: Box::new(Filter::And(vec![
                compare("type", CompareOp::Eq, json!("work")),
                compare("value", CompareOp::Co, json!("@example.com")),
            ])),
        };
        assert_eq!(filter, expected);
    }

    #[test]
    fn given_the_rfc_examples_when_parsed_then_all_accepted() {
        for text in [
            r#"userName Eq "john""#,
            r#"name.familyName co "O'Malley""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
        ] {
            let filter = Filter::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!(
                Filter::parse(&filter.to_string()).unwrap(),
                filter,
                "{text}"
            );
        }
    }

    #[test]
    fn given_an_enterprise_path_when_parsed_then_urn_kept_apart() {
        let filter = Filter::parse(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26""#,
        )
        .unwrap();
        let Filter::Compare { path, .. } = filter else {
            panic!("not a comparison")
        };
        assert_eq!(
            path.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(
            (path.name.as_str(), path.sub_attr.as_deref()),
            ("manager", Some("value"))
        );
    }

    #[test]
    fn given_a_tree_when_displayed_then_canonical_text() {
        let filter = Filter::parse(r#"NOT ( a EQ "x" ) and (b pr OR c lt 3)"#).unwrap();
        assert_eq!(filter.to_string(), r#"not (a eq "x") and (b pr or c lt 3)"#);
    }

    #[test]
    fn given_malformed_filters_when_parsed_then_invalid_filter_saying_where() {
        let cases = [
            ("", "character 1", "expected an attribute path"),
            ("userName", "character 9", "expected an operator"),
            ("userName eq", "character 12", "expected a value"),
            (
                "userName eq bjensen",
                "character 13",
                "strings need double quotes",
            ),
            ("userName xx \"a\"", "character 10", "expected an operator"),
            ("userName eq \"a", "character 13", "not terminated"),
            ("(userName pr", "character 13", "expected \")\""),
            (
                "userName pr)",
                "character 12",
                "expected \"and\", \"or\" or the end",
            ),
            (
                "userName pr and",
                "character 16",
                "expected an attribute path",
            ),
            ("emails[type eq \"work\"", "character 22", "expected \"]\""),
            ("emails[type[value pr]]", "character 12", "nested"),
            (
                "emails[name.givenName pr]",
                "character 8",
                "sub-attribute only",
            ),
            (
                "emails[type pr].value eq \"x\"",
                "character 16",
                "PATCH path only",
            ),
            ("active gt true", "character 11", "not true"),
            ("a eq 1.2.3", "character 6", "invalid number"),
            ("a eq \"\\q\"", "character 6", "invalid string"),
            ("1abc pr", "character 1", "not a valid attribute name"),
            ("a pr b pr", "character 6", "expected \"and\""),
        ];
        for (text, place, reason) in cases {
            let error = parse_err(text);
            assert!(error.detail.contains(place), "{text:?}: {}", error.detail);
            assert!(error.detail.contains(reason), "{text:?}: {}", error.detail);
        }
    }

    #[test]
    fn given_a_filter_over_the_length_cap_when_parsed_then_refused() {
        let text = format!("userName eq \"{}\"", "a".repeat(MAX_FILTER_LEN));
        assert!(parse_err(&text).detail.contains("at most 8192"));
    }

    #[test]
    fn given_nesting_at_the_cap_when_parsed_then_accepted_and_beyond_refused() {
        let at_cap = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(
            Filter::parse(&at_cap).unwrap(),
            Filter::Present(AttrPath::new("a"))
        );
        let beyond = format!(
            "{}a pr{}",
            "not (".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(parse_err(&beyond).detail.contains("deeper than 50"));
        let hostile = "(".repeat(MAX_FILTER_LEN);
        assert!(parse_err(&hostile).detail.contains("deeper than 50"));
    }

    #[test]
    fn given_multibyte_text_when_an_error_is_reported_then_position_counts_characters() {
        let error = parse_err("displayName eq \"é\" zz");
        assert!(error.detail.contains("character 20"), "{}", error.detail);
    }

    #[test]
    fn given_a_patch_path_with_filter_and_sub_attribute_when_parsed_then_three_parts() {
        let parts = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(parts.attr, AttrPath::new("emails"));
        assert_eq!(
            parts.filter,
            Some(compare("type", CompareOp::Eq, json!("work")))
        );
        assert_eq!(parts.sub_attr.as_deref(), Some("value"));
    }

    #[test]
    fn given_a_patch_path_with_urn_and_colon_in_the_filter_when_parsed_then_split_right() {
        let text = r#"urn:ietf:params:scim:schemas:core:2.0:Group:members[value eq "a:b"]"#;
        let parts = parse_patch_path(text).unwrap();
        assert_eq!(
            parts.attr,
            AttrPath::new("members").in_schema("urn:ietf:params:scim:schemas:core:2.0:Group")
        );
        assert_eq!(
            parts.filter,
            Some(compare("value", CompareOp::Eq, json!("a:b")))
        );
        assert_eq!(parts.sub_attr, None);
    }

    #[test]
    fn given_bad_patch_paths_when_parsed_then_invalid_path_or_invalid_filter() {
        let kind = |text: &str| {
            parse_patch_path(text)
                .err()
                .and_then(|error| error.scim_type)
        };
        assert_eq!(kind("name..givenName"), Some(ScimType::InvalidPath));
        assert_eq!(
            kind("emails[type eq \"work\"]value"),
            Some(ScimType::InvalidPath)
        );
        assert_eq!(
            kind("emails[type eq \"work\"].value.x"),
            Some(ScimType::InvalidPath)
        );
        assert_eq!(kind("name.givenName[type pr]"), Some(ScimType::InvalidPath));
        assert_eq!(kind("emails[type eq]"), Some(ScimType::InvalidFilter));
        assert_eq!(
            kind("emails[type eq \"work\""),
            Some(ScimType::InvalidFilter)
        );
        assert!(kind("name.givenName").is_none());
    }
}
