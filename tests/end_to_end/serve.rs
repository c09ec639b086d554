//! `lakescore serve` end to end, with real PostgreSQL clients: tokio-postgres for simple
//! and extended queries, parameters, `predict`, permissions, bad passwords and 32 clients
//! at once while a writer commits; `psql` for `\dt` and TLS; `ops.query_log` afterwards.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::support::{Workspace, lakescore_with_env, lakescore_with_input, terminate};

/// Runs lakescore in the workspace with the analyst's password in the environment, as
/// every command reads the whole project file.
pub fn run(workspace: &Workspace, args: &[&str]) -> String {
    lakescore_with_env(
        workspace.path(),
        args,
        &[("LAKESCORE_TEST_ANALYST_PASSWORD", ANALYST_PASSWORD)],
    )
    .ok()
}

const PROJECT: &str = r#"
[[source]]
name = "customers"
path = "extracts/customers_*.csv"
format = "csv"
table = "curated.customers"
mode = "overwrite"
[source.schema]
customer_id = { type = "string", required = true }
logins = "float"
contract = "string"
churned = "boolean"

[[source]]
name = "accounts"
path = "extracts/accounts_*.csv"
format = "csv"
table = "raw.accounts"

[[model]]
name = "churn"
description = "Churn risk of every customer"
task = "classification"
algorithm = "logistic_regression"
training_table = "curated.customers"
label = "churned"
key = ["customer_id"]
[model.features]
logins = "numeric"
contract = "categorical"

[serve]
listen = "127.0.0.1:0"
[[serve.role]]
name = "analyst"
select = ["curated", "scored"]
[[serve.role]]
name = "engineer"
select = ["*"]
[[serve.user]]
name = "analyst"
password = "${LAKESCORE_TEST_ANALYST_PASSWORD}"
role = "analyst"
[[serve.user]]
name = "engineer"
password_hash = "ENGINEER_HASH"
role = "engineer"
"#;

pub const ANALYST_PASSWORD: &str = "an4lyst-pw";

/// `rows` customers; logins below 10 churn.
fn customers(rows: usize) -> String {
    let mut csv = String::from("customer_id,logins,contract,churned\n");
    for i in 0..rows {
        let logins = (i * 7) % 40;
        let contract = if i % 3 == 0 { "monthly" } else { "yearly" };
        csv.push_str(&format!("C{i:04},{logins},{contract},{}\n", logins < 10));
    }
    csv
}

