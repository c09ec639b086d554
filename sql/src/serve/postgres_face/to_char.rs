//! `to_char(value, pattern)` with PostgreSQL's patterns, which BI tools generate for date
//! buckets (`to_char(scored_at, 'YYYY-MM')`, `'IYYY-"W"IW'`) and number labels
//! (`to_char(revenue, 'FM999,999,990.00')`). DataFusion's own `to_char` reads chrono
//! patterns, under which `'YYYY-MM'` is returned as written; the server replaces it with
//! this one, and `lakescore sql` keeps DataFusion's.
//!
//! Dates and timestamps: `YYYY YY IYYY MM Mon MON mon Month MONTH month DD DDD D ID Day DAY
//! day Dy DY dy HH HH12 HH24 MI SS MS US AM PM am pm Q WW IW TZ`, `FM` to drop padding,
//! `"text"` for literal text; a timestamp with a zone is shown in that zone. Numbers: `9`
//! (digit, or space), `0` (digit, or zero), `.`/`D` (decimal point), `,`/`G` (group
//! separator), `S`/`MI` (sign), `FM`; too few digits give `#` for every digit, as in
//! PostgreSQL.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use lakescore_engine::datafusion::arrow::array::timezone::Tz;
use lakescore_engine::datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use lakescore_engine::datafusion::arrow::compute::cast;
use lakescore_engine::datafusion::arrow::datatypes::{
    DataType, Float64Type, TimeUnit, TimestampMicrosecondType,
};
use lakescore_engine::datafusion::error::{DataFusionError, Result as DfResult};
use lakescore_engine::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use lakescore_engine::datafusion::prelude::SessionContext;

use super::shaped_like;

