//! `lakescore serve` attacked as a hostile or careless client would: writes through a
//! read-only server, runaway and oversized queries, cancel requests and clients that hang
//! up, sockets that never log in, guessed user names and passwords, statements that try to
//! dodge or forge the audit, tables a role may not see, broken tables, and a thousand
//! short sessions. Each test asserts the refusal and that nothing changed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use crate::serve::{ANALYST_PASSWORD, Served, run, serve, serve_with, start, text};
use crate::support::lakescore_with_env;

/// Commits per table (`schema/name` -> number of commit files), the query log excepted.
fn commits(lakehouse: &Path) -> BTreeMap<String, usize> {
    let mut commits = BTreeMap::new();
    for schema in std::fs::read_dir(lakehouse).unwrap() {
        let schema = schema.unwrap().path();
        if !schema.is_dir() {
            continue;
        }
        for table in std::fs::read_dir(&schema).unwrap() {
            let table = table.unwrap().path();
            let log = table.join("_delta_log");
            if !log.is_dir() || table.ends_with("ops/query_log") {
                continue;
            }
            let count = std::fs::read_dir(&log)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension() == Some("json".as_ref()))
                .count();
            commits.insert(
                table.strip_prefix(lakehouse).unwrap().display().to_string(),
                count,
            );
        }
    }
    commits
}

