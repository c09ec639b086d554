//! Delimited text: preamble and skipped lines, byte-order marks, quoting with embedded
//! newlines, decoding in the dialect's encoding, and limits on record and field size.
//!
//! A file is read front to back once, hashed as it is read, and cut into chunks of whole
//! records ([`split`]) that are parsed into fields independently ([`parse`]), so chunks
//! can be parsed and typed on every core while the next ones are read.

mod parse;
mod split;

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;

pub(crate) use parse::ParsedChunk;
use split::Splitter;
pub(crate) use split::{Chunk, OversizedRecord, Piece};

use super::digest::{Digesting, ReadDigest};
use super::{RecordLimits, file_error, oversized_problem};
use crate::dialect::{Dialect, Encoding, invalid_utf8};
use crate::error::Result;

type Input = std::io::Chain<Cursor<Vec<u8>>, BufReader<Digesting<File>>>;

/// A delimited file being read, from its header on.
pub(crate) struct CsvFile {
    splitter: Splitter<Input>,
    digest: ReadDigest,
}

impl CsvFile {
    /// Opens `path` (shown as `display`) and skips what precedes the header; the file is
    /// then cut into pieces of about `chunk_bytes`.
    pub fn open(
        path: &Path,
        display: &str,
        dialect: &Dialect,
        limits: RecordLimits,
        chunk_bytes: usize,
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
                // The header starts here; the splitter reads the rest of it (and applies
                // the record limit to it).
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
        let splitter = Splitter::new(
            Cursor::new(start).chain(input),
            display,
            dialect,
            lines_before + 1,
            chunk_bytes,
            limits.max_record_bytes,
        );
        Ok(Self { splitter, digest })
    }

    /// The next piece of the file, None at its end.
    pub fn next_piece(&mut self) -> Result<Option<Piece>> {
        self.splitter.next_piece()
    }

    /// Once every piece was read: `sha256:<hex>` of the bytes read.
    pub fn fingerprint(&self) -> String {
        self.digest.fingerprint()
    }
}

/// The column names of a file whose first record is record 0 of `first`: the header's
/// fields, trimmed, or `column_1`, `column_2`, ... for a file without a header.
pub(crate) fn headers(
    first: &ParsedChunk,
    dialect: &Dialect,
    display: &str,
) -> Result<Vec<String>> {
    let count = first.field_count(0);
    if !dialect.header {
        return Ok((1..=count).map(|i| format!("column_{i}")).collect());
    }
    let headers = (0..count)
        .map(|k| {
            first
                .header_field(0, k)
                .map(|name| name.trim().to_string())
                .map_err(|valid| {
                    file_error(
                        display,
                        format!("header column {}: {}", k + 1, invalid_utf8(valid)),
                    )
                })
        })
        .collect::<Result<Vec<String>>>()?;
    if let Some(empty) = headers.iter().position(String::is_empty) {
        return Err(file_error(
            display,
            format!("header column {} has no name", empty + 1),
        ));
    }
    Ok(headers)
}

