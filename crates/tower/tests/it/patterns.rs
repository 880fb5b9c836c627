//! `Patterns`: the allowlist of `*` patterns the CLI and the Python package configure.

use vouch_tower::{Allowlist, Patterns};

#[test]
fn patterns_match_stars_and_exact_names() {
    for (pattern, identity, expected) in [
        ("*@agents.example", "worker@agents.example", true),
        ("*@agents.example", "worker@evil.example", false),
        ("*@agents.example", "@agents.example", true),
        ("a@b", "a@b", true),
        ("a@b", "a@bc", false),
        ("*", "", true),
        ("*", "anything", true),
        ("https://agents.example/*", "https://agents.example/a", true),
        (
            "https://agents.example/*",
            "https://agents.example.evil/a",
            false,
        ),
        ("a*b*c", "abc", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "acb", false),
        ("ab*ba", "aba", false),
        ("", "", true),
        ("", "x", false),
    ] {
        assert_eq!(
            Patterns::new([pattern]).admits(identity),
            expected,
            "{pattern:?} {identity:?}"
        );
    }
}

#[test]
fn patterns_admit_on_any_match_and_none_admit_nobody() {
    let list = Patterns::new(["a@b", "https://agents.example/*"]);
    assert!(list.admits("a@b"));
    assert!(list.admits("https://agents.example/x"));
    assert!(!list.admits("c@d"));
    assert!(!Patterns::new(Vec::<String>::new()).admits("a@b"));
}
