//! Which column type changes keep every value: the guard that stops a write from
//! silently narrowing a column (a decimal cast to an integer drops its cents, a 64-bit
//! integer cast to a float rounds above 2^53) when rows are added to an existing table.

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};

/// The first column of `written` whose values `table` cannot hold unchanged, as
/// (column, written type, table type). Columns the table does not have are new columns
/// and are fine.
pub fn first_lossy_column(
    written: &Schema,
    table: &Schema,
) -> Option<(String, DataType, DataType)> {
    lossy_field(written.fields(), table.fields())
}

fn lossy_field(written: &Fields, table: &Fields) -> Option<(String, DataType, DataType)> {
    written.iter().find_map(|field| {
        let (_, stored) = table.find(field.name())?;
        let lossy = !holds_every_value(field.data_type(), stored.data_type());
        lossy.then(|| {
            (
                field.name().clone(),
                field.data_type().clone(),
                stored.data_type().clone(),
            )
        })
    })
}

/// True when every value of type `from` converts to type `to` without change.
pub fn holds_every_value(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to || from.is_null() {
        return true;
    }
    match (from, to) {
        (Utf8 | Utf8View | LargeUtf8, Utf8 | Utf8View | LargeUtf8) => true,
        (Binary | BinaryView | LargeBinary, Binary | BinaryView | LargeBinary) => true,
        (Dictionary(_, value), _) => holds_every_value(value, to),
        (_, Dictionary(_, value)) => holds_every_value(from, value),
        (Float16, Float32 | Float64) | (Float32, Float64) => true,
        (Date32, Date64) => true,
        (Timestamp(from_unit, from_zone), Timestamp(to_unit, to_zone)) => {
            from_zone.is_some() == to_zone.is_some() && unit_rank(to_unit) >= unit_rank(from_unit)
        }
        (Decimal128(p1, s1) | Decimal256(p1, s1), Decimal128(p2, s2) | Decimal256(p2, s2)) => {
            s2 >= s1 && i16::from(*p2) - i16::from(*s2) >= i16::from(*p1) - i16::from(*s1)
        }
        (List(a) | LargeList(a) | ListView(a), List(b) | LargeList(b) | ListView(b)) => {
            field_holds(a, b)
        }
        (Struct(a), Struct(b)) => {
            a.len() <= b.len()
                && a.iter().all(|f| b.find(f.name()).is_some())
                && lossy_field(a, b).is_none()
        }
        (Map(a, _), Map(b, _)) => field_holds(a, b),
        (from, to) if from.is_integer() => match integer_bits(from) {
            Some((bits, signed)) => integer_fits(bits, signed, to),
            None => false,
        },
        _ => false,
    }
}

fn field_holds(from: &Field, to: &Field) -> bool {
    holds_every_value(from.data_type(), to.data_type())
}

fn unit_rank(unit: &TimeUnit) -> u8 {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    }
}

/// Width and signedness of an integer type.
fn integer_bits(data_type: &DataType) -> Option<(u32, bool)> {
    use DataType::*;
    Some(match data_type {
        Int8 => (8, true),
        Int16 => (16, true),
        Int32 => (32, true),
        Int64 => (64, true),
        UInt8 => (8, false),
        UInt16 => (16, false),
        UInt32 => (32, false),
        UInt64 => (64, false),
        _ => return None,
    })
}

/// True when type `to` holds every integer of `bits` width and `signed`ness.
fn integer_fits(bits: u32, signed: bool, to: &DataType) -> bool {
    use DataType::*;
    // Digits needed for the largest magnitude of the integer type.
    let digits = match bits {
        8 => 3,
        16 => 5,
        32 => 10,
        _ if signed => 19,
        _ => 20,
    };
    match to {
        Decimal128(p, s) | Decimal256(p, s) => i16::from(*p) - i16::from(*s) >= digits,
        // Floats hold integers exactly up to their mantissa width.
        Float32 => bits < 24,
        Float64 => bits < 53,
        other => match integer_bits(other) {
            Some((to_bits, true)) => to_bits > bits || (signed && to_bits == bits),
            Some((to_bits, false)) => !signed && to_bits >= bits,
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_keeps_values_and_narrowing_does_not() {
        use DataType::*;
        let kept = [
            (Int32, Int64),
            (UInt32, Int64),
            (Int32, Float64),
            (Int64, Decimal128(19, 0)),
            (Decimal128(18, 2), Decimal128(32, 2)),
            (Decimal128(18, 2), Decimal128(20, 4)),
            (Utf8View, Utf8),
            (Float32, Float64),
            (Null, Int64),
        ];
        for (from, to) in kept {
            assert!(holds_every_value(&from, &to), "{from} -> {to}");
        }
        let lost = [
            (Decimal128(32, 2), Int64),
            (Decimal128(18, 2), Decimal128(18, 1)),
            (Decimal128(20, 2), Decimal128(18, 2)),
            (Int64, Float64),
            (Int64, Int32),
            (Int64, UInt64),
            (Float64, Int64),
            (Float64, Float32),
            (Utf8, Int64),
            (Int64, Decimal128(18, 0)),
            (
                Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                Timestamp(TimeUnit::Microsecond, None),
            ),
            (
                Timestamp(TimeUnit::Nanosecond, None),
                Timestamp(TimeUnit::Microsecond, None),
            ),
        ];
        for (from, to) in lost {
            assert!(!holds_every_value(&from, &to), "{from} -> {to}");
        }
    }

    #[test]
    fn the_first_narrowed_column_is_named_with_both_types() {
        let table = Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("total", DataType::Int64, true),
        ]);
        let written = Schema::new(vec![
            Field::new("k", DataType::Utf8View, true),
            Field::new("total", DataType::Decimal128(32, 2), true),
            Field::new("added", DataType::Float64, true),
        ]);
        assert_eq!(
            first_lossy_column(&written, &table),
            Some((
                String::from("total"),
                DataType::Decimal128(32, 2),
                DataType::Int64
            ))
        );
        assert_eq!(first_lossy_column(&table, &table), None);
    }
}
