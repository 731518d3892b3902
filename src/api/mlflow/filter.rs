//! MLflow's search language, parsed without I/O: `filter` strings, `order_by` clauses and page
//! tokens, translated into the store's filter, sort and paging types.
//!
//! The grammar is MLflow's (a conjunction of comparisons joined by `AND`; `tag.`/`tags.`
//! prefixes with backtick- or double-quoted keys; `=`, `!=`, `LIKE`, `ILIKE`; `run_id IN (…)`),
//! plus `current_stage` in model-version filters, a documented superset that CI quality gates
//! rely on. Anything else is refused with a message naming the offending part, which the HTTP
//! layer answers as 400 INVALID_PARAMETER_VALUE, never as a server error.

use base64::Engine;

use crate::domain::names::Stage;
use crate::store::{ModelFilter, Paging, SortKey, TextMatch, VersionFilter};

/// Why a filter, order_by or page token was refused; the text is shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, SearchError> {
    Err(SearchError(message.into()))
}

/// The tag that marks a registered model as a prompt; prompts are left out of searches unless
/// the filter asks about this tag, as MLflow does.
pub const PROMPT_TAG: &str = "mlflow.prompt.is_prompt";

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(String),
    Op(String),
    LParen,
    RParen,
    Comma,
}

fn tokenize(input: &str) -> Result<Vec<Token>, SearchError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let quoted = |i: &mut usize, quote: char| -> Result<String, SearchError> {
        let start = *i;
        *i += 1;
        let mut out = String::new();
        while *i < chars.len() {
            if chars[*i] == quote {
                // A doubled quote inside a string stands for the quote itself.
                if chars.get(*i + 1) == Some(&quote) {
                    out.push(quote);
                    *i += 2;
                    continue;
                }
                *i += 1;
                return Ok(out);
            }
            out.push(chars[*i]);
            *i += 1;
        }
        err(format!(
            "Invalid filter string: unterminated {quote} starting at position {start}"
        ))
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::LParen);
                i += 1;
            }
            ')' => {
                tokens.push(Token::RParen);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '\'' => tokens.push(Token::Str(quoted(&mut i, '\'')?)),
            // Double quotes and backticks quote identifiers in MLflow; a double-quoted value is
            // accepted too (the parser decides by position).
            '"' => tokens.push(Token::Str(quoted(&mut i, '"')?)),
            '`' => tokens.push(Token::Ident(quoted(&mut i, '`')?)),
            '=' => {
                tokens.push(Token::Op("=".into()));
                i += 1;
            }
            '!' | '<' | '>' => {
                let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
                if ["!=", "<=", ">=", "<>"].contains(&two.as_str()) {
                    tokens.push(Token::Op(if two == "<>" { "!=".into() } else { two }));
                    i += 2;
                } else if c == '!' {
                    return err("Invalid filter string: '!' must be followed by '='");
                } else {
                    tokens.push(Token::Op(c.to_string()));
                    i += 1;
                }
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                tokens.push(Token::Num(chars[start..i].iter().collect()));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | '-'))
                {
                    i += 1;
                }
                let mut word: String = chars[start..i].iter().collect();
                // `tags.` followed by a quoted key: glue the key on.
                if word.ends_with('.') && i < chars.len() && matches!(chars[i], '`' | '"') {
                    let quote = chars[i];
                    word.push_str(&quoted(&mut i, quote)?);
                }
                tokens.push(Token::Ident(word));
            }
            other => {
                return err(format!(
                    "Invalid filter string: unexpected character '{other}'"
                ));
            }
        }
    }
    Ok(tokens)
}

/// What a comparison's left side names.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Attribute(String),
    Tag(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    Eq,
    Ne,
    Like,
    ILike,
    In,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub key: Key,
    pub op: Comparison,
    pub value: Literal,
}

fn key_of(ident: &str) -> Key {
    let lower = ident.to_ascii_lowercase();
    for prefix in ["tags.", "tag."] {
        if lower.starts_with(prefix) {
            return Key::Tag(ident[prefix.len()..].to_string());
        }
    }
    for prefix in ["attributes.", "attribute.", "attr."] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            return Key::Attribute(rest.to_string());
        }
    }
    Key::Attribute(lower)
}

