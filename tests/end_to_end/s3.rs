//! Object storage: extracts read from, and the lakehouse written to, a real S3-protocol
//! server (s3s-fs) on a loopback port, through the same commands a user runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::sync::oneshot;

use crate::support::{Workspace, lakescore_with_env, spawn_paused};

const ACCESS_KEY: &str = "lakescore-test";
pub(crate) const SECRET_KEY: &str = "lakescore-test-secret";

/// An S3-compatible server serving the folders under a temporary root as buckets.
pub(crate) struct S3Server {
    address: SocketAddr,
    root: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    pub(crate) fn start(buckets: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        for bucket in buckets {
            std::fs::create_dir_all(root.path().join(bucket)).unwrap();
        }
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (ready, address) = std::sync::mpsc::channel();
        let served = root.path().to_path_buf();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let fs = s3s_fs::FileSystem::new(&served).unwrap();
                let mut builder = S3ServiceBuilder::new(fs);
                builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                let service = builder.build();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap()).unwrap();
                let http = ConnBuilder::new(TokioExecutor::new());
                loop {
                    let socket = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((socket, _)) => socket,
                            Err(_) => continue,
                        },
                        _ = &mut stopped => break,
                    };
                    let connection = http
                        .serve_connection(TokioIo::new(socket), service.clone())
                        .into_owned();
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
            });
        });
        let address = address.recv().unwrap();
        Self {
            address,
            root,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where bucket `bucket`'s objects live on disk.
    pub(crate) fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.path().join(bucket)
    }

    /// The `[lakehouse.storage]` settings that reach this server.
    pub(crate) fn storage_settings(&self) -> String {
        format!(
            "[lakehouse.storage]\nendpoint = \"http://{}\"\nregion = \"us-east-1\"\nallow_http = true\n\
             access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"${{LAKESCORE_TEST_S3_SECRET}}\"\n",
            self.address
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn copy_into(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

#[test]
fn extracts_on_s3_land_in_a_lakehouse_on_s3_exactly_once() {
    let server = S3Server::start(&["exports", "lake"]);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/extracts");
    let exports = server.bucket_dir("exports");
    copy_into(
        &fixtures.join("erp/invoices_20260109.csv"),
        &exports.join("erp/invoices_20260109.csv"),
    );
    copy_into(
        &fixtures.join("events/2026/01/01/events.jsonl"),
        &exports.join("events/2026/01/01/events.jsonl"),
    );

    let ws = Workspace::init();
    std::fs::write(
        ws.path().join("lakescore.toml"),
        format!(
            "[project]\nname = \"s3\"\n[lakehouse]\nroot = \"s3://lake/warehouse\"\n{}\n\
             [[source]]\nname = \"erp_invoices\"\npath = \"s3://exports/erp/invoices_*.csv\"\n\
             format = \"csv\"\ntable = \"raw.erp_invoices\"\ndialect = \"erp\"\n\
             [source.schema]\n\"Betrag (EUR)\" = \"decimal(18,2)\"\nDatum = \"date\"\n\n\
             [[source]]\nname = \"usage_events\"\npath = \"s3://exports/events/*/*/*/*.jsonl\"\n\
             format = \"json\"\ntable = \"raw.usage_events\"\n",
            server.storage_settings()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        lakescore_with_env(ws.path(), args, &[("LAKESCORE_TEST_S3_SECRET", SECRET_KEY)])
    };

    let out = run(&["ingest"]).ok();
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
    // The tables are objects in the lake bucket, and the catalog finds them there.
    assert!(
        server
            .bucket_dir("lake")
            .join("warehouse/raw/erp_invoices/_delta_log")
            .is_dir()
    );
    let tables = run(&["tables", "--format", "csv"]).ok();
    let names: Vec<&str> = tables
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "quarantine.raw_erp_invoices",
            "quarantine.raw_usage_events",
            "raw.erp_invoices",
            "raw.usage_events"
        ]
    );
    assert_eq!(
        run(&[
            "sql",
            "select sum(betrag_eur) as total, count(*) as n from raw.erp_invoices",
            "--format",
            "csv"
        ])
        .ok(),
        "total,n\n16910.14,9\n"
    );
    assert_eq!(
        run(&[
            "sql",
            "select count(*) as n from table_at('raw.usage_events', 0)",
            "--format",
            "csv"
        ])
        .ok(),
        "n\n0\n"
    );

    // A table version exported as a file to object storage.
    let exported = run(&[
        "export",
        "raw.erp_invoices@1",
        "--format",
        "csv",
        "--to",
        "s3://exports/out/invoices.csv",
    ])
    .ok();
    assert_eq!(
        exported,
        "raw.erp_invoices@1: 9 rows -> s3://exports/out/invoices.csv\n"
    );
    let csv = std::fs::read_to_string(exports.join("out/invoices.csv")).unwrap();
    assert_eq!(csv.lines().count(), 10, "{csv}");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for column in ["kunden_nr", "rechnung", "betrag_eur", "_source_file"] {
        assert!(header.contains(&column), "{csv}");
    }

    // A rerun lands nothing; a new object lands once.
    let again = run(&["ingest"]).ok();
    assert!(
        again.contains("raw.erp_invoices <- erp_invoices: up to date (1 files already landed)"),
        "{again}"
    );
    std::fs::write(
        exports.join("erp/invoices_20260110.csv"),
        "Kunden-Nr.;Name;Rechnung;Datum;Betrag (EUR);Storno\r\n0000200;Neu;R-9100;10.01.2026;10,00;\r\n",
    )
    .unwrap();
    let more = run(&["ingest", "erp_invoices"]).ok();
    assert!(
        more.contains(
            "raw.erp_invoices <- erp_invoices: 1 file landed, 1 rows, 0 quarantined -> version 2"
        ),
        "{more}"
    );
    let history = run(&[
        "history",
        "raw.erp_invoices",
        "--limit",
        "1",
        "--format",
        "json",
    ])
    .ok();
    assert!(
        history.contains("s3://exports/erp/invoices_20260110.csv"),
        "{history}"
    );
    // s3s-fs lists objects placed on its disk without an ETag, so the fingerprint falls back
    // to size and modification time.
    assert!(
        history.contains("\\\"fingerprint\\\":\\\"size-mtime:90-"),
        "{history}"
    );
}

#[test]
fn an_object_replaced_after_it_was_listed_is_refused_and_lands_on_the_next_run() {
    let server = S3Server::start(&["exports", "lake"]);
    let object = server.bucket_dir("exports").join("orders_1.csv");
    std::fs::write(&object, "id,note\n1,a\n2,b\n").unwrap();
    let ws = Workspace::init();
    std::fs::write(
        ws.path().join("lakescore.toml"),
        format!(
            "[project]\nname = \"s3\"\n[lakehouse]\nroot = \"s3://lake/warehouse\"\n{}\n\
             [[source]]\nname = \"orders\"\npath = \"s3://exports/orders_*.csv\"\n\
             format = \"csv\"\ntable = \"raw.orders\"\n",
            server.storage_settings()
        ),
    )
    .unwrap();
    let secret = [("LAKESCORE_TEST_S3_SECRET", SECRET_KEY)];
    let resume = ws.path().join("resume");
    let paused = spawn_paused(
        ws.path(),
        &["ingest"],
        "ingest-read",
        Some(&resume),
        &secret,
    );
    // The export is replaced by a longer one between listing and reading.
    std::fs::write(&object, "id,note\n1,a\n2,b\n3,c\n").unwrap();
    let (code, rest) = paused.resume(&resume);
    assert_eq!(code, Some(1), "{rest}");
    assert!(
        rest.contains("s3://exports/orders_1.csv: the file changed while it was read"),
        "{rest}"
    );

    let run = |args: &[&str]| lakescore_with_env(ws.path(), args, &secret);
    let out = run(&["ingest"]).ok();
    assert!(
        out.contains("1 file landed, 3 rows, 0 quarantined"),
        "{out}"
    );
    assert!(run(&["ingest"]).ok().contains("up to date"));
}