/// A served project: the customers landed, the model trained, the server started. A
/// test that fails before `stop` leaves no server behind.
pub struct Served {
    workspace: Option<Workspace>,
    server: Option<Child>,
    /// The SQL listener's port (0 when it is off).
    pub port: u16,
    /// The HTTP API's port (0 when it is off).
    pub http_port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

pub fn serve(extra: &str) -> Served {
    serve_with(extra, "")
}

/// Serves the test project with `extra` in `[serve]` and `analyst` in the analyst's role.
pub fn serve_with(extra: &str, analyst: &str) -> Served {
    serve_configured(extra, analyst, "")
}

/// Serves the test project with `extra` in `[serve]`, `analyst` in the analyst's role and
/// `model` after the churn model's features (its other sections).
pub fn serve_configured(extra: &str, analyst: &str, model: &str) -> Served {
    let workspace = Workspace::init();
    let hash = lakescore_with_input(
        workspace.path(),
        &["serve", "--hash-password"],
        b"eng1neer-pw\n",
    )
    .ok()
    .trim()
    .to_string();
    assert!(hash.starts_with("scram-sha-256$4096$"), "{hash}");
    workspace.append_to_project(
        &PROJECT
            .replace("ENGINEER_HASH", &hash)
            .replace(
                "listen = \"127.0.0.1:0\"\n",
                &format!("listen = \"127.0.0.1:0\"\n{extra}"),
            )
            .replace(
                "select = [\"curated\", \"scored\"]\n",
                &format!("select = [\"curated\", \"scored\"]\n{analyst}"),
            )
            .replace(
                "contract = \"categorical\"\n",
                &format!("contract = \"categorical\"\n{model}"),
            ),
    );
    workspace.write_file("extracts/customers_1.csv", &customers(200));
    workspace.write_file(
        "extracts/accounts_1.csv",
        "account_id,secret\nA1,do not show\n",
    );
    run(&workspace, &["ingest"]);
    run(&workspace, &["train", "churn"]);
    start(workspace)
}

/// Starts `lakescore serve` in `workspace`, logging to `serve.log` (appended to).
pub fn start(workspace: Workspace) -> Served {
    let (server, port, http_port) = spawn_server(workspace.path());
    Served {
        port,
        http_port,
        workspace: Some(workspace),
        server: Some(server),
    }
}

/// Starts `lakescore serve` in the project folder `dir` and waits until it listens:
/// the process and its SQL and HTTP ports (0 when off).
fn spawn_server(dir: &std::path::Path) -> (Child, u16, u16) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))
        .unwrap();
    // The password reaches the server through its environment only.
    let mut server = Command::new(env!("CARGO_BIN_EXE_lakescore"))
        .args(["serve"])
        .current_dir(dir)
        .env("LAKESCORE_TEST_ANALYST_PASSWORD", ANALYST_PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    // The listeners print their addresses, then "Ctrl-C stops".
    let mut printed = String::new();
    while !printed.contains("Ctrl-C stops") {
        if stdout.read_line(&mut printed).unwrap() == 0 {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
            panic!("serve stopped before listening: {printed}{log}");
        }
    }
    // Keep reading, so the server never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let port_after = |marker: &str| -> Option<u16> {
        printed
            .split(marker)
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
    };
    let http_port = port_after("HTTP API on http://127.0.0.1:")
        .or_else(|| port_after("HTTP API on https://127.0.0.1:"))
        .unwrap_or(0);
    (
        server,
        port_after("SQL on 127.0.0.1:").unwrap_or(0),
        http_port,
    )
}

