//! `lakescore lineage TABLE[@VERSION]`: what made a table version, down to the extract
//! files.
//!
//! Every commit lakescore makes records its run id and inputs in the Delta commit info.
//! A model commit's inputs are tables with versions, followed recursively; a view is
//! followed through the tables its SQL reads (at their newest versions, as a view reads
//! them); a scored table's inputs are the table version it scored and the model's
//! training table version; a landed table's inputs are the extract files of each batch,
//! listed from the asked version back to the last overwrite.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use lakescore_engine::sql::views::read_view;
use lakescore_engine::storage::commit::{
    CommitKey, FEEDBACK_FOR, MODEL, MODEL_FILE, MODEL_SHA256, POLICY, SCORED_WITH, TRAINING_TABLE,
};
use lakescore_engine::storage::inspect::{HistoryEntry, table_history};
use lakescore_engine::{SqlSession, TableName};
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;

/// How many batches of a landed table are listed; older ones are counted.
const MAX_BATCHES: usize = 10;

/// One table version and what made it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineageNode {
    /// The table.
    pub table: String,
    /// Its version (None for a view, which has none).
    pub version: Option<u64>,
    /// What made it.
    pub made_by: MadeBy,
    /// The table versions it was computed from.
    pub inputs: Vec<LineageNode>,
}

/// What made a table version.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MadeBy {
    /// A SQL model run.
    Model {
        /// The model's name.
        model: String,
        /// Its file.
        file: String,
        /// The file's SHA-256.
        sha256: String,
        /// The run.
        run_id: Option<String>,
        /// When it was committed.
        committed_at: Option<DateTime<Utc>>,
    },
    /// Predictions written by `score`.
    Scoring {
        /// The model version, `name:version`.
        model: String,
        /// Its artifact's SHA-256.
        sha256: String,
        /// The run.
        run_id: Option<String>,
        /// When it was committed.
        committed_at: Option<DateTime<Utc>>,
    },
    /// A feedback training set built by `feedback`.
    Feedback {
        /// The model whose predictions were corrected.
        model: String,
        /// How several corrections of one prediction were resolved.
        policy: String,
        /// The run.
        run_id: Option<String>,
        /// When it was committed.
        committed_at: Option<DateTime<Utc>>,
    },
    /// Extract files landed by `ingest`.
    Ingest {
        /// The batches, newest first.
        batches: Vec<IngestBatch>,
        /// Older batches not listed.
        earlier_batches: usize,
    },
    /// A saved view, read at its inputs' newest versions.
    View {
        /// The view's SQL.
        sql: String,
    },
    /// Shown earlier in the tree.
    SeeAbove,
    /// A commit without lakescore lineage (made by another tool, or the table's creation).
    Other {
        /// The Delta operation.
        operation: Option<String>,
    },
}

/// One landing batch of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestBatch {
    /// The version it created.
    pub version: u64,
    /// The run.
    pub run_id: Option<String>,
    /// When it was committed.
    pub committed_at: Option<DateTime<Utc>>,
    /// The extract files, with fingerprints and row counts, as recorded.
    pub files: Vec<Value>,
}

/// The lineage of `table` at `version` (its newest when None).
pub async fn lineage(
    session: &SqlSession,
    table: &TableName,
    version: Option<u64>,
) -> Result<LineageNode> {
    let mut shown = BTreeSet::new();
    node(session, table.clone(), version, &mut shown).await
}

