//! Landing extracts: dialects, quarantine, exactly-once reruns, schema evolution, modes,
//! bad-row limits, and a real kill between writing data files and committing.

use crate::support::{Workspace, files_under, spawn_paused};

/// The three fixture sources: CRM accounts (CSV, crm dialect), ERP invoices (semicolons,
/// Windows-1252, preamble) and usage events (JSON lines in a dated folder layout).
const THREE_SOURCES: &str = r#"
[[source]]
name = "crm_accounts"
path = "extracts/crm/accounts_*.csv"
format = "csv"
table = "raw.crm_accounts"
dialect = "crm"
max_bad_rows = "20%"
[source.schema]
account_id = { type = "string", required = true }
name = "string"
industry = "string"
is_active = "boolean"
created_at = "timestamp"
annual_revenue = "decimal(18,2)"
notes = "string"

[[source]]
name = "erp_invoices"
path = "extracts/erp/invoices_*.csv"
format = "csv"
table = "raw.erp_invoices"
dialect = "erp"
[source.schema]
"Kunden-Nr." = { type = "string", required = true }
Rechnung = "string"
Datum = "date"
"Betrag (EUR)" = "decimal(18,2)"
Storno = "boolean"

[[source]]
name = "usage_events"
path = "extracts/events/*/*/*/*.jsonl"
format = "json"
table = "raw.usage_events"
"#;

fn project_with_fixtures(sources: &str) -> Workspace {
    let ws = Workspace::init();
    ws.copy_fixtures("extracts");
    ws.append_to_project(sources);
    ws
}

