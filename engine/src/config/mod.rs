//! The project file, `lakescore.toml`: finding it, reading it, and writing a fresh one.
//!
//! The file is read with serde and `deny_unknown_fields`, so a misspelt key or a value of
//! the wrong type is an error naming the key and the line. String values may reference
//! environment variables as `${NAME}`, which keeps secrets out of the file; a reference to an
//! unset variable is an error naming the variable and the line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

mod drift;
mod engine;
mod feedback;
mod http;
mod job;
mod model;
mod serve;
mod source;

pub use drift::{DriftConfig, ThresholdOverrides, Thresholds};
pub use engine::{DEFAULT_SCHEDULER_PORT, EngineConfig, EngineMode, SchedulerAddress};
pub use feedback::{CorrectionPolicy, FeedbackConfig, Floor, MonitoringConfig, RetrainConfig};
pub use job::{
    AlertConfig, FreshnessConfig, FreshnessRule, JobConfig, Schedule, SchedulerConfig, StepAction,
    StepConfig, TimeZoneName,
};

pub use http::{HttpConfig, ServeToken};
pub use model::{Algorithm, FeatureKind, ModelConfig, OnlineConfig, Task};
pub use serve::{ServeConfig, ServeRole, ServeUser};
pub use source::{
    BadRowLimit, ColumnSpec, ColumnType, DialectSettings, LandingMode, SourceConfig, SourceFormat,
};

/// The project file's name.
pub const PROJECT_FILE: &str = "lakescore.toml";

/// A project: the parsed project file and the folder it lives in.
#[derive(Debug, Clone)]
pub struct Project {
    /// The folder holding `lakescore.toml`; relative paths in the file are relative to it.
    pub dir: PathBuf,
    /// The project file itself.
    pub file: PathBuf,
    /// The parsed contents.
    pub config: ProjectConfig,
}

/// The contents of `lakescore.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// `[project]`: what this project is called.
    pub project: ProjectSection,
    /// `[lakehouse]`: where the tables live.
    #[serde(default)]
    pub lakehouse: LakehouseConfig,
    /// `[[source]]`: extracts to land.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// `[ingest]`: how landing uses memory and files.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// `[functions]`: settings of lakescore's SQL functions.
    #[serde(default)]
    pub functions: FunctionsConfig,
    /// `[transform]`: where the SQL models live.
    #[serde(default)]
    pub transform: TransformConfig,
    /// `[[model]]`: machine-learning models.
    #[serde(default, rename = "model")]
    pub models: Vec<ModelConfig>,
    /// `[[job]]`: pipelines of steps, run on demand or on a schedule.
    #[serde(default, rename = "job")]
    pub jobs: Vec<JobConfig>,
    /// `[scheduler]`: how schedulers share the jobs.
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    /// `[freshness]`: how old tables may get.
    #[serde(default)]
    pub freshness: FreshnessConfig,
    /// `[[alert]]`: where failures, stale tables and drift are reported.
    #[serde(default, rename = "alert")]
    pub alerts: Vec<AlertConfig>,
    /// `[serve]`: the PostgreSQL-wire server's address, users, roles and TLS.
    #[serde(default)]
    pub serve: ServeConfig,
    /// `[engine]`: where transforms and scoring run (this process or a Ballista cluster).
    #[serde(default)]
    pub engine: EngineConfig,
}

/// The `[functions]` section: settings the SQL functions read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionsConfig {
    /// How many features `predict` lists in `top_features`.
    #[serde(default = "default_top_features")]
    pub top_features: usize,
    /// Salt for `hash_pii`, usually `"${LAKESCORE_PII_SALT}"`; without it `hash_pii` reads
    /// the `LAKESCORE_PII_SALT` environment variable. Unlike other settings, `${NAME}` is
    /// expanded only when `hash_pii` runs, so commands that never hash need no secret.
    pub pii_salt: Option<String>,
    /// `[functions.exchange_rates]`: the rates `to_currency` converts with.
    #[serde(default)]
    pub exchange_rates: ExchangeRatesConfig,
}

