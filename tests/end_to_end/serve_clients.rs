//! The clients BI stacks are built on, against `lakescore serve`: SQLAlchemy with
//! psycopg2 and psycopg 3, pandas and both drivers' named cursors and COPY
//! (`tests/clients/postgres_clients.py`), psql's meta-commands and `\copy`, and over
//! tokio-postgres the PostgreSQL behaviour they rely on: search paths, settings,
//! cursors, COPY and correlated subqueries.

use std::path::Path;
use std::process::Command;

use crate::serve::{ANALYST_PASSWORD, run, serve_with, text};

/// What Metabase's PostgreSQL driver sends on connect and on sync, before it lists the
/// tables ([`METABASE_TABLES`]).
const METABASE_SYNC: [&str; 8] = [
    "SET extra_float_digits = 2",
    "SET application_name = 'Metabase v0.55.1 [f8f63fdf-d8f8-4573-86ea-4fe4a9548041]'",
    "SHOW TRANSACTION ISOLATION LEVEL",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
    r#"SELECT nspname AS "TABLE_SCHEM", current_database() AS "TABLE_CATALOG" FROM pg_catalog.pg_namespace  WHERE nspname <> 'pg_toast' AND (nspname !~ '^pg_temp_'  OR nspname = (pg_catalog.current_schemas(true))[1]) AND (nspname !~ '^pg_toast_temp_'  OR nspname = replace((pg_catalog.current_schemas(true))[1], 'pg_temp_', 'pg_toast_temp_'))  ORDER BY "TABLE_SCHEM""#,
    r#"with table_privileges as (
         select
           NULL as role,
           t.schemaname as schema,
           t.objectname as table,
           pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'update') as update,
           pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'select') as select,
           pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'insert') as insert,
           pg_catalog.has_table_privilege(     current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'delete') as delete
         from (
           select schemaname, tablename as objectname from pg_catalog.pg_tables
           union
           select schemaname, viewname as objectname from pg_catalog.pg_views
           union
           select schemaname, matviewname as objectname from pg_catalog.pg_matviews
         ) t
         where t.schemaname !~ '^pg_'
           and t.schemaname <> 'information_schema'
           and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')
        )
        select t.*
        from table_privileges t"#,
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "show timezone",
];

/// Metabase's table sync of the `curated` schema (its query, with `curated` for `public`).
const METABASE_TABLES: &str = r#"SELECT "n"."nspname" AS "schema", "c"."relname" AS "name", CASE "c"."relkind" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS "type", "d"."description" AS "description", "stat"."n_live_tup" AS "estimated_row_count" FROM "pg_catalog"."pg_class" AS "c" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid" LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") AND ("d"."objsubid" = '0') AND ("d"."classoid" = 'pg_class'::regclass) LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") AND ("c"."relname" = "stat"."relname") WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ '^pg_') AND ("n"."nspname" <> 'information_schema') AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND ("n"."nspname" IN ('curated')) ORDER BY "type" ASC, "schema" ASC, "name" ASC"#;