/// Parses a filter into its clauses (an empty or blank filter has none).
pub fn parse_filter(input: &str) -> Result<Vec<Clause>, SearchError> {
    let tokens = tokenize(input)?;
    let mut clauses = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !clauses.is_empty() {
            match &tokens[i] {
                Token::Ident(w) if w.eq_ignore_ascii_case("and") => i += 1,
                Token::Ident(w) if w.eq_ignore_ascii_case("or") => {
                    return err("Invalid clause(s) in filter string: OR");
                }
                other => {
                    return err(format!(
                        "Invalid filter '{input}': expected AND between comparisons, found {}",
                        describe(other)
                    ));
                }
            }
        }
        let key = match tokens.get(i) {
            Some(Token::Ident(w)) => key_of(w),
            // A double-quoted identifier is an identifier when it stands on the left.
            Some(Token::Str(s)) => key_of(s),
            Some(other) => {
                return err(format!(
                    "Invalid filter '{input}': expected a field name, found {}",
                    describe(other)
                ));
            }
            None => return err(format!("Invalid filter '{input}': dangling AND")),
        };
        i += 1;
        let op = match tokens.get(i) {
            Some(Token::Op(o)) => match o.as_str() {
                "=" => Comparison::Eq,
                "!=" => Comparison::Ne,
                "<" => Comparison::Lt,
                "<=" => Comparison::Le,
                ">" => Comparison::Gt,
                ">=" => Comparison::Ge,
                _ => return err(format!("Invalid comparator '{o}'")),
            },
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("like") => Comparison::Like,
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("ilike") => Comparison::ILike,
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("in") => Comparison::In,
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("not") => {
                return err("Invalid comparator 'NOT': NOT, NOT IN and NOT LIKE are not supported");
            }
            Some(other) => {
                return err(format!(
                    "Invalid filter '{input}': expected a comparator, found {}",
                    describe(other)
                ));
            }
            None => return err(format!("Invalid filter '{input}': missing comparator")),
        };
        i += 1;
        let value = if op == Comparison::In {
            if tokens.get(i) != Some(&Token::LParen) {
                return err("IN must be followed by a parenthesized list of quoted strings");
            }
            i += 1;
            let mut values = Vec::new();
            loop {
                match tokens.get(i) {
                    Some(Token::Str(s)) => values.push(s.clone()),
                    _ => return err("IN lists must hold quoted strings, e.g. IN ('a', 'b')"),
                }
                i += 1;
                match tokens.get(i) {
                    Some(Token::Comma) => i += 1,
                    Some(Token::RParen) => {
                        i += 1;
                        break;
                    }
                    _ => return err("IN list is not closed with ')'"),
                }
            }
            Literal::List(values)
        } else {
            let v = match tokens.get(i) {
                Some(Token::Str(s)) => Literal::Str(s.clone()),
                Some(Token::Num(n)) => Literal::Num(n.clone()),
                Some(other) => {
                    return err(format!(
                        "Invalid filter '{input}': expected a quoted value, found {}",
                        describe(other)
                    ));
                }
                None => return err(format!("Invalid filter '{input}': missing value")),
            };
            i += 1;
            v
        };
        clauses.push(Clause { key, op, value });
    }
    Ok(clauses)
}

fn describe(token: &Token) -> String {
    match token {
        Token::Ident(w) => format!("'{w}'"),
        Token::Str(s) => format!("'{s}'"),
        Token::Num(n) => n.clone(),
        Token::Op(o) => format!("'{o}'"),
        Token::LParen => "'('".into(),
        Token::RParen => "')'".into(),
        Token::Comma => "','".into(),
    }
}

fn string_value(clause: &Clause, field: &str) -> Result<String, SearchError> {
    match &clause.value {
        Literal::Str(s) => Ok(s.clone()),
        Literal::Num(n) => err(format!(
            "Invalid value {n} for {field}: string values must be quoted, e.g. '{n}'"
        )),
        Literal::List(_) => err(format!("{field} does not support IN")),
    }
}

