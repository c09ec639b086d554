//! Cutting a delimited file into chunks of whole records, so chunks can be parsed on
//! every core at once.
//!
//! One pass over the bytes follows the quoting rules (a quote opens a field only at its
//! start; doubled quotes or the escape byte stay inside it), so a line end inside quotes
//! never ends a chunk. A record longer than `max_record_bytes` is skipped through to its
//! end without being buffered and handed on as that record's problem; a quote still open
//! at the end of the file is the file's problem, naming the line where it opened.

use std::io::Read;

use crate::error::Result;
use crate::reader::{PREVIEW_BYTES, file_error};

/// Whole records (and the blank lines between them), in the file's encoding.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Line of the first byte.
    pub first_line: u64,
    /// Whether the byte before the chunk was `\r`, so a `\n` first ends no line.
    pub after_cr: bool,
}

/// A record longer than `max_record_bytes`, skipped.
#[derive(Debug)]
pub(crate) struct OversizedRecord {
    /// The line it starts on.
    pub line: u64,
    /// Its first bytes.
    pub preview: Vec<u8>,
}

/// What the splitter hands on, in file order.
#[derive(Debug)]
pub(crate) enum Piece {
    Records(Chunk),
    Oversized(OversizedRecord),
}

/// How many line ends `bytes` hold: `\r\n` is one, and so is a `\r` or `\n` alone.
/// `after_cr` says whether the byte before `bytes` was `\r`.
pub(crate) fn line_ends(bytes: &[u8], after_cr: bool) -> u64 {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    // A `\r` ends a line of its own unless the `\n` after it (counted) does.
    let lone_crs = memchr::memchr_iter(b'\r', bytes)
        .filter(|&at| bytes.get(at + 1) != Some(&b'\n'))
        .count();
    let leading = usize::from(after_cr && bytes.first() == Some(&b'\n'));
    (newlines + lone_crs - leading) as u64
}

/// Whether the bytes read so far end inside a quoted field, followed with the parser's
/// rules (doubled quotes, or an escape byte).
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
    /// Takes one byte; true when it ends a record (a line end outside quotes).
    #[inline]
    fn step(&mut self, byte: u8) -> bool {
        use QuoteState::*;
        let line_end = byte == b'\n' || byte == b'\r';
        let ends_field = byte == self.delimiter || line_end;
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
        line_end && self.state == FieldStart
    }

    /// Takes bytes that are neither the quote, the escape byte nor a line end, in a state
    /// where only a delimiter among them matters.
    fn after_plain_bytes(&mut self, bytes: &[u8], delimiter: u8) {
        if let (QuoteState::Unquoted | QuoteState::FieldStart, Some(&last)) =
            (self.state, bytes.last())
        {
            self.state = if last == delimiter {
                QuoteState::FieldStart
            } else {
                QuoteState::Unquoted
            };
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.state, QuoteState::Quoted | QuoteState::Escaped)
    }
}

/// What a scan of the buffered bytes found.
enum Scan {
    /// Every buffered byte was scanned.
    Done,
    /// The record from the last boundary to the terminator at `end` is too long.
    TooLong { end: usize },
}

/// A record being skipped because it is too long.
struct Skipping {
    line: u64,
    preview: Vec<u8>,
    quote_line: Option<u64>,
}

/// Reads a file from its first record (the header, when it has one) and cuts it into
/// [`Piece`]s of about `chunk_bytes`.
pub(crate) struct Splitter<R> {
    input: R,
    display: String,
    chunk_bytes: usize,
    max_record_bytes: usize,
    quote: u8,
    /// Bytes from the start of the current chunk.
    buffer: Vec<u8>,
    /// Line of `buffer[0]`, and whether the byte before it was `\r`.
    first_line: u64,
    after_cr: bool,
    /// Bytes of `buffer` scanned, and where the record being scanned starts.
    scanned: usize,
    record_start: usize,
    quoting: Quoting,
    skipping: Option<Skipping>,
    /// A piece found while cutting the one before it.
    pending: Option<Piece>,
    at_end: bool,
    done: bool,
}

impl<R: Read> Splitter<R> {
    /// Splits `input`, whose first byte is on line `first_line`.
    pub fn new(
        input: R,
        display: &str,
        dialect: &crate::dialect::Dialect,
        first_line: u64,
        chunk_bytes: usize,
        max_record_bytes: usize,
    ) -> Self {
        Self {
            input,
            display: display.to_string(),
            chunk_bytes: chunk_bytes.max(1),
            max_record_bytes: max_record_bytes.max(1),
            quote: dialect.quote,
            buffer: Vec::new(),
            first_line,
            after_cr: false,
            scanned: 0,
            record_start: 0,
            quoting: Quoting {
                quote: dialect.quote,
                delimiter: dialect.delimiter,
                escape: dialect.escape,
                state: QuoteState::FieldStart,
            },
            skipping: None,
            pending: None,
            at_end: false,
            done: false,
        }
    }

