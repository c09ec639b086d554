//! SIGKILL at random points of ingest, transform, score, feedback and retrain. After every kill
//! each table reads at a committed version, and the rerun leaves the lakehouse exactly as
//! one uninterrupted run would (nothing doubled, nothing missing).
//!
//! Each operation is killed ten times: once paused at its fault-injection point just
//! before its commit, and nine times after a delay spread over its measured duration.

use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::feedback::{HEADER, correction, prediction_ids, truth, two_days};
use crate::support::{Workspace, spawn_paused};

/// Kills per operation.
const KILLS: u32 = 10;

/// One operation to kill: how to give it work, the command, its fault point, and the
/// queries whose answers an uninterrupted run decides.
struct Operation<'a> {
    prepare: &'a dyn Fn(&Workspace),
    command: &'a [&'a str],
    point: &'a str,
    outcome: &'a [&'a str],
}

impl Operation<'_> {
    /// The outcome queries' answers.
    fn outcome(&self, ws: &Workspace) -> Vec<String> {
        self.outcome.iter().map(|sql| ws.csv(sql)).collect()
    }

    /// Runs the kills against copies of `base` and checks each.
    fn kill_and_rerun(&self, base: &Workspace) {
        let reference = base.duplicate();
        (self.prepare)(&reference);
        let started = Instant::now();
        reference.run(self.command).ok();
        let duration = started.elapsed();
        let expected = self.outcome(&reference);

        // A different spread of delays on every run of the suite.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        for kill in 0..KILLS {
            let ws = base.duplicate();
            (self.prepare)(&ws);
            let at = if kill == 0 {
                spawn_paused(ws.path(), self.command, self.point, None, &[]).kill();
                String::from(self.point)
            } else {
                let mut child = Command::new(env!("CARGO_BIN_EXE_lakescore"))
                    .args(self.command)
                    .current_dir(ws.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let jitter = u64::from(seed.wrapping_mul(kill + 1) % 100);
                let share = (u64::from(kill) * 100 + jitter) as f64 / f64::from(KILLS * 100);
                let delay = duration.mul_f64(share);
                std::thread::sleep(delay);
                child.kill().unwrap();
                child.wait().unwrap();
                format!("{delay:?} of {duration:?}")
            };
            every_table_reads(&ws, &at);
            ws.run(self.command).ok();
            assert_eq!(
                self.outcome(&ws),
                expected,
                "{:?} killed at {at}, then run again",
                self.command
            );
        }
    }
}

/// Every table of the lakehouse opens at its newest committed version.
fn every_table_reads(ws: &Workspace, killed_at: &str) {
    let listing = ws.run(&["tables", "--format", "json"]).ok();
    for line in listing.lines() {
        let table: Value = serde_json::from_str(line).unwrap();
        assert!(
            table["error"].is_null(),
            "killed at {killed_at}: {} cannot be read: {}",
            table["table"],
            table["error"]
        );
    }
}

const SHOP: &str = r#"
[[source]]
name = "customers"
path = "extracts/customers_*.csv"
format = "csv"
table = "raw.customers"
[source.schema]
id = { type = "string", required = true }
logins = "float"
plan = "string"
churned = "boolean"

[[model]]
name = "churn"
task = "classification"
algorithm = "random_forest"
training_table = "curated.features"
label = "churned"
key = ["id"]
params = { n_trees = 20, max_depth = 6 }
[model.features]
logins = "numeric"
plan = "categorical"
"#;

const FEATURES: &str = "SELECT id, logins, plan, churned FROM raw.customers";
const PLANS: &str = "/*\nmaterialized = \"merge\"\nkey = [\"plan\"]\n*/\n\
    SELECT plan, count(*) AS customers, avg(logins) AS logins FROM raw.customers GROUP BY plan";
const LOADS: &str = "/* materialized = \"append\" */\n\
    SELECT count(*) AS customers, max(_ingest_batch) AS batch FROM raw.customers";