/// What stands for a record longer than `max_record_bytes`: its first bytes (decoded),
/// and why it was skipped.
pub(crate) fn oversized_record(
    record: &OversizedRecord,
    dialect: &Dialect,
    max_record_bytes: usize,
) -> (String, String) {
    let preview = dialect.encoding.decode_lossy(&record.preview);
    (
        format!("{preview}…"),
        oversized_problem(record.preview.len(), max_record_bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::Cell;
    use crate::reader::Record;

    const LIMITS: RecordLimits = RecordLimits {
        max_field_bytes: 1 << 20,
        max_record_bytes: 4 << 20,
    };

    fn read(bytes: &[u8], dialect: Dialect) -> (Vec<String>, Vec<Record>) {
        read_with(bytes, dialect, LIMITS).unwrap()
    }

    /// Reads `bytes` in one chunk and in chunks of many small sizes; every way gives the
    /// same header and records (or the same error), which is returned.
    fn read_with(
        bytes: &[u8],
        dialect: Dialect,
        limits: RecordLimits,
    ) -> Result<(Vec<String>, Vec<Record>)> {
        let whole = read_in_chunks(bytes, &dialect, limits, 1 << 20);
        for chunk_bytes in [1, 2, 3, 5, 8, 13, 64] {
            let chunked = read_in_chunks(bytes, &dialect, limits, chunk_bytes);
            assert_eq!(
                format!("{chunked:?}"),
                format!("{whole:?}"),
                "read in chunks of {chunk_bytes} bytes"
            );
        }
        whole
    }

    fn read_in_chunks(
        bytes: &[u8],
        dialect: &Dialect,
        limits: RecordLimits,
        chunk_bytes: usize,
    ) -> Result<(Vec<String>, Vec<Record>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, bytes).unwrap();
        let mut file = CsvFile::open(&path, "f.csv", dialect, limits, chunk_bytes)?;
        let mut headers: Option<Vec<String>> = None;
        let mut records = Vec::new();
        while let Some(piece) = file.next_piece()? {
            match piece {
                Piece::Oversized(record) => {
                    let (raw, message) =
                        oversized_record(&record, dialect, limits.max_record_bytes);
                    records.push(Record {
                        row: record.line,
                        raw,
                        fields: Err(message),
                    });
                }
                Piece::Records(chunk) => {
                    let parsed = ParsedChunk::parse(&chunk, dialect);
                    let mut from = 0;
                    if headers.is_none() && parsed.len() > 0 {
                        headers = Some(super::headers(&parsed, dialect, "f.csv")?);
                        from = usize::from(dialect.header);
                    }
                    let names = headers.clone().unwrap_or_default();
                    for r in from..parsed.len() {
                        let fields = match parsed.problem(r, &names, limits) {
                            Some(problem) => Err(problem),
                            None => Ok((0..parsed.field_count(r))
                                .map(|k| Cell::Text(parsed.field(r, k).to_string()))
                                .collect()),
                        };
                        records.push(Record {
                            row: parsed.line(r),
                            raw: parsed.raw(r, dialect.delimiter),
                            fields,
                        });
                    }
                }
            }
        }
        assert_eq!(
            file.fingerprint(),
            crate::files::sha256_file(&path)
                .map(|(_, d)| format!("sha256:{d}"))
                .unwrap()
        );
        Ok((headers.unwrap_or_default(), records))
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
            records[1].raw.starts_with("2,\"xxxx") && records[1].raw.ends_with('…'),
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
    fn a_preamble_line_over_the_limit_is_the_files_error() {
        let limits = RecordLimits {
            max_field_bytes: 16,
            max_record_bytes: 64,
        };
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
    /// quotes, backslashes and every line ending.
    fn extract_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let byte = prop::sample::select(vec![
            b'a', b'b', b' ', b',', b';', b'"', b'\n', b'\r', 0xE9, b'1', b'\\',
        ]);
        prop::collection::vec(byte, 0..200)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Every extract, with doubled quotes or a backslash escape, either splits into
        /// exactly the records the `csv` crate sees with the same settings, each landed with the same fields or quarantined with its
        /// line, or is refused whole for a quote that is never closed.
        #[test]
        fn records_match_the_csv_crate_and_each_lands_or_is_quarantined(
            body in extract_bytes(),
            bom in proptest::prelude::any::<bool>(),
            latin1 in proptest::prelude::any::<bool>(),
            escape in proptest::prelude::any::<bool>(),
        ) {
            let mut dialect = Dialect::crm_preset();
            if latin1 {
                dialect.encoding = Encoding::Latin1;
            }
            if escape {
                dialect.escape = Some(b'\\');
            }
            // A byte-order mark is a UTF-8 thing.
            let mut bytes = if bom && !latin1 { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
            bytes.extend_from_slice(b"h1,h2,h3\n");
            bytes.extend(body);
            let mut reference = ::csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .escape(dialect.escape)
                .double_quote(dialect.escape.is_none())
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
                            .map(|f| match dialect.encoding {
                                // ISO-8859-1 is the first 256 code points.
                                Encoding::Latin1 => Ok(Cell::Text(f.iter().map(|&b| char::from(b)).collect())),
                                _ => std::str::from_utf8(f).map(|t| Cell::Text(t.to_string())).map_err(|e| e.to_string()),
                            })
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
