//! MLflow's search language, parsed without I/O: `filter` strings, `order_by` clauses and page
//! tokens, translated into the store's filter, sort and paging types.
//!
//! The grammar is MLflow's (a conjunction of comparisons joined by `AND`; `tag.`/`tags.`
//! prefixes with backtick- or double-quoted keys; `=`, `!=`, `LIKE`, `ILIKE`; `IN (…)` on a version's
//! `name`, `run_id` and `source_path`; `=`, `!=`, `<`, `<=`, `>`, `>=`, `IN` on `version_number`),
//! plus `current_stage` in model-version filters, a documented superset that CI quality gates
//! rely on. Anything else is refused with a message naming the offending part, which the HTTP
//! layer answers as 400 INVALID_PARAMETER_VALUE, never as a server error.
//!
//! Filters are parsed with `winnow` in two passes: characters into tokens, then tokens into
//! clauses. Every refusal is a winnow *cut* carrying its final message, so a specific complaint
//! ("unterminated ' starting at position 7") is never replaced by a vaguer one from a branch
//! tried later. [`format_filter`] is the inverse of [`parse_filter`]; a property test holds the
//! two together. Size limits ([`MAX_FILTER_BYTES`], [`MAX_FILTER_CLAUSES`]) bound the work one
//! request can cause.

use base64::Engine;
use winnow::Parser;
use winnow::combinator::{alt, delimited, eof, opt, peek, preceded, repeat, separated, terminated};
use winnow::error::{ErrMode, ModalResult, ParserError};
use winnow::stream::{LocatingSlice, Location as _, Stream, TokenSlice};
use winnow::token::{any, one_of, take_till, take_while};

use crate::domain::names::Stage;
use crate::service::{ModelFilter, NumberMatch, Paging, SortKey, TextMatch, VersionFilter};

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

/// Longest filter accepted, in bytes. Real filters are a few hundred bytes; the bound keeps one
/// request from making the parser (and the SQL built from its clauses) do unbounded work.
pub const MAX_FILTER_BYTES: usize = 64 * 1024;
/// Most comparisons one filter may AND together; each becomes a condition in the store's query.
pub const MAX_FILTER_CLAUSES: usize = 100;

/// A lexical unit of a filter. Lexing is a separate pass so that a broken quote anywhere is
/// reported as such, before any complaint about the grammar around it.
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

/// Why a parser step failed. `None` is winnow's ordinary "this alternative does not apply",
/// which lets `alt`, `opt` and `repeat` try the next branch; `Some` is a refusal with the text
/// the caller will see, raised as a cut so no other branch can mask it.
#[derive(Debug)]
struct Rejection(Option<String>);

impl<I: Stream> ParserError<I> for Rejection {
    type Inner = Self;

    fn from_input(_input: &I) -> Self {
        Rejection(None)
    }

    fn into_inner(self) -> Result<Self, Self> {
        Ok(self)
    }
}

type Step<T> = ModalResult<T, Rejection>;

fn refuse<T>(message: impl Into<String>) -> Step<T> {
    Err(ErrMode::Cut(Rejection(Some(message.into()))))
}

fn into_search_error(error: ErrMode<Rejection>, fallback: &str) -> SearchError {
    match error {
        ErrMode::Cut(Rejection(Some(message))) | ErrMode::Backtrack(Rejection(Some(message))) => {
            SearchError(message)
        }
        _ => SearchError(fallback.to_owned()),
    }
}

/// The filter text, with byte offsets kept so errors can say where a quote was opened.
type Text<'a> = LocatingSlice<&'a str>;

fn lex(source: &str) -> Result<Vec<Token>, SearchError> {
    let blank = |input: &mut Text<'_>| -> Step<()> {
        take_while(0.., char::is_whitespace)
            .void()
            .parse_next(input)
    };
    // `token` refuses every character that cannot start a token, so after the last token only
    // blanks can remain and `eof` cannot fail.
    terminated(repeat(0.., preceded(blank, token)), (blank, eof))
        .parse_next(&mut LocatingSlice::new(source))
        .map_err(|e| into_search_error(e, "Invalid filter string"))
}

