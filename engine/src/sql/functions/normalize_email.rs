//! `normalize_email(text)`: an email address in one canonical spelling.
//!
//! Surrounding whitespace and angle brackets (`"Ann <ANN@Example.com>"` keeps only the
//! address) are removed and the address is lower-cased, so the same person matches across
//! systems. Text that is not `local@domain.tld` (one `@`, no spaces, a dot in the domain)
//! becomes NULL and is counted as a warning.

use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{FunctionWarnings, map_text_rows};

const NAME: &str = "normalize_email";

/// The `normalize_email` SQL function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizeEmail {
    signature: Signature,
    warnings: FunctionWarnings,
}

impl NormalizeEmail {
    /// The function, counting addresses it cannot read in `warnings`.
    pub fn new(warnings: FunctionWarnings) -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
            warnings,
        }
    }
}

impl ScalarUDFImpl for NormalizeEmail {
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
        map_text_rows(&args, |values| {
            let normalized = normalize(values[0]);
            if normalized.is_none() {
                self.warnings.record(NAME, values[0]);
            }
            Ok(normalized)
        })
    }
}

fn normalize(text: &str) -> Option<String> {
    let text = text.trim();
    let address = match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    };
    let address = address.trim().to_lowercase();
    let (local, domain) = address.split_once('@')?;
    let valid = !local.is_empty()
        && !domain.contains('@')
        && !address.chars().any(char::is_whitespace)
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-'))
        && domain.contains('.');
    valid.then_some(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_spelling() {
        assert_eq!(
            normalize("  Ann.Lee@Example.COM "),
            Some("ann.lee@example.com".into())
        );
        assert_eq!(
            normalize("Ann Lee <ANN@example.de>"),
            Some("ann@example.de".into())
        );
    }

    #[test]
    fn not_addresses() {
        for bad in [
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "a@b@c.de",
            "ann@example..com",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
