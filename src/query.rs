//! `lakescore sql`, `tables`, `history` and `export`: reading the lakehouse with SQL and
//! its listings, written in the format asked for.

use lakescore_engine::Lakehouse;
use lakescore_engine::SqlSession;
use lakescore_engine::TableName;
use lakescore_engine::datafusion::sql::parser::Statement;
use lakescore_engine::run::RunContext;
use lakescore_engine::sql::output::{Destination, OutputFormat, write_batches, write_results};
use lakescore_engine::storage::inspect::{
    history_batch, list_table_summaries, summaries_batch, table_history,
};

use crate::cli::OutputArgs;

/// `lakescore sql [QUERY]`: runs the statements, or the prompt when no query is given.
pub async fn sql(
    cx: &RunContext,
    query: Option<&str>,
    output: &OutputArgs,
    max_rows: usize,
) -> anyhow::Result<()> {
    let session = lakescore_engine::ml::sql_session(cx.lakehouse().clone())
        .functions(cx.project().config.functions.clone())
        .build()
        .await?;
    let Some(sql) = query else {
        return crate::repl::run(session, cx.project(), max_rows).await;
    };
    let statements = session.parse(sql)?;
    if statements.len() > 1 && output.output.is_some() {
        anyhow::bail!(lakescore_engine::Error::Usage(format!(
            "--output takes the result of one statement, but {} were given",
            statements.len()
        )));
    }
    run_statements(
        &session,
        statements,
        output.format(),
        &output.destination(),
        max_rows,
    )
    .await
}

/// Runs `statements` in order, writing each result (`lakescore sql` and the prompt).
pub async fn run_statements(
    session: &SqlSession,
    statements: Vec<Statement>,
    format: OutputFormat,
    destination: &Destination,
    max_rows: usize,
) -> anyhow::Result<()> {
    for statement in statements {
        let frame = session.plan(statement).await?;
        let stream = frame
            .execute_stream()
            .await
            .map_err(lakescore_engine::Error::from)?;
        write_results(stream, format, destination, max_rows).await?;
        for warning in session.take_warnings() {
            eprintln!("warning: {warning}");
        }
    }
    Ok(())
}

/// Writes the listing of every table (`lakescore tables`, `\\dt`, the demo's summary).
pub async fn write_table_listing(
    lakehouse: &Lakehouse,
    format: OutputFormat,
    destination: &Destination,
) -> anyhow::Result<()> {
    let summaries = list_table_summaries(lakehouse).await?;
    let (schema, batch) = summaries_batch(&summaries)?;
    write_batches(schema, vec![batch], format, destination).await?;
    Ok(())
}

/// `lakescore history TABLE`: the table's Delta history with what made each version.
pub async fn history(
    cx: &RunContext,
    table: &str,
    limit: Option<usize>,
    output: &OutputArgs,
) -> anyhow::Result<()> {
    let name = TableName::parse(table)?;
    let entries = table_history(cx.lakehouse(), &name, limit).await?;
    let (schema, batch) = history_batch(&entries)?;
    write_batches(schema, vec![batch], output.format(), &output.destination()).await?;
    Ok(())
}

/// `lakescore export TABLE[@VERSION] --to FILE`: one table version as a file.
pub async fn export(
    cx: &RunContext,
    table: &str,
    format: OutputFormat,
    to: &str,
) -> anyhow::Result<()> {
    let report =
        lakescore_engine::sql::export::export(cx.lakehouse().clone(), table, format, to).await?;
    println!(
        "{}@{}: {} rows -> {}",
        report.table.0, report.table.1, report.rows, report.destination
    );
    Ok(())
}
