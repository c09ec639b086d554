//! Parsing one chunk of whole records into fields: decoding its text in bulk, splitting
//! it with `csv_core` into one buffer of field bytes, and the line each record starts on.
//!
//! Nothing is allocated per field or per record beyond the chunk's few buffers. A record
//! whose fields are not valid in the file's encoding, hold the wrong number of fields or
//! a field over `max_field_bytes` says so through [`ParsedChunk::problem`].

use std::borrow::Cow;

use csv_core::{ReadRecordResult, ReaderBuilder};

use super::split::{Chunk, line_ends};
use crate::dialect::{Dialect, Encoding, invalid_utf8};
use crate::reader::RecordLimits;

/// The records of one chunk.
#[derive(Debug)]
pub(crate) struct ParsedChunk {
    /// Every field's text, one after the other.
    text: String,
    /// End of every field in `text`, record after record.
    ends: Vec<usize>,
    records: Vec<ParsedRecord>,
    /// The records with a field that is not valid UTF-8, in order.
    undecodable: Vec<Undecodable>,
}

#[derive(Debug)]
struct ParsedRecord {
    line: u64,
    /// Where its text starts, and where its fields start in `ends`.
    start: usize,
    first_field: usize,
    fields: usize,
}

/// A record with a field that is not valid UTF-8.
#[derive(Debug)]
struct Undecodable {
    record: usize,
    /// Its first such field, and how far that field is valid.
    field: usize,
    valid_up_to: usize,
    /// The record as read, undecodable bytes replaced.
    raw: String,
}

