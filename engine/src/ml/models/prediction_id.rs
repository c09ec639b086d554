//! The `prediction_id` of a scored row, computed in one pass over a batch.
//!
//! A prediction id is the first 128 bits of the SHA-256 of
//! `model|version|input table|input version|key…` (each key as text, NULL as empty), as
//! 32 hex digits, so the same row scored by the same model version from the same input
//! version always gets the same id, on any machine. 128 bits make a collision among even
//! billions of predictions vanishingly unlikely, at half the bytes of the full digest
//! (which was most of a scored table's size: ids do not compress). The constant
//! prefix is hashed once per batch and each row continues from a copy of that state, and
//! the hex digits are written straight into the output buffer: no string is built per row.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sha2::{Digest, Sha256};

/// The function's name in the scoring statement.
pub const PREDICTION_ID: &str = "lakescore_prediction_id";

/// `lakescore_prediction_id(prefix, key, ...)`: the first 128 bits of the SHA-256 of the
/// prefix and the keys, joined by `|`, in hex.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PredictionId {
    signature: Signature,
}

/// The function, to register in the session that scores.
pub fn prediction_id_function() -> ScalarUDF {
    ScalarUDF::new_from_impl(PredictionId {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

impl ScalarUDFImpl for PredictionId {
    fn name(&self) -> &str {
        PREDICTION_ID
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let Some((ColumnarValue::Scalar(prefix), keys)) = args.args.split_first() else {
            return plan_err!("{PREDICTION_ID} takes a text prefix, then the keys");
        };
        let prefix = match prefix {
            ScalarValue::Utf8(Some(text))
            | ScalarValue::Utf8View(Some(text))
            | ScalarValue::LargeUtf8(Some(text)) => text,
            other => return plan_err!("{PREDICTION_ID}: the prefix must be text, not {other}"),
        };
        let keys: Vec<ArrayRef> = keys
            .iter()
            .map(|key| cast(&key.to_array(rows)?, &DataType::Utf8).map_err(Into::into))
            .collect::<DfResult<_>>()?;
        let keys: Vec<&StringArray> = keys.iter().map(|key| key.as_string::<i32>()).collect();
        let mut prefixed = Sha256::new();
        prefixed.update(prefix.as_bytes());
        let mut ids = StringBuilder::with_capacity(rows, rows * ID_DIGITS);
        let mut hex = [0u8; ID_DIGITS];
        for row in 0..rows {
            let mut hasher = prefixed.clone();
            for key in &keys {
                hasher.update(b"|");
                if key.is_valid(row) {
                    hasher.update(key.value(row).as_bytes());
                }
            }
            // Two digits per byte: the digest's first ID_DIGITS / 2 bytes.
            for (pair, byte) in hex.chunks_exact_mut(2).zip(hasher.finalize().iter()) {
                pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
                pair[1] = HEX_DIGITS[usize::from(byte & 0xF)];
            }
            // Hex digits are ASCII.
            ids.append_value(std::str::from_utf8(&hex).unwrap_or_default());
        }
        Ok(ColumnarValue::Array(Arc::new(ids.finish())))
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Hex digits of an id: 128 bits.
const ID_DIGITS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn ids_are_the_first_128_bits_of_the_sha256_of_the_prefix_and_keys_joined_by_bars() {
        let context = SessionContext::new();
        context.register_udf(prediction_id_function());
        let frame = context
            .sql(
                "SELECT lakescore_prediction_id('churn|2|curated.customers|5', id, region) AS fast, \
                 left(encode(sha256(concat_ws('|', 'churn', '2', 'curated.customers', '5', \
                 coalesce(CAST(id AS VARCHAR), ''), coalesce(region, ''))), 'hex'), 32) AS reference \
                 FROM (VALUES (1, 'north'), (22, NULL), (NULL, 'süd')) AS t(id, region)",
            )
            .await
            .unwrap();
        let batches = frame.collect().await.unwrap();
        let batch = &batches[0];
        let fast = batch.column(0).as_string::<i32>();
        let reference = batch.column(1).as_string::<i32>();
        assert_eq!(fast.len(), 3);
        for row in 0..3 {
            assert_eq!(fast.value(row), reference.value(row));
        }
        assert_eq!(
            fast.value(0),
            &crate::storage::hashing::sha256_hex(b"churn|2|curated.customers|5|1|north")[..32]
        );
        assert_eq!(fast.value(0), "4c39b07fe529553cc29ab1f20cc44d9d");
    }
}
