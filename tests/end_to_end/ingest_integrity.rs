//! Landing under the faults a production lakehouse meets: a file still being written, an
//! unterminated quote, oversized records, a file of nothing but bad rows, and a write that
//! fails between the quarantine and the data commit. Every case ends with each table at a
//! committed version and a rerun that lands each file exactly once.

use crate::support::{Workspace, spawn_paused};

const SOURCE: &str = r#"
[[source]]
name = "orders"
path = "extracts/orders_*.csv"
format = "csv"
table = "raw.orders"
dialect = "crm"
max_bad_rows = 10
[source.schema]
id = { type = "int", required = true }
note = "string"
"#;

fn project(extra: &str) -> Workspace {
    let ws = Workspace::init();
    ws.append_to_project(extra);
    ws.append_to_project(SOURCE);
    ws
}

fn rows(from: u64, to: u64) -> String {
    (from..to).map(|i| format!("{i},n{i}\n")).collect()
}

/// Runs `ingest` in `ws` until it has listed the extracts, appends rows `more` to
/// `name` (an export that goes on writing after it was listed), lets the run go on and
/// checks it is rejected naming the file.
fn rejected_while_written(ws: &Workspace, name: &str, more: (u64, u64)) {
    let file = ws.path().join("extracts").join(name);
    let resume = ws.path().join(format!("resume-{name}"));
    let paused = spawn_paused(ws.path(), &["ingest"], "ingest-read", Some(&resume), &[]);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&rows(more.0, more.1));
    std::fs::write(&file, text).unwrap();
    let (code, rest) = paused.resume(&resume);
    assert_eq!(code, Some(1), "{rest}");
    assert!(
        rest.contains(&format!("{name}: the file changed while it was read")),
        "{rest}"
    );
}

/// The first landing hashes files only as it reads them (no ledger can hold them yet)
/// and tells a file written to meanwhile by its size and modification time.
#[test]
fn a_file_that_changes_while_it_is_read_is_rejected_and_lands_once_when_complete() {
    let ws = project("");
    ws.write_file(
        "extracts/orders_1.csv",
        &format!("id,note\n{}", rows(0, 1000)),
    );
    rejected_while_written(&ws, "orders_1.csv", (1000, 1500));
    assert_eq!(ws.csv("SELECT count(*) AS n FROM raw.orders"), "n\n0\n");

    let out = ws.run(&["ingest"]).ok();
    assert!(
        out.contains("1 file landed, 1500 rows, 0 quarantined"),
        "{out}"
    );
    let again = ws.run(&["ingest"]).ok();
    assert!(again.contains("up to date"), "{again}");
    assert_eq!(
        ws.csv("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM raw.orders"),
        "n,ids\n1500,1500\n"
    );

    // Into the table that now exists, files are hashed when listed (to ask its ledger)
    // and again as they are read: a file written to in between is rejected too.
    ws.write_file(
        "extracts/orders_2.csv",
        &format!("id,note\n{}", rows(2000, 2100)),
    );
    rejected_while_written(&ws, "orders_2.csv", (2100, 2200));
    let out = ws.run(&["ingest"]).ok();
    assert!(out.contains("1 file landed, 200 rows"), "{out}");
    assert_eq!(
        ws.csv("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM raw.orders"),
        "n,ids\n1700,1700\n"
    );
}