fn text_match(clause: &Clause, field: &str, allow_in: bool) -> Result<TextMatch, SearchError> {
    Ok(match clause.op {
        Comparison::Eq => TextMatch::Eq(string_value(clause, field)?),
        Comparison::Ne => TextMatch::Ne(string_value(clause, field)?),
        Comparison::Like => TextMatch::Like(string_value(clause, field)?),
        Comparison::ILike => TextMatch::ILike(string_value(clause, field)?),
        Comparison::In if allow_in => match &clause.value {
            Literal::List(values) => TextMatch::In(values.clone()),
            _ => return err(format!("IN on {field} needs a list")),
        },
        _ => {
            return err(format!(
                "Invalid comparator for {field}: use =, !=, LIKE or ILIKE{}",
                if allow_in { " or IN" } else { "" }
            ));
        }
    })
}

/// Model filters for `registered-models/search`. Prompts are excluded unless the filter
/// mentions the prompt tag.
pub fn model_filters(filter: Option<&str>) -> Result<Vec<ModelFilter>, SearchError> {
    let clauses = parse_filter(filter.unwrap_or(""))?;
    let mut filters = Vec::with_capacity(clauses.len() + 1);
    let mut mentions_prompt = false;
    for clause in &clauses {
        match &clause.key {
            Key::Attribute(a) if a == "name" => {
                filters.push(ModelFilter::Name(text_match(clause, "name", false)?));
            }
            Key::Attribute(a) => {
                return err(format!(
                    "Invalid attribute key '{a}' specified. Valid keys are '{{'name'}}'"
                ));
            }
            Key::Tag(key) => {
                mentions_prompt |= key == PROMPT_TAG;
                filters.push(ModelFilter::Tag {
                    key: key.clone(),
                    matcher: text_match(clause, "tags", false)?,
                });
            }
        }
    }
    if !mentions_prompt {
        filters.push(ModelFilter::Tag {
            key: PROMPT_TAG.into(),
            matcher: TextMatch::Ne("true".into()),
        });
    }
    Ok(filters)
}

fn canonical_stage(raw: &str) -> Result<String, SearchError> {
    Stage::parse(raw)
        .map(|s| s.as_str().to_string())
        .map_err(|e| SearchError(e.0))
}

/// Version filters for `model-versions/search`.
pub fn version_filters(filter: Option<&str>) -> Result<Vec<VersionFilter>, SearchError> {
    let clauses = parse_filter(filter.unwrap_or(""))?;
    let mut filters = Vec::with_capacity(clauses.len());
    for clause in &clauses {
        let f = match &clause.key {
            Key::Attribute(a) => match a.as_str() {
                "name" => VersionFilter::Name(text_match(clause, "name", false)?),
                "run_id" => VersionFilter::RunId(text_match(clause, "run_id", true)?),
                "source_path" | "source" => {
                    VersionFilter::Source(text_match(clause, "source_path", false)?)
                }
                "version_number" | "version" => {
                    if clause.op != Comparison::Eq {
                        return err("version_number supports only '=' here");
                    }
                    let raw = match &clause.value {
                        Literal::Num(n) | Literal::Str(n) => n,
                        Literal::List(_) => return err("version_number does not support IN"),
                    };
                    let n = raw.parse::<i64>().map_err(|_| {
                        SearchError(format!(
                            "Invalid version_number '{raw}': must be an integer"
                        ))
                    })?;
                    VersionFilter::Version(n)
                }
                "current_stage" | "stage" => {
                    let matcher = match text_match(clause, "current_stage", true)? {
                        TextMatch::Eq(s) => TextMatch::Eq(canonical_stage(&s)?),
                        TextMatch::Ne(s) => TextMatch::Ne(canonical_stage(&s)?),
                        TextMatch::In(list) => TextMatch::In(
                            list.iter()
                                .map(|s| canonical_stage(s))
                                .collect::<Result<_, _>>()?,
                        ),
                        other => other,
                    };
                    VersionFilter::Stage(matcher)
                }
                other => {
                    return err(format!(
                        "Invalid attribute key '{other}' specified. Valid keys are \
                         'name', 'run_id', 'source_path', 'version_number', 'current_stage'"
                    ));
                }
            },
            Key::Tag(key) => VersionFilter::Tag {
                key: key.clone(),
                matcher: text_match(clause, "tags", false)?,
            },
        };
        filters.push(f);
    }
    Ok(filters)
}

