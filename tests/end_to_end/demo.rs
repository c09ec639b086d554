//! The README's first command: `lakescore demo` builds, lands and summarizes a project, and
//! every query it suggests runs.

use crate::support::lakescore;

#[test]
fn the_demo_plays_two_days_of_the_whole_loop_and_every_suggested_query_runs() {
    let home = tempfile::tempdir().unwrap();
    let out = lakescore(
        home.path(),
        &["demo", "demo-project", "--customers", "1000"],
    )
    .ok();
    for expected in [
        "day 1: generated 7966 extract records in 7 files (9 broken on purpose)",
        "raw.crm_accounts <- crm_accounts: 1 file landed, 998 rows, 2 quarantined -> version 1",
        "raw.crm_contacts <- crm_contacts: 1 file landed, 1965 rows, 2 quarantined -> version 1",
        "raw.crm_tickets <- crm_tickets: 1 file landed, 209 rows, 1 quarantined -> version 1",
        "raw.erp_customers <- erp_customers: 1 file landed, 999 rows, 1 quarantined -> version 1",
        "raw.erp_invoices <- erp_invoices: 1 file landed, 499 rows, 1 quarantined -> version 1",
        "raw.erp_payments <- erp_payments: 1 file landed, 329 rows, 1 quarantined -> version 1",
        "raw.usage_events <- usage_events: 1 file landed, 2958 rows, 1 quarantined -> version 1",
        // Day 1: the SQL models, the churn model, its scores, and no drift against itself.
        "✓ customers -> curated.customers: version 0 (merge, 998 rows, 4/4 tests passed)",
        "✓ contacts -> curated.contacts: version 0 (overwrite, 1965 rows,",
        "✓ customer_activity -> curated.customer_activity: version 0 (overwrite,",
        "✓ customer_features -> curated.customer_features: version 0 (overwrite, 998 rows)",
        "churn_risk:1 trained on curated.customer_features@0",
        "scored.churn_risk <- curated.customer_features@0 scored with churn_risk:1: 998 rows -> version 0",
        "no retraining needed",
        // Day 2: the nightly job closes the loop.
        "day 2: generated 4427 extract records in 8 files (11 broken on purpose)",
        "8 new files,",
        "4 of 4 models built,",
        "scored 998 rows with churn_risk:1 into scored.churn_risk@1",
        "features drifted, retraining requested",
        "corrected predictions, 3 corrections quarantined",
        "churn_risk:2 promoted: roc_auc ",
        "scored 998 rows with churn_risk:2 into scored.churn_risk@2",
        "11 tables fresh",
        "job nightly succeeded in",
        // The summary.
        "Drift on day 2: 6 features drifted (events, invoiced_eur, invoices, paid_eur, seconds, tickets)",
        "Realized (monitoring.model_performance): churn_risk:1 on ",
        "-> churn_risk:2 promoted",
        "psql \"host=127.0.0.1 port=5432 user=analyst dbname=lakehouse\"",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }

    let project = home.path().join("demo-project");
    let run = |args: &[&str]| lakescore(&project, args);
    let csv = |sql: &str| run(&["sql", sql, "--format", "csv"]).ok();
    // Merged CRM exports keep one row per account; the ERP's customer numbers reconcile
    // with the CRM's ids, and hand-typed contact details come out normalized.
    assert_eq!(
        csv("select count(*) as n, count(distinct account_id) as ids from raw.crm_accounts"),
        "n,ids\n998,998\n"
    );
    // (All but the one whose day-1 master record was quarantined for its date.)
    assert_eq!(
        csv("select count(*) as matched from curated.customers where country is not null"),
        "matched\n997\n"
    );
    // Invoice sums keep their cents: the table holds the query's decimal type.
    assert_eq!(
        csv(
            "select arrow_typeof(invoiced_eur) as type, sum(invoiced_eur) <> sum(round(invoiced_eur)) as has_cents from curated.customers group by 1"
        ),
        "type,has_cents\n\"Decimal128(32, 2)\",true\n"
    );
    assert_eq!(
        csv(
            "select count(*) as rejected from quarantine.raw_erp_customers where error like '%00.13.2025%'"
        ),
        "rejected\n2\n"
    );
    assert_eq!(
        csv(
            "select count(*) as bad from curated.contacts where email <> lower(trim(email)) or phone not like '+49%'"
        ),
        "bad\n0\n"
    );
    // Every customer scored by both versions, the champion's rows carrying version 2.
    assert_eq!(
        csv(
            "select model_version, count(*) as n from scored.churn_risk where source_table_version = 1 group by model_version order by model_version"
        ),
        "model_version,n\n1,998\n2,998\n"
    );
    assert_eq!(
        csv("select aliases, decision from ops.model_versions order by version"),
        "aliases,decision\n,\nchampion,promoted\n"
    );
    assert_eq!(
        csv("select count(*) as unusable from quarantine.feedback_churn_risk"),
        "unusable\n3\n"
    );
    let queries: Vec<String> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("lakescore sql \""))
        .map(|q| q.trim_end_matches('"').replace("\\\"", "\""))
        .collect();
    assert_eq!(queries.len(), 5, "{out}");
    for query in &queries {
        let result = csv(query);
        assert!(
            result.lines().count() >= 2,
            "{query} returned nothing:\n{result}"
        );
    }

    // Day 2's job run is in the run history, and its commits carry its run id.
    let runs = run(&["runs", "nightly", "--format", "csv"]).ok();
    let run_line = runs.lines().nth(1).unwrap_or_default();
    assert!(run_line.contains(",nightly,manual,succeeded,"), "{runs}");
    let run_id = run_line.split(',').next().unwrap();
    let history = run(&[
        "history",
        "training.churn_risk_feedback",
        "--limit",
        "1",
        "--format",
        "csv",
    ])
    .ok();
    assert!(history.contains(run_id), "{history}");
    let steps = run(&["runs", "--run", run_id, "--format", "csv"]).ok();
    let step_lines: Vec<&str> = steps.lines().skip(1).collect();
    let names = [
        "ingest",
        "transform",
        "score",
        "drift",
        "feedback",
        "retrain",
        "rescore",
        "check",
    ];
    assert_eq!(step_lines.len(), names.len(), "{steps}");
    for (line, step) in step_lines.iter().zip(names) {
        assert!(line.starts_with(&format!("{step},")), "{steps}");
        assert!(line.contains(",1,succeeded,"), "{steps}");
    }

    let again = lakescore(home.path(), &["demo", "demo-project"]).ok();
    assert!(again.contains("A demo project already exists"), "{again}");
    let rebuilt = lakescore(
        home.path(),
        &["demo", "demo-project", "--customers", "1000", "--force"],
    )
    .ok();
    assert!(
        rebuilt.contains("scored 998 rows with churn_risk:2 into scored.churn_risk@2"),
        "{rebuilt}"
    );
}
