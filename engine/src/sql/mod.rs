//! SQL over the lakehouse: the session every entry point uses ([`session`]), the
//! DataFusion catalog of every Delta table ([`catalog`]) and the saved views it plans
//! ([`views`]), time travel in SQL ([`time_travel`]), SQL that reads and never writes
//! ([`read_only`]), lakescore's normalization functions ([`functions`]), results in the
//! formats other tools read ([`output`]), table versions as files ([`export`]) and running
//! sessions' plans on a Ballista cluster ([`cluster`]).
//!
//! Built on [`crate::storage`]; it imports nothing from [`crate::ml`]: the model layer
//! adds `predict` through a [`session::SessionExtension`].

pub mod catalog;
pub mod cluster;
pub mod export;
pub mod functions;
pub mod output;
pub mod read_only;
pub mod session;
pub mod time_travel;
pub mod views;
