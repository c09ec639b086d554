//! `lakescore train` and `lakescore models`: train a model version, list and show
//! versions, move aliases.

use std::sync::Arc;

use lakescore_engine::Lakehouse;
use lakescore_engine::ml::models::registry::{ModelRef, Registry};
use lakescore_engine::run::RunContext;

/// Trains `name` and prints the new version with its metrics.
pub async fn train(cx: &RunContext, name: &str) -> anyhow::Result<()> {
    let bar = crate::progress::spinner("{spinner} {msg} {elapsed}");
    bar.set_message(format!("training {name}"));
    let report = cx.train(name).await;
    bar.finish_and_clear();
    println!("{}", report?);
    Ok(())
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
                manifest.metrics.headline(),
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
    cx: &RunContext,
    model: &str,
    input: &str,
    output: Option<String>,
) -> anyhow::Result<()> {
    let bar = crate::progress::spinner("{spinner} {msg} {elapsed}");
    bar.set_message(format!("scoring {input} with {model}"));
    let report = cx.score(model, input).with_output(output).await;
    bar.finish_and_clear();
    println!("{}", report?);
    Ok(())
}
