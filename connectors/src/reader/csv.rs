//! Delimited text: preamble and skipped lines, byte-order marks, quoting with embedded
//! newlines, field decoding in the dialect's encoding, and limits on record and field size.
//!
//! Records are split by `csv_core` into buffers this reader owns, so a record is never
//! held beyond `max_record_bytes`: a longer one is skipped through to its end and
//! reported as that record's problem, with the line it started on. A quote still open at
//! the end of the file is the file's problem, naming the line where it opened.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;

use csv_core::{ReadRecordResult, ReaderBuilder};

use super::digest::{Digesting, ReadDigest};
use super::{PREVIEW_BYTES, Record, RecordLimits, RecordReader, file_error, oversized_record};
use crate::cell::Cell;
use crate::dialect::{Dialect, Encoding};
use crate::error::Result;

type Input = std::io::Chain<Cursor<Vec<u8>>, BufReader<Digesting<File>>>;

/// How the parse of one record ended.
enum Parsed {
    /// A record; its fields are in the reader's buffers.
    Record { line: u64 },
    /// A record longer than `max_record_bytes`, skipped; its first bytes.
    Oversized { line: u64, preview: Vec<u8> },
    /// No more records.
    End,
}

/// Where the parser is, in lines, and where the record being parsed started.
struct Position {
    /// Lines before the header (skipped rows and preamble).
    lines_before: u64,
    /// Line ends the parser has consumed since the header's line.
    newlines: u64,
    /// Whether the last byte consumed was `\r`.
    after_cr: bool,
    /// Line of the first byte of the record being parsed, once it has one.
    record_line: Option<u64>,
    /// Line of the first quote in the record being parsed.
    quote_line: Option<u64>,
    quoting: Quoting,
}

/// Whether the bytes read so far end inside a quoted field, followed with the parser's
/// rules (doubled quotes, or an escape byte) so an unterminated quote at the end of the
/// file is told from a closed one.
#[derive(Clone, Copy)]
struct Quoting {
    quote: u8,
    delimiter: u8,
    escape: Option<u8>,
    state: QuoteState,
}

#[derive(Clone, Copy, PartialEq)]
enum QuoteState {
    /// At the start of a field.
    FieldStart,
    /// In an unquoted field.
    Unquoted,
    /// In a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: its end, or the first of a doubled one.
    QuoteInQuoted,
    /// Just after the escape byte inside a quoted field.
    Escaped,
}

impl Quoting {
    fn step(&mut self, byte: u8) {
        use QuoteState::*;
        let ends_field = byte == self.delimiter || byte == b'\n' || byte == b'\r';
        self.state = match self.state {
            FieldStart if byte == self.quote => Quoted,
            FieldStart | Unquoted if ends_field => FieldStart,
            FieldStart | Unquoted => Unquoted,
            Quoted if Some(byte) == self.escape => Escaped,
            Quoted if byte == self.quote => QuoteInQuoted,
            Quoted => Quoted,
            Escaped => Quoted,
            QuoteInQuoted if byte == self.quote && self.escape.is_none() => Quoted,
            QuoteInQuoted if ends_field => FieldStart,
            QuoteInQuoted => Unquoted,
        };
    }

    fn is_open(&self) -> bool {
        matches!(self.state, QuoteState::Quoted | QuoteState::Escaped)
    }
}

impl Position {
    /// A new record starts.
    fn next_record(&mut self) {
        self.record_line = None;
        self.quote_line = None;
    }

    /// Counts the lines of bytes the parser consumed and notes where the record being
    /// parsed starts and where its first quote is.
    fn consumed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.quoting.step(byte);
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                // `\r\n` ends one line, and so does a `\r` or `\n` alone.
                b'\n' if after_cr => {}
                b'\n' | b'\r' => self.newlines += 1,
                other => {
                    let line = self.lines_before + self.newlines + 1;
                    self.record_line.get_or_insert(line);
                    if other == self.quoting.quote {
                        self.quote_line.get_or_insert(line);
                    }
                }
            }
        }
    }
}

/// Reads a delimited text file.
pub struct CsvReader {
    display: String,
    dialect: Dialect,
    limits: RecordLimits,
    input: Input,
    parser: csv_core::Reader,
    digest: ReadDigest,
    headers: Vec<String>,
    position: Position,
    output: Vec<u8>,
    ends: Vec<usize>,
    fields: usize,
    pending: Option<Record>,
}