impl Default for FunctionsConfig {
    fn default() -> Self {
        Self {
            top_features: default_top_features(),
            pii_salt: None,
            exchange_rates: ExchangeRatesConfig::default(),
        }
    }
}

fn default_top_features() -> usize {
    3
}

/// The `[functions.exchange_rates]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRatesConfig {
    /// The currency every rate is relative to, e.g. `"EUR"`.
    pub base: Option<String>,
    /// Units of each currency that one unit of `base` buys, e.g. `{ USD = 1.08 }`.
    #[serde(default)]
    pub rates: BTreeMap<String, f64>,
}

/// The `[transform]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// The folder of SQL model files, relative to the project file.
    #[serde(default = "default_models_dir")]
    pub models: PathBuf,
    /// The schema a model's table goes to when its config names none.
    #[serde(default = "default_model_schema")]
    pub schema: String,
}

impl Default for TransformConfig {
    fn default() -> Self {
        Self {
            models: default_models_dir(),
            schema: default_model_schema(),
        }
    }
}

fn default_models_dir() -> PathBuf {
    PathBuf::from("models")
}

fn default_model_schema() -> String {
    String::from("curated")
}

/// The `[ingest]` section: the knobs that bound landing's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Most bytes a Parquet row group may buffer before it is written out, in MiB; the
    /// Delta writer holds one row group per open file, so this bounds ingest memory.
    pub row_group_mb: usize,
    /// Size at which a data file is closed and a new one started, in MiB.
    pub target_file_mb: u64,
    /// Memory a merge may hold before DataFusion spills to disk, in MiB.
    pub merge_memory_mb: usize,
    /// Largest field of a CSV record; a record with a longer one is quarantined.
    #[serde(deserialize_with = "serve::bytes_text")]
    pub max_field_bytes: u64,
    /// Largest CSV record or JSON line; a longer one is quarantined with the line it
    /// started on, and never held in memory beyond this size.
    #[serde(deserialize_with = "serve::bytes_text")]
    pub max_record_bytes: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            row_group_mb: 32,
            target_file_mb: 128,
            merge_memory_mb: 512,
            max_field_bytes: 1 << 20,
            max_record_bytes: 4 << 20,
        }
    }
}

/// The `[project]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSection {
    /// The project's name, shown in commit metadata and reports.
    pub name: EnvString,
}

/// The `[lakehouse]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakehouseConfig {
    /// The lakehouse root: a local folder (relative to the project folder) or an object
    /// store URI such as `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`.
    #[serde(default = "default_root")]
    pub root: EnvString,
    /// `[lakehouse.storage]`: how to reach an object store.
    #[serde(default)]
    pub storage: StorageConfig,
}

impl Default for LakehouseConfig {
    fn default() -> Self {
        Self {
            root: default_root(),
            storage: StorageConfig::default(),
        }
    }
}

fn default_root() -> EnvString {
    EnvString(String::from("./lakehouse"))
}

/// The `[lakehouse.storage]` section: object store settings.
///
/// The named keys are the common S3 settings; `options` passes any other object store key
/// through unchanged (for example `google_service_account` or `azure_storage_account_name`).
/// Credentials not given here come from the usual environment variables (`AWS_*`,
/// `GOOGLE_*`, `AZURE_*`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<EnvString>,
    /// Region of the bucket.
    pub region: Option<EnvString>,
    /// Allow plain-HTTP endpoints (local S3-compatible servers).
    pub allow_http: Option<bool>,
    /// Access key id.
    pub access_key_id: Option<EnvString>,
    /// Secret access key.
    pub secret_access_key: Option<EnvString>,
    /// Session token for temporary credentials.
    pub session_token: Option<EnvString>,
    /// Any other object store option, passed through as given.
    #[serde(default)]
    pub options: BTreeMap<String, EnvString>,
}

