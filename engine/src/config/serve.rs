//! `[serve]`, `[[serve.user]]` and `[[serve.role]]`: who may connect to `lakescore serve`
//! over the PostgreSQL wire protocol, how, and which tables each role may read (the HTTP
//! API's `[serve.http]` and `[[serve.token]]` are in [`super::http`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use super::EnvString;
use super::http::{HttpConfig, ServeToken};
use super::job::{duration_text, optional_duration_text};

/// `[serve]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Accept connections without a password, as `anonymous_role`.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// The role of anonymous connections.
    pub anonymous_role: Option<String>,
    /// PEM certificate (chain) for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8) for TLS.
    pub tls_key: Option<PathBuf>,
    /// Refuse connections that did not negotiate TLS.
    #[serde(default)]
    pub require_tls: bool,
    /// Most logged-in connections at once; more are refused.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most connections still logging in at once, counted apart from `max_connections`
    /// so sockets that never log in cannot crowd real users out.
    #[serde(default = "default_max_pending_logins")]
    pub max_pending_logins: usize,
    /// How long a connection may take to log in before it is closed.
    #[serde(default = "default_auth_timeout", with = "duration_text")]
    pub auth_timeout: Duration,
    /// The longest a statement may run, unless its role sets its own; a client may
    /// lower it for its session with `SET statement_timeout`, never raise it.
    #[serde(default = "default_statement_timeout", with = "duration_text")]
    pub statement_timeout: Duration,
    /// Memory all running queries may hold together (`"4GiB"`); sorts, joins and
    /// aggregates spill to disk before they pass their share.
    #[serde(default = "default_max_memory", deserialize_with = "bytes_text")]
    pub max_memory: u64,
    /// Memory one query may hold (`"1GiB"`); a query that needs more fails with
    /// "query exceeded its memory limit".
    #[serde(default = "default_query_memory", deserialize_with = "bytes_text")]
    pub query_memory: u64,
    /// `[[serve.user]]`.
    #[serde(default, rename = "user")]
    pub users: Vec<ServeUser>,
    /// `[[serve.role]]`.
    #[serde(default, rename = "role")]
    pub roles: Vec<ServeRole>,
    /// `[serve.http]`: the HTTP scoring API, when present.
    pub http: Option<HttpConfig>,
    /// `[[serve.token]]`: the HTTP API's clients.
    #[serde(default, rename = "token")]
    pub tokens: Vec<ServeToken>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            allow_anonymous: false,
            anonymous_role: None,
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            max_connections: default_max_connections(),
            max_pending_logins: default_max_pending_logins(),
            auth_timeout: default_auth_timeout(),
            statement_timeout: default_statement_timeout(),
            max_memory: default_max_memory(),
            query_memory: default_query_memory(),
            users: Vec::new(),
            roles: Vec::new(),
            http: None,
            tokens: Vec::new(),
        }
    }
}

/// One `[[serve.user]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeUser {
    /// The user name clients log in with.
    pub name: String,
    /// The password, usually `${ENV_VARIABLE}`.
    pub password: Option<EnvString>,
    /// The password's SCRAM hash from `lakescore serve --hash-password`.
    pub password_hash: Option<String>,
    /// The user's role.
    pub role: String,
}

/// One `[[serve.role]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeRole {
    /// The role's name.
    pub name: String,
    /// What it may read: schemas (`"curated"`), tables (`"scored.churn_risk"`) or
    /// patterns (`"raw.crm_*"`, `"*"` for everything).
    #[serde(default)]
    pub select: Vec<String>,
    /// The longest one of the role's statements may run (instead of `[serve]`'s).
    #[serde(default, with = "optional_duration_text")]
    pub statement_timeout: Option<Duration>,
    /// The most rows one statement may return; a larger result fails and says so.
    pub max_result_rows: Option<u64>,
    /// Most connections of the role's users at once.
    pub max_connections: Option<usize>,
    /// The schemas unqualified table names are looked up in, in order, until a client
    /// sets its own with `SET search_path` (default: `"$user", public`).
    pub search_path: Option<Vec<String>>,
}