/// `rows` customers from number `from` on, with a learnable churn.
fn shop_extract(from: usize, rows: usize) -> String {
    let mut text = String::from("id,logins,plan,churned\n");
    for i in from..from + rows {
        let logins = (i * 37 % 100) as f64;
        let plan = ["basic", "pro", "team"][i % 3];
        let churned = logins < 30.0 || (plan == "basic" && logins < 50.0);
        text.push_str(&format!("C{i:05},{logins},{plan},{churned}\n"));
    }
    text
}

/// A shop with one landed extract, its three models built and the churn model trained
/// and scored.
fn shop() -> Workspace {
    let ws = Workspace::init();
    ws.append_to_project(SHOP);
    ws.write_file("models/features.sql", FEATURES);
    ws.write_file("models/plans.sql", PLANS);
    ws.write_file("models/loads.sql", LOADS);
    ws.write_file("extracts/customers_1.csv", &shop_extract(0, 3000));
    ws.run(&["ingest"]).ok();
    ws.run(&["transform"]).ok();
    ws.run(&["train", "churn"]).ok();
    ws.run(&["score", "churn", "--input", "curated.features"])
        .ok();
    ws
}

/// A second extract landed: every model has work again.
fn second_extract(ws: &Workspace) {
    ws.write_file("extracts/customers_2.csv", &shop_extract(3000, 2000));
    ws.run(&["ingest"]).ok();
}

#[test]
fn ingest_killed_anywhere_reruns_to_exactly_one_landing() {
    ingest_killed_anywhere(&shop(), "extracts/customers_2.csv", 3000);
}

/// The first landing, into no table yet: files are fingerprinted as they are read, and
/// the table is created before the rows' commit.
#[test]
fn a_first_ingest_killed_anywhere_reruns_to_exactly_one_landing() {
    let base = Workspace::init();
    base.append_to_project(SHOP);
    ingest_killed_anywhere(&base, "extracts/customers_1.csv", 0);
}

/// Kills, anywhere, an ingest into `base` of `file`: several reading chunks' worth of
/// customers from `first` on, and one row for quarantine; reruns it to one landing.
fn ingest_killed_anywhere(base: &Workspace, file: &str, first: usize) {
    let prepare = |ws: &Workspace| {
        let mut extract = shop_extract(first, 60_000);
        extract.push_str("C99999,many,basic,true\n");
        ws.write_file(file, &extract);
    };
    Operation {
        prepare: &prepare,
        command: &["ingest"],
        point: "ingest-commit",
        outcome: &[
            "SELECT count(*) AS n, count(DISTINCT id) AS ids, \
             count(DISTINCT _ingest_batch) AS batches FROM raw.customers",
            "SELECT _source_row, \"column\" FROM quarantine.raw_customers",
        ],
    }
    .kill_and_rerun(base);
}

/// A first scoring into a table that does not exist yet: its files are written, then
/// one commit creates the table holding them.
#[test]
fn a_first_scoring_into_a_new_table_killed_anywhere_reruns_to_exactly_one_scoring() {
    let base = shop();
    Operation {
        prepare: &|_| {},
        command: &[
            "score",
            "churn",
            "--input",
            "curated.features",
            "--output",
            "scored.churn_fresh",
        ],
        point: "score-commit",
        outcome: &[
            "SELECT source_table_version, count(*) AS n, count(DISTINCT prediction_id) AS ids \
             FROM scored.churn_fresh GROUP BY 1 ORDER BY 1",
        ],
    }
    .kill_and_rerun(&base);
}

#[test]
fn transform_killed_anywhere_reruns_to_exactly_one_build() {
    let base = shop();
    Operation {
        prepare: &second_extract,
        command: &["transform"],
        point: "transform-commit",
        outcome: &[
            "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM curated.features",
            "SELECT plan, customers FROM curated.plans ORDER BY plan",
            "SELECT customers FROM curated.loads ORDER BY customers",
        ],
    }
    .kill_and_rerun(&base);
}

