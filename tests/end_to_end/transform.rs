//! SQL models end to end: CRM and ERP extracts landed, three models joining them,
//! lineage down to the files, reruns that add nothing, and a duplicated customer id that
//! fails the next run without touching the table.

use crate::support::Workspace;

const SOURCES: &str = r#"
[functions]
pii_salt = "${LAKESCORE_TEST_SALT}"
[functions.exchange_rates]
base = "EUR"
rates = { USD = 1.25 }

[[source]]
name = "crm_accounts"
path = "extracts/crm/accounts_*.csv"
format = "csv"
table = "raw.crm_accounts"
dialect = "crm"

[[source]]
name = "erp_customers"
path = "extracts/erp/customers_*.csv"
format = "csv"
table = "raw.erp_customers"
dialect = "erp"
[source.schema]
"Kunden-Nr." = { type = "string", required = true }
Umsatz = "string"
"Währung" = "string"
"#;

const CUSTOMERS: &str = r#"/*
description = "One row per customer, reconciled across CRM and ERP"
[columns]
customer_id = "CRM account id"
[[tests]]
unique = "customer_id"
[[tests]]
not_null = ["customer_id", "email_hash"]
[[tests]]
relationships = { column = "erp_no", to = "raw.erp_customers", field = "kunden_nr" }
severity = "warn"
*/
SELECT a.account_id AS customer_id,
       a.name,
       hash_pii(normalize_email(a.email)) AS email_hash,
       normalize_phone(a.phone, 'DE') AS phone,
       lpad(substr(a.account_id, 3), 7, '0') AS erp_no,
       to_currency(parse_decimal_locale(e.umsatz, ',', '.'), e."währung", 'EUR') AS revenue_eur
FROM raw.crm_accounts a
LEFT JOIN raw.erp_customers e ON e.kunden_nr = lpad(substr(a.account_id, 3), 7, '0')
"#;

const SEGMENTS: &str = r#"/*
materialized = "merge"
key = ["segment"]
[[tests]]
accepted_values = { column = "segment", values = ["large", "small"] }
*/
SELECT CASE WHEN revenue_eur >= 1000 THEN 'large' ELSE 'small' END AS segment,
       count(*) AS customers
FROM curated.customers GROUP BY 1
"#;

const LARGE: &str = r#"/* materialized = "view" */
SELECT customer_id, name FROM curated.customers WHERE revenue_eur >= 1000
"#;

pub(crate) fn project() -> Workspace {
    let ws = Workspace::init();
    ws.append_to_project(SOURCES);
    ws.write_file(
        "extracts/crm/accounts_1.csv",
        "account_id,name,email,phone\n\
         A-001,Acme,  Ann@Acme.example ,030 1234567\n\
         A-002,Beta,bob@beta.example,+44 20 7946 0958\n\
         A-003,Gamma,cy@gamma.example,12\n",
    );
    // ERP exports are Windows-1252: 'ä' is the single byte 0xE4.
    let erp = "Kunden-Nr.;Name;Umsatz;Währung\n0000001;Acme GmbH;1.250,00;USD\n0000002;Beta Ltd;99,50;EUR\n";
    let latin1: Vec<u8> = erp.chars().map(|c| c as u8).collect();
    std::fs::create_dir_all(ws.path().join("extracts/erp")).unwrap();
    std::fs::write(ws.path().join("extracts/erp/customers_1.csv"), latin1).unwrap();
    ws.write_file("models/customers.sql", CUSTOMERS);
    ws.write_file("models/segments.sql", SEGMENTS);
    ws.write_file("models/large_customers.sql", LARGE);
    ws
}

pub(crate) fn ingest(ws: &Workspace) {
    crate::support::lakescore_with_env(
        ws.path(),
        &["ingest"],
        &[("LAKESCORE_TEST_SALT", "e2e-salt")],
    )
    .ok();
}

pub(crate) fn transform(ws: &Workspace, args: &[&str]) -> crate::support::Run {
    let mut all = vec!["transform"];
    all.extend_from_slice(args);
    crate::support::lakescore_with_env(ws.path(), &all, &[("LAKESCORE_TEST_SALT", "e2e-salt")])
}

pub(crate) fn sql(ws: &Workspace, query: &str) -> String {
    crate::support::lakescore_with_env(
        ws.path(),
        &["sql", query, "--format", "csv"],
        &[("LAKESCORE_TEST_SALT", "e2e-salt")],
    )
    .ok()
}

