//! Transforms and scoring on an Apache DataFusion Ballista cluster: an in-process
//! standalone cluster gives the same rows, versions and lineage as local mode; a cluster
//! of separate processes over a lakehouse on S3 finishes a scoring job when an executor
//! is killed under it, or fails and leaves the table untouched, a rerun scores each row
//! exactly once, and a driver killed mid-job leaves no table version; a driver that
//! cannot reach its scheduler says so.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures::{ChurnModel, CustomerSource, ProjectFile};
use crate::s3::{S3Server, SECRET_KEY};
use crate::support::Workspace;

const STANDALONE: [&str; 4] = ["--engine", "ballista", "--scheduler", "standalone"];

fn with_standalone<'a>(args: &[&'a str]) -> Vec<&'a str> {
    args.iter().copied().chain(STANDALONE).collect()
}

#[test]
fn sql_models_built_on_a_standalone_cluster_match_local_mode_row_for_row() {
    let ws = crate::transform::project();
    crate::transform::ingest(&ws);
    crate::transform::transform(&ws, &[]).ok();
    let read =
        |table: &str| crate::transform::sql(&ws, &format!("SELECT * FROM {table} ORDER BY 1"));
    let customers = read("curated.customers");
    let segments = read("curated.segments");
    assert_eq!(customers.lines().count(), 4, "{customers}");

    let cluster = crate::transform::transform(&ws, &with_standalone(&["--force"])).ok();
    assert!(
        cluster.contains(
            "✓ customers -> curated.customers: version 1 (overwrite, 3 rows, 2/3 tests passed)"
        ) && cluster.contains("✓ segments -> curated.segments: version 1 (merge, 2 rows"),
        "a forced build on the cluster commits the next version: {cluster}"
    );
    assert_eq!(read("curated.customers"), customers);
    assert_eq!(read("curated.segments"), segments);
    // Every normalization function ran on the executors, as it does locally.
    assert_eq!(
        crate::transform::sql(
            &ws,
            "SELECT count(*) AS same FROM table_at('curated.customers', 0) a \
             JOIN table_at('curated.customers', 1) b ON a.customer_id = b.customer_id \
             AND (a.email_hash IS NOT DISTINCT FROM b.email_hash) AND (a.phone IS NOT DISTINCT FROM b.phone) \
             AND (a.revenue_eur IS NOT DISTINCT FROM b.revenue_eur)"
        ),
        "same\n3\n"
    );
}

#[test]
fn scoring_on_a_standalone_cluster_matches_local_mode_and_commits_once() {
    let ws = crate::models::project();
    ws.run(&["train", "churn"]).ok();
    ws.run(&["train", "churn_forest"]).ok();
    for model in ["churn", "churn_forest"] {
        let local_table = format!("scored.{model}_local");
        let cluster_table = format!("scored.{model}_cluster");
        let base = ["score", model, "--input", "curated.customers", "--output"];
        let local = ws.run(&[&base[..], &[local_table.as_str()]].concat()).ok();
        assert!(local.contains("600 rows -> version 0"), "{local}");
        let cluster = ws
            .run(&with_standalone(
                &[&base[..], &[cluster_table.as_str()]].concat(),
            ))
            .ok();
        assert!(
            cluster.starts_with(&format!(
                "{cluster_table} <- curated.customers@1 scored with {model}:1: 600 rows -> version 0"
            )),
            "{cluster}"
        );
        assert_eq!(
            ws.csv(&format!(
                "SELECT count(*) AS rows, count(DISTINCT c.prediction_id) AS ids, \
                 sum(CASE WHEN l.customer_id = c.customer_id AND l.prediction = c.prediction \
                 AND l.probability = c.probability AND l.confidence = c.confidence \
                 AND l.top_features = c.top_features AND l.model_sha256 = c.model_sha256 \
                 AND l.source_table_version = c.source_table_version THEN 1 ELSE 0 END) AS same \
                 FROM {cluster_table} c JOIN {local_table} l ON l.prediction_id = c.prediction_id"
            )),
            "rows,ids,same\n600,600,600\n",
            "{model}: the cluster scores every row as local mode does, explanations included"
        );
        let again = ws
            .run(&with_standalone(
                &[&base[..], &[cluster_table.as_str()]].concat(),
            ))
            .ok();
        assert!(
            again.contains("already scored with"),
            "a rerun adds nothing: {again}"
        );
        let lineage = ws.run(&["lineage", &format!("{cluster_table}@0")]).ok();
        assert!(
            lineage.starts_with(&format!("{cluster_table}@0  scored by {model}:1 (sha256 ")),
            "{lineage}"
        );
    }
}

