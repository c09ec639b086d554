//! SQL model files: `models/<name>.sql`, one `SELECT` whose result becomes one table.
//!
//! A leading block comment holds the model's settings as TOML:
//!
//! ```sql
//! /*
//! table = "curated.customers"      # default: curated.<file stem>
//! materialized = "merge"           # overwrite (default) | append | merge | view
//! key = ["customer_id"]            # merge only
//! description = "One row per customer"
//! [columns]
//! customer_id = "Canonical customer id"
//! [[tests]]
//! unique = ["customer_id"]
//! */
//! SELECT ...
//! ```
//!
//! This module reads the files, their settings and their SHA-256; [`crate::data_test`]
//! owns the `tests` entries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lakescore_engine::TableName;
use lakescore_engine::config::Project;
use lakescore_engine::storage::hashing::sha256_hex;
use serde::Deserialize;

use crate::data_test::{DataTest, TestSpec};
use crate::error::{Error, Result};

/// How a model's result is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Materialization {
    /// Replace the table's rows with the result on every run.
    #[default]
    Overwrite,
    /// Add the result's rows to the table.
    Append,
    /// Upsert the result into the table on the `key` columns.
    Merge,
    /// Save the query as a view, planned whenever it is read.
    View,
}

impl Materialization {
    /// The setting's spelling in a model file.
    pub fn as_str(self) -> &'static str {
        match self {
            Materialization::Overwrite => "overwrite",
            Materialization::Append => "append",
            Materialization::Merge => "merge",
            Materialization::View => "view",
        }
    }
}

/// The settings in a model file's leading comment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// The table the model builds, `schema.name`.
    pub table: Option<String>,
    /// How the result is stored.
    #[serde(default)]
    pub materialized: Materialization,
    /// Key columns of a merge model.
    #[serde(default)]
    pub key: Vec<String>,
    /// What the table holds.
    pub description: Option<String>,
    /// Descriptions of the table's columns.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Data tests the result must pass.
    #[serde(default)]
    pub tests: Vec<TestSpec>,
}

/// One model file, read and checked.
#[derive(Debug, Clone)]
pub struct Model {
    /// The model's name: the file stem.
    pub name: String,
    /// The file, as found under the project.
    pub file: PathBuf,
    /// The file's path relative to the project folder, for reports and lineage.
    pub display_path: String,
    /// The file's text: the config comment and the query.
    pub sql: String,
    /// SHA-256 of the file's text, hex.
    pub sha256: String,
    /// The table the model builds.
    pub table: TableName,
    /// The settings.
    pub config: ModelSettings,
    /// The data tests, checked.
    pub tests: Vec<DataTest>,
}

