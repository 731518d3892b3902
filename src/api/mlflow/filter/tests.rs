//! Tests of the MLflow search language: the forms clients send, refusals, limits, and a
//! property test that printing and parsing agree.

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
fn version_number_takes_every_numeric_comparator_and_strings_take_in() {
    let f = version_filters(Some(
        "version_number > 1 AND version_number >= 2 AND version_number < 9 AND \
         version_number <= '8' AND version_number != 5 AND version_number IN ('3', '4')",
    ))
    .unwrap();
    assert_eq!(
        f,
        vec![
            VersionFilter::VersionCompare(NumberMatch::Gt(1)),
            VersionFilter::VersionCompare(NumberMatch::Ge(2)),
            VersionFilter::VersionCompare(NumberMatch::Lt(9)),
            VersionFilter::VersionCompare(NumberMatch::Le(8)),
            VersionFilter::VersionCompare(NumberMatch::Ne(5)),
            VersionFilter::VersionCompare(NumberMatch::In(vec![3, 4])),
        ]
    );
    let f = version_filters(Some("name IN ('a', 'b') AND source_path IN ('s3://x')")).unwrap();
    assert_eq!(
        f,
        vec![
            VersionFilter::Name(TextMatch::In(vec!["a".into(), "b".into()])),
            VersionFilter::Source(TextMatch::In(vec!["s3://x".into()])),
        ]
    );
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
        "run_id IN 'a'",
        "current_stage = 'Prod'",
        "version_number LIKE '2'",
        "version_number > 'two'",
        "foo = 'x'",
        "name = 'a' AND",
        "name ~ 'a'",
    ] {
        assert!(version_filters(Some(bad)).is_err(), "{bad}");
    }
    assert!(model_filters(Some("run_id = 'x'")).is_err());
    // A registered model's name takes no IN in MLflow; a version's name does.
    assert!(model_filters(Some("name IN ('a')")).is_err());
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

#[test]
fn refusals_keep_their_messages() {
    let message = |filter: &str| parse_filter(filter).unwrap_err().0;
    assert_eq!(
        message("name = 'a' OR name = 'b'"),
        "Invalid clause(s) in filter string: OR"
    );
    assert_eq!(
        message("name = 'a' name = 'b'"),
        "Invalid filter 'name = 'a' name = 'b'': expected AND between comparisons, found 'name'"
    );
    assert_eq!(
        message("name = 'a' AND"),
        "Invalid filter 'name = 'a' AND': dangling AND"
    );
    assert_eq!(message("name"), "Invalid filter 'name': missing comparator");
    assert_eq!(message("name ="), "Invalid filter 'name =': missing value");
    assert_eq!(
        message("name = ("),
        "Invalid filter 'name = (': expected a quoted value, found '('"
    );
    assert_eq!(
        message("= 'a'"),
        "Invalid filter '= 'a'': expected a field name, found '='"
    );
    assert_eq!(
        message("name 'a'"),
        "Invalid filter 'name 'a'': expected a comparator, found 'a'"
    );
    // Positions count characters, not bytes: `é` is two bytes in UTF-8.
    assert_eq!(
        message("é = 'unterminated"),
        "Invalid filter string: unterminated ' starting at position 4"
    );
    assert_eq!(
        message("tags.`open = 'x'"),
        "Invalid filter string: unterminated ` starting at position 5"
    );
    assert_eq!(
        message("name ! 'a'"),
        "Invalid filter string: '!' must be followed by '='"
    );
    assert_eq!(
        message("name ~ 'a'"),
        "Invalid filter string: unexpected character '~'"
    );
    assert_eq!(
        message("run_id NOT IN ('a')"),
        "Invalid comparator 'NOT': NOT, NOT IN and NOT LIKE are not supported"
    );
    assert_eq!(
        message("run_id IN 'a'"),
        "IN must be followed by a parenthesized list of quoted strings"
    );
    assert_eq!(
        message("run_id IN ('a', 3)"),
        "IN lists must hold quoted strings, e.g. IN ('a', 'b')"
    );
    assert_eq!(
        message("run_id IN ()"),
        "IN lists must hold quoted strings, e.g. IN ('a', 'b')"
    );
    assert_eq!(
        message("run_id IN ('a' 'b')"),
        "IN list is not closed with ')'"
    );
    // A broken quote is reported even when the grammar fails earlier.
    assert_eq!(
        message("name name = 'x"),
        "Invalid filter string: unterminated ' starting at position 12"
    );
}

