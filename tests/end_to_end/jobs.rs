//! Jobs end to end: retries with backoff, time limits, resuming at a step, run history,
//! freshness findings, webhook alerts, catch-up, leases against a killed process, and two
//! schedulers running a nightly pipeline every minute without running a fire twice.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use deltalake::protocol::SaveMode;
use lakescore_engine::run::RunContext;
use lakescore_engine::{Lakehouse, Project, TableName};
use lakescore_jobs::alerts::{Alert, AlertKind, Alerts};
use lakescore_jobs::freshness::check_freshness;
use lakescore_jobs::history::{RunStatus, Trigger};
use lakescore_jobs::lease::{Acquired, Leases};
use lakescore_jobs::{RunJob, RunReport, Scheduler, Shutdown};
use serde_json::json;

use crate::support::{Workspace, spawn_lakescore, terminate};
use crate::webhook::Webhook;

/// A project with `toml` appended and `models` (name, SQL) written to models/.
fn project_with(toml: &str, models: &[(&str, &str)]) -> Workspace {
    let workspace = Workspace::init();
    workspace.append_to_project(toml);
    for (name, sql) in models {
        workspace.write_file(&format!("models/{name}.sql"), sql);
    }
    workspace
}

fn load(workspace: &Workspace) -> (Project, Arc<Lakehouse>) {
    let project = Project::load(&workspace.path().join("lakescore.toml")).unwrap();
    let lakehouse = Arc::new(Lakehouse::for_project(&project).unwrap());
    (project, lakehouse)
}

fn context(workspace: &Workspace) -> RunContext {
    let (project, lakehouse) = load(workspace);
    RunContext::new(Arc::new(project), lakehouse)
}

async fn run_job(workspace: &Workspace, job: &str, from: Option<&str>) -> RunReport {
    RunJob::new(&context(workspace), job)
        .with_from_step(from.map(String::from))
        .await
        .unwrap()
        .into_report(job)
        .unwrap()
}

/// Runs SQL through the binary and returns its CSV.
async fn csv(workspace: &Workspace, sql: &str) -> String {
    workspace
        .run_async(&["sql", sql, "--format", "csv"])
        .await
        .ok()
}