#[test]
fn an_unterminated_quote_rejects_the_file_naming_its_line_and_long_records_are_quarantined() {
    let ws = project("\n[ingest]\nmax_record_bytes = \"1KiB\"\nmax_field_bytes = 200\n");
    // A quote opened on line 3 and never closed: 20,000 lines would become one field.
    ws.write_file(
        "extracts/orders_1.csv",
        &format!("id,note\n1,ok\n2,\"broken\n{}", rows(3, 20_000)),
    );
    let error = ws.run(&["ingest"]).fails_with(1);
    assert!(
        error.contains("orders_1.csv: line 3: a quote opened here is never closed, so everything after it would be one field; nothing of the file landed"),
        "{error}"
    );
    assert_eq!(ws.csv("SELECT count(*) AS n FROM raw.orders"), "n\n0\n");

    // Records over the limits are quarantined with the line they started on.
    let long = "x".repeat(3000);
    let wide = "y".repeat(300);
    ws.write_file(
        "extracts/orders_1.csv",
        &format!("id,note\n1,ok\n2,\"{long}\n{long}\"\n3,{wide}\n4,fine\n"),
    );
    let out = ws.run(&["ingest"]).ok();
    assert!(
        out.contains("1 file landed, 2 rows, 2 quarantined"),
        "{out}"
    );
    assert_eq!(
        ws.csv("SELECT _source_row AS line, id FROM raw.orders ORDER BY id"),
        "line,id\n2,1\n6,4\n"
    );
    let quarantined = ws.csv(
        "SELECT _source_row, \"column\", error, length(raw) AS raw_bytes FROM quarantine.raw_orders ORDER BY _source_row",
    );
    let lines: Vec<&str> = quarantined.lines().collect();
    assert_eq!(lines.len(), 3, "{quarantined}");
    assert!(
        lines[1]
            .starts_with("3,,the record is longer than max_record_bytes (1024 bytes) in [ingest]"),
        "{quarantined}"
    );
    assert!(
        lines[2].starts_with(
            "5,,\"column note: the field is 300 bytes, more than max_field_bytes (200) in [ingest]"
        ),
        "{quarantined}"
    );
}

#[test]
fn bad_rows_stop_reading_at_a_count_limit_and_are_spooled_whole_when_allowed() {
    let ws = project("");
    // 200,000 bad rows after one good one; the limit is 10.
    let bad: String = (0..200_000).map(|i| format!("x{i},bad\n")).collect();
    ws.write_file("extracts/orders_1.csv", &format!("id,note\n1,ok\n{bad}"));
    let error = ws.run(&["ingest"]).fails_with(1);
    assert!(
        error.contains("orders_1.csv: 11 of 12 rows read so far are bad, above max_bad_rows = 10; nothing was committed. First problem: row 3 column id:"),
        "{error}"
    );
    assert_eq!(ws.csv("SELECT count(*) AS n FROM raw.orders"), "n\n0\n");
    let tables = ws.csv(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'quarantine'",
    );
    assert_eq!(tables, "n\n0\n", "no quarantine rows were committed");

    // Allowed to be all bad: every bad row is quarantined, written out group by group.
    ws.append_to_project(
        "\n[[source]]\nname = \"tolerant\"\npath = \"extracts/tolerant_*.csv\"\nformat = \"csv\"\n\
         table = \"raw.tolerant\"\nmax_bad_rows = \"100%\"\n[source.schema]\nid = \"int\"\nnote = \"string\"\n",
    );
    let bad: String = (0..10_000).map(|i| format!("x{i},bad\n")).collect();
    ws.write_file("extracts/tolerant_1.csv", &format!("id,note\n1,ok\n{bad}"));
    let out = ws.run(&["ingest", "tolerant"]).ok();
    assert!(
        out.contains("1 file landed, 1 rows, 10000 quarantined"),
        "{out}"
    );
    assert_eq!(
        ws.csv("SELECT count(*) AS n, min(_source_row) AS first, max(_source_row) AS last FROM quarantine.raw_tolerant"),
        "n,first,last\n10000,3,10002\n"
    );
}

