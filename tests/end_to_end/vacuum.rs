//! `lakescore vacuum`: the files killed runs left behind are deleted once they are older
//! than the retention window, committed data and table versions are untouched, and the
//! rerun still lands exactly once.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::{Workspace, spawn_paused};

const SOURCES: &str = r#"
[[source]]
name = "orders"
path = "extracts/orders_*.csv"
format = "csv"
table = "raw.orders"

[[source]]
name = "customers"
path = "extracts/customers_*.csv"
format = "csv"
table = "raw.customers"
mode = "merge"
key = ["id"]
"#;

/// Runs `ingest SOURCE` and kills it at the point before its data commit.
fn kill_before_commit(ws: &Workspace, source: &str) {
    spawn_paused(ws.path(), &["ingest", source], "ingest-commit", None, &[]).kill();
}

/// Files under `dir` whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

/// Makes the files under `dir` look two days old: every data file and all of
/// `_staging/` (the tables' commit files keep their times, which Delta reads as the
/// commit times).
fn age_files(dir: &Path) {
    let old = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    let aged = |f: &std::path::PathBuf| {
        let path = f.to_string_lossy();
        path.contains("_staging") || !path.contains("_delta_log")
    };
    for file in files_ending(dir, "").into_iter().filter(aged) {
        let handle = std::fs::File::options().write(true).open(&file).unwrap();
        handle.set_modified(old).unwrap();
    }
}

#[test]
fn vacuum_deletes_what_killed_runs_left_and_keeps_every_version() {
    let ws = Workspace::init();
    ws.append_to_project(SOURCES);
    ws.write_file("extracts/orders_1.csv", "id,amount\n1,10\n2,20\n");
    ws.write_file("extracts/customers_1.csv", "id,name\n1,Ann\n");
    ws.run(&["ingest"]).ok();
    ws.write_file("extracts/orders_2.csv", "id,amount\n3,30\n");
    ws.write_file("extracts/customers_2.csv", "id,name\n2,Bo\n");
    kill_before_commit(&ws, "orders");
    kill_before_commit(&ws, "customers");
    let lakehouse = ws.lakehouse();
    let data_files = || files_ending(&lakehouse.join("raw/orders"), ".parquet").len();
    assert_eq!(
        data_files(),
        2,
        "one committed file, one the killed run left"
    );
    assert!(!files_ending(&lakehouse.join("_staging"), ".parquet").is_empty());
    // Version, time, operation and run id of every commit.
    let history = || -> Vec<String> {
        let csv = ws.run(&["history", "raw.orders", "--format", "csv"]).ok();
        csv.lines()
            .map(|line| line.splitn(5, ',').take(4).collect::<Vec<_>>().join(","))
            .collect()
    };
    let versions_before = history();

    // Fresh files are inside the window: nothing to delete.
    let fresh = ws.run(&["vacuum", "--retain", "1h"]).ok();
    assert!(
        fresh.ends_with("table(s) checked, deleted 0 file(s) and 0 staging folder(s)\n"),
        "{fresh}"
    );
    let refused = ws.run(&["vacuum", "--retain", "10m"]).fails_with(1);
    assert!(
        refused.contains("a retention window of 10m is under an hour"),
        "{refused}"
    );

    age_files(&lakehouse);
    let dry = ws.run(&["vacuum", "--retain", "1d", "--dry-run"]).ok();
    assert!(
        dry.contains("raw.orders: would delete 1 unreferenced file(s)\n  part-"),
        "{dry}"
    );
    assert!(
        dry.contains("_staging: would delete 1 leftover folder(s): "),
        "{dry}"
    );
    assert_eq!(data_files(), 2, "a dry run deletes nothing");

    let done = ws.run(&["vacuum", "--retain", "1d"]).ok();
    assert!(
        done.contains("raw.orders: deleted 1 unreferenced file(s)"),
        "{done}"
    );
    assert_eq!(data_files(), 1);
    assert!(
        files_ending(&lakehouse.join("_staging"), "").is_empty(),
        "{done}"
    );
    assert_eq!(history(), versions_before, "vacuum adds no table version");
    assert_eq!(ws.csv("SELECT count(*) AS n FROM raw.orders"), "n\n2\n");

    // The killed runs' files land exactly once on the rerun.
    let out = ws.run(&["ingest"]).ok();
    assert!(
        out.contains("raw.orders <- orders: 1 file landed, 1 rows"),
        "{out}"
    );
    assert_eq!(
        ws.csv("SELECT (SELECT count(*) FROM raw.orders) AS orders, (SELECT count(*) FROM raw.customers) AS customers"),
        "orders,customers\n3,2\n"
    );

    // The same as a job step.
    ws.append_to_project(
        "\n[[job]]\nname = \"housekeeping\"\nsteps = [{ vacuum = true, retain = \"2d\" }]\n",
    );
    let job = ws.run(&["run", "housekeeping"]).ok();
    assert!(
        job.contains("files and 0 staging folders deleted from 2 tables"),
        "{job}"
    );
}
