//! The model registry: every trained version stored in the lakehouse, its aliases, and
//! the `ops.model_versions` table.
//!
//! Version `v` of model `m` is the folder `<root>/_models/<m>/<v>/` holding `model.json`
//! (the artifact: smartcore's serialized model, the preprocessing and the compiled view)
//! and `manifest.json` (everything about the version, including the artifact's SHA-256).
//! The manifest is written last and only if it does not exist yet, so it is the commit
//! point: two trainings racing for one version number cannot both win. Aliases
//! (`champion`, `challenger`) and their history are in `<root>/_models/<m>/aliases/`, one
//! create-only file per change (generation), so concurrent promotions never lose one.
//! A model reference is `name` (its champion), `name@challenger` or `name:3`.

use std::fmt;
use std::sync::Arc;

use crate::storage::hashing::sha256_hex;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::compiled::CompiledModel;
use super::features::Preprocessor;
use super::metrics::Metrics;
use super::profile::ColumnProfile;
use super::tree_walk::FlatTrees;
use crate::config::{Algorithm, FeatureKind, Task};
use crate::error::{Error, Result};
use crate::storage::commit::commit_metadata;
use crate::storage::lakehouse::Lakehouse;
use crate::storage::system_tables::{MODEL_VERSIONS, system_table};
use crate::storage::write::{WriteMode, is_commit_conflict, write_batch};

/// The folder under the root that holds the registry.
const MODELS: &str = "_models";
/// How often `ops.model_versions` is derived again after losing a race to another writer.
const MAX_REWRITES: u32 = 20;
/// The folder of a model's alias generations.
const ALIAS_GENERATIONS: &str = "aliases";

/// Generation `n` of `model`'s aliases.
fn generation_path(model: &str, n: u64) -> StorePath {
    StorePath::from_iter([MODELS, model, ALIAS_GENERATIONS, &format!("{n:020}.json")])
}

/// The aliases a version can carry.
pub const ALIASES: [&str; 2] = ["champion", "challenger"];

/// Which version of a model: its champion, an alias, or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// The model's name.
    pub name: String,
    /// Which version.
    pub selector: VersionSelector,
}

/// How a reference picks a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    /// The version carrying this alias.
    Alias(String),
    /// This version number.
    Number(u64),
}

impl ModelRef {
    /// Parses `name`, `name@alias` or `name:VERSION`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "invalid model reference '{text}': {why} (write name, name@challenger or name:3)"
            ))
        };
        if let Some((name, alias)) = text.split_once('@') {
            if !ALIASES.contains(&alias) {
                return Err(bad(&format!("the aliases are {}", ALIASES.join(" and "))));
            }
            return Ok(Self {
                name: name.to_string(),
                selector: VersionSelector::Alias(alias.to_string()),
            });
        }
        if let Some((name, version)) = text.split_once(':') {
            let number = version
                .parse()
                .map_err(|_| bad("the version after ':' must be a number"))?;
            return Ok(Self {
                name: name.to_string(),
                selector: VersionSelector::Number(number),
            });
        }
        if text.is_empty() {
            return Err(bad("the name is empty"));
        }
        Ok(Self {
            name: text.to_string(),
            selector: VersionSelector::Alias(String::from("champion")),
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.selector {
            VersionSelector::Alias(alias) => write!(f, "{}@{alias}", self.name),
            VersionSelector::Number(n) => write!(f, "{}:{n}", self.name),
        }
    }
}

/// One feature as the model reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureEntry {
    /// The column.
    pub name: String,
    /// How it is read.
    pub kind: FeatureKind,
}

/// Row counts of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowCounts {
    /// Rows in the training table version.
    pub table_rows: u64,
    /// Rows skipped because their label was NULL.
    pub rows_without_label: u64,
    /// Share of rows sampled (1 when the table fit `max_training_rows`).
    pub sample_fraction: f64,
    /// Rows trained on.
    pub training: u64,
    /// Rows held out for evaluation.
    pub holdout: u64,
}

