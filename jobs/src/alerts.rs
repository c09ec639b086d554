//! Alerts: a failed run, stale tables or a drift finding, POSTed as JSON to the webhooks
//! of `[[alert]]` and always written to the log.
//!
//! The body is Slack-compatible (a `text` field) and carries the details under
//! `lakescore`. Delivery has a timeout and never fails the job that raised the alert: a
//! webhook that is down is logged, not retried forever.

use lakescore_engine::Project;
use lakescore_engine::config::AlertConfig;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// A job run did not succeed.
    RunFailed,
    /// Tables broke their freshness rules.
    Stale,
    /// A drift check asked for retraining.
    Drift,
}

impl AlertKind {
    /// The event name in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::RunFailed => "run_failed",
            AlertKind::Stale => "stale_tables",
            AlertKind::Drift => "drift",
        }
    }
}

/// One alert.
#[derive(Debug, Clone)]
pub struct Alert {
    /// What it is about.
    pub kind: AlertKind,
    /// The message people read.
    pub text: String,
    /// The job, when a job raised it.
    pub job: Option<String>,
    /// The run, when a run raised it.
    pub run_id: Option<String>,
    /// Machine-readable details.
    pub details: Value,
}

/// The result of posting an alert to one webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The `[[alert]]` name.
    pub target: String,
    /// The HTTP status, or why nothing was delivered.
    pub outcome: Result<u16, String>,
}

/// The project's alert targets.
pub struct Alerts {
    project: String,
    targets: Vec<AlertConfig>,
    client: reqwest::Client,
}

impl Alerts {
    /// The `[[alert]]` targets of `project`.
    pub fn new(project: &Project) -> Self {
        Self {
            project: project.config.project.name.to_string(),
            targets: project.config.alerts.clone(),
            client: reqwest::Client::new(),
        }
    }

    /// Logs `alert` and posts it to each target named in `names`; returns one delivery per
    /// target. Never fails: delivery problems are logged and returned.
    pub async fn send(&self, names: &[String], alert: &Alert) -> Vec<Delivery> {
        tracing::warn!(
            event = alert.kind.as_str(),
            job = alert.job.as_deref().unwrap_or(""),
            run_id = alert.run_id.as_deref().unwrap_or(""),
            "alert: {}",
            alert.text
        );
        let body = json!({
            "text": format!("[lakescore {}] {}", self.project, alert.text),
            "lakescore": {
                "event": alert.kind.as_str(),
                "project": self.project,
                "job": alert.job,
                "run_id": alert.run_id,
                "details": alert.details,
            }
        })
        .to_string();
        let mut deliveries = Vec::new();
        for target in self.targets.iter().filter(|t| names.contains(&t.name)) {
            let outcome = self.post(target, body.clone()).await;
            match &outcome {
                Ok(status) => tracing::info!(target = %target.name, status, "alert delivered"),
                Err(error) => {
                    tracing::error!(target = %target.name, "alert not delivered: {error}")
                }
            }
            deliveries.push(Delivery {
                target: target.name.clone(),
                outcome,
            });
        }
        deliveries
    }

    async fn post(&self, target: &AlertConfig, body: String) -> Result<u16, String> {
        let response = self
            .client
            .post(target.webhook.as_str())
            .header(CONTENT_TYPE, "application/json")
            .timeout(target.timeout)
            .body(body)
            .send()
            .await
            .map_err(describe_send_error)?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("the webhook answered HTTP {status}"))
        }
    }
}

/// A send error without the URL, which holds the webhook's secret.
fn describe_send_error(error: reqwest::Error) -> String {
    if error.is_timeout() {
        String::from("the webhook did not answer in time")
    } else if error.is_connect() {
        String::from("cannot connect to the webhook's host")
    } else if error.is_builder() {
        String::from("the webhook URL is not a valid http(s) URL")
    } else {
        format!("the request failed: {}", error.without_url())
    }
}