#[test]
fn a_failed_write_at_either_commit_leaves_no_landed_batch_and_the_rerun_lands_once() {
    let ws = project("");
    ws.write_file("extracts/orders_1.csv", "id,note\n1,a\nx,bad\n3,c\n");
    let fail = |point: &str| {
        crate::support::lakescore_with_env(
            ws.path(),
            &["ingest"],
            &[("LAKESCORE_FAULT_FAIL", point)],
        )
    };
    let counts = || {
        ws.csv(
            "SELECT (SELECT count(*) FROM raw.orders) AS landed, \
             (SELECT count(*) FROM quarantine.raw_orders) AS quarantined",
        )
    };

    // The quarantine commit fails: nothing of the batch is committed anywhere.
    let error = fail("ingest-quarantine-commit").fails_with(2);
    assert!(
        error.contains("injected failure at ingest-quarantine-commit"),
        "{error}"
    );
    assert_eq!(ws.csv("SELECT count(*) AS n FROM raw.orders"), "n\n0\n");

    // The data commit fails after the quarantine commit: the batch is not landed, and the
    // error says its bad rows are already in quarantine.
    let error = fail("ingest-commit").fails_with(2);
    assert!(
        error.contains("injected failure at ingest-commit; the batch's 1 quarantined rows were committed to quarantine.raw_orders"),
        "{error}"
    );
    assert!(
        error.contains("the next run lands the data and does not quarantine them again"),
        "{error}"
    );
    assert_eq!(counts(), "landed,quarantined\n0,1\n");

    // The rerun lands the data once and quarantines nothing twice.
    let out = ws.run(&["ingest"]).ok();
    assert!(
        out.contains("1 file landed, 2 rows, 1 quarantined"),
        "{out}"
    );
    assert_eq!(counts(), "landed,quarantined\n2,1\n");
    let again = ws.run(&["ingest"]).ok();
    assert!(again.contains("up to date"), "{again}");
    assert_eq!(counts(), "landed,quarantined\n2,1\n");
}

#[test]
fn two_ingests_racing_for_the_same_new_file_land_it_once_and_quarantine_it_once() {
    let ws = project("");
    ws.write_file(
        "extracts/orders_1.csv",
        &format!("id,note\n{}", rows(0, 10)),
    );
    ws.run(&["ingest"]).ok();
    // A second file with three bad rows, spread over several chunks.
    let mut second = format!("id,note\n{}", rows(10, 5000));
    for bad in ["x,bad\n", "y,bad\n", "z,bad\n"] {
        second.push_str(bad);
        second.push_str(&rows(5000, 5001));
    }
    ws.write_file("extracts/orders_2.csv", &second);
    // Both runs list the file as new before either reads it.
    let resume = ws.path().join("resume");
    let first = spawn_paused(ws.path(), &["ingest"], "ingest-read", Some(&resume), &[]);
    let other = spawn_paused(ws.path(), &["ingest"], "ingest-read", Some(&resume), &[]);
    let (first_code, first_err) = first.resume(&resume);
    let (other_code, other_err) = other.resume(&resume);
    // One lands; the other's commit (of the quarantine or of the data) meets the first's
    // and fails, naming the table, before anything of it is committed.
    let (losing_code, loser) = match (first_code, other_code) {
        (Some(0), _) => (other_code, other_err),
        (_, Some(0)) => (first_code, first_err),
        _ => panic!("neither run landed:\n{first_err}\n{other_err}"),
    };
    assert!(matches!(losing_code, Some(1 | 2)), "{loser}");
    assert!(
        loser.contains("raw_orders") || loser.contains("raw/orders"),
        "{loser}"
    );

    let landed = "n\n5003\n";
    assert_eq!(ws.csv("SELECT count(*) AS n FROM raw.orders"), landed);
    assert_eq!(
        ws.csv(
            "SELECT count(*) AS n, count(DISTINCT _source_row) AS lines FROM quarantine.raw_orders"
        ),
        "n,lines\n3,3\n"
    );
    let again = ws.run(&["ingest"]).ok();
    assert!(
        again.contains("up to date (2 files already landed)"),
        "{again}"
    );
    assert_eq!(ws.csv("SELECT count(*) AS n FROM raw.orders"), landed);
}
