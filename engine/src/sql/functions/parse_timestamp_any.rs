//! `parse_timestamp_any(text, format [, format ...])`: text to a UTC timestamp, trying
//! each format in turn.
//!
//! A format is a chrono `strftime` pattern (`'%d.%m.%Y %H:%M'`) or one of the names
//! `'iso8601'` (RFC 3339, with or without a zone, `T` or space), `'unix'` (seconds since
//! 1970) and `'unix_ms'`. A pattern with `%z` or `%:z` uses the offset in the text; other
//! patterns read the text as UTC; a date-only pattern gives midnight UTC. Text that no
//! format matches becomes NULL and is counted as a warning.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::plan_err;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{FunctionWarnings, finish, text_arguments, text_at};

/// The function's SQL name.
pub const PARSE_TIMESTAMP_ANY: &str = "parse_timestamp_any";

/// The `parse_timestamp_any` SQL function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ParseTimestampAny {
    signature: Signature,
    warnings: FunctionWarnings,
}

impl ParseTimestampAny {
    /// The function, counting unparseable text in `warnings`.
    pub fn new(warnings: FunctionWarnings) -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
            warnings,
        }
    }
}

impl ScalarUDFImpl for ParseTimestampAny {
    fn name(&self) -> &str {
        PARSE_TIMESTAMP_ANY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        if arg_types.len() < 2 {
            return plan_err!(
                "{PARSE_TIMESTAMP_ANY}(text, format [, format ...]) needs the text and at least one format, e.g. {PARSE_TIMESTAMP_ANY}(invoice_date, '%d.%m.%Y')"
            );
        }
        if let Some(bad) = arg_types.iter().find(|t| !is_text_or_null(t)) {
            return plan_err!(
                "{PARSE_TIMESTAMP_ANY} takes text arguments, got {bad}: cast the value to text first"
            );
        }
        Ok(timestamp_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (texts, all_scalars) = text_arguments(&args)?;
        let (values, formats) = texts.split_at(1);
        let values = &values[0];
        let parsed = (0..values.len()).map(|row| {
            let text = text_at(values, row)?;
            let row_formats = formats.iter().filter_map(|f| text_at(f, row));
            let micros = parse_any(text.trim(), row_formats);
            if micros.is_none() {
                self.warnings.record(PARSE_TIMESTAMP_ANY, text);
            }
            micros
        });
        let array = TimestampMicrosecondArray::from_iter(parsed).with_timezone("UTC");
        finish(Arc::new(array), all_scalars)
    }
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub(super) fn is_text_or_null(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null
    )
}

/// Microseconds since 1970 (UTC) from the first format that reads all of `text`.
fn parse_any<'a>(text: &str, formats: impl Iterator<Item = &'a str>) -> Option<i64> {
    formats
        .filter_map(|format| parse_with(text, format))
        .next()
        .map(|instant| instant.timestamp_micros())
}

fn parse_with(text: &str, format: &str) -> Option<DateTime<Utc>> {
    match format {
        "iso8601" => parse_iso8601(text),
        "unix" => DateTime::from_timestamp(text.parse().ok()?, 0),
        "unix_ms" => DateTime::from_timestamp_millis(text.parse().ok()?),
        pattern if pattern.contains("%z") || pattern.contains("%:z") => {
            DateTime::parse_from_str(text, pattern)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        }
        pattern => NaiveDateTime::parse_from_str(text, pattern)
            .ok()
            .or_else(|| {
                NaiveDate::parse_from_str(text, pattern)
                    .ok()
                    .and_then(|date| date.and_hms_opt(0, 0, 0))
            })
            .map(|naive| naive.and_utc()),
    }
}

fn parse_iso8601(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(zoned) = DateTime::parse_from_rfc3339(&text.replacen(' ', "T", 1)) {
        return Some(zoned.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|pattern| NaiveDateTime::parse_from_str(text, pattern).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|date| date.and_hms_opt(0, 0, 0))
    })
    .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_micros())
            .unwrap_or_default()
    }

    #[test]
    fn tries_formats_in_order() {
        let formats = ["%d.%m.%Y", "%m/%d/%Y %H:%M"];
        assert_eq!(
            parse_any("24.12.2026", formats.into_iter()),
            Some(micros("2026-12-24T00:00:00Z"))
        );
        assert_eq!(
            parse_any("12/24/2026 18:30", formats.into_iter()),
            Some(micros("2026-12-24T18:30:00Z"))
        );
        assert_eq!(parse_any("2026-12-24", formats.into_iter()), None);
    }

    #[test]
    fn offsets_and_named_formats() {
        assert_eq!(
            parse_any("2026-03-01 10:00 +0200", ["%Y-%m-%d %H:%M %z"].into_iter()),
            Some(micros("2026-03-01T08:00:00Z"))
        );
        assert_eq!(
            parse_any("2026-03-01T10:00:00+02:00", ["iso8601"].into_iter()),
            Some(micros("2026-03-01T08:00:00Z"))
        );
        assert_eq!(
            parse_any("2026-03-01 10:00:00.5", ["iso8601"].into_iter()),
            Some(micros("2026-03-01T10:00:00.5Z"))
        );
        assert_eq!(
            parse_any("1767225600", ["unix"].into_iter()),
            Some(micros("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            parse_any("1767225600000", ["unix_ms"].into_iter()),
            Some(micros("2026-01-01T00:00:00Z"))
        );
    }
}
