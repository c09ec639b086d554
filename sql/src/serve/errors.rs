//! What a client is told when something fails: errors in PostgreSQL's terms (a syntax
//! error is `42601`, never an internal error), storage locations hidden, and a failed
//! login counted, logged with the user name tried, and reported under that name.

use std::sync::Arc;

use datafusion_postgres::pgwire::api::{ClientInfo, ErrorHandler};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};

use super::auth::{Admission, user_of};

/// `error` as PostgreSQL would report it: a user error with its SQLSTATE.
pub fn plain_error(error: PgWireError) -> PgWireError {
    match error {
        PgWireError::ApiError(inner) => {
            let message = inner.to_string();
            let code = if message.starts_with("sql parser error") {
                "42601"
            } else {
                "XX000"
            };
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                code.to_owned(),
                message,
            )))
        }
        other => other,
    }
}

/// The error handler of every connection.
pub struct OutgoingErrors {
    admission: Arc<Admission>,
    hidden: Vec<String>,
}

impl OutgoingErrors {
    /// Hides each of `hidden` (the lakehouse root's URI and path) in messages.
    pub fn new(admission: Arc<Admission>, hidden: Vec<String>) -> Self {
        Self { admission, hidden }
    }

    fn hide(&self, mut message: String) -> String {
        for secret in &self.hidden {
            message = message.replace(secret.as_str(), "<lakehouse>");
        }
        message
    }
}

impl ErrorHandler for OutgoingErrors {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::InvalidPassword(_) = error {
            // SCRAM reports the name from its own message, which clients leave empty.
            let user = user_of(client);
            let address = client.socket_addr().ip();
            let (for_user, for_address) = self.admission.failed(&user, address);
            tracing::warn!(
                user = ?user,
                client = %address,
                failures = for_user,
                failures_from_address = for_address,
                "failed login"
            );
            *error = PgWireError::InvalidPassword(user);
            return;
        }
        // Taken out to be rewritten; the placeholder is replaced at once.
        let plain = plain_error(std::mem::replace(error, PgWireError::InvalidSASLState));
        *error = match plain {
            PgWireError::UserError(mut info) => {
                info.message = self.hide(std::mem::take(&mut info.message));
                PgWireError::UserError(info)
            }
            other => other,
        };
    }
}