/// Which search an `order_by` is for: the keys differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Models,
    Versions,
}

/// Parses `order_by` clauses (`key [ASC|DESC]`); `true` means descending.
pub fn order_by(clauses: &[String], entity: Entity) -> Result<Vec<(SortKey, bool)>, SearchError> {
    let mut order: Vec<(SortKey, bool)> = Vec::new();
    for clause in clauses {
        let mut words = clause.split_whitespace();
        let Some(field) = words.next() else {
            return err("Invalid order_by clause ''");
        };
        let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(other) => {
                return err(format!(
                    "Invalid order_by clause '{clause}': '{other}' is not ASC or DESC"
                ));
            }
        };
        if words.next().is_some() {
            return err(format!("Invalid order_by clause '{clause}'"));
        }
        let field = field.trim_matches('`').to_ascii_lowercase();
        let field = field.strip_prefix("attribute.").unwrap_or(&field);
        let key = match (field, entity) {
            ("name", _) => SortKey::Name,
            ("timestamp" | "last_updated_timestamp", _) => SortKey::UpdatedAt,
            ("creation_timestamp", _) => SortKey::CreatedAt,
            ("version_number", Entity::Versions) => SortKey::Version,
            (other, _) => {
                return err(format!(
                    "Invalid order by key '{other}' specified. Valid keys are {}",
                    match entity {
                        Entity::Models => "'name', 'timestamp', 'last_updated_timestamp'",
                        Entity::Versions =>
                            "'name', 'version_number', 'creation_timestamp', 'last_updated_timestamp'",
                    }
                ));
            }
        };
        if order.iter().any(|(k, _)| *k == key) {
            return err(format!("`order_by` contains duplicate fields: {clause}"));
        }
        order.push((key, descending));
    }
    if order.is_empty() {
        order = match entity {
            Entity::Models => vec![(SortKey::Name, false)],
            Entity::Versions => vec![
                (SortKey::UpdatedAt, true),
                (SortKey::Name, false),
                (SortKey::Version, true),
            ],
        };
    }
    Ok(order)
}

/// A page token as MLflow writes it: base64 of `{"offset": N}`.
pub fn encode_page_token(offset: i64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{{\"offset\": {offset}}}"))
}