/// Everything about one model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The model.
    pub name: String,
    /// The version, from 1.
    pub version: u64,
    /// What it predicts.
    pub task: Task,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The algorithm's parameters, defaults included.
    pub params: Value,
    /// The features in argument order.
    pub features: Vec<FeatureEntry>,
    /// Encoded column names, in the order the model sees them.
    pub encoded_features: Vec<String>,
    /// The label column.
    pub label: String,
    /// Key columns.
    pub key: Vec<String>,
    /// Classes in index order (classification).
    pub classes: Vec<String>,
    /// The positive class of a binary classifier.
    pub positive_class: Option<String>,
    /// The table trained on.
    pub training_table: String,
    /// Its version.
    pub training_table_version: u64,
    /// Seed of sampling, split and algorithm.
    pub seed: u64,
    /// Holdout share.
    pub holdout: f64,
    /// Row counts.
    pub rows: RowCounts,
    /// Holdout metrics (on the training rows when `holdout = 0`).
    pub metrics: Metrics,
    /// `holdout` or `training`: which rows the metrics are from.
    pub evaluated_on: String,
    /// Training-time distribution of each feature.
    pub feature_profiles: Vec<(String, ColumnProfile)>,
    /// Distribution of the model's predictions (values, or the positive-class
    /// probability) on every row of the training table version it read, labeled or not:
    /// the baseline of prediction drift.
    pub prediction_profile: ColumnProfile,
    /// SHA-256 of `model.json`.
    pub artifact_sha256: String,
    /// Size of `model.json` in bytes.
    pub artifact_bytes: u64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// The training run.
    pub run_id: String,
    /// How a retrained version compared with the champion, and the feedback it learned
    /// from (absent for `lakescore train`).
    #[serde(default)]
    pub retrain: Option<RetrainRecord>,
}

/// A retrain's comparison and decision, kept in the challenger's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainRecord {
    /// The champion it was compared with.
    pub champion_version: u64,
    /// The champion's metrics on the same holdout rows.
    pub champion_metrics: Metrics,
    /// The metric compared.
    pub metric: String,
    /// The champion's value of it.
    pub champion_value: f64,
    /// The challenger's value of it.
    pub challenger_value: f64,
    /// The improvement required.
    pub min_improvement: f64,
    /// True when the challenger became the champion.
    pub promoted: bool,
    /// The decision in a sentence.
    pub reason: String,
    /// The feedback training set (`training.<model>_feedback`), when there was one.
    pub feedback_training_table: Option<String>,
    /// Its version.
    pub feedback_training_version: Option<u64>,
    /// Feedback rows trained on (counting weighted copies).
    pub feedback_training_rows: u64,
    /// Feedback rows in the holdout.
    pub feedback_holdout_rows: u64,
    /// How many times each feedback row counted.
    pub feedback_weight: f64,
    /// The retrain requests this run resolved.
    pub requests: Vec<String>,
}

/// The artifact format this lakescore writes: 1 had smartcore train every model; 2 has
/// lakescore's own learners (soft-voting forests, histogram trees, boosted classifiers,
/// NaN for missing numbers in tree models). Every format up to this one loads.
pub const ARTIFACT_FORMAT: u32 = 2;

fn first_format() -> u32 {
    1
}

/// The error for an artifact of a format newer than this lakescore reads.
fn refuse_newer_format(format: u32, model: &str, path: &str) -> Result<()> {
    if format > ARTIFACT_FORMAT {
        return Err(Error::Usage(format!(
            "{model}: the artifact {path} has format {format} but this lakescore reads formats up to {ARTIFACT_FORMAT}; score it with the lakescore release that trained it, or upgrade"
        )));
    }
    Ok(())
}

