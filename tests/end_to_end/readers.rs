//! Every table lakescore writes is read by two independent Delta readers, the deltalake
//! Python package and polars, with the rows and column types lakescore itself sees.
//!
//! The readers come from a Python with `polars`, `deltalake` and `pyarrow` installed:
//! `LAKESCORE_TEST_PYTHON` (set by `.ci/run` to its virtual environment), else `python3`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{lakescore, lakescore_with_env};

#[test]
fn polars_and_the_deltalake_package_read_every_table_with_its_rows_and_types() {
    let home = tempfile::tempdir().unwrap();
    lakescore(home.path(), &["demo", "project", "--customers", "200"]).ok();
    let project = home.path().join("project");
    let tables: Vec<String> = lakescore(&project, &["tables", "--format", "json"])
        .ok()
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            row["table"].as_str().unwrap().to_string()
        })
        .collect();
    for expected in [
        "ops.model_versions",
        "scored.churn_risk",
        "curated.customers",
        "ops.job_runs",
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} not in {tables:?}"
        );
    }
    let read = read_and_compare(&project, &tables, &[]);
    // The scoring time is a UTC timestamp like every other time lakescore writes.
    let scored = read
        .iter()
        .find(|t| t["table"] == "scored.churn_risk")
        .unwrap();
    let scored_at = scored["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "scored_at")
        .unwrap();
    assert_eq!(scored_at["deltalake"], "timestamp[us, tz=UTC]");
    assert_eq!(
        scored_at["polars"],
        "Datetime(time_unit='us', time_zone='UTC')"
    );
}

/// Reads `tables` of the project at `project` (run with `env`) with both readers and checks that each saw
/// the rows and column types lakescore sees; returns what the readers reported.
fn read_and_compare(project: &Path, tables: &[String], env: &[(&str, &str)]) -> Vec<Value> {
    let csv = |sql: &str| lakescore_with_env(project, &["sql", sql, "--format", "csv"], env).ok();
    let read = read_with_python(&project.join("lakehouse"), tables);
    assert_eq!(read.len(), tables.len(), "{read:?}");
    for table in &read {
        let name = table["table"].as_str().unwrap();
        assert!(table.get("error").is_none(), "{name}: {}", table["error"]);
        let rows = csv(&format!("SELECT count(*) AS n FROM {name}"));
        let rows: u64 = rows.lines().nth(1).unwrap().parse().unwrap();
        assert_eq!(table["deltalake_rows"], rows, "{name}");
        assert_eq!(table["polars_rows"], rows, "{name}");

        let (schema, short) = name.split_once('.').unwrap();
        let ours = csv(&format!(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = '{schema}' AND table_name = '{short}' ORDER BY ordinal_position"
        ));
        let ours: Vec<(String, String)> = ours
            .lines()
            .skip(1)
            .map(|line| {
                let (column, data_type) = line.split_once(',').unwrap();
                let unquoted = data_type.trim_matches('"').replace("\"\"", "\"");
                (column.to_string(), unquoted)
            })
            .collect();
        let theirs = table["columns"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name}: {ours:?} vs {theirs:?}");
        for ((column, data_type), read) in ours.iter().zip(theirs) {
            assert_eq!(read["name"], column.as_str(), "{name}");
            let (deltalake, polars) = reader_types(data_type);
            let seen = (
                read["deltalake"].as_str().unwrap(),
                read["polars"].as_str().unwrap(),
            );
            assert!(
                seen.0.starts_with(&deltalake) && seen.1.starts_with(&polars),
                "{name}.{column}: lakescore sees {data_type}, the readers {seen:?}"
            );
        }
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_query_log_is_read_by_both_readers() {
    let served = crate::serve::serve("");
    let engineer = served.connect("engineer", "eng1neer-pw").await.unwrap();
    engineer
        .simple_query("select count(*) from curated.customers")
        .await
        .unwrap();
    drop(engineer);
    let (workspace, _) = served.stop();
    let password = [(
        "LAKESCORE_TEST_ANALYST_PASSWORD",
        crate::serve::ANALYST_PASSWORD,
    )];
    let read = read_and_compare(
        workspace.path(),
        &[String::from("ops.query_log")],
        &password,
    );
    assert!(read[0]["polars_rows"].as_u64().unwrap() >= 1, "{read:?}");
}

/// The type names pyarrow (via deltalake) and polars give a column lakescore reports as
/// `data_type` (DataFusion's name); nested types are compared by their outer kind.
fn reader_types(data_type: &str) -> (String, String) {
    let same = |a: &str, b: &str| (a.to_string(), b.to_string());
    match data_type {
        "Int64" => same("int64", "Int64"),
        "Int32" => same("int32", "Int32"),
        "Int16" => same("int16", "Int16"),
        "Float64" => same("double", "Float64"),
        "Float32" => same("float", "Float32"),
        "Boolean" => same("bool", "Boolean"),
        "Utf8" | "Utf8View" | "LargeUtf8" => same("string", "String"),
        "Date32" => same("date32", "Date"),
        "Timestamp(µs, \"UTC\")" => same(
            "timestamp[us, tz=UTC]",
            "Datetime(time_unit='us', time_zone='UTC')",
        ),
        "Timestamp(µs)" => same("timestamp[us]", "Datetime(time_unit='us', time_zone=None)"),
        decimal if decimal.starts_with("Decimal128(") => {
            let inner = &decimal["Decimal128(".len()..decimal.len() - 1];
            let (precision, scale) = inner.split_once(", ").unwrap();
            (
                format!("decimal128({precision}, {scale})"),
                format!("Decimal(precision={precision}, scale={scale})"),
            )
        }
        list if list.starts_with("List(") => same("list<", "List("),
        structure if structure.starts_with("Struct(") => same("struct<", "Struct("),
        other => panic!("no reader type known for {other}"),
    }
}

/// Runs `tests/readers/read_delta_tables.py` on `tables` and returns one JSON object each.
fn read_with_python(root: &Path, tables: &[String]) -> Vec<Value> {
    let python = std::env::var("LAKESCORE_TEST_PYTHON").unwrap_or_else(|_| String::from("python3"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/readers/read_delta_tables.py");
    let output = Command::new(&python)
        .arg(script)
        .arg(root)
        .args(tables)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{python} could not read the tables (it needs polars, deltalake and pyarrow; .ci/run installs them into a virtual environment and sets LAKESCORE_TEST_PYTHON):\n{stderr}"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
