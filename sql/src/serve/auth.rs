//! Who may connect: the `[[serve.user]]`s with SCRAM-SHA-256 passwords (given as
//! `${ENV}` secrets or as hashes from `lakescore serve --hash-password`), anonymous
//! connections only where `allow_anonymous = true`, TLS where `require_tls = true`.
//!
//! A login cannot be used to probe: an unknown user gets the same SCRAM exchange as a
//! known one (a decoy salt derived from a secret of this server process) and fails with
//! the same message as a wrong password. Failed logins are logged with the user name
//! tried, and slow down: after a few failures for a user or from an address, each new
//! attempt waits longer (doubling up to a ceiling) before it is answered. Logged-in
//! connections count against `max_connections` and the role's own `max_connections`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::{
    ClientInfo, ConnectionManager, METADATA_USER, PgWireConnectionState,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::Sink;
use lakescore_engine::config::ServeConfig;
use lakescore_engine::storage::hashing::{hex, sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::postgres_face::version::server_version;
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
    /// This process's secret for decoy salts and keys of unknown users.
    decoy_secret: [u8; 32],
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
            decoy_secret: sha256(&[rand_salt(), rand_salt()].concat()),
        })
    }

    /// A salt and key for `user`, who has no account: stable for the process (so repeated
    /// tries look like a real account's), and no password matches the key.
    fn decoy(&self, user: &str) -> Password {
        let derive = |purpose: &str| {
            sha256(&[&self.decoy_secret[..], purpose.as_bytes(), user.as_bytes()].concat())
        };
        Password::new(Some(derive("salt")[..16].to_vec()), derive("key").to_vec())
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
            // The same exchange as a wrong password: names are not confirmed to strangers.
            None => Ok(self.decoy(user)),
        }
    }
}

/// Lets anonymous users in without a password.
struct Anonymous {
    manager: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Anonymous {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.manager.clone())
    }
}

/// Who gets in and how many at once: the connection limits, server-wide and per role,
/// and the record of failed logins that slows guessing down.
pub struct Admission {
    connections: Arc<Semaphore>,
    per_role: HashMap<String, Arc<Semaphore>>,
    failures: Mutex<HashMap<Attempter, Failures>>,
}

/// Who failed to log in: a user name or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Attempter {
    User(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failures that are forgiven without delay.
const FREE_FAILURES: u32 = 3;
/// The first delay after them; each further failure doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(8);
/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// The permits a logged-in connection holds until it closes.
struct ConnectionPermits {
    _server: OwnedSemaphorePermit,
    _role: Option<OwnedSemaphorePermit>,
}

impl Admission {
    /// The limits of `config`.
    pub fn new(config: &ServeConfig) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            per_role: config
                .roles
                .iter()
                .filter_map(|role| {
                    let limit = role.max_connections?;
                    Some((role.name.clone(), Arc::new(Semaphore::new(limit))))
                })
                .collect(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// A connection slot for a user of `role`, or the error PostgreSQL sends when the
    /// server or the role is full.
    fn admit(&self, role: &str) -> PgWireResult<ConnectionPermits> {
        let full = |message: String| {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_owned(),
                "53300".to_owned(),
                message,
            )))
        };
        let server = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| full(String::from("sorry, too many clients already")))?;
        let role_permit = match self.per_role.get(role) {
            Some(slots) => Some(
                slots
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| full(format!("too many connections for role \"{role}\"")))?,
            ),
            None => None,
        };
        Ok(ConnectionPermits {
            _server: server,
            _role: role_permit,
        })
    }

    /// How long a login by `user` from `address` waits before it is answered.
    fn delay_for(&self, user: &str, address: IpAddr) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.retain(|_, f| f.last.elapsed() < FORGET_AFTER);
        let worst = [
            Attempter::User(user.to_string()),
            Attempter::Address(address),
        ]
        .iter()
        .filter_map(|who| failures.get(who).map(|f| f.count))
        .max()
        .unwrap_or(0);
        match worst.checked_sub(FREE_FAILURES) {
            None | Some(0) => Duration::ZERO,
            Some(extra) => FIRST_DELAY
                .saturating_mul(1u32 << extra.saturating_sub(1).min(16))
                .min(MAX_DELAY),
        }
    }

    /// Counts a failed login; returns the count for the user and for the address.
    pub fn failed(&self, user: &str, address: IpAddr) -> (u32, u32) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut bump = |who: Attempter| {
            let entry = failures.entry(who).or_insert(Failures {
                count: 0,
                last: Instant::now(),
            });
            entry.count += 1;
            entry.last = Instant::now();
            entry.count
        };
        (
            bump(Attempter::User(user.to_string())),
            bump(Attempter::Address(address)),
        )
    }

    /// Forgets the failures of `user` and `address` after a successful login.
    fn succeeded(&self, user: &str, address: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&Attempter::User(user.to_string()));
        failures.remove(&Attempter::Address(address));
    }
}

