//! `vouch demo`: README's main job, as a user runs it.

use crate::support::Scratch;

#[test]
fn the_demo_shows_each_outcome_and_exits_0() {
    let s = Scratch::new();
    let out = s.run(&["demo"]).ok();
    for needle in [
        "401",
        "403",
        "missing_signature",
        "digest_mismatch",
        "replayed",
        "forbidden",
    ] {
        assert!(
            out.contains(needle),
            "the demo should show {needle}:\n{out}"
        );
    }
    assert!(out.lines().count() >= 9, "{out}");
}
