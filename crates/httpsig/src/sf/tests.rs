use proptest::prelude::*;
use sfv::{Dictionary, FieldType as _, List, Parser};

use super::*;

/// A parameter: a name out of a few (so that names repeat often), and a value.
fn param() -> impl Strategy<Value = (char, u8)> {
    (prop::sample::select(vec!['p', 'q', 'r']), 0u8..4)
}

fn params() -> impl Strategy<Value = Vec<(char, u8)>> {
    prop::collection::vec(param(), 0..4)
}

/// An item: a small integer, a token or `?1`, and its parameters.
fn item() -> impl Strategy<Value = (u8, Vec<(char, u8)>)> {
    (0u8..7, params())
}

/// A member value: an item, or an inner list of items with parameters of its own.
#[derive(Debug, Clone)]
enum Value {
    Item((u8, Vec<(char, u8)>)),
    Inner(Vec<(u8, Vec<(char, u8)>)>, Vec<(char, u8)>),
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        item().prop_map(Value::Item),
        (prop::collection::vec(item(), 0..3), params()).prop_map(|(i, p)| Value::Inner(i, p)),
    ]
}

fn write_params(out: &mut String, params: &[(char, u8)]) {
    for (name, v) in params {
        match v {
            0 => out.push_str(&format!(";{name}")),
            1 => out.push_str(&format!(";{name}=?0")),
            _ => out.push_str(&format!(";{name}={v}")),
        }
    }
}

fn write_item(out: &mut String, (v, params): &(u8, Vec<(char, u8)>)) {
    if *v == TRUE {
        out.push_str("?1");
    } else if v % 2 == 0 {
        out.push_str(&v.to_string());
    } else {
        out.push_str(&format!("t{v}"));
    }
    write_params(out, params);
}

/// The item value written `?1`, and as a bare name in a dictionary.
const TRUE: u8 = 6;

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Item(i) => write_item(out, i),
        Value::Inner(items, params) => {
            out.push('(');
            for (n, i) in items.iter().enumerate() {
                if n > 0 {
                    out.push(' ');
                }
                write_item(out, i);
            }
            out.push(')');
            write_params(out, params);
        }
    }
}

fn repeats(params: &[(char, u8)]) -> bool {
    params
        .iter()
        .enumerate()
        .any(|(i, (name, _))| params[..i].iter().any(|(n, _)| n == name))
}

/// What repeats within one value, computed from the generated structure.
fn expected(value: &Value) -> Repeats {
    match value {
        Value::Item((_, p)) => Repeats {
            params: repeats(p),
            ..Repeats::default()
        },
        Value::Inner(items, p) => Repeats {
            params: repeats(p),
            item_params: items.iter().any(|(_, ip)| repeats(ip)),
            ..Repeats::default()
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The dictionary built is sfv's own, and the repeats reported are exactly those generated,
    /// per member and across instances of a repeated name.
    #[test]
    fn dictionaries_parse_as_sfv_and_report_exactly_the_repeats(
        members in prop::collection::vec((prop::sample::select(vec!['a', 'b', 'c']), value()), 0..5),
        spaces in 0usize..3,
    ) {
        let mut text = String::new();
        for (n, (name, v)) in members.iter().enumerate() {
            if n > 0 {
                text.push(',');
                text.push_str(&" ".repeat(spaces));
            }
            text.push(*name);
            match v {
                // A `true` member is written as its name and its parameters.
                Value::Item((TRUE, p)) => write_params(&mut text, p),
                _ => {
                    text.push('=');
                    write_value(&mut text, v);
                }
            }
        }
        let checked = dictionary(text.as_bytes()).unwrap();
        let reference: Dictionary = Parser::new(&text).parse().unwrap();
        prop_assert_eq!(&checked.dict, &reference, "{}", text);
        prop_assert_eq!(checked.dict.serialize(), reference.serialize());
        let mut all = Repeats::default();
        for name in ['a', 'b', 'c'] {
            let mut want = Repeats::default();
            let mut seen = 0;
            for (n, v) in &members {
                if *n == name {
                    seen += 1;
                    want = want.union(expected(v));
                }
            }
            want.name = seen > 1;
            prop_assert_eq!(checked.repeats_of(&name.to_string()), want, "{} in {}", name, text);
            all = all.union(want);
        }
        prop_assert_eq!(checked.repeats(), all);
    }

    /// Lists too; and a value that is not a structured field fails as it does for sfv.
    #[test]
    fn lists_parse_as_sfv_and_report_exactly_the_repeats(
        entries in prop::collection::vec(value(), 0..5),
    ) {
        let text = entries
            .iter()
            .map(|v| {
                let mut s = String::new();
                write_value(&mut s, v);
                s
            })
            .collect::<Vec<_>>()
            .join(", ");
        let checked = list(text.as_bytes()).unwrap();
        let reference: List = Parser::new(&text).parse().unwrap();
        prop_assert_eq!(&checked.list, &reference, "{}", text);
        let want = entries
            .iter()
            .fold(Repeats::default(), |all, v| all.union(expected(v)));
        prop_assert_eq!(checked.repeats, want, "{}", text);
    }

    /// On arbitrary bytes the parsers agree with sfv's: the same value, or both refuse.
    #[test]
    fn arbitrary_bytes_parse_as_sfv(text in "[a-c0-9=;,() ?:*\"]{0,24}") {
        let reference: Result<Dictionary, _> = Parser::new(&text).parse();
        prop_assert_eq!(dictionary(text.as_bytes()).ok().map(|c| c.dict), reference.ok());
        let reference: Result<List, _> = Parser::new(&text).parse();
        prop_assert_eq!(list(text.as_bytes()).ok().map(|c| c.list), reference.ok());
    }
}

#[test]
fn rfc_9651_examples() {
    // Last one wins, in the place of the first: the value sfv builds.
    let checked = dictionary(b"a=1, b=2;x=1;x=2, a=(3 4;y;y);z;z").unwrap();
    assert_eq!(checked.dict.serialize().unwrap(), "a=(3 4;y);z, b=2;x=2");
    assert_eq!(
        checked.repeats_of("a"),
        Repeats {
            name: true,
            params: true,
            item_params: true
        }
    );
    assert_eq!(
        checked.repeats_of("b"),
        Repeats {
            params: true,
            ..Repeats::default()
        }
    );
    assert_eq!(checked.repeats_of("zz"), Repeats::default());
    // A boolean member with parameters, and members spread over what were two field lines.
    let checked = dictionary(b"a;p;p, b=?0, a").unwrap();
    assert!(checked.repeats_of("a").name && checked.repeats_of("a").params);
    assert!(!checked.repeats_of("b").name);
    assert!(dictionary(b"a=1,").is_err());
    assert!(list(b"(a b").is_err());
}