impl CsvReader {
    /// Opens `path`, skips what precedes the header and reads the header.
    pub fn open(
        path: &Path,
        display: &str,
        dialect: Dialect,
        limits: RecordLimits,
    ) -> Result<Self> {
        let digest = ReadDigest::default();
        let file = File::open(path).map_err(|e| file_error(display, e))?;
        let mut input = BufReader::with_capacity(1 << 16, digest.wrap(file));
        let mut lines_before = 0u64;
        let mut line = Vec::new();
        let mut first = true;
        // Skipped rows and preamble lines are whole physical lines before the header.
        let start = loop {
            line.clear();
            let read = (&mut input)
                .take(limits.max_record_bytes as u64)
                .read_until(b'\n', &mut line)
                .map_err(|e| file_error(display, e))?;
            if first && dialect.encoding == Encoding::Utf8 && line.starts_with(b"\xEF\xBB\xBF") {
                line.drain(..3);
            }
            first = false;
            if read == 0 {
                break Vec::new();
            }
            let skipped = (lines_before as usize) < dialect.skip_rows
                || (dialect.skip_preamble && !line.contains(&dialect.delimiter));
            if !skipped {
                // The header starts here; the parser reads the rest of it (and applies the
                // record limit to it).
                break std::mem::take(&mut line);
            }
            if read == limits.max_record_bytes && !line.ends_with(b"\n") {
                return Err(file_error(
                    display,
                    format!(
                        "line {} is longer than max_record_bytes ({} bytes) before any header was found: is this a delimited text file?",
                        lines_before + 1,
                        limits.max_record_bytes
                    ),
                ));
            }
            lines_before += 1;
        };
        let parser = ReaderBuilder::new()
            .delimiter(dialect.delimiter)
            .quote(dialect.quote)
            .escape(dialect.escape)
            .double_quote(dialect.escape.is_none())
            .build();
        let quoting = Quoting {
            quote: dialect.quote,
            delimiter: dialect.delimiter,
            escape: dialect.escape,
            state: QuoteState::FieldStart,
        };
        let mut this = Self {
            display: display.to_string(),
            dialect,
            limits,
            input: Cursor::new(start).chain(input),
            parser,
            digest,
            headers: Vec::new(),
            position: Position {
                lines_before,
                newlines: 0,
                after_cr: false,
                record_line: None,
                quote_line: None,
                quoting,
            },
            output: vec![0; limits.max_record_bytes.clamp(1, 4096)],
            ends: vec![0; limits.max_record_bytes.clamp(1, 64)],
            fields: 0,
            pending: None,
        };
        let line = match this.parse()? {
            Parsed::End => return Ok(this),
            Parsed::Oversized { line, .. } => {
                return Err(file_error(
                    display,
                    format!(
                        "line {line}: the header is longer than max_record_bytes ({} bytes)",
                        this.limits.max_record_bytes
                    ),
                ));
            }
            Parsed::Record { line } => line,
        };
        if this.dialect.header {
            this.headers = (0..this.fields)
                .map(|i| {
                    let name = this.dialect.decode(this.field(i)).map_err(|e| {
                        file_error(display, format!("header column {}: {e}", i + 1))
                    })?;
                    Ok(name.trim().to_string())
                })
                .collect::<Result<_>>()?;
            if let Some(empty) = this.headers.iter().position(String::is_empty) {
                return Err(file_error(
                    display,
                    format!("header column {} has no name", empty + 1),
                ));
            }
        } else {
            this.headers = (1..=this.fields).map(|i| format!("column_{i}")).collect();
            this.pending = Some(this.to_record(line));
        }
        Ok(this)
    }

