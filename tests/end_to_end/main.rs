//! End-to-end tests: the lakescore binary run on generated projects.

mod demo;
mod foundation;
mod ingest;
mod s3;
mod support;
