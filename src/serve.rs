//! `lakescore serve`: starts the PostgreSQL-wire server and runs it until Ctrl-C or
//! SIGTERM; `--hash-password` turns a password into a `password_hash` value.

use std::io::BufRead;

use lakescore_engine::run::RunContext;
use lakescore_sql::serve::{Server, hash_password};
use tokio_util::sync::CancellationToken;

/// Serves `project` until a shutdown signal.
pub async fn run(cx: &RunContext, listen: Option<String>) -> anyhow::Result<()> {
    let users: Vec<String> = cx
        .project()
        .config
        .serve
        .users
        .iter()
        .map(|u| format!("{} ({})", u.name, u.role))
        .collect();
    let server = Server::new(cx.project().clone(), cx.lakehouse().clone())
        .with_listen(listen)
        .bind()
        .await?;
    let address = server.local_addr()?;
    println!(
        "lakescore serve: listening on {address}{}; users: {}",
        if server.has_tls() { " with TLS" } else { "" },
        if users.is_empty() {
            String::from("anonymous only")
        } else {
            users.join(", ")
        }
    );
    println!(
        "connect with: psql \"host={} port={} user=USER dbname=lakehouse\"; Ctrl-C stops",
        address.ip(),
        address.port()
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if crate::jobs::wait_for_signal().await.is_ok() {
            stop.cancel();
        }
    });
    server.run(shutdown).await?;
    println!("lakescore serve: stopped; the audit log is written");
    Ok(())
}

/// Reads a password from standard input and prints its `password_hash`.
pub fn print_password_hash() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!(
            "no password on standard input: echo -n 'secret' | lakescore serve --hash-password"
        );
    }
    println!("{}", hash_password(password));
    Ok(())
}