    /// Field `i` of the record just parsed.
    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.output[start..self.ends[i]]
    }

    /// Parses the next record into the buffers.
    fn parse(&mut self) -> Result<Parsed> {
        self.position.next_record();
        let limit = self.limits.max_record_bytes.max(1);
        let (mut written, mut ended) = (0usize, 0usize);
        let mut preview: Option<Vec<u8>> = None;
        let mut scratch = Vec::new();
        let mut scratch_ends = Vec::new();
        loop {
            let input = self
                .input
                .fill_buf()
                .map_err(|e| file_error(&self.display, e))?;
            let at_end = input.is_empty();
            if at_end && self.position.quoting.is_open() {
                let position = &self.position;
                let line = position
                    .quote_line
                    .or(position.record_line)
                    .unwrap_or_default();
                return Err(file_error(
                    &self.display,
                    format!(
                        "line {line}: a quote opened here is never closed, so everything after it would be one field; nothing of the file landed. Close or remove the quote"
                    ),
                ));
            }
            let (result, read, wrote, ends) = match preview {
                None => self.parser.read_record(
                    input,
                    &mut self.output[written..],
                    &mut self.ends[ended..],
                ),
                // Over the limit: parse on into scratch space to find the record's end.
                Some(_) => self
                    .parser
                    .read_record(input, &mut scratch, &mut scratch_ends),
            };
            self.position.consumed(&input[..read]);
            self.input.consume(read);
            if preview.is_none() {
                written += wrote;
                ended += ends;
            }
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull
                    if preview.is_some() => {}
                ReadRecordResult::OutputFull if self.output.len() < limit => {
                    let grown = (self.output.len() * 2).min(limit);
                    self.output.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull if self.ends.len() < limit => {
                    let grown = (self.ends.len() * 2).min(limit);
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {
                    preview = Some(self.output[..written.min(PREVIEW_BYTES)].to_vec());
                    scratch = vec![0; 1 << 16];
                    scratch_ends = vec![0; 1 << 12];
                }
                ReadRecordResult::Record => {
                    let position = &self.position;
                    let line = position
                        .record_line
                        .unwrap_or(position.lines_before + position.newlines);
                    if let Some(preview) = preview {
                        return Ok(Parsed::Oversized { line, preview });
                    }
                    self.fields = ended;
                    return Ok(Parsed::Record { line });
                }
                ReadRecordResult::End => return Ok(Parsed::End),
            }
        }
    }

    /// The record just parsed, its fields decoded.
    fn to_record(&self, row: u64) -> Record {
        let delimiter = char::from(self.dialect.delimiter).to_string();
        let raw = (0..self.fields)
            .map(|i| {
                let field = self.field(i);
                self.dialect
                    .decode(field)
                    .unwrap_or_else(|_| String::from_utf8_lossy(field).into_owned())
            })
            .collect::<Vec<_>>()
            .join(&delimiter);
        let fields = if self.fields != self.headers.len() {
            Err(format!(
                "expected {} fields, found {}",
                self.headers.len(),
                self.fields
            ))
        } else if let Some(long) =
            (0..self.fields).find(|&i| self.field(i).len() > self.limits.max_field_bytes)
        {
            Err(format!(
                "column {}: the field is {} bytes, more than max_field_bytes ({}) in [ingest]",
                self.headers[long],
                self.field(long).len(),
                self.limits.max_field_bytes
            ))
        } else {
            (0..self.fields)
                .zip(&self.headers)
                .map(|(i, column)| {
                    self.dialect
                        .decode(self.field(i))
                        .map(Cell::Text)
                        .map_err(|e| format!("column {column}: {e}"))
                })
                .collect()
        };
        Record { row, raw, fields }
    }
}

