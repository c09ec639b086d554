//! Dialects: how real exports spell their values, and parsing those spellings.
//!
//! A dialect is resolved from a preset (`crm`, `erp`, or the plain default) overridden
//! option by option. It owns delimiters and quoting, the text encoding, and the parsers
//! that turn a field's text into an integer, decimal, boolean, date or timestamp. Parsers
//! return an error message saying what was expected, which lands in quarantine.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use lakescore_engine::config::DialectSettings;

use crate::error::{Error, Result};

/// Text encodings of extract files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8, with or without a byte-order mark.
    Utf8,
    /// Windows-1252 (what most Western ERP exports call "ANSI").
    Windows1252,
    /// ISO-8859-1.
    Latin1,
}

impl Encoding {
    /// `bytes` as text: exact for the single-byte encodings, undecodable UTF-8 replaced.
    pub fn decode_lossy(self, bytes: &[u8]) -> std::borrow::Cow<'_, str> {
        match self {
            Encoding::Utf8 => String::from_utf8_lossy(bytes),
            Encoding::Latin1 => encoding_rs::mem::decode_latin1(bytes),
            Encoding::Windows1252 => {
                encoding_rs::WINDOWS_1252
                    .decode_without_bom_handling(bytes)
                    .0
            }
        }
    }
}

/// A fully resolved dialect.
#[derive(Debug, Clone, PartialEq)]
pub struct Dialect {
    /// Field delimiter.
    pub delimiter: u8,
    /// Quote character.
    pub quote: u8,
    /// Escape character inside quotes; `None` means doubled quotes.
    pub escape: Option<u8>,
    /// Whether a header row names the columns.
    pub header: bool,
    /// Lines skipped before the header.
    pub skip_rows: usize,
    /// Skip leading lines without a delimiter.
    pub skip_preamble: bool,
    /// Text encoding.
    pub encoding: Encoding,
    /// Decimal separator.
    pub decimal_separator: char,
    /// Thousands separator, if numbers use one.
    pub thousands_separator: Option<char>,
    /// Minus signs may trail the number.
    pub trailing_minus: bool,
    /// Date formats, tried in order.
    pub date_formats: Vec<String>,
    /// Timestamp formats, tried in order (formats with `%z`/`%:z` carry their zone).
    pub timestamp_formats: Vec<String>,
    /// Spellings of true (compared case-insensitively).
    pub true_values: Vec<String>,
    /// Spellings of false (compared case-insensitively).
    pub false_values: Vec<String>,
    /// Spellings of null (compared exactly, after trimming).
    pub null_values: Vec<String>,
    /// Zone of timestamps written without one.
    pub timezone: Tz,
}

/// The preset names, for error messages.
pub const PRESETS: &str = "default, crm, erp";

impl Dialect {
    /// Plain CSV: comma, double quotes, ISO dates and timestamps, UTF-8.
    pub fn default_preset() -> Self {
        Self {
            delimiter: b',',
            quote: b'"',
            escape: None,
            header: true,
            skip_rows: 0,
            skip_preamble: false,
            encoding: Encoding::Utf8,
            decimal_separator: '.',
            thousands_separator: None,
            trailing_minus: false,
            date_formats: strings(&["%Y-%m-%d"]),
            timestamp_formats: strings(&[
                "%Y-%m-%dT%H:%M:%S%.f%:z",
                "%Y-%m-%dT%H:%M:%S%.fZ",
                "%Y-%m-%d %H:%M:%S%.f%:z",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
            ]),
            true_values: strings(&["true", "t", "yes", "y", "1"]),
            false_values: strings(&["false", "f", "no", "n", "0"]),
            null_values: strings(&["", "NULL", "null"]),
            timezone: Tz::UTC,
        }
    }

    /// Salesforce/HubSpot-style exports: comma, quoted fields with embedded newlines,
    /// ISO-8601 timestamps with zones, `true`/`false`, UTF-8 with or without BOM, empty = null.
    pub fn crm_preset() -> Self {
        Self {
            true_values: strings(&["true"]),
            false_values: strings(&["false"]),
            null_values: strings(&[""]),
            ..Self::default_preset()
        }
    }