async fn node(
    session: &SqlSession,
    table: TableName,
    version: Option<u64>,
    shown: &mut BTreeSet<(TableName, Option<u64>)>,
) -> Result<LineageNode> {
    let history = match table_history(session.lakehouse(), &table, None).await {
        Ok(history) => history,
        Err(lakescore_engine::Error::UnknownTable { .. }) => {
            if let Some(sql) = read_view(session.lakehouse(), &table).await? {
                return Box::pin(view_node(session, table, sql, shown)).await;
            }
            return Err(session.lakehouse().unknown_table(&table).await.into());
        }
        Err(other) => return Err(other.into()),
    };
    let newest = history.first().map(|e| e.version).unwrap_or_default();
    let version = version.unwrap_or(newest);
    let Some(at) = history.iter().position(|e| e.version == version) else {
        return Err(lakescore_engine::Error::VersionNotFound {
            table: table.to_string(),
            wanted: format!("version {version}"),
            cause: format!("versions 0 to {newest} exist"),
        }
        .into());
    };
    if !shown.insert((table.clone(), Some(version))) {
        return Ok(LineageNode {
            table: table.to_string(),
            version: Some(version),
            made_by: MadeBy::SeeAbove,
            inputs: Vec::new(),
        });
    }
    let entry = &history[at];
    let details: Value = serde_json::from_str(&entry.details).unwrap_or(Value::Null);
    let inputs: Vec<Value> = entry
        .inputs
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .and_then(|value: Value| value.as_array().cloned())
        .unwrap_or_default();
    let text = |key: CommitKey| {
        details
            .get(key.as_str())
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(model) = text(FEEDBACK_FOR) {
        return Ok(LineageNode {
            table: table.to_string(),
            version: Some(version),
            made_by: MadeBy::Feedback {
                model,
                policy: text(POLICY).unwrap_or_default(),
                run_id: entry.run_id.clone(),
                committed_at: entry.committed_at,
            },
            inputs: input_nodes(session, &inputs, shown).await?,
        });
    }
    if let Some(model) = text(MODEL) {
        let children = input_nodes(session, &inputs, shown).await?;
        return Ok(LineageNode {
            table: table.to_string(),
            version: Some(version),
            made_by: MadeBy::Model {
                model,
                file: text(MODEL_FILE).unwrap_or_default(),
                sha256: text(MODEL_SHA256).unwrap_or_default(),
                run_id: entry.run_id.clone(),
                committed_at: entry.committed_at,
            },
            inputs: children,
        });
    }
    if let Some(model) = text(SCORED_WITH) {
        let mut children = Vec::new();
        let training = text(TRAINING_TABLE).into_iter();
        let tables = inputs
            .iter()
            .filter_map(|i| {
                let name = i.get("table").and_then(Value::as_str)?;
                Some(format!(
                    "{name}@{}",
                    i.get("version").and_then(Value::as_u64).unwrap_or_default()
                ))
            })
            .chain(training);
        for table_at in tables {
            let (name, version) = TableName::parse_at(&table_at)?;
            children.push(Box::pin(node(session, name, version, shown)).await?);
        }
        return Ok(LineageNode {
            table: table.to_string(),
            version: Some(version),
            made_by: MadeBy::Scoring {
                model,
                sha256: text(MODEL_SHA256).unwrap_or_default(),
                run_id: entry.run_id.clone(),
                committed_at: entry.committed_at,
            },
            inputs: children,
        });
    }
    let batches: Vec<&HistoryEntry> = landing_batches(&history[at..]);
    let made_by = if batches.is_empty() {
        MadeBy::Other {
            operation: entry.operation.clone(),
        }
    } else {
        MadeBy::Ingest {
            earlier_batches: batches.len().saturating_sub(MAX_BATCHES),
            batches: batches
                .iter()
                .take(MAX_BATCHES)
                .map(|batch| IngestBatch {
                    version: batch.version,
                    run_id: batch.run_id.clone(),
                    committed_at: batch.committed_at,
                    files: file_inputs(batch),
                })
                .collect(),
        }
    };
    Ok(LineageNode {
        table: table.to_string(),
        version: Some(version),
        made_by,
        inputs: Vec::new(),
    })
}

/// The lineage of every table version in a commit's `inputs`.
async fn input_nodes(
    session: &SqlSession,
    inputs: &[Value],
    shown: &mut BTreeSet<(TableName, Option<u64>)>,
) -> Result<Vec<LineageNode>> {
    let mut children = Vec::new();
    for input in inputs {
        let Some(name) = input.get("table").and_then(Value::as_str) else {
            continue;
        };
        let name = TableName::parse(name)?;
        let version = input.get("version").and_then(Value::as_u64);
        children.push(Box::pin(node(session, name, version, shown)).await?);
    }
    Ok(children)
}

async fn view_node(
    session: &SqlSession,
    table: TableName,
    sql: String,
    shown: &mut BTreeSet<(TableName, Option<u64>)>,
) -> Result<LineageNode> {
    let mut children = Vec::new();
    if shown.insert((table.clone(), None)) {
        let statements = session.parse(&sql)?;
        let mut read = BTreeSet::new();
        for statement in &statements {
            read.extend(
                session
                    .tables_read(statement)?
                    .into_iter()
                    .map(|(_, name)| name),
            );
        }
        for name in read {
            children.push(Box::pin(node(session, name, None, shown)).await?);
        }
    }
    Ok(LineageNode {
        table: table.to_string(),
        version: None,
        made_by: MadeBy::View { sql },
        inputs: children,
    })
}

/// The commits from `history[0]` back that landed extract files, stopping after one that
/// overwrote the table.
fn landing_batches(history: &[HistoryEntry]) -> Vec<&HistoryEntry> {
    let mut batches = Vec::new();
    for entry in history {
        if file_inputs(entry).is_empty() {
            continue;
        }
        batches.push(entry);
        if entry.details.contains("\"mode\":\"Overwrite\"") {
            break;
        }
    }
    batches
}

fn file_inputs(entry: &HistoryEntry) -> Vec<Value> {
    entry
        .inputs
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|value| value.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|input| input.get("file").is_some())
        .collect()
}

