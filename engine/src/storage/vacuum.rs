//! `lakescore vacuum`: deleting the files no table version within the retention window
//! needs, and the `_staging/` folders runs left behind.
//!
//! A table's candidates come from delta-rs' full vacuum plan: data files removed by commits
//! older than the retention window, and files no commit references (written by a run that
//! was killed before its commit) older than the window. The files are deleted without the
//! informational VACUUM commits delta-rs would add, so table versions, and with them the
//! "already built from these inputs" checks of transform and score, do not change. The
//! window protects runs in progress: their uncommitted files are younger than it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deltalake::operations::vacuum::VacuumMode;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;

use crate::error::{Error, Result};
use crate::run::{DataMoved, Report};
use crate::storage::lakehouse::{Lakehouse, TableName, TableVersion};
use crate::storage::write::{STAGING, delete_folder};

/// The shortest retention window vacuum accepts: shorter ones could delete the files of
/// a run that is still writing.
pub const MIN_RETAIN: Duration = Duration::from_secs(3600);
/// The default retention window (Delta's own default).
pub const DEFAULT_RETAIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// What to vacuum.
#[derive(Debug, Clone)]
pub struct VacuumOptions {
    /// Tables to vacuum; empty: every table.
    pub tables: Vec<TableName>,
    /// Files younger than this are kept.
    pub retain: Duration,
    /// Only list what would be deleted.
    pub dry_run: bool,
}

impl VacuumOptions {
    /// Options for the tables named `tables` (as `schema.name`; none: every table).
    pub fn for_tables(tables: &[String], retain: Duration, dry_run: bool) -> Result<Self> {
        Ok(Self {
            tables: tables
                .iter()
                .map(String::as_str)
                .map(TableName::parse)
                .collect::<Result<_>>()?,
            retain,
            dry_run,
        })
    }
}

/// What vacuum did to one table.
#[derive(Debug, Clone)]
pub struct TableVacuum {
    /// The table.
    pub table: TableName,
    /// Files deleted (or, in a dry run, that would be), relative to the table's folder.
    pub files: Vec<String>,
    /// Why the table could not be vacuumed (the others still are).
    pub error: Option<String>,
}

/// What one vacuum run did.
#[derive(Debug, Clone, Default)]
pub struct VacuumReport {
    /// Per table.
    pub tables: Vec<TableVacuum>,
    /// `_staging/` folders deleted (or that would be).
    pub staging_folders: Vec<String>,
    /// Whether nothing was deleted because this was a dry run.
    pub dry_run: bool,
}

impl VacuumReport {
    /// Files deleted over every table.
    pub fn files(&self) -> usize {
        self.tables.iter().map(|t| t.files.len()).sum()
    }

    /// The error of the first table that could not be vacuumed.
    pub fn failure(&self) -> Option<Error> {
        let broken = self.tables.iter().find(|t| t.error.is_some())?;
        Some(Error::Storage {
            uri: broken.table.to_string(),
            cause: broken.error.clone().unwrap_or_default(),
        })
    }
}

impl Report for VacuumReport {
    fn data_moved(&self) -> DataMoved {
        DataMoved::default()
    }

    fn summary(&self) -> String {
        format!(
            "{} files and {} staging folders deleted from {} tables",
            self.files(),
            self.staging_folders.len(),
            self.tables.len()
        )
    }
}

/// Each table with files to delete (or an error), then `_staging`, then the totals.
impl fmt::Display for VacuumReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for table in &self.tables {
            match (&table.error, table.files.len()) {
                (Some(error), _) => writeln!(f, "{}: not vacuumed: {error}", table.table)?,
                (None, 0) => {}
                (None, n) => {
                    writeln!(f, "{}: {verb} {n} unreferenced file(s)", table.table)?;
                    if self.dry_run {
                        for file in &table.files {
                            writeln!(f, "  {file}")?;
                        }
                    }
                }
            }
        }
        if !self.staging_folders.is_empty() {
            writeln!(
                f,
                "_staging: {verb} {} leftover folder(s): {}",
                self.staging_folders.len(),
                self.staging_folders.join(", ")
            )?;
        }
        write!(
            f,
            "{} table(s) checked, {verb} {} file(s) and {} staging folder(s)",
            self.tables.len(),
            self.files(),
            self.staging_folders.len()
        )
    }
}

