//! JSON extracts: JSON lines (one object per line) or one array of objects, told apart by
//! the first character. Columns are the union of the keys of every record in the file, in
//! order of first appearance, found by a first pass that only reads keys.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{Map, Value};

use super::digest::{Digesting, ReadDigest};
use super::{Record, RecordLimits, RecordReader, file_error, oversized_record};
use crate::cell::Cell;
use crate::error::Result;

/// Reads a JSON lines or JSON array file.
pub struct JsonReader {
    display: String,
    limits: RecordLimits,
    digest: ReadDigest,
    records: RawRecords,
    headers: Vec<String>,
    positions: HashMap<String, usize>,
}

impl JsonReader {
    /// Opens `path` and collects its column names.
    pub fn open(path: &Path, display: &str, limits: RecordLimits) -> Result<Self> {
        let mut headers = Vec::new();
        let mut positions = HashMap::new();
        // The first pass only collects keys; the second pass's bytes are the ones checked.
        for raw in RawRecords::open(path, display, limits, None)? {
            let (_, text) = raw?;
            let Ok(keys) = serde_json::from_str::<Map<String, Value>>(&text) else {
                continue;
            };
            for key in keys.keys() {
                if !positions.contains_key(key) {
                    positions.insert(key.clone(), headers.len());
                    headers.push(key.clone());
                }
            }
        }
        let digest = ReadDigest::default();
        Ok(Self {
            display: display.to_string(),
            limits,
            records: RawRecords::open(path, display, limits, Some(&digest))?,
            digest,
            headers,
            positions,
        })
    }

    fn to_record(&self, row: u64, raw: String) -> Record {
        if raw.len() > self.limits.max_record_bytes {
            return oversized_record(row, raw.as_bytes(), self.limits.max_record_bytes);
        }
        let fields = match serde_json::from_str::<Value>(&raw) {
            Ok(Value::Object(object)) => {
                let mut cells = vec![Cell::Null; self.headers.len()];
                for (key, value) in object {
                    if let Some(&at) = self.positions.get(&key) {
                        cells[at] = cell(value);
                    }
                }
                Ok(cells)
            }
            Ok(other) => Err(format!("expected a JSON object, found {}", kind(&other))),
            Err(e) => Err(format!("invalid JSON: {e}")),
        };
        Record { row, raw, fields }
    }
}

impl Iterator for JsonReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.records.next()?;
        Some(
            next.map(|(row, raw)| self.to_record(row, raw))
                .map_err(|e| match e {
                    crate::error::Error::File { message, .. } => file_error(&self.display, message),
                    other => other,
                }),
        )
    }
}

impl RecordReader for JsonReader {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn fingerprint(&self) -> Option<String> {
        Some(self.digest.fingerprint())
    }
}

fn cell(value: Value) -> Cell {
    match value {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Bool(b),
        Value::Number(n) => Cell::Number(n),
        Value::String(s) => Cell::Text(s),
        nested => Cell::Json(nested.to_string()),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

type Input = BufReader<Digesting<File>>;

/// Splits a JSON file into the text of its records without parsing them: lines for JSON
/// lines, top-level elements for a JSON array. A record longer than the limit is cut
/// after `limit + 1` bytes (the rest is read and dropped), so it is never held whole.
enum RawRecords {
    Lines {
        input: Input,
        line: u64,
        limit: usize,
        display: String,
    },
    Array {
        bytes: std::io::Bytes<Input>,
        index: u64,
        limit: usize,
        done: bool,
        display: String,
    },
}

impl RawRecords {
    fn open(
        path: &Path,
        display: &str,
        limits: RecordLimits,
        digest: Option<&ReadDigest>,
    ) -> Result<Self> {
        let file = File::open(path).map_err(|e| file_error(display, e))?;
        let file = match digest {
            Some(digest) => digest.wrap(file),
            None => Digesting::unhashed(file),
        };
        let mut input = BufReader::with_capacity(1 << 16, file);
        let limit = limits.max_record_bytes;
        let starts_array = loop {
            let buffer = input.fill_buf().map_err(|e| file_error(display, e))?;
            let Some(&first) = buffer.first() else {
                break false;
            };
            if first.is_ascii_whitespace() || first == 0xEF || first == 0xBB || first == 0xBF {
                input.consume(1);
                continue;
            }
            break first == b'[';
        };
        Ok(if starts_array {
            input.consume(1);
            RawRecords::Array {
                bytes: input.bytes(),
                index: 0,
                limit,
                done: false,
                display: display.to_string(),
            }
        } else {
            RawRecords::Lines {
                input,
                line: 0,
                limit,
                display: display.to_string(),
            }
        })
    }
}

impl Iterator for RawRecords {
    type Item = Result<(u64, String)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            RawRecords::Lines {
                input,
                line,
                limit,
                display,
            } => loop {
                let text = match read_line(input, *limit) {
                    Ok(None) => return None,
                    Ok(Some(text)) => text,
                    Err(e) => {
                        return Some(Err(file_error(display, format!("line {}: {e}", *line + 1))));
                    }
                };
                *line += 1;
                if !text.trim().is_empty() {
                    return Some(Ok((*line, text.trim_end().to_string())));
                }
            },
            RawRecords::Array {
                bytes,
                index,
                limit,
                done,
                display,
            } => {
                if *done {
                    return None;
                }
                match next_element(bytes, *limit) {
                    Ok(Element::More(text)) => {
                        *index += 1;
                        Some(Ok((*index, text)))
                    }
                    Ok(Element::Last(text)) => {
                        *done = true;
                        *index += 1;
                        Some(Ok((*index, text)))
                    }
                    Ok(Element::Closed) => {
                        *done = true;
                        None
                    }
                    Err(e) => {
                        *done = true;
                        Some(Err(file_error(
                            display,
                            format!("after record {index}: {e}"),
                        )))
                    }
                }
            }
        }
    }
}

