//! The project pieces the end-to-end tests share, written as TOML once: the customer
//! extract source, the churn model over it, and a builder that puts them in a project.
//! A test states only what makes its project different (columns, algorithm, params,
//! extra sections).

use crate::support::Workspace;

/// A `[[source]]` landing CSV extracts of customers, keyed by `customer_id`.
pub struct CustomerSource {
    path: String,
    table: String,
    mode: Option<&'static str>,
    columns: Vec<(&'static str, &'static str)>,
}

impl CustomerSource {
    /// Customers from the files matching `path` into `table`, with the columns the tests'
    /// generators write: `logins`, `revenue`, `contract`, `newsletter`, `churned`.
    pub fn new(path: &str, table: &str) -> Self {
        Self {
            path: path.to_string(),
            table: table.to_string(),
            mode: None,
            columns: vec![
                ("logins", "float"),
                ("revenue", "float"),
                ("contract", "string"),
                ("newsletter", "boolean"),
                ("churned", "boolean"),
            ],
        }
    }

    /// Lands each extract with `mode` (`overwrite`, `merge`) instead of appending.
    pub fn mode(mut self, mode: &'static str) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Declares exactly these columns besides `customer_id`.
    pub fn columns(mut self, columns: &[(&'static str, &'static str)]) -> Self {
        self.columns = columns.to_vec();
        self
    }

    fn toml(&self) -> String {
        let mode = self
            .mode
            .map(|mode| format!("mode = \"{mode}\"\n"))
            .unwrap_or_default();
        let columns = key_values(&self.columns);
        format!(
            "\n[[source]]\nname = \"customers\"\npath = \"{}\"\nformat = \"csv\"\ntable = \"{}\"\n{mode}\
             [source.schema]\ncustomer_id = {{ type = \"string\", required = true }}\n{columns}",
            self.path, self.table
        )
    }
}

/// A `[[model]]` predicting `churned` per `customer_id`.
pub struct ChurnModel {
    algorithm: &'static str,
    training_table: String,
    settings: String,
    features: Vec<(&'static str, &'static str)>,
    extra: String,
}

impl ChurnModel {
    /// Model `churn`, learned with `algorithm` from `training_table`, on `logins`,
    /// `revenue`, `contract` and `newsletter`.
    pub fn new(algorithm: &'static str, training_table: &str) -> Self {
        Self {
            algorithm,
            training_table: training_table.to_string(),
            settings: String::new(),
            features: vec![
                ("logins", "numeric"),
                ("revenue", "numeric"),
                ("contract", "categorical"),
                ("newsletter", "boolean"),
            ],
            extra: String::new(),
        }
    }

    /// A setting of the model (`params = { max_depth = 6 }`, `seed = 7`).
    pub fn setting(mut self, line: &str) -> Self {
        self.settings.push_str(line);
        self.settings.push('\n');
        self
    }

    /// Learns from exactly these features.
    pub fn features(mut self, features: &[(&'static str, &'static str)]) -> Self {
        self.features = features.to_vec();
        self
    }

    /// TOML sections of the model (`[model.drift]`, `[model.feedback]`...) after its
    /// features.
    pub fn with(mut self, sections: &str) -> Self {
        self.extra.push_str(sections);
        self
    }

    fn toml(&self) -> String {
        let features = key_values(&self.features);
        format!(
            "\n[[model]]\nname = \"churn\"\ntask = \"classification\"\nalgorithm = \"{}\"\n\
             training_table = \"{}\"\nlabel = \"churned\"\nkey = [\"customer_id\"]\n{}\
             [model.features]\n{features}{}",
            self.algorithm, self.training_table, self.settings, self.extra
        )
    }
}

/// A project file's extra sections, assembled from the shared pieces.
#[derive(Default)]
pub struct ProjectFile {
    toml: String,
}

impl ProjectFile {
    /// Adds the customer source.
    pub fn source(mut self, source: CustomerSource) -> Self {
        self.toml.push_str(&source.toml());
        self
    }

    /// Adds the churn model.
    pub fn model(mut self, model: ChurnModel) -> Self {
        self.toml.push_str(&model.toml());
        self
    }

    /// Adds TOML written out by the test (jobs, alerts, other sources).
    pub fn with(mut self, toml: &str) -> Self {
        self.toml.push('\n');
        self.toml.push_str(toml);
        self
    }

    /// Appends these sections to `workspace`'s project file.
    pub fn append_to(self, workspace: &Workspace) {
        workspace.append_to_project(&self.toml);
    }
}

/// `name = "value"` lines.
fn key_values(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name} = \"{value}\"\n"))
        .collect()
}
