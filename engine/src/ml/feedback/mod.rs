//! The feedback loop's data side: corrections from staff joined with the predictions
//! they correct into a point-in-time-correct training set ([`build`]), and each model
//! version's realized metrics on those labels with the floors that request retraining
//! ([`performance`]). Retraining on the set is `models::retrain`.

pub mod build;
pub mod performance;

pub use build::{BuildFeedback, FeedbackReport, expected_columns, feedback_training_table};
pub use performance::{MODEL_PERFORMANCE, PerformanceReport, WindowMetrics};
