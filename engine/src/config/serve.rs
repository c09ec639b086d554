//! `[serve]`, `[[serve.user]]` and `[[serve.role]]`: who may connect to `lakescore serve`
//! over the PostgreSQL wire protocol, how, and which tables each role may read.

use std::path::PathBuf;

use serde::Deserialize;

use super::EnvString;

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
    /// Most connections at once; more are refused.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// `[[serve.user]]`.
    #[serde(default, rename = "user")]
    pub users: Vec<ServeUser>,
    /// `[[serve.role]]`.
    #[serde(default, rename = "role")]
    pub roles: Vec<ServeRole>,
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
            users: Vec::new(),
            roles: Vec::new(),
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
}

fn default_listen() -> String {
    String::from("127.0.0.1:5432")
}

fn default_max_connections() -> usize {
    100
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
        if self.max_connections == 0 {
            return Err(String::from("[serve] max_connections must be at least 1"));
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
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