/// One connection's login: TLS first where required, the wait after failed logins, a
/// connection slot, then SCRAM, or nothing for an anonymous user where allowed.
pub struct Login {
    users: Arc<Users>,
    require_tls: bool,
    admission: Arc<Admission>,
    scram: SASLAuthStartupHandler<DefaultServerParameterProvider>,
    anonymous: Anonymous,
    /// The slot this connection holds among those still logging in; freed on success.
    pending: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Login {
    /// A fresh login for one connection, holding `pending` until it succeeds.
    pub fn new(
        users: Arc<Users>,
        require_tls: bool,
        admission: Arc<Admission>,
        manager: Arc<ConnectionManager>,
        pending: OwnedSemaphorePermit,
    ) -> Self {
        let mut scram = ScramAuth::new(users.clone());
        scram.set_iterations(ITERATIONS);
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.scram_iterations = ITERATIONS;
        parameters.server_version = server_version();
        Self {
            users,
            require_tls,
            admission,
            scram: SASLAuthStartupHandler::new(Arc::new(parameters))
                .with_scram(scram)
                .with_connection_manager(manager.clone()),
            anonymous: Anonymous { manager },
            pending: Mutex::new(Some(pending)),
        }
    }

    /// True once the client has logged in.
    pub fn logged_in(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    fn finish<C: ClientInfo>(&self, client: &C) {
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            self.admission
                .succeeded(&user_of(client), client.socket_addr().ip());
        }
    }
}

/// The user name the client logged in (or tries to log in) with.
pub fn user_of<C: ClientInfo + ?Sized>(client: &C) -> String {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default()
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
            let delay = self.admission.delay_for(&user, client.socket_addr().ip());
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(role) = self.users.role_of(&user) {
                client
                    .session_extensions()
                    .insert(self.admission.admit(role)?);
            }
            if self.users.is_anonymous(&user) {
                self.anonymous.on_startup(client, message).await?;
                self.finish(client);
                return Ok(());
            }
        }
        self.scram.on_startup(client, message).await?;
        self.finish(client);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_users_get_a_stable_decoy_that_no_password_opens() {
        let config = lakescore_engine::config::ProjectConfig::parse(
            "[project]\nname = \"p\"\n[[serve.role]]\nname = \"r\"\n",
        )
        .unwrap();
        let users = Users::new(&config.serve).unwrap();
        let decoy = users.decoy("mallory");
        assert_eq!(decoy.salt(), users.decoy("mallory").salt());
        assert_ne!(decoy.salt(), users.decoy("eve").salt());
        let salt = decoy.salt().unwrap();
        assert_eq!(salt.len(), 16);
        assert_ne!(
            decoy.password(),
            gen_salted_password("", salt, ITERATIONS).as_slice()
        );
    }

    #[test]
    fn failed_logins_slow_the_next_ones_down_until_one_succeeds() {
        let config =
            lakescore_engine::config::ProjectConfig::parse("[project]\nname = \"p\"\n").unwrap();
        let admission = Admission::new(&config.serve);
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let elsewhere: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert_eq!(admission.delay_for("ann", here), Duration::ZERO);
            admission.failed("ann", here);
        }
        assert_eq!(admission.delay_for("ann", here), Duration::ZERO);
        admission.failed("ann", here);
        assert_eq!(admission.delay_for("ann", here), FIRST_DELAY);
        // Another address trying the same user waits too, as does another user from here.
        assert_eq!(admission.delay_for("ann", elsewhere), FIRST_DELAY);
        assert_eq!(admission.delay_for("bob", here), FIRST_DELAY);
        admission.failed("ann", here);
        assert_eq!(admission.delay_for("ann", here), FIRST_DELAY * 2);
        for _ in 0..30 {
            admission.failed("ann", here);
        }
        assert_eq!(admission.delay_for("ann", here), MAX_DELAY);
        admission.succeeded("ann", here);
        assert_eq!(admission.delay_for("ann", here), Duration::ZERO);
    }

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
