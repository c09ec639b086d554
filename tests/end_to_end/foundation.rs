//! The foundation a new user meets first: init, the catalog found on storage, SQL with time
//! travel, output formats, tables, history, and errors that say what to fix.

use std::time::Duration;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReader;
use deltalake::protocol::SaveMode;

use crate::support::{Workspace, lakescore};

#[tokio::test]
async fn a_table_from_another_writer_is_queryable_at_once() {
    let ws = Workspace::init();
    assert!(ws.path().join("lakescore.toml").is_file());
    assert!(ws.path().join("models").is_dir());

    ws.write_rows(
        "raw.x",
        &[(1, "ada"), (2, "bo"), (3, "cy")],
        SaveMode::Append,
    )
    .await;
    assert_eq!(ws.csv("select count(*) as n from raw.x"), "n\n3\n");

    let table = ws
        .run(&["sql", "select id, name from raw.x order by id"])
        .ok();
    assert_eq!(
        table,
        "+----+------+\n| id | name |\n+----+------+\n| 1  | ada  |\n| 2  | bo   |\n| 3  | cy   |\n+----+------+\n3 rows\n"
    );
}

#[tokio::test]
async fn catalog_lists_schemas_and_ignores_what_is_not_a_delta_table() {
    let ws = Workspace::init();
    ws.write_rows("raw.crm_accounts", &[(1, "a")], SaveMode::Append)
        .await;
    ws.write_rows("raw.erp_customers", &[(1, "a"), (2, "b")], SaveMode::Append)
        .await;
    ws.write_rows("curated.customers", &[(7, "z")], SaveMode::Append)
        .await;
    // A folder of Parquet-less junk, a plain file, and a folder that only looks like a table.
    std::fs::create_dir_all(ws.lakehouse().join("raw/not_a_table/data")).unwrap();
    std::fs::write(ws.lakehouse().join("raw/readme.txt"), "notes").unwrap();
    std::fs::create_dir_all(ws.lakehouse().join("scratch/empty")).unwrap();

    let listed = ws.csv(
        "select table_schema, table_name from information_schema.tables \
         where table_catalog = 'lakehouse' and table_schema <> 'information_schema' \
         order by 1, 2",
    );
    assert_eq!(
        listed,
        "table_schema,table_name\ncurated,customers\nraw,crm_accounts\nraw,erp_customers\n"
    );
    let joined = ws.csv(
        "select c.name, count(*) as n from raw.erp_customers e \
         join curated.customers c on true group by c.name",
    );
    assert_eq!(joined, "name,n\nz,2\n");

    let tables = ws.run(&["tables", "--format", "csv"]).ok();
    let lines: Vec<&str> = tables.lines().collect();
    assert_eq!(
        lines[0],
        "table,version,rows,files,size,size_bytes,last_commit,error"
    );
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["curated.customers", "raw.crm_accounts", "raw.erp_customers"]
    );
    assert!(
        lines[3].starts_with("raw.erp_customers,0,2,1,"),
        "{}",
        lines[3]
    );
}

#[tokio::test]
async fn time_travel_by_version_and_by_timestamp() {
    let ws = Workspace::init();
    ws.write_rows("raw.x", &[(1, "ada")], SaveMode::Append)
        .await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ws.write_rows("raw.x", &[(2, "bo")], SaveMode::Append).await;
    ws.write_rows("raw.x", &[(9, "new")], SaveMode::Overwrite)
        .await;

    assert_eq!(ws.csv("select id from raw.x order by id"), "id\n9\n");
    assert_eq!(
        ws.csv("select id from table_at('raw.x', 1) order by id"),
        "id\n1\n2\n"
    );
    assert_eq!(
        ws.csv("select id from table_at('raw.x', 0) order by id"),
        "id\n1\n"
    );
    let as_of = between.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    assert_eq!(
        ws.csv(&format!(
            "select id from table_at('raw.x', TIMESTAMP '{as_of}') order by id"
        )),
        "id\n1\n"
    );
    assert_eq!(
        ws.csv(&format!(
            "select id from table_at('raw.x', '{}')",
            between.to_rfc3339()
        )),
        "id\n1\n"
    );
    // One statement can compare two versions of the same table.
    assert_eq!(
        ws.csv(
            "select (select count(*) from table_at('raw.x', 1)) as before, \
                    (select count(*) from raw.x) as now"
        ),
        "before,now\n2,1\n"
    );

    let missing = ws
        .run(&["sql", "select * from table_at('raw.x', 7)"])
        .fails_with(1);
    assert!(
        missing.contains("table 'raw.x' has no version 7"),
        "{missing}"
    );
    assert!(missing.contains("versions 0 to 2 exist"), "{missing}");
    let too_early = ws
        .run(&[
            "sql",
            "select * from table_at('raw.x', '2001-01-01 00:00:00')",
        ])
        .fails_with(1);
    assert!(
        too_early.contains("has no version as of 2001-01-01T00:00:00+00:00"),
        "{too_early}"
    );
}

