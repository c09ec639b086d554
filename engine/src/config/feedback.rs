//! `[model.feedback]`, `[model.retrain]` and `[model.monitoring]`: where a model's
//! corrections come from and how they resolve, when a retrained challenger replaces the
//! champion, and the realized-metric floors that request retraining.

use std::time::Duration;

use serde::Deserialize;

use super::Task;

/// `[model.feedback]` of a `[[model]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// The table corrections are landed in (default `feedback.<model>`).
    pub table: Option<String>,
    /// The table of the predictions they correct (default `scored.<model>`).
    pub scored_table: Option<String>,
    /// The column holding the corrected label.
    pub label_column: String,
    /// How several corrections of one prediction resolve.
    pub policy: CorrectionPolicy,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            table: None,
            scored_table: None,
            label_column: String::from("corrected_label"),
            policy: CorrectionPolicy::Latest,
        }
    }
}

impl FeedbackConfig {
    /// The feedback table of model `model`.
    pub fn table_of(&self, model: &str) -> String {
        self.table
            .clone()
            .unwrap_or_else(|| format!("feedback.{model}"))
    }

    /// The scored table of model `model`.
    pub fn scored_table_of(&self, model: &str) -> String {
        self.scored_table
            .clone()
            .unwrap_or_else(|| format!("scored.{model}"))
    }
}

/// Which correction of a prediction wins when staff corrected it more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorrectionPolicy {
    /// The newest by `corrected_at`.
    Latest,
    /// The oldest by `corrected_at`.
    First,
    /// The label most corrections agree on; ties go to the label corrected last.
    Majority,
}

impl CorrectionPolicy {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CorrectionPolicy::Latest => "latest",
            CorrectionPolicy::First => "first",
            CorrectionPolicy::Majority => "majority",
        }
    }
}

impl std::str::FromStr for CorrectionPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "latest" => Ok(Self::Latest),
            "first" => Ok(Self::First),
            "majority" => Ok(Self::Majority),
            other => Err(format!(
                "unknown correction policy '{other}': use latest, first or majority"
            )),
        }
    }
}

/// `[model.retrain]` of a `[[model]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainConfig {
    /// The holdout metric champion and challenger are compared on (default `roc_auc`
    /// for classification, `rmse` for regression).
    pub metric: Option<String>,
    /// How much better the challenger must be to be promoted.
    pub min_improvement: f64,
    /// How many times each feedback row counts in training (fractions sample the
    /// remainder deterministically).
    pub feedback_weight: f64,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        Self {
            metric: None,
            min_improvement: 0.005,
            feedback_weight: 1.0,
        }
    }
}

/// Metrics a retrain can compare on, and whether higher is better.
const COMPARABLE: [(&str, bool); 9] = [
    ("roc_auc", true),
    ("accuracy", true),
    ("precision", true),
    ("recall", true),
    ("f1", true),
    ("log_loss", false),
    ("rmse", false),
    ("mae", false),
    ("r2", true),
];

impl RetrainConfig {
    /// The metric compared for a model of `task`, and whether higher is better.
    pub fn metric_for(&self, task: Task) -> (String, bool) {
        let name = self.metric.clone().unwrap_or_else(|| {
            String::from(match task {
                Task::Classification => "roc_auc",
                Task::Regression => "rmse",
            })
        });
        let higher = COMPARABLE
            .iter()
            .find(|(n, _)| *n == name)
            .is_none_or(|(_, higher)| *higher);
        (name, higher)
    }

    fn check(&self, task: Task) -> Result<(), String> {
        let (metric, _) = self.metric_for(task);
        let fits = |m: &str| match task {
            Task::Classification => !matches!(m, "rmse" | "mae" | "r2"),
            Task::Regression => matches!(m, "rmse" | "mae" | "r2"),
        };
        let known: Vec<&str> = COMPARABLE
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| fits(n))
            .collect();
        if !known.contains(&metric.as_str()) {
            return Err(format!(
                "[model.retrain] metric = \"{metric}\" is not a {} metric; use one of {}",
                task.as_str(),
                known.join(", ")
            ));
        }
        if self.min_improvement.is_nan() || self.min_improvement < 0.0 {
            return Err(String::from(
                "[model.retrain] min_improvement must be zero or more",
            ));
        }
        if !self.feedback_weight.is_finite() || self.feedback_weight < 0.0 {
            return Err(String::from(
                "[model.retrain] feedback_weight must be zero or more (0 leaves feedback out)",
            ));
        }
        Ok(())
    }
}