    /// The next piece, None at the end of the file.
    pub fn next_piece(&mut self) -> Result<Option<Piece>> {
        if let Some(piece) = self.pending.take() {
            return Ok(Some(piece));
        }
        while !self.done {
            self.fill()?;
            if let Scan::TooLong { end } = self.scan() {
                let end = end - self.record_start;
                let before = self.cut_records();
                let (line, preview) = match self.skipping.take() {
                    Some(skipping) => (skipping.line, skipping.preview),
                    None => (
                        self.first_line,
                        self.buffer[..self.preview_bytes()].to_vec(),
                    ),
                };
                self.discard(end + 1);
                let oversized = Piece::Oversized(OversizedRecord { line, preview });
                return Ok(Some(match before {
                    Some(chunk) => {
                        self.pending = Some(oversized);
                        chunk
                    }
                    None => oversized,
                }));
            }
            if self.skipping.is_some() {
                self.skip_scanned();
            } else if self.buffer.len() - self.record_start > self.max_record_bytes {
                let before = self.cut_records();
                self.start_skipping();
                if before.is_some() {
                    return Ok(before);
                }
                continue;
            }
            if self.at_end {
                return self.finish();
            }
            if self.record_start > 0 && self.buffer.len() >= self.chunk_bytes {
                return Ok(self.cut_records());
            }
        }
        Ok(None)
    }

    /// Reads until a chunk's worth of bytes is buffered past what was scanned, or the end.
    fn fill(&mut self) -> Result<()> {
        let want = if self.buffer.len() < self.chunk_bytes {
            self.chunk_bytes - self.buffer.len()
        } else {
            self.chunk_bytes
        };
        let read = (&mut self.input)
            .take(want as u64)
            .read_to_end(&mut self.buffer)
            .map_err(|e| file_error(&self.display, e))?;
        self.at_end = read < want;
        Ok(())
    }

    /// Scans the new bytes for record ends. Inside quotes it jumps to the next quote (or
    /// escape byte), outside them to the next quote or line end: the bytes in between
    /// cannot change the quoting, except that a delimiter puts the next byte at a field's
    /// start.
    fn scan(&mut self) -> Scan {
        let Quoting {
            quote,
            delimiter,
            escape,
            ..
        } = self.quoting;
        let limit = self.max_record_bytes;
        let mut i = self.scanned;
        while i < self.buffer.len() {
            let rest = &self.buffer[i..];
            let jump = match self.quoting.state {
                QuoteState::Quoted => match escape {
                    Some(escape) => memchr::memchr2(quote, escape, rest),
                    None => memchr::memchr(quote, rest),
                },
                QuoteState::Unquoted => memchr::memchr3(quote, b'\n', b'\r', rest),
                _ => Some(0),
            };
            let Some(skipped) = jump else {
                self.quoting.after_plain_bytes(rest, delimiter);
                break;
            };
            self.quoting.after_plain_bytes(&rest[..skipped], delimiter);
            i += skipped;
            if self.quoting.step(self.buffer[i]) {
                if self.skipping.is_some() || i - self.record_start > limit {
                    self.scanned = i + 1;
                    return Scan::TooLong { end: i };
                }
                self.record_start = i + 1;
            }
            i += 1;
        }
        self.scanned = self.buffer.len();
        Scan::Done
    }

    /// The complete records buffered, as a chunk; None when there are none.
    fn cut_records(&mut self) -> Option<Piece> {
        if self.record_start == 0 {
            return None;
        }
        let (first_line, after_cr) = (self.first_line, self.after_cr);
        let end = std::mem::take(&mut self.record_start);
        self.pass(end);
        let rest = self.buffer.split_off(end);
        Some(Piece::Records(Chunk {
            bytes: std::mem::replace(&mut self.buffer, rest),
            first_line,
            after_cr,
        }))
    }

    /// Drops the first `count` buffered bytes, which end a record.
    fn discard(&mut self, count: usize) {
        self.pass(count);
        self.buffer.drain(..count);
        self.record_start = 0;
        self.skipping = None;
    }

    /// Moves the first line (and what was scanned) past the first `count` buffered
    /// bytes, which the caller then takes out of the buffer.
    fn pass(&mut self, count: usize) {
        let passed = &self.buffer[..count];
        self.first_line += line_ends(passed, self.after_cr);
        if let Some(&last) = passed.last() {
            self.after_cr = last == b'\r';
        }
        self.scanned -= count;
    }

    /// The record at the buffer's start is too long: remember its line, first bytes and
    /// first quote, and stop buffering it.
    fn start_skipping(&mut self) {
        self.skipping = Some(Skipping {
            line: self.first_line,
            preview: self.buffer[..self.preview_bytes()].to_vec(),
            quote_line: None,
        });
        self.skip_scanned();
    }

    /// How many first bytes of a record that is too long are kept: a record is too long
    /// once it has more than `max_record_bytes`, so it always has this many.
    fn preview_bytes(&self) -> usize {
        PREVIEW_BYTES.min(self.max_record_bytes)
    }

