//! `normalize_phone(text, default_country)`: a phone number in E.164 form (`+4930123456`).
//!
//! Spaces, dots, dashes, slashes, parentheses and an international trunk `(0)` are
//! dropped, and an extension
//! (`x12`, `ext. 12`) is cut off. A number starting with `+` or `00` keeps its country
//! code; otherwise it is a national number of `default_country` (an ISO 3166 alpha-2
//! code such as `'DE'`), whose leading trunk `0` is replaced by the country's calling code
//! (for `'US'` and `'CA'`, a leading `1` is the calling code itself). A result outside
//! E.164's 8 to 15 digits becomes NULL and is counted as a warning; an unknown country
//! code fails the statement.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::exec_err;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{FunctionWarnings, map_text_rows};

const NAME: &str = "normalize_phone";

/// ISO 3166 alpha-2 codes and their calling codes.
const CALLING_CODES: &[(&str, &str)] = &[
    ("AR", "54"),
    ("AT", "43"),
    ("AU", "61"),
    ("BE", "32"),
    ("BG", "359"),
    ("BR", "55"),
    ("CA", "1"),
    ("CH", "41"),
    ("CN", "86"),
    ("CZ", "420"),
    ("DE", "49"),
    ("DK", "45"),
    ("EE", "372"),
    ("ES", "34"),
    ("FI", "358"),
    ("FR", "33"),
    ("GB", "44"),
    ("GR", "30"),
    ("HR", "385"),
    ("HU", "36"),
    ("IE", "353"),
    ("IN", "91"),
    ("IS", "354"),
    ("IT", "39"),
    ("JP", "81"),
    ("KR", "82"),
    ("LI", "423"),
    ("LT", "370"),
    ("LU", "352"),
    ("LV", "371"),
    ("MT", "356"),
    ("MX", "52"),
    ("NL", "31"),
    ("NO", "47"),
    ("NZ", "64"),
    ("PL", "48"),
    ("PT", "351"),
    ("RO", "40"),
    ("SE", "46"),
    ("SG", "65"),
    ("SI", "386"),
    ("SK", "421"),
    ("TR", "90"),
    ("UA", "380"),
    ("US", "1"),
    ("ZA", "27"),
];

/// The `normalize_phone` SQL function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizePhone {
    signature: Signature,
    warnings: FunctionWarnings,
}

impl NormalizePhone {
    /// The function, counting numbers it cannot read in `warnings`.
    pub fn new(warnings: FunctionWarnings) -> Self {
        Self {
            signature: Signature::string(2, Volatility::Immutable),
            warnings,
        }
    }
}

impl ScalarUDFImpl for NormalizePhone {
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
            let country = values[1].trim().to_ascii_uppercase();
            let Some(calling_code) = calling_code(&country) else {
                return exec_err!(
                    "{NAME}: unknown country '{}': give an ISO 3166 alpha-2 code such as 'DE', 'GB' or 'US'",
                    values[1]
                );
            };
            let normalized = normalize(values[0], calling_code);
            if normalized.is_none() {
                self.warnings.record(NAME, values[0]);
            }
            Ok(normalized)
        })
    }
}

fn calling_code(country: &str) -> Option<&'static str> {
    CALLING_CODES
        .iter()
        .find(|(code, _)| *code == country)
        .map(|(_, calling)| *calling)
}

fn normalize(text: &str, calling_code: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let without_extension = ["ext", "x", "#"]
        .iter()
        .filter_map(|marker| lower.find(marker))
        .min()
        .map_or(lower.as_str(), |at| &lower[..at]);
    let trimmed = without_extension.replace("(0)", "");
    let mut digits = String::new();
    for c in trimmed.trim().chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if digits.is_empty() => digits.push(c),
            ' ' | '.' | '-' | '/' | '(' | ')' => {}
            _ => return None,
        }
    }
    let international = if let Some(rest) = digits.strip_prefix('+') {
        rest.to_string()
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else if calling_code == "1" {
        let national = digits.strip_prefix('1').filter(|_| digits.len() == 11);
        format!("1{}", national.unwrap_or(&digits))
    } else {
        let national = digits.strip_prefix('0').unwrap_or(&digits);
        format!("{calling_code}{national}")
    };
    // North American numbers always have ten digits after the calling code 1.
    let plausible = if international.starts_with('1') {
        international.len() == 11
    } else {
        (8..=15).contains(&international.len()) && !international.starts_with('0')
    };
    plausible.then(|| format!("+{international}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(text: &str, country: &str) -> Option<String> {
        normalize(text, calling_code(country).unwrap_or("0"))
    }

    #[test]
    fn national_and_international_forms() {
        assert_eq!(phone("030 / 123 456-7", "DE"), Some("+49301234567".into()));
        assert_eq!(
            phone("+49 (0)30 1234567", "GB"),
            Some("+49301234567".into())
        );
        assert_eq!(phone("0049 30 1234567", "FR"), Some("+49301234567".into()));
        assert_eq!(phone("(415) 555-0100", "US"), Some("+14155550100".into()));
        assert_eq!(
            phone("1-415-555-0100 ext. 12", "US"),
            Some("+14155550100".into())
        );
        assert_eq!(phone("020 7946 0958", "GB"), Some("+442079460958".into()));
    }

    #[test]
    fn implausible_numbers() {
        assert_eq!(phone("12", "DE"), None);
        assert_eq!(phone("call me", "DE"), None);
        assert_eq!(phone("+1234567890123456", "DE"), None);
        assert_eq!(phone("555-0100", "US"), None);
        assert_eq!(calling_code("XX"), None);
    }
}