/// `[model.monitoring]` of a `[[model]]`: realized-metric windows and floors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// Width of the prediction-time windows metrics are computed over.
    #[serde(with = "super::job::duration_text")]
    pub window: Duration,
    /// Fewest labeled predictions a window needs before its metrics are checked.
    pub min_rows: u64,
    /// ROC AUC below which retraining is requested.
    pub min_auc: Option<f64>,
    /// Accuracy below which retraining is requested.
    pub min_accuracy: Option<f64>,
    /// Precision below which retraining is requested.
    pub min_precision: Option<f64>,
    /// Recall below which retraining is requested.
    pub min_recall: Option<f64>,
    /// Expected calibration error above which retraining is requested.
    pub max_calibration_error: Option<f64>,
    /// RMSE above which retraining is requested.
    pub max_rmse: Option<f64>,
    /// MAE above which retraining is requested.
    pub max_mae: Option<f64>,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(86_400),
            min_rows: 30,
            min_auc: None,
            min_accuracy: None,
            min_precision: None,
            min_recall: None,
            max_calibration_error: None,
            max_rmse: None,
            max_mae: None,
        }
    }
}

/// A configured floor: the metric, its limit, and whether the limit is a minimum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Floor {
    /// The metric's column in `monitoring.model_performance`.
    pub metric: &'static str,
    /// The setting's name.
    pub setting: &'static str,
    /// The limit.
    pub limit: f64,
    /// True for `min_*` settings, false for `max_*`.
    pub is_minimum: bool,
}

impl Floor {
    /// True when `value` is on the wrong side of the limit.
    pub fn breached_by(&self, value: f64) -> bool {
        if self.is_minimum {
            value < self.limit
        } else {
            value > self.limit
        }
    }
}