/// The SQLSTATE and message of a refused statement.
fn refusal(error: tokio_postgres::Error) -> (String, String) {
    let db = error
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {error}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// A query that runs until something stops it.
const RUNAWAY: &str = "select count(*) as {name} from generate_series(1, 100000) a, \
    generate_series(1, 100000) b, generate_series(1, 100000) c";

fn runaway(name: &str) -> String {
    RUNAWAY.replace("{name}", name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statement_writes_through_the_server_or_the_cli() {
    let served = serve("");
    let lakehouse = served.workspace().lakehouse();
    let before = commits(&lakehouse);
    assert!(before.contains_key("curated/customers"), "{before:?}");
    let analyst = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    let engineer = served.connect("engineer", "eng1neer-pw").await.unwrap();
    let attacks = [
        "EXPLAIN ANALYZE INSERT INTO curated.customers SELECT 'EVIL-1', 1.0, 'monthly', true",
        "EXPLAIN ANALYZE INSERT OVERWRITE curated.customers SELECT * FROM curated.customers WHERE false",
        "EXPLAIN INSERT INTO curated.customers SELECT * FROM curated.customers",
        "INSERT INTO curated.customers SELECT * FROM curated.customers",
        "DELETE FROM curated.customers",
        "UPDATE curated.customers SET logins = 0",
        "COPY (SELECT 1) TO '/tmp/lakescore-attack.csv'",
        "COPY curated.customers TO '/tmp/lakescore-attack.csv'",
        "COPY curated.customers FROM STDIN",
        "COPY curated.customers FROM '/tmp/lakescore-attack.csv'",
        "CREATE TABLE curated.stolen AS SELECT 1",
        "CREATE VIEW curated.v AS SELECT 1",
        "DROP TABLE curated.customers",
        "PREPARE p AS INSERT INTO curated.customers SELECT * FROM curated.customers",
    ];
    for attack in attacks {
        for client in [&analyst, &engineer] {
            let (code, message) = refusal(client.simple_query(attack).await.unwrap_err());
            assert_eq!(code, "25006", "{attack}: {message}");
            assert!(message.contains("read-only"), "{attack}: {message}");
        }
    }
    // A cursor or a copy reads under the same grants as a query.
    for sneaky in [
        "DECLARE c CURSOR FOR SELECT * FROM raw.accounts",
        "COPY raw.accounts TO STDOUT",
        "COPY (SELECT c.customer_id FROM curated.customers c JOIN raw.accounts a ON true) TO STDOUT",
    ] {
        let (code, message) = refusal(analyst.simple_query(sneaky).await.unwrap_err());
        assert_eq!(code, "42501", "{sneaky}: {message}");
        assert_eq!(
            message, "permission denied for table raw.accounts",
            "{sneaky}"
        );
    }
    // The audit trail cannot be erased, over either protocol.
    for attack in [
        "EXPLAIN ANALYZE INSERT OVERWRITE ops.query_log SELECT * FROM ops.query_log WHERE false",
        "EXPLAIN ANALYZE DELETE FROM ops.query_log",
    ] {
        let (code, _) = refusal(engineer.simple_query(attack).await.unwrap_err());
        assert_eq!(code, "25006", "{attack}");
        let (code, _) = refusal(engineer.query(attack, &[]).await.unwrap_err());
        assert_eq!(code, "25006", "{attack}");
    }
    let (code, _) = refusal(
        analyst
            .query(
                "EXPLAIN ANALYZE INSERT INTO curated.customers SELECT $1, 1.0, 'monthly', true",
                &[&"EVIL-2"],
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "25006");
    assert!(!Path::new("/tmp/lakescore-attack.csv").exists());
    let psql = served.psql(
        "analyst",
        ANALYST_PASSWORD,
        "disable",
        "EXPLAIN ANALYZE INSERT INTO curated.customers SELECT 'EVIL-3', 1.0, 'monthly', true",
    );
    let stderr = String::from_utf8_lossy(&psql.stderr);
    assert!(
        !psql.status.success() && stderr.contains("read-only"),
        "{stderr}"
    );
    let rows = analyst
        .simple_query("select count(*), count(distinct customer_id) from curated.customers")
        .await
        .unwrap();
    assert_eq!(text(&rows), [["200", "200"]]);
    drop(analyst);
    drop(engineer);
    let (workspace, _) = served.stop();
    assert_eq!(commits(&lakehouse), before);
    // Every attack is in the audit log, which still holds everything.
    let logged = run(
        &workspace,
        &[
            "sql",
            "select count(*) as refused from ops.query_log where status = 'error' and error like '25006:%'",
            "--format",
            "csv",
        ],
    );
    assert_eq!(logged, format!("refused\n{}\n", attacks.len() * 2 + 6));

    // The CLI is read-only too, and says where writes belong.
    for statement in [
        "insert into curated.customers select * from curated.customers",
        "explain analyze insert into curated.customers select * from curated.customers",
        "copy (select 1) to '/tmp/lakescore-attack.csv'",
        "create external table stolen stored as csv location '/etc/passwd'",
    ] {
        let error = lakescore_with_env(
            workspace.path(),
            &["sql", statement],
            &[("LAKESCORE_TEST_ANALYST_PASSWORD", ANALYST_PASSWORD)],
        )
        .fails_with(1);
        assert!(
            error.contains("is not allowed: lakescore's SQL is read-only")
                && error.contains("models/*.sql"),
            "{statement}: {error}"
        );
    }
    assert!(!Path::new("/tmp/lakescore-attack.csv").exists());
    assert_eq!(commits(&lakehouse), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_queries_end_by_timeout_cancel_or_hang_up_while_the_server_stays_responsive() {
    let served = serve("statement_timeout = \"60s\"\n");
    let analyst = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();

    // A client's SET statement_timeout is honoured.
    analyst
        .simple_query("SET statement_timeout = '1s'")
        .await
        .unwrap();
    let (code, message) = refusal(analyst.simple_query(&runaway("timed")).await.unwrap_err());
    assert_eq!(code, "57014", "{message}");
    assert!(message.contains("statement timeout (1s)"), "{message}");

    // A cancel request (what psql sends on Ctrl-C) stops the running statement, and a new
    // login is answered quickly while a runaway query holds the query workers.
    let busy = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    let cancel = busy.cancel_token();
    let running = tokio::spawn(async move { busy.simple_query(&runaway("cancelled")).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let fresh = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    let rows = fresh.simple_query("select 1").await.unwrap();
    let answered = started.elapsed();
    assert_eq!(text(&rows), [["1"]]);
    assert!(
        answered < Duration::from_secs(2),
        "a login and query took {answered:?} while a runaway query ran"
    );
    // A cancel that arrives before the server has read the statement finds nothing to
    // cancel (as in PostgreSQL); like a user pressing Ctrl-C again, try once more.
    let mut running = running;
    let result = loop {
        cancel.cancel_query(NoTls).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), &mut running).await {
            Ok(result) => break result.unwrap(),
            Err(_) => continue,
        }
    };
    let (code, message) = refusal(result.unwrap_err());
    assert_eq!(code, "57014", "{message}");
    assert!(message.contains("user request"), "{message}");

    // A client that hangs up mid-query takes its query with it.
    let (leaving, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=analyst password={ANALYST_PASSWORD} dbname=lakehouse",
            served.port
        ),
        NoTls,
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let query = tokio::spawn(async move { leaving.simple_query(&runaway("abandoned")).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    connection.abort();
    query.abort();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows = fresh.simple_query("select 2").await.unwrap();
    assert_eq!(text(&rows), [["2"]]);

    // Shutdown is prompt while a runaway query runs.
    let stubborn = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    let _running = tokio::spawn(async move { stubborn.simple_query(&runaway("at_stop")).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    let (_, log) = served.stop();
    assert!(stopping.elapsed() < Duration::from_secs(10));
    let abandoned = log
        .lines()
        .find(|line| line.contains("abandoned from generate_series"))
        .unwrap_or_else(|| panic!("the abandoned query is not audited:\n{log}"));
    assert!(abandoned.contains("status=cancelled"), "{abandoned}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_held_to_their_memory_and_row_limits() {
    let served = serve_with(
        "query_memory = \"32MiB\"\nmax_memory = \"64MiB\"\n",
        "max_result_rows = 100\n",
    );
    let analyst = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    // An aggregate that can spill to disk finishes within its share (5 million distinct
    // values the planner cannot know are distinct; random draws could repeat)...
    let rows = analyst
        .simple_query(
            "select count(distinct v) from (select value * 2 + 1 as v from generate_series(1, 5000000))",
        )
        .await
        .unwrap();
    assert_eq!(text(&rows), [["5000000"]]);
    // ...one that must hold everything in memory fails plainly.
    let (code, message) = refusal(
        analyst
            .simple_query(
                "select array_length(array_agg(v), 1) from (select random() as v from generate_series(1, 5000000))",
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "53200", "{message}");
    assert!(
        message.starts_with("query exceeded its memory limit of 32.0 MiB"),
        "{message}"
    );
    // A single value that would take gigabytes is refused before it is built.
    let (code, message) = refusal(
        analyst
            .simple_query("select length(repeat('x', 1500000000))")
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "53200", "{message}");
    assert!(
        message.contains("repeat() would build 1.4 GiB at once"),
        "{message}"
    );
    let rows = analyst
        .simple_query("select length(repeat('ab', 1000)), length(lpad('x', 10))")
        .await
        .unwrap();
    assert_eq!(text(&rows), [["2000", "10"]]);
    let (code, message) = refusal(
        analyst
            .simple_query("select * from curated.customers")
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "54000", "{message}");
    assert!(
        message.contains("more than 100 rows, the most role analyst may fetch at once"),
        "{message}"
    );
    let rows = analyst
        .simple_query("select customer_id from curated.customers limit 100")
        .await
        .unwrap();
    assert_eq!(text(&rows).len(), 100);
    // The engineer's role has no row limit.
    let engineer = served.connect("engineer", "eng1neer-pw").await.unwrap();
    let rows = engineer
        .query("select customer_id from curated.customers", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 200);
    served.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_cannot_be_starved_probed_or_guessed_quickly() {
    let served = serve_with("auth_timeout = \"2s\"\n", "max_connections = 2\n");
    // 100 sockets that never log in neither block real logins nor stay open.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(std::net::TcpStream::connect(("127.0.0.1", served.port)).unwrap());
    }
    let started = Instant::now();
    let first = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    for socket in &mut idle {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buffer = [0u8; 16];
        assert_eq!(
            socket.read(&mut buffer).unwrap(),
            0,
            "an idle socket was kept"
        );
    }

    // The role's connection limit.
    let second = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    let (code, message) = refusal(
        served
            .connect("analyst", ANALYST_PASSWORD)
            .await
            .err()
            .unwrap(),
    );
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("53300", "too many connections for role \"analyst\"")
    );
    assert_eq!(
        text(&first.simple_query("select 1").await.unwrap()),
        [["1"]]
    );
    drop(second);
    let mut third = None;
    for _ in 0..50 {
        if let Ok(client) = served.connect("analyst", ANALYST_PASSWORD).await {
            third = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(third.is_some(), "a freed slot was not given back");

    // Unknown users and wrong passwords look the same on the wire: both get the SCRAM
    // challenge (without a password the client gives up on it), both fail alike.
    for user in ["engineer", "mallory"] {
        let error = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user={user} dbname=lakehouse",
                served.port
            ),
            NoTls,
        )
        .await
        .err()
        .unwrap();
        assert!(error.as_db_error().is_none(), "{user}: {error}");
        assert!(
            format!("{error:?}").contains("password missing"),
            "{user}: {error:?}"
        );
        let (code, message) = refusal(served.connect(user, "wrong").await.err().unwrap());
        assert_eq!(code, "28P01");
        assert_eq!(
            message,
            format!("Password authentication failed for user \"{user}\"")
        );
    }

    // Guessing slows down: after a few failures each try waits longer.
    for _ in 0..5 {
        served.connect("eve", "guess").await.err().unwrap();
    }
    let started = Instant::now();
    served.connect("eve", "guess").await.err().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "the 8th failure from this address was answered in {:?}",
        started.elapsed()
    );
    drop(first);
    drop(third);
    let (_, log) = served.stop();
    assert!(
        log.lines()
            .any(|l| l.contains("failed login") && l.contains("user=\"mallory\"")),
        "{log}"
    );
    assert!(
        log.contains("connection closed: no login within auth_timeout"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_is_audited_and_the_audit_survives_an_unwritable_table() {
    let served = serve("");
    let analyst = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    // Statements that fail at Parse in the extended protocol: bad SQL and a denial.
    analyst.prepare("selec 1 as parse_probe").await.unwrap_err();
    analyst
        .prepare("select secret as denied_probe from raw.accounts")
        .await
        .unwrap_err();
    // An error while the rows stream.
    analyst
        .simple_query("select cast(customer_id as int) as stream_probe from curated.customers")
        .await
        .unwrap_err();
    // A statement that tries to forge a log line.
    analyst
        .simple_query("select 1 as \"x\nINFO forged line: user='engineer'\"")
        .await
        .unwrap();
    drop(analyst);
    let (workspace, log) = served.stop();
    for line in log.lines().filter(|l| l.contains("forged line")) {
        assert!(line.contains("statement=\""), "a forged line: {line}");
    }
    let csv = |sql: &str| run(&workspace, &["sql", sql, "--format", "csv"]);
    assert_eq!(
        csv("select status, error from ops.query_log where statement like '%parse_probe%'"),
        "status,error\nerror,\"42601: sql parser error: Expected: an SQL statement, found: selec\"\n"
    );
    assert_eq!(
        csv("select status, error from ops.query_log where statement like '%denied_probe%'"),
        "status,error\nerror,42501: permission denied for table raw.accounts\n"
    );
    let streamed =
        csv("select status, error from ops.query_log where statement like '%stream_probe%'");
    assert!(
        streamed.starts_with("status,error\nerror,") && streamed.contains("C0000"),
        "{streamed}"
    );

    // A query log that cannot be written: entries wait in the spool, and reach the table
    // when it can be written again.
    let blocked = workspace.lakehouse().join("ops/query_log");
    std::fs::rename(&blocked, workspace.path().join("query_log.moved")).unwrap();
    std::fs::write(&blocked, "not a table").unwrap();
    let served = start(workspace);
    let analyst = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    // Two batches, each failing after its retries: the spool keeps both.
    for probe in ["spool_probe_1", "spool_probe_2"] {
        analyst
            .simple_query(&format!("select 'while blocked' as {probe}"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    drop(analyst);
    let (workspace, log) = served.stop();
    let spool = workspace.path().join(".lakescore/query_log.spool.jsonl");
    let spooled = std::fs::read_to_string(&spool).unwrap_or_else(|_| panic!("no spool:\n{log}"));
    assert!(
        spooled.contains("spool_probe_1") && spooled.contains("spool_probe_2"),
        "{spooled}"
    );
    std::fs::remove_file(&blocked).unwrap();
    std::fs::rename(workspace.path().join("query_log.moved"), &blocked).unwrap();
    let served = start(workspace);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (workspace, _) = served.stop();
    assert!(!spool.exists());
    assert_eq!(
        run(
            &workspace,
            &[
                "sql",
                "select count(*) as n from ops.query_log where statement like '%spool_probe_%'",
                "--format",
                "csv"
            ]
        ),
        "n\n2\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_sees_only_what_it_may_read_and_who_it_is() {
    let served = serve("");
    let analyst = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
    let listed = |rows: Vec<tokio_postgres::SimpleQueryMessage>| {
        text(&rows)
            .into_iter()
            .map(|r| r.join("."))
            .collect::<Vec<_>>()
    };
    let tables = listed(
        analyst
            .simple_query(
                "select table_schema, table_name from information_schema.tables \
                 where table_schema not in ('information_schema', 'pg_catalog') order by 1, 2",
            )
            .await
            .unwrap(),
    );
    assert_eq!(tables, ["curated.customers"]);
    let relations = listed(
        analyst
            .simple_query("select relname from pg_catalog.pg_class where relkind = 'r' order by 1")
            .await
            .unwrap(),
    );
    assert!(
        relations.contains(&"customers".to_string()),
        "{relations:?}"
    );
    assert!(
        !relations.contains(&"accounts".to_string()),
        "{relations:?}"
    );
    assert!(
        !relations.contains(&"model_versions".to_string()),
        "{relations:?}"
    );

    let (code, message) = refusal(
        analyst
            .simple_query("select * from curated.customer")
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "42P01");
    assert_eq!(
        message,
        "unknown table 'curated.customer': did you mean curated.customers?"
    );
    let (code, message) = refusal(
        analyst
            .simple_query("select * from raw.acounts")
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("42501", "permission denied for table raw.acounts")
    );
    let (_, message) = refusal(
        analyst
            .simple_query("select * from table_at('curated.customers', 99)")
            .await
            .unwrap_err(),
    );
    let workspace = served.workspace().path().display().to_string();
    assert!(
        !message.contains(&workspace) && !message.contains("file://"),
        "{message}"
    );

    let rows = analyst
        .simple_query(
            "select current_user as u, session_user as s, \
             has_table_privilege('raw.accounts', 'select')::text, \
             has_table_privilege('curated.customers', 'SELECT')::text, \
             has_table_privilege('curated.customers', 'insert')::text, \
             has_table_privilege('engineer', 'raw.accounts', 'select')::text",
        )
        .await
        .unwrap();
    assert_eq!(
        text(&rows),
        [["analyst", "analyst", "false", "true", "false", "true"]]
    );
    let rows = analyst
        .simple_query("select count(*) from table_at('curated.customers', 1)")
        .await
        .unwrap();
    assert_eq!(text(&rows), [["200"]]);
    served.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_table_is_reported_on_its_own_and_hides_nothing_else() {
    let served = serve("");
    let lakehouse = served.workspace().lakehouse();
    // A torn last commit.
    let log = lakehouse.join("raw/accounts/_delta_log/00000000000000000000.json");
    let commit = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, &commit[..commit.len() / 2]).unwrap();
    // And a saved view that no longer plans.
    let views = lakehouse.join("_views/curated");
    std::fs::create_dir_all(&views).unwrap();
    std::fs::write(
        views.join("broken.sql"),
        "select no_such_column from curated.customers",
    )
    .unwrap();
    let engineer = served.connect("engineer", "eng1neer-pw").await.unwrap();
    let rows = engineer
        .simple_query(
            "select count(distinct table_name) from information_schema.columns \
             where table_schema = 'curated'",
        )
        .await
        .unwrap();
    assert_eq!(text(&rows), [["1"]]);
    let rows = engineer
        .simple_query("select count(*) from curated.customers")
        .await
        .unwrap();
    assert_eq!(text(&rows), [["200"]]);
    let (_, message) = refusal(
        engineer
            .simple_query("select * from raw.accounts")
            .await
            .unwrap_err(),
    );
    assert!(!message.is_empty());
    drop(engineer);
    let (workspace, _) = served.stop();
    let listing = run(&workspace, &["tables", "--format", "csv"]);
    let broken = listing
        .lines()
        .find(|l| l.starts_with("raw.accounts,"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(broken.starts_with("raw.accounts,,,0,"), "{broken}");
    assert!(listing.contains("\ncurated.customers,1,200,"), "{listing}");
}

/// Resident memory of process `pid`, in MiB.
/// The resident memory of process `pid`, in MiB.
pub fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

async fn short_sessions(served: &Served, count: usize) {
    for _ in 0..count {
        let client = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
        client
            .simple_query("select count(*) from curated.customers")
            .await
            .unwrap();
    }
}

/// `count` prepared statements with a parameter, spread over four connections at once.
async fn statements(served: &Served, count: usize) {
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = served.connect("analyst", ANALYST_PASSWORD).await.unwrap();
        workers.push(tokio::spawn(async move {
            for i in 0..count / 4 {
                let rows = client
                    .query(
                        "select count(*) from curated.customers where logins >= $1",
                        &[&((i % 40) as f64)],
                    )
                    .await
                    .unwrap();
                assert!(rows[0].get::<_, i64>(0) > 0);
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_and_thousands_of_statements_leave_memory_where_it_was() {
    let served = serve("");
    // Warm up with the same work: caches, thread pools and the allocator's arenas settle.
    short_sessions(&served, 100).await;
    statements(&served, 1000).await;
    let baseline = rss_mib(served.pid());
    short_sessions(&served, 1000).await;
    statements(&served, 4000).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_mib(served.pid());
    served.stop();
    // Measured here: 75 to 110 MiB over this run (about 40 KiB per session and 4 KiB per
    // statement that the allocator does not give back, varying with what else runs); the
    // leak this guards against held 5 MiB per session, 5 GiB over this run.
    assert!(
        after < baseline + 160,
        "resident memory grew from {baseline} MiB to {after} MiB"
    );
}
