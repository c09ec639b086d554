//! `[serve.http]` and `[[serve.token]]`: the HTTP scoring API of `lakescore serve`, and
//! the API tokens its clients call it with, each scoped to the models it may score.

use std::time::Duration;

use serde::Deserialize;

use super::EnvString;
use super::job::duration_text;
use super::serve::bytes_text;

/// `[serve.http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Accept requests without a token (as client `anonymous`, every model in scope).
    #[serde(default)]
    pub allow_anonymous: bool,
    /// The largest request body (`"8MiB"`); a larger one is refused with 413.
    #[serde(default = "default_max_body", deserialize_with = "bytes_text")]
    pub max_body: u64,
    /// The most rows one request may score; more are refused with 413.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Requests scoring at once (default: one per core).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Requests waiting for a free slot; when the queue is full, more are refused with
    /// 429 and `Retry-After` instead of holding memory.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// The longest a request may wait and score together; then it fails with 503.
    #[serde(default = "default_request_timeout", with = "duration_text")]
    pub request_timeout: Duration,
    /// Most connections open at once; more are closed as soon as they are accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection with nothing read or written for this long is closed (longer than
    /// `request_timeout`).
    #[serde(default = "default_idle_timeout", with = "duration_text")]
    pub idle_timeout: Duration,
    /// How often `name` and `name@alias` are looked up again, so a promotion takes effect
    /// within this time.
    #[serde(default = "default_model_refresh", with = "duration_text")]
    pub model_refresh: Duration,
    /// The longest online predictions wait in memory before they are appended to
    /// `scored.<model>_online` (what a crash can lose).
    #[serde(default = "default_flush_interval", with = "duration_text")]
    pub flush_interval: Duration,
    /// Online predictions of one model that are appended at once, before
    /// `flush_interval` passes.
    #[serde(default = "default_flush_rows")]
    pub flush_rows: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            allow_anonymous: false,
            max_body: default_max_body(),
            max_rows: default_max_rows(),
            max_in_flight: default_max_in_flight(),
            max_queued: default_max_queued(),
            request_timeout: default_request_timeout(),
            max_connections: default_max_connections(),
            idle_timeout: default_idle_timeout(),
            model_refresh: default_model_refresh(),
            flush_interval: default_flush_interval(),
            flush_rows: default_flush_rows(),
        }
    }
}

/// One `[[serve.token]]`: a client of the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeToken {
    /// The client's name, in the audit log and the online tables.
    pub name: String,
    /// The token itself, usually `${ENV_VARIABLE}`.
    pub secret: Option<EnvString>,
    /// The token's SHA-256 in hex, from `lakescore serve --new-token`.
    pub secret_sha256: Option<String>,
    /// The models it may score and list: names, or `"*"` for every model.
    pub models: Vec<String>,
    /// Scoring requests a second it may send on average (no limit when absent).
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Scoring requests it may send at once within that rate (default: the rate, at
    /// least one).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl ServeToken {
    /// True when the token may use model `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.models.iter().any(|m| m == "*" || m == name)
    }
}

/// Settings of `[serve.http]` and `[[serve.token]]` that cannot work together, with the
/// fix.
pub(super) fn check(http: Option<&HttpConfig>, tokens: &[ServeToken]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for token in tokens {
        if !names.insert(token.name.as_str()) {
            return Err(format!(
                "[[serve.token]] name '{}' is used twice",
                token.name
            ));
        }
        if token.secret.is_some() == token.secret_sha256.is_some() {
            return Err(format!(
                "[[serve.token]] '{}' needs exactly one of secret = \"${{ENV_VARIABLE}}\" or secret_sha256 (from `lakescore serve --new-token`)",
                token.name
            ));
        }
        if let Some(secret) = &token.secret
            && secret.as_str().len() < 16
        {
            return Err(format!(
                "[[serve.token]] '{}': the secret is shorter than 16 characters; `lakescore serve --new-token` makes one",
                token.name
            ));
        }
        if let Some(hash) = &token.secret_sha256
            && !(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!(
                "[[serve.token]] '{}': secret_sha256 must be 64 hex digits (from `lakescore serve --new-token`)",
                token.name
            ));
        }
        if let Some(rate) = token.requests_per_second
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!(
                "[[serve.token]] '{}': requests_per_second must be a number above 0 (e.g. 50 or 0.5); leave it out for no limit",
                token.name
            ));
        }
        if token.burst.is_some() && token.requests_per_second.is_none() {
            return Err(format!(
                "[[serve.token]] '{}': burst needs requests_per_second, the rate it bursts above",
                token.name
            ));
        }
        if token.burst == Some(0) {
            return Err(format!(
                "[[serve.token]] '{}': burst must be at least 1",
                token.name
            ));
        }
        if token.models.is_empty() {
            return Err(format!(
                "[[serve.token]] '{}' has no models: list the models it may score, or \"*\"",
                token.name
            ));
        }
    }
    if let Some(http) = http {
        if http.max_in_flight == 0
            || http.max_rows == 0
            || http.max_body == 0
            || http.max_connections == 0
        {
            return Err(String::from(
                "[serve.http] max_in_flight, max_rows, max_body and max_connections must be at least 1",
            ));
        }
        if http.idle_timeout <= http.request_timeout {
            return Err(String::from(
                "[serve.http] idle_timeout must be longer than request_timeout, or a connection waiting for its answer would be closed",
            ));
        }
    }
    Ok(())
}

fn default_listen() -> String {
    String::from("127.0.0.1:8080")
}

fn default_max_body() -> u64 {
    8 << 20
}

fn default_max_rows() -> usize {
    10_000
}

fn default_max_in_flight() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn default_max_queued() -> usize {
    256
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_connections() -> usize {
    1024
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_model_refresh() -> Duration {
    Duration::from_secs(2)
}

fn default_flush_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_flush_rows() -> usize {
    10_000
}