impl MonitoringConfig {
    /// Every configured floor.
    pub fn floors(&self) -> Vec<Floor> {
        let floor = |metric, setting, limit: Option<f64>, is_minimum| {
            limit.map(|limit| Floor {
                metric,
                setting,
                limit,
                is_minimum,
            })
        };
        [
            floor("roc_auc", "min_auc", self.min_auc, true),
            floor("accuracy", "min_accuracy", self.min_accuracy, true),
            floor("precision", "min_precision", self.min_precision, true),
            floor("recall", "min_recall", self.min_recall, true),
            floor(
                "calibration_error",
                "max_calibration_error",
                self.max_calibration_error,
                false,
            ),
            floor("rmse", "max_rmse", self.max_rmse, false),
            floor("mae", "max_mae", self.max_mae, false),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn check(&self, task: Task) -> Result<(), String> {
        if self.window.is_zero() {
            return Err(String::from(
                "[model.monitoring] window must be longer than 0s",
            ));
        }
        let regression_only = ["max_rmse", "max_mae"];
        if let Some(wrong) = self
            .floors()
            .iter()
            .find(|f| regression_only.contains(&f.setting) != (task == Task::Regression))
        {
            return Err(format!(
                "[model.monitoring] {} does not apply to a {} model",
                wrong.setting,
                task.as_str()
            ));
        }
        Ok(())
    }
}

/// Checks the three sections of one model.
pub(super) fn check_feedback_settings(
    task: Task,
    retrain: &RetrainConfig,
    monitoring: &MonitoringConfig,
) -> Result<(), String> {
    retrain.check(task)?;
    monitoring.check(task)
}

#[cfg(test)]
mod tests {
    use crate::config::{CorrectionPolicy, ProjectConfig, StepAction};

    fn parse(task: &str, sections: &str) -> Result<ProjectConfig, String> {
        ProjectConfig::parse(&format!(
            "[project]\nname = \"p\"\n[[model]]\nname = \"churn\"\ntask = \"{task}\"\n\
             algorithm = \"decision_tree\"\ntraining_table = \"curated.customers\"\n\
             label = \"churned\"\nkey = [\"customer_id\"]\n[model.features]\nlogins = \"numeric\"\n{sections}"
        ))
    }

    #[test]
    fn defaults_and_settings() {
        let config = parse("classification", "").unwrap();
        let model = &config.models[0];
        assert_eq!(model.feedback.table_of("churn"), "feedback.churn");
        assert_eq!(model.feedback.scored_table_of("churn"), "scored.churn");
        assert_eq!(model.feedback.label_column, "corrected_label");
        assert_eq!(model.feedback.policy, CorrectionPolicy::Latest);
        assert_eq!(
            model.retrain.metric_for(model.task),
            (String::from("roc_auc"), true)
        );
        assert!(model.monitoring.floors().is_empty());

        let config = parse(
            "classification",
            "[model.feedback]\ntable = \"feedback.crm_overrides\"\npolicy = \"majority\"\n\
             [model.retrain]\nmetric = \"log_loss\"\nmin_improvement = 0.01\nfeedback_weight = 2.5\n\
             [model.monitoring]\nwindow = \"7d\"\nmin_auc = 0.75\nmax_calibration_error = 0.1\n",
        )
        .unwrap();
        let model = &config.models[0];
        assert_eq!(model.feedback.table_of("churn"), "feedback.crm_overrides");
        assert_eq!(model.feedback.policy, CorrectionPolicy::Majority);
        assert_eq!(
            model.retrain.metric_for(model.task),
            (String::from("log_loss"), false)
        );
        assert_eq!(model.retrain.feedback_weight, 2.5);
        assert_eq!(model.monitoring.window.as_secs(), 7 * 86_400);
        let floors = model.monitoring.floors();
        assert_eq!(floors.len(), 2);
        assert!(floors[0].breached_by(0.7) && !floors[0].breached_by(0.8));
        assert!(floors[1].breached_by(0.2) && !floors[1].breached_by(0.05));

        let regression = parse("regression", "[model.monitoring]\nmax_rmse = 3.0\n").unwrap();
        assert_eq!(
            regression.models[0]
                .retrain
                .metric_for(regression.models[0].task),
            (String::from("rmse"), false)
        );
    }

    #[test]
    fn settings_that_cannot_work_are_refused_with_the_fix() {
        let error = parse("classification", "[model.retrain]\nmetric = \"rmse\"\n").unwrap_err();
        assert!(
            error.contains("[model.retrain] metric = \"rmse\" is not a classification metric; use one of roc_auc, accuracy, precision, recall, f1, log_loss"),
            "{error}"
        );
        let error = parse("regression", "[model.monitoring]\nmin_auc = 0.7\n").unwrap_err();
        assert!(
            error.contains("[model.monitoring] min_auc does not apply to a regression model"),
            "{error}"
        );
        let error =
            parse("classification", "[model.feedback]\npolicy = \"loudest\"\n").unwrap_err();
        assert!(error.contains("loudest"), "{error}");
        let error = parse("classification", "[model.retrain]\nfeedback_weight = -1\n").unwrap_err();
        assert!(
            error.contains("feedback_weight must be zero or more"),
            "{error}"
        );
    }

    #[test]
    fn feedback_and_retrain_steps() {
        let config = parse(
            "classification",
            "[[job]]\nname = \"nightly\"\nsteps = [{ feedback = \"churn\" }, { retrain = \"churn\" }, \
             { name = \"always\", retrain = \"churn\", force = true }]\n",
        )
        .unwrap();
        let actions: Vec<&StepAction> = config.jobs[0].steps.iter().map(|s| &s.action).collect();
        assert_eq!(
            actions,
            [
                &StepAction::Feedback {
                    model: String::from("churn")
                },
                &StepAction::Retrain {
                    model: String::from("churn"),
                    force: false
                },
                &StepAction::Retrain {
                    model: String::from("churn"),
                    force: true
                },
            ]
        );
        let error = parse(
            "classification",
            "[[job]]\nname = \"n\"\nsteps = [{ feedback = \"churn\", force = true }]\n",
        )
        .unwrap_err();
        assert!(
            error.contains("`force` belongs to transform and retrain steps only"),
            "{error}"
        );
    }
}