impl Model {
    /// Reads and checks the model file `file`; `default_schema` is where its table goes
    /// when the config names none.
    pub fn load(file: &Path, project_dir: &Path, default_schema: &str) -> Result<Self> {
        let sql = std::fs::read_to_string(file).map_err(|source| Error::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let display_path = file
            .strip_prefix(project_dir)
            .unwrap_or(file)
            .display()
            .to_string();
        Self::from_text(file, display_path, sql, default_schema)
    }

    /// Checks a model given as text; `file` names it in errors.
    pub fn from_text(
        file: &Path,
        display_path: String,
        sql: String,
        default_schema: &str,
    ) -> Result<Self> {
        let bad = |message: String| Error::ModelFile {
            file: PathBuf::from(&display_path),
            message,
        };
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .ok_or_else(|| bad(String::from("a model file needs a name")))?;
        let config = parse_config(&sql).map_err(bad)?;
        let table_text = config
            .table
            .clone()
            .unwrap_or_else(|| format!("{default_schema}.{name}"));
        let table = TableName::parse(&table_text).map_err(|e| bad(e.to_string()))?;
        match config.materialized {
            Materialization::Merge if config.key.is_empty() => {
                return Err(bad(String::from(
                    "materialized = \"merge\" needs key = [\"column\", ...]",
                )));
            }
            Materialization::Merge => {}
            _ if !config.key.is_empty() => {
                return Err(bad(String::from(
                    "key is only used with materialized = \"merge\"",
                )));
            }
            _ => {}
        }
        let tests = config
            .tests
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                spec.check()
                    .map_err(|m| bad(format!("tests[{index}]: {m}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let sha256 = sha256_hex(sql.as_bytes());
        Ok(Self {
            name,
            file: file.to_path_buf(),
            display_path,
            sql,
            sha256,
            table,
            config,
            tests,
        })
    }
}

/// Every `.sql` file under the project's models folder (subfolders included), sorted by
/// path. Two files with one name, or two models building one table, are an error.
pub fn load_models(project: &Project) -> Result<Vec<Model>> {
    let dir = project.models_dir();
    let mut files = Vec::new();
    collect_sql_files(&dir, &mut files)?;
    files.sort();
    let schema = &project.config.transform.schema;
    let models = files
        .iter()
        .map(|file| Model::load(file, &project.dir, schema))
        .collect::<Result<Vec<_>>>()?;
    for (index, model) in models.iter().enumerate() {
        for earlier in &models[..index] {
            let clash = if earlier.name == model.name {
                Some(format!(
                    "the model name '{}' is also used by {}",
                    model.name, earlier.display_path
                ))
            } else if earlier.table == model.table {
                Some(format!(
                    "{} is also built by {}",
                    model.table, earlier.display_path
                ))
            } else {
                None
            };
            if let Some(message) = clash {
                return Err(Error::ModelFile {
                    file: PathBuf::from(&model.display_path),
                    message,
                });
            }
        }
    }
    Ok(models)
}

fn collect_sql_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries {
        let path = entry
            .map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        if path.is_dir() {
            collect_sql_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "sql") {
            files.push(path);
        }
    }
    Ok(())
}

/// The settings in the file's leading `/* ... */` comment (none: the defaults). TOML
/// errors name the line in the model file.
fn parse_config(sql: &str) -> std::result::Result<ModelSettings, String> {
    let leading = sql.len() - sql.trim_start().len();
    let Some(body) = sql[leading..].strip_prefix("/*") else {
        return Ok(ModelSettings::default());
    };
    let Some(end) = body.find("*/") else {
        return Err(String::from(
            "the config comment that starts the file is never closed with */",
        ));
    };
    // Keep the lines before the comment so TOML's line numbers are the file's.
    let padding = "\n".repeat(sql[..leading].matches('\n').count());
    let text = format!("{padding}  {}", &body[..end]);
    toml::from_str(&text).map_err(|error| {
        let message = error.message();
        match error.span() {
            Some(span) => {
                let line = text[..span.start].matches('\n').count() + 1;
                format!("config comment, line {line}: {message}")
            }
            None => format!("config comment: {message}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(sql: &str) -> Result<Model> {
        Model::from_text(
            Path::new("models/customers.sql"),
            String::from("models/customers.sql"),
            sql.to_string(),
            "curated",
        )
    }

    #[test]
    fn defaults_without_a_config_comment() -> Result<()> {
        let model = model("SELECT 1 AS x")?;
        assert_eq!(model.table.to_string(), "curated.customers");
        assert_eq!(model.config.materialized, Materialization::Overwrite);
        assert!(model.tests.is_empty());
        assert_eq!(model.sha256.len(), 64);
        Ok(())
    }

    #[test]
    fn reads_the_config_comment() -> Result<()> {
        let model = model(
            "/*\ntable = \"curated.accounts\"\nmaterialized = \"merge\"\nkey = [\"id\"]\n[columns]\nid = \"the id\"\n[[tests]]\nunique = \"id\"\n*/\nSELECT 1 AS id",
        )?;
        assert_eq!(model.table.to_string(), "curated.accounts");
        assert_eq!(model.config.key, vec!["id"]);
        assert_eq!(model.config.columns["id"], "the id");
        assert_eq!(model.tests.len(), 1);
        Ok(())
    }

    #[test]
    fn config_errors_name_the_file_line() {
        let error = model("\n/*\ntable = \"curated.x\"\nmaterialised = \"view\"\n*/\nSELECT 1")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "models/customers.sql: config comment, line 4: unknown field `materialised`"
            ),
            "{error}"
        );
        let error = model("/* materialized = \"merge\" */ SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("needs key = [\"column\", ...]"), "{error}");
        let error = model("/* table = \"x\" */ SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid table name 'x'"), "{error}");
    }
}