/// Vacuums the lakehouse as `options` say.
pub async fn vacuum(lakehouse: &Lakehouse, options: &VacuumOptions) -> Result<VacuumReport> {
    if options.retain < MIN_RETAIN {
        return Err(Error::Usage(format!(
            "a retention window of {} is under an hour: it could delete the files of a run that is still writing. Keep at least 1h",
            humantime::format_duration(options.retain)
        )));
    }
    let tables = if options.tables.is_empty() {
        lakehouse.list_tables().await?
    } else {
        options.tables.clone()
    };
    let mut report = VacuumReport {
        dry_run: options.dry_run,
        ..VacuumReport::default()
    };
    for table in tables {
        let files = vacuum_table(lakehouse, &table, options).await;
        report.tables.push(match files {
            Ok(files) => TableVacuum {
                table,
                files,
                error: None,
            },
            Err(error @ Error::UnknownTable { .. }) if !options.tables.is_empty() => {
                return Err(error);
            }
            Err(error) => {
                tracing::warn!(table = %table, "cannot vacuum: {error}");
                TableVacuum {
                    table,
                    files: Vec::new(),
                    error: Some(error.to_string()),
                }
            }
        });
    }
    report.staging_folders = stale_staging(lakehouse, options.retain).await?;
    if !options.dry_run {
        for folder in &report.staging_folders {
            delete_folder(lakehouse, &format!("{STAGING}/{folder}")).await;
        }
    }
    Ok(report)
}

async fn vacuum_table(
    lakehouse: &Lakehouse,
    name: &TableName,
    options: &VacuumOptions,
) -> Result<Vec<String>> {
    let table = lakehouse.open_table(name, TableVersion::Latest).await?;
    let uri = table.table_url().to_string();
    let delta = Error::delta_at(&uri);
    let retain =
        chrono::Duration::from_std(options.retain).map_err(|e| Error::Usage(e.to_string()))?;
    let store = table.log_store().object_store(None);
    let (_, plan) = table
        .vacuum()
        .with_mode(VacuumMode::Full)
        .with_retention_period(retain)
        .with_enforce_retention_duration(false)
        .with_dry_run(true)
        .await
        .map_err(delta)?;
    if options.dry_run || plan.files_deleted.is_empty() {
        return Ok(plan.files_deleted);
    }
    let locations = futures::stream::iter(plan.files_deleted.clone())
        .map(|path| Ok(StorePath::from(path)))
        .boxed();
    store
        .delete_stream(locations)
        .or_else(|error| async move {
            match error {
                object_store::Error::NotFound { path, .. } => Ok(StorePath::from(path)),
                other => Err(other),
            }
        })
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| Error::Storage {
            uri: uri.clone(),
            cause: e.to_string(),
        })?;
    Ok(plan.files_deleted)
}

/// `_staging/` folders whose newest file is older than `retain`: left by runs that were
/// killed (a running one writes into its folder, so it is younger).
async fn stale_staging(lakehouse: &Lakehouse, retain: Duration) -> Result<Vec<String>> {
    let store = lakehouse.store()?;
    let prefix = StorePath::from(STAGING);
    let mut newest: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut listing = store.list(Some(&prefix));
    while let Some(object) = listing.next().await {
        let object = object.map_err(|e| Error::Storage {
            uri: format!("{}{STAGING}", lakehouse.root()),
            cause: e.to_string(),
        })?;
        let Some(folder) = object.location.parts().nth(1) else {
            continue;
        };
        let entry = newest
            .entry(folder.as_ref().to_string())
            .or_insert(object.last_modified);
        *entry = (*entry).max(object.last_modified);
    }
    let cutoff = Utc::now() - chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::MAX);
    Ok(newest
        .into_iter()
        .filter(|(_, newest)| *newest < cutoff)
        .map(|(folder, _)| folder)
        .collect())
}