fn token(input: &mut Text<'_>) -> Step<Token> {
    let punctuation = alt((
        '('.value(Token::LParen),
        ')'.value(Token::RParen),
        ','.value(Token::Comma),
    ));
    let quoted_token = alt((
        quoted('\'').map(Token::Str),
        // Double quotes and backticks quote identifiers in MLflow; a double-quoted value is
        // accepted too (the grammar decides by position).
        quoted('"').map(Token::Str),
        quoted('`').map(Token::Ident),
    ));
    alt((
        punctuation,
        quoted_token,
        comparator.map(|op| Token::Op(op.to_owned())),
        number.map(|n| Token::Num(n.to_owned())),
        word.map(Token::Ident),
        unexpected_character,
    ))
    .parse_next(input)
}

/// Text between `quote`s, where a doubled quote stands for the quote itself (SQL style).
fn quoted<'a>(quote: char) -> impl Parser<Text<'a>, String, ErrMode<Rejection>> {
    move |input: &mut Text<'a>| {
        let mut quote = quote;
        let opened_at = input.current_token_start();
        quote.parse_next(input)?;
        let body = repeat(
            0..,
            alt((take_till(1.., quote), terminated(quote.take(), quote))),
        )
        .fold(String::new, |mut body, piece: &str| {
            body.push_str(piece);
            body
        })
        .parse_next(input)?;
        if opt(quote).parse_next(input)?.is_none() {
            let mut whole = *input;
            whole.reset_to_start();
            let text: &str = *whole;
            // Reported in characters, as a person counts them, not in UTF-8 bytes.
            let position = text[..opened_at].chars().count();
            return refuse(format!(
                "Invalid filter string: unterminated {quote} starting at position {position}"
            ));
        }
        Ok(body)
    }
}

/// `=`, `!=` (also spelled `<>`), `<`, `<=`, `>`, `>=`.
fn comparator<'a>(input: &mut Text<'a>) -> Step<&'static str> {
    alt((
        "!=".value("!="),
        "<>".value("!="),
        "<=".value("<="),
        ">=".value(">="),
        "=".value("="),
        "<".value("<"),
        ">".value(">"),
        preceded('!', |_: &mut Text<'a>| {
            refuse("Invalid filter string: '!' must be followed by '='")
        }),
    ))
    .parse_next(input)
}

/// Digits and dots, optionally after a minus sign; the grammar checks the value's shape later
/// (only `version_number` takes a number).
fn number<'a>(input: &mut Text<'a>) -> Step<&'a str> {
    let digit = |c: char| c.is_ascii_digit();
    (
        alt((one_of(digit).void(), ('-', peek(one_of(digit))).void())),
        take_while(0.., |c: char| c.is_ascii_digit() || c == '.'),
    )
        .take()
        .parse_next(input)
}

/// A keyword or a bare key such as `name` or `tags.team`. A word ending in `.` followed by a
/// quoted part (`tags.\`a b\``, `tag."k"`) is one key: the quotes only protect the characters.
fn word(input: &mut Text<'_>) -> Step<String> {
    let bare = (
        one_of(|c: char| c.is_alphanumeric() || c == '_'),
        take_while(0.., |c: char| {
            c.is_alphanumeric() || matches!(c, '_' | '.' | '-')
        }),
    )
        .take()
        .parse_next(input)?;
    let mut word = bare.to_owned();
    if word.ends_with('.')
        && let Some(key) = opt(alt((quoted('`'), quoted('"')))).parse_next(input)?
    {
        word.push_str(&key);
    }
    Ok(word)
}

fn unexpected_character<T>(input: &mut Text<'_>) -> Step<T> {
    let other = any.parse_next(input)?;
    refuse(format!(
        "Invalid filter string: unexpected character '{other}'"
    ))
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
    if input.len() > MAX_FILTER_BYTES {
        return err(format!(
            "Invalid filter string: it is {} bytes long, over the limit of {MAX_FILTER_BYTES} \
             bytes (64 KiB)",
            input.len()
        ));
    }
    let tokens = lex(input)?;
    let mut stream = TokenSlice::new(&tokens);
    let clauses = alt((
        eof.value(Vec::new()),
        separated(
            1..,
            |i: &mut Tokens<'_>| clause(i, input),
            |i: &mut Tokens<'_>| conjunction(i, input),
        ),
    ))
    .parse_next(&mut stream)
    .map_err(|e| into_search_error(e, &format!("Invalid filter '{input}'")))?;
    if clauses.len() > MAX_FILTER_CLAUSES {
        return err(format!(
            "Invalid filter string: it has {} AND-ed clauses, over the limit of \
             {MAX_FILTER_CLAUSES}",
            clauses.len()
        ));
    }
    Ok(clauses)
}

