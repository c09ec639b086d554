//! `hash_pii(text)`: a salted SHA-256 of personal data, as 64 hex characters.
//!
//! Lets tables keep a joinable key for a person (an email, a phone number) without the
//! value itself. The salt comes from `pii_salt` in the project's `[functions]` section
//! (usually `"${LAKESCORE_PII_SALT}"`, expanded when the function runs) or, when that is
//! not set, from the
//! `LAKESCORE_PII_SALT` environment variable; it is never built in, so hashes cannot be
//! reversed with a public dictionary. Without a salt the statement fails. Normalize
//! first (`hash_pii(normalize_email(email))`) so spellings of one value hash alike.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::exec_err;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sha2::{Digest, Sha256};

use super::map_text_rows;
use crate::config::expand_env_vars;
use crate::storage::hashing::hex;

const NAME: &str = "hash_pii";

/// The environment variable holding the salt when the project file sets none.
pub const PII_SALT_VARIABLE: &str = "LAKESCORE_PII_SALT";

/// The `hash_pii` SQL function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HashPii {
    signature: Signature,
    configured_salt: Option<String>,
}

impl HashPii {
    /// The function with the project's salt, if it sets one.
    pub fn new(configured_salt: Option<String>) -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
            configured_salt,
        }
    }

    fn salt(&self) -> DfResult<String> {
        let configured = match &self.configured_salt {
            Some(raw) => match expand_env_vars(raw) {
                Ok(salt) => Some(salt),
                Err(problem) => return exec_err!("{NAME}: pii_salt in [functions]: {problem}"),
            },
            None => None,
        };
        let salt = configured
            .or_else(|| std::env::var(PII_SALT_VARIABLE).ok())
            .filter(|salt| !salt.is_empty());
        match salt {
            Some(salt) => Ok(salt),
            None => exec_err!(
                "{NAME} needs a salt: set pii_salt in the [functions] section of lakescore.toml (e.g. pii_salt = \"${{{PII_SALT_VARIABLE}}}\") or the {PII_SALT_VARIABLE} environment variable"
            ),
        }
    }
}

impl ScalarUDFImpl for HashPii {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let salt = self.salt()?;
        map_text_rows(&args, |values| Ok(Some(salted_hash(&salt, values[0]))))
    }
}

fn salted_hash(salt: &str, text: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update([0]);
    hasher.update(text.as_bytes());
    hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salt_changes_the_hash() {
        let a = salted_hash("salt-a", "ann@example.com");
        assert_eq!(a.len(), 64);
        assert_eq!(a, salted_hash("salt-a", "ann@example.com"));
        assert_ne!(a, salted_hash("salt-b", "ann@example.com"));
        assert_ne!(a, salted_hash("salt-a", "bob@example.com"));
    }
}