    /// Drops the scanned bytes of the record being skipped, noting its first quote.
    fn skip_scanned(&mut self) {
        let scanned = self.scanned;
        let first_quote = self.buffer[..scanned].iter().position(|&b| b == self.quote);
        let line =
            first_quote.map(|at| self.first_line + line_ends(&self.buffer[..at], self.after_cr));
        if let Some(skipping) = &mut self.skipping {
            skipping.quote_line = skipping.quote_line.or(line);
        }
        self.pass(scanned);
        self.buffer.drain(..scanned);
    }

    /// At the end of the file: the last records, the skipped record, or the open quote.
    fn finish(&mut self) -> Result<Option<Piece>> {
        self.done = true;
        if self.quoting.is_open() {
            let record = &self.buffer[self.record_start..];
            let quote_line = match &self.skipping {
                Some(skipping) => skipping.quote_line.unwrap_or(skipping.line),
                None => {
                    let before = line_ends(&self.buffer[..self.record_start], self.after_cr);
                    let at = record.iter().position(|&b| b == self.quote).unwrap_or(0);
                    let after_cr = match self.record_start {
                        0 => self.after_cr,
                        start => self.buffer[start - 1] == b'\r',
                    };
                    self.first_line + before + line_ends(&record[..at], after_cr)
                }
            };
            return Err(file_error(
                &self.display,
                format!(
                    "line {quote_line}: a quote opened here is never closed, so everything after it would be one field; nothing of the file landed. Close or remove the quote"
                ),
            ));
        }
        if let Some(skipping) = self.skipping.take() {
            return Ok(Some(Piece::Oversized(OversizedRecord {
                line: skipping.line,
                preview: skipping.preview,
            })));
        }
        self.record_start = self.buffer.len();
        Ok(self.cut_records())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::Dialect;

    fn pieces(bytes: &[u8], chunk_bytes: usize, max_record_bytes: usize) -> Result<Vec<Piece>> {
        let mut splitter = Splitter::new(
            bytes,
            "f.csv",
            &Dialect::crm_preset(),
            1,
            chunk_bytes,
            max_record_bytes,
        );
        let mut pieces = Vec::new();
        while let Some(piece) = splitter.next_piece()? {
            pieces.push(piece);
        }
        Ok(pieces)
    }

    #[test]
    fn line_ends_count_crlf_once() {
        assert_eq!(line_ends(b"a\r\nb\nc\rd", false), 3);
        assert_eq!(line_ends(b"\na", true), 0);
        assert_eq!(line_ends(b"\na", false), 1);
        assert_eq!(line_ends(b"", true), 0);
    }

    #[test]
    fn chunks_end_at_record_ends_outside_quotes_and_carry_their_first_line() {
        let text = b"h\r\n\"a\nb\",1\r\nc,2\n\"d\r\n\",3\n";
        for chunk_bytes in 1..text.len() + 2 {
            let pieces = pieces(text, chunk_bytes, 1 << 20).unwrap();
            let mut joined = Vec::new();
            for piece in &pieces {
                let Piece::Records(chunk) = piece else {
                    panic!("nothing is oversized")
                };
                assert_eq!(chunk.first_line, 1 + line_ends(&joined, false));
                assert_eq!(chunk.after_cr, joined.last() == Some(&b'\r'));
                let last = *chunk.bytes.last().unwrap();
                let is_last = joined.len() + chunk.bytes.len() == text.len();
                assert!(is_last || last == b'\n' || last == b'\r');
                joined.extend_from_slice(&chunk.bytes);
            }
            assert_eq!(joined, text, "chunk size {chunk_bytes}");
        }
    }

    #[test]
    fn a_long_record_is_skipped_and_the_records_around_it_kept() {
        let long = "x".repeat(50);
        let text = format!("h\n1\n2,\"{long}\n{long}\"\n3\n");
        for chunk_bytes in [1, 7, 64, 4096] {
            let pieces = pieces(text.as_bytes(), chunk_bytes, 20).unwrap();
            let mut kept = Vec::new();
            let mut oversized = Vec::new();
            for piece in pieces {
                match piece {
                    Piece::Records(chunk) => kept.extend(chunk.bytes),
                    Piece::Oversized(record) => oversized.push(record),
                }
            }
            assert_eq!(kept, b"h\n1\n3\n", "chunk size {chunk_bytes}");
            assert_eq!(oversized.len(), 1);
            assert_eq!(oversized[0].line, 3);
            assert!(oversized[0].preview.starts_with(b"2,\"xxx"));
        }
    }

    #[test]
    fn an_open_quote_at_the_end_names_its_line() {
        let text = b"h\n1\n2,\"b\n3\n4\n";
        for chunk_bytes in [1, 3, 100] {
            for limit in [4, 1 << 20] {
                let error = pieces(text, chunk_bytes, limit).unwrap_err();
                assert!(
                    error
                        .to_string()
                        .starts_with("f.csv: line 3: a quote opened here"),
                    "{error}"
                );
            }
        }
    }
}