type Tokens<'t> = TokenSlice<'t, Token>;

/// The `AND` between two comparisons. Only the end of the filter ends the list quietly;
/// anything else standing there is refused, naming what was found.
fn conjunction(input: &mut Tokens<'_>, source: &str) -> Step<()> {
    match any.parse_next(input)? {
        Token::Ident(w) if w.eq_ignore_ascii_case("and") => Ok(()),
        Token::Ident(w) if w.eq_ignore_ascii_case("or") => {
            refuse("Invalid clause(s) in filter string: OR")
        }
        other => refuse(format!(
            "Invalid filter '{source}': expected AND between comparisons, found {}",
            describe(other)
        )),
    }
}

/// `key comparator value`.
fn clause(input: &mut Tokens<'_>, source: &str) -> Step<Clause> {
    let key = match opt(any).parse_next(input)? {
        // A double-quoted identifier is an identifier when it stands on the left.
        Some(Token::Ident(w) | Token::Str(w)) => key_of(w),
        Some(other) => {
            return refuse(format!(
                "Invalid filter '{source}': expected a field name, found {}",
                describe(other)
            ));
        }
        None => return refuse(format!("Invalid filter '{source}': dangling AND")),
    };
    let op = match opt(any).parse_next(input)? {
        Some(Token::Op(o)) => match o.as_str() {
            "=" => Comparison::Eq,
            "!=" => Comparison::Ne,
            "<" => Comparison::Lt,
            "<=" => Comparison::Le,
            ">" => Comparison::Gt,
            ">=" => Comparison::Ge,
            _ => return refuse(format!("Invalid comparator '{o}'")),
        },
        Some(Token::Ident(w)) if w.eq_ignore_ascii_case("like") => Comparison::Like,
        Some(Token::Ident(w)) if w.eq_ignore_ascii_case("ilike") => Comparison::ILike,
        Some(Token::Ident(w)) if w.eq_ignore_ascii_case("in") => Comparison::In,
        Some(Token::Ident(w)) if w.eq_ignore_ascii_case("not") => {
            return refuse("Invalid comparator 'NOT': NOT, NOT IN and NOT LIKE are not supported");
        }
        Some(other) => {
            return refuse(format!(
                "Invalid filter '{source}': expected a comparator, found {}",
                describe(other)
            ));
        }
        None => return refuse(format!("Invalid filter '{source}': missing comparator")),
    };
    let value = if op == Comparison::In {
        in_list.map(Literal::List).parse_next(input)?
    } else {
        match opt(any).parse_next(input)? {
            Some(Token::Str(s)) => Literal::Str(s.clone()),
            Some(Token::Num(n)) => Literal::Num(n.clone()),
            Some(other) => {
                return refuse(format!(
                    "Invalid filter '{source}': expected a quoted value, found {}",
                    describe(other)
                ));
            }
            None => return refuse(format!("Invalid filter '{source}': missing value")),
        }
    };
    Ok(Clause { key, op, value })
}

/// The next token, if any. Spelled out once so the error type is fixed for every caller.
fn next_token<'t>(input: &mut Tokens<'t>) -> Step<Option<&'t Token>> {
    opt(any).parse_next(input)
}

/// `('a', 'b', …)`: at least one quoted string.
fn in_list(input: &mut Tokens<'_>) -> Step<Vec<String>> {
    let is = |wanted: Token| move |t: &Token| *t == wanted;
    let quoted_string = |input: &mut Tokens<'_>| match next_token(input) {
        Ok(Some(Token::Str(s))) => Ok(s.clone()),
        _ => refuse("IN lists must hold quoted strings, e.g. IN ('a', 'b')"),
    };
    let open = |input: &mut Tokens<'_>| match opt(one_of(is(Token::LParen))).parse_next(input)? {
        Some(_) => Ok(()),
        None => refuse("IN must be followed by a parenthesized list of quoted strings"),
    };
    let close = |input: &mut Tokens<'_>| match opt(one_of(is(Token::RParen))).parse_next(input)? {
        Some(_) => Ok(()),
        None => refuse("IN list is not closed with ')'"),
    };
    delimited(
        open,
        separated(1.., quoted_string, one_of(is(Token::Comma))),
        close,
    )
    .parse_next(input)
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

