//! The Arrow types every Delta reader takes. Delta has no unsigned integers and keeps
//! timestamps in microseconds, zoned ones in UTC; a column of another type is written as
//! the Delta type that holds all of its values (nanoseconds are truncated, as Delta
//! requires), so polars, Spark and the deltalake Python package read lakescore's tables
//! without a type mismatch.

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast};

use crate::error::Result;

/// The time zone of every zoned timestamp lakescore writes.
const UTC: &str = "UTC";

/// `plan` with every column whose type Delta does not have cast to the Delta type that
/// holds its values; `plan` itself when every column already has a Delta type.
pub fn with_delta_types(plan: LogicalPlan) -> Result<LogicalPlan> {
    let changes = plan
        .schema()
        .iter()
        .any(|(_, field)| delta_type(field.data_type()).is_some());
    if !changes {
        return Ok(plan);
    }
    let columns: Vec<Expr> = plan
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::from((qualifier, field)));
            match delta_type(field.data_type()) {
                Some(delta) => cast(column, delta).alias(field.name()),
                None => column,
            }
        })
        .collect();
    Ok(LogicalPlanBuilder::from(plan).project(columns)?.build()?)
}

/// The Delta type to write a column of `data_type` as, or None when it is one already.
pub fn delta_type(data_type: &DataType) -> Option<DataType> {
    use DataType::*;
    match data_type {
        UInt8 => Some(Int16),
        UInt16 => Some(Int32),
        UInt32 => Some(Int64),
        UInt64 => Some(Decimal128(20, 0)),
        Timestamp(TimeUnit::Microsecond, Some(zone)) if zone.eq_ignore_ascii_case(UTC) => None,
        Timestamp(_, Some(_)) => Some(Timestamp(TimeUnit::Microsecond, Some(UTC.into()))),
        // Delta keeps microseconds: nanoseconds are truncated, coarser units widened.
        Timestamp(TimeUnit::Microsecond, None) => None,
        Timestamp(_, None) => Some(Timestamp(TimeUnit::Microsecond, None)),
        List(item) => delta_type(item.data_type()).map(|t| List(with_type(item, t).into())),
        LargeList(item) => {
            delta_type(item.data_type()).map(|t| LargeList(with_type(item, t).into()))
        }
        Struct(fields) => {
            let changed = fields.iter().any(|f| delta_type(f.data_type()).is_some());
            changed.then(|| {
                Struct(
                    fields
                        .iter()
                        .map(|f| match delta_type(f.data_type()) {
                            Some(t) => with_type(f, t),
                            None => f.as_ref().clone(),
                        })
                        .collect(),
                )
            })
        }
        _ => None,
    }
}

fn with_type(field: &Field, data_type: DataType) -> Field {
    field.clone().with_data_type(data_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::lossless::holds_every_value;

    #[test]
    fn unsigned_and_zoned_columns_become_delta_types_that_hold_their_values() {
        use DataType::*;
        let utc = Timestamp(TimeUnit::Microsecond, Some(UTC.into()));
        let cases = [
            (UInt8, Some(Int16)),
            (UInt16, Some(Int32)),
            (UInt32, Some(Int64)),
            (UInt64, Some(Decimal128(20, 0))),
            (
                Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                Some(utc.clone()),
            ),
            (
                Timestamp(TimeUnit::Second, Some("Europe/Berlin".into())),
                Some(utc.clone()),
            ),
            (utc.clone(), None),
            (Timestamp(TimeUnit::Microsecond, None), None),
            (
                Timestamp(TimeUnit::Millisecond, None),
                Some(Timestamp(TimeUnit::Microsecond, None)),
            ),
            (Int64, None),
            (Utf8, None),
        ];
        for (from, expected) in cases {
            assert_eq!(delta_type(&from), expected, "{from}");
            if let Some(to) =
                expected.filter(|_| !matches!(from, Timestamp(TimeUnit::Nanosecond, _)))
            {
                assert!(holds_every_value(&from, &to), "{from} -> {to}");
            }
        }
        let nested = List(
            Field::new(
                "item",
                Struct(vec![Field::new("n", UInt64, true)].into()),
                true,
            )
            .into(),
        );
        assert_eq!(
            delta_type(&nested),
            Some(List(
                Field::new(
                    "item",
                    Struct(vec![Field::new("n", Decimal128(20, 0), true)].into()),
                    true
                )
                .into()
            ))
        );
    }
}