/// What `model.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// The artifact format ([`ARTIFACT_FORMAT`]); 1 when absent.
    #[serde(default = "first_format")]
    pub format: u32,
    /// smartcore's serialized model, when smartcore trained it.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub smartcore: Value,
    /// The preprocessing.
    pub preprocessing: Preprocessor,
    /// lakescore's compiled view.
    pub compiled: CompiledModel,
    /// Mean of each encoded column over the training rows: the baseline of linear
    /// explanations.
    #[serde(default)]
    pub encoded_means: Vec<f64>,
}

/// A version loaded for scoring: its manifest and verified artifact.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The manifest.
    pub manifest: Manifest,
    /// The artifact.
    pub artifact: Artifact,
    /// The artifact's trees laid out for scoring blocks of rows.
    pub trees: FlatTrees,
}

/// Aliases of a model and how they changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aliases {
    /// Alias → version.
    pub current: std::collections::BTreeMap<String, u64>,
    /// Every change, oldest first.
    pub history: Vec<AliasChange>,
}

/// One alias change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasChange {
    /// The alias.
    pub alias: String,
    /// The version it moved to.
    pub version: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// Why (promote, rollback, first version).
    pub reason: String,
}

/// The versions of one model as stored.
#[derive(Debug, Default)]
pub struct VersionListing {
    /// Versions whose manifest reads, oldest first.
    pub readable: Vec<Manifest>,
    /// Versions whose manifest cannot be read.
    pub broken: Vec<BrokenVersion>,
    /// Version folders without a manifest (a registration that has not finished).
    pub unfinished: Vec<u64>,
}

impl VersionListing {
    /// Version `version` of model `name`, or why it cannot be used: its manifest is
    /// broken, or there is no such version.
    fn take_version(mut self, name: &str, version: u64) -> Result<Manifest> {
        if let Some(broken) = self.broken.iter().find(|b| b.version == version) {
            return Err(Error::Usage(broken.to_string()));
        }
        match self.readable.iter().position(|m| m.version == version) {
            Some(at) => Ok(self.readable.swap_remove(at)),
            None => Err(no_such_version(name, version, &self.readable)),
        }
    }

    /// The highest version number in use, readable or not (0 when there is none).
    fn last_number(&self) -> u64 {
        let readable = self.readable.iter().map(|m| m.version);
        let broken = self.broken.iter().map(|b| b.version);
        readable
            .chain(broken)
            .chain(self.unfinished.iter().copied())
            .max()
            .unwrap_or(0)
    }
}

/// The error for a version model `name` does not have, listing the ones it has.
fn no_such_version(name: &str, version: u64, versions: &[Manifest]) -> Error {
    if versions.is_empty() {
        return Error::Usage(format!(
            "model '{name}' has no versions: run `lakescore train {name}` first"
        ));
    }
    Error::Usage(format!(
        "model '{name}' has no version {version}; it has versions {}",
        versions
            .iter()
            .map(|m| m.version.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A version whose manifest cannot be read (corrupt or truncated).
#[derive(Debug, Clone)]
pub struct BrokenVersion {
    /// The model.
    pub name: String,
    /// The version.
    pub version: u64,
    /// Why its manifest cannot be read, with its path.
    pub problem: String,
}

impl fmt::Display for BrokenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} cannot be used: its manifest cannot be read ({}); restore the file from a backup, or use another version",
            self.name, self.version, self.problem
        )
    }
}

/// The registry in a lakehouse.
pub struct Registry {
    lakehouse: Arc<Lakehouse>,
}

impl Registry {
    /// The registry under `lakehouse`'s root.
    pub fn new(lakehouse: Arc<Lakehouse>) -> Self {
        Self { lakehouse }
    }

    fn storage(&self, error: impl fmt::Display) -> Error {
        Error::Storage {
            uri: format!("{}{MODELS}", self.lakehouse.root()),
            cause: error.to_string(),
        }
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &StorePath,
    ) -> Result<Option<(T, Vec<u8>)>> {
        let store = self.lakehouse.store()?;
        match store.get(path).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(|e| self.storage(e))?.to_vec();
                let value = serde_json::from_slice(&bytes)
                    .map_err(|e| self.storage(format!("{path}: {e}")))?;
                Ok(Some((value, bytes)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.storage(error)),
        }
    }