/// Writes clauses back as MLflow filter text that [`parse_filter`] reads as the same clauses:
/// tag keys in backticks, strings in single quotes, embedded quotes doubled.
pub fn format_filter(clauses: &[Clause]) -> String {
    let quote = |text: &str, quote: char| {
        let doubled = text.replace(quote, &format!("{quote}{quote}"));
        format!("{quote}{doubled}{quote}")
    };
    let printed: Vec<String> = clauses
        .iter()
        .map(|clause| {
            let key = match &clause.key {
                Key::Attribute(name) => format!("attribute.{}", quote(name, '`')),
                Key::Tag(name) => format!("tags.{}", quote(name, '`')),
            };
            let op = match clause.op {
                Comparison::Eq => "=",
                Comparison::Ne => "!=",
                Comparison::Like => "LIKE",
                Comparison::ILike => "ILIKE",
                Comparison::In => "IN",
                Comparison::Lt => "<",
                Comparison::Le => "<=",
                Comparison::Gt => ">",
                Comparison::Ge => ">=",
            };
            let value = match &clause.value {
                Literal::Str(s) => quote(s, '\''),
                Literal::Num(n) => n.clone(),
                Literal::List(items) => {
                    let items: Vec<String> = items.iter().map(|s| quote(s, '\'')).collect();
                    format!("({})", items.join(", "))
                }
            };
            format!("{key} {op} {value}")
        })
        .collect();
    printed.join(" AND ")
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

fn version_literal(raw: &str) -> Result<i64, SearchError> {
    raw.parse::<i64>().map_err(|_| {
        SearchError(format!(
            "Invalid version_number '{raw}': must be an integer"
        ))
    })
}

/// `version_number` is MLflow's one numeric search attribute: `=`, `!=`, `<`, `<=`, `>`, `>=`,
/// and `IN` a list. The value may be written bare (`> 1`) or quoted (`= '1'`), as MLflow
/// accepts both.
fn version_number(clause: &Clause) -> Result<VersionFilter, SearchError> {
    if let Literal::List(values) = &clause.value {
        if clause.op != Comparison::In {
            return err("version_number lists need IN");
        }
        let numbers = values
            .iter()
            .map(|v| version_literal(v))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(VersionFilter::VersionCompare(NumberMatch::In(numbers)));
    }
    let raw = match &clause.value {
        Literal::Num(n) | Literal::Str(n) => n,
        Literal::List(_) => return err("version_number lists need IN"),
    };
    let n = version_literal(raw)?;
    Ok(match clause.op {
        Comparison::Eq => VersionFilter::Version(n),
        Comparison::Ne => VersionFilter::VersionCompare(NumberMatch::Ne(n)),
        Comparison::Lt => VersionFilter::VersionCompare(NumberMatch::Lt(n)),
        Comparison::Le => VersionFilter::VersionCompare(NumberMatch::Le(n)),
        Comparison::Gt => VersionFilter::VersionCompare(NumberMatch::Gt(n)),
        Comparison::Ge => VersionFilter::VersionCompare(NumberMatch::Ge(n)),
        Comparison::Like | Comparison::ILike | Comparison::In => {
            return err("Invalid comparator for version_number: use =, !=, <, <=, >, >= or IN");
        }
    })
}

/// Version filters for `model-versions/search`.
pub fn version_filters(filter: Option<&str>) -> Result<Vec<VersionFilter>, SearchError> {
    let clauses = parse_filter(filter.unwrap_or(""))?;
    let mut filters = Vec::with_capacity(clauses.len());
    for clause in &clauses {
        let f = match &clause.key {
            Key::Attribute(a) => match a.as_str() {
                // MLflow's string attributes of a version all take IN.
                "name" => VersionFilter::Name(text_match(clause, "name", true)?),
                "run_id" => VersionFilter::RunId(text_match(clause, "run_id", true)?),
                "source_path" | "source" => {
                    VersionFilter::Source(text_match(clause, "source_path", true)?)
                }
                "version_number" | "version" => version_number(clause)?,
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
mod tests;
