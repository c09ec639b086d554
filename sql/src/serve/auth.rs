//! Who may connect: the `[[serve.user]]`s with SCRAM-SHA-256 passwords (given as
//! `${ENV}` secrets or as hashes from `lakescore serve --hash-password`), anonymous
//! connections only where `allow_anonymous = true`, TLS where `require_tls = true`, and a
//! warning in the log for every failed login with the count for that user and address.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::{ClientInfo, ErrorHandler};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::Sink;
use lakescore_engine::config::ServeConfig;
use lakescore_engine::hashing::hex;

use crate::error::{Error, Result};

/// SCRAM iterations of stored and derived passwords.
const ITERATIONS: usize = 4096;
/// The prefix of a password hash.
const HASH_PREFIX: &str = "scram-sha-256";

/// A user who may log in.
#[derive(Clone)]
struct Account {
    salt: Vec<u8>,
    salted_password: Vec<u8>,
    role: String,
}

/// The accounts of `[[serve.user]]` and the anonymous role.
#[derive(Clone)]
pub struct Users {
    accounts: HashMap<String, Account>,
    anonymous_role: Option<String>,
}

impl Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("names", &self.accounts.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Users {
    /// The users of `config`; a malformed `password_hash` is an error naming the user.
    pub fn new(config: &ServeConfig) -> Result<Self> {
        let mut accounts = HashMap::new();
        for user in &config.users {
            let (salt, salted_password) = match (&user.password, &user.password_hash) {
                (Some(password), _) => {
                    let salt: [u8; 16] = rand_salt();
                    let salted = gen_salted_password(password.as_str(), &salt, ITERATIONS);
                    (salt.to_vec(), salted)
                }
                (None, Some(hash)) => parse_hash(hash).ok_or_else(|| {
                    Error::Serve(format!(
                        "[[serve.user]] '{}': password_hash is not a hash from `lakescore serve --hash-password` (scram-sha-256$4096$SALT$KEY)",
                        user.name
                    ))
                })?,
                (None, None) => continue,
            };
            accounts.insert(
                user.name.clone(),
                Account {
                    salt,
                    salted_password,
                    role: user.role.clone(),
                },
            );
        }
        Ok(Self {
            accounts,
            anonymous_role: config
                .allow_anonymous
                .then(|| config.anonymous_role.clone())
                .flatten(),
        })
    }

    /// The role of a logged-in `user`.
    pub fn role_of(&self, user: &str) -> Option<&str> {
        match self.accounts.get(user) {
            Some(account) => Some(&account.role),
            None => self.anonymous_role.as_deref(),
        }
    }

    fn is_anonymous(&self, user: &str) -> bool {
        !self.accounts.contains_key(user) && self.anonymous_role.is_some()
    }
}

/// 16 random bytes (from the v4 UUID generator, which uses the OS's randomness).
fn rand_salt() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

/// `password` as a `password_hash` value.
pub fn hash_password(password: &str) -> String {
    let salt = rand_salt();
    let salted = gen_salted_password(password, &salt, ITERATIONS);
    format!("{HASH_PREFIX}${ITERATIONS}${}${}", hex(&salt), hex(&salted))
}

fn parse_hash(text: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = text.split('$');
    if parts.next()? != HASH_PREFIX || parts.next()?.parse::<usize>().ok()? != ITERATIONS {
        return None;
    }
    let salt = unhex(parts.next()?)?;
    let salted = unhex(parts.next()?)?;
    (parts.next().is_none() && salted.len() == 32).then_some((salt, salted))
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        match self.accounts.get(user) {
            Some(account) => Ok(Password::new(
                Some(account.salt.clone()),
                account.salted_password.clone(),
            )),
            // The same answer as a wrong password: names are not confirmed to strangers.
            None => Err(PgWireError::InvalidPassword(user.to_string())),
        }
    }
}

/// Lets anonymous users in without a password.
struct Anonymous;

impl NoopStartupHandler for Anonymous {}

/// One connection's login: TLS first where required, then SCRAM, or nothing for an
/// anonymous user where allowed.
pub struct Login {
    users: Arc<Users>,
    require_tls: bool,
    scram: SASLAuthStartupHandler<DefaultServerParameterProvider>,
}

impl Login {
    /// A fresh login for one connection.
    pub fn new(users: Arc<Users>, require_tls: bool) -> Self {
        let mut scram = ScramAuth::new(users.clone());
        scram.set_iterations(ITERATIONS);
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.scram_iterations = ITERATIONS;
        Self {
            users,
            require_tls,
            scram: SASLAuthStartupHandler::new(Arc::new(parameters)).with_scram(scram),
        }
    }
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(startup) = &message {
            if self.require_tls && !client.is_secure() {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".to_owned(),
                    "28000".to_owned(),
                    String::from(
                        "this server requires TLS: connect with sslmode=require (or verify-full)",
                    ),
                ))));
            }
            let user = startup.parameters.get("user").cloned().unwrap_or_default();
            if self.users.is_anonymous(&user) {
                return Anonymous.on_startup(client, message).await;
            }
        }
        self.scram.on_startup(client, message).await
    }
}

/// Logs failed logins with how many times the user failed from that address.
#[derive(Default)]
pub struct FailedLogins {
    counts: Mutex<HashMap<(String, std::net::IpAddr), u64>>,
}

impl ErrorHandler for FailedLogins {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::InvalidPassword(user) = error {
            let address = client.socket_addr().ip();
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            let failures = counts.entry((user.clone(), address)).or_insert(0);
            *failures += 1;
            tracing::warn!(
                user = user.as_str(),
                client = %address,
                failures = *failures,
                "failed login"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_and_are_salted() {
        let hash = hash_password("s3cret");
        let (salt, salted) = parse_hash(&hash).unwrap();
        assert_eq!(salted, gen_salted_password("s3cret", &salt, ITERATIONS));
        assert_ne!(hash, hash_password("s3cret"));
        assert!(parse_hash("md5abc").is_none());
        assert!(parse_hash("scram-sha-256$4096$zz$00").is_none());
    }
}