/// The lineage as an indented tree: each table version, its batches and their files.
pub fn render_tree(root: &LineageNode) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", headline(root));
    render_lines(&tree_lines(root), "", &mut out);
    out
}

/// One line of the tree and the lines under it.
struct TreeLine {
    text: String,
    children: Vec<TreeLine>,
}

fn tree_lines(node: &LineageNode) -> Vec<TreeLine> {
    let mut lines = Vec::new();
    if let MadeBy::Ingest {
        batches,
        earlier_batches,
    } = &node.made_by
    {
        for batch in batches {
            let when = batch
                .committed_at
                .map(|t| t.format(" %Y-%m-%d %H:%M:%SZ").to_string())
                .unwrap_or_default();
            lines.push(TreeLine {
                text: format!(
                    "batch v{}{when}, run {}",
                    batch.version,
                    short(batch.run_id.as_deref())
                ),
                children: batch
                    .files
                    .iter()
                    .map(|file| TreeLine {
                        text: describe_file(file),
                        children: Vec::new(),
                    })
                    .collect(),
            });
        }
        if *earlier_batches > 0 {
            lines.push(TreeLine {
                text: format!("... and {earlier_batches} earlier batch(es)"),
                children: Vec::new(),
            });
        }
    }
    lines.extend(node.inputs.iter().map(|child| TreeLine {
        text: headline(child),
        children: tree_lines(child),
    }));
    lines
}

fn render_lines(lines: &[TreeLine], indent: &str, out: &mut String) {
    for (index, line) in lines.iter().enumerate() {
        let last = index + 1 == lines.len();
        let (branch, continuation) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        let _ = writeln!(out, "{indent}{branch}{}", line.text);
        render_lines(&line.children, &format!("{indent}{continuation}"), out);
    }
}

fn headline(node: &LineageNode) -> String {
    let at = node.version.map(|v| format!("@{v}")).unwrap_or_default();
    let what = match &node.made_by {
        MadeBy::Model {
            model,
            file,
            sha256,
            run_id,
            committed_at,
        } => format!(
            "model {model} ({file}, sha256 {}), run {}{}",
            &sha256[..sha256.len().min(12)],
            short(run_id.as_deref()),
            committed_at
                .map(|t| t.format(", %Y-%m-%d %H:%M:%SZ").to_string())
                .unwrap_or_default()
        ),
        MadeBy::Scoring {
            model,
            sha256,
            run_id,
            committed_at,
        } => format!(
            "scored by {model} (sha256 {}), run {}{}",
            &sha256[..sha256.len().min(12)],
            short(run_id.as_deref()),
            committed_at
                .map(|t| t.format(", %Y-%m-%d %H:%M:%SZ").to_string())
                .unwrap_or_default()
        ),
        MadeBy::Feedback {
            model,
            policy,
            run_id,
            committed_at,
        } => format!(
            "corrections of {model}'s predictions, resolved by policy {policy}, with the features each prediction was made from; run {}{}",
            short(run_id.as_deref()),
            committed_at
                .map(|t| t.format(", %Y-%m-%d %H:%M:%SZ").to_string())
                .unwrap_or_default()
        ),
        MadeBy::Ingest {
            batches,
            earlier_batches,
        } => {
            format!(
                "landed from extracts, {} batch(es)",
                batches.len() + earlier_batches
            )
        }
        MadeBy::View { .. } => String::from("view, reads its inputs' newest versions"),
        MadeBy::SeeAbove => String::from("(shown above)"),
        MadeBy::Other { operation } => format!(
            "{} without lakescore lineage",
            operation.as_deref().unwrap_or("commit")
        ),
    };
    format!("{}{at}  {what}", node.table)
}

fn describe_file(file: &Value) -> String {
    let field = |key: &str| {
        file.get(key).map(|v| match v {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    };
    let mut text = field("file").unwrap_or_default();
    let mut facts = Vec::new();
    if let Some(rows) = field("rows") {
        facts.push(format!("{rows} rows"));
    }
    if let Some(bad) = field("quarantined").filter(|q| q != "0") {
        facts.push(format!("{bad} quarantined"));
    }
    if let Some(fingerprint) = field("fingerprint") {
        facts.push(fingerprint.chars().take(19).collect());
    }
    if !facts.is_empty() {
        text.push_str(&format!(" ({})", facts.join(", ")));
    }
    text
}

fn short(run_id: Option<&str>) -> String {
    run_id.map_or_else(|| String::from("-"), str::to_string)
}
