//! `lakescore transform` and `lakescore lineage`: run the SQL models with a progress line
//! per model, list their graph, and print what made a table version.

use std::sync::Arc;

use lakescore_engine::TableName;
use lakescore_engine::datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Field, Schema};
use lakescore_engine::run::RunContext;
use lakescore_engine::sql::output::{Destination, OutputFormat, write_batches};
use lakescore_sql::dag::Selector;
use lakescore_sql::lineage::{lineage, render_tree};
use lakescore_sql::transform::model_graph;
use lakescore_sql::{Transform, TransformEvent};

/// Runs the selected models and prints one line per model; fails when any did not build.
pub async fn run(cx: &RunContext, selectors: Vec<Selector>, force: bool) -> anyhow::Result<()> {
    let bar = crate::progress::spinner("{spinner} {msg} {elapsed}");
    let progress_bar = bar.clone();
    let report = Transform::new(cx)
        .with_selectors(selectors)
        .with_force(force)
        .with_progress(Arc::new(move |event| match event {
            TransformEvent::Started { name, table } => {
                progress_bar.reset_elapsed();
                progress_bar.set_message(format!("{name} -> {table}"));
            }
            TransformEvent::Finished(report) => {
                progress_bar.suspend(|| println!("{report}"));
            }
        }))
        .await;
    bar.finish_and_clear();
    let report = report?;
    if report.models.is_empty() {
        println!(
            "no models in {}: add a .sql file holding one SELECT",
            cx.project().models_dir().display()
        );
    }
    println!("run id {}", report.run_id);
    match report.failure() {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

/// Writes the models in run order with what they read (`lakescore transform --list`).
pub async fn list(
    cx: &RunContext,
    selectors: &[Selector],
    format: OutputFormat,
    destination: &Destination,
) -> anyhow::Result<()> {
    let graph = model_graph(cx.project(), cx.lakehouse()).await?;
    let selected = graph.select(selectors)?;
    let models: Vec<_> = selected.iter().map(|i| &graph.models()[*i]).collect();
    let text = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
    let schema = Arc::new(Schema::new(vec![
        Field::new("order", DataType::UInt64, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("materialized", DataType::Utf8, false),
        Field::new("reads", DataType::Utf8, false),
        Field::new("tests", DataType::UInt64, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from_iter_values(
                selected.iter().map(|i| *i as u64 + 1),
            )),
            text(models.iter().map(|m| m.model.name.clone()).collect()),
            text(models.iter().map(|m| m.model.table.to_string()).collect()),
            text(
                models
                    .iter()
                    .map(|m| m.model.config.materialized.as_str().to_string())
                    .collect(),
            ),
            text(
                models
                    .iter()
                    .map(|m| {
                        m.reads
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .collect(),
            ),
            Arc::new(UInt64Array::from_iter_values(
                models.iter().map(|m| m.model.tests.len() as u64),
            )),
            text(
                models
                    .iter()
                    .map(|m| m.model.display_path.clone())
                    .collect(),
            ),
            Arc::new(StringArray::from(
                models
                    .iter()
                    .map(|m| m.model.config.description.clone())
                    .collect::<Vec<_>>(),
            )),
        ],
    )?;
    write_batches(schema, vec![batch], format, destination).await?;
    Ok(())
}

/// Prints the lineage of `table` (`schema.name` or `schema.name@VERSION`) as a tree, or
/// as JSON.
pub async fn print_lineage(cx: &RunContext, table: &str, json: bool) -> anyhow::Result<()> {
    let (name, version) = TableName::parse_at(table)?;
    let session = lakescore_engine::ml::sql_session(cx.lakehouse().clone())
        .functions(cx.project().config.functions.clone())
        .build()
        .await?;
    let root = lineage(&session, &name, version).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&root)?);
    } else {
        print!("{}", render_tree(&root));
    }
    Ok(())
}