impl Served {
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user={user} password={password} dbname=lakehouse",
                self.port
            ),
            NoTls,
        )
        .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.as_ref().map_or(0, Child::id)
    }

    /// The served project.
    pub fn workspace(&self) -> &Workspace {
        self.workspace.as_ref().unwrap()
    }

    /// A second server of the same project and lakehouse (a replica behind a load
    /// balancer); stop it with [`Served::stop_replica`].
    pub fn replica(&self) -> Served {
        let (server, port, http_port) = spawn_server(self.workspace().path());
        Served {
            port,
            http_port,
            workspace: None,
            server: Some(server),
        }
    }

    /// Stops a replica (flushing what it keeps); it must exit cleanly.
    pub fn stop_replica(mut self) {
        let mut server = self.server.take().unwrap();
        terminate(&server);
        assert!(server.wait().unwrap().success());
    }

    /// Kills the server with SIGKILL, so nothing is flushed, and returns its project.
    pub fn kill(mut self) -> Workspace {
        let mut server = self.server.take().unwrap();
        server.kill().unwrap();
        server.wait().unwrap();
        self.workspace.take().unwrap()
    }

    /// Stops the server (flushing the audit log) and returns its log.
    pub fn stop(mut self) -> (Workspace, String) {
        let mut server = self.server.take().unwrap();
        terminate(&server);
        let status = server.wait().unwrap();
        let workspace = self.workspace.take().unwrap();
        let log = std::fs::read_to_string(workspace.path().join("serve.log")).unwrap();
        assert!(status.success(), "{log}");
        (workspace, log)
    }

    pub fn psql(
        &self,
        user: &str,
        password: &str,
        sslmode: &str,
        command: &str,
    ) -> std::process::Output {
        Command::new("psql")
            .args([
                &format!(
                    "host=127.0.0.1 port={} user={user} dbname=lakehouse sslmode={sslmode}",
                    self.port
                ),
                "-X",
                "-A",
                "-c",
                command,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql runs (.ci/run installs postgresql-client)")
    }
}

pub fn text(rows: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<String>> {
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysts_query_with_any_postgres_client_within_their_grants_and_every_statement_is_audited()
 {
    let served = serve("");
    let analyst = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();

    // Simple query protocol.
    let rows = analyst
        .simple_query("select count(*) as n, min(customer_id) from curated.customers")
        .await
        .unwrap();
    assert_eq!(text(&rows), [["200", "C0000"]]);

    // Extended protocol with a parameter, typed results.
    let rows = analyst
        .query(
            "select customer_id, logins from curated.customers where logins >= $1 order by customer_id limit 2",
            &[&35.0f64],
        )
        .await
        .unwrap();
    let got: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [("C0005".to_string(), 35.0), ("C0011".to_string(), 37.0)]
    );

    // predict(...) in an analyst's own query.
    let rows = analyst
        .simple_query(
            "select customer_id, predict('churn', logins, contract)['prediction'] from curated.customers \
             where customer_id in ('C0000', 'C0005') order by customer_id",
        )
        .await
        .unwrap();
    assert_eq!(text(&rows), [["C0000", "true"], ["C0005", "false"]]);

    // Grants are checked on the planned tables, however the query reaches them.
    for sql in [
        "select * from raw.accounts",
        "select count(*) from curated.customers c join raw.accounts a on a.account_id = c.customer_id",
        "select * from (select * from raw.accounts) x",
        "select * from curated.customers where customer_id in (select account_id from raw.accounts)",
        "select * from table_at('raw.accounts', 1)",
    ] {
        let error = analyst.simple_query(sql).await.unwrap_err();
        let db = error
            .as_db_error()
            .unwrap_or_else(|| panic!("{sql}: {error}"));
        assert_eq!(db.code().code(), "42501", "{sql}");
        assert_eq!(
            db.message(),
            "permission denied for table raw.accounts",
            "{sql}"
        );
    }
    let error = analyst
        .query("select * from raw.accounts where account_id = $1", &[&"A1"])
        .await
        .unwrap_err();
    assert_eq!(
        error.as_db_error().map(|e| e.message()),
        Some("permission denied for table raw.accounts")
    );
    // Writes and DDL are refused for everyone.
    let error = analyst
        .simple_query("create table curated.x as select 1")
        .await
        .unwrap_err();
    assert!(
        error
            .as_db_error()
            .unwrap()
            .message()
            .contains("lakescore serve is read-only"),
        "{error}"
    );
    // The engineer role reads everything.
    let engineer = served.connect("engineer", "eng1neer-pw").await.unwrap();
    let rows = engineer
        .simple_query("select secret from raw.accounts")
        .await
        .unwrap();
    assert_eq!(text(&rows), [["do not show"]]);

    // Wrong passwords and unknown users are refused alike.
    for (user, password) in [("analyst", "wrong"), ("mallory", "anything")] {
        let error = served.connect(user, password).await.err().unwrap();
        let db = error.as_db_error().unwrap_or_else(|| panic!("{error}"));
        assert_eq!(db.code().code(), "28P01", "{error}");
    }

    // 32 clients at once while a writer commits a new version: every query succeeds and
    // sees one version or the other, never a mix.
    let mut clients = Vec::new();
    for _ in 0..32 {
        clients.push(served.connect("analyst", ANALYST_PASSWORD).await.unwrap());
    }
    served
        .workspace()
        .write_file("extracts/customers_2.csv", &customers(300));
    let writer = {
        let dir = served.workspace().path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            lakescore_with_env(
                &dir,
                &["ingest"],
                &[("LAKESCORE_TEST_ANALYST_PASSWORD", ANALYST_PASSWORD)],
            )
        })
    };
    let mut tasks = Vec::new();
    for client in clients {
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..5 {
                let rows = client
                    .query(
                        "select count(*), count(distinct customer_id) from curated.customers",
                        &[],
                    )
                    .await
                    .unwrap();
                let (n, distinct): (i64, i64) = (rows[0].get(0), rows[0].get(1));
                assert_eq!(n, distinct);
                seen.push(n);
            }
            seen
        }));
    }
    for task in tasks {
        for n in task.await.unwrap() {
            assert!(n == 200 || n == 300, "{n}");
        }
    }
    writer.await.unwrap().ok();
    let rows = analyst
        .simple_query("select count(*) from curated.customers")
        .await
        .unwrap();
    assert_eq!(text(&rows), [["300"]]);

    // psql: \dt lists the tables, and a query runs.
    let dt = served.psql("analyst", ANALYST_PASSWORD, "disable", "\\dt curated.*");
    let listing = String::from_utf8_lossy(&dt.stdout);
    assert!(
        dt.status.success(),
        "{}",
        String::from_utf8_lossy(&dt.stderr)
    );
    assert!(listing.contains("curated|customers|table"), "{listing}");
    let query = served.psql(
        "analyst",
        ANALYST_PASSWORD,
        "disable",
        "select customer_id from curated.customers order by customer_id limit 1",
    );
    assert_eq!(
        String::from_utf8_lossy(&query.stdout),
        "customer_id\nC0000\n(1 row)\n"
    );

    drop(analyst);
    drop(engineer);
    let (workspace, log) = served.stop();
    assert!(log.contains("failed login"), "{log}");
    let csv = |sql: &str| run(&workspace, &["sql", sql, "--format", "csv"]);
    let audit = csv("select user_name, status, error from ops.query_log \
         where statement like '%raw.accounts%' and user_name = 'analyst' order by started_at limit 1");
    assert_eq!(
        audit,
        "user_name,status,error\nanalyst,error,42501: permission denied for table raw.accounts\n"
    );
    let counted = csv("select rows, status from ops.query_log \
         where statement like 'select count(*) as n, min(customer_id)%'");
    assert_eq!(counted, "rows,status\n1,ok\n");
    let clients = csv("select count(*) >= 160 as all_logged from ops.query_log \
         where lower(statement) like 'select count(*), count(distinct customer_id)%' and status = 'ok'");
    assert_eq!(clients, "all_logged\ntrue\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_read_a_postgresql_version_and_may_nest_transactions_with_savepoints() {
    let served = serve("");
    let mut analyst = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    // SQLAlchemy reads the major version from `select pg_catalog.version()` on connect.
    for sql in ["select version()", "select pg_catalog.version() as v"] {
        let version: String = analyst.query_one(sql, &[]).await.unwrap().get(0);
        assert!(
            version.starts_with("PostgreSQL 16.6 (lakescore ")
                && version.contains("Apache DataFusion 55"),
            "{sql}: {version}"
        );
    }
    // Nested transactions as drivers send them: the simple protocol...
    let mut counted = Vec::new();
    for sql in [
        "BEGIN",
        "SAVEPOINT outer_sp",
        "SELECT count(*) FROM curated.customers",
        "RELEASE SAVEPOINT outer_sp",
        "SAVEPOINT again",
        "ROLLBACK TO SAVEPOINT again",
        "SELECT 1",
        "COMMIT",
    ] {
        counted.extend(text(&analyst.simple_query(sql).await.unwrap()));
    }
    assert_eq!(counted, [["200"], ["1"]]);
    // ...as one query string too: a query's rows wait while the statements after it run.
    let rows = analyst
        .simple_query(
            "BEGIN; SAVEPOINT outer_sp; SELECT count(*) FROM curated.customers; \
             RELEASE SAVEPOINT outer_sp; SELECT 1; COMMIT",
        )
        .await
        .unwrap();
    assert_eq!(text(&rows), [["200"], ["1"]]);
    // ...and tokio-postgres' nested transaction API, on the extended protocol too.
    let mut outer = analyst.transaction().await.unwrap();
    let inner = outer.transaction().await.unwrap();
    let counted: i64 = inner
        .query_one("select count(*) from curated.customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(counted, 200);
    inner.rollback().await.unwrap();
    outer.execute("savepoint by_extended", &[]).await.unwrap();
    outer
        .execute("release savepoint by_extended", &[])
        .await
        .unwrap();
    outer.commit().await.unwrap();
    // Outside a transaction block a savepoint changes nothing either.
    let lonely = analyst.simple_query("SAVEPOINT lonely").await.unwrap();
    assert!(
        matches!(
            lonely[..],
            [tokio_postgres::SimpleQueryMessage::CommandComplete(0)]
        ),
        "{lonely:?}"
    );
    // A write behind a savepoint in one string is refused as any write is, and nothing
    // changed.
    let smuggled = analyst
        .simple_query("BEGIN; SAVEPOINT s; DROP TABLE curated.customers; COMMIT")
        .await
        .unwrap_err();
    assert_eq!(smuggled.as_db_error().unwrap().code().code(), "25006");
    analyst.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(
        text(
            &analyst
                .simple_query("select count(*) from curated.customers")
                .await
                .unwrap()
        ),
        [["200"]]
    );
    // Savepoints write nothing, and the grants still hold inside a transaction.
    analyst.simple_query("BEGIN").await.unwrap();
    analyst.simple_query("SAVEPOINT s").await.unwrap();
    let denied = analyst
        .simple_query("SELECT * FROM raw.accounts")
        .await
        .unwrap_err();
    assert!(
        denied
            .as_db_error()
            .unwrap()
            .message()
            .contains("permission denied for table raw.accounts"),
        "{denied:?}"
    );
    // The failed statement aborted the block: ROLLBACK TO is accepted, a new savepoint is
    // not, and ROLLBACK ends the block.
    analyst
        .simple_query("ROLLBACK TO SAVEPOINT s")
        .await
        .unwrap();
    let aborted = analyst.simple_query("SAVEPOINT t").await.unwrap_err();
    assert_eq!(aborted.as_db_error().unwrap().code().code(), "25P02");
    analyst.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(
        text(&analyst.simple_query("select 2").await.unwrap()),
        [["2"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_offered_and_can_be_required() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let served = serve(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\nrequire_tls = true\n",
        data.join("server.pem").display(),
        data.join("server.key").display()
    ));
    let secure = served.psql(
        "analyst",
        ANALYST_PASSWORD,
        "require",
        "select count(*) from curated.customers",
    );
    assert_eq!(
        String::from_utf8_lossy(&secure.stdout),
        "count(*)\n200\n(1 row)\n",
        "{}",
        String::from_utf8_lossy(&secure.stderr)
    );
    let plain = served.psql("analyst", ANALYST_PASSWORD, "disable", "select 1");
    assert!(!plain.status.success());
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("this server requires TLS"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let started = Instant::now();
    served.stop();
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn export_writes_a_table_version_as_a_file_other_tools_read() {
    let workspace = Workspace::init();
    workspace.append_to_project(PROJECT.split("[[model]]").next().unwrap());
    workspace.write_file("extracts/customers_1.csv", &customers(20));
    workspace.run(&["ingest"]).ok();
    workspace.write_file("extracts/customers_2.csv", &customers(30));
    workspace.run(&["ingest"]).ok();

    let out = workspace
        .run(&[
            "export",
            "curated.customers@1",
            "--format",
            "csv",
            "--to",
            "first.csv",
        ])
        .ok();
    assert_eq!(out, format!("curated.customers@1: 20 rows -> first.csv\n"));
    let csv = std::fs::read_to_string(workspace.path().join("first.csv")).unwrap();
    assert_eq!(csv.lines().count(), 21);
    assert!(
        csv.starts_with("customer_id,logins,contract,churned,"),
        "{csv}"
    );
    workspace
        .run(&["export", "curated.customers", "--to", "now.parquet"])
        .ok();
    let parquet = std::fs::read(workspace.path().join("now.parquet")).unwrap();
    assert_eq!(&parquet[..4], b"PAR1");
    let json = workspace
        .run(&[
            "export",
            "curated.customers",
            "--format",
            "json",
            "--to",
            "now.jsonl",
        ])
        .ok();
    assert!(
        json.starts_with("curated.customers@2: 30 rows -> now.jsonl"),
        "{json}"
    );
    let refused = workspace
        .run(&[
            "export",
            "curated.customers",
            "--format",
            "table",
            "--to",
            "x",
        ])
        .fails_with(1);
    assert!(
        refused.contains("use --format csv, json or parquet"),
        "{refused}"
    );
}

/// The CSV of a query, run in the served project (whose file needs the analyst's password).
pub fn csv(workspace: &Workspace, sql: &str) -> String {
    run(workspace, &["sql", sql, "--format", "csv"])
}
