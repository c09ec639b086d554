//! `lakescore train` and `lakescore models`: train a model version, list and show
//! versions, move aliases.

use std::sync::Arc;
use std::time::Instant;

use lakescore_engine::models::metrics::Metrics;
use lakescore_engine::models::registry::{ModelRef, Registry};
use lakescore_engine::models::score::Score;
use lakescore_engine::models::train::Train;
use lakescore_engine::{Lakehouse, Project};

/// Trains `name` and prints the new version with its metrics.
pub async fn train(project: &Project, lakehouse: Arc<Lakehouse>, name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let bar = crate::progress::spinner("{spinner} {msg} {elapsed}");
    bar.set_message(format!("training {name}"));
    let manifest = Train::new(project, lakehouse.clone(), name).await;
    bar.finish_and_clear();
    let manifest = manifest?;
    let aliases = Registry::new(lakehouse).aliases(name).await?;
    let champion = aliases.current.get("champion") == Some(&manifest.version);
    println!(
        "{}:{} trained on {}@{} ({} rows, {} held out) with {} in {:.1}s{}",
        manifest.name,
        manifest.version,
        manifest.training_table,
        manifest.training_table_version,
        manifest.rows.training,
        manifest.rows.holdout,
        manifest.algorithm.as_str(),
        started.elapsed().as_secs_f64(),
        if champion { ", now champion" } else { "" }
    );
    if manifest.rows.sample_fraction < 1.0 {
        println!(
            "  sampled {:.1}% of {} rows (max_training_rows), by key hash with seed {}",
            manifest.rows.sample_fraction * 100.0,
            manifest.rows.table_rows,
            manifest.seed
        );
    }
    if manifest.rows.rows_without_label > 0 {
        println!(
            "  {} rows without a label were not used",
            manifest.rows.rows_without_label
        );
    }
    println!(
        "  {} metrics: {}",
        manifest.evaluated_on,
        metrics_line(&manifest.metrics)
    );
    println!("  artifact sha256 {}", manifest.artifact_sha256);
    if !champion {
        println!(
            "  promote it with: lakescore models promote {} {} --alias champion",
            manifest.name, manifest.version
        );
    }
    Ok(())
}

/// One line of the headline metrics.
pub fn metrics_line(metrics: &Metrics) -> String {
    match metrics {
        Metrics::Classification {
            roc_auc,
            log_loss,
            accuracy,
            precision,
            recall,
            f1,
            ..
        } => format!(
            "roc_auc {roc_auc:.3}, log_loss {log_loss:.3}, accuracy {accuracy:.3}, precision {precision:.3}, recall {recall:.3}, f1 {f1:.3}"
        ),
        Metrics::Regression { rmse, mae, r2, .. } => {
            format!("rmse {rmse:.4}, mae {mae:.4}, r2 {r2:.3}")
        }
    }
}

/// `lakescore models list`: every version of every model (or of `name`).
pub async fn list(lakehouse: Arc<Lakehouse>, name: Option<&str>) -> anyhow::Result<()> {
    let registry = Registry::new(lakehouse);
    let names = match name {
        Some(name) => vec![name.to_string()],
        None => registry.model_names().await?,
    };
    if names.is_empty() {
        println!(
            "no models registered yet: declare a [[model]] in lakescore.toml and run `lakescore train NAME`"
        );
    }
    for name in names {
        let aliases = registry.aliases(&name).await?;
        let listing = registry.listing(&name).await?;
        for broken in &listing.broken {
            println!("{name}:{}  BROKEN: {broken}", broken.version);
        }
        for manifest in listing.readable {
            let tags: Vec<&str> = aliases
                .current
                .iter()
                .filter(|(_, v)| **v == manifest.version)
                .map(|(a, _)| a.as_str())
                .collect();
            println!(
                "{}:{}{}  {} on {}@{}  {}  {}",
                manifest.name,
                manifest.version,
                if tags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", tags.join(", "))
                },
                manifest.algorithm.as_str(),
                manifest.training_table,
                manifest.training_table_version,
                metrics_line(&manifest.metrics),
                manifest.created_at.format("%Y-%m-%d %H:%M:%SZ"),
            );
        }
    }
    Ok(())
}

/// `lakescore models show REF`: the version's manifest as JSON, after verifying that the
/// stored artifact still has the SHA-256 the manifest records.
pub async fn show(lakehouse: Arc<Lakehouse>, reference: &str) -> anyhow::Result<()> {
    let reference = ModelRef::parse(reference)?;
    let registry = Registry::new(lakehouse);
    let manifest = registry.resolve(&reference).await?;
    let loaded = registry.load(manifest).await?;
    println!("{}", serde_json::to_string_pretty(&loaded.manifest)?);
    eprintln!(
        "artifact verified: sha256 {}",
        loaded.manifest.artifact_sha256
    );
    Ok(())
}

/// `lakescore models promote NAME VERSION --alias ALIAS`.
pub async fn promote(
    lakehouse: Arc<Lakehouse>,
    name: &str,
    version: u64,
    alias: &str,
) -> anyhow::Result<()> {
    Registry::new(lakehouse)
        .move_alias(name, alias, version, "promote")
        .await?;
    println!("{name}:{version} is now {alias}");
    Ok(())
}

/// `lakescore models rollback NAME`.
pub async fn rollback(lakehouse: Arc<Lakehouse>, name: &str) -> anyhow::Result<()> {
    let version = Registry::new(lakehouse).rollback(name).await?;
    println!("{name}: champion rolled back to version {version}");
    Ok(())
}

/// `lakescore score MODEL --input TABLE[@VERSION] [--output TABLE]`.
pub async fn score(
    project: &Project,
    lakehouse: Arc<Lakehouse>,
    model: &str,
    input: &str,
    output: Option<String>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let bar = crate::progress::spinner("{spinner} {msg} {elapsed}");
    bar.set_message(format!("scoring {input} with {model}"));
    let report = Score::new(project, lakehouse, model, input)
        .with_output(output)
        .await;
    bar.finish_and_clear();
    let report = report?;
    let (table, version) = &report.input;
    match report.version {
        Some(written) => println!(
            "{} <- {table}@{version} scored with {}: {} rows -> version {written} in {:.1}s",
            report.output,
            report.model,
            report.rows,
            started.elapsed().as_secs_f64()
        ),
        None => println!(
            "{} <- {table}@{version}: already scored with {}, nothing added",
            report.output, report.model
        ),
    }
    println!("run id {}", report.run_id);
    Ok(())
}
