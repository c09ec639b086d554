//! `parse_decimal_locale(text, decimal_separator, thousands_separator)`: locale-formatted
//! numbers to `DECIMAL(38, 10)`.
//!
//! `parse_decimal_locale('1.234,56', ',', '.')` is 1234.56. The thousands separator may be
//! `''` (none); when it appears, groups must have three digits, so `'1.23,4'` is not read
//! as a number. A sign may lead (`-12,5`), trail as ERP exports write it (`12,5-`), or be
//! accounting parentheses (`(12,5)`). More than ten decimals are rounded half away from
//! zero. Text that is not such a number becomes NULL and is counted as a warning.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Decimal128Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::plan_err;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{FunctionWarnings, finish, text_arguments, text_at};

const NAME: &str = "parse_decimal_locale";

/// Precision of the decimals `parse_decimal_locale` returns.
pub const DECIMAL_PRECISION: u8 = 38;
/// Scale (digits after the point) of the decimals `parse_decimal_locale` returns.
pub const DECIMAL_SCALE: i8 = 10;

/// The `parse_decimal_locale` SQL function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ParseDecimalLocale {
    signature: Signature,
    warnings: FunctionWarnings,
}

impl ParseDecimalLocale {
    /// The function, counting unparseable text in `warnings`.
    pub fn new(warnings: FunctionWarnings) -> Self {
        Self {
            signature: Signature::string(3, Volatility::Immutable),
            warnings,
        }
    }
}

impl ScalarUDFImpl for ParseDecimalLocale {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (texts, all_scalars) = text_arguments(&args)?;
        let [values, decimal, thousands] = texts.as_slice() else {
            return plan_err!(
                "{NAME}(text, decimal_separator, thousands_separator) takes three arguments"
            );
        };
        let mut parsed = Vec::with_capacity(values.len());
        for row in 0..values.len() {
            let Some(text) = text_at(values, row) else {
                parsed.push(None);
                continue;
            };
            let separators = (text_at(decimal, row), text_at(thousands, row));
            let (Some(decimal), Some(thousands)) = separators else {
                parsed.push(None);
                continue;
            };
            let Some(decimal) = single_char(decimal) else {
                return plan_err!(
                    "{NAME}: the decimal separator must be one character, got '{decimal}'"
                );
            };
            let thousands = match thousands {
                "" => None,
                other => match single_char(other) {
                    Some(c) if c != decimal => Some(c),
                    _ => {
                        return plan_err!(
                            "{NAME}: the thousands separator must be '' or one character other than the decimal separator, got '{other}'"
                        );
                    }
                },
            };
            let value = parse_scaled(text.trim(), decimal, thousands);
            if value.is_none() {
                self.warnings.record(NAME, text);
            }
            parsed.push(value);
        }
        let array = Decimal128Array::from(parsed)
            .with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE)?;
        finish(Arc::new(array), all_scalars)
    }
}

fn single_char(text: &str) -> Option<char> {
    let mut chars = text.chars();
    let first = chars.next()?;
    chars.next().is_none().then_some(first)
}

/// The number in `text` times 10^DECIMAL_SCALE, or None when it is not a number.
fn parse_scaled(text: &str, decimal: char, thousands: Option<char>) -> Option<i128> {
    let (negative, body) = split_sign(text)?;
    let (integer, fraction) = match body.split_once(decimal) {
        Some((integer, fraction)) => (integer, fraction),
        None => (body, ""),
    };
    let integer_digits = ungroup(integer, thousands)?;
    if integer_digits.is_empty() && fraction.is_empty()
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let scale = DECIMAL_SCALE as usize;
    let mut scaled: i128 = 0;
    for digit in integer_digits
        .chars()
        .chain(fraction.chars().chain(std::iter::repeat('0')).take(scale))
    {
        scaled = scaled
            .checked_mul(10)?
            .checked_add(i128::from(digit.to_digit(10)?))?;
    }
    if fraction.len() > scale && fraction.as_bytes()[scale] >= b'5' {
        scaled = scaled.checked_add(1)?;
    }
    if scaled >= 10_i128.pow(u32::from(DECIMAL_PRECISION)) {
        return None;
    }
    Some(if negative { -scaled } else { scaled })
}

/// Whether the number is negative, and the text without its sign.
fn split_sign(text: &str) -> Option<(bool, &str)> {
    if let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        return Some((true, inner.trim()));
    }
    if let Some(rest) = text.strip_prefix('-') {
        return Some((true, rest));
    }
    if let Some(rest) = text.strip_suffix('-') {
        return Some((true, rest.trim_end()));
    }
    Some((false, text.strip_prefix('+').unwrap_or(text)))
}

/// The integer part's digits without thousands separators, checking the grouping.
fn ungroup(integer: &str, thousands: Option<char>) -> Option<String> {
    let groups: Vec<&str> = match thousands {
        Some(separator) => integer.split(separator).collect(),
        None => vec![integer],
    };
    let well_grouped = groups.len() == 1
        || (!groups[0].is_empty()
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3));
    let digits: String = groups.concat();
    (well_grouped && digits.chars().all(|c| c.is_ascii_digit())).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: i128 = 10_000_000_000;

    #[test]
    fn reads_locale_numbers() {
        assert_eq!(
            parse_scaled("1.234,56", ',', Some('.')),
            Some(123_456 * ONE / 100)
        );
        assert_eq!(
            parse_scaled("1,234.5", '.', Some(',')),
            Some(12_345 * ONE / 10)
        );
        assert_eq!(
            parse_scaled("1 234 567", ',', Some(' ')),
            Some(1_234_567 * ONE)
        );
        assert_eq!(
            parse_scaled("12,50-", ',', Some('.')),
            Some(-125 * ONE / 10)
        );
        assert_eq!(parse_scaled("(7)", '.', None), Some(-7 * ONE));
        assert_eq!(parse_scaled(",5", ',', None), Some(ONE / 2));
        assert_eq!(parse_scaled("0.000000000049", '.', None), Some(0));
        assert_eq!(parse_scaled("0.000000000051", '.', None), Some(1));
    }

    #[test]
    fn refuses_what_is_not_a_number() {
        assert_eq!(parse_scaled("1.23,4", ',', Some('.')), None);
        assert_eq!(parse_scaled("12.3.4", '.', None), None);
        assert_eq!(parse_scaled("", '.', None), None);
        assert_eq!(parse_scaled("-", '.', None), None);
        assert_eq!(parse_scaled("12 EUR", '.', None), None);
        assert_eq!(parse_scaled(&"9".repeat(29), '.', None), None);
    }
}
