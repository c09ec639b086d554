//! Drift monitoring: how far the data a model scores has moved from the data it was
//! trained on, per feature and for its predictions.
//!
//! [`stats`] holds the statistics, [`sketch`] the streaming column profiles, [`compare`]
//! the per-column verdicts, [`run`] the operation ([`Drift`]), [`record`] the
//! `monitoring.*` tables and [`report`] the HTML page.

pub mod compare;
pub mod record;
pub mod report;
pub mod run;
pub mod sketch;
pub mod stats;

pub use run::{Drift, DriftReport, Window};
