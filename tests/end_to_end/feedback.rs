//! The feedback loop end to end: corrections landed from a CSV export become
//! `training.churn_feedback` (point-in-time features, correction policies, quarantine,
//! idempotent reruns), realized metrics and their floor, `lakescore retrain` promoting a
//! challenger that learned a drifted segment (or keeping the champion when it did not),
//! and the whole loop as a job.

use crate::fixtures::{ChurnModel, CustomerSource, ProjectFile};
use crate::support::Workspace;

/// Day 1's customers landed whole each day, the corrections export, and a decision tree
/// trained on version 1 of the customers.
fn project() -> ProjectFile {
    ProjectFile::default()
        .source(
            CustomerSource::new("extracts/customers_*.csv", "curated.customers")
                .mode("overwrite")
                .columns(&[
                    ("logins", "float"),
                    ("contract", "string"),
                    ("newsletter", "boolean"),
                    ("churned", "boolean"),
                ]),
        )
        .with(CORRECTIONS)
        .model(
            ChurnModel::new("decision_tree", "curated.customers@1")
                .setting("params = { max_depth = 6 }")
                .features(&[
                    ("logins", "numeric"),
                    ("contract", "categorical"),
                    ("newsletter", "boolean"),
                ])
                .with("[model.drift]\ndrift_share = 0.3\n"),
        )
}

/// The corrections staff export from the CRM.
pub const CORRECTIONS: &str = r#"
[[source]]
name = "corrections"
path = "extracts/corrections_*.csv"
format = "csv"
table = "feedback.churn"
[source.schema]
prediction_id = "string"
customer_id = "string"
corrected_label = "string"
corrected_by = "string"
corrected_at = "timestamp"
comment = "string"
"#;

/// A deterministic stream of numbers in [0, 1).
struct Random(u64);

impl Random {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as f64 / (1u64 << 31) as f64
    }
}

