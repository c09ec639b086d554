//! Machine learning on lakehouse tables: models, their registry, training and scoring
//! ([`models`]), drift monitoring ([`drift`]), the feedback loop ([`feedback`]) and the
//! retrain requests drift and realized metrics raise ([`retrain_requests`]).
//!
//! Built on [`crate::storage`] and [`crate::sql`]; [`sql_session`] is the SQL session
//! with `predict` that every entry point running a user's SQL starts from.

pub mod drift;
pub mod feedback;
pub mod models;
pub mod retrain_requests;

pub use models::predict::sql_session;