async fn people(workspace: &Workspace, table: &str) {
    workspace
        .write_rows(table, &[(1, "Ada"), (2, "Grace")], SaveMode::Append)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_is_retried_with_backoff_until_it_succeeds() {
    let workspace = project_with(
        r#"
[[job]]
name = "copy"
retries = 2
retry_delay = "1s"
steps = [{ transform = true }]
"#,
        &[("late_copy", "select id, name from raw.late")],
    );
    // raw.late arrives while the first retry waits.
    let started = Instant::now();
    let run = RunJob::new(&context(&workspace), "copy");
    let (report, ()) = tokio::join!(run.into_future(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        people(&workspace, "raw.late").await;
    });
    let report = report.unwrap().into_report("copy").unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(report.steps[0].attempts, 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the retry waited"
    );

    let steps = csv(
        &workspace,
        &format!(
            "select step, attempt, status, rows_written, tables_written, error is null as ok \
             from ops.step_runs where run_id = '{}' order by attempt",
            report.run_id
        ),
    )
    .await;
    assert_eq!(
        steps,
        "step,attempt,status,rows_written,tables_written,ok\n\
         transform,1,failed,0,,false\n\
         transform,2,succeeded,2,curated.late_copy@0,true\n"
    );
    let error = csv(
        &workspace,
        "select error from ops.step_runs where status = 'failed'",
    )
    .await;
    assert!(error.contains("raw.late"), "{error}");
    let run = csv(
        &workspace,
        "select job, trigger, status, steps_succeeded, rows_written, tables_written from ops.job_runs",
    )
    .await;
    assert_eq!(
        run,
        "job,trigger,status,steps_succeeded,rows_written,tables_written\n\
         copy,manual,succeeded,1,2,curated.late_copy@0\n"
    );
    // The model's commit carries the job's run id.
    let history = workspace
        .run(&["history", "curated.late_copy", "--format", "csv"])
        .ok();
    assert!(history.contains(&report.run_id), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_time_limit_is_cancelled_and_tables_keep_their_version() {
    let workspace = project_with(
        r#"
[[job]]
name = "slow_step"
steps = [{ transform = true, timeout = "1ms" }]

[[job]]
name = "slow_job"
timeout = "1ms"
steps = [{ transform = true }]
"#,
        &[("copy", "select id, name from raw.people")],
    );
    people(&workspace, "raw.people").await;
    for (job, limit) in [
        ("slow_step", "the step's timeout"),
        ("slow_job", "the job's timeout"),
    ] {
        let report = run_job(&workspace, job, None).await;
        assert_eq!(report.status, RunStatus::TimedOut, "{report:?}");
        let error = report.steps[0].error.clone().unwrap();
        assert!(
            error.contains(&format!("cancelled after 0s ({limit})")),
            "{error}"
        );
        assert!(
            error.contains("stay at their last committed versions"),
            "{error}"
        );
        let failure = report.failure().unwrap().to_string();
        assert!(
            failure.starts_with(&format!("job '{job}' timed out")),
            "{failure}"
        );
    }
    let (_, lakehouse) = load(&workspace);
    let copy = TableName::parse("curated.copy").unwrap();
    assert!(
        lakehouse.latest_version(&copy).await.is_err(),
        "no commit was made"
    );
    let statuses = csv(
        &workspace,
        "select status from ops.job_runs order by started_at",
    )
    .await;
    assert_eq!(statuses, "status\ntimed_out\ntimed_out\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_alerts_and_resumes_from_a_step() {
    let hook = Webhook::start().await;
    let workspace = project_with(
        &format!(
            r#"
[[alert]]
name = "ops"
webhook = "{url}"
[[alert]]
name = "down"
webhook = "http://127.0.0.1:9/nobody-listens"

[[job]]
name = "nightly"
on_failure = ["down", "ops"]
steps = [
  {{ name = "people", transform = ["people_copy"] }},
  {{ name = "orders", transform = ["orders_copy"] }},
]
"#,
            url = hook.url
        ),
        &[
            ("people_copy", "select id, name from raw.people"),
            (
                "orders_copy",
                "/*\n[[tests]]\nunique = \"name\"\n*/\nselect id, name from raw.orders",
            ),
        ],
    );
    people(&workspace, "raw.people").await;
    // Two orders by the same name break orders_copy's unique test.
    workspace
        .write_rows("raw.orders", &[(1, "Ada"), (2, "Ada")], SaveMode::Append)
        .await;
    let failed = run_job(&workspace, "nightly", None).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(
        failed.steps.len(),
        2,
        "people ran, orders failed: {failed:?}"
    );
    let error = failed.steps[1].error.clone().unwrap();
    assert!(error.contains("orders_copy"), "{error}");

    // The unreachable webhook did not stop the one that listens.
    let alerts = hook.received();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["lakescore"]["event"], "run_failed");
    assert_eq!(alerts[0]["lakescore"]["job"], "nightly");
    assert_eq!(alerts[0]["lakescore"]["run_id"], json!(failed.run_id));
    assert_eq!(alerts[0]["lakescore"]["details"]["step"], "orders");
    let text = alerts[0]["text"].as_str().unwrap();
    assert!(text.contains("job 'nightly' failed"), "{text}");
    assert!(text.contains("at step 'orders'"), "{text}");

    workspace
        .write_rows(
            "raw.orders",
            &[(1, "Ada"), (2, "Grace")],
            SaveMode::Overwrite,
        )
        .await;
    let resumed = run_job(&workspace, "nightly", Some("orders")).await;
    assert_eq!(resumed.status, RunStatus::Succeeded);
    let steps: Vec<&str> = resumed.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, ["orders"]);
    let runs = csv(
        &workspace,
        "select status, from_step, failed_step, steps_succeeded from ops.job_runs order by started_at",
    )
    .await;
    assert_eq!(
        runs,
        "status,from_step,failed_step,steps_succeeded\nfailed,,orders,1\nsucceeded,orders,,1\n"
    );
    // people_copy was built once, by the first run only.
    let (_, lakehouse) = load(&workspace);
    let people_copy = TableName::parse("curated.people_copy").unwrap();
    assert_eq!(lakehouse.latest_version(&people_copy).await.unwrap(), 0);

    let error = RunJob::new(&context(&workspace), "nightly")
        .with_from_step(Some(String::from("order")))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "job 'nightly' has no step 'order'; its steps are: people, orders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_that_refuse_or_hang_never_hold_up_the_sender() {
    let hook = Webhook::start().await;
    let silent = Webhook::start_silent().await;
    let workspace = project_with(
        &format!(
            r#"
[[alert]]
name = "ok"
webhook = "{ok}"
[[alert]]
name = "refused"
webhook = "http://127.0.0.1:9/hook"
[[alert]]
name = "hangs"
webhook = "{hangs}"
timeout = "300ms"
"#,
            ok = hook.url,
            hangs = silent.url
        ),
        &[],
    );
    let (project, _) = load(&workspace);
    let alert = Alert {
        kind: AlertKind::Stale,
        text: String::from("raw.crm_accounts is 2d old"),
        job: None,
        run_id: None,
        details: json!([{"table": "raw.crm_accounts"}]),
    };
    let started = Instant::now();
    let names: Vec<String> = ["ok", "refused", "hangs"].map(String::from).to_vec();
    let deliveries = Alerts::new(&project).send(&names, &alert).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let outcomes: Vec<(String, Result<u16, String>)> = deliveries
        .into_iter()
        .map(|d| (d.target, d.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            (String::from("ok"), Ok(200)),
            (
                String::from("refused"),
                Err(String::from("cannot connect to the webhook's host"))
            ),
            (
                String::from("hangs"),
                Err(String::from("the webhook did not answer in time"))
            ),
        ]
    );
    let received = hook.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["lakescore"]["event"], "stale_tables");
    assert!(
        received[0]["text"]
            .as_str()
            .unwrap()
            .ends_with("raw.crm_accounts is 2d old")
    );
    assert_eq!(
        received[0]["lakescore"]["details"][0]["table"],
        "raw.crm_accounts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_behind_its_inputs_is_stale_with_the_reason() {
    let workspace = project_with(
        r#"
[freshness.tables]
"curated.*" = { max_input_lag = "0s" }
"raw.people" = { max_age = "1h" }
"raw.never" = { max_age = "1h" }
"#,
        &[("copy", "select id, name from raw.people")],
    );
    people(&workspace, "raw.people").await;
    workspace.run(&["transform"]).ok();
    let (project, lakehouse) = load(&workspace);
    let fresh = check_freshness(&project, &lakehouse, &[], Utc::now())
        .await
        .unwrap();
    let stale: Vec<(&str, bool)> = fresh
        .iter()
        .map(|f| (f.table.as_str(), f.is_stale()))
        .collect();
    assert_eq!(
        stale,
        [
            ("curated.copy", false),
            ("raw.people", false),
            ("raw.never", true)
        ]
    );
    assert!(
        fresh[2]
            .problem
            .as_ref()
            .unwrap()
            .contains("does not exist")
    );

    people(&workspace, "raw.people").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let only = [String::from("curated.copy")];
    let results = check_freshness(&project, &lakehouse, &only, Utc::now())
        .await
        .unwrap();
    let problem = results[0].problem.clone().unwrap();
    assert!(
        problem.starts_with(
            "computed from raw.people@0, but raw.people has had version 1 for 1s (now at version 1), more than max_input_lag 0s; last written by run "
        ),
        "{problem}"
    );
    assert!(problem.ends_with(", outside any job"), "{problem}");

    let error = check_freshness(
        &project,
        &lakehouse,
        &[String::from("ops.other")],
        Utc::now(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("no [freshness.tables] rule covers ops.other"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_makes_up_a_missed_fire_once_unless_catch_up_is_off() {
    let workspace = project_with(
        r#"
[scheduler]
poll_interval = "200ms"

[freshness.tables]
"raw.people" = { max_age = "1h" }

[[job]]
name = "hourly"
schedule = "0 * * * *"
steps = [{ check = true }]

[[job]]
name = "hourly_no_catch_up"
schedule = "0 * * * *"
catch_up = false
steps = [{ check = true }]
"#,
        &[],
    );
    people(&workspace, "raw.people").await;
    let (project, lakehouse) = load(&workspace);
    // Both jobs last ran three hours ago, then no scheduler ran.
    let now = Utc::now();
    let this_hour = now
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    let leases = Leases::new(&lakehouse, Duration::from_secs(60)).unwrap();
    for job in ["hourly", "hourly_no_catch_up"] {
        let three_hours_ago = this_hour - chrono::Duration::hours(3);
        match leases
            .acquire(job, "earlier", Some(three_hours_ago))
            .await
            .unwrap()
        {
            Acquired::Lease(lease) => leases.release(lease).await.unwrap(),
            other => panic!("{other:?}"),
        }
    }
    let shutdown = Shutdown::default();
    let scheduler = Scheduler::new(Arc::new(project), lakehouse, shutdown.clone());
    let stopper = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if workspace.lakehouse().join("ops/job_runs").exists() {
                break;
            }
        }
        // Give a wrongly scheduled second run time to show up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        shutdown.stop.cancel();
    };
    let (report, ()) = tokio::join!(scheduler.into_future(), stopper);
    let report = report.unwrap();
    // A fire at the top of the hour during the test would add a scheduled run.
    let crossed_the_hour = Utc::now().hour() != now.hour();
    if !crossed_the_hour {
        assert_eq!(report.runs, 1, "{report:?}");
    }
    let runs = csv(
        &workspace,
        "select job, trigger, scheduled_for, status from ops.job_runs where trigger = 'catch_up'",
    )
    .await;
    assert_eq!(
        runs,
        format!(
            "job,trigger,scheduled_for,status\nhourly,{},{},succeeded\n",
            Trigger::CatchUp.as_str(),
            this_hour.format("%Y-%m-%dT%H:%M:%SZ")
        )
    );
}

/// Waits until a run has recorded its first step attempt in ops.step_runs.
async fn first_attempt_recorded(workspace: &Workspace) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !workspace.lakehouse().join("ops/step_runs").exists() {
        assert!(
            Instant::now() < deadline,
            "the first attempt never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_blocks_its_job_only_until_its_lease_expires() {
    let workspace = project_with(
        r#"
[scheduler]
lease_ttl = "2s"

[[job]]
name = "copy"
retries = 3
retry_delay = "1h"
steps = [{ transform = true }]
"#,
        &[("copy", "select id, name from raw.people")],
    );
    // The first run fails (no raw.people yet) and waits an hour to retry, holding the lease.
    let mut first = spawn_lakescore(&workspace, &["run", "copy"]);
    first_attempt_recorded(&workspace).await;
    let busy = workspace.run(&["run", "copy"]).fails_with(2);
    assert!(busy.contains("job 'copy' is already running"), "{busy}");

    first.kill().unwrap();
    first.wait().unwrap();
    people(&workspace, "raw.people").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let out = workspace.run(&["run", "copy"]).ok();
    assert!(out.contains("job copy succeeded"), "{out}");
    let runs = csv(
        &workspace,
        "select status, error like '%stopped renewing%' as explained from ops.job_runs order by started_at",
    )
    .await;
    assert_eq!(runs, "status,explained\nabandoned,true\nsucceeded,\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_run_cleanly_and_records_it_as_cancelled() {
    let workspace = project_with(
        r#"
[[job]]
name = "copy"
retries = 3
retry_delay = "1h"
steps = [{ transform = true }, { check = true }]
"#,
        &[("copy", "select id, name from raw.people")],
    );
    // The first attempt fails (no raw.people yet); the run then waits an hour to retry.
    let run = spawn_lakescore(&workspace, &["run", "copy"]);
    first_attempt_recorded(&workspace).await;
    terminate(&run);
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("stopping after the running step"),
        "{stderr}"
    );
    assert!(stderr.contains("job 'copy' cancelled"), "{stderr}");
    let runs = csv(
        &workspace,
        "select status, failed_step, error like '%not retried: the run was stopped%' as why from ops.job_runs",
    )
    .await;
    assert_eq!(runs, "status,failed_step,why\ncancelled,transform,true\n");
    // The lease was released: the next run starts at once.
    people(&workspace, "raw.people").await;
    workspace.run(&["run", "copy"]).ok();
}

const PIPELINE: &str = r#"
[scheduler]
poll_interval = "1s"

[[alert]]
name = "ops"
webhook = "WEBHOOK_URL"

[[source]]
name = "customers"
path = "extracts/customers_*.csv"
format = "csv"
table = "raw.customers"
[source.schema]
customer_id = { type = "string", required = true }
logins = "float"
contract = "string"
churned = "boolean"

[[model]]
name = "churn"
task = "classification"
algorithm = "logistic_regression"
training_table = "curated.customers"
label = "churned"
key = ["customer_id"]
[model.features]
logins = "numeric"
contract = "categorical"

[freshness]
on_stale = ["ops"]
[freshness.tables]
"raw.*" = { max_age = "MAX_AGE" }
"scored.churn" = { max_input_lag = "10m" }

[[job]]
name = "nightly"
schedule = "* * * * *"
on_failure = ["ops"]
steps = [
  { ingest = true },
  { transform = true },
  { score = "churn", input = "curated.customers" },
  { check = true },
]
"#;

fn customers(day: usize) -> String {
    let mut csv = String::from("customer_id,logins,contract,churned\n");
    for i in 0..200 {
        let logins = (i * 7 + day * 3) % 40;
        let contract = ["monthly", "yearly"][i % 2];
        let churned = logins < 12 && contract == "monthly";
        csv.push_str(&format!("C{day}{i:04},{logins},{contract},{churned}\n"));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_run_the_nightly_pipeline_every_minute_once_and_a_missing_extract_alerts() {
    let hook = Webhook::start().await;
    let workspace = project_with(
        &PIPELINE
            .replace("WEBHOOK_URL", &hook.url)
            .replace("MAX_AGE", "1h"),
        &[(
            "customers",
            "select customer_id, logins, contract, churned from raw.customers",
        )],
    );
    workspace.write_file("extracts/customers_1.csv", &customers(1));
    workspace.run(&["ingest"]).ok();
    workspace.run(&["transform"]).ok();
    workspace.run(&["train", "churn"]).ok();
    workspace.write_file("extracts/customers_2.csv", &customers(2));

    let schedulers = [
        spawn_lakescore(&workspace, &["scheduler"]),
        spawn_lakescore(&workspace, &["scheduler", "--log-format", "json"]),
    ];
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        assert!(
            Instant::now() < deadline,
            "no scheduled run finished in time"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        if workspace.lakehouse().join("ops/job_runs").exists() {
            let done = csv(&workspace, "select count(*) as n from ops.job_runs").await;
            if done != "n\n0\n" {
                break;
            }
        }
    }
    let mut logs = Vec::new();
    for child in schedulers {
        terminate(&child);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        logs.push(stderr);
    }
    assert!(logs[0].contains("scheduler started"), "{}", logs[0]);
    let json_line = logs[1].lines().next().unwrap();
    let event: serde_json::Value = serde_json::from_str(json_line).unwrap();
    assert_eq!(event["message"], "scheduler started", "{json_line}");

    // Every fire ran exactly once, whichever scheduler claimed it.
    let duplicates = csv(
        &workspace,
        "select count(*) as fires_run_twice from (select scheduled_for from ops.job_runs \
         group by scheduled_for having count(*) > 1)",
    )
    .await;
    assert_eq!(duplicates, "fires_run_twice\n0\n");
    let first = csv(
        &workspace,
        "select run_id, trigger, status, steps_succeeded, tables_written like '%scored.churn@%' as scored \
         from ops.job_runs order by started_at limit 1",
    )
    .await;
    let row: Vec<&str> = first.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[1..], ["schedule", "succeeded", "4", "true"], "{first}");
    let run_id = row[0];
    let steps = csv(
        &workspace,
        &format!(
            "select step, status from ops.step_runs where run_id = '{run_id}' order by started_at"
        ),
    )
    .await;
    assert_eq!(
        steps,
        "step,status\ningest,succeeded\ntransform,succeeded\nscore,succeeded\ncheck,succeeded\n"
    );
    let scored = csv(
        &workspace,
        &format!("select count(*) as n from scored.churn where run_id = '{run_id}'"),
    )
    .await;
    assert_eq!(scored, "n\n400\n", "both days' customers");
    let listing = workspace.run(&["runs", "nightly", "--format", "csv"]).ok();
    assert!(listing.contains(run_id), "{listing}");

    // No extract arrives any more; once raw.customers is older than max_age, the
    // check step fails and the job alerts.
    let project_file = workspace.path().join("lakescore.toml");
    let text = std::fs::read_to_string(&project_file).unwrap();
    std::fs::write(
        &project_file,
        text.replace("max_age = \"1h\"", "max_age = \"1s\""),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let failed = workspace.run_async(&["run", "nightly"]).await;
    let error = failed.fails_with(3);
    assert!(error.contains("job 'nightly' failed"), "{error}");
    assert!(error.contains("at step 'check': 1 stale table:"), "{error}");
    assert!(error.contains("raw.customers: last commit"), "{error}");
    assert!(error.contains("but max_age is 1s"), "{error}");
    assert!(
        error.contains(&format!("last written by job 'nightly' (run {run_id})")),
        "{error}"
    );
    let alerts = hook.received();
    let alert = alerts
        .iter()
        .find(|a| a["lakescore"]["event"] == "run_failed")
        .expect("a run_failed alert");
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .contains("raw.customers: last commit"),
        "{alert}"
    );

    let check = workspace.run_async(&["check", "--format", "csv"]).await;
    assert_eq!(check.code, 3, "{}", check.stderr);
    assert!(
        check.stdout.contains("raw.customers,raw.*,"),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains(",stale,"), "{}", check.stdout);
    assert!(
        hook.received()
            .iter()
            .any(|a| a["lakescore"]["event"] == "stale_tables"),
        "lakescore check alerts on_stale"
    );
}