/// How an array element ended.
enum Element {
    /// An element followed by `,`.
    More(String),
    /// The last element, followed by `]`.
    Last(String),
    /// `]` with no element before it (an empty array).
    Closed,
}

/// Reads one line (without holding more than `limit + 1` of its bytes); None at the end.
fn read_line(input: &mut Input, limit: usize) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = (&mut *input)
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") && line.len() > limit {
        // Drop the rest of the line; the kept start may end inside a character.
        let mut rest = Vec::new();
        loop {
            rest.clear();
            let read = (&mut *input).take(1 << 16).read_until(b'\n', &mut rest)?;
            if read == 0 || rest.ends_with(b"\n") {
                break;
            }
        }
        return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads the next top-level element of an array whose `[` was consumed, keeping at most
/// `limit + 1` of its bytes.
fn next_element(
    bytes: &mut impl Iterator<Item = std::io::Result<u8>>,
    limit: usize,
) -> std::io::Result<Element> {
    let mut element = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in bytes {
        let byte = byte?;
        if in_string {
            if element.len() <= limit {
                element.push(byte);
            }
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b',' | b']' if depth == 0 => {
                let text = String::from_utf8_lossy(&element).trim().to_string();
                return Ok(match (byte, text.is_empty()) {
                    (b']', true) => Element::Closed,
                    (b']', false) => Element::Last(text),
                    _ => Element::More(text),
                });
            }
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if element.len() <= limit {
            element.push(byte);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the JSON array is not closed with ']'",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<String>, Vec<Record>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(&path, text).unwrap();
        let limits = RecordLimits {
            max_field_bytes: 1 << 20,
            max_record_bytes: 64,
        };
        let reader = JsonReader::open(&path, "f.json", limits).unwrap();
        let headers = reader.headers().to_vec();
        (headers, reader.map(Result::unwrap).collect())
    }

    #[test]
    fn json_lines_union_keys_and_report_broken_lines() {
        let (headers, records) = read(
            "{\"id\":1,\"event\":\"login\"}\n\n{\"id\":2,\"props\":{\"a\":[1,2]}}\n{\"id\":3,\n[1]\n",
        );
        assert_eq!(headers, ["id", "event", "props"]);
        assert_eq!(records.len(), 4);
        assert_eq!(records[1].row, 3);
        assert_eq!(
            records[1].fields,
            Ok(vec![
                Cell::Number(2.into()),
                Cell::Null,
                Cell::Json("{\"a\":[1,2]}".into())
            ])
        );
        assert!(
            records[2]
                .fields
                .clone()
                .unwrap_err()
                .starts_with("invalid JSON")
        );
        assert_eq!(
            records[3].fields,
            Err("expected a JSON object, found an array".into())
        );
    }

    #[test]
    fn json_arrays_are_split_into_records() {
        let (headers, records) =
            read(" [ {\"id\": 1, \"s\": \"a,]}\\\"\"}, {\"id\": 2, \"n\": [1, {\"x\": 2}]} ]");
        assert_eq!(headers, ["id", "s", "n"]);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].row, 1);
        assert_eq!(
            records[0].fields.as_ref().unwrap()[1],
            Cell::Text("a,]}\"".into())
        );
        assert_eq!(
            records[1].fields.as_ref().unwrap()[2],
            Cell::Json("[1,{\"x\":2}]".into())
        );
        let (_, empty) = read("[]");
        assert!(empty.is_empty());
    }

    #[test]
    fn a_line_or_element_over_the_limit_is_skipped_and_reported() {
        let long = "x".repeat(200);
        let (_, records) = read(&format!(
            "{{\"id\":1}}\n{{\"id\":2,\"s\":\"{long}\"}}\n{{\"id\":3}}\n"
        ));
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].row, 2);
        assert!(
            records[1]
                .fields
                .clone()
                .unwrap_err()
                .starts_with("the record is longer than max_record_bytes (64 bytes)"),
            "{:?}",
            records[1]
        );
        assert_eq!(records[2].fields, Ok(vec![Cell::Number(3.into())]));
        let (_, array) = read(&format!(
            "[{{\"id\":1}}, {{\"s\":\"{long}\"}}, {{\"id\":3}}]"
        ));
        assert_eq!(array.len(), 3);
        assert!(array[1].fields.is_err());
        assert_eq!(array[2].fields, Ok(vec![Cell::Number(3.into())]));
    }
}