/// The Python with the clients: `LAKESCORE_TEST_CLIENTS_PYTHON` (set by `.ci/run` to its
/// virtual environment), else `python3`.
fn clients_python() -> String {
    std::env::var("LAKESCORE_TEST_CLIENTS_PYTHON").unwrap_or_else(|_| String::from("python3"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_clients_connect_inspect_page_and_export_as_with_postgresql() {
    // Analysts look in scored first, then curated.
    let served = serve_with("", "search_path = [\"scored\", \"curated\"]\n");
    run(
        served.workspace(),
        &["score", "churn", "--input", "curated.customers"],
    );

    // SQLAlchemy, pandas, psycopg2 and psycopg 3.
    let python = clients_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/postgres_clients.py");
    let output = Command::new(&python)
        .arg(script)
        .args([&served.port.to_string(), "eng1neer-pw", ANALYST_PASSWORD])
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("9 client checks passed"),
        "{python} (it needs sqlalchemy, psycopg2, psycopg and pandas; .ci/run installs them and sets LAKESCORE_TEST_CLIENTS_PYTHON):\n{stdout}\n{stderr}"
    );

    // psql's meta-commands and \copy.
    let psql = |command: &str| {
        let output = served.psql("engineer", "eng1neer-pw", "disable", command);
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "{command}: {stderr}");
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let described = psql("\\d+ curated.customers");
    assert!(
        described.contains("customer_id|text")
            && described.contains("logins|double precision")
            && described.contains("_ingested_at|timestamp with time zone"),
        "{described}"
    );
    let tables = psql("\\dt+ curated.*");
    assert!(tables.contains("curated|customers|table"), "{tables}");
    // Descriptions, from the scored table's Delta metadata.
    let scored = psql("\\dt+ scored.*");
    assert!(
        scored.contains("scored|churn|table") && scored.contains("|Churn risk of every customer"),
        "{scored}"
    );
    let columns = psql("\\d+ scored.churn");
    assert!(
        columns.contains("|When the row was scored (UTC)"),
        "{columns}"
    );
    let schemas = psql("\\dn+");
    for schema in ["curated", "raw", "scored"] {
        assert!(
            schemas
                .lines()
                .any(|l| l.starts_with(&format!("{schema}|"))),
            "{schemas}"
        );
    }
    assert!(psql("\\df").contains("(0 rows)"));
    let roles = psql("\\du");
    assert!(
        roles.contains("analyst|") && roles.contains("engineer|"),
        "{roles}"
    );
    let copied = psql(
        "\\copy (select customer_id, contract from curated.customers order by 1 limit 2) to stdout with csv header",
    );
    assert_eq!(
        copied,
        "customer_id,contract\nC0000,monthly\nC0001,yearly\n"
    );

    // Metabase's connect and sync (its PostgreSQL driver's statements, v0.55).
    let engineer = served.connect("engineer", "eng1neer-pw").await.unwrap();
    for statement in METABASE_SYNC {
        engineer
            .simple_query(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
    }
    let synced = text(&engineer.simple_query(METABASE_TABLES).await.unwrap());
    assert_eq!(synced.len(), 1, "{synced:?}");
    assert_eq!(
        synced[0][..4],
        ["curated", "customers", "TABLE", "NULL"],
        "Metabase's table sync"
    );
    let scored = METABASE_TABLES.replace("IN ('curated')", "IN ('scored')");
    let synced = text(&engineer.simple_query(&scored).await.unwrap());
    assert_eq!(
        synced[0][..4],
        ["scored", "churn", "TABLE", "Churn risk of every customer"],
        "Metabase's table sync shows the description"
    );
    // Column types under PostgreSQL's names; dates and numbers in PostgreSQL's patterns.
    let types = text(
        &engineer
            .simple_query(
                "select column_name, data_type, udt_name from information_schema.columns \
                 where table_schema = 'scored' and table_name = 'churn' \
                 and column_name in ('probability', 'top_features', 'model_version', 'scored_at') \
                 order by column_name",
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        types,
        [
            ["model_version", "bigint", "int8"],
            ["probability", "double precision", "float8"],
            ["scored_at", "timestamp with time zone", "timestamptz"],
            ["top_features", "json", "json"],
        ]
    );
    let formatted = text(
        &engineer
            .simple_query(
                "select to_char(timestamp '2026-03-07 14:05:09', 'YYYY-MM'), \
                 to_char(date '2026-03-07', 'IYYY-\"W\"IW'), to_char(1234.5, 'FM999,999.00'), \
                 count(distinct to_char(scored_at, 'YYYY-MM-DD')) from scored.churn",
            )
            .await
            .unwrap(),
    );
    assert_eq!(formatted, [["2026-03", "2026-W10", "1,234.50", "1"]]);
    drop(engineer);

    // tokio-postgres: the role's search path, then the client's own.
    let analyst = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    let count = |rows: Vec<tokio_postgres::SimpleQueryMessage>| text(&rows)[0][0].clone();
    assert_eq!(
        count(
            analyst
                .simple_query("select count(*) from churn")
                .await
                .unwrap()
        ),
        "200"
    );
    assert_eq!(
        count(
            analyst
                .simple_query("select current_schema()")
                .await
                .unwrap()
        ),
        "scored"
    );
    analyst
        .simple_query("set search_path to curated")
        .await
        .unwrap();
    assert_eq!(
        count(
            analyst
                .simple_query("select count(*) from customers")
                .await
                .unwrap()
        ),
        "200"
    );
    // churn is no longer on the path: it is looked up in public, which analysts may not
    // read.
    let unknown = analyst
        .simple_query("select count(*) from churn")
        .await
        .unwrap_err();
    assert_eq!(
        unknown.as_db_error().unwrap().message(),
        "permission denied for table public.churn"
    );
    assert_eq!(
        text(
            &analyst
                .simple_query(
                    "select current_setting('server_version_num'), current_setting('nope', true) is null"
                )
                .await
                .unwrap()
        ),
        [["160006", "t"]]
    );
    let unrecognized = analyst
        .simple_query("select current_setting('nope')")
        .await
        .unwrap_err();
    assert!(
        unrecognized
            .as_db_error()
            .unwrap()
            .message()
            .contains("unrecognized configuration parameter \"nope\""),
        "{unrecognized:?}"
    );

    // A correlated subquery over lakehouse tables answers as the join does.
    let correlated = text(
        &analyst
            .simple_query(
                "select c.customer_id, (select max(s.probability) from scored.churn s where s.customer_id = c.customer_id) is not null \
                 from curated.customers c order by 1 limit 3",
            )
            .await
            .unwrap(),
    );
    assert_eq!(correlated, [["C0000", "t"], ["C0001", "t"], ["C0002", "t"]]);

    // Cursors page; FETCH of a closed cursor says so.
    analyst
        .simple_query(
            "declare pages cursor for select customer_id from curated.customers order by 1",
        )
        .await
        .unwrap();
    let first = text(
        &analyst
            .simple_query("fetch forward 3 from pages")
            .await
            .unwrap(),
    );
    assert_eq!(first, [["C0000"], ["C0001"], ["C0002"]]);
    let next = text(&analyst.simple_query("fetch next from pages").await.unwrap());
    assert_eq!(next, [["C0003"]]);
    let rest = analyst.simple_query("fetch all from pages").await.unwrap();
    assert_eq!(text(&rest).len(), 196);
    analyst.simple_query("close pages").await.unwrap();
    let closed = analyst
        .simple_query("fetch 1 from pages")
        .await
        .unwrap_err();
    assert_eq!(closed.as_db_error().unwrap().code().code(), "34000");

    // COPY through the driver's own copy-out path.
    let stream = analyst
        .copy_out("copy (select customer_id from curated.customers order by 1 limit 2) to stdout")
        .await
        .unwrap();
    let chunks: Vec<_> = futures::StreamExt::collect::<Vec<_>>(stream).await;
    let copied: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    assert_eq!(String::from_utf8(copied).unwrap(), "C0000\nC0001\n");

    // The description of a table the analyst may not read stays hidden from them, by
    // every way a client asks; the engineer sees it.
    served.workspace().write_file(
        "models/accounts_audit.sql",
        "/*\ntable = \"raw.accounts_audit\"\ndescription = \"Secret audit of accounts\"\n\
         [columns]\naccount_id = \"Secret account id\"\n*/\nSELECT account_id FROM raw.accounts",
    );
    run(served.workspace(), &["transform"]);
    let secrets = "SELECT count(*) FROM pg_catalog.pg_description WHERE description LIKE 'Secret%' \
         UNION ALL SELECT count(*) FROM pg_catalog.pg_class AS c \
         WHERE obj_description(c.oid, 'pg_class') LIKE 'Secret%' \
         UNION ALL SELECT count(*) FROM pg_catalog.pg_attribute AS a \
         WHERE col_description(a.attrelid, a.attnum) LIKE 'Secret%'";
    let counts = |rows: Vec<Vec<String>>| {
        let mut counts: Vec<String> = rows.into_iter().flatten().collect();
        counts.sort();
        counts
    };
    let hidden = counts(text(&analyst.simple_query(secrets).await.unwrap()));
    assert_eq!(hidden, ["0", "0", "0"], "what the analyst sees");
    let engineer = served.connect("engineer", "eng1neer-pw").await.unwrap();
    let shown = counts(text(&engineer.simple_query(secrets).await.unwrap()));
    assert_eq!(shown, ["1", "1", "2"], "what the engineer sees");
    drop((analyst, engineer));

    // Every fetch and copy is audited with its rows.
    let (workspace, _) = served.stop();
    let audited = run(
        &workspace,
        &[
            "sql",
            "select statement, rows from ops.query_log where statement like 'fetch%' or lower(statement) like '%to stdout%' order by started_at",
            "--format",
            "csv",
        ],
    );
    assert!(
        audited.contains("fetch forward 3 from pages,3")
            && audited.contains("fetch all from pages,196")
            && audited.contains("LIMIT 2) TO STDOUT,2")
            && audited.contains("\"COPY curated.customers (customer_id, churned) TO STDOUT\",200"),
        "{audited}"
    );
}
