//! Functions whose output can be far larger than their input (`repeat`, `lpad`, `rpad`)
//! allocate outside the memory pool, so a single call could take the whole machine. In
//! the server's sessions they are wrapped: a call that would build more than the query's
//! memory limit fails before it allocates, with the same error as the pool's.

use std::sync::Arc;

use lakescore_engine::datafusion::arrow::array::{Array, AsArray};
use lakescore_engine::datafusion::arrow::compute::{cast, kernels::length::length};
use lakescore_engine::datafusion::arrow::datatypes::FieldRef;
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Int64Type};
use lakescore_engine::datafusion::common::DataFusionError;
use lakescore_engine::datafusion::error::Result as DfResult;
use lakescore_engine::datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use lakescore_engine::datafusion::prelude::SessionContext;

use super::limits::human_bytes;

/// The functions wrapped, and how each one's output size is found: `repeat(text, n)` is
/// `len(text) * n` bytes, `lpad`/`rpad(text, n)` at most `4 * n` (UTF-8).
const AMPLIFIERS: [(&str, Amplifier); 3] = [
    ("repeat", Amplifier::Repeat),
    ("lpad", Amplifier::Pad),
    ("rpad", Amplifier::Pad),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Amplifier {
    Repeat,
    Pad,
}

/// Replaces `context`'s amplifying functions with ones that refuse to build more than
/// `limit` bytes in one call.
pub fn bound(context: &SessionContext, limit: usize) {
    for (name, amplifier) in AMPLIFIERS {
        if let Some(inner) = context.state().scalar_functions().get(name).cloned() {
            context.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner,
                amplifier,
                limit,
            }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    amplifier: Amplifier,
    limit: usize,
}

impl Bounded {
    /// Bytes the call would build for `args` over `rows` rows.
    fn requested(&self, args: &[ColumnarValue], rows: usize) -> DfResult<u128> {
        let (Some(text), Some(count)) = (args.first(), args.get(1)) else {
            return Ok(0);
        };
        let counts = cast(&count.to_array(rows)?, &DataType::Int64)?;
        let counts = counts.as_primitive::<Int64Type>();
        let widths = match self.amplifier {
            Amplifier::Repeat => {
                let lengths = cast(
                    &length(&cast(&text.to_array(rows)?, &DataType::LargeUtf8)?)?,
                    &DataType::Int64,
                )?;
                Some(lengths.as_primitive::<Int64Type>().clone())
            }
            Amplifier::Pad => None,
        };
        Ok((0..counts.len())
            .filter(|&row| counts.is_valid(row))
            .map(|row| {
                let count = counts.value(row).max(0) as u128;
                let width = match &widths {
                    Some(widths) if widths.is_valid(row) => widths.value(row).max(0) as u128,
                    Some(_) => 0,
                    None => 4,
                };
                count * width
            })
            .sum())
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let requested = self.requested(&args.args, args.number_rows)?;
        if requested > self.limit as u128 {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would build {} at once, over the query's {}",
                self.inner.name(),
                human_bytes(usize::try_from(requested).unwrap_or(usize::MAX)),
                human_bytes(self.limit)
            )));
        }
        self.inner.invoke_with_args(args)
    }
}
