//! The interactive SQL prompt of `lakescore sql`: line editing, history, and statements
//! that may span lines until a closing `;`.

use std::path::PathBuf;

use lakescore_engine::sql::output::{Destination, OutputFormat};
use lakescore_engine::{Project, SqlSession};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

const PROMPT: &str = "lakescore> ";
const CONTINUATION: &str = "        -> ";
const HELP: &str = "\
End each statement with ';' (it may span lines). Tables are named schema.name.
  \\dt          list tables with version, rows and size
  \\d TABLE     describe a table's columns
  \\q           quit (also Ctrl-D)
Time travel: SELECT * FROM table_at('raw.x', 3) or table_at('raw.x', TIMESTAMP '2026-01-01 00:00:00')";

/// Runs the prompt until `\q` or end of input. Every statement sees the lakehouse as it
/// is when the statement starts.
pub async fn run(
    mut session: SqlSession,
    project: &Project,
    max_rows: usize,
) -> anyhow::Result<()> {
    let mut editor = DefaultEditor::new()?;
    let history = history_file(project);
    let _ = editor.load_history(&history);
    println!(
        "lakescore SQL on {}. \\h for help, \\q to quit.",
        session.lakehouse().root()
    );
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            PROMPT
        } else {
            CONTINUATION
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error.into()),
        };
        let trimmed = line.trim();
        if pending.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            match meta_command(&mut session, trimmed, max_rows).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(error) => eprintln!("error: {error:#}"),
            }
            continue;
        }
        if trimmed.is_empty() && pending.is_empty() {
            continue;
        }
        pending.push_str(&line);
        pending.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut pending);
        let _ = editor.add_history_entry(sql.trim());
        if let Err(error) = execute(&mut session, &sql, max_rows).await {
            eprintln!("error: {error:#}");
        }
    }
    if let Some(parent) = history.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = editor.save_history(&history);
    Ok(())
}

async fn execute(session: &mut SqlSession, sql: &str, max_rows: usize) -> anyhow::Result<()> {
    session.refresh().await?;
    let statements = session.parse(sql)?;
    crate::query::run_statements(
        session,
        statements,
        OutputFormat::Table,
        &Destination::Stdout,
        max_rows,
    )
    .await
}

/// Handles a backslash command; returns true to quit.
async fn meta_command(
    session: &mut SqlSession,
    command: &str,
    max_rows: usize,
) -> anyhow::Result<bool> {
    let mut words = command.split_whitespace();
    match (words.next(), words.next()) {
        (Some("\\q"), _) => return Ok(true),
        (Some("\\h" | "\\?"), _) => println!("{HELP}"),
        (Some("\\dt"), _) => {
            crate::query::write_table_listing(
                session.lakehouse(),
                OutputFormat::Table,
                &Destination::Stdout,
            )
            .await?;
        }
        (Some("\\d"), Some(table)) => {
            execute(session, &format!("DESCRIBE {table};"), max_rows).await?
        }
        _ => println!("unknown command {command}\n{HELP}"),
    }
    Ok(false)
}

/// Prompt history lives with the project, in `.lakescore/sql_history`.
fn history_file(project: &Project) -> PathBuf {
    project.dir.join(".lakescore").join("sql_history")
}