#[test]
fn score_killed_anywhere_reruns_to_exactly_one_scoring() {
    let base = shop();
    let prepare = |ws: &Workspace| {
        second_extract(ws);
        ws.run(&["transform"]).ok();
    };
    Operation {
        prepare: &prepare,
        command: &["score", "churn", "--input", "curated.features"],
        point: "score-commit",
        outcome: &[
            "SELECT source_table_version, count(*) AS n, count(DISTINCT prediction_id) AS ids \
             FROM scored.churn GROUP BY 1 ORDER BY 1",
        ],
    }
    .kill_and_rerun(&base);
}

#[test]
fn descriptions_a_killed_scoring_did_not_record_are_recorded_by_its_rerun() {
    let ws = shop();
    let project = std::fs::read_to_string(ws.path().join("lakescore.toml")).unwrap();
    ws.write_file(
        "lakescore.toml",
        &project.replace(
            "name = \"churn\"\n",
            "name = \"churn\"\ndescription = \"Customers likely to leave\"\n",
        ),
    );
    second_extract(&ws);
    ws.run(&["transform"]).ok();
    let score = ["score", "churn", "--input", "curated.features"];
    // Killed after the rows' commit, before the one with the changed description.
    spawn_paused(ws.path(), &score, "describe-commit", None, &[]).kill();
    let (before, _) = ws.delta_descriptions("scored/churn");
    assert_eq!(
        before,
        "Predictions of model churn, with explanations and lineage"
    );
    let rerun = ws.run(&score).ok();
    assert!(rerun.contains("already scored"), "{rerun}");
    let (after, columns) = ws.delta_descriptions("scored/churn");
    assert_eq!(after, "Customers likely to leave");
    assert_eq!(columns.len(), 15, "{columns:?}");
    assert_eq!(
        ws.csv(
            "SELECT count(*) AS n, count(DISTINCT source_table_version) AS inputs FROM scored.churn"
        ),
        "n,inputs\n8000,2\n",
        "both inputs scored once"
    );
}

/// Two days scored, 400 predictions confirmed or corrected by staff and landed.
fn reviewed() -> Workspace {
    let ws = Workspace::init();
    let (day2, _) = two_days(&ws, "[model.retrain]\nmin_improvement = 0.0\n");
    let ids = prediction_ids(&ws, "2");
    let truth_of: std::collections::HashMap<&str, bool> =
        day2.iter().map(|c| (c.0.as_str(), truth(c))).collect();
    let mut file = String::from(HEADER);
    for (customer, id) in ids.iter().filter(|(c, _)| c.starts_with("D2")).take(400) {
        let label = truth_of[customer.as_str()].to_string();
        file.push_str(&correction(id, "", &label, "agent", "2026-11-20T09:00:00Z"));
    }
    ws.write_file("extracts/corrections_1.csv", &file);
    ws.run(&["ingest"]).ok();
    ws
}

#[test]
fn feedback_and_retrain_killed_anywhere_rerun_to_exactly_one_result() {
    let base = reviewed();
    Operation {
        prepare: &|_| {},
        command: &["feedback", "churn"],
        point: "feedback-commit",
        outcome: &[
            "SELECT count(*) AS n, count(DISTINCT prediction_id) AS ids FROM training.churn_feedback",
            "SELECT churned, count(*) AS n FROM training.churn_feedback GROUP BY 1 ORDER BY 1",
        ],
    }
    .kill_and_rerun(&base);

    base.run(&["feedback", "churn"]).ok();
    Operation {
        prepare: &|_| {},
        command: &["retrain", "churn"],
        point: "retrain-promote",
        outcome: &[
            "SELECT count(*) AS promoted FROM ops.model_versions WHERE decision = 'promoted'",
            "SELECT training_rows, feedback_training_rows FROM ops.model_versions \
             WHERE aliases LIKE '%champion%'",
        ],
    }
    .kill_and_rerun(&base);
}