fn default_listen() -> String {
    String::from("127.0.0.1:5432")
}

fn default_max_connections() -> usize {
    100
}

fn default_max_pending_logins() -> usize {
    256
}

fn default_auth_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_statement_timeout() -> Duration {
    Duration::from_secs(300)
}

const GIB: u64 = 1 << 30;

fn default_max_memory() -> u64 {
    4 * GIB
}

fn default_query_memory() -> u64 {
    GIB
}

/// A size written as a whole number of bytes or as text: `"512MiB"`, `"4GiB"`, `"2GB"`.
pub(super) fn bytes_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(bytes) => Ok(bytes),
        Size::Text(text) => parse_bytes(&text).ok_or_else(|| {
            de::Error::custom(format!(
                "\"{text}\" is not a size: write e.g. \"512MiB\", \"4GiB\" or a number of bytes"
            ))
        }),
    }
}

fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => GIB,
        "tib" => 1 << 40,
        _ => return None,
    };
    let bytes = number * scale as f64;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

impl ServeConfig {
    /// The role named `name`.
    pub fn role(&self, name: &str) -> Option<&ServeRole> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// Settings that cannot work together, with the fix.
    pub(super) fn check(&self) -> Result<(), String> {
        let mut roles = std::collections::HashSet::new();
        for role in &self.roles {
            if !roles.insert(role.name.as_str()) {
                return Err(format!("[[serve.role]] name '{}' is used twice", role.name));
            }
            for pattern in &role.select {
                glob::Pattern::new(pattern).map_err(|error| {
                    format!(
                        "[[serve.role]] '{}': select pattern \"{pattern}\" is not a pattern: {error}",
                        role.name
                    )
                })?;
            }
        }
        let known_role = |owner: String, role: &str| {
            if roles.contains(role) {
                Ok(())
            } else {
                Err(format!(
                    "{owner} has role '{role}', but no [[serve.role]] has that name"
                ))
            }
        };
        let mut users = std::collections::HashSet::new();
        for user in &self.users {
            if !users.insert(user.name.as_str()) {
                return Err(format!("[[serve.user]] name '{}' is used twice", user.name));
            }
            known_role(format!("[[serve.user]] '{}'", user.name), &user.role)?;
            if user.password.is_some() == user.password_hash.is_some() {
                return Err(format!(
                    "[[serve.user]] '{}' needs exactly one of password = \"${{ENV_VARIABLE}}\" or password_hash (from `lakescore serve --hash-password`)",
                    user.name
                ));
            }
        }
        if self.allow_anonymous {
            match &self.anonymous_role {
                Some(role) => known_role(String::from("[serve] anonymous_role"), role)?,
                None => {
                    return Err(String::from(
                        "[serve] allow_anonymous = true needs anonymous_role = \"...\": the role anonymous connections get",
                    ));
                }
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(String::from(
                "[serve] TLS needs both tls_cert and tls_key (PEM files)",
            ));
        }
        if self.require_tls && self.tls_cert.is_none() {
            return Err(String::from(
                "[serve] require_tls = true needs tls_cert and tls_key",
            ));
        }
        if self.max_connections == 0 || self.max_pending_logins == 0 {
            return Err(String::from(
                "[serve] max_connections and max_pending_logins must be at least 1",
            ));
        }
        super::http::check(self.http.as_ref(), &self.tokens)?;
        if self.query_memory > self.max_memory {
            return Err(String::from(
                "[serve] query_memory is larger than max_memory: one query can never hold more than all of them",
            ));
        }
        for role in &self.roles {
            if role.max_connections == Some(0) {
                return Err(format!(
                    "[[serve.role]] '{}': max_connections must be at least 1",
                    role.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ProjectConfig;

    fn parse(serve: &str) -> Result<ProjectConfig, String> {
        ProjectConfig::parse(&format!("[project]\nname = \"p\"\n{serve}"))
    }

    const ROLE: &str = "[[serve.role]]\nname = \"analyst\"\nselect = [\"curated\"]\n";

    #[test]
    fn defaults_and_a_user() {
        let config = parse("").unwrap();
        assert_eq!(config.serve.listen, "127.0.0.1:5432");
        assert!(!config.serve.allow_anonymous);
        let config = parse(&format!(
            "{ROLE}[[serve.user]]\nname = \"ann\"\npassword_hash = \"h\"\nrole = \"analyst\"\n"
        ))
        .unwrap();
        assert_eq!(config.serve.users[0].role, "analyst");
        assert_eq!(config.serve.role("analyst").unwrap().select, ["curated"]);
    }

    #[test]
    fn limits_have_defaults_and_read_sizes_and_durations() {
        let config = parse("").unwrap();
        assert_eq!(
            config.serve.statement_timeout,
            super::Duration::from_secs(300)
        );
        assert_eq!(config.serve.query_memory, 1 << 30);
        let config = parse(
            "[serve]\nstatement_timeout = \"30s\"\nmax_memory = \"2GiB\"\nquery_memory = 1000\n\
             [[serve.role]]\nname = \"a\"\nstatement_timeout = \"2s\"\nmax_result_rows = 10\n",
        )
        .unwrap();
        assert_eq!(
            config.serve.statement_timeout,
            super::Duration::from_secs(30)
        );
        assert_eq!(config.serve.max_memory, 2 << 30);
        assert_eq!(config.serve.query_memory, 1000);
        let role = config.serve.role("a").unwrap();
        assert_eq!(role.statement_timeout, Some(super::Duration::from_secs(2)));
        assert_eq!(role.max_result_rows, Some(10));
        assert_eq!(super::parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(super::parse_bytes("1.5 GB"), Some(1_500_000_000));
        assert_eq!(super::parse_bytes("lots"), None);
        let error = parse("[serve]\nmax_memory = \"lots\"\n").unwrap_err();
        assert!(error.contains("\"lots\" is not a size"), "{error}");
    }

    /// A valid HTTP API token, its table open for more settings.
    const TOKEN: &str = "[[serve.token]]\nname = \"crm\"\nsecret_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nmodels = [\"*\"]\n";

    #[test]
    fn settings_that_cannot_work_are_refused_with_the_fix() {
        let cases = [
            (
                "[[serve.user]]\nname = \"ann\"\npassword_hash = \"h\"\nrole = \"boss\"\n"
                    .to_string(),
                "[[serve.user]] 'ann' has role 'boss', but no [[serve.role]] has that name",
            ),
            (
                format!("{ROLE}[[serve.user]]\nname = \"ann\"\nrole = \"analyst\"\n"),
                "needs exactly one of password",
            ),
            (
                "[serve]\nallow_anonymous = true\n".to_string(),
                "allow_anonymous = true needs anonymous_role",
            ),
            (
                "[serve]\nrequire_tls = true\n".to_string(),
                "require_tls = true needs tls_cert and tls_key",
            ),
            (
                "[serve]\ntls_cert = \"c.pem\"\n".to_string(),
                "TLS needs both tls_cert and tls_key",
            ),
            (
                format!("{ROLE}{ROLE}"),
                "[[serve.role]] name 'analyst' is used twice",
            ),
            (
                "[serve]\nquery_memory = \"2GiB\"\nmax_memory = \"1GiB\"\n".to_string(),
                "query_memory is larger than max_memory",
            ),
            (
                format!("{TOKEN}requests_per_second = 0\n"),
                "[[serve.token]] 'crm': requests_per_second must be a number above 0",
            ),
            (
                format!("{TOKEN}burst = 5\n"),
                "[[serve.token]] 'crm': burst needs requests_per_second",
            ),
            (
                format!("{TOKEN}requests_per_second = 10\nburst = 0\n"),
                "[[serve.token]] 'crm': burst must be at least 1",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
