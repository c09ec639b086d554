//! The lakehouse: a root URI on local disk or an object store, where table `schema.name`
//! is the Delta table at `<root>/<schema>/<name>`.
//!
//! This module owns turning the project's `[lakehouse]` settings into a root URL and
//! storage options, naming tables, discovering every Delta table under the root (the
//! storage itself is the catalog), and opening a table at its latest, a given version or
//! as of a timestamp.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Once};

use chrono::{DateTime, Utc};
use datafusion::datasource::TableProvider;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, ObjectStore};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use url::Url;

use crate::config::{LakehouseConfig, Project};
use crate::error::{Error, Result};

/// The folder inside a table that holds its Delta log.
const DELTA_LOG: &str = "_delta_log";

/// How many storage listings discovery runs at once.
const LISTING_CONCURRENCY: usize = 16;

/// A table's name in the lakehouse: `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// The schema, the first folder under the root (e.g. `raw`).
    pub schema: String,
    /// The table, the folder under the schema (e.g. `crm_accounts`).
    pub name: String,
}

impl TableName {
    /// Parses `schema.name`. Names are folder names, so `/`, `\` and empty parts are refused.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidTableName {
            name: text.to_string(),
            reason: reason.to_string(),
        };
        let (schema, name) = text
            .split_once('.')
            .ok_or_else(|| invalid("the schema is missing"))?;
        for part in [schema, name] {
            if part.is_empty() {
                return Err(invalid("a part is empty"));
            }
            if part.contains(['/', '\\', '.']) || part.starts_with('_') {
                return Err(invalid(
                    "parts may not contain '/', '\\' or '.', nor start with '_'",
                ));
            }
        }
        Ok(Self {
            schema: schema.to_string(),
            name: name.to_string(),
        })
    }

    /// Parses `schema.name` or `schema.name@VERSION`.
    pub fn parse_at(text: &str) -> Result<(Self, Option<u64>)> {
        match text.rsplit_once('@') {
            Some((name, version)) => {
                let version = version.parse().map_err(|_| {
                    Error::Usage(format!(
                        "'{text}': the version after @ must be a number, e.g. {name}@3"
                    ))
                })?;
                Ok((Self::parse(name)?, Some(version)))
            }
            None => Ok((Self::parse(text)?, None)),
        }
    }

    /// The name quoted for SQL: `"schema"."name"`.
    pub fn quoted(&self) -> String {
        format!(
            "{}.{}",
            quote_identifier(&self.schema),
            quote_identifier(&self.name)
        )
    }
}

/// `table`'s version as a DataFusion table provider, for reading it in a plan.
pub async fn table_provider(table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    table.table_provider().await.map_err(|e| Error::Storage {
        uri: table.table_url().to_string(),
        cause: e.to_string(),
    })
}

/// A column or table name quoted for SQL, so any spelling reads as itself.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A text value as a SQL string literal, so any spelling reads as itself.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Which state of a table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableVersion {
    /// The newest committed version.
    Latest,
    /// An exact version number.
    Version(u64),
    /// The newest version committed at or before this instant.
    AsOf(DateTime<Utc>),
}

impl fmt::Display for TableVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableVersion::Latest => f.write_str("latest version"),
            TableVersion::Version(v) => write!(f, "version {v}"),
            TableVersion::AsOf(ts) => write!(f, "version as of {}", ts.to_rfc3339()),
        }
    }
}

/// The lakehouse root and how to reach it.
#[derive(Debug, Clone)]
pub struct Lakehouse {
    root: Url,
    storage_options: HashMap<String, String>,
}

impl Lakehouse {
    /// Opens the lakehouse a project declares. A local root folder is created if missing.
    pub fn for_project(project: &Project) -> Result<Self> {
        Self::new(&project.config.lakehouse, &project.dir)
    }

    /// Opens the lakehouse described by `config`; relative local roots are resolved
    /// against `base_dir`.
    pub fn new(config: &LakehouseConfig, base_dir: &Path) -> Result<Self> {
        register_object_store_schemes();
        let root = resolve_root(config.root.as_str(), base_dir)?;
        Ok(Self {
            root,
            storage_options: config.storage.to_options().into_iter().collect(),
        })
    }

    /// The root URL, always ending in `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The URL of table `name`'s folder.
    pub fn table_url(&self, name: &TableName) -> Result<Url> {
        self.root
            .join(&format!("{}/{}/", name.schema, name.name))
            .map_err(|e| Error::InvalidTableName {
                name: name.to_string(),
                reason: e.to_string(),
            })
    }

