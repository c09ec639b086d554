//! End-to-end tests: the lakescore binary run on generated projects.

// A failed unwrap in a test harness is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod cluster;
mod demo;
mod drift;
mod feedback;
mod fixtures;
mod foundation;
mod http_api;
mod ingest;
mod ingest_integrity;
mod jobs;
mod kills;
mod models;
mod readers;
mod s3;
mod serve;
mod serve_attacks;
mod serve_clients;
mod support;
mod transform;
mod vacuum;
mod webhook;
