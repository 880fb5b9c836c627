use super::glob;

#[test]
fn glob_matches_stars_and_exact_names() {
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
            glob(pattern, identity),
            expected,
            "{pattern:?} {identity:?}"
        );
    }
}