#[test]
fn a_cluster_that_cannot_be_reached_or_is_not_named_is_an_error_that_says_what_to_do() {
    let ws = Workspace::init();
    // The scoring command without --scheduler, and none in the project file.
    let unnamed = ws.run(&score_on("")[..6]).fails_with(1);
    assert!(
        unnamed.contains("[engine] mode = \"ballista\" needs scheduler = \"df://host:50050\""),
        "{unnamed}"
    );
    let malformed = ws
        .run(&["tables", "--scheduler", "http://localhost:50050"])
        .fails_with(2);
    assert!(
        malformed.contains("scheduler 'http://localhost:50050' is not a Ballista address: write it as df://host:port"),
        "{malformed}"
    );

    let lonely = ws.run(&["ballista", "executor"]).fails_with(1);
    assert!(
        lonely
            .contains("which scheduler? give --scheduler df://HOST:PORT or set [engine] scheduler"),
        "{lonely}"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap().to_string();
    let busy = ws
        .run(&["ballista", "scheduler", "--listen", &taken_address])
        .fails_with(2);
    assert!(
        busy.contains(&format!(
            "cannot listen on {taken_address}: Address already in use"
        )),
        "{busy}"
    );
    let orphan = ws
        .run(&[
            "ballista",
            "executor",
            "--scheduler",
            &format!("df://127.0.0.1:{}", free_port()),
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--grpc-port",
            &free_port().to_string(),
        ])
        .fails_with(2);
    assert!(
        orphan.contains(
            "Could not connect to scheduler; start it first (`lakescore ballista scheduler`)"
        ),
        "{orphan}"
    );

    let ws = crate::models::project();
    ws.run(&["train", "churn"]).ok();
    // A port nothing listens on: bound, then released.
    let scheduler = format!("df://127.0.0.1:{}", free_port());
    let unreachable = ws.run(&score_on(&scheduler)).fails_with(2);
    assert!(
        unreachable.contains(&format!(
            "cannot reach the Ballista scheduler at {scheduler}"
        )) && unreachable.contains("start one with `lakescore ballista scheduler`"),
        "{unreachable}"
    );
    assert!(
        !ws.lakehouse().join("scored/churn").exists(),
        "nothing was written"
    );
}

/// `lakescore score churn --input curated.customers` on the cluster at `scheduler`.
fn score_on(scheduler: &str) -> [&str; 8] {
    [
        "score",
        "churn",
        "--input",
        "curated.customers",
        "--engine",
        "ballista",
        "--scheduler",
        scheduler,
    ]
}

/// `count` customers from number `from` on, as the customer source reads them; churn
/// follows logins and contract, so a model learns it.
fn customers(from: usize, count: usize) -> String {
    let mut csv = String::from("customer_id,logins,revenue,contract,newsletter,churned\n");
    for i in from..from + count {
        let logins = (i * 7919) % 40;
        let revenue = (i * 104_729) % 1000;
        let contract = ["monthly", "yearly", "none"][(i * 31) % 3];
        let churned = logins < 12 && contract == "monthly" || (i * 13) % 17 == 0;
        csv.push_str(&format!(
            "C{i:07},{logins},{revenue},{contract},{},{churned}\n",
            i % 2 == 0
        ));
    }
    csv
}

/// A lakescore process of a test cluster, its log written to a file; killed when dropped.
struct ClusterProcess {
    child: Child,
    log: PathBuf,
}

impl ClusterProcess {
    fn start(dir: &Path, name: &str, args: &[&str]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lakescore"))
            .args(args)
            .current_dir(dir)
            .env("LAKESCORE_TEST_S3_SECRET", SECRET_KEY)
            .env("LAKESCORE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }
}

impl Drop for ClusterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cluster_over_s3_outlives_a_killed_executor_or_driver_and_scores_each_row_once() {
    let server = S3Server::start(&["lake"]);
    let ws = Workspace::init();
    std::fs::write(
        ws.path().join("lakescore.toml"),
        format!(
            "[project]\nname = \"cluster\"\n[lakehouse]\nroot = \"s3://lake/warehouse\"\n{}\n\
             [engine]\npartitions = 4\n",
            server.storage_settings()
        ),
    )
    .unwrap();
    ProjectFile::default()
        .source(CustomerSource::new(
            "extracts/customers_*.csv",
            "curated.customers",
        ))
        .model(ChurnModel::new("logistic_regression", "curated.customers").setting("seed = 7"))
        .append_to(&ws);
    let secret = [("LAKESCORE_TEST_S3_SECRET", SECRET_KEY)];
    let run = |args: &[&str]| crate::support::lakescore_with_env(ws.path(), args, &secret);
    // Trained on a small first extract, scored on four large ones besides it.
    ws.write_file("extracts/customers_0.csv", &customers(0, 600));
    run(&["ingest"]).ok();
    run(&["train", "churn"]).ok();
    const PER_FILE: usize = 40_000;
    for file in 1..=4 {
        ws.write_file(
            &format!("extracts/customers_{file}.csv"),
            &customers(file * PER_FILE, PER_FILE),
        );
    }
    run(&["ingest"]).ok();
    let rows = 600 + 4 * PER_FILE;

    let scheduler_port = free_port();
    let scheduler = format!("df://127.0.0.1:{scheduler_port}");
    let _scheduler = ClusterProcess::start(
        ws.path(),
        "scheduler",
        &[
            "ballista",
            "scheduler",
            "--listen",
            &format!("127.0.0.1:{scheduler_port}"),
            "--executor-timeout",
            "3s",
        ],
    );
    wait_for_port(scheduler_port, "the scheduler");
    let executor = |name: &str| {
        let flight = free_port();
        let process = ClusterProcess::start(
            ws.path(),
            name,
            &[
                "ballista",
                "executor",
                "--scheduler",
                &scheduler,
                "--listen",
                &format!("127.0.0.1:{flight}"),
                "--grpc-port",
                &free_port().to_string(),
                "--concurrent-tasks",
                "1",
                "--heartbeat",
                "1s",
            ],
        );
        wait_for_port(flight, name);
        process
    };
    let mut executors = vec![executor("executor-1"), executor("executor-2")];

    let score = score_on(&scheduler);
    let mut job = spawn_job(ws.path(), &score);
    // Kill the first executor that received a task, while the job runs.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed = None;
    while killed.is_none() && job.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no executor received a task");
        killed = executors
            .iter()
            .position(|e| e.log().contains("task  : [TID "));
        std::thread::sleep(Duration::from_millis(20));
    }
    let index = killed.expect("the job ended before any executor logged a task");
    let mut victim = executors.remove(index);
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    while job.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the job neither finished nor failed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let first: crate::support::Run = job.wait_with_output().unwrap().into();
    let table = server
        .bucket_dir("lake")
        .join("warehouse/scored/churn/_delta_log");
    let committed = |version: u32| table.join(format!("{version:020}.json")).exists();
    let expected = format!("scored with churn:1: {rows} rows -> version 0");
    match first.code {
        0 => assert!(first.stdout.contains(&expected), "{}", first.stdout),
        _ => {
            assert!(first.stderr.starts_with("error: "), "{}", first.stderr);
            assert!(
                !committed(0),
                "a failed job commits nothing: {}",
                first.stderr
            );
        }
    }

    // A rerun on the executor left scores every row once in all.
    let again = run(&score).ok();
    if first.code == 0 {
        assert!(
            again.contains("already scored with churn:1, nothing added"),
            "{again}"
        );
    } else {
        assert!(again.contains(&expected), "{again}");
    }
    assert!(
        committed(0) && !committed(2),
        "one commit of rows (and descriptions at most)"
    );
    assert_eq!(
        run(&[
            "sql",
            "SELECT count(*) AS n, count(DISTINCT prediction_id) AS ids, \
             count(DISTINCT customer_id) AS customers FROM scored.churn",
            "--format",
            "csv"
        ])
        .ok(),
        format!("n,ids,customers\n{rows},{rows},{rows}\n")
    );

    // A driver killed while its job runs on the cluster commits nothing.
    let survivor = &executors[0];
    let seen = survivor.log().len();
    let mut driver = spawn_job(
        ws.path(),
        &[&score[..], &["--output", "scored.churn_again"]].concat(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !survivor.log()[seen..].contains("task  : [TID ") {
        assert!(Instant::now() < deadline, "the executor received no task");
        assert!(
            driver.try_wait().unwrap().is_none(),
            "the job ended before the driver was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    driver.kill().unwrap();
    driver.wait().unwrap();
    let again = server
        .bucket_dir("lake")
        .join("warehouse/scored/churn_again/_delta_log");
    assert!(
        !again.join(format!("{:020}.json", 0)).exists(),
        "a killed driver leaves no table version"
    );
}

/// Starts the lakescore command `args` in `dir` with the test server's secret.
fn spawn_job(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lakescore"))
        .args(args)
        .current_dir(dir)
        .env("LAKESCORE_TEST_S3_SECRET", SECRET_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}