#[test]
fn three_sources_land_with_quarantine_and_a_rerun_changes_nothing() {
    let ws = project_with_fixtures(THREE_SOURCES);
    let out = ws.run(&["ingest"]).ok();
    assert!(
        out.contains(
            "raw.crm_accounts <- crm_accounts: 1 file landed, 22 rows, 3 quarantined -> version 1"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "raw.erp_invoices <- erp_invoices: 1 file landed, 9 rows, 1 quarantined -> version 1"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "raw.usage_events <- usage_events: 1 file landed, 9 rows, 1 quarantined -> version 1"
        ),
        "{out}"
    );

    // CRM: quoted commas and newlines survive, timestamps keep their zone, empty is null.
    assert_eq!(
        ws.csv(
            "select account_id, name, is_active, created_at, annual_revenue, notes \
             from raw.crm_accounts where account_id in ('A-001', 'A-002', 'A-003') order by 1"
        ),
        "account_id,name,is_active,created_at,annual_revenue,notes\n\
         A-001,\"Acme, Inc\",true,2026-01-05T08:30:00Z,1250000.50,\"Key account\nrenewal in March\"\n\
         A-002,Beta GmbH,false,2026-01-06T10:00:00Z,,\n\
         A-003,Gamma Ltd,true,2026-01-07T16:15:00Z,98000.00,\"He said \"\"hi\"\"\"\n"
    );
    // ERP: normalized names, Windows-1252, decimal comma, trailing minus, DD.MM.YYYY.
    assert_eq!(
        ws.csv(
            "select kunden_nr, name, datum, betrag_eur, storno, _source_row \
             from raw.erp_invoices where rechnung in ('R-9001', 'R-9002', 'R-9007') order by 1"
        ),
        "kunden_nr,name,datum,betrag_eur,storno,_source_row\n\
         0000100,Müller Maschinenbau,2026-01-01,1234.56,false,5\n\
         0000101,Schäfer & Söhne,2026-01-02,-100.00,true,6\n\
         0000106,Jäger GmbH,2026-01-06,-75.50,true,11\n"
    );
    // JSON lines: types inferred, nested values kept as JSON text, line numbers kept.
    assert_eq!(
        ws.csv(
            "select event_id, seconds, props, arrow_typeof(at) as at_type, _source_row \
             from raw.usage_events where event_id <= 3 order by 1"
        ),
        "event_id,seconds,props,at_type,_source_row\n\
         1,30.0,,\"Timestamp(µs, \"\"UTC\"\")\",1\n\
         2,120.0,\"{\"\"rows\"\":5000}\",\"Timestamp(µs, \"\"UTC\"\")\",2\n\
         3,12.5,,\"Timestamp(µs, \"\"UTC\"\")\",4\n"
    );

    // Bad rows are in quarantine with file, row, column, reason and raw text.
    assert_eq!(
        ws.csv(
            "select _source_row, \"column\", error, raw from quarantine.raw_crm_accounts order by 1"
        ),
        "_source_row,column,error,raw\n\
         6,is_active,'maybe' is not a boolean (true: true; false: false),\"A-004,Delta Co,Retail,maybe,2026-01-08T08:00:00Z,5000,\"\n\
         7,,\"expected 7 fields, found 2\",\"A-005,Broken row with too few fields\"\n\
         8,created_at,\"'not a date' is not a timestamp in the formats %Y-%m-%dT%H:%M:%S%.f%:z, %Y-%m-%dT%H:%M:%S%.fZ, %Y-%m-%d %H:%M:%S%.f%:z, %Y-%m-%dT%H:%M:%S%.f, %Y-%m-%d %H:%M:%S%.f\",\"A-006,Epsilon SA,Finance,true,not a date,7000,\"\n"
    );
    let erp_bad = ws
        .csv("select _source_file, _source_row, \"column\", raw from quarantine.raw_erp_invoices");
    assert!(
        erp_bad.contains(
            "invoices_20260109.csv,7,datum,\"0000102;Weiß Logistik;R-9003;31.02.2026;50,00;\"\n"
        ),
        "{erp_bad}"
    );
    let events_bad = ws.csv("select _source_row, error from quarantine.raw_usage_events");
    assert!(
        events_bad.starts_with("_source_row,error\n5,invalid JSON"),
        "{events_bad}"
    );

    // Rerun: nothing new, nothing committed.
    let again = ws.run(&["ingest"]).ok();
    assert!(
        again.contains("raw.crm_accounts <- crm_accounts: up to date (1 files already landed)"),
        "{again}"
    );
    assert!(
        again.contains("raw.erp_invoices <- erp_invoices: up to date"),
        "{again}"
    );
    assert_eq!(
        ws.csv("select count(*) as n from raw.crm_accounts"),
        "n\n22\n"
    );
    assert_eq!(
        ws.csv("select count(*) as n from quarantine.raw_crm_accounts"),
        "n\n3\n"
    );
    let tables = ws.run(&["tables", "--format", "csv"]).ok();
    assert!(tables.contains("\nraw.erp_invoices,1,9,"), "{tables}");
    assert!(
        tables.contains("\nquarantine.raw_erp_invoices,1,1,"),
        "{tables}"
    );

    // History shows the batch with its files, rows and run id.
    let history = ws
        .run(&["history", "raw.erp_invoices", "--format", "json"])
        .ok();
    let newest: serde_json::Value = serde_json::from_str(history.lines().next().unwrap()).unwrap();
    assert_eq!(newest["version"], 1);
    assert!(newest["run_id"].as_str().is_some_and(|r| !r.is_empty()));
    let inputs: serde_json::Value =
        serde_json::from_str(newest["inputs"].as_str().unwrap()).unwrap();
    assert!(
        inputs[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("extracts/erp/invoices_20260109.csv")
    );
    assert_eq!(inputs[0]["rows"], 9);
    assert_eq!(inputs[0]["quarantined"], 1);
    assert!(
        inputs[0]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn new_files_append_new_columns_evolve_and_missing_required_columns_reject_the_file() {
    let ws = project_with_fixtures(THREE_SOURCES);
    ws.run(&["ingest", "crm_accounts"]).ok();
    ws.write_file(
        "extracts/crm/accounts_2026-02-01.csv",
        "account_id,name,segment\nA-100,New One,SMB\nA-101,New Two,Enterprise\n",
    );
    ws.write_file(
        "extracts/crm/accounts_2026-02-02.csv",
        "name,industry\nNo Id,Retail\n",
    );
    let run = ws.run(&["ingest", "crm_accounts"]);
    assert!(
        run.stdout.contains(
            "raw.crm_accounts <- crm_accounts: 1 file landed, 2 rows, 0 quarantined -> version 2"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("new columns added to raw.crm_accounts: segment"),
        "{}",
        run.stdout
    );
    let error = run.fails_with(1);
    assert!(
        error.contains("accounts_2026-02-02.csv: required column 'account_id' is missing"),
        "{error}"
    );
    assert_eq!(
        ws.csv("select account_id, segment, is_active from raw.crm_accounts where account_id >= 'A-02' order by 1 desc limit 3"),
        "account_id,segment,is_active\nA-101,Enterprise,\nA-100,SMB,\nA-025,,true\n"
    );
    // The rejected file is retried, and lands once fixed.
    ws.write_file(
        "extracts/crm/accounts_2026-02-02.csv",
        "account_id,name,industry\nA-102,Fixed,Retail\n",
    );
    let fixed = ws.run(&["ingest", "crm_accounts"]).ok();
    assert!(
        fixed.contains("1 file landed, 1 rows, 0 quarantined -> version 3"),
        "{fixed}"
    );
}

#[test]
fn too_many_bad_rows_reject_the_batch_and_commit_nothing() {
    let ws = project_with_fixtures(
        r#"
[[source]]
name = "crm_accounts"
path = "extracts/crm/accounts_*.csv"
format = "csv"
table = "raw.crm_accounts"
dialect = "crm"
max_bad_rows = 2
[source.schema]
account_id = { type = "string", required = true }
is_active = "boolean"
created_at = "timestamp"
"#,
    );
    let error = ws.run(&["ingest"]).fails_with(1);
    assert!(error.contains("accounts_2026-01-27.csv: 3 of 6 rows read so far are bad, above max_bad_rows = 2; nothing was committed"), "{error}");
    assert!(
        error.contains("First problem: row 6 column is_active: 'maybe' is not a boolean"),
        "{error}"
    );
    // The table exists (created empty) but holds no rows, and there is no quarantine.
    assert_eq!(
        ws.csv("select count(*) as n from raw.crm_accounts"),
        "n\n0\n"
    );
    let missing = ws
        .run(&["sql", "select * from quarantine.raw_crm_accounts"])
        .fails_with(1);
    assert!(missing.contains("unknown table"), "{missing}");
}

#[test]
fn merge_upserts_with_the_newest_extract_winning_and_overwrite_replaces() {
    let ws = Workspace::init();
    ws.write_file(
        "extracts/customers/c_01.csv",
        "id;name;score\n1;Ann;1,5\n2;Bob;2,0\n2;Bob B.;2,5\n",
    );
    ws.append_to_project(
        r#"
[[source]]
name = "customers"
path = "extracts/customers/*.csv"
format = "csv"
table = "raw.customers"
mode = "merge"
key = ["id"]
[source.dialect]
delimiter = ";"
decimal_separator = ","

[[source]]
name = "snapshot"
path = "extracts/snapshot/*.csv"
format = "csv"
table = "raw.snapshot"
mode = "overwrite"
"#,
    );
    ws.write_file("extracts/snapshot/s_01.csv", "k,v\na,1\nb,2\n");
    ws.run(&["ingest"]).ok();
    assert_eq!(
        ws.csv("select id, name, score from raw.customers order by id"),
        "id,name,score\n1,Ann,1.5\n2,Bob B.,2.5\n"
    );
    ws.write_file(
        "extracts/customers/c_02.csv",
        "id;name;score;tier\n2;Robert;3,0;gold\n3;Cy;0,5;\n",
    );
    ws.write_file("extracts/snapshot/s_02.csv", "k,v\nc,3\n");
    let out = ws.run(&["ingest"]).ok();
    assert!(
        out.contains(
            "raw.customers <- customers: 1 file landed, 2 rows, 0 quarantined -> version 2"
        ),
        "{out}"
    );
    assert_eq!(
        ws.csv("select id, name, score, tier from raw.customers order by id"),
        "id,name,score,tier\n1,Ann,1.5,\n2,Robert,3.0,gold\n3,Cy,0.5,\n"
    );
    assert_eq!(
        ws.csv("select k, v from raw.snapshot order by k"),
        "k,v\nc,3\n"
    );
    // Staging tables are cleaned up and never listed.
    assert_eq!(files_under(&ws.lakehouse().join("_staging")), 0);
    let rerun = ws.run(&["ingest"]).ok();
    assert!(
        rerun.contains("raw.customers <- customers: up to date (2 files already landed)"),
        "{rerun}"
    );
}

#[test]
fn a_kill_between_writing_and_committing_leaves_the_table_and_the_rerun_lands_once() {
    let ws = project_with_fixtures(THREE_SOURCES);
    let paused = spawn_paused(
        ws.path(),
        &["ingest", "crm_accounts"],
        "ingest-commit",
        None,
        &[],
    );
    // Data files are written: the kill lands between them and the commit.
    let data_files = std::fs::read_dir(ws.lakehouse().join("raw/crm_accounts"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "parquet")
        })
        .count();
    assert!(data_files > 0);
    paused.kill();

    let history = ws
        .run(&["history", "raw.crm_accounts", "--format", "csv"])
        .ok();
    assert_eq!(
        history.lines().count(),
        2,
        "only the empty table's creation is committed: {history}"
    );
    assert_eq!(
        ws.csv("select count(*) as n from raw.crm_accounts"),
        "n\n0\n"
    );

    let rerun = ws.run(&["ingest", "crm_accounts"]).ok();
    assert!(
        rerun.contains("1 file landed, 22 rows, 3 quarantined -> version 1"),
        "{rerun}"
    );
    assert_eq!(
        ws.csv("select count(*) as n, count(distinct account_id) as ids from raw.crm_accounts"),
        "n,ids\n22,22\n"
    );
    assert_eq!(
        ws.csv("select count(*) as n from quarantine.raw_crm_accounts"),
        "n\n3\n"
    );
    let again = ws.run(&["ingest", "crm_accounts"]).ok();
    assert!(again.contains("up to date"), "{again}");
}

#[test]
fn unknown_sources_and_bad_dialects_are_named() {
    let ws = project_with_fixtures(THREE_SOURCES);
    let error = ws.run(&["ingest", "crm"]).fails_with(1);
    assert!(
        error.contains(
            "unknown source 'crm': the project declares crm_accounts, erp_invoices, usage_events"
        ),
        "{error}"
    );
    ws.append_to_project(
        "\n[[source]]\nname = \"bad\"\npath = \"x/*.csv\"\nformat = \"csv\"\ntable = \"raw.bad\"\ndialect = \"sap\"\n",
    );
    let error = ws.run(&["ingest", "bad"]).fails_with(1);
    assert!(
        error.contains("source 'bad': dialect: unknown dialect preset 'sap'"),
        "{error}"
    );
    ws.append_to_project(
        "\n[[source]]\nname = \"typo\"\npath = \"x\"\nformat = \"xml\"\ntable = \"raw.t\"\n",
    );
    let error = ws.run(&["ingest"]).fails_with(1);
    assert!(
        error.contains("unknown variant `xml`, expected one of `csv`, `json`, `parquet`"),
        "{error}"
    );
}

#[test]
fn json_arrays_land_and_a_broken_file_is_rejected_whole() {
    let ws = Workspace::init();
    ws.write_file(
        "extracts/a.json",
        "[{\"id\": 0, \"tags\": [\"x\", \"]\"]}, {\"id\": 1}]",
    );
    let unclosed: String = (0..9000).map(|i| format!("{{\"id\": {i}}},")).collect();
    ws.write_file("extracts/b.json", &format!("[{unclosed}"));
    ws.append_to_project(
        "\n[[source]]\nname = \"events\"\npath = \"extracts/*.json\"\nformat = \"json\"\ntable = \"raw.events\"\n",
    );
    let run = ws.run(&["ingest"]);
    assert!(
        run.stdout
            .contains("raw.events <- events: 1 file landed, 2 rows, 0 quarantined"),
        "{}",
        run.stdout
    );
    let error = run.fails_with(1);
    assert!(
        error.contains("b.json: after record 9000: the JSON array is not closed with ']'"),
        "{error}"
    );
    assert_eq!(
        ws.csv("select id, tags from raw.events order by id"),
        "id,tags\n0,\"[\"\"x\"\",\"\"]\"\"]\"\n1,\n"
    );
}

#[test]
fn a_file_that_fails_after_rows_were_written_rejects_the_whole_batch() {
    use deltalake::arrow::array::{RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::basic::Compression;
    use deltalake::parquet::file::properties::WriterProperties;
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    use std::sync::Arc;

    let ws = Workspace::init();
    // Two row groups of 10,000 rows; the second one's data is then corrupted on disk, so
    // reading fails after the first row group's rows went to the writer.
    let path = ws.path().join("extracts/b.parquet");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(10_000))
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .build();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        schema.clone(),
        Some(properties),
    )
    .unwrap();
    let ids = StringArray::from_iter_values((0..20_000).map(|i| format!("row-{i:08}")));
    writer
        .write(&RecordBatch::try_new(schema, vec![Arc::new(ids)]).unwrap())
        .unwrap();
    writer.close().unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let second = reader.metadata().row_group(1).column(0);
    let start = second.data_page_offset() as usize + 64;
    drop(reader);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[start..start + 512].fill(0xAB);
    std::fs::write(&path, bytes).unwrap();

    ws.append_to_project(
        "\n[[source]]\nname = \"ids\"\npath = \"extracts/*.parquet\"\nformat = \"parquet\"\ntable = \"raw.ids\"\n",
    );
    let error = ws.run(&["ingest"]).fails_with(1);
    assert!(error.contains("source 'ids':"), "{error}");
    assert!(error.contains("b.parquet"), "{error}");
    assert!(
        error.contains("the batch was rejected and nothing was committed"),
        "{error}"
    );
    assert_eq!(ws.csv("select count(*) as n from raw.ids"), "n\n0\n");
}
