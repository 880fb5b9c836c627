//! The demo README runs: every outcome is the expected one, each with the right status.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_every_outcome_as_expected() {
    let report = vouch_rmcp::demo::run().await.unwrap();
    let statuses: Vec<(String, u16)> = report
        .outcomes
        .iter()
        .map(|o| (o.action.clone(), o.status))
        .collect();
    assert!(report.all_as_expected(), "{}", report.render());
    let expected = [200, 200, 401, 401, 200, 401, 403, 401, 401];
    assert_eq!(
        statuses.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        expected,
        "{statuses:?}"
    );
    let details: Vec<&str> = report.outcomes.iter().map(|o| o.detail.as_str()).collect();
    assert_eq!(details[0], "= 5");
    assert!(details[1].starts_with("= worker@agents.example"));
    for (i, reason) in [
        (2, "missing_signature"),
        (3, "digest_mismatch"),
        (5, "replayed"),
        (6, "forbidden"),
        (7, "expired"),
        (8, "holder"),
    ] {
        assert!(details[i].contains(reason), "{i}: {}", details[i]);
    }
    assert!(report.render().ends_with("9/9 outcomes as expected.\n"));
}
