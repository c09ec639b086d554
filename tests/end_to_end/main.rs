//! End-to-end tests: the lakescore binary run on generated projects.

mod foundation;
mod ingest;
mod support;
