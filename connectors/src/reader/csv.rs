//! Delimited text: preamble and skipped lines, byte-order marks, quoting with embedded
//! newlines, and field decoding in the dialect's encoding.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use csv::{ByteRecord, ReaderBuilder};

use super::{Record, RecordReader, file_error};
use crate::cell::Cell;
use crate::dialect::{Dialect, Encoding};
use crate::error::Result;

type Input = LineCounting<std::io::Chain<Cursor<Vec<u8>>, BufReader<File>>>;

/// Where the line terminators are, so a record's line number is exact whatever the line
/// endings (the CSV parser's own line count lags behind on `\r\n` files).
#[derive(Default)]
struct Terminators {
    /// Offsets of `\r` and `\n` bytes the parser has read but no record has passed yet.
    pending: VecDeque<(u64, u8)>,
    /// `\n` bytes before the first pending one.
    newlines_before: u64,
}

impl Terminators {
    /// The line (from 1) of the record whose parse started at byte `start`: the first
    /// byte at or after `start` that is not a line terminator.
    fn line_at(&mut self, start: u64) -> u64 {
        while let Some(&(offset, byte)) = self.pending.front() {
            if offset >= start {
                break;
            }
            self.newlines_before += u64::from(byte == b'\n');
            self.pending.pop_front();
        }
        let run_newlines: u64 = (start..)
            .zip(&self.pending)
            .take_while(|(expected, (offset, _))| offset == expected)
            .map(|(_, &(_, byte))| u64::from(byte == b'\n'))
            .sum();
        self.newlines_before + run_newlines + 1
    }
}

/// A reader that logs the offsets of line terminators as the parser reads.
struct LineCounting<R> {
    inner: R,
    offset: u64,
    terminators: Arc<Mutex<Terminators>>,
}

impl<R: Read> Read for LineCounting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        let mut terminators = self.terminators.lock().unwrap_or_else(|e| e.into_inner());
        for (i, &byte) in buf[..read].iter().enumerate() {
            if byte == b'\n' || byte == b'\r' {
                terminators
                    .pending
                    .push_back((self.offset + i as u64, byte));
            }
        }
        self.offset += read as u64;
        Ok(read)
    }
}

/// Reads a delimited text file.
pub struct CsvReader {
    display: String,
    dialect: Dialect,
    reader: csv::Reader<Input>,
    terminators: Arc<Mutex<Terminators>>,
    headers: Vec<String>,
    lines_before: u64,
    pending: Option<ByteRecord>,
}

impl CsvReader {
    /// Opens `path`, skips what precedes the header and reads the header.
    pub fn open(path: &Path, display: &str, dialect: Dialect) -> Result<Self> {
        let file = File::open(path).map_err(|e| file_error(display, e))?;
        let mut input = BufReader::new(file);
        let mut lines_before = 0u64;
        let mut line = Vec::new();
        let mut first = true;
        // Skipped rows and preamble lines are whole physical lines before the header.
        let start = loop {
            line.clear();
            let read = input
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
                break std::mem::take(&mut line);
            }
            lines_before += 1;
        };
        let terminators = Arc::new(Mutex::new(Terminators::default()));
        let counting = LineCounting {
            inner: Cursor::new(start).chain(input),
            offset: 0,
            terminators: terminators.clone(),
        };
        let reader = ReaderBuilder::new()
            .delimiter(dialect.delimiter)
            .quote(dialect.quote)
            .escape(dialect.escape)
            .double_quote(dialect.escape.is_none())
            .has_headers(false)
            .flexible(true)
            .from_reader(counting);
        let mut this = Self {
            display: display.to_string(),
            dialect,
            reader,
            terminators,
            headers: Vec::new(),
            lines_before,
            pending: None,
        };
        let Some(first_record) = this.next_record()? else {
            return Ok(this);
        };
        if this.dialect.header {
            this.headers = first_record
                .iter()
                .enumerate()
                .map(|(i, field)| {
                    let name = this.dialect.decode(field).map_err(|e| {
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
            this.headers = (1..=first_record.len())
                .map(|i| format!("column_{i}"))
                .collect();
            this.pending = Some(first_record);
        }
        Ok(this)
    }

    fn next_record(&mut self) -> Result<Option<ByteRecord>> {
        let mut record = ByteRecord::new();
        match self.reader.read_byte_record(&mut record) {
            Ok(true) => Ok(Some(record)),
            Ok(false) => Ok(None),
            Err(e) => Err(file_error(&self.display, e)),
        }
    }

    fn to_record(&self, record: &ByteRecord) -> Record {
        let start = record.position().map_or(0, |p| p.byte());
        let mut terminators = self.terminators.lock().unwrap_or_else(|e| e.into_inner());
        let row = terminators.line_at(start) + self.lines_before;
        drop(terminators);
        let delimiter = char::from(self.dialect.delimiter).to_string();
        let raw = record
            .iter()
            .map(|f| {
                self.dialect
                    .decode(f)
                    .unwrap_or_else(|_| String::from_utf8_lossy(f).into_owned())
            })
            .collect::<Vec<_>>()
            .join(&delimiter);
        let fields = if record.len() != self.headers.len() {
            Err(format!(
                "expected {} fields, found {}",
                self.headers.len(),
                record.len()
            ))
        } else {
            record
                .iter()
                .zip(&self.headers)
                .map(|(field, column)| {
                    self.dialect
                        .decode(field)
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
        let record = match self.pending.take() {
            Some(record) => record,
            None => match self.next_record() {
                Ok(Some(record)) => record,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            },
        };
        Some(Ok(self.to_record(&record)))
    }
}

impl RecordReader for CsvReader {
    fn headers(&self) -> &[String] {
        &self.headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], dialect: Dialect) -> (Vec<String>, Vec<Record>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, bytes).unwrap();
        let reader = CsvReader::open(&path, "f.csv", dialect).unwrap();
        let headers = reader.headers().to_vec();
        (headers, reader.map(Result::unwrap).collect())
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
}
