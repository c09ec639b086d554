//! lakescore's SQL functions: one struct per function, each implementing DataFusion's
//! `ScalarUDFImpl`, all gathered by [`all_functions`] so every session (the CLI, SQL
//! models, the wire server) registers the same list.
//!
//! The normalization functions turn the text of raw extracts into typed, comparable
//! values. Each one returns NULL for a NULL input. For input that cannot be normalized a
//! function either returns NULL and counts a warning in the session's
//! [`FunctionWarnings`] (parsing and normalizing functions, so one bad value does not fail
//! a whole model; pair them with a `not_null` data test to make it fatal), or fails the
//! statement (configuration mistakes such as a missing salt or an unknown currency, which
//! would otherwise silently produce wrong numbers).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};

use crate::config::FunctionsConfig;

mod hash_pii;
mod normalize_email;
mod normalize_phone;
mod parse_decimal_locale;
mod parse_timestamp_any;
mod to_currency;

pub use hash_pii::{HashPii, PII_SALT_VARIABLE};
pub use normalize_email::NormalizeEmail;
pub use normalize_phone::NormalizePhone;
pub use parse_decimal_locale::{DECIMAL_PRECISION, DECIMAL_SCALE, ParseDecimalLocale};
pub use parse_timestamp_any::{PARSE_TIMESTAMP_ANY, ParseTimestampAny};
pub use to_currency::{ExchangeRates, ToCurrency};

/// Every lakescore SQL function of the SQL layer, configured from the project's
/// `[functions]` section and reporting bad input to `warnings` (`predict` comes from the
/// model layer, through a session extension).
pub fn all_functions(
    config: &FunctionsConfig,
    warnings: &FunctionWarnings,
) -> impl Iterator<Item = ScalarUDF> + use<> {
    [
        ScalarUDF::from(ParseTimestampAny::new(warnings.clone())),
        ScalarUDF::from(ParseDecimalLocale::new(warnings.clone())),
        ScalarUDF::from(NormalizeEmail::new(warnings.clone())),
        ScalarUDF::from(NormalizePhone::new(warnings.clone())),
        ScalarUDF::from(HashPii::new(config.pii_salt.clone())),
        ScalarUDF::from(ToCurrency::new(ExchangeRates::from_config(config))),
    ]
    .into_iter()
}

/// Values that a function could not normalize and returned as NULL, counted per function.
///
/// One counter is shared by all functions of a session; callers [`take`](Self::take) the
/// counts after a statement and report them.
#[derive(Debug, Clone, Default)]
pub struct FunctionWarnings {
    counts: Arc<Mutex<BTreeMap<&'static str, FunctionWarning>>>,
}

/// What one function could not normalize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionWarning {
    /// The function's SQL name.
    pub function: &'static str,
    /// How many values became NULL.
    pub count: u64,
    /// The first such value, as it was given.
    pub example: String,
}

impl std::fmt::Display for FunctionWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} value(s) could not be normalized and became NULL, e.g. '{}'",
            self.function, self.count, self.example
        )
    }
}

impl FunctionWarnings {
    /// Counts one value `function` could not normalize.
    pub fn record(&self, function: &'static str, value: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .entry(function)
            .or_insert_with(|| FunctionWarning {
                function,
                count: 0,
                example: value.chars().take(80).collect(),
            })
            .count += 1;
    }

    /// The warnings counted since the last call, which resets them.
    pub fn take(&self) -> Vec<FunctionWarning> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *counts).into_values().collect()
    }
}

/// Sessions compare functions by name and settings; the shared counter is not a setting.
impl PartialEq for FunctionWarnings {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for FunctionWarnings {}

impl Hash for FunctionWarnings {
    fn hash<H: Hasher>(&self, _state: &mut H) {}
}

/// The arguments as text arrays of one length, and whether they were all scalars.
pub(crate) fn text_arguments(args: &ScalarFunctionArgs) -> DfResult<(Vec<StringArray>, bool)> {
    let all_scalars = args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let texts = arrays
        .iter()
        .map(|array| {
            let text = cast(array, &DataType::Utf8)?;
            Ok(text
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .unwrap_or_else(|| StringArray::new_null(array.len())))
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok((texts, all_scalars))
}

/// Wraps a result array as the function's return value: a scalar when every argument was.
pub(crate) fn finish(result: ArrayRef, all_scalars: bool) -> DfResult<ColumnarValue> {
    if all_scalars && result.len() == 1 {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &result, 0,
        )?))
    } else {
        Ok(ColumnarValue::Array(result))
    }
}

/// Maps each row to text with `normalize`, which gets the row's argument values; a NULL in
/// any argument gives NULL without calling it.
pub(crate) fn map_text_rows(
    args: &ScalarFunctionArgs,
    mut normalize: impl FnMut(&[&str]) -> DfResult<Option<String>>,
) -> DfResult<ColumnarValue> {
    let (texts, all_scalars) = text_arguments(args)?;
    let rows = texts.first().map_or(0, Array::len);
    let mut values = Vec::with_capacity(texts.len());
    let mut result = Vec::with_capacity(rows);
    for row in 0..rows {
        values.clear();
        values.extend(texts.iter().map_while(|array| text_at(array, row)));
        result.push(if values.len() == texts.len() {
            normalize(&values)?
        } else {
            None
        });
    }
    finish(Arc::new(StringArray::from(result)), all_scalars)
}

/// The value of row `row` in `array`, or None when it is NULL.
pub(crate) fn text_at(array: &StringArray, row: usize) -> Option<&str> {
    array.is_valid(row).then(|| array.value(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_count_per_function_and_reset_when_taken() {
        let warnings = FunctionWarnings::default();
        warnings.record("normalize_email", "not-an-email");
        warnings.record("normalize_email", "also bad");
        warnings.record("parse_decimal_locale", "1.2.3");
        let taken = warnings.take();
        assert_eq!(
            taken,
            vec![
                FunctionWarning {
                    function: "normalize_email",
                    count: 2,
                    example: "not-an-email".into()
                },
                FunctionWarning {
                    function: "parse_decimal_locale",
                    count: 1,
                    example: "1.2.3".into()
                },
            ]
        );
        assert!(warnings.take().is_empty());
    }
}
