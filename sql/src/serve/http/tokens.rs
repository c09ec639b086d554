//! Who calls the HTTP API: `Authorization: Bearer TOKEN`, checked against the SHA-256 of
//! each `[[serve.token]]` (in constant time, so timing tells nothing about a near
//! miss), which models that client may use, and at what rate it may score.

use std::sync::Arc;
use std::time::Instant;

use lakescore_engine::config::{HttpConfig, ServeToken};
use sha2::{Digest, Sha256};

use super::errors::ApiError;
use super::quota::Quota;

/// The name requests without a token go by when `[serve.http] allow_anonymous` is set.
pub const ANONYMOUS: &str = "anonymous";

/// A client that presented a valid token (or none, where that is allowed).
#[derive(Debug, Clone)]
pub struct Client {
    /// Its name.
    pub name: String,
    models: Vec<String>,
    /// Its request rate, shared by every request it sends.
    quota: Option<Arc<Quota>>,
}

impl Client {
    /// True when the client may score and list model `name`.
    pub fn may_use(&self, name: &str) -> bool {
        self.models.iter().any(|m| m == "*" || m == name)
    }

    /// Counts one scoring request against the client's rate; 429 when it is over it.
    pub fn take_request(&self) -> Result<(), ApiError> {
        self.quota
            .as_ref()
            .map_or(Ok(()), |quota| quota.take(Instant::now()))
    }

    /// Refuses with 403 when the client may not use model `name`.
    pub fn check(&self, name: &str) -> Result<(), ApiError> {
        if self.may_use(name) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "client '{}' may not use model '{name}': add it to the models of its [[serve.token]]",
            self.name
        )))
    }
}

/// The API's clients.
#[derive(Debug)]
pub struct Tokens {
    known: Vec<([u8; 32], Client)>,
    anonymous: Option<Client>,
}

impl Tokens {
    /// The tokens of `[[serve.token]]`, and anonymous access when `http` allows it.
    pub fn new(tokens: &[ServeToken], http: &HttpConfig) -> Self {
        let known = tokens
            .iter()
            .filter_map(|token| {
                let digest = match (&token.secret, &token.secret_sha256) {
                    (Some(secret), _) => Sha256::digest(secret.as_str().as_bytes()).into(),
                    (None, Some(hex)) => from_hex(hex)?,
                    (None, None) => return None,
                };
                let client = Client {
                    name: token.name.clone(),
                    models: token.models.clone(),
                    quota: token
                        .requests_per_second
                        .map(|rate| Arc::new(Quota::new(&token.name, rate, token.burst))),
                };
                Some((digest, client))
            })
            .collect();
        let anonymous = http.allow_anonymous.then(|| Client {
            name: String::from(ANONYMOUS),
            models: vec![String::from("*")],
            quota: None,
        });
        Self { known, anonymous }
    }

    /// True when no request could ever be let in.
    pub fn admit_no_one(&self) -> bool {
        self.known.is_empty() && self.anonymous.is_none()
    }

    /// The client an `Authorization` header value belongs to.
    pub fn client(&self, authorization: Option<&str>) -> Result<Client, ApiError> {
        let Some(header) = authorization else {
            return self.anonymous.clone().ok_or_else(|| {
                ApiError::Unauthorized(String::from(
                    "send the client's token as Authorization: Bearer TOKEN",
                ))
            });
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::Unauthorized(String::from(
                    "the Authorization header must be Bearer TOKEN",
                ))
            })?;
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let mut found = None;
        for (known, client) in &self.known {
            // Every byte of every token is compared, match or not.
            let difference = known
                .iter()
                .zip(&digest)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = Some(client);
            }
        }
        found
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized(String::from("unknown token")))
    }
}

fn from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    (hex.len() == 64).then_some(digest)
}

/// A new random token and its SHA-256, for `lakescore serve --new-token`.
pub fn new_token() -> (String, String) {
    let token = format!(
        "lks_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let hash = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (token, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lakescore_engine::config::EnvString;

    fn token(name: &str, secret: &str, models: &[&str]) -> ServeToken {
        ServeToken {
            name: name.to_string(),
            secret: Some(EnvString(secret.to_string())),
            secret_sha256: None,
            models: models.iter().map(|m| m.to_string()).collect(),
            requests_per_second: None,
            burst: None,
        }
    }

    #[test]
    fn a_token_names_its_client_and_its_models() {
        let (secret, hash) = new_token();
        let hashed = ServeToken {
            name: String::from("crm"),
            secret: None,
            secret_sha256: Some(hash),
            models: vec![String::from("churn_risk")],
            requests_per_second: Some(1.0),
            burst: None,
        };
        let tokens = Tokens::new(
            &[hashed, token("bi", "0123456789abcdef-bi", &["*"])],
            &HttpConfig::default(),
        );
        let crm = tokens.client(Some(&format!("Bearer {secret}"))).unwrap();
        assert_eq!(crm.name, "crm");
        // One request a second, shared by every request the token sends.
        assert!(crm.take_request().is_ok());
        let again = tokens.client(Some(&format!("Bearer {secret}"))).unwrap();
        assert!(matches!(
            again.take_request(),
            Err(ApiError::Overloaded { .. })
        ));
        assert!(crm.check("churn_risk").is_ok());
        let refused = crm.check("ltv").unwrap_err().to_string();
        assert!(refused.contains("may not use model 'ltv'"), "{refused}");
        let bi = tokens.client(Some("Bearer 0123456789abcdef-bi")).unwrap();
        assert!(bi.may_use("ltv"));
        assert!((0..100).all(|_| bi.take_request().is_ok()));
        for wrong in [None, Some("Bearer nope"), Some("Basic abc"), Some("")] {
            assert!(matches!(
                tokens.client(wrong),
                Err(ApiError::Unauthorized(_))
            ));
        }
    }

    #[test]
    fn anonymous_requests_are_let_in_only_when_allowed() {
        let open = HttpConfig {
            allow_anonymous: true,
            ..HttpConfig::default()
        };
        assert_eq!(
            Tokens::new(&[], &open).client(None).unwrap().name,
            ANONYMOUS
        );
        let closed = Tokens::new(&[], &HttpConfig::default());
        assert!(closed.admit_no_one());
        assert!(closed.client(None).is_err());
    }
}