/// One customer: id, logins, contract, newsletter.
pub(crate) type Customer = (String, f64, &'static str, bool);

/// Day 1 churns by logins and contract; on day 2 a new `trial` segment appears whose
/// customers churn exactly when they do not read the newsletter.
pub(crate) fn truth(customer: &Customer) -> bool {
    let (_, logins, contract, newsletter) = customer;
    match *contract {
        "trial" => !newsletter,
        "monthly" => *logins < 25.0,
        _ => *logins < 10.0,
    }
}

fn customers(day: u64) -> Vec<Customer> {
    let mut random = Random(17 + day);
    (0..1200)
        .map(|i| {
            let logins = (random.next() * 40.0).floor();
            let pick = random.next();
            let contract = if day >= 2 && pick < 0.4 {
                "trial"
            } else if pick < 0.7 {
                "monthly"
            } else {
                "yearly"
            };
            (
                format!("D{day}C{i:05}"),
                logins,
                contract,
                random.next() < 0.5,
            )
        })
        .collect()
}

/// The extract: day 1 carries labels, day 2's are not known yet.
fn extract(rows: &[Customer], labeled: bool) -> String {
    let mut csv = String::from("customer_id,logins,contract,newsletter,churned\n");
    for row in rows {
        let label = if labeled {
            truth(row).to_string()
        } else {
            String::new()
        };
        csv.push_str(&format!(
            "{},{},{},{},{label}\n",
            row.0, row.1, row.2, row.3
        ));
    }
    csv
}

/// `customer_id → prediction_id` of the predictions scored from `curated.customers@version`.
pub(crate) fn prediction_ids(workspace: &Workspace, version: &str) -> Vec<(String, String)> {
    workspace
        .csv(&format!(
            "select customer_id, prediction_id from scored.churn \
             where source_table_version = {version} and model_version = 1 order by customer_id"
        ))
        .lines()
        .skip(1)
        .map(|line| {
            let (customer, id) = line.split_once(',').unwrap();
            (customer.to_string(), id.to_string())
        })
        .collect()
}

fn one_value(workspace: &Workspace, sql: &str) -> String {
    let csv = workspace.csv(sql);
    csv.lines().nth(1).unwrap_or_default().to_string()
}

/// Day 1 trained and scored, day 2 (with its trial segment and one day-1 customer whose
/// logins changed) landed and scored; returns day 2's customers and an instant between
/// the two scoring runs.
pub(crate) fn two_days(workspace: &Workspace, extra: &str) -> (Vec<Customer>, String) {
    project().with(extra).append_to(workspace);
    let day1 = customers(1);
    workspace.write_file("extracts/customers_1.csv", &extract(&day1, true));
    workspace.run(&["ingest"]).ok();
    workspace.run(&["train", "churn"]).ok();
    workspace
        .run(&["score", "churn", "--input", "curated.customers"])
        .ok();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let between = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let mut day2 = customers(2);
    // The same customer, updated after its day-1 prediction.
    day2.push(("D1C00007".to_string(), 999.0, "yearly", true));
    workspace.write_file("extracts/customers_2.csv", &extract(&day2, false));
    workspace.run(&["ingest"]).ok();
    workspace
        .run(&["score", "churn", "--input", "curated.customers"])
        .ok();
    (day2, between)
}

pub(crate) fn correction(
    prediction_id: &str,
    customer: &str,
    label: &str,
    by: &str,
    at: &str,
) -> String {
    format!("{prediction_id},{customer},{label},{by},{at},\n")
}

pub(crate) const HEADER: &str =
    "prediction_id,customer_id,corrected_label,corrected_by,corrected_at,comment\n";

#[test]
fn corrections_become_a_point_in_time_training_set_and_a_promoted_champion() {
    let workspace = Workspace::init();
    let (day2, between) = two_days(
        &workspace,
        "[model.monitoring]\nmin_auc = 0.95\nmin_rows = 20\n",
    );
    let day1_logins = customers(1)[7].1;
    let ids = prediction_ids(&workspace, "2");
    assert_eq!(ids.len(), day2.len());
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();

    // Staff review 500 day-2 predictions: confirmations and corrections alike.
    let mut file = String::from(HEADER);
    let truth_of: std::collections::HashMap<&str, bool> =
        day2.iter().map(|c| (c.0.as_str(), truth(c))).collect();
    for (customer, id) in ids.iter().filter(|(c, _)| c.starts_with("D2")).take(500) {
        file.push_str(&correction(
            id,
            "",
            &truth_of[customer.as_str()].to_string(),
            "agent",
            &now,
        ));
    }
    // One prediction corrected three times.
    let (_, twice) = &ids[600];
    file.push_str(&correction(
        twice,
        "",
        "true",
        "alice",
        "2026-01-01T10:00:00Z",
    ));
    file.push_str(&correction(
        twice,
        "",
        "false",
        "bob",
        "2026-01-01T11:00:00Z",
    ));
    file.push_str(&correction(
        twice,
        "",
        "yes",
        "carol",
        "2026-01-01T09:00:00Z",
    ));
    // By key: the day-1 prediction of D1C00007, corrected after it was made and before
    // its logins changed; its features must be day 1's.
    file.push_str(&correction("", "D1C00007", "true", "dora", &between));
    // Two that cannot be used.
    file.push_str(&correction("nope-123", "", "true", "erin", &now));
    file.push_str(&correction(&ids[1].1, "", "maybe", "erin", &now));
    workspace.write_file("extracts/corrections_1.csv", &file);
    workspace.run(&["ingest"]).ok();

    let out = workspace.run(&["feedback", "churn"]).ok();
    assert!(
        out.contains(": 502 corrected predictions from 506 corrections in feedback.churn@"),
        "{out}"
    );
    assert!(out.contains("2 corrections quarantined"), "{out}");

    let quarantined = workspace
        .csv("select \"column\", error from quarantine.feedback_churn order by _source_row");
    assert!(
        quarantined.contains("prediction_id,unknown prediction_id: scored.churn has no prediction of churn with id nope-123; check the id against scored.churn"),
        "{quarantined}"
    );
    assert!(
        quarantined.contains(
            "corrected_label,\"corrected_label 'maybe' is not a class of churn (false, true)\""
        ),
        "{quarantined}"
    );

    // Point in time: the features as they were when the prediction was made.
    let pit = workspace.csv(
        "select logins, source_table_version, corrected_by, churned from training.churn_feedback \
         where customer_id = 'D1C00007'",
    );
    assert_eq!(
        pit,
        format!("logins,source_table_version,corrected_by,churned\n{day1_logins:.1},1,dora,true\n")
    );

    // latest: bob's "false" at 11:00 wins over alice and carol.
    let resolved = |workspace: &Workspace| {
        workspace.csv(&format!(
            "select churned, corrected_by, corrections, correction_policy from training.churn_feedback \
             where prediction_id = '{twice}'"
        ))
    };
    assert_eq!(
        resolved(&workspace),
        "churned,corrected_by,corrections,correction_policy\nfalse,bob,3,latest\n"
    );

    // Nothing new: nothing added.
    let again = workspace.run(&["feedback", "churn"]).ok();
    assert!(again.contains("is up to date"), "{again}");
    let history = workspace
        .run(&["history", "training.churn_feedback", "--format", "csv"])
        .ok();
    assert_eq!(history.lines().count(), 2, "{history}");
    // first: carol's "yes" (true) at 09:00; majority: true (two votes), latest of them alice.
    workspace
        .run(&["feedback", "churn", "--policy", "first"])
        .ok();
    assert_eq!(
        resolved(&workspace),
        "churned,corrected_by,corrections,correction_policy\ntrue,carol,3,first\n"
    );
    workspace
        .run(&["feedback", "churn", "--policy", "majority"])
        .ok();
    assert_eq!(
        resolved(&workspace),
        "churned,corrected_by,corrections,correction_policy\ntrue,alice,3,majority\n"
    );
    // Lineage names every input of the labels: the corrections, the predictions and the
    // feature versions they were made from.
    let lineage = workspace.run(&["lineage", "training.churn_feedback"]).ok();
    assert!(
        lineage.starts_with("training.churn_feedback@2  corrections of churn's predictions, resolved by policy majority"),
        "{lineage}"
    );
    for input in [
        "feedback.churn@",
        "scored.churn@",
        "curated.customers@1  ",
        "curated.customers@2  ",
    ] {
        assert!(lineage.contains(input), "{input} missing:\n{lineage}");
    }
    // Reruns never quarantine the same row twice.
    assert_eq!(
        one_value(&workspace, "select count(*) from quarantine.feedback_churn"),
        "2"
    );

    // Realized metrics of version 1 match the labeled rows, and the trial segment pulls
    // its ROC AUC under the floor: a retrain request.
    let realized = workspace.csv(
        "select sum(labeled_rows), round(sum(accuracy * labeled_rows) / sum(labeled_rows), 6) \
         from monitoring.model_performance where model = 'churn' and model_version = 1",
    );
    let expected = workspace.csv(
        "select count(*), round(avg(case when original_prediction = cast(churned as varchar) then 1.0 else 0.0 end), 6) \
         from training.churn_feedback where model_version = 1",
    );
    assert_eq!(
        realized.lines().nth(1),
        expected.lines().nth(1),
        "{realized}\n{expected}"
    );
    let request = workspace.csv(
        "select status, reason from monitoring.retrain_requests where request_id like 'performance-churn-1-%'",
    );
    assert!(request.contains("pending,"), "{request}");
    assert!(request.contains("below min_auc = 0.95"), "{request}");

    // The challenger learned the trial segment from the corrections and wins.
    let retrained = workspace.run(&["retrain", "churn"]).ok();
    assert!(
        retrained.contains("churn:2 trained on curated.customers@1 plus"),
        "{retrained}"
    );
    assert!(
        retrained.contains("promoted: roc_auc ") && retrained.contains("vs champion churn:1"),
        "{retrained}"
    );
    let versions = workspace.csv(
        "select version, aliases, decision, compared_with_version, feedback_training_table from ops.model_versions order by version",
    );
    assert_eq!(
        versions,
        "version,aliases,decision,compared_with_version,feedback_training_table\n1,,,,\n2,champion,promoted,1,training.churn_feedback\n"
    );
    let done = workspace.csv(
        "select status, resolved_by is not null as resolved, outcome like 'churn:2 promoted%' as promoted \
         from monitoring.retrain_requests where model = 'churn'",
    );
    assert_eq!(done, "status,resolved,promoted\ndone,true,true\n");

    // The next scoring run uses the new champion, and each of its rows leads back to the
    // corrections that trained it.
    workspace
        .run(&["score", "churn", "--input", "curated.customers"])
        .ok();
    assert_eq!(
        one_value(
            &workspace,
            "select count(*) from scored.churn where model_version = 2"
        ),
        day2.len().to_string()
    );
    let trained_on = one_value(
        &workspace,
        "select feedback_training_version from ops.model_versions where version = 2",
    );
    let label_source = workspace.csv(&format!(
        "select churned, corrected_by, feedback_table from table_at('training.churn_feedback', {trained_on}) \
         where prediction_id = '{twice}'"
    ));
    assert_eq!(
        label_source,
        "churned,corrected_by,feedback_table\ntrue,alice,feedback.churn\n"
    );
}

#[test]
fn a_challenger_no_better_than_the_champion_stays_a_challenger() {
    let workspace = Workspace::init();
    // Feedback weighted 0 is evaluated but not learned from: the challenger is the same
    // model as the champion, so it is not better by any margin.
    let (day2, _) = two_days(
        &workspace,
        "[model.retrain]\nmin_improvement = 0.02\nfeedback_weight = 0.0\n",
    );
    let ids = prediction_ids(&workspace, "2");
    assert_eq!(ids.len(), day2.len());
    // Staff confirm predictions for the segments the champion already knows.
    let known: std::collections::HashMap<&str, &Customer> =
        day2.iter().map(|c| (c.0.as_str(), c)).collect();
    let mut file = String::from(HEADER);
    for (customer, id) in ids
        .iter()
        .filter(|(c, _)| known[c.as_str()].2 != "trial")
        .take(400)
    {
        file.push_str(&correction(
            id,
            "",
            &truth(known[customer.as_str()]).to_string(),
            "agent",
            "2026-11-20T09:00:00Z",
        ));
    }
    workspace.write_file("extracts/corrections_1.csv", &file);
    workspace.run(&["ingest"]).ok();
    workspace.run(&["feedback", "churn"]).ok();

    let out = workspace.run(&["retrain", "churn"]).ok();
    assert!(out.contains("plus 0 feedback rows"), "{out}");
    assert!(out.contains("kept as challenger: roc_auc "), "{out}");
    assert!(out.contains("not better (min_improvement 0.02)"), "{out}");
    let versions =
        workspace.csv("select version, aliases, decision from ops.model_versions order by version");
    assert_eq!(
        versions,
        "version,aliases,decision\n1,champion,\n2,challenger,challenger\n"
    );
    // Scoring still uses the champion.
    let scored = workspace
        .run(&["score", "churn", "--input", "curated.customers"])
        .ok();
    assert!(
        scored.contains("already scored") || scored.contains("churn:1"),
        "{scored}"
    );
    assert_eq!(
        one_value(
            &workspace,
            "select count(*) from scored.churn where model_version = 2"
        ),
        "0"
    );
    // Without a pending request, the job step's --if-requested does nothing.
    let skipped = workspace.run(&["retrain", "churn", "--if-requested"]).ok();
    assert!(
        skipped.contains("no retrain request is pending"),
        "{skipped}"
    );
}

#[test]
fn the_nightly_job_closes_the_loop_from_drift_to_a_new_champion() {
    let workspace = Workspace::init();
    let job = r#"
[[job]]
name = "nightly"
steps = [
  { ingest = true },
  { score = "churn", input = "curated.customers" },
  { drift = "churn", table = "curated.customers" },
  { feedback = "churn" },
  { retrain = "churn" },
  { name = "rescore", score = "churn", input = "curated.customers" },
]
"#;
    project().with(job).append_to(&workspace);
    let day1 = customers(1);
    workspace.write_file("extracts/customers_1.csv", &extract(&day1, true));
    workspace.run(&["ingest"]).ok();
    workspace.run(&["train", "churn"]).ok();

    // Night 1: the trial segment arrives and drifts; no corrections exist yet, so the
    // retrain has only the old data and its challenger is no better.
    let day2 = customers(2);
    workspace.write_file("extracts/customers_2.csv", &extract(&day2, false));
    let night1 = workspace.run(&["run", "nightly"]).ok();
    assert!(night1.contains("no corrections yet"), "{night1}");
    assert!(night1.contains("churn:2 kept as challenger"), "{night1}");

    // Staff correct the trial customers' predictions during the day.
    let ids = prediction_ids(&workspace, "2");
    let truth_of: std::collections::HashMap<&str, bool> =
        day2.iter().map(|c| (c.0.as_str(), truth(c))).collect();
    let mut file = String::from(HEADER);
    for (customer, id) in ids.iter().take(500) {
        file.push_str(&correction(
            id,
            "",
            &truth_of[customer.as_str()].to_string(),
            "agent",
            "2026-11-20T09:00:00Z",
        ));
    }
    workspace.write_file("extracts/corrections_1.csv", &file);

    // Night 2: drift requests a retrain again, the corrections train a winner, and the
    // rescore step scores with it.
    let night2 = workspace.run(&["run", "nightly"]).ok();
    assert!(night2.contains("churn:3 promoted: roc_auc"), "{night2}");
    let steps = workspace.csv(
        "select step, status from ops.step_runs where run_id = \
         (select run_id from ops.job_runs order by started_at desc limit 1) order by started_at",
    );
    assert_eq!(
        steps,
        "step,status\ningest,succeeded\nscore,succeeded\ndrift,succeeded\nfeedback,succeeded\nretrain,succeeded\nrescore,succeeded\n"
    );
    let requests = workspace.csv(
        "select request_id like 'drift-%' as from_drift, status, split_part(outcome, ':', 2) as outcome \
         from monitoring.retrain_requests order by requested_at",
    );
    assert_eq!(
        requests,
        "from_drift,status,outcome\ntrue,done,2 kept as challenger\ntrue,done,3 promoted\n"
    );
    let rescored = workspace.csv(
        "select model_version, count(*) as rows from scored.churn \
         where source_table_version = 2 group by model_version order by model_version",
    );
    assert_eq!(
        rescored,
        format!("model_version,rows\n1,{n}\n3,{n}\n", n = day2.len())
    );
}

#[test]
fn feedback_that_cannot_name_its_prediction_is_refused_with_the_columns_it_needs() {
    let workspace = Workspace::init();
    let overrides = r#"
[[source]]
name = "crm_overrides"
path = "extracts/overrides_*.csv"
format = "csv"
table = "feedback.crm_overrides"
[source.schema]
account = "string"
corrected_label = "string"
corrected_at = "timestamp"
"#;
    two_days(
        &workspace,
        "[model.feedback]\ntable = \"feedback.crm_overrides\"\n",
    );
    workspace.append_to_project(overrides);
    let waiting = workspace.run(&["feedback", "churn"]).ok();
    assert!(
        waiting.contains("no corrections yet: feedback.crm_overrides does not exist. Land them with a [[source]] whose table = \"feedback.crm_overrides\", with the columns prediction_id (or the key customer_id), corrected_label, corrected_by, corrected_at and optionally comment"),
        "{waiting}"
    );
    workspace.write_file(
        "extracts/overrides_1.csv",
        "account,corrected_label,corrected_at\nD2C00001,true,2026-11-20T09:00:00Z\n",
    );
    workspace.run(&["ingest"]).ok();
    let refused = workspace.run(&["feedback", "churn"]).fails_with(1);
    assert!(
        refused.contains("feedback.crm_overrides has no column 'prediction_id': feedback for model 'churn' needs prediction_id (or the key customer_id), corrected_label, corrected_by, corrected_at and optionally comment (found: account, corrected_label, corrected_at, _source_file"),
        "{refused}"
    );
    assert!(
        !refused.contains("panicked") && !refused.contains("backtrace"),
        "{refused}"
    );
}