impl ParsedChunk {
    /// Splits `chunk` into records and fields with `dialect`.
    pub fn parse(chunk: &Chunk, dialect: &Dialect) -> Self {
        // UTF-8 is checked once parsed; the single-byte encodings decode to text in
        // one pass (their delimiters, quotes and line ends are the same ASCII bytes).
        let decoded: Cow<'_, [u8]> = match dialect.encoding {
            Encoding::Utf8 => Cow::Borrowed(&chunk.bytes),
            single_byte => match single_byte.decode_lossy(&chunk.bytes) {
                Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            },
        };
        let input: &[u8] = &decoded;
        let mut parser = ReaderBuilder::new()
            .delimiter(dialect.delimiter)
            .quote(dialect.quote)
            .escape(dialect.escape)
            .double_quote(dialect.escape.is_none())
            .build();
        // A record's fields are never longer than the record.
        let mut output = vec![0u8; input.len() + 1];
        let mut ends = vec![0usize; input.len() / 8 + 16];
        let mut records = Vec::new();
        let (mut read, mut written, mut ended) = (0, 0, 0);
        let (mut record_read, mut record_written, mut record_ended) = (0, 0, 0);
        let (mut line, mut after_cr) = (chunk.first_line, chunk.after_cr);
        loop {
            let (result, r, w, e) =
                parser.read_record(&input[read..], &mut output[written..], &mut ends[ended..]);
            read += r;
            written += w;
            ended += e;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => output.resize(output.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
                ReadRecordResult::Record => {
                    let consumed = &input[record_read..read];
                    let lead = consumed
                        .iter()
                        .position(|&b| b != b'\n' && b != b'\r')
                        .unwrap_or(0);
                    let record_line = line + line_ends(&consumed[..lead], after_cr);
                    line += line_ends(consumed, after_cr);
                    if let Some(&last) = consumed.last() {
                        after_cr = last == b'\r';
                    }
                    for end in &mut ends[record_ended..ended] {
                        *end += record_written;
                    }
                    records.push(ParsedRecord {
                        line: record_line,
                        start: record_written,
                        first_field: record_ended,
                        fields: ended - record_ended,
                    });
                    (record_read, record_written, record_ended) = (read, written, ended);
                }
                ReadRecordResult::End => break,
            }
        }
        output.truncate(written);
        ends.truncate(ended);
        let mut undecodable = Vec::new();
        let text = match String::from_utf8(output) {
            Ok(text) => text,
            Err(error) => mark_undecodable(
                error.into_bytes(),
                &ends,
                &records,
                dialect,
                &mut undecodable,
            ),
        };
        Self {
            text,
            ends,
            records,
            undecodable,
        }
    }

    /// How many records the chunk holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The line record `r` starts on.
    pub fn line(&self, r: usize) -> u64 {
        self.records[r].line
    }

    /// How many fields record `r` has.
    pub fn field_count(&self, r: usize) -> usize {
        self.records[r].fields
    }

    /// Field `k` of record `r`.
    #[inline]
    pub fn field(&self, r: usize, k: usize) -> &str {
        let record = &self.records[r];
        let at = record.first_field + k;
        let start = if k == 0 {
            record.start
        } else {
            self.ends[at - 1]
        };
        &self.text[start..self.ends[at]]
    }

    /// Why record `r` cannot be typed, if it cannot: its field count differs from the
    /// header's, a field is over the limit, or a field is not valid UTF-8.
    pub fn problem(&self, r: usize, headers: &[String], limits: RecordLimits) -> Option<String> {
        let record = &self.records[r];
        if record.fields != headers.len() {
            return Some(format!(
                "expected {} fields, found {}",
                headers.len(),
                record.fields
            ));
        }
        if let Some(long) =
            (0..record.fields).find(|&k| self.field(r, k).len() > limits.max_field_bytes)
        {
            return Some(format!(
                "column {}: the field is {} bytes, more than max_field_bytes ({}) in [ingest]",
                headers[long],
                self.field(r, long).len(),
                limits.max_field_bytes
            ));
        }
        self.undecodable(r).map(|bad| {
            format!(
                "column {}: {}",
                headers[bad.field],
                invalid_utf8(bad.valid_up_to)
            )
        })
    }

    fn undecodable(&self, r: usize) -> Option<&Undecodable> {
        let at = self
            .undecodable
            .binary_search_by_key(&r, |bad| bad.record)
            .ok()?;
        Some(&self.undecodable[at])
    }

    /// Field `k` of record `r` as a header: None when it is not valid UTF-8, with how
    /// far it is valid.
    pub fn header_field(&self, r: usize, k: usize) -> Result<&str, usize> {
        match self.undecodable(r) {
            Some(bad) if bad.field == k => Err(bad.valid_up_to),
            _ => Ok(self.field(r, k)),
        }
    }

    /// Record `r` as read: its fields joined by the delimiter.
    pub fn raw(&self, r: usize, delimiter: u8) -> String {
        if let Some(bad) = self.undecodable(r) {
            return bad.raw.clone();
        }
        let fields: Vec<&str> = (0..self.records[r].fields)
            .map(|k| self.field(r, k))
            .collect();
        fields.join(char::from(delimiter).encode_utf8(&mut [0; 4]))
    }
}

/// Notes each record's first field that is not valid UTF-8 (and the record as read,
/// undecodable bytes replaced), then blanks such fields' bytes so the rest is text.
fn mark_undecodable(
    mut bytes: Vec<u8>,
    ends: &[usize],
    records: &[ParsedRecord],
    dialect: &Dialect,
    undecodable: &mut Vec<Undecodable>,
) -> String {
    let delimiter = char::from(dialect.delimiter).to_string();
    for (at, record) in records.iter().enumerate() {
        let span = |k: usize| {
            let start = if k == 0 {
                record.start
            } else {
                ends[record.first_field + k - 1]
            };
            start..ends[record.first_field + k]
        };
        let invalid: Vec<(usize, usize)> = (0..record.fields)
            .filter_map(|k| {
                std::str::from_utf8(&bytes[span(k)])
                    .err()
                    .map(|e| (k, e.valid_up_to()))
            })
            .collect();
        let Some(&(first, valid)) = invalid.first() else {
            continue;
        };
        let raw = (0..record.fields)
            .map(|k| String::from_utf8_lossy(&bytes[span(k)]).into_owned())
            .collect::<Vec<_>>()
            .join(&delimiter);
        for &(k, _) in &invalid {
            bytes[span(k)].fill(b'?');
        }
        undecodable.push(Undecodable {
            record: at,
            field: first,
            valid_up_to: valid,
            raw,
        });
    }
    // Every field is valid UTF-8 now, so their concatenation is too.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
