//! The feedback loop's data side: corrections from staff joined with the predictions
//! they correct into a point-in-time-correct training set ([`build`], planned by
//! `plan`), and each model
//! version's realized metrics on those labels with the floors that request retraining
//! ([`performance`]). Retraining on the set is `models::retrain`.

pub mod build;
pub mod performance;
mod plan;

pub use build::{BuildFeedback, FeedbackReport, expected_columns};
pub use performance::{PerformanceReport, WindowMetrics};