impl StorageConfig {
    /// The settings as object store option keys, ready for delta-rs and object_store.
    pub fn to_options(&self) -> BTreeMap<String, String> {
        let named = [
            ("aws_endpoint", &self.endpoint),
            ("aws_region", &self.region),
            ("aws_access_key_id", &self.access_key_id),
            ("aws_secret_access_key", &self.secret_access_key),
            ("aws_session_token", &self.session_token),
        ];
        let mut options: BTreeMap<String, String> = named
            .into_iter()
            .filter_map(|(key, value)| value.as_ref().map(|v| (key.to_string(), v.0.clone())))
            .collect();
        if let Some(allow_http) = self.allow_http {
            options.insert("allow_http".into(), allow_http.to_string());
        }
        for (key, value) in &self.options {
            options.insert(key.clone(), value.0.clone());
        }
        options
    }
}

/// A string from the project file with `${NAME}` environment references expanded.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvString(pub String);

impl fmt::Display for EnvString {
    /// The expanded value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl EnvString {
    /// The expanded value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Values may be secrets, so debug output never shows them.
impl fmt::Debug for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvString(..)")
    }
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        expand_env(&raw, |name| std::env::var(name).ok())
            .map(EnvString)
            .map_err(serde::de::Error::custom)
    }
}

/// Expands every `${NAME}` in `raw` with `lookup`; `$$` stands for a literal `$`.
/// Replaces each `${NAME}` in `raw` with the environment variable's value; an unset
/// variable is an error naming it.
pub fn expand_env_vars(raw: &str) -> Result<String, String> {
    expand_env(raw, |name| std::env::var(name).ok())
}

fn expand_env(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = body
                .find('}')
                .ok_or_else(|| format!("unclosed '${{' in \"{raw}\": write ${{NAME}}"))?;
            let name = &body[..close];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "'${{{name}}}' is not a valid environment variable reference"
                ));
            }
            let value = lookup(name).ok_or_else(|| {
                format!("environment variable {name} is not set (referenced as ${{{name}}})")
            })?;
            out.push_str(&value);
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

impl Project {
    /// Finds the project: `explicit` (a project file or its folder) when given, otherwise
    /// the nearest `lakescore.toml` in `start` or a folder above it.
    pub fn discover(explicit: Option<&Path>, start: &Path) -> Result<Self> {
        let file = match explicit {
            Some(path) if path.is_dir() => path.join(PROJECT_FILE),
            Some(path) => path.to_path_buf(),
            None => start
                .ancestors()
                .map(|dir| dir.join(PROJECT_FILE))
                .find(|candidate| candidate.is_file())
                .ok_or_else(|| Error::ProjectNotFound {
                    searched: start.to_path_buf(),
                })?,
        };
        Self::load(&file)
    }

    /// Reads and validates the project file at `file`.
    pub fn load(file: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let config = ProjectConfig::parse(&text).map_err(|message| Error::Config {
            path: file.to_path_buf(),
            message,
        })?;
        let file = std::path::absolute(file).map_err(|source| Error::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self { dir, file, config })
    }

    /// Creates a new project in `dir`: a commented `lakescore.toml` and an empty `models/`
    /// folder. Never overwrites an existing project file.
    pub fn init(dir: &Path) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let file = dir.join(PROJECT_FILE);
        if file.exists() {
            return Err(Error::ProjectExists(file));
        }
        let name = std::path::absolute(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| String::from("lakescore"));
        std::fs::write(&file, project_template(&name)).map_err(io(&file))?;
        let models = dir.join(default_models_dir());
        std::fs::create_dir_all(&models).map_err(io(&models))?;
        Self::load(&file)
    }

    /// The folder holding the project's SQL models.
    pub fn models_dir(&self) -> PathBuf {
        self.dir.join(&self.config.transform.models)
    }
}