#[tokio::test]
async fn history_shows_every_version_newest_first() {
    let ws = Workspace::init();
    ws.write_rows("raw.x", &[(1, "ada")], SaveMode::Append)
        .await;
    ws.write_rows("raw.x", &[(2, "bo")], SaveMode::Append).await;
    ws.write_rows("raw.x", &[(3, "cy")], SaveMode::Overwrite)
        .await;

    let history = ws.run(&["history", "raw.x", "--format", "json"]).ok();
    let entries: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let versions: Vec<u64> = entries
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1, 0]);
    let operations: Vec<&str> = entries
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["WRITE", "WRITE", "WRITE"]);
    let details: serde_json::Value =
        serde_json::from_str(entries[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["operationParameters"]["mode"], "Overwrite");
    assert!(entries.iter().all(|e| e["committed_at"].is_string()));

    let newest = ws
        .run(&["history", "raw.x", "--limit", "1", "--format", "csv"])
        .ok();
    assert_eq!(newest.lines().count(), 2, "{newest}");
    assert!(newest.lines().nth(1).unwrap().starts_with("2,"), "{newest}");
}

#[tokio::test]
async fn results_export_as_csv_json_and_parquet() {
    let ws = Workspace::init();
    ws.write_rows("raw.x", &[(1, "ada"), (2, "bo")], SaveMode::Append)
        .await;
    let query = "select id, name from raw.x order by id";

    ws.run(&["sql", query, "--format", "csv", "--output", "out/x.csv"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out/x.csv")).unwrap(),
        "id,name\n1,ada\n2,bo\n"
    );
    let json = ws.run(&["sql", query, "--format", "json"]).ok();
    assert_eq!(
        json,
        "{\"id\":1,\"name\":\"ada\"}\n{\"id\":2,\"name\":\"bo\"}\n"
    );

    ws.run(&["sql", query, "--format", "parquet", "-o", "x.parquet"])
        .ok();
    let file = std::fs::File::open(ws.path().join("x.parquet")).unwrap();
    let reader = ParquetRecordBatchReader::try_new(file, 1024).unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let read_back = pretty_format_batches(&batches).unwrap().to_string();
    assert_eq!(
        read_back,
        "+----+------+\n| id | name |\n+----+------+\n| 1  | ada  |\n| 2  | bo   |\n+----+------+"
    );

    let stdout_parquet = ws.run(&["sql", query, "--format", "parquet"]).fails_with(1);
    assert!(stdout_parquet.contains("--output"), "{stdout_parquet}");
}

#[tokio::test]
async fn errors_read_like_advice_with_exit_codes() {
    let ws = Workspace::init();
    ws.write_rows("raw.crm_accounts", &[(1, "a")], SaveMode::Append)
        .await;

    let unknown = ws
        .run(&["sql", "select * from raw.crm_acounts"])
        .fails_with(1);
    assert_eq!(
        unknown,
        "error: unknown table 'raw.crm_acounts': did you mean raw.crm_accounts?\n"
    );
    let bare = ws.run(&["sql", "select * from crm_accounts"]).fails_with(1);
    assert!(bare.contains("did you mean raw.crm_accounts?"), "{bare}");

    let bad_sql = ws
        .run(&["sql", "select id\nfrom raw.crm_accounts wher id = 1"])
        .fails_with(1);
    assert_eq!(
        bad_sql,
        "error: sql parser error: Expected: end of statement, found: id at Line: 2, Column: 28\n    \
         2 | from raw.crm_accounts wher id = 1\n      |                            ^\n"
    );

    let bad_column = ws
        .run(&["sql", "select nope from raw.crm_accounts"])
        .fails_with(1);
    assert!(bad_column.contains("nope"), "{bad_column}");

    let history = ws.run(&["history", "raw.nothing"]).fails_with(1);
    assert!(history.contains("unknown table 'raw.nothing'"), "{history}");
    let not_a_name = ws.run(&["history", "nothing"]).fails_with(1);
    assert!(
        not_a_name.contains("tables are named schema.name"),
        "{not_a_name}"
    );
}

#[test]
fn config_errors_name_the_key_and_line() {
    let ws = Workspace::init();
    let file = ws.path().join("lakescore.toml");
    std::fs::write(
        &file,
        "[project]\nname = \"p\"\n\n[lakehouse]\nrooot = \"./lh\"\n",
    )
    .unwrap();
    let error = ws.run(&["tables"]).fails_with(1);
    assert!(error.contains("lakescore.toml"), "{error}");
    assert!(error.contains("line 5"), "{error}");
    assert!(error.contains("unknown field `rooot`"), "{error}");

    std::fs::write(
        &file,
        "[project]\nname = \"p\"\n[lakehouse]\nroot = \"${LAKESCORE_E2E_UNSET}/lh\"\n",
    )
    .unwrap();
    let error = ws.run(&["tables"]).fails_with(1);
    assert!(
        error.contains("environment variable LAKESCORE_E2E_UNSET is not set"),
        "{error}"
    );
    assert!(error.contains("line 4"), "{error}");
}

#[test]
fn projects_are_found_upwards_or_by_flag_and_init_never_overwrites() {
    let ws = Workspace::init();
    let nested = ws.path().join("models");
    let answer = lakescore(
        &nested,
        &["sql", "select 40 + 2 as answer", "--format", "csv"],
    )
    .ok();
    assert_eq!(answer, "answer\n42\n");

    let elsewhere = tempfile::tempdir().unwrap();
    let project = ws.path().join("lakescore.toml");
    let by_flag = lakescore(
        elsewhere.path(),
        &[
            "--project",
            project.to_str().unwrap(),
            "tables",
            "--format",
            "csv",
        ],
    )
    .ok();
    assert_eq!(
        by_flag,
        "table,version,rows,files,size,size_bytes,last_commit,error\n"
    );
    let missing = lakescore(elsewhere.path(), &["tables"]).fails_with(1);
    assert!(missing.contains("no lakescore.toml found"), "{missing}");
    assert!(missing.contains("lakescore init"), "{missing}");

    let again = ws.run(&["init", "."]).fails_with(1);
    assert!(again.contains("already exists"), "{again}");
}

#[test]
fn unreachable_storage_names_the_uri_and_exits_2() {
    let ws = Workspace::init();
    std::fs::write(
        ws.path().join("lakescore.toml"),
        "[project]\nname = \"p\"\n[lakehouse]\nroot = \"s3://lakescore-test-bucket/lh\"\n\
         [lakehouse.storage]\nendpoint = \"http://127.0.0.1:9\"\nregion = \"us-east-1\"\n\
         allow_http = true\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n\
         [lakehouse.storage.options]\nmax_retries = \"0\"\nretry_timeout = \"1s\"\n",
    )
    .unwrap();
    let error = ws.run(&["tables"]).fails_with(2);
    assert!(error.contains("s3://lakescore-test-bucket/lh/"), "{error}");
    assert!(error.contains("cannot read storage"), "{error}");
}

#[test]
fn help_documents_commands_and_exit_codes() {
    let ws = Workspace::init();
    let help = ws.run(&["--help"]).ok();
    for expected in [
        "init",
        "sql",
        "tables",
        "history",
        "Exit codes:",
        "runtime failure",
    ] {
        assert!(help.contains(expected), "missing {expected}:\n{help}");
    }
    let sql_help = ws.run(&["sql", "--help"]).ok();
    assert!(sql_help.contains("table_at("), "{sql_help}");
    assert!(sql_help.contains("parquet"), "{sql_help}");
}

#[tokio::test]
async fn the_interactive_prompt_runs_multi_line_statements_and_meta_commands() {
    let ws = Workspace::init();
    ws.write_rows("raw.x", &[(1, "ada"), (2, "bo")], SaveMode::Append)
        .await;
    let run = crate::support::lakescore_with_input(
        ws.path(),
        &["sql"],
        b"select count(*)\n  as n from raw.x;\nselect * from raw.nope;\n\\dt\n\\q\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (stdout, stderr) = (run.stdout, run.stderr);
    assert!(
        stdout.contains("| n |\n+---+\n| 2 |\n+---+\n1 row\n"),
        "{stdout}"
    );
    assert!(stdout.contains("| raw.x | 0       | 2    |"), "{stdout}");
    assert!(
        stderr.contains("error: unknown table 'raw.nope'"),
        "{stderr}"
    );
    assert!(ws.path().join(".lakescore/sql_history").is_file());
}