/// The paging a token asks for; an absent or empty token is the first page.
pub fn decode_page_token(token: Option<&str>) -> Result<Paging, SearchError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(Paging::Offset(0));
    };
    let bad = || SearchError(format!("Invalid page token '{token}'"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(token))
        .map_err(|_| bad())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let offset = value
        .get("offset")
        .and_then(serde_json::Value::as_i64)
        .filter(|o| *o >= 0)
        .ok_or_else(bad)?;
    Ok(Paging::Offset(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(s: &str) -> TextMatch {
        TextMatch::Eq(s.into())
    }

    #[test]
    fn the_client_prompt_filter_parses() {
        let f = model_filters(Some(
            "name LIKE 'm%' AND tag.`mlflow.prompt.is_prompt` != 'true'",
        ))
        .unwrap();
        assert_eq!(
            f,
            vec![
                ModelFilter::Name(TextMatch::Like("m%".into())),
                ModelFilter::Tag {
                    key: PROMPT_TAG.into(),
                    matcher: TextMatch::Ne("true".into())
                },
            ]
        );
    }

    #[test]
    fn prompts_are_excluded_unless_asked_for() {
        assert_eq!(
            model_filters(None).unwrap(),
            vec![ModelFilter::Tag {
                key: PROMPT_TAG.into(),
                matcher: TextMatch::Ne("true".into())
            }]
        );
        let asked = model_filters(Some("tags.`mlflow.prompt.is_prompt` = 'true'")).unwrap();
        assert_eq!(asked.len(), 1);
    }

    #[test]
    fn model_filter_forms() {
        let f = model_filters(Some(
            "name ILIKE '%Churn%' and name != \"x\" AND tags.team = 'fraud' AND tags.\"a.b\" LIKE 'v%'",
        ))
        .unwrap();
        assert_eq!(f[0], ModelFilter::Name(TextMatch::ILike("%Churn%".into())));
        assert_eq!(f[1], ModelFilter::Name(TextMatch::Ne("x".into())));
        assert_eq!(
            f[2],
            ModelFilter::Tag {
                key: "team".into(),
                matcher: eq("fraud")
            }
        );
        assert_eq!(
            f[3],
            ModelFilter::Tag {
                key: "a.b".into(),
                matcher: TextMatch::Like("v%".into())
            }
        );
        assert_eq!(
            model_filters(Some("name='it''s'")).unwrap()[0],
            ModelFilter::Name(eq("it's"))
        );
    }

    #[test]
    fn version_filter_forms() {
        let f = version_filters(Some(
            "name='m' AND run_id IN ('a', 'b') AND source_path = 's3://x' AND version_number = 3 \
             AND current_stage IN ('staging','Production') AND tag.k != 'v'",
        ))
        .unwrap();
        assert_eq!(
            f,
            vec![
                VersionFilter::Name(eq("m")),
                VersionFilter::RunId(TextMatch::In(vec!["a".into(), "b".into()])),
                VersionFilter::Source(eq("s3://x")),
                VersionFilter::Version(3),
                VersionFilter::Stage(TextMatch::In(vec!["Staging".into(), "Production".into()])),
                VersionFilter::Tag {
                    key: "k".into(),
                    matcher: TextMatch::Ne("v".into())
                },
            ]
        );
        assert_eq!(
            version_filters(Some("current_stage='Staging'")).unwrap(),
            vec![VersionFilter::Stage(eq("Staging"))]
        );
        assert_eq!(
            version_filters(Some("version_number='12'")).unwrap(),
            vec![VersionFilter::Version(12)]
        );
        assert!(version_filters(Some("")).unwrap().is_empty());
    }

    #[test]
    fn bad_filters_are_refused() {
        for bad in [
            "name = 'a' OR name = 'b'",
            "name = 'a' name = 'b'",
            "name 'a'",
            "name =",
            "name = 'unterminated",
            "run_id NOT IN ('a')",
            "name IN ('a')",
            "run_id IN 'a'",
            "current_stage = 'Prod'",
            "version_number > 2",
            "foo = 'x'",
            "name = 'a' AND",
            "name ~ 'a'",
        ] {
            assert!(version_filters(Some(bad)).is_err(), "{bad}");
        }
        assert!(model_filters(Some("run_id = 'x'")).is_err());
        assert!(model_filters(Some("name = 3")).is_err());
    }

    #[test]
    fn order_by_clauses() {
        assert_eq!(
            order_by(
                &["name ASC".into(), "last_updated_timestamp DESC".into()],
                Entity::Models
            )
            .unwrap(),
            vec![(SortKey::Name, false), (SortKey::UpdatedAt, true)]
        );
        assert_eq!(
            order_by(&["version_number desc".into()], Entity::Versions).unwrap(),
            vec![(SortKey::Version, true)]
        );
        assert_eq!(
            order_by(&[], Entity::Versions).unwrap()[0],
            (SortKey::UpdatedAt, true)
        );
        assert!(order_by(&["version_number".into()], Entity::Models).is_err());
        assert!(order_by(&["name".into(), "name DESC".into()], Entity::Models).is_err());
        assert!(order_by(&["name UP".into()], Entity::Models).is_err());
        assert!(
            order_by(
                &["timestamp".into(), "last_updated_timestamp".into()],
                Entity::Models
            )
            .is_err()
        );
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let t = encode_page_token(200);
        assert_eq!(t, "eyJvZmZzZXQiOiAyMDB9");
        assert_eq!(decode_page_token(Some(&t)).unwrap(), Paging::Offset(200));
        assert_eq!(decode_page_token(None).unwrap(), Paging::Offset(0));
        assert_eq!(decode_page_token(Some("")).unwrap(), Paging::Offset(0));
        for bad in ["!!", "bm90IGpzb24=", "eyJvZmZzZXQiOiAtMX0="] {
            assert!(decode_page_token(Some(bad)).is_err(), "{bad}");
        }
    }
}