    /// Storage options for delta-rs and object_store.
    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.storage_options
    }

    fn builder(&self, url: Url) -> Result<DeltaTableBuilder> {
        let uri = url.to_string();
        DeltaTableBuilder::from_url(url)
            .map(|b| b.with_storage_options(self.storage_options.clone()))
            .map_err(|source| Error::Delta { uri, source })
    }

    /// The object store rooted at the lakehouse root.
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        let uri = self.root.to_string();
        let log_store = self
            .builder(self.root.clone())?
            .build_storage()
            .map_err(|e| storage_error(&uri, e))?;
        Ok(log_store.object_store(None))
    }

    /// The object store that reads this lakehouse's file URLs, and the URL (scheme and
    /// bucket) a query engine registers it under; None for a local folder, which
    /// DataFusion reads without one.
    pub fn bucket_store(&self) -> Result<Option<(Url, Arc<dyn ObjectStore>)>> {
        if self.root.scheme() == "file" {
            return Ok(None);
        }
        let uri = self.root.to_string();
        let mut bucket = self.root.clone();
        bucket.set_path("/");
        let log_store = self
            .builder(self.root.clone())?
            .build_storage()
            .map_err(|e| storage_error(&uri, e))?;
        Ok(Some((bucket, log_store.root_object_store(None))))
    }

    /// Opens table `name` at `version`. A missing table is [`Error::UnknownTable`] with
    /// the closest existing names; a version the history lacks is [`Error::VersionNotFound`].
    pub async fn open_table(&self, name: &TableName, version: TableVersion) -> Result<DeltaTable> {
        let url = self.table_url(name)?;
        let uri = url.to_string();
        let mut table = self
            .builder(url)?
            .build()
            .map_err(|e| storage_error(&uri, e))?;
        let loaded = match version {
            TableVersion::Latest => table.load().await,
            TableVersion::Version(v) => table.load_version(v as _).await,
            TableVersion::AsOf(ts) => table.load_with_datetime(ts).await,
        };
        match loaded {
            Ok(()) => match (version, commit_time(&table)) {
                (TableVersion::AsOf(wanted), Some(committed)) if committed > wanted => {
                    let cause =
                        format!("the table's first commit is at {}", committed.to_rfc3339());
                    Err(Error::VersionNotFound {
                        table: name.to_string(),
                        wanted: version.to_string(),
                        cause,
                    })
                }
                _ => Ok(table),
            },
            Err(DeltaTableError::NotATable(_)) => Err(self.unknown_table(name).await),
            Err(error) if !self.has_commits(name).await? => {
                drop(error);
                Err(self.unknown_table(name).await)
            }
            Err(error) if version != TableVersion::Latest => {
                self.version_not_found(name, version, error).await
            }
            Err(error) => Err(storage_error(&uri, error)),
        }
    }

    /// The newest version of table `name` ([`Error::UnknownTable`] when there is none).
    pub async fn latest_version(&self, name: &TableName) -> Result<u64> {
        let table = self.open_table(name, TableVersion::Latest).await?;
        Ok(table.version().unwrap_or_default())
    }

    /// The newest version of `name`, or None when the table does not exist.
    pub async fn latest_version_if_exists(&self, name: &TableName) -> Result<Option<u64>> {
        Ok(self
            .open_if_exists(name)
            .await?
            .map(|table| table.version().unwrap_or_default()))
    }

    /// Table `name` at its newest version, or None when it does not exist.
    pub async fn open_if_exists(&self, name: &TableName) -> Result<Option<DeltaTable>> {
        match self.open_table(name, TableVersion::Latest).await {
            Ok(table) => Ok(Some(table)),
            Err(Error::UnknownTable { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// True when the table's Delta log holds a commit or checkpoint. A log folder with
    /// nothing but a half-written first commit (a job killed while creating the table)
    /// is no table yet: the rerun creates it.
    async fn has_commits(&self, name: &TableName) -> Result<bool> {
        let log = StorePath::from_iter([name.schema.as_str(), &name.name, DELTA_LOG]);
        let store = self.store()?;
        let mut entries = store.list(Some(&log));
        while let Some(entry) = entries.next().await {
            match entry {
                Ok(meta) if meta.location.filename().is_some_and(is_log_entry) => {
                    return Ok(true);
                }
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(error) => return Err(storage_error(&self.root, error)),
            }
        }
        Ok(false)
    }

    async fn version_not_found(
        &self,
        name: &TableName,
        version: TableVersion,
        error: DeltaTableError,
    ) -> Result<DeltaTable> {
        let latest = Box::pin(self.open_table(name, TableVersion::Latest)).await?;
        let newest = latest.version().unwrap_or_default();
        Err(Error::VersionNotFound {
            table: name.to_string(),
            wanted: version.to_string(),
            cause: format!("versions 0 to {newest} exist ({error})"),
        })
    }

    /// The error for a table that does not exist, with similar names as suggestions.
    pub async fn unknown_table(&self, name: &impl fmt::Display) -> Error {
        let wanted = name.to_string();
        let suggestions = match self.list_tables().await {
            Ok(tables) => closest_names(&wanted, tables.iter().map(ToString::to_string)),
            Err(_) => Vec::new(),
        };
        Error::UnknownTable {
            name: wanted,
            suggestions,
        }
    }

    /// Every Delta table under the root, sorted by name. Folders without a commit in a
    /// `_delta_log` (and anything starting with `_` or `.`) are not tables and are skipped.
    pub async fn list_tables(&self) -> Result<Vec<TableName>> {
        let store = self.store()?;
        let schemas = list_folders(store.as_ref(), None, &self.root).await?;
        let mut candidates = Vec::new();
        for schema in schemas {
            let prefix = StorePath::from(schema.as_str());
            for name in list_folders(store.as_ref(), Some(&prefix), &self.root).await? {
                candidates.push(TableName {
                    schema: schema.clone(),
                    name,
                });
            }
        }
        let mut tables: Vec<TableName> = futures::stream::iter(candidates)
            .map(|table| async move {
                let exists = self.has_commits(&table).await?;
                Ok::<_, Error>(exists.then_some(table))
            })
            .buffer_unordered(LISTING_CONCURRENCY)
            .try_filter_map(|t| async move { Ok(t) })
            .try_collect()
            .await?;
        tables.sort();
        Ok(tables)
    }

    /// The schemas (first-level folders) under the root.
    pub async fn list_schemas(&self) -> Result<Vec<String>> {
        let store = self.store()?;
        list_folders(store.as_ref(), None, &self.root).await
    }
}

/// When `table`'s loaded version was committed.
pub fn commit_time(table: &DeltaTable) -> Option<DateTime<Utc>> {
    let snapshot = table.snapshot().ok()?;
    snapshot
        .version_timestamp(snapshot.version())
        .and_then(DateTime::from_timestamp_millis)
}

/// True for a file name of a Delta log that makes a version readable: a commit
/// (`00000000000000000012.json`), a checkpoint (`….checkpoint.parquet`, multi-part or
/// v2) or `_last_checkpoint`. Staging and temporary files are not.
fn is_log_entry(file_name: &str) -> bool {
    if file_name == "_last_checkpoint" {
        return true;
    }
    let (Some(version), Some(rest)) = (file_name.get(..20), file_name.get(20..)) else {
        return false;
    };
    version.bytes().all(|b| b.is_ascii_digit())
        && (rest == ".json" || (rest.starts_with(".checkpoint") && rest.ends_with(".parquet")))
}

/// The names of the folders directly under `prefix`, skipping hidden and `_` folders.
async fn list_folders(
    store: &dyn ObjectStore,
    prefix: Option<&StorePath>,
    root: &Url,
) -> Result<Vec<String>> {
    let listing = match store.list_with_delimiter(prefix).await {
        Ok(listing) => listing,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(error) => return Err(storage_error(root, error)),
    };
    let mut names: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .filter(|n| !n.starts_with(['_', '.']))
        .collect();
    names.sort();
    Ok(names)
}

/// Existing names close to `wanted`: similar table names, preferring the same schema.
pub fn closest_names(wanted: &str, existing: impl Iterator<Item = String>) -> Vec<String> {
    let (wanted_schema, wanted_table) = wanted.rsplit_once('.').unwrap_or(("", wanted));
    let mut scored: Vec<(f64, String)> = existing
        .filter_map(|candidate| {
            let (schema, table) = candidate.rsplit_once('.').unwrap_or(("", &candidate));
            let other_schema_penalty = if schema == wanted_schema { 0.0 } else { 0.05 };
            let score = strsim::jaro_winkler(wanted_table, table) - other_schema_penalty;
            (score >= 0.85).then_some((score, candidate))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.into_iter().take(3).map(|(_, name)| name).collect()
}

fn storage_error(uri: &impl fmt::Display, error: impl fmt::Display) -> Error {
    Error::Storage {
        uri: uri.to_string(),
        cause: error.to_string(),
    }
}

/// Resolves the configured root to a URL ending in `/`; local folders are created.
fn resolve_root(root: &str, base_dir: &Path) -> Result<Url> {
    if root.contains("://") {
        let mut url = Url::parse(root).map_err(|e| Error::Config {
            path: base_dir.join(crate::config::PROJECT_FILE),
            message: format!("[lakehouse] root = \"{root}\" is not a valid URI: {e}"),
        })?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        return Ok(url);
    }
    let path = base_dir.join(root);
    std::fs::create_dir_all(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let path = path.canonicalize().map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    Url::from_directory_path(&path).map_err(|()| Error::Config {
        path: base_dir.join(crate::config::PROJECT_FILE),
        message: format!(
            "[lakehouse] root {} is not an absolute path",
            path.display()
        ),
    })
}

/// Makes `s3://`, `gs://` and `az://` (and their aliases) known to delta-rs.
fn register_object_store_schemes() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        deltalake::aws::register_handlers(None);
        deltalake::gcp::register_handlers(None);
        deltalake::azure::register_handlers(None);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_parse_and_refuse_paths() {
        let name = TableName::parse("raw.crm_accounts").unwrap();
        assert_eq!(name.schema, "raw");
        assert_eq!(name.name, "crm_accounts");
        assert_eq!(name.to_string(), "raw.crm_accounts");
        for bad in ["accounts", "raw.", ".x", "raw.a/b", "raw.a.b", "_models.x"] {
            let error = TableName::parse(bad).unwrap_err();
            assert!(
                error.to_string().contains("tables are named schema.name"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn closest_names_prefers_similar_tables() {
        let existing = ["raw.crm_accounts", "raw.erp_invoices", "curated.customers"];
        let found = closest_names("raw.crm_acounts", existing.iter().map(|s| s.to_string()));
        assert_eq!(found, vec!["raw.crm_accounts".to_string()]);
        let other_schema = closest_names(
            "curated.erp_invoices",
            existing.iter().map(|s| s.to_string()),
        );
        assert_eq!(other_schema[0], "raw.erp_invoices");
        assert!(closest_names("zzz.qqq", existing.iter().map(|s| s.to_string())).is_empty());
    }

    #[test]
    fn only_commits_and_checkpoints_make_a_version_readable() {
        for entry in [
            "00000000000000000000.json",
            "00000000000000000010.checkpoint.parquet",
            "00000000000000000010.checkpoint.0000000001.0000000002.parquet",
            "_last_checkpoint",
        ] {
            assert!(is_log_entry(entry), "{entry}");
        }
        for staged in [
            "_commit_5f0c.json.tmp",
            "00000000000000000000.json#1",
            ".00000000000000000000.json.crc",
            "0000000000000000000.json",
            "00000000000000000é00.json",
        ] {
            assert!(!is_log_entry(staged), "{staged}");
        }
    }

    #[tokio::test]
    async fn a_table_killed_before_its_first_commit_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let lakehouse = Lakehouse::new(&LakehouseConfig::default(), dir.path()).unwrap();
        let log = dir
            .path()
            .join("lakehouse/quarantine/raw_customers/_delta_log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(log.join("00000000000000000000.json#1"), "{\"proto").unwrap();
        let name = TableName::parse("quarantine.raw_customers").unwrap();

        assert!(lakehouse.list_tables().await.unwrap().is_empty());
        assert!(lakehouse.open_if_exists(&name).await.unwrap().is_none());
        let error = lakehouse.latest_version(&name).await.unwrap_err();
        assert!(error.to_string().contains("lakescore tables"), "{error}");
    }

    #[test]
    fn object_store_roots_get_a_trailing_slash() {
        let url = resolve_root("s3://bucket/lake", Path::new("/tmp")).unwrap();
        assert_eq!(url.as_str(), "s3://bucket/lake/");
        let bad = resolve_root("s3://bu cket/x", Path::new("/tmp"));
        assert!(bad.is_err());
    }
}