impl ProjectConfig {
    /// Parses project file text; the error names the line, the column and the key.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let config: Self =
            toml::from_str(text).map_err(|error| error.to_string().trim_end().to_string())?;
        config.check_sources()?;
        config.check_models()?;
        job::check_jobs(&config.jobs, &config.alerts, &config.freshness)?;
        config.serve.check()?;
        config.engine.check()?;
        Ok(config)
    }

    /// Model names are unique and each model's settings fit together.
    fn check_models(&self) -> std::result::Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for model in &self.models {
            if !seen.insert(model.name.as_str()) {
                return Err(format!("[[model]] name '{}' is used twice", model.name));
            }
            model.check()?;
        }
        Ok(())
    }

    /// Source names are unique, merge sources name their key, and key columns are declared
    /// when a schema is.
    fn check_sources(&self) -> std::result::Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for source in &self.sources {
            if !seen.insert(source.name.as_str()) {
                return Err(format!("[[source]] name '{}' is used twice", source.name));
            }
            let problem = match source.mode {
                LandingMode::Merge if source.key.is_empty() => Some(String::from(
                    "mode = \"merge\" needs key = [\"column\", ...]",
                )),
                LandingMode::Append | LandingMode::Overwrite if !source.key.is_empty() => {
                    Some(String::from("key is only used with mode = \"merge\""))
                }
                _ => source
                    .key
                    .iter()
                    .find(|k| !source.schema.is_empty() && !source.schema.contains_key(*k))
                    .map(|k| format!("key column '{k}' is not in [source.schema]")),
            };
            if let Some(problem) = problem {
                return Err(format!("[[source]] '{}': {problem}", source.name));
            }
        }
        Ok(())
    }
}