#[test]
fn lexical_corners() {
    assert_eq!(
        parse_filter("  attr.Name<>'x'  and tag.\"k\"\"q\" >= -1.5 ").unwrap(),
        vec![
            Clause {
                key: Key::Attribute("name".into()),
                op: Comparison::Ne,
                value: Literal::Str("x".into()),
            },
            Clause {
                key: Key::Tag("k\"q".into()),
                op: Comparison::Ge,
                value: Literal::Num("-1.5".into()),
            },
        ]
    );
    assert_eq!(parse_filter(" \t\n").unwrap(), vec![]);
    assert_eq!(
        parse_filter("name = ''''").unwrap()[0].value,
        Literal::Str("'".into())
    );
}

#[test]
fn filters_over_the_size_limit_are_refused_naming_it() {
    let padding = " ".repeat(MAX_FILTER_BYTES);
    let at_limit = format!(
        "name = 'a'{}",
        &padding[..MAX_FILTER_BYTES - "name = 'a'".len()]
    );
    assert_eq!(at_limit.len(), MAX_FILTER_BYTES);
    assert!(parse_filter(&at_limit).is_ok());
    let over = format!("{at_limit} ");
    let message = version_filters(Some(&over)).unwrap_err().0;
    assert!(message.contains("65536 bytes"), "{message}");
    assert!(
        message.contains(&(MAX_FILTER_BYTES + 1).to_string()),
        "{message}"
    );
}

#[test]
fn filters_with_too_many_clauses_are_refused_naming_the_limit() {
    let clauses = |n: usize| {
        (0..n)
            .map(|i| format!("tags.k{i} = 'v'"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    assert_eq!(
        model_filters(Some(&clauses(MAX_FILTER_CLAUSES)))
            .unwrap()
            .len(),
        MAX_FILTER_CLAUSES + 1,
        "the implicit prompt clause does not count against the limit"
    );
    let message = model_filters(Some(&clauses(MAX_FILTER_CLAUSES + 1)))
        .unwrap_err()
        .0;
    assert!(message.contains("101 AND-ed clauses"), "{message}");
    assert!(message.contains("limit of 100"), "{message}");
}

mod round_trip {
    use proptest::prelude::*;

    use super::super::{Clause, Comparison, Key, Literal, MAX_FILTER_CLAUSES};
    use super::super::{format_filter, parse_filter};

    /// Any text, including quotes of every kind, blanks and non-ASCII letters.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_.%-]{0,12}",
            "[ '\"`a-z]{0,8}",
            any::<String>().prop_map(|s| s.chars().take(12).collect()),
        ]
    }

    fn key() -> impl Strategy<Value = Key> {
        prop_oneof![
            // Attribute names come out of the parser ASCII-lowercased.
            text().prop_map(|s| Key::Attribute(s.to_ascii_lowercase())),
            text().prop_map(Key::Tag),
        ]
    }

    fn clause() -> impl Strategy<Value = Clause> {
        let scalar = prop_oneof![
            text().prop_map(Literal::Str),
            "-?[0-9][0-9.]{0,6}".prop_map(Literal::Num),
        ];
        let scalar_op = prop_oneof![
            Just(Comparison::Eq),
            Just(Comparison::Ne),
            Just(Comparison::Like),
            Just(Comparison::ILike),
            Just(Comparison::Lt),
            Just(Comparison::Le),
            Just(Comparison::Gt),
            Just(Comparison::Ge),
        ];
        prop_oneof![
            (key(), scalar_op, scalar).prop_map(|(key, op, value)| Clause { key, op, value }),
            (key(), prop::collection::vec(text(), 1..4)).prop_map(|(key, items)| Clause {
                key,
                op: Comparison::In,
                value: Literal::List(items),
            }),
        ]
    }

    proptest! {
        #[test]
        fn printed_filters_parse_back_to_the_same_clauses(
            clauses in prop::collection::vec(clause(), 0..8)
        ) {
            let printed = format_filter(&clauses);
            prop_assert_eq!(parse_filter(&printed), Ok(clauses), "{}", printed);
        }

        #[test]
        fn the_clause_limit_is_exact(extra in 0usize..3) {
            let clause = Clause {
                key: Key::Tag("k".into()),
                op: Comparison::Eq,
                value: Literal::Str("v".into()),
            };
            let clauses = vec![clause; MAX_FILTER_CLAUSES - 1 + extra];
            let parsed = parse_filter(&format_filter(&clauses));
            prop_assert_eq!(parsed.is_ok(), clauses.len() <= MAX_FILTER_CLAUSES);
        }
    }
}