#[test]
fn models_build_in_order_with_lineage_and_a_duplicate_id_fails_the_next_run_cleanly() {
    let ws = project();
    ingest(&ws);

    let listed = crate::support::lakescore_with_env(
        ws.path(),
        &["transform", "--list", "--format", "csv"],
        &[("LAKESCORE_TEST_SALT", "e2e-salt")],
    )
    .ok();
    let order: Vec<&str> = listed
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(
        order,
        ["customers", "large_customers", "segments"],
        "{listed}"
    );

    let out = transform(&ws, &[]).ok();
    assert!(
        out.contains(
            "✓ customers -> curated.customers: version 0 (overwrite, 3 rows, 2/3 tests passed)"
        ),
        "{out}"
    );
    assert!(
        out.contains("warning: test relationships(erp_no -> raw.erp_customers.kunden_nr)"),
        "{out}"
    );
    assert!(out.contains("warning: normalize_phone: 1 value(s) could not be normalized and became NULL, e.g. '12'"), "{out}");
    assert!(
        out.contains("✓ large_customers -> curated.large_customers: view saved"),
        "{out}"
    );
    assert!(
        out.contains("✓ segments -> curated.segments: version 0 (merge, 2 rows, 2/2 tests passed)"),
        "{out}"
    );

    assert_eq!(
        sql(
            &ws,
            "SELECT customer_id, phone, erp_no, revenue_eur, length(email_hash) AS h FROM curated.customers ORDER BY 1"
        ),
        "customer_id,phone,erp_no,revenue_eur,h\n\
         A-001,+49301234567,0000001,1000.0,64\n\
         A-002,+442079460958,0000002,99.5,64\n\
         A-003,,0000003,,64\n"
    );
    assert_eq!(
        sql(&ws, "SELECT * FROM curated.large_customers"),
        "customer_id,name\nA-001,Acme\n"
    );
    assert_eq!(
        sql(
            &ws,
            "SELECT segment, customers FROM curated.segments ORDER BY 1"
        ),
        "segment,customers\nlarge,1\nsmall,2\n"
    );

    let lineage = ws.run(&["lineage", "curated.segments"]).ok();
    for expected in [
        "curated.segments@0  model segments (models/segments.sql, sha256 ",
        "└── curated.customers@0  model customers (models/customers.sql, sha256 ",
        "raw.crm_accounts@1  landed from extracts, 1 batch(es)",
        "extracts/crm/accounts_1.csv (3 rows, sha256:",
        "raw.erp_customers@1  landed from extracts, 1 batch(es)",
        "extracts/erp/customers_1.csv (2 rows, sha256:",
    ] {
        assert!(
            lineage.contains(expected),
            "missing {expected:?} in\n{lineage}"
        );
    }
    let json = ws.run(&["lineage", "curated.customers@0", "--json"]).ok();
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["made_by"]["kind"], "model");
    assert_eq!(parsed["inputs"][0]["table"], "raw.crm_accounts");
    assert_eq!(parsed["inputs"][0]["version"], 1);

    // A rerun with nothing new changes nothing.
    let out = transform(&ws, &[]).ok();
    assert!(
        out.contains("= customers -> curated.customers: up to date at version 0"),
        "{out}"
    );
    assert!(
        out.contains("= segments -> curated.segments: up to date at version 0"),
        "{out}"
    );

    // A new CRM extract repeats customer A-002: the unique test fails before the commit.
    ws.write_file(
        "extracts/crm/accounts_2.csv",
        "account_id,name,email,phone\nA-002,Beta Group,bob@beta.example,\nA-004,Delta,dee@delta.example,\n",
    );
    ingest(&ws);
    let run = transform(&ws, &[]);
    let stdout = run.stdout.clone();
    let stderr = run.fails_with(1);
    assert!(
        stdout.contains(
            "✗ customers -> curated.customers: test unique(customer_id) failed: 2 failing row(s)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"{"customer_id":"A-002","occurrences":2}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("curated.customers is unchanged"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "- segments -> curated.segments: skipped, it reads customers, which did not build"
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("error: 3 model(s) did not build: customers, large_customers, segments"),
        "{stderr}"
    );
    assert_eq!(
        sql(&ws, "SELECT count(*) AS n FROM curated.customers"),
        "n\n3\n"
    );
    let history = ws
        .run(&["history", "curated.customers", "--format", "csv"])
        .ok();
    assert_eq!(history.lines().count(), 2, "still one version:\n{history}");
    assert_eq!(
        sql(
            &ws,
            "SELECT status, failing_rows FROM ops.test_results WHERE test = 'unique(customer_id)' ORDER BY tested_at"
        ),
        "status,failing_rows\npassed,0\nfailed,2\n"
    );
}

#[test]
fn model_file_mistakes_name_the_file_and_line() {
    let ws = Workspace::init();
    // The salt's variable is only needed when something hashes.
    ws.append_to_project("\n[functions]\npii_salt = \"${LAKESCORE_TEST_UNSET_SALT}\"\n");
    let error = ws
        .run(&["sql", "SELECT hash_pii('ann@example.com')"])
        .fails_with(2);
    assert!(
        error.contains("hash_pii: pii_salt in [functions]: environment variable LAKESCORE_TEST_UNSET_SALT is not set"),
        "{error}"
    );
    ws.write_file(
        "models/broken.sql",
        "/*\ntable = \"curated.x\"\nmaterialised = \"view\"\n*/\nSELECT 1",
    );
    let error = ws.run(&["transform"]).fails_with(1);
    assert!(
        error.starts_with("error: models/broken.sql: config comment, line 3: unknown field `materialised`, expected one of"),
        "{error}"
    );
    ws.write_file("models/broken.sql", "SELECT * FROM raw.nothing_here");
    let error = ws.run(&["transform"]).fails_with(1);
    assert!(error.contains("error: models/broken.sql: reads 'raw.nothing_here', which no model builds and the lakehouse does not have"), "{error}");
    ws.write_file("models/broken.sql", "SELECT (1\nFROM raw.x");
    let error = ws.run(&["transform"]).fails_with(1);
    assert!(error.contains("broken.sql: sql parser error"), "{error}");
    assert!(error.contains("    2 | FROM raw.x"), "{error}");
}

#[test]
fn a_table_holds_the_types_its_query_produced_and_a_narrowing_append_is_refused() {
    let ws = Workspace::init();
    ws.append_to_project(
        r#"
[[source]]
name = "inv"
path = "inv.csv"
format = "csv"
table = "raw.inv"
[source.schema]
k = "string"
amt = "decimal(18,2)"
"#,
    );
    ws.write_file("inv.csv", "k,amt\na,1.50\nb,3.05\nb,1.00\n");
    ws.run(&["ingest"]).ok();
    // CASE mixing the integer 0 with a decimal is a decimal, in `sql` and in the table.
    ws.write_file(
        "models/totals.sql",
        "SELECT k, sum(CASE WHEN k = 'a' THEN 0 ELSE amt END) AS total FROM raw.inv GROUP BY k",
    );
    ws.run(&["transform"]).ok();
    assert_eq!(
        ws.csv("SELECT k, total, arrow_typeof(total) AS type FROM curated.totals ORDER BY k"),
        "k,total,type\na,0.00,\"Decimal128(32, 2)\"\nb,4.05,\"Decimal128(32, 2)\"\n"
    );

    // An append model whose query now yields decimals into an integer column fails,
    // naming the column and both types, and adds nothing.
    ws.write_file(
        "models/ledger.sql",
        "/* materialized = \"append\" */\nSELECT k, CAST(1 AS BIGINT) AS amount FROM raw.inv",
    );
    ws.run(&["transform", "ledger"]).ok();
    ws.write_file(
        "models/ledger.sql",
        "/* materialized = \"append\" */\nSELECT k, amt AS amount FROM raw.inv",
    );
    let run = ws.run(&["transform", "ledger"]);
    let stdout = run.stdout.clone();
    run.fails_with(1);
    assert!(
        stdout.contains("✗ ledger -> curated.ledger: ")
            && stdout.contains("column 'amount' is Int64 in the table but Decimal128(18, 2) in the rows written; casting would lose information, so nothing was written"),
        "{stdout}"
    );
    assert_eq!(
        ws.csv("SELECT count(*) AS n, sum(amount) AS s FROM curated.ledger"),
        "n,s\n3,3\n"
    );
}

#[test]
fn descriptions_are_delta_metadata_and_follow_the_model_file() {
    let ws = project();
    ingest(&ws);
    transform(&ws, &["customers"]).ok();
    let described = |text: &str, comment: &str| {
        (
            text.to_string(),
            vec![(String::from("customer_id"), comment.to_string())],
        )
    };
    assert_eq!(
        ws.delta_descriptions("curated/customers"),
        described(
            "One row per customer, reconciled across CRM and ERP",
            "CRM account id"
        ),
        "recorded in the commit that created the table"
    );

    // Edited descriptions rebuild the model and are recorded; the next run is up to date.
    ws.write_file(
        "models/customers.sql",
        &CUSTOMERS
            .replace("One row per customer", "Every customer")
            .replace("CRM account id", "The CRM's account id"),
    );
    let out = transform(&ws, &["customers"]).ok();
    assert!(
        out.contains("✓ customers -> curated.customers: version 2"),
        "the rebuild (1) and the new descriptions (2):\n{out}"
    );
    assert_eq!(
        ws.delta_descriptions("curated/customers"),
        described(
            "Every customer, reconciled across CRM and ERP",
            "The CRM's account id"
        )
    );
    let out = transform(&ws, &["customers"]).ok();
    assert!(
        out.contains("= customers -> curated.customers: up to date at version 2"),
        "{out}"
    );

    // A column described but not produced is an error naming the file and the column.
    ws.write_file(
        "models/customers.sql",
        &CUSTOMERS.replace("customer_id = \"CRM account id\"", "revenue = \"Yearly\""),
    );
    let stdout = transform(&ws, &["customers"]).stdout;
    assert!(
        stdout.contains("[columns] describes 'revenue', which the query does not produce"),
        "{stdout}"
    );
}
