//! `lakescore serve`: starts the PostgreSQL-wire server, the HTTP scoring API, or both,
//! and runs them until Ctrl-C or SIGTERM; `--hash-password` turns a password into a
//! `password_hash` value, `--new-token` makes an API token.

use std::io::BufRead;

use lakescore_engine::run::RunContext;
use lakescore_sql::serve::http::{HttpServer, new_token};
use lakescore_sql::serve::{Server, hash_password};
use tokio_util::sync::CancellationToken;

/// Serves `project` until a shutdown signal: SQL when someone could log in, HTTP when
/// `[serve.http]` or `--http` asks for it.
pub async fn run(
    cx: &RunContext,
    listen: Option<String>,
    http: Option<String>,
) -> anyhow::Result<()> {
    let config = &cx.project().config.serve;
    let wants_sql = !config.users.is_empty() || config.allow_anonymous || listen.is_some();
    let wants_http = config.http.is_some() || http.is_some();
    if !wants_sql && !wants_http {
        anyhow::bail!(
            "nothing to serve: add a [[serve.user]] (and its [[serve.role]]) for SQL clients, and/or a [serve.http] section (or --http HOST:PORT) with a [[serve.token]] for the HTTP API"
        );
    }
    let shutdown = CancellationToken::new();
    let mut running = tokio::task::JoinSet::new();
    if wants_sql {
        let server = Server::new(cx.project().clone(), cx.lakehouse().clone())
            .with_listen(listen)
            .bind()
            .await?;
        let address = server.local_addr()?;
        let users: Vec<String> = config
            .users
            .iter()
            .map(|u| format!("{} ({})", u.name, u.role))
            .collect();
        println!(
            "lakescore serve: SQL on {address}{}; users: {}",
            if server.has_tls() { " with TLS" } else { "" },
            if users.is_empty() {
                String::from("anonymous only")
            } else {
                users.join(", ")
            }
        );
        println!(
            "connect with: psql \"host={} port={} user=USER dbname=lakehouse\"",
            address.ip(),
            address.port()
        );
        let stop = shutdown.clone();
        running.spawn(async move { server.run(stop).await });
    }
    if wants_http {
        let api = HttpServer::new(cx.project().clone(), cx.lakehouse().clone())
            .with_listen(http)
            .bind()
            .await?;
        let address = api.local_addr()?;
        let clients: Vec<String> = config.tokens.iter().map(|t| t.name.clone()).collect();
        let scheme = if api.has_tls() { "https" } else { "http" };
        println!(
            "lakescore serve: HTTP API on {scheme}://{address}; clients: {}",
            if clients.is_empty() {
                String::from("anonymous only")
            } else {
                clients.join(", ")
            }
        );
        println!(
            "score with: curl -H \"Authorization: Bearer TOKEN\" -d '{{\"rows\": [...]}}' {scheme}://{address}/v1/models/MODEL/predict"
        );
        let stop = shutdown.clone();
        running.spawn(async move { api.run(stop).await });
    }
    println!("Ctrl-C stops");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if crate::jobs::wait_for_signal().await.is_ok() {
            stop.cancel();
        }
    });
    let mut failed = None;
    while let Some(ended) = running.join_next().await {
        // One listener failing stops the other too.
        shutdown.cancel();
        match ended {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failed = Some(anyhow::Error::from(error)),
            Err(error) => failed = Some(anyhow::Error::from(error)),
        }
    }
    if let Some(error) = failed {
        return Err(error);
    }
    println!("lakescore serve: stopped; the audit log and online predictions are written");
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

/// Prints a new API token and the `[[serve.token]]` entry that accepts it.
pub fn print_new_token() {
    let (token, sha256) = new_token();
    println!("token (give it to the client; it is not stored): {token}");
    println!();
    println!("[[serve.token]]");
    println!("name = \"CLIENT\"");
    println!("secret_sha256 = \"{sha256}\"");
    println!("models = [\"MODEL\"]");
}