    /// Every readable version of `name`, oldest first. Versions whose manifest cannot be
    /// read are left out with a warning: one corrupt version never blocks the others.
    pub async fn versions(&self, name: &str) -> Result<Vec<Manifest>> {
        let listing = self.listing(name).await?;
        for broken in &listing.broken {
            tracing::warn!("{broken}");
        }
        Ok(listing.readable)
    }

    /// Every version of `name`, oldest first: the readable ones and the broken ones.
    pub async fn listing(&self, name: &str) -> Result<VersionListing> {
        let store = self.lakehouse.store()?;
        let prefix = StorePath::from_iter([MODELS, name]);
        let listing = match store.list_with_delimiter(Some(&prefix)).await {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(VersionListing::default()),
            Err(error) => return Err(self.storage(error)),
        };
        let mut numbers: Vec<u64> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(|n| n.parse().ok()))
            .collect();
        numbers.sort_unstable();
        let mut versions = VersionListing::default();
        for number in numbers {
            let path = StorePath::from_iter([MODELS, name, &number.to_string(), "manifest.json"]);
            match self.read_json::<Manifest>(&path).await {
                Ok(Some((manifest, _))) => versions.readable.push(manifest),
                // A folder without a manifest is a registration in progress (or one that
                // stopped before its manifest): not a version yet.
                Ok(None) => versions.unfinished.push(number),
                Err(Error::Storage { cause, .. }) => versions.broken.push(BrokenVersion {
                    name: name.to_string(),
                    version: number,
                    problem: cause,
                }),
                Err(other) => return Err(other),
            }
        }
        Ok(versions)
    }

    /// Names of every registered model.
    pub async fn model_names(&self) -> Result<Vec<String>> {
        let store = self.lakehouse.store()?;
        let listing = match store
            .list_with_delimiter(Some(&StorePath::from(MODELS)))
            .await
        {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(self.storage(error)),
        };
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The aliases of `name`.
    pub async fn aliases(&self, name: &str) -> Result<Aliases> {
        Ok(self.latest_aliases(name).await?.1)
    }

    /// The newest generation of `name`'s aliases and its number (0: none written yet,
    /// or only the single `aliases.json` of earlier releases).
    async fn latest_aliases(&self, name: &str) -> Result<(u64, Aliases)> {
        let store = self.lakehouse.store()?;
        let folder = StorePath::from_iter([MODELS, name, ALIAS_GENERATIONS]);
        let generations: Vec<object_store::ObjectMeta> =
            match store.list(Some(&folder)).try_collect().await {
                Ok(listed) => listed,
                Err(object_store::Error::NotFound { .. }) => Vec::new(),
                Err(error) => return Err(self.storage(error)),
            };
        let newest = generations
            .iter()
            .filter_map(|meta| {
                let file = meta.location.filename()?;
                file.strip_suffix(".json")?.parse::<u64>().ok()
            })
            .max();
        let (generation, path) = match newest {
            Some(n) => (n, generation_path(name, n)),
            None => (0, StorePath::from_iter([MODELS, name, "aliases.json"])),
        };
        let aliases = self
            .read_json(&path)
            .await?
            .map(|(a, _)| a)
            .unwrap_or_default();
        Ok((generation, aliases))
    }

    /// Applies `change` to the newest aliases of `name` and stores them as the next
    /// generation. The generation file is created only if it does not exist, so of two
    /// concurrent changes one wins and the other is applied again on top of it: no
    /// change is lost.
    async fn update_aliases(&self, name: &str, change: impl Fn(&mut Aliases)) -> Result<()> {
        let store = self.lakehouse.store()?;
        loop {
            let (generation, mut aliases) = self.latest_aliases(name).await?;
            change(&mut aliases);
            let bytes = serde_json::to_vec_pretty(&aliases).map_err(|e| self.storage(e))?;
            let created = store
                .put_opts(
                    &generation_path(name, generation + 1),
                    PutPayload::from(bytes),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match created {
                Ok(_) => return Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(error) => return Err(self.storage(error)),
            }
        }
    }

    /// Stores a new version of `manifest.name` (its number is chosen here) and makes it
    /// the champion when it is the model's first. Returns the stored manifest.
    pub async fn register(&self, mut manifest: Manifest, artifact: &Artifact) -> Result<Manifest> {
        let bytes = serde_json::to_vec(artifact).map_err(|e| self.storage(e))?;
        manifest.artifact_sha256 = sha256_hex(&bytes);
        manifest.artifact_bytes = bytes.len() as u64;
        let store = self.lakehouse.store()?;
        loop {
            let next = self.listing(&manifest.name).await?.last_number() + 1;
            manifest.version = next;
            let folder = [MODELS, manifest.name.as_str(), &next.to_string()];
            let artifact_path = StorePath::from_iter(folder.iter().copied().chain(["model.json"]));
            // Creating the artifact claims the number: a concurrent registration that
            // chose the same one moves on to the next instead of overwriting it.
            let claimed = store
                .put_opts(
                    &artifact_path,
                    PutPayload::from(bytes.clone()),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match claimed {
                Ok(_) => {}
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(error) => return Err(self.storage(error)),
            }
            let manifest_path =
                StorePath::from_iter(folder.iter().copied().chain(["manifest.json"]));
            let manifest_bytes =
                serde_json::to_vec_pretty(&manifest).map_err(|e| self.storage(e))?;
            let created = store
                .put_opts(
                    &manifest_path,
                    PutPayload::from(manifest_bytes),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match created {
                Ok(_) => break,
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(error) => return Err(self.storage(error)),
            }
        }
        if manifest.version == 1 {
            self.move_alias(&manifest.name, "champion", 1, "first version")
                .await?;
        } else {
            self.write_versions_table(&manifest.run_id).await?;
        }
        Ok(manifest)
    }

    /// Points `alias` of `name` at `version`.
    pub async fn move_alias(
        &self,
        name: &str,
        alias: &str,
        version: u64,
        reason: &str,
    ) -> Result<()> {
        if !ALIASES.contains(&alias) {
            return Err(Error::Usage(format!(
                "unknown alias '{alias}': the aliases are {}",
                ALIASES.join(" and ")
            )));
        }
        self.listing(name).await?.take_version(name, version)?;
        let at = Utc::now();
        self.update_aliases(name, |aliases| {
            aliases.current.insert(alias.to_string(), version);
            aliases.history.push(AliasChange {
                alias: alias.to_string(),
                version,
                at,
                reason: reason.to_string(),
            });
        })
        .await?;
        self.write_versions_table(&crate::storage::commit::new_run_id())
            .await
    }

    /// Moves `champion` back to the version it had before its last move, and returns it.
    pub async fn rollback(&self, name: &str) -> Result<u64> {
        let aliases = self.aliases(name).await?;
        let moves: Vec<&AliasChange> = aliases
            .history
            .iter()
            .filter(|c| c.alias == "champion")
            .collect();
        let current = aliases.current.get("champion").copied();
        let previous = moves
            .iter()
            .rev()
            .map(|c| c.version)
            .find(|v| Some(*v) != current);
        match previous {
            Some(version) => {
                self.move_alias(name, "champion", version, "rollback")
                    .await?;
                Ok(version)
            }
            None => Err(Error::Usage(format!(
                "{name} has no earlier champion to roll back to (champion is version {})",
                current.map_or_else(|| String::from("unset"), |v| v.to_string())
            ))),
        }
    }

    /// The manifest a reference names.
    pub async fn resolve(&self, reference: &ModelRef) -> Result<Manifest> {
        let listing = self.listing(&reference.name).await?;
        let version = match &reference.selector {
            VersionSelector::Number(n) => *n,
            VersionSelector::Alias(alias) => {
                let aliases = self.aliases(&reference.name).await?;
                match aliases.current.get(alias) {
                    Some(v) => *v,
                    None if listing.readable.is_empty() => {
                        return Err(no_such_version(&reference.name, 0, &listing.readable));
                    }
                    None => {
                        return Err(Error::Usage(format!(
                            "model '{}' has no {alias}: `lakescore models promote {} VERSION --alias {alias}` sets one",
                            reference.name, reference.name
                        )));
                    }
                }
            }
        };
        listing.take_version(&reference.name, version)
    }

    /// Loads a version's artifact, refusing it when its SHA-256 differs from the manifest.
    pub async fn load(&self, manifest: Manifest) -> Result<LoadedModel> {
        let path = StorePath::from_iter([
            MODELS,
            manifest.name.as_str(),
            &manifest.version.to_string(),
            "model.json",
        ]);
        let bytes = match self.lakehouse.store()?.get(&path).await {
            Ok(found) => found.bytes().await.map_err(|e| self.storage(e))?.to_vec(),
            Err(error) => return Err(self.storage(format!("{path}: {error}"))),
        };
        let sha: String = sha256_hex(&bytes);
        if sha != manifest.artifact_sha256 {
            return Err(Error::Usage(format!(
                "{}:{}: the artifact {path} has SHA-256 {sha} but the manifest records {}; it was changed or truncated after registration and is refused. Retrain the model or restore the file",
                manifest.name, manifest.version, manifest.artifact_sha256
            )));
        }
        let artifact: Artifact =
            serde_json::from_slice(&bytes).map_err(|e| self.storage(format!("{path}: {e}")))?;
        refuse_newer_format(
            artifact.format,
            &format!("{}:{}", manifest.name, manifest.version),
            path.as_ref(),
        )?;
        let trees = FlatTrees::new(&artifact.compiled, artifact.preprocessing.width()).map_err(
            |malformed| {
                Error::Usage(format!(
                    "{}:{}: the artifact {path} cannot be scored: {malformed}. Retrain the model",
                    manifest.name, manifest.version
                ))
            },
        )?;
        Ok(LoadedModel {
            manifest,
            artifact,
            trees,
        })
    }

    /// Rewrites `ops.model_versions` from the registry: one row per version with its
    /// metrics and current aliases.
    ///
    /// The table is derived from the registry, so when another process rewrote it at the
    /// same time (a concurrent promotion), it is derived again and rewritten.
    pub async fn write_versions_table(&self, run_id: &str) -> Result<()> {
        let mut attempts = 0;
        loop {
            match self.write_versions_once(run_id).await {
                Err(error) if is_commit_conflict(&error) && attempts < MAX_REWRITES => {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    async fn write_versions_once(&self, run_id: &str) -> Result<()> {
        let mut manifests = Vec::new();
        let mut alias_of = Vec::new();
        let mut decisions = Vec::new();
        for name in self.model_names().await? {
            let aliases = self.aliases(&name).await?;
            for manifest in self.versions(&name).await? {
                let names: Vec<&str> = aliases
                    .current
                    .iter()
                    .filter(|(_, v)| **v == manifest.version)
                    .map(|(a, _)| a.as_str())
                    .collect();
                alias_of.push(names.join(","));
                let decision = manifest.retrain.as_ref().map(|r| {
                    let reached = aliases
                        .history
                        .iter()
                        .any(|c| c.alias == "champion" && c.version == manifest.version);
                    match (r.promoted, reached) {
                        (true, true) => "promoted",
                        // Registered to be promoted, but the run stopped before the move.
                        (true, false) => "interrupted",
                        (false, _) => "challenger",
                    }
                });
                decisions.push(decision);
                manifests.push(manifest);
            }
        }
        let text = |f: &dyn Fn(&Manifest) -> String| {
            Arc::new(StringArray::from_iter_values(manifests.iter().map(f))) as ArrayRef
        };
        let retrains: Vec<Option<&RetrainRecord>> =
            manifests.iter().map(|m| m.retrain.as_ref()).collect();
        let optional_text = |f: &dyn Fn(&RetrainRecord) -> String| {
            Arc::new(StringArray::from_iter(retrains.iter().map(|r| r.map(f)))) as ArrayRef
        };
        let metric = |name: &str| {
            Arc::new(Float64Array::from_iter(
                manifests.iter().map(|m| m.metrics.get(name)),
            )) as ArrayRef
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("model", DataType::Utf8, false),
            Field::new("version", DataType::Int64, false),
            Field::new("aliases", DataType::Utf8, false),
            Field::new("task", DataType::Utf8, false),
            Field::new("algorithm", DataType::Utf8, false),
            Field::new("training_table", DataType::Utf8, false),
            Field::new("training_table_version", DataType::Int64, false),
            Field::new("training_rows", DataType::Int64, false),
            Field::new("holdout_rows", DataType::Int64, false),
            Field::new("roc_auc", DataType::Float64, true),
            Field::new("accuracy", DataType::Float64, true),
            Field::new("f1", DataType::Float64, true),
            Field::new("rmse", DataType::Float64, true),
            Field::new("r2", DataType::Float64, true),
            Field::new("metrics", DataType::Utf8, false),
            Field::new("artifact_sha256", DataType::Utf8, false),
            Field::new("compared_with_version", DataType::Int64, true),
            Field::new("champion_metrics", DataType::Utf8, true),
            Field::new("decision", DataType::Utf8, true),
            Field::new("decision_reason", DataType::Utf8, true),
            Field::new("feedback_training_table", DataType::Utf8, true),
            Field::new("feedback_training_version", DataType::Int64, true),
            Field::new("feedback_training_rows", DataType::Int64, true),
            Field::new("retrain_requests", DataType::Utf8, true),
            Field::new(
                "created_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("run_id", DataType::Utf8, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            text(&|m| m.name.clone()),
            Arc::new(Int64Array::from_iter_values(
                manifests.iter().map(|m| m.version as i64),
            )),
            Arc::new(StringArray::from(alias_of)),
            text(&|m| m.task.as_str().to_string()),
            text(&|m| m.algorithm.as_str().to_string()),
            text(&|m| m.training_table.clone()),
            Arc::new(Int64Array::from_iter_values(
                manifests.iter().map(|m| m.training_table_version as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                manifests.iter().map(|m| m.rows.training as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                manifests.iter().map(|m| m.rows.holdout as i64),
            )),
            metric("roc_auc"),
            metric("accuracy"),
            metric("f1"),
            metric("rmse"),
            metric("r2"),
            text(&|m| serde_json::to_string(&m.metrics).unwrap_or_default()),
            text(&|m| m.artifact_sha256.clone()),
            Arc::new(Int64Array::from_iter(
                retrains
                    .iter()
                    .map(|r| r.map(|r| r.champion_version as i64)),
            )),
            optional_text(&|r| serde_json::to_string(&r.champion_metrics).unwrap_or_default()),
            Arc::new(StringArray::from(decisions)),
            optional_text(&|r| r.reason.clone()),
            Arc::new(StringArray::from_iter(
                retrains
                    .iter()
                    .map(|r| r.and_then(|r| r.feedback_training_table.clone())),
            )),
            Arc::new(Int64Array::from_iter(retrains.iter().map(|r| {
                r.and_then(|r| r.feedback_training_version)
                    .map(|v| v as i64)
            }))),
            Arc::new(Int64Array::from_iter(
                retrains
                    .iter()
                    .map(|r| r.map(|r| r.feedback_training_rows as i64)),
            )),
            optional_text(&|r| r.requests.join(",")),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    manifests.iter().map(|m| m.created_at.timestamp_micros()),
                )
                .with_timezone("UTC"),
            ),
            text(&|m| m.run_id.clone()),
        ];
        let batch = RecordBatch::try_new(schema, columns)?;
        let name = system_table(MODEL_VERSIONS);
        let metadata = commit_metadata(run_id, json!([]), []);
        write_batch(
            &self.lakehouse,
            &name,
            batch,
            WriteMode::Overwrite,
            metadata,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::models::explain::explain;
    use crate::ml::models::features::RawColumn;

    /// `model.json` as format 1 wrote it: smartcore's forest (elided here), a numeric
    /// feature imputed with its mean, and a hard-voting forest of two trees.
    const FORMAT_1: &str = r#"{
        "smartcore": {"trees": []},
        "preprocessing": {"encoders": [
            {"kind": "numeric", "name": "logins", "mean": 20.0, "std": 1.0, "scaled": false}
        ]},
        "compiled": {"kind": "trees", "classes": 2, "trees": [
            {"nodes": [
                {"feature": 0, "threshold": 10.5, "left": 1, "right": 2, "output": 0.0},
                {"feature": 0, "threshold": 0.0, "left": null, "right": null, "output": 1.0},
                {"feature": 0, "threshold": 0.0, "left": null, "right": null, "output": 0.0}
             ], "node_values": [0.5, 0.9, 0.2]},
            {"nodes": [
                {"feature": 0, "threshold": 25.5, "left": 1, "right": 2, "output": 0.0},
                {"feature": 0, "threshold": 0.0, "left": null, "right": null, "output": 1.0},
                {"feature": 0, "threshold": 0.0, "left": null, "right": null, "output": 0.0}
             ], "node_values": [0.5, 0.7, 0.1]}
        ]},
        "encoded_means": [20.0]
    }"#;

    #[test]
    fn artifacts_of_format_1_load_and_score_as_before() {
        let artifact: Artifact = serde_json::from_str(FORMAT_1).unwrap();
        assert_eq!(artifact.format, 1);
        let mut row = Vec::new();
        let score = |logins: Option<f64>, row: &mut Vec<f64>| {
            let column = [RawColumn::Numbers(vec![logins])];
            artifact.preprocessing.encode_row(&column, 0, row);
            artifact.compiled.score(row)
        };
        // Hard votes: both trees vote 1 below 10.5, one of two between, none above 25.5.
        assert_eq!(score(Some(5.0), &mut row).probabilities, vec![0.0, 1.0]);
        assert_eq!(score(Some(15.0), &mut row).probabilities, vec![0.5, 0.5]);
        assert_eq!(score(Some(30.0), &mut row).probabilities, vec![1.0, 0.0]);
        // A missing number is imputed with the training mean, 20: one vote of two.
        assert_eq!(score(None, &mut row).probabilities, vec![0.5, 0.5]);
        assert_eq!(row, vec![20.0]);
        // Explained in mean leaf shares, as before: (0.2 + 0.7) / 2.
        let explanation = explain(&artifact, &row, 1).unwrap();
        assert!((explanation.output() - 0.45).abs() < 1e-12);
        // Written again, it is format 1 with smartcore's model kept.
        let again: Value = serde_json::to_value(&artifact).unwrap();
        assert_eq!(again["smartcore"], serde_json::json!({"trees": []}));
        assert!(
            again["preprocessing"]["encoders"][0]
                .get("keeps_missing")
                .is_none()
        );
    }

    #[test]
    fn artifacts_of_a_newer_format_are_named_as_such() {
        let newer = FORMAT_1.replacen('{', "{\"format\": 99,", 1);
        let artifact: Artifact = serde_json::from_str(&newer).unwrap();
        let error = refuse_newer_format(artifact.format, "churn:3", "_models/churn/3/model.json")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("churn:3: the artifact _models/churn/3/model.json has format 99 but this lakescore reads formats up to 2"),
            "{error}"
        );
        assert!(refuse_newer_format(ARTIFACT_FORMAT, "churn:3", "model.json").is_ok());
    }
}
