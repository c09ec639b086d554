//! The README's first command: `lakescore demo` builds, lands and summarizes a project, and
//! every query it suggests runs.

use crate::support::lakescore;

#[test]
fn the_demo_lands_two_days_and_every_suggested_query_runs() {
    let home = tempfile::tempdir().unwrap();
    let out = lakescore(home.path(), &["demo", "demo-project", "--customers", "60"]).ok();
    assert!(
        out.contains("day 1: generated 270 extract records in 3 files (4 broken on purpose)"),
        "{out}"
    );
    assert!(
        out.contains(
            "raw.crm_accounts <- crm_accounts: 1 file landed, 58 rows, 2 quarantined -> version 1"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "raw.erp_invoices <- erp_invoices: 1 file landed, 29 rows, 1 quarantined -> version 1"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "raw.usage_events <- usage_events: 1 file landed, 179 rows, 1 quarantined -> version 1"
        ),
        "{out}"
    );
    assert!(
        out.contains("raw.crm_accounts <- crm_accounts: 1 file landed,"),
        "{out}"
    );

    // Day 1 runs the SQL models; day 2 is the nightly job: landing, models, freshness.
    for expected in [
        "✓ customers -> curated.customers: version 0 (merge, 58 rows, 4/4 tests passed)",
        "✓ customer_activity -> curated.customer_activity: version 0 (overwrite,",
        "✓ customer_features -> curated.customer_features: view saved",
        "3 new files,",
        "2 of 3 models built,",
        "5 tables fresh",
        "job nightly succeeded in",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }

    let project = home.path().join("demo-project");
    let run = |args: &[&str]| lakescore(&project, args);
    // Merged CRM exports keep one row per account.
    assert_eq!(
        run(&[
            "sql",
            "select count(*) as n, count(distinct account_id) as ids from raw.crm_accounts",
            "--format",
            "csv"
        ])
        .ok(),
        "n,ids\n58,58\n"
    );
    let queries: Vec<String> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("lakescore sql \""))
        .map(|q| q.trim_end_matches('"').replace("\\\"", "\""))
        .collect();
    assert_eq!(queries.len(), 5, "{out}");
    for query in &queries {
        let result = run(&["sql", query, "--format", "csv"]).ok();
        assert!(
            result.lines().count() >= 2,
            "{query} returned nothing:\n{result}"
        );
    }
    assert_eq!(
        run(&["sql", &queries[4], "--format", "csv"]).ok(),
        "after_day_1,now\n29,58\n"
    );

    // Day 2's job run is in the run history, and its commits carry its run id.
    let runs = run(&["runs", "nightly", "--format", "csv"]).ok();
    let run_line = runs.lines().nth(1).unwrap_or_default();
    assert!(run_line.contains(",nightly,manual,succeeded,"), "{runs}");
    let run_id = run_line.split(',').next().unwrap();
    let history = run(&[
        "history",
        "raw.erp_invoices",
        "--limit",
        "1",
        "--format",
        "csv",
    ])
    .ok();
    assert!(history.contains(run_id), "{history}");
    let steps = run(&["runs", "--run", run_id, "--format", "csv"]).ok();
    let step_lines: Vec<&str> = steps.lines().skip(1).collect();
    assert_eq!(step_lines.len(), 3, "{steps}");
    for (line, step) in step_lines.iter().zip(["ingest", "transform", "check"]) {
        assert!(
            line.starts_with(&format!("{step},{step},1,succeeded,")),
            "{steps}"
        );
    }

    let again = lakescore(home.path(), &["demo", "demo-project"]).ok();
    assert!(again.contains("A demo project already exists"), "{again}");
    let rebuilt = lakescore(
        home.path(),
        &["demo", "demo-project", "--customers", "60", "--force"],
    )
    .ok();
    assert!(
        rebuilt.contains(
            "raw.erp_invoices <- erp_invoices: 1 file landed, 29 rows, 1 quarantined -> version 1"
        ),
        "{rebuilt}"
    );
}