/// Registers `to_char` on `context`, replacing DataFusion's.
pub fn register(context: &SessionContext) {
    context.register_udf(ScalarUDF::new_from_impl(ToChar {
        signature: Signature::any(2, Volatility::Stable),
    }));
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ToChar {
    signature: Signature,
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arguments: &[DataType]) -> DfResult<DataType> {
        match &arguments[0] {
            DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Date64
            | DataType::Null
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => Ok(DataType::Utf8),
            other => Err(DataFusionError::Plan(format!(
                "to_char formats dates, timestamps and numbers, not {other}"
            ))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let values = args.args[0].to_array(rows)?;
        let patterns = cast(&args.args[1].to_array(rows)?, &DataType::Utf8)?;
        let patterns = patterns.as_string::<i32>();
        let mut formatted = StringBuilder::new();
        match values.data_type() {
            DataType::Timestamp(_, zone) => {
                let zone: Option<Tz> = match zone {
                    Some(name) => Some(name.parse().map_err(|_| {
                        DataFusionError::Execution(format!("to_char: unknown time zone {name}"))
                    })?),
                    None => None,
                };
                let micros = cast(&values, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
                let micros = micros.as_primitive::<TimestampMicrosecondType>();
                for row in 0..rows {
                    if micros.is_null(row) || patterns.is_null(row) {
                        formatted.append_null();
                        continue;
                    }
                    let utc =
                        DateTime::from_timestamp_micros(micros.value(row)).ok_or_else(|| {
                            DataFusionError::Execution(String::from(
                                "to_char: timestamp out of range",
                            ))
                        })?;
                    let (local, zone_name) = match zone {
                        Some(zone) => {
                            let local = utc.with_timezone(&zone);
                            (local.naive_local(), local.format("%Z").to_string())
                        }
                        None => (utc.naive_utc(), String::new()),
                    };
                    formatted.append_value(format_datetime(
                        &local,
                        &zone_name,
                        patterns.value(row),
                    ));
                }
            }
            DataType::Date32 | DataType::Date64 => {
                let dates = cast(&values, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
                let dates = dates.as_primitive::<TimestampMicrosecondType>();
                for row in 0..rows {
                    match DateTime::from_timestamp_micros(dates.value(row)) {
                        Some(at) if dates.is_valid(row) && patterns.is_valid(row) => formatted
                            .append_value(format_datetime(
                                &at.naive_utc(),
                                "",
                                patterns.value(row),
                            )),
                        _ => formatted.append_null(),
                    }
                }
            }
            _ => {
                let numbers = cast(&values, &DataType::Float64)?;
                let numbers = numbers.as_primitive::<Float64Type>();
                for row in 0..rows {
                    if numbers.is_null(row) || patterns.is_null(row) {
                        formatted.append_null();
                        continue;
                    }
                    formatted.append_value(format_number(numbers.value(row), patterns.value(row)));
                }
            }
        }
        let formatted: ArrayRef = Arc::new(formatted.finish());
        shaped_like(&args.args, formatted)
    }
}

/// The date and time fields, longest first so `HH24` wins over `HH`.
const DATE_FIELDS: [&str; 39] = [
    "MONTH", "Month", "month", "HH24", "HH12", "IYYY", "YYYY", "DAY", "Day", "day", "MON", "Mon",
    "mon", "DDD", "YY", "MM", "DD", "ID", "HH", "MI", "SS", "MS", "US", "AM", "PM", "am", "pm",
    "Q", "WW", "IW", "TZ", "DY", "Dy", "dy", "D", "A.M.", "P.M.", "a.m.", "p.m.",
];

/// `at` in PostgreSQL's `pattern`; `zone` is the abbreviation `TZ` writes.
fn format_datetime(at: &NaiveDateTime, zone: &str, pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut rest = pattern;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push_str(&quoted[..end]);
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        let (fill_mode, after_fm) = match rest.strip_prefix("FM") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let Some(field) = DATE_FIELDS.iter().find(|f| after_fm.starts_with(**f)) else {
            let mut characters = rest.chars();
            if let Some(c) = characters.next() {
                out.push(c);
            }
            rest = characters.as_str();
            continue;
        };
        out.push_str(&date_field(at, zone, field, fill_mode));
        rest = &after_fm[field.len()..];
    }
    out
}

/// One field of `at`; `fill_mode` (`FM`) drops leading zeros and padding.
fn date_field(at: &NaiveDateTime, zone: &str, field: &str, fill_mode: bool) -> String {
    let number = |value: u32, width: usize| {
        if fill_mode {
            value.to_string()
        } else {
            format!("{value:0width$}")
        }
    };
    let word = |text: String| {
        if fill_mode {
            text
        } else {
            format!("{text:<9}")
        }
    };
    let hour12 = match at.hour() % 12 {
        0 => 12,
        h => h,
    };
    let afternoon = at.hour() >= 12;
    // Month and day names take the pattern's case: MONTH, Month or month.
    let named = |format: &str| {
        let name = at.format(format).to_string();
        if field.bytes().all(|b| b.is_ascii_uppercase()) {
            name.to_uppercase()
        } else if field.bytes().all(|b| b.is_ascii_lowercase()) {
            name.to_lowercase()
        } else {
            name
        }
    };
    match field {
        "YYYY" => number(at.year().max(0) as u32, 4),
        "YY" => number(at.year().rem_euclid(100) as u32, 2),
        "IYYY" => number(at.iso_week().year().max(0) as u32, 4),
        "MM" => number(at.month(), 2),
        "MONTH" | "Month" | "month" => word(named("%B")),
        "MON" | "Mon" | "mon" => named("%b"),
        "DD" => number(at.day(), 2),
        "DDD" => number(at.ordinal(), 3),
        "D" => (at.weekday().num_days_from_sunday() + 1).to_string(),
        "ID" => at.weekday().number_from_monday().to_string(),
        "DAY" | "Day" | "day" => word(named("%A")),
        "DY" | "Dy" | "dy" => named("%a"),
        "HH" | "HH12" => number(hour12, 2),
        "HH24" => number(at.hour(), 2),
        "MI" => number(at.minute(), 2),
        "SS" => number(at.second(), 2),
        "MS" => number(at.nanosecond() / 1_000_000 % 1000, 3),
        "US" => number(at.nanosecond() / 1_000 % 1_000_000, 6),
        "AM" | "PM" => String::from(if afternoon { "PM" } else { "AM" }),
        "am" | "pm" => String::from(if afternoon { "pm" } else { "am" }),
        "A.M." | "P.M." => String::from(if afternoon { "P.M." } else { "A.M." }),
        "a.m." | "p.m." => String::from(if afternoon { "p.m." } else { "a.m." }),
        "Q" => ((at.month() - 1) / 3 + 1).to_string(),
        "WW" => number((at.ordinal() - 1) / 7 + 1, 2),
        "IW" => number(at.iso_week().week(), 2),
        "TZ" => zone.to_uppercase(),
        _ => String::new(),
    }
}

/// `value` in PostgreSQL's numeric `pattern`.
fn format_number(value: f64, pattern: &str) -> String {
    let fill_mode = pattern.contains("FM");
    let pattern = pattern.replace("FM", "");
    let trailing_sign = pattern.ends_with("MI");
    let plus_sign = pattern.starts_with('S');
    let body = pattern
        .trim_start_matches('S')
        .trim_end_matches("MI")
        .replace('D', ".")
        .replace('G', ",");
    let (whole_pattern, fraction_pattern) = match body.split_once('.') {
        Some((whole, fraction)) => (whole.to_string(), Some(fraction.to_string())),
        None => (body.clone(), None),
    };
    let is_digit = |c: &char| matches!(c, '9' | '0');
    let fraction_digits = fraction_pattern
        .as_ref()
        .map_or(0, |f| f.chars().filter(is_digit).count());
    let rounded = format!("{:.*}", fraction_digits, value.abs());
    let (whole_digits, fraction_text) = rounded
        .split_once('.')
        .map_or((rounded.as_str(), ""), |(whole, fraction)| {
            (whole, fraction)
        });
    let whole_digits: Vec<char> = whole_digits.trim_start_matches('0').chars().collect();
    let negative = value < 0.0 && rounded.chars().any(|c| matches!(c, '1'..='9'));
    let sign = match (negative, plus_sign) {
        (true, _) => '-',
        (false, true) => '+',
        (false, false) => ' ',
    };
    let slots = whole_pattern.chars().filter(is_digit).count();
    if whole_digits.len() > slots {
        let hashes: String = body
            .chars()
            .map(|c| if is_digit(&c) { '#' } else { c })
            .collect();
        return if fill_mode {
            hashes
        } else {
            format!(" {hashes}")
        };
    }
    // Digits fill the slots from the right; a slot left of them is a space, or a zero
    // from the pattern's first 0 on; a group separator shows once a digit has.
    let empty = slots - whole_digits.len();
    let first_zero = whole_pattern.find('0');
    let mut whole = String::new();
    let mut slot = 0;
    let mut shown = false;
    for (index, c) in whole_pattern.char_indices() {
        match c {
            '9' | '0' => {
                if slot >= empty {
                    whole.push(whole_digits[slot - empty]);
                    shown = true;
                } else if first_zero.is_some_and(|zero| index >= zero) {
                    whole.push('0');
                    shown = true;
                } else {
                    whole.push(' ');
                }
                slot += 1;
            }
            ',' => whole.push(if shown { ',' } else { ' ' }),
            other => whole.push(other),
        }
    }
    if !shown && fraction_pattern.is_none() && whole.ends_with(' ') {
        whole.pop();
        whole.push('0');
    }
    let fraction = fraction_pattern.map(|_| format!(".{fraction_text}"));
    let number = format!("{whole}{}", fraction.unwrap_or_default());
    if fill_mode {
        let digits = number.trim();
        return match (trailing_sign, sign) {
            (true, '-') => format!("{digits}-"),
            (_, ' ') | (true, _) => digits.to_string(),
            (false, sign) => format!("{sign}{digits}"),
        };
    }
    if trailing_sign {
        return format!("{number}{}", if negative { '-' } else { ' ' });
    }
    // The sign sits just left of the first digit shown.
    let padding = number.len() - number.trim_start().len();
    format!("{}{sign}{}", " ".repeat(padding), number.trim_start())
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    #[test]
    fn dates_read_as_postgresql_writes_them() {
        let at = NaiveDate::from_ymd_opt(2026, 3, 7)
            .unwrap()
            .and_hms_micro_opt(14, 5, 9, 123_456)
            .unwrap();
        for (pattern, expected) in [
            ("YYYY-MM", "2026-03"),
            ("YYYY-MM-DD HH24:MI:SS", "2026-03-07 14:05:09"),
            ("IYYY-\"W\"IW", "2026-W10"),
            ("Mon YYYY", "Mar 2026"),
            ("FMMonth FMDD, YYYY", "March 7, 2026"),
            ("Month", "March    "),
            ("Dy DD/MM/YY HH12:MI AM", "Sat 07/03/26 02:05 PM"),
            ("YYYY\"Q\"Q", "2026Q1"),
            ("HH24:MI:SS.MS", "14:05:09.123"),
            ("DDD D ID", "066 7 6"),
            ("MONTH|month|MON|mon", "MARCH    |march    |MAR|mar"),
            (
                "DAY|Day|day|DY|Dy|dy",
                "SATURDAY |Saturday |saturday |SAT|Sat|sat",
            ),
        ] {
            assert_eq!(format_datetime(&at, "", pattern), expected, "{pattern}");
        }
        assert_eq!(format_datetime(&at, "cet", "HH24 TZ"), "14 CET");
    }

    #[test]
    fn numbers_read_as_postgresql_writes_them() {
        for (value, pattern, expected) in [
            (1234.5, "FM999,999,990.00", "1,234.50"),
            (0.5, "FM990.00", "0.50"),
            (-1234.5, "FM999,999,990.00", "-1,234.50"),
            (42.0, "999", "  42"),
            (42.0, "000", " 042"),
            (-42.0, "999", " -42"),
            (42.0, "999MI", " 42 "),
            (-42.0, "999MI", " 42-"),
            (42.0, "S999", " +42"),
            (5.0, "0999", " 0005"),
            (0.0, "999", "   0"),
            (1234567.0, "9,999,999", " 1,234,567"),
            (1234.0, "9,999,999", "     1,234"),
            (12345.0, "999", " ###"),
            (1.23456, "FM9.999", "1.235"),
        ] {
            assert_eq!(format_number(value, pattern), expected, "{value} {pattern}");
        }
    }
}