impl Iterator for CsvReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.pending.take() {
            return Some(Ok(record));
        }
        match self.parse() {
            Ok(Parsed::Record { line }) => Some(Ok(self.to_record(line))),
            Ok(Parsed::Oversized { line, preview }) => Some(Ok(oversized_record(
                line,
                &preview,
                self.limits.max_record_bytes,
            ))),
            Ok(Parsed::End) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl RecordReader for CsvReader {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn fingerprint(&self) -> Option<String> {
        Some(self.digest.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RecordLimits = RecordLimits {
        max_field_bytes: 1 << 20,
        max_record_bytes: 4 << 20,
    };

    fn read(bytes: &[u8], dialect: Dialect) -> (Vec<String>, Vec<Record>) {
        read_with(bytes, dialect, LIMITS).unwrap()
    }

    fn read_with(
        bytes: &[u8],
        dialect: Dialect,
        limits: RecordLimits,
    ) -> Result<(Vec<String>, Vec<Record>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, bytes).unwrap();
        let reader = CsvReader::open(&path, "f.csv", dialect, limits)?;
        let headers = reader.headers().to_vec();
        let records = reader.collect::<Result<Vec<_>>>()?;
        Ok((headers, records))
    }

    #[test]
    fn a_record_over_the_limit_is_skipped_to_its_end_and_reported_at_its_line() {
        let limits = RecordLimits {
            max_field_bytes: 8,
            max_record_bytes: 32,
        };
        let long = "x".repeat(100);
        let text = format!("id,notes\n1,ok\n2,\"{long}\nstill {long}\"\n3,0123456789\n4,fine\n");
        let (_, records) = read_with(text.as_bytes(), Dialect::crm_preset(), limits).unwrap();
        let rows: Vec<u64> = records.iter().map(|r| r.row).collect();
        assert_eq!(rows, [2, 3, 5, 6]);
        let problem = records[1].fields.clone().unwrap_err();
        assert!(
            problem.starts_with("the record is longer than max_record_bytes (32 bytes)"),
            "{problem}"
        );
        assert!(
            records[1].raw.starts_with("2xxxx") && records[1].raw.ends_with('…'),
            "{}",
            records[1].raw
        );
        assert_eq!(
            records[2].fields,
            Err(
                "column notes: the field is 10 bytes, more than max_field_bytes (8) in [ingest]"
                    .into()
            )
        );
        assert_eq!(
            records[3].fields,
            Ok(vec![Cell::Text("4".into()), Cell::Text("fine".into())])
        );
    }

    #[test]
    fn a_header_or_preamble_line_over_the_limit_is_the_files_error() {
        let limits = RecordLimits {
            max_field_bytes: 16,
            max_record_bytes: 64,
        };
        let wide = format!("{}\n1,2\n", vec!["column"; 20].join(","));
        let error = read_with(wide.as_bytes(), Dialect::crm_preset(), limits).unwrap_err();
        assert_eq!(
            error.to_string(),
            "f.csv: line 1: the header is longer than max_record_bytes (64 bytes)"
        );
        // A preamble line without a line end, as a binary file would have.
        let binary = vec![b'x'; 200];
        let error = read_with(&binary, Dialect::erp_preset(), limits).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("f.csv: line 1 is longer than max_record_bytes (64 bytes) before any header was found"),
            "{error}"
        );
    }

    #[test]
    fn an_unterminated_quote_is_an_error_naming_the_line_it_opened_on() {
        let mut text = String::from("id,name\r\n1,a\r\n2,\"b\r\n");
        for i in 3..1000 {
            text.push_str(&format!("{i},x\r\n"));
        }
        let error = read_with(text.as_bytes(), Dialect::crm_preset(), LIMITS).unwrap_err();
        assert_eq!(
            error.to_string(),
            "f.csv: line 3: a quote opened here is never closed, so everything after it would be one field; nothing of the file landed. Close or remove the quote"
        );
        // Also when the open quote runs past the record limit.
        let small = RecordLimits {
            max_field_bytes: 16,
            max_record_bytes: 64,
        };
        let error = read_with(text.as_bytes(), Dialect::crm_preset(), small).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("f.csv: line 3: a quote opened here is never closed"),
            "{error}"
        );
        // A closed quote at the very end is fine.
        let (_, records) = read(b"id,name\n1,\"a\"", Dialect::crm_preset());
        assert_eq!(
            records[0].fields,
            Ok(vec![Cell::Text("1".into()), Cell::Text("a".into())])
        );
    }

    #[test]
    fn crm_quotes_newlines_and_bom() {
        let (headers, records) = read(
            b"\xEF\xBB\xBFid,name,notes\n1,\"Acme, Inc\",\"line one\nline two\"\n2,Beta\n3,Gamma,\"\"\n",
            Dialect::crm_preset(),
        );
        assert_eq!(headers, ["id", "name", "notes"]);
        assert_eq!(records[0].row, 2);
        assert_eq!(
            records[0].fields,
            Ok(vec![
                Cell::Text("1".into()),
                Cell::Text("Acme, Inc".into()),
                Cell::Text("line one\nline two".into())
            ])
        );
        assert_eq!(records[1].row, 4, "the embedded newline counts as a line");
        assert_eq!(records[1].fields, Err("expected 3 fields, found 2".into()));
        assert_eq!(records[1].raw, "2,Beta");
        assert_eq!(records[2].row, 5);
    }

    #[test]
    fn line_numbers_are_exact_with_crlf_and_blank_lines() {
        let rows = |bytes: &[u8]| -> Vec<u64> {
            read(bytes, Dialect::crm_preset())
                .1
                .iter()
                .map(|r| r.row)
                .collect()
        };
        assert_eq!(rows(b"h1,h2\na,b\nc,d\n"), [2, 3]);
        assert_eq!(rows(b"h1,h2\r\na,b\r\nc,d\r\n"), [2, 3]);
        assert_eq!(rows(b"h1,h2\r\n\r\n\"a\r\nx\",b\r\nc,d\r\n"), [3, 5]);
        assert_eq!(rows(b"h1,h2\n\na,b\n\n\nc,d"), [3, 6]);
    }

    #[test]
    fn erp_preamble_and_windows_1252() {
        let (headers, records) = read(
            b"Report RFBELJ00\r\nCompany 1000\r\n\r\nKunde;Name;Betrag\r\n10;M\xFCller;1.234,56-\r\n11;X;1\r\n",
            Dialect::erp_preset(),
        );
        assert_eq!(headers, ["Kunde", "Name", "Betrag"]);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].row, 5);
        assert_eq!(records[1].row, 6);
        assert_eq!(records[0].raw, "10;Müller;1.234,56-");
    }

    #[test]
    fn undecodable_bytes_are_the_records_problem() {
        let (_, records) = read(b"id,name\n1,ok\n2,caf\xE9\n", Dialect::crm_preset());
        assert!(records[0].fields.is_ok());
        let problem = records[1].fields.clone().unwrap_err();
        assert!(
            problem.starts_with("column name: invalid UTF-8"),
            "{problem}"
        );
        assert_eq!(records[1].row, 3);
    }

    /// The bytes random extracts are made of: text, Latin-1 bytes, both delimiters,
    /// quotes and every line ending.
    fn extract_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let byte = prop::sample::select(vec![
            b'a', b'b', b' ', b',', b';', b'"', b'\n', b'\r', 0xE9, b'1',
        ]);
        prop::collection::vec(byte, 0..200)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Every extract either splits into exactly the records the `csv` crate sees with
        /// the same settings, each landed with the same fields or quarantined with its
        /// line, or is refused whole for a quote that is never closed.
        #[test]
        fn records_match_the_csv_crate_and_each_lands_or_is_quarantined(
            body in extract_bytes(),
            bom in proptest::prelude::any::<bool>(),
            latin1 in proptest::prelude::any::<bool>(),
        ) {
            let mut dialect = Dialect::crm_preset();
            if latin1 {
                dialect.encoding = Encoding::Latin1;
            }
            // A byte-order mark is a UTF-8 thing.
            let mut bytes = if bom && !latin1 { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
            bytes.extend_from_slice(b"h1,h2,h3\n");
            bytes.extend(body);
            let mut reference = ::csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes));
            let expected: Vec<::csv::ByteRecord> = reference
                .byte_records()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
            let line_ends = bytes
                .iter()
                .enumerate()
                .filter(|&(i, &b)| b == b'\r' || (b == b'\n' && (i == 0 || bytes[i - 1] != b'\r')))
                .count();
            let lines = line_ends as u64 + 1;
            match read_with(&bytes, dialect.clone(), LIMITS) {
                Ok((headers, records)) => {
                    proptest::prop_assert_eq!(headers, ["h1", "h2", "h3"]);
                    proptest::prop_assert_eq!(records.len() + 1, expected.len());
                    let mut previous = 1;
                    for (record, reference) in records.iter().zip(&expected[1..]) {
                        proptest::prop_assert!(record.row > previous && record.row <= lines);
                        previous = record.row;
                        let decoded: std::result::Result<Vec<Cell>, String> = reference
                            .iter()
                            .map(|f| dialect.decode(f).map(Cell::Text).map_err(|e| e.to_string()))
                            .collect();
                        match (&record.fields, decoded) {
                            (Ok(fields), Ok(want)) => proptest::prop_assert_eq!(fields, &want),
                            (Err(_), Ok(want)) => proptest::prop_assert!(want.len() != 3),
                            (Err(_), Err(_)) => {}
                            (Ok(_), Err(_)) => proptest::prop_assert!(false, "undecodable record landed"),
                        }
                    }
                }
                Err(error) => {
                    let message = error.to_string();
                    proptest::prop_assert!(message.contains("a quote opened here is never closed"), "{}", message);
                    proptest::prop_assert!(bytes.contains(&b'"'));
                }
            }
        }
    }
}