/// The commented project file that `lakescore init` writes.
fn project_template(name: &str) -> String {
    let name = name.replace(['"', '\\'], "_");
    format!(
        r#"# lakescore project file. Every command looks for it in the current folder or above.
# String values may use ${{ENV_VAR}} so secrets stay out of this file.

[project]
name = "{name}"

[lakehouse]
# Where tables live: a local folder (relative to this file) or an object store URI,
# e.g. "s3://my-bucket/lakehouse", "gs://my-bucket/lakehouse", "az://container/lakehouse".
# Table schema.name is the Delta table at <root>/<schema>/<name>.
root = "./lakehouse"

# Object store settings. Credentials not given here are read from the usual environment
# variables (AWS_*, GOOGLE_*, AZURE_*).
# [lakehouse.storage]
# endpoint = "http://127.0.0.1:9000"       # S3-compatible server
# region = "us-east-1"
# allow_http = true                        # only for local, plain-HTTP servers
# access_key_id = "${{AWS_ACCESS_KEY_ID}}"
# secret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"
# [lakehouse.storage.options]              # any other object store option
# google_service_account = "/path/to/key.json"

# SQL models: one SELECT per .sql file in this folder, each becoming a table.
# [transform]
# models = "models"
# schema = "curated"                         # where a model's table goes by default

# Settings of the SQL functions.
# [functions]
# pii_salt = "${{LAKESCORE_PII_SALT}}"         # salt of hash_pii(text)
# [functions.exchange_rates]                 # rates of to_currency(amount, from, to)
# base = "EUR"
# rates = {{ USD = 1.08, GBP = 0.86 }}

# Where transforms and scoring run: this process, or a Ballista cluster started with
# `lakescore ballista scheduler` and `lakescore ballista executor` (--engine overrides).
# [engine]
# mode = "ballista"                          # default "local"
# scheduler = "df://scheduler.internal:50050" # or "standalone": an in-process cluster
# partitions = 32                            # tasks per table scan; default: this machine's cores

# Machine-learning models: `lakescore train NAME`, then predict('NAME', ...) in SQL or
# `lakescore score NAME --input TABLE`.
# [[model]]
# name = "churn_risk"
# task = "classification"                 # or "regression"
# algorithm = "logistic_regression"       # linear_regression, ridge_regression, decision_tree,
#                                         # random_forest, gradient_boosting
# training_table = "curated.customer_training"
# label = "churned"
# key = ["customer_id"]
# [model.features]
# annual_revenue = "numeric"
# industry = "categorical"
# is_active = "boolean"
# [model.drift]                           # `lakescore drift NAME --table T` (defaults shown)
# psi = 0.2
# js = 0.1
# drift_share = 0.5                       # share of drifted features that requests retraining
# [model.feedback]                        # `lakescore feedback NAME`: corrections → training.NAME_feedback
# table = "feedback.churn_risk"           # default feedback.NAME
# policy = "latest"                       # or "first", "majority": which correction of a prediction wins
# [model.retrain]                         # `lakescore retrain NAME`: challenger vs champion
# metric = "roc_auc"                      # default roc_auc (classification), rmse (regression)
# min_improvement = 0.005                 # how much better the challenger must be to be promoted
# feedback_weight = 1.0                   # how many times each feedback row counts in training
# [model.monitoring]                      # realized metrics in monitoring.model_performance
# window = "1d"
# min_auc = 0.75                          # below it, a retrain is requested

# The PostgreSQL-wire server: `lakescore serve`, then psql or a BI tool.
# [serve]
# listen = "127.0.0.1:5432"
# [[serve.role]]
# name = "analyst"
# select = ["curated", "scored", "monitoring"]   # schemas, tables or patterns
# [[serve.user]]
# name = "analyst"
# password = "${{ANALYST_PASSWORD}}"              # or password_hash from `lakescore serve --hash-password`
# role = "analyst"

# Jobs: `lakescore run NAME` runs one now; `lakescore scheduler` runs them on schedule.
# [[job]]
# name = "nightly"
# schedule = "0 3 * * *"                  # cron: minute hour day-of-month month day-of-week
# timezone = "Europe/Berlin"
# retries = 2
# retry_delay = "30s"                     # doubled for each further retry
# step_timeout = "30m"
# on_failure = ["ops"]
# steps = [
#   {{ ingest = true }},
#   {{ transform = true }},
#   {{ score = "churn_risk", input = "curated.customers" }},
#   {{ drift = "churn_risk", table = "curated.customers" }},
#   {{ feedback = "churn_risk" }},
#   {{ retrain = "churn_risk" }},        # only when a retrain request is pending
#   {{ check = true }},
# ]

# How fresh tables must be (`lakescore check` and the `check` step).
# [freshness.tables]
# "raw.*" = {{ max_age = "26h" }}
# "scored.churn_risk" = {{ max_input_lag = "1h" }}

# Webhooks told about failed runs and stale tables (Slack-compatible JSON).
# [[alert]]
# name = "ops"
# webhook = "${{SLACK_WEBHOOK_URL}}"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| String::from("s3cr3t"))
    }

    #[test]
    fn env_references_expand() {
        assert_eq!(expand_env("a-${TOKEN}-b", lookup).unwrap(), "a-s3cr3t-b");
        assert_eq!(
            expand_env("cost $$5 and $x", lookup).unwrap(),
            "cost $5 and $x"
        );
    }

    #[test]
    fn unset_env_reference_names_the_variable() {
        let error = expand_env("${MISSING_VAR}", lookup).unwrap_err();
        assert_eq!(
            error,
            "environment variable MISSING_VAR is not set (referenced as ${MISSING_VAR})"
        );
        assert!(
            expand_env("${oops", lookup)
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            expand_env("${a-b}", lookup)
                .unwrap_err()
                .contains("not a valid")
        );
    }

    #[test]
    fn misspelt_key_names_key_and_line() {
        let text = "[project]\nname = \"p\"\n\n[lakehouse]\nrooot = \"./lh\"\n";
        let error = ProjectConfig::parse(text).unwrap_err();
        assert!(error.contains("line 5"), "{error}");
        assert!(error.contains("unknown field `rooot`"), "{error}");
        assert!(error.contains("expected `root` or `storage`"), "{error}");
    }

    #[test]
    fn wrong_type_names_line() {
        let text = "[project]\nname = \"p\"\n[lakehouse.storage]\nallow_http = \"yes\"\n";
        let error = ProjectConfig::parse(text).unwrap_err();
        assert!(error.contains("line 4"), "{error}");
        assert!(error.contains("expected a boolean"), "{error}");
    }

    #[test]
    fn unset_variable_in_file_names_line() {
        let text = "[project]\nname = \"p\"\n[lakehouse]\nroot = \"s3://${LAKESCORE_TEST_UNSET_BUCKET}/x\"\n";
        let error = ProjectConfig::parse(text).unwrap_err();
        assert!(error.contains("line 4"), "{error}");
        assert!(
            error.contains("environment variable LAKESCORE_TEST_UNSET_BUCKET is not set"),
            "{error}"
        );
    }

    #[test]
    fn storage_options_map_to_object_store_keys() {
        let text = r#"
[project]
name = "p"
[lakehouse]
root = "s3://bucket/lh"
[lakehouse.storage]
endpoint = "http://127.0.0.1:9000"
region = "eu-west-1"
allow_http = true
[lakehouse.storage.options]
aws_virtual_hosted_style_request = "false"
"#;
        let config = ProjectConfig::parse(text).unwrap();
        let options = config.lakehouse.storage.to_options();
        assert_eq!(options["aws_endpoint"], "http://127.0.0.1:9000");
        assert_eq!(options["aws_region"], "eu-west-1");
        assert_eq!(options["allow_http"], "true");
        assert_eq!(options["aws_virtual_hosted_style_request"], "false");
        assert_eq!(options.len(), 4);
    }

    #[test]
    fn template_parses_with_defaults() {
        let config = ProjectConfig::parse(&project_template("demo")).unwrap();
        assert_eq!(config.project.name.as_str(), "demo");
        assert_eq!(config.lakehouse.root.as_str(), "./lakehouse");
        assert!(config.lakehouse.storage.to_options().is_empty());
        assert_eq!(config.ingest, IngestConfig::default());
    }

    #[test]
    fn template_jobs_parse_once_uncommented() {
        let template = project_template("demo");
        let (head, jobs) = template.split_at(template.find("# [[job]]").unwrap());
        let uncommented: String = jobs
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if !rest.starts_with(|c: char| c.is_ascii_uppercase()) => rest,
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let text = format!("{head}{uncommented}")
            .replace("${SLACK_WEBHOOK_URL}", "https://hooks.example.com/x");
        let config = ProjectConfig::parse(&text).unwrap();
        assert_eq!(config.jobs[0].steps.len(), 7);
        assert_eq!(config.freshness.tables.len(), 2);
        assert_eq!(config.alerts[0].name, "ops");
    }

    #[test]
    fn the_engine_section_names_a_scheduler_for_ballista_and_is_local_without_one() {
        let template = project_template("demo");
        let (head, rest) = template.split_at(template.find("# [engine]").unwrap());
        let block: String = rest
            .lines()
            .take_while(|line| !line.is_empty())
            .map(|line| format!("{}\n", line.strip_prefix("# ").unwrap_or(line)))
            .collect();
        let config = ProjectConfig::parse(&format!("{head}{block}")).unwrap();
        assert_eq!(config.engine.mode, EngineMode::Ballista);
        assert_eq!(
            config.engine.cluster(),
            Some(&SchedulerAddress::Remote {
                host: "scheduler.internal".into(),
                port: 50050
            })
        );
        assert_eq!(config.engine.partitions, Some(32));
        let local = ProjectConfig::parse(&template).unwrap();
        assert_eq!(local.engine, EngineConfig::default());
        assert_eq!(local.engine.cluster(), None);

        let unnamed = "[project]\nname = \"p\"\n[engine]\nmode = \"ballista\"\n";
        let error = ProjectConfig::parse(unnamed).unwrap_err();
        assert!(
            error.contains("needs scheduler = \"df://host:50050\""),
            "{error}"
        );
        let wrong =
            "[project]\nname = \"p\"\n[engine]\nmode = \"ballista\"\nscheduler = \"sched:50050\"\n";
        let error = ProjectConfig::parse(wrong).unwrap_err();
        assert!(
            error.contains("line 5")
                && error.contains("scheduler 'sched:50050' is not a Ballista address"),
            "{error}"
        );
        let typo = "[project]\nname = \"p\"\n[engine]\nmode = \"spark\"\n";
        let error = ProjectConfig::parse(typo).unwrap_err();
        assert!(error.contains("unknown variant `spark`"), "{error}");
    }

    #[test]
    fn ingest_settings_override_defaults_one_by_one() {
        let text = "[project]\nname = \"p\"\n[ingest]\nrow_group_mb = 16\n";
        let config = ProjectConfig::parse(text).unwrap();
        assert_eq!(config.ingest.row_group_mb, 16);
        assert_eq!(config.ingest.merge_memory_mb, 512);
        assert_eq!(config.ingest.max_record_bytes, 4 << 20);
        let limits = "[project]\nname = \"p\"\n[ingest]\nmax_field_bytes = \"64KiB\"\nmax_record_bytes = 100000\n";
        let config = ProjectConfig::parse(limits).unwrap();
        assert_eq!(config.ingest.max_field_bytes, 65536);
        assert_eq!(config.ingest.max_record_bytes, 100_000);
        let typo = ProjectConfig::parse("[project]\nname = \"p\"\n[ingest]\nrow_groups = 1\n");
        assert!(typo.unwrap_err().contains("unknown field `row_groups`"));
    }

    #[test]
    fn source_entries_are_checked() {
        let source = |extra: &str| {
            format!(
                "[project]\nname = \"p\"\n[[source]]\nname = \"s\"\npath = \"x\"\nformat = \"csv\"\ntable = \"raw.s\"\n{extra}"
            )
        };
        let merge = ProjectConfig::parse(&source("mode = \"merge\"\n")).unwrap_err();
        assert!(
            merge.contains("[[source]] 's': mode = \"merge\" needs key"),
            "{merge}"
        );
        let bad_type =
            ProjectConfig::parse(&source("[source.schema]\nx = \"money\"\n")).unwrap_err();
        assert!(
            bad_type.contains("unknown column type 'money'"),
            "{bad_type}"
        );
        assert!(bad_type.contains("line 9"), "{bad_type}");
        let limit = ProjectConfig::parse(&source("max_bad_rows = \"lots\"\n")).unwrap_err();
        assert!(limit.contains("'lots' is not a percentage"), "{limit}");
        let parsed = ProjectConfig::parse(&source(
            "max_bad_rows = \"2.5%\"\n[source.schema]\nid = { type = \"int\", required = true }\namount = \"decimal(18,2)\"\n",
        ))
        .unwrap();
        let s = &parsed.sources[0];
        assert_eq!(s.max_bad_rows, BadRowLimit::Ratio(0.025));
        assert_eq!(
            s.schema["id"],
            ColumnSpec {
                column_type: ColumnType::Int,
                required: true
            }
        );
        assert_eq!(s.schema["amount"].column_type, ColumnType::Decimal(18, 2));
        let names: Vec<&String> = s.schema.keys().collect();
        assert_eq!(names, ["id", "amount"]);
    }

    #[test]
    fn init_refuses_to_overwrite_and_discover_walks_up() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::init(dir.path()).unwrap();
        assert!(dir.path().join("models").is_dir());
        assert!(matches!(
            Project::init(dir.path()),
            Err(Error::ProjectExists(_))
        ));
        let nested = dir.path().join("models");
        let found = Project::discover(None, &nested).unwrap();
        assert_eq!(found.file, project.file);
        let missing = tempfile::tempdir().unwrap();
        let error = Project::discover(None, missing.path()).unwrap_err();
        assert!(error.to_string().contains("lakescore init"), "{error}");
    }
}