    /// SAP-style exports: semicolon, decimal comma and thousands dot, trailing minus,
    /// `DD.MM.YYYY` dates, Windows-1252, report preamble lines before the header.
    pub fn erp_preset() -> Self {
        Self {
            delimiter: b';',
            skip_preamble: true,
            encoding: Encoding::Windows1252,
            decimal_separator: ',',
            thousands_separator: Some('.'),
            trailing_minus: true,
            date_formats: strings(&["%d.%m.%Y", "%Y-%m-%d"]),
            timestamp_formats: strings(&[
                "%d.%m.%Y %H:%M:%S",
                "%d.%m.%Y %H:%M",
                "%Y-%m-%d %H:%M:%S",
            ]),
            true_values: strings(&["X", "J", "Y", "1", "true"]),
            false_values: strings(&["", "N", "0", "false"]),
            null_values: strings(&["", "#"]),
            ..Self::default_preset()
        }
    }

    /// Resolves settings: the preset's options, each overridden where set.
    pub fn resolve(settings: &DialectSettings) -> Result<Self> {
        let mut dialect = match settings.preset.as_deref() {
            None | Some("default") => Self::default_preset(),
            Some("crm") => Self::crm_preset(),
            Some("erp") => Self::erp_preset(),
            Some(other) => {
                return Err(Error::Dialect(format!(
                    "unknown dialect preset '{other}': use one of {PRESETS}"
                )));
            }
        };
        let byte = |name: &str, c: char| {
            u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
                Error::Dialect(format!("{name} must be one ASCII character, not '{c}'"))
            })
        };
        if let Some(c) = settings.delimiter {
            dialect.delimiter = byte("delimiter", c)?;
        }
        if let Some(c) = settings.quote {
            dialect.quote = byte("quote", c)?;
        }
        if let Some(c) = settings.escape {
            dialect.escape = Some(byte("escape", c)?);
        }
        set(&mut dialect.header, settings.header);
        set(&mut dialect.skip_rows, settings.skip_rows);
        set(&mut dialect.skip_preamble, settings.skip_preamble);
        set(&mut dialect.decimal_separator, settings.decimal_separator);
        if settings.thousands_separator.is_some() {
            dialect.thousands_separator = settings.thousands_separator;
        }
        set(&mut dialect.trailing_minus, settings.trailing_minus);
        set(&mut dialect.date_formats, settings.date_formats.clone());
        set(
            &mut dialect.timestamp_formats,
            settings.timestamp_formats.clone(),
        );
        set(&mut dialect.true_values, settings.true_values.clone());
        set(&mut dialect.false_values, settings.false_values.clone());
        set(&mut dialect.null_values, settings.null_values.clone());
        if let Some(encoding) = &settings.encoding {
            dialect.encoding = match encoding.to_ascii_lowercase().replace('_', "-").as_str() {
                "utf-8" | "utf8" => Encoding::Utf8,
                "windows-1252" | "cp1252" | "ansi" => Encoding::Windows1252,
                "latin-1" | "latin1" | "iso-8859-1" => Encoding::Latin1,
                other => {
                    return Err(Error::Dialect(format!(
                        "unknown encoding '{other}': use utf-8, windows-1252 or latin-1"
                    )));
                }
            };
        }
        if let Some(zone) = &settings.timezone {
            dialect.timezone = zone.parse().map_err(|_| {
                Error::Dialect(format!(
                    "unknown timezone '{zone}': use an IANA name such as Europe/Berlin"
                ))
            })?;
        }
        if dialect.thousands_separator == Some(dialect.decimal_separator) {
            return Err(Error::Dialect(String::from(
                "decimal_separator and thousands_separator must differ",
            )));
        }
        Ok(dialect)
    }

    /// True when `text` spells null.
    pub fn is_null(&self, text: &str) -> bool {
        // Most fields neither start nor end with a space: compare them as they are.
        let bytes = text.as_bytes();
        let untrimmed = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_graphic());
        let trimmed = if untrimmed(bytes.first()) && untrimmed(bytes.last()) {
            text
        } else {
            text.trim()
        };
        self.null_values.iter().any(|n| n == trimmed)
    }

    /// The number's text in plain form: separators removed, decimal point, leading minus.
    fn plain_number(&self, text: &str) -> std::result::Result<String, String> {
        let mut t = text.trim().to_string();
        if self.trailing_minus
            && let Some(stripped) = t.strip_suffix('-')
        {
            t = format!("-{}", stripped.trim_end());
        }
        if let Some(sep) = self.thousands_separator
            && t.contains(sep)
        {
            let whole = t.split(self.decimal_separator).next().unwrap_or_default();
            let mut groups = whole.trim_start_matches(['-', '+']).split(sep);
            let first_ok = groups.next().is_some_and(|g| (1..=3).contains(&g.len()));
            if !first_ok || !groups.all(|g| g.len() == 3) {
                return Err(format!("'{text}' is not a number: misplaced '{sep}'"));
            }
            t = t.replace(sep, "");
        }
        if self.decimal_separator != '.' {
            if t.contains('.') {
                return Err(format!("'{text}' is not a number in this dialect"));
            }
            t = t.replace(self.decimal_separator, ".");
        }
        Ok(t)
    }

    /// Parses an integer.
    pub fn parse_int(&self, text: &str) -> std::result::Result<i64, String> {
        let plain = self.plain_number(text)?;
        plain
            .parse::<i64>()
            .map_err(|_| format!("'{text}' is not an integer"))
    }

    /// Parses a float.
    pub fn parse_float(&self, text: &str) -> std::result::Result<f64, String> {
        let plain = self.plain_number(text)?;
        plain
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("'{text}' is not a number"))
    }

    /// Parses a decimal with `scale` digits after the point into its scaled integer;
    /// extra digits are an error, never silently rounded.
    pub fn parse_decimal(
        &self,
        text: &str,
        precision: u8,
        scale: i8,
    ) -> std::result::Result<i128, String> {
        let plain = self.plain_number(text)?;
        let (negative, digits) = match plain.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, plain.strip_prefix('+').unwrap_or(&plain)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let scale = scale.max(0) as usize;
        let valid = !(whole.is_empty() && fraction.is_empty())
            && whole.bytes().all(|b| b.is_ascii_digit())
            && fraction.bytes().all(|b| b.is_ascii_digit());
        if !valid {
            return Err(format!("'{text}' is not a decimal number"));
        }
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > scale {
            return Err(format!("'{text}' has more than {scale} decimal places"));
        }
        let scaled = format!("{whole}{fraction:0<scale$}");
        let significant = scaled.trim_start_matches('0');
        if significant.len() > usize::from(precision) {
            return Err(format!(
                "'{text}' does not fit decimal({precision},{scale})"
            ));
        }
        let value: i128 = if significant.is_empty() {
            0
        } else {
            significant
                .parse()
                .map_err(|_| format!("'{text}' is not a decimal number"))?
        };
        Ok(if negative { -value } else { value })
    }

    /// Parses a boolean from the dialect's spellings.
    pub fn parse_bool(&self, text: &str) -> std::result::Result<bool, String> {
        let t = text.trim();
        if self.true_values.iter().any(|v| v.eq_ignore_ascii_case(t)) {
            Ok(true)
        } else if self.false_values.iter().any(|v| v.eq_ignore_ascii_case(t)) {
            Ok(false)
        } else {
            Err(format!(
                "'{text}' is not a boolean (true: {}; false: {})",
                self.true_values.join("/"),
                self.false_values.join("/")
            ))
        }
    }

    /// Parses a date; the result is days since 1970-01-01.
    pub fn parse_date(&self, text: &str) -> std::result::Result<i32, String> {
        let t = text.trim();
        self.date_formats
            .iter()
            .find_map(|f| NaiveDate::parse_from_str(t, f).ok())
            .map(|d| (d - NaiveDate::default()).num_days() as i32)
            .ok_or_else(|| {
                format!(
                    "'{text}' is not a date in the formats {}",
                    self.date_formats.join(", ")
                )
            })
    }

    /// Parses a timestamp into microseconds since the epoch, UTC. Timestamps without a
    /// zone are in the dialect's timezone; a local time that does not exist (a DST gap)
    /// is an error, an ambiguous one takes the earlier instant.
    pub fn parse_timestamp(&self, text: &str) -> std::result::Result<i64, String> {
        let t = text.trim();
        for format in &self.timestamp_formats {
            if format.contains("%z") || format.contains("%:z") {
                if let Ok(with_zone) = DateTime::parse_from_str(t, format) {
                    return Ok(with_zone.with_timezone(&Utc).timestamp_micros());
                }
            } else if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
                return self
                    .timezone
                    .from_local_datetime(&naive)
                    .earliest()
                    .map(|local| local.with_timezone(&Utc).timestamp_micros())
                    .ok_or_else(|| {
                        format!("'{text}' does not exist in time zone {}", self.timezone)
                    });
            }
        }
        Err(format!(
            "'{text}' is not a timestamp in the formats {}",
            self.timestamp_formats.join(", ")
        ))
    }
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// What a field that is not valid UTF-8 (valid up to byte `valid_up_to`) is told.
pub fn invalid_utf8(valid_up_to: usize) -> String {
    format!(
        "invalid UTF-8 at byte {valid_up_to} of the field: set encoding = \"windows-1252\" if the file is not UTF-8"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erp() -> Dialect {
        Dialect::erp_preset()
    }

    #[test]
    fn erp_numbers_with_decimal_comma_thousands_dot_and_trailing_minus() {
        let d = erp();
        assert_eq!(d.parse_decimal("1.234,56", 18, 2), Ok(123_456));
        assert_eq!(d.parse_decimal("100,00-", 18, 2), Ok(-10_000));
        assert_eq!(d.parse_decimal("0,5", 18, 2), Ok(50));
        assert_eq!(d.parse_int("1.234"), Ok(1234));
        assert_eq!(d.parse_int("1.234.567"), Ok(1_234_567));
        assert!(
            d.parse_int("01.02.2026")
                .unwrap_err()
                .contains("misplaced '.'")
        );
        assert_eq!(d.parse_float("12,5-"), Ok(-12.5));
        assert!(
            d.parse_decimal("1,234", 18, 2)
                .unwrap_err()
                .contains("more than 2")
        );
        assert!(d.parse_decimal("12a", 18, 2).is_err());
        assert!(
            d.parse_decimal("1234,5", 4, 2)
                .unwrap_err()
                .contains("does not fit")
        );
    }

    #[test]
    fn erp_dates() {
        let d = erp();
        assert_eq!(d.parse_date("01.02.2026"), Ok(20_485));
        assert!(d.parse_date("2026/02/01").unwrap_err().contains("%d.%m.%Y"));
    }

    #[test]
    fn crm_timestamps_keep_their_zone_and_booleans_are_strict() {
        let d = Dialect::crm_preset();
        let utc = d.parse_timestamp("2026-03-01T10:00:00Z").unwrap();
        assert_eq!(d.parse_timestamp("2026-03-01T11:00:00+01:00"), Ok(utc));
        assert_eq!(d.parse_timestamp("2026-03-01T10:00:00.000Z"), Ok(utc));
        assert_eq!(d.parse_bool("TRUE"), Ok(true));
        assert!(d.parse_bool("yes").is_err());
        assert!(d.is_null(""));
        assert!(!d.is_null("NULL"));
    }

    #[test]
    fn naive_timestamps_use_the_configured_zone_across_dst() {
        let settings = DialectSettings {
            timezone: Some("Europe/Berlin".into()),
            ..DialectSettings::default()
        };
        let d = Dialect::resolve(&settings).unwrap();
        let winter = d.parse_timestamp("2026-01-15 12:00:00").unwrap();
        let summer = d.parse_timestamp("2026-07-15 12:00:00").unwrap();
        let utc = Dialect::default_preset();
        assert_eq!(winter, utc.parse_timestamp("2026-01-15T11:00:00Z").unwrap());
        assert_eq!(summer, utc.parse_timestamp("2026-07-15T10:00:00Z").unwrap());
        assert!(
            d.parse_timestamp("2026-03-29 02:30:00")
                .unwrap_err()
                .contains("does not exist")
        );
    }

    #[test]
    fn options_override_presets_and_bad_options_are_named() {
        let settings = DialectSettings {
            preset: Some("erp".into()),
            delimiter: Some('|'),
            encoding: Some("latin-1".into()),
            ..DialectSettings::default()
        };
        let d = Dialect::resolve(&settings).unwrap();
        assert_eq!(d.delimiter, b'|');
        assert_eq!(d.encoding, Encoding::Latin1);
        assert_eq!(d.decimal_separator, ',');
        let bad = |s: DialectSettings| Dialect::resolve(&s).unwrap_err().to_string();
        assert!(
            bad(DialectSettings {
                preset: Some("sap".into()),
                ..Default::default()
            })
            .contains("crm, erp")
        );
        assert!(
            bad(DialectSettings {
                encoding: Some("ebcdic".into()),
                ..Default::default()
            })
            .contains("windows-1252")
        );
        assert!(
            bad(DialectSettings {
                timezone: Some("Mars/Base".into()),
                ..Default::default()
            })
            .contains("IANA")
        );
    }
}
