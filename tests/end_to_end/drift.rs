//! Drift end to end: a model trained on day 1, a day-2 extract in which two features
//! moved, `lakescore drift` flagging exactly those, the monitoring tables, the HTML
//! report, and the drift job step alerting `on_drift`.

use crate::fixtures::{ChurnModel, CustomerSource, ProjectFile};
use crate::support::Workspace;
use crate::webhook::Webhook;

/// Customers landed whole each day, a logistic churn model on them (with `model`'s extra
/// sections), and a `monitor` job alerting `webhook` on drift.
fn project(webhook: &str, model: &str) -> ProjectFile {
    ProjectFile::default()
        .with(&format!(
            "[[alert]]\nname = \"ops\"\nwebhook = \"{webhook}\"\n"
        ))
        .source(
            CustomerSource::new("extracts/customers_*.csv", "curated.customers").mode("overwrite"),
        )
        .model(ChurnModel::new("logistic_regression", "curated.customers").with(model))
        .with(
            "[[job]]\nname = \"monitor\"\non_drift = [\"ops\"]\n\
             steps = [{ drift = \"churn\", table = \"curated.customers\" }]\n",
        )
}

/// One day of customers; `shifted` moves logins up and makes monthly contracts common.
fn customers(day: u64, shifted: bool) -> String {
    let mut state: u64 = 11 + day;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut csv = String::from("customer_id,logins,revenue,contract,newsletter,churned\n");
    for i in 0..1500 {
        let logins = (next() * 40.0).floor() + if shifted { 15.0 } else { 0.0 };
        let revenue = (next() * 1000.0).round();
        let monthly_share = if shifted { 0.8 } else { 0.4 };
        let contract = if next() < monthly_share {
            "monthly"
        } else {
            "yearly"
        };
        let newsletter = next() < 0.5;
        let churned = 1.5 - logins / 10.0 + if contract == "monthly" { 1.0 } else { -0.5 } > 0.0;
        csv.push_str(&format!(
            "D{day}C{i:05},{logins},{revenue},{contract},{newsletter},{churned}\n"
        ));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shifted_batch_flags_exactly_the_shifted_features_and_requests_retraining() {
    let hook = Webhook::start().await;
    let workspace = Workspace::init();
    project(&hook.url, "").append_to(&workspace);
    workspace.write_file("extracts/customers_1.csv", &customers(1, false));
    workspace.run_async(&["ingest"]).await.ok();
    workspace.run_async(&["train", "churn"]).await.ok();
    workspace
        .run_async(&["score", "churn", "--input", "curated.customers"])
        .await
        .ok();

    // Day 1 against its own training data: nothing moved.
    let same = workspace
        .run_async(&["drift", "churn", "--table", "curated.customers"])
        .await
        .ok();
    assert!(same.contains("no retraining needed"), "{same}");
    assert!(!same.contains("DRIFTED"), "{same}");

    workspace.write_file("extracts/customers_2.csv", &customers(2, true));
    workspace.run_async(&["ingest"]).await.ok();
    workspace
        .run_async(&["score", "churn", "--input", "curated.customers"])
        .await
        .ok();
    let report_file = workspace.path().join("drift.html");
    let out = workspace
        .run_async(&[
            "drift",
            "churn",
            "--table",
            "curated.customers",
            "--report",
            report_file.to_str().unwrap(),
        ])
        .await
        .ok();
    assert!(
        out.starts_with(
            "churn:1 on curated.customers@2 against its training data curated.customers@1"
        ),
        "{out}"
    );
    assert!(
        out.contains("retraining requested: 2 of 4 features drifted (logins, contract)"),
        "{out}"
    );
    let verdict = |column: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{column} ")))
            .map(|l| l.contains("DRIFTED"))
            .unwrap_or_else(|| panic!("no line for {column}:\n{out}"))
    };
    assert!(verdict("logins") && verdict("contract"));
    assert!(!verdict("revenue") && !verdict("newsletter"));
    assert!(!out.contains("-0.000"), "{out}");

    let flagged = workspace.csv(
        "select distinct column_name from monitoring.drift_metrics \
         where column_drifted and data_type <> 'prediction' \
         and current_version = 2 order by column_name",
    );
    assert_eq!(flagged, "column_name\ncontract\nlogins\n");
    let psi = workspace.csv(
        "select threshold, drifted from monitoring.drift_metrics \
         where column_name = 'logins' and metric = 'psi' and current_version = 2",
    );
    assert_eq!(psi, "threshold,drifted\n0.2,true\n");
    let requests = workspace.csv(
        "select model, model_version, status, reason like '%logins%' as names_logins \
         from monitoring.retrain_requests",
    );
    assert_eq!(
        requests,
        "model,model_version,status,names_logins\nchurn,1,pending,true\n"
    );

    let html = std::fs::read_to_string(&report_file).unwrap();
    assert!(html.contains("Retraining requested"), "report verdict");
    assert!(html.contains("<svg"), "histograms drawn as SVG");
    assert!(!html.contains("<script"), "no scripts");
    let position = |name: &str| html.find(&format!("<h2>{name} ")).unwrap();
    assert!(
        position("logins") < position("revenue"),
        "drifted features come first"
    );
    assert!(position("contract") < position("newsletter"));
    let kept = workspace.lakehouse().join("_reports/drift/churn");
    assert_eq!(
        std::fs::read_dir(kept).unwrap().count(),
        2,
        "one report per run"
    );

    // As a job step, the retrain request alerts on_drift.
    let job = workspace.run_async(&["run", "monitor"]).await.ok();
    assert!(
        job.contains("2 of 4 features drifted, retraining requested"),
        "{job}"
    );
    let alerts = hook.received();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["lakescore"]["event"], "drift");
    assert_eq!(
        alerts[0]["lakescore"]["details"]["drifted_features"],
        serde_json::json!(["logins", "contract"])
    );

    // The current rows may also be the ones landed after a version, or in a window.
    for (args, described) in [
        (
            ["--since", "1"],
            "curated.customers@2, rows with _ingested_at after version 1",
        ),
        (
            ["--window", "1h"],
            "curated.customers@2, rows with _ingested_at in the last 1h",
        ),
    ] {
        let mut command = vec!["drift", "churn", "--table", "curated.customers"];
        command.extend(args);
        let out = workspace.run_async(&command).await.ok();
        assert!(out.contains(described), "{out}");
        assert!(
            out.contains("2 of 4 features drifted (logins, contract)"),
            "{out}"
        );
    }
    let nothing = workspace
        .run_async(&[
            "drift",
            "churn",
            "--table",
            "curated.customers",
            "--since",
            "2",
        ])
        .await
        .fails_with(1);
    assert!(
        nothing.contains("no rows to compare: curated.customers@2, rows with _ingested_at after version 2 selects none"),
        "{nothing}"
    );
}

#[test]
fn prediction_drift_reads_the_scored_table_the_model_declares() {
    let workspace = Workspace::init();
    project(
        "http://127.0.0.1:9/hook",
        "[model.feedback]\nscored_table = \"scored.churn_daily\"\n",
    )
    .append_to(&workspace);
    workspace.write_file("extracts/customers_1.csv", &customers(1, false));
    workspace.run(&["ingest"]).ok();
    workspace.run(&["train", "churn"]).ok();
    workspace
        .run(&[
            "score",
            "churn",
            "--input",
            "curated.customers",
            "--output",
            "scored.churn_daily",
        ])
        .ok();
    workspace
        .run(&["drift", "churn", "--table", "curated.customers"])
        .ok();
    assert_eq!(
        workspace.csv(
            "select count(*) > 0 as measured from monitoring.drift_metrics where data_type = 'prediction'"
        ),
        "measured\ntrue\n"
    );
}
