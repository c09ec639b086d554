//! Reading one extract file into typed batches and quarantined rows, in a blocking task
//! that hands them to the Delta writer in file order.
//!
//! Delimited text is read front to back by one thread that cuts it into chunks of whole
//! records; a pool of workers (one per core) parses and types the chunks column by
//! column; the reading thread hands their results on in file order, so `_source_row`,
//! quarantine order and `max_bad_rows` come out exactly as if the file were read row by
//! row. Channels between the threads are bounded, so memory stays flat at any file size.
//! JSON and Parquet are read record by record.

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use datafusion::arrow::array::RecordBatch;
use lakescore_engine::config::{BadRowLimit, SourceFormat};
use tokio::sync::mpsc;

use crate::batch::{BatchBuilder, ChunkTyper, FileLineage, RowProblem, TypedChunk};
use crate::cell::Cell;
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::files::Listed;
use crate::quarantine::QuarantinedRow;
use crate::reader::csv::{self, Chunk, CsvFile, OversizedRecord, ParsedChunk, Piece};
use crate::reader::{RecordLimits, RecordReader, json::JsonReader, parquet::ParquetReader};
use crate::schema::{Column, INFERENCE_SAMPLE, infer_type, is_lineage, normalize_name};

/// Rows per record batch handed to the Delta writer from JSON and Parquet.
const BATCH_ROWS: usize = 8192;

/// Bytes of delimited text per chunk: each becomes one record batch.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// Quarantined rows handed to the writer at once, at most.
const QUARANTINE_ROWS: usize = 1024;

/// What a read job hands to the writer.
pub(crate) enum Message {
    Batch(RecordBatch),
    /// Quarantined rows, in file order (a handful of messages, not one per row: a file of
    /// bad rows would otherwise spend its time switching threads).
    Quarantine(Vec<QuarantinedRow>),
    Records(u64),
}

/// What reading one file produced.
pub(crate) struct FileOutcome {
    pub columns: Vec<Column>,
    pub rows: u64,
    pub bad: u64,
    pub first_problem: Option<String>,
    /// The fingerprint of the file's content, which its ledger entry is made of.
    pub fingerprint: String,
}

/// Everything the blocking reader needs.
pub(crate) struct ReadJob {
    pub format: SourceFormat,
    pub path: PathBuf,
    pub display: String,
    pub dialect: Dialect,
    pub columns: Vec<Column>,
    /// Merge keys: every file must have them and every row must fill them.
    pub keys: Vec<String>,
    pub lineage: FileLineage,
    pub limits: RecordLimits,
    /// What the file was known by when it was listed.
    pub listed: Listed,
    /// Reading stops as soon as the file is certain to have more bad rows than this.
    pub max_bad_rows: BadRowLimit,
    /// Bytes of delimited text per chunk.
    pub chunk_bytes: usize,
}

/// The columns a file lands into, once its header was checked.
struct Planned {
    /// The file's column names, normalized.
    headers: Vec<String>,
    /// The table's columns (keys marked required), before columns new in this file.
    columns: Vec<Column>,
    /// Header positions of columns the table does not have yet.
    unknown: Vec<usize>,
}

impl ReadJob {
    /// Reads the file, sending batches and quarantined rows; returns the file's counts and
    /// the columns after any new ones it brought.
    pub fn run(self, sender: &mpsc::Sender<Message>) -> Result<FileOutcome> {
        let mut out = Output {
            sender,
            display: &self.display,
            limit: &self.max_bad_rows,
            quarantined: Vec::new(),
            outcome: FileOutcome {
                columns: Vec::new(),
                rows: 0,
                bad: 0,
                first_problem: None,
                fingerprint: String::new(),
            },
        };
        match self.format {
            SourceFormat::Csv => self.read_delimited(&mut out)?,
            SourceFormat::Json => {
                let records = JsonReader::open(&self.path, &self.display, self.limits)?;
                self.read_records(Box::new(records), &mut out)?;
            }
            SourceFormat::Parquet => {
                let records = ParquetReader::open(&self.path, &self.display)?;
                self.read_records(Box::new(records), &mut out)?;
            }
        }
        out.send_quarantined()?;
        Ok(out.outcome)
    }

    /// Checks a file's header against the table: no two columns with one name, no
    /// lineage names, every required column and key present.
    fn plan(&self, raw_headers: &[String]) -> Result<Planned> {
        let headers: Vec<String> = raw_headers.iter().map(|h| normalize_name(h)).collect();
        if let Some((a, b)) = duplicate(&headers, raw_headers) {
            return Err(self.file_error(format!(
                "columns '{a}' and '{b}' both become '{}' as column names",
                normalize_name(a)
            )));
        }
        if let Some(reserved) = headers.iter().find(|h| is_lineage(h)) {
            return Err(self.file_error(format!(
                "column '{reserved}' is reserved for lakescore's lineage: rename it in the extract"
            )));
        }
        let mut columns = self.columns.clone();
        for column in &mut columns {
            column.required |= self.keys.contains(&column.name);
        }
        let required = columns
            .iter()
            .filter(|c| c.required)
            .map(|c| &c.name)
            .chain(&self.keys);
        if let Some(missing) = required.into_iter().find(|name| !headers.contains(name)) {
            return Err(self.file_error(format!(
                "required column '{missing}' is missing (the file has: {})",
                headers.join(", ")
            )));
        }
        let unknown = (0..headers.len())
            .filter(|&i| !columns.iter().any(|c| c.name == headers[i]))
            .collect();
        Ok(Planned {
            headers,
            columns,
            unknown,
        })
    }

    /// The planned columns plus those new in this file, typed from `values(i)`: the
    /// sample's values of header position `i`.
    fn with_inferred(&self, planned: &Planned, values: impl Fn(usize) -> Vec<Cell>) -> Vec<Column> {
        let mut columns = planned.columns.clone();
        for &i in &planned.unknown {
            let name = &planned.headers[i];
            columns.push(Column {
                name: name.clone(),
                column_type: infer_type(values(i).iter(), &self.dialect),
                required: self.keys.contains(name),
            });
        }
        columns
    }

    /// Delimited text: chunks parsed and typed on every core, handed on in order.
    fn read_delimited(&self, out: &mut Output<'_>) -> Result<()> {
        let mut file = CsvFile::open(
            &self.path,
            &self.display,
            &self.dialect,
            self.limits,
            self.chunk_bytes,
        )?;
        // The first pieces hold the header and the sample new columns are typed from.
        let header_records = usize::from(self.dialect.header);
        let mut first = Vec::new();
        let mut sampled = 0;
        while sampled <= INFERENCE_SAMPLE {
            match file.next_piece()? {
                None => break,
                Some(Piece::Oversized(record)) if sampled == 0 => {
                    return Err(self.file_error(format!(
                        "line {}: the header is longer than max_record_bytes ({} bytes)",
                        record.line, self.limits.max_record_bytes
                    )));
                }
                Some(Piece::Oversized(record)) => first.push(Ready::Oversized(record)),
                Some(Piece::Records(chunk)) => {
                    let parsed = ParsedChunk::parse(&chunk, &self.dialect);
                    // The file's first record is in the first chunk that has any.
                    let from = if sampled == 0 && parsed.len() > 0 {
                        header_records
                    } else {
                        0
                    };
                    sampled += parsed.len();
                    first.push(Ready::Parsed(parsed, from));
                }
            }
        }
        let header = first.iter().find_map(|ready| match ready {
            Ready::Parsed(parsed, _) if parsed.len() > 0 => Some(parsed),
            _ => None,
        });
        let raw_headers = match header {
            Some(parsed) => csv::headers(parsed, &self.dialect, &self.display)?,
            None => Vec::new(),
        };
        let planned = self.plan(&raw_headers)?;
        let sample: Vec<(&ParsedChunk, usize)> = first
            .iter()
            .filter_map(|ready| match ready {
                Ready::Parsed(parsed, from) => Some((parsed, *from)),
                Ready::Oversized(_) => None,
            })
            .flat_map(|(parsed, from)| (from..parsed.len()).map(move |r| (parsed, r)))
            .take(INFERENCE_SAMPLE)
            .filter(|(parsed, r)| parsed.problem(*r, &raw_headers, self.limits).is_none())
            .collect();
        let columns = self.with_inferred(&planned, |i| {
            sample
                .iter()
                .map(|(parsed, r)| Cell::Text(parsed.field(*r, i).to_string()))
                .collect()
        });
        out.outcome.columns = columns.clone();
        let typer = ChunkTyper::new(
            columns,
            planned.headers,
            self.lineage.clone(),
            self.dialect.clone(),
            self.limits,
        );
        let mut hand_on = |done: Done| match done {
            Done::Typed(typed) => out.typed(typed.map_err(|e| self.file_error(e))?),
            Done::Oversized(record) => out.oversized(&record, self),
        };
        for ready in first {
            hand_on(match ready {
                Ready::Parsed(parsed, from) => Done::Typed(typer.type_chunk(&parsed, from)),
                Ready::Oversized(record) => Done::Oversized(record),
            })?;
        }
        let read = read_in_parallel(file, &typer, &self.dialect, hand_on)?;
        out.outcome.fingerprint = self.check_unchanged(Some(read))?;
        Ok(())
    }

    /// JSON and Parquet: record by record.
    fn read_records(&self, mut records: Box<dyn RecordReader>, out: &mut Output<'_>) -> Result<()> {
        let planned = self.plan(records.headers())?;
        let mut sample = Vec::new();
        if !planned.unknown.is_empty() {
            for record in records.by_ref().take(INFERENCE_SAMPLE) {
                sample.push(record?);
            }
        }
        let columns = self.with_inferred(&planned, |i| {
            sample
                .iter()
                .filter_map(|r| r.fields.as_ref().ok().and_then(|f| f.get(i)).cloned())
                .collect()
        });
        out.outcome.columns = columns.clone();
        let layout: Vec<Option<usize>> = columns
            .iter()
            .map(|c| planned.headers.iter().position(|h| *h == c.name))
            .collect();
        let mut builder = BatchBuilder::new(columns.clone(), self.lineage.clone());
        let mut aligned = vec![Cell::Null; columns.len()];
        for record in sample.into_iter().map(Ok).chain(records.by_ref()) {
            let record = record?;
            out.outcome.rows += 1;
            let problem = match record.fields {
                Err(message) => Some(RowProblem {
                    column: None,
                    message,
                }),
                Ok(mut cells) => {
                    for (slot, position) in aligned.iter_mut().zip(&layout) {
                        *slot = position
                            .and_then(|p| cells.get_mut(p).map(std::mem::take))
                            .unwrap_or(Cell::Null);
                    }
                    builder.push(record.row, &aligned, &self.dialect).err()
                }
            };
            if let Some(problem) = problem {
                out.reject(record.row, problem, record.raw)?;
            }
            if builder.len() >= BATCH_ROWS {
                out.batch(builder.finish().map_err(|e| self.file_error(e))?)?;
            }
        }
        out.outcome.fingerprint = self.check_unchanged(records.fingerprint())?;
        if !builder.is_empty() {
            out.batch(builder.finish().map_err(|e| self.file_error(e))?)?;
        }
        out.send(Message::Records(out.outcome.rows))
    }

    /// The file's fingerprint, the one its ledger entry is made of. Fails when the bytes
    /// read are not the ones the file was listed with: it changed in between (an export
    /// still being written), so what landed would not be what the ledger records. `read`
    /// is the fingerprint of the bytes read, None when the format is not read front to
    /// back (the file is then hashed again).
    fn check_unchanged(&self, read: Option<String>) -> Result<String> {
        let read = || match read {
            Some(read) => Ok(read),
            None => crate::files::sha256_file(&self.path)
                .map(|(_, digest)| format!("sha256:{digest}"))
                .map_err(|e| self.file_error(e)),
        };
        let unchanged = match &self.listed {
            // Object-store extracts are read by their ETag, which the read itself checks.
            Listed::Fingerprint(listed) if !listed.starts_with("sha256:") => {
                return Ok(listed.clone());
            }
            Listed::Fingerprint(listed) => {
                let read = read()?;
                (read == *listed).then_some(read)
            }
            // Hashed only as it was read: what was read is what the ledger records, and
            // an export written to meanwhile has a new size or modification time.
            Listed::Unread { size, modified } => {
                let read = read()?;
                let now =
                    crate::files::size_and_modified(&self.path).map_err(|e| self.file_error(e))?;
                (now == Some((*size, *modified))).then_some(read)
            }
        };
        unchanged.ok_or_else(|| self.file_error(crate::files::CHANGED_WHILE_READ))
    }

    fn file_error(&self, message: impl fmt::Display) -> Error {
        Error::File {
            file: self.display.clone(),
            message: message.to_string(),
        }
    }
}

/// A piece of the first chunks, parsed for the header and the sample: a chunk and the
/// record its data starts at (1 in the chunk holding the header), or a record too long.
enum Ready {
    Parsed(ParsedChunk, usize),
    Oversized(OversizedRecord),
}

/// A chunk typed by a worker.
type Typed = std::result::Result<TypedChunk, datafusion::arrow::error::ArrowError>;

/// What is handed on, in file order.
enum Done {
    Typed(Typed),
    Oversized(OversizedRecord),
}

/// What the splitting thread hands the reading thread, in file order.
enum Pending {
    /// A chunk being typed by a worker: its result arrives here.
    Chunk(Receiver<Typed>),
    Oversized(OversizedRecord),
    Failed(Error),
    /// The end of the file, with the fingerprint of every byte read.
    End(String),
}

/// Reads the rest of `file` in parallel: one thread splits it, a worker per core parses
/// (with `dialect`) and types (with `typer`) each chunk, and `hand_on` gets each piece in
/// file order on the calling thread. Returns the file's fingerprint; stops at the first
/// error, from `hand_on` or the file.
fn read_in_parallel(
    mut file: CsvFile,
    typer: &ChunkTyper,
    dialect: &Dialect,
    mut hand_on: impl FnMut(Done) -> Result<()>,
) -> Result<String> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(16));
    let (work, queue) = sync_channel::<(Chunk, SyncSender<Typed>)>(workers);
    let queue = Mutex::new(queue);
    let (pending, in_order) = sync_channel::<Pending>(workers);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let queue = &queue;
            scope.spawn(move || {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((chunk, result)) = next else { break };
                    let parsed = ParsedChunk::parse(&chunk, dialect);
                    // The reading thread may have stopped; then nobody waits for this.
                    let _ = result.send(typer.type_chunk(&parsed, 0));
                }
            });
        }
        scope.spawn(move || {
            loop {
                let next = match file.next_piece() {
                    Ok(Some(Piece::Records(chunk))) => {
                        let (result, arrives) = sync_channel(1);
                        if work.send((chunk, result)).is_err() {
                            break;
                        }
                        Pending::Chunk(arrives)
                    }
                    Ok(Some(Piece::Oversized(record))) => Pending::Oversized(record),
                    Ok(None) => Pending::End(file.fingerprint()),
                    Err(error) => Pending::Failed(error),
                };
                let last = matches!(next, Pending::End(_) | Pending::Failed(_));
                if pending.send(next).is_err() || last {
                    break;
                }
            }
        });
        for next in in_order {
            match next {
                Pending::Chunk(arrives) => {
                    let typed = arrives.recv().map_err(|_| {
                        Error::storage("reading", "a parsing thread stopped unexpectedly")
                    })?;
                    hand_on(Done::Typed(typed))?;
                }
                Pending::Oversized(record) => hand_on(Done::Oversized(record))?,
                Pending::Failed(error) => return Err(error),
                Pending::End(fingerprint) => return Ok(fingerprint),
            }
        }
        Err(Error::storage(
            "reading",
            "the reading thread stopped unexpectedly",
        ))
    })
}

/// Where a read job's rows go, and the file's counts so far.
struct Output<'a> {
    sender: &'a mpsc::Sender<Message>,
    display: &'a str,
    limit: &'a BadRowLimit,
    /// Quarantined rows not handed on yet (dropped if the file fails first, so a file
    /// that fails with none handed on is rejected on its own).
    quarantined: Vec<QuarantinedRow>,
    outcome: FileOutcome,
}

impl Output<'_> {
    fn send(&self, message: Message) -> Result<()> {
        self.sender
            .blocking_send(message)
            .map_err(|_| Error::storage(self.display, "the writer stopped"))
    }

    fn batch(&mut self, batch: RecordBatch) -> Result<()> {
        self.send_quarantined()?;
        self.send(Message::Batch(batch))?;
        self.send(Message::Records(self.outcome.rows))
    }

    /// Hands on the quarantined rows not handed on yet.
    fn send_quarantined(&mut self) -> Result<()> {
        if self.quarantined.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.quarantined);
        self.send(Message::Quarantine(rows))
    }

    /// Quarantines the row at `row` (counted in `outcome.rows` already); fails once the
    /// file is certain to have too many bad rows.
    fn reject(&mut self, row: u64, problem: RowProblem, raw: String) -> Result<()> {
        let outcome = &mut self.outcome;
        outcome.bad += 1;
        if outcome.first_problem.is_none() {
            let at = problem
                .column
                .as_deref()
                .map(|c| format!(" column {c}"))
                .unwrap_or_default();
            outcome.first_problem = Some(format!("row {row}{at}: {}", problem.message));
        }
        self.quarantined.push(QuarantinedRow {
            file: self.display.to_string(),
            row,
            column: problem.column,
            error: problem.message,
            raw,
        });
        if let Some(error) = too_many_bad_rows(self.display, self.limit, &self.outcome, false) {
            return Err(error);
        }
        if self.quarantined.len() >= QUARANTINE_ROWS {
            self.send_quarantined()?;
        }
        Ok(())
    }

    /// A typed chunk: its rejected records in order (each counted as of its position),
    /// then its rows.
    fn typed(&mut self, typed: TypedChunk) -> Result<()> {
        let before = self.outcome.rows;
        for rejected in typed.rejected {
            self.outcome.rows = before + rejected.index as u64 + 1;
            self.reject(rejected.row, rejected.problem, rejected.raw)?;
        }
        self.outcome.rows = before + typed.records as u64;
        self.send_quarantined()?;
        if typed.batch.num_rows() > 0 {
            self.send(Message::Batch(typed.batch))?;
        }
        self.send(Message::Records(self.outcome.rows))
    }

    /// A record too long to read.
    fn oversized(&mut self, record: &OversizedRecord, job: &ReadJob) -> Result<()> {
        self.outcome.rows += 1;
        let (raw, message) =
            csv::oversized_record(record, &job.dialect, job.limits.max_record_bytes);
        let problem = RowProblem {
            column: None,
            message,
        };
        self.reject(record.line, problem, raw)
    }
}

/// The error for a file whose bad rows are over `limit`, once that is certain: a count
/// is over as soon as one more row is bad, a ratio only once the whole file is read.
pub(crate) fn too_many_bad_rows(
    file: &str,
    limit: &BadRowLimit,
    outcome: &FileOutcome,
    whole_file: bool,
) -> Option<Error> {
    let over = match limit {
        BadRowLimit::Count(limit) => outcome.bad > *limit,
        BadRowLimit::Ratio(ratio) => {
            whole_file && outcome.bad > 0 && outcome.bad as f64 > ratio * outcome.rows as f64
        }
    };
    over.then(|| Error::TooManyBadRows {
        file: file.to_string(),
        bad: outcome.bad,
        total: outcome.rows,
        whole_file,
        limit: limit.to_string(),
        first: outcome.first_problem.clone().unwrap_or_default(),
    })
}

/// Two headers that normalize to the same column name.
fn duplicate<'a>(normalized: &[String], original: &'a [String]) -> Option<(&'a str, &'a str)> {
    for (i, name) in normalized.iter().enumerate() {
        if let Some(j) = normalized[..i].iter().position(|other| other == name) {
            return Some((&original[j], &original[i]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use lakescore_engine::config::ColumnType;

    const LIMITS: RecordLimits = RecordLimits {
        max_field_bytes: 1 << 20,
        max_record_bytes: 4 << 20,
    };

    /// What reading a file sent to the writer, and how it ended.
    struct Landed {
        rows: String,
        quarantined: Vec<QuarantinedRow>,
        outcome: std::result::Result<(u64, u64), String>,
    }

    fn column(name: &str, column_type: ColumnType) -> Column {
        Column {
            name: name.into(),
            column_type,
            required: false,
        }
    }

    fn land(
        bytes: &[u8],
        dialect: &Dialect,
        columns: &[Column],
        limits: RecordLimits,
        max_bad_rows: BadRowLimit,
        chunk_bytes: usize,
    ) -> Landed {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, bytes).unwrap();
        let (_, digest) = crate::files::sha256_file(&path).unwrap();
        let job = ReadJob {
            format: SourceFormat::Csv,
            path,
            display: "f.csv".into(),
            dialect: dialect.clone(),
            columns: columns.to_vec(),
            keys: Vec::new(),
            lineage: FileLineage {
                file: "f.csv".into(),
                batch_id: "b".into(),
                ingested_at: 0,
            },
            limits,
            listed: Listed::Fingerprint(format!("sha256:{digest}")),
            max_bad_rows,
            chunk_bytes,
        };
        let (sender, mut receiver) = mpsc::channel(4);
        let reading = std::thread::spawn(move || job.run(&sender));
        let (mut batches, mut quarantined) = (Vec::new(), Vec::new());
        while let Some(message) = receiver.blocking_recv() {
            match message {
                Message::Batch(batch) => batches.push(batch),
                Message::Quarantine(rows) => quarantined.extend(rows),
                Message::Records(_) => {}
            }
        }
        let outcome = reading
            .join()
            .unwrap()
            .map(|outcome| (outcome.rows, outcome.bad))
            .map_err(|e| e.to_string());
        Landed {
            rows: pretty_format_batches(&batches).unwrap().to_string(),
            quarantined,
            outcome,
        }
    }

    /// Lands `bytes` in one chunk and in chunks of every size up to the file's; all
    /// land the same rows and quarantine the same records. Returns the one-chunk result.
    fn land_in_any_chunks(
        bytes: &[u8],
        dialect: &Dialect,
        columns: &[Column],
        max_bad_rows: BadRowLimit,
    ) -> Landed {
        let whole = land(bytes, dialect, columns, LIMITS, max_bad_rows, 1 << 20);
        for chunk_bytes in 1..=bytes.len() {
            let chunked = land(bytes, dialect, columns, LIMITS, max_bad_rows, chunk_bytes);
            if whole.outcome.is_ok() {
                // A file that fails commits nothing, whatever was sent before the failure.
                assert_eq!(chunked.rows, whole.rows, "chunks of {chunk_bytes} bytes");
                assert_eq!(
                    chunked.quarantined, whole.quarantined,
                    "chunks of {chunk_bytes} bytes"
                );
            }
            assert_eq!(
                chunked.outcome, whole.outcome,
                "chunks of {chunk_bytes} bytes"
            );
        }
        whole
    }

    #[test]
    fn quoted_newlines_crlf_bom_and_bad_rows_land_the_same_at_any_chunk_edge() {
        let text = "\u{FEFF}id,name,amount\r\n1,\"Acme,\nInc\",1.5\r\n2,Beta,x\r\n\r\n3,\"\"\"Q\"\"\",-2\r\n4,Delta\r\n5,Eps,7";
        let landed = land_in_any_chunks(
            text.as_bytes(),
            &Dialect::crm_preset(),
            &[
                column("id", ColumnType::Int),
                column("amount", ColumnType::Float),
            ],
            BadRowLimit::Count(10),
        );
        assert_eq!(landed.outcome, Ok((5, 2)));
        assert_eq!(
            landed.rows,
            "+----+--------+-------+--------------+-------------+---------------+----------------------+\n\
             | id | amount | name  | _source_file | _source_row | _ingest_batch | _ingested_at         |\n\
             +----+--------+-------+--------------+-------------+---------------+----------------------+\n\
             | 1  | 1.5    | Acme, | f.csv        | 2           | b             | 1970-01-01T00:00:00Z |\n\
             |    |        | Inc   |              |             |               |                      |\n\
             | 3  | -2.0   | \"Q\"   | f.csv        | 6           | b             | 1970-01-01T00:00:00Z |\n\
             | 5  | 7.0    | Eps   | f.csv        | 8           | b             | 1970-01-01T00:00:00Z |\n\
             +----+--------+-------+--------------+-------------+---------------+----------------------+"
        );
        let quarantined: Vec<(u64, Option<&str>, &str, &str)> = landed
            .quarantined
            .iter()
            .map(|q| (q.row, q.column.as_deref(), q.error.as_str(), q.raw.as_str()))
            .collect();
        assert_eq!(
            quarantined,
            [
                (4, Some("amount"), "'x' is not a number", "2,Beta,x"),
                (7, None, "expected 3 fields, found 2", "4,Delta"),
            ]
        );
    }

    #[test]
    fn windows_1252_bytes_and_erp_numbers_land_the_same_at_any_chunk_edge() {
        let text = b"Report\r\n\r\nKunde;Name;Betrag\r\n10;M\xFCller;1.234,56-\r\n11;\x80uro;x\r\n12;\"Gro\xDF\r\nhandel\";7\r\n";
        let landed = land_in_any_chunks(
            text,
            &Dialect::erp_preset(),
            &[column("betrag", ColumnType::Decimal(10, 2))],
            BadRowLimit::Count(10),
        );
        assert_eq!(landed.outcome, Ok((3, 1)));
        assert!(
            landed
                .rows
                .contains("| -1234.56 | 10    | Müller | f.csv        | 4 "),
            "{}",
            landed.rows
        );
        assert!(
            landed.rows.contains("| 7.00     | 12    | Groß\r"),
            "{}",
            landed.rows
        );
        assert_eq!(landed.quarantined.len(), 1);
        assert_eq!(landed.quarantined[0].row, 5);
        assert_eq!(landed.quarantined[0].raw, "11;€uro;x");
    }

    #[test]
    fn reading_stops_at_the_same_bad_row_at_any_chunk_size() {
        let mut text = String::from("id\n");
        for i in 0..40 {
            text.push_str(if i % 10 == 3 { "bad\n" } else { "1\n" });
        }
        let landed = land_in_any_chunks(
            text.as_bytes(),
            &Dialect::crm_preset(),
            &[column("id", ColumnType::Int)],
            BadRowLimit::Count(2),
        );
        let error = landed.outcome.unwrap_err();
        assert!(
            error.starts_with("f.csv: 3 of 24 rows read so far are bad, above max_bad_rows = 2;"),
            "{error}"
        );
        assert!(
            error.ends_with("First problem: row 5 column id: 'bad' is not an integer"),
            "{error}"
        );
    }

    #[test]
    fn an_escape_byte_keeps_quotes_and_line_ends_inside_fields_at_any_chunk_edge() {
        let mut dialect = Dialect::default_preset();
        dialect.escape = Some(b'\\');
        let text = b"id,note\n1,\"say \\\"hi\\\"\nthen,go\"\n2,\"a\\\\\"\n3,plain \"quote\n";
        let landed = land_in_any_chunks(
            text,
            &dialect,
            &[column("id", ColumnType::Int)],
            BadRowLimit::Count(0),
        );
        assert_eq!(landed.outcome, Ok((3, 0)));
        let cells = |line: &str| -> Vec<String> {
            line.split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        };
        let rows: Vec<Vec<String>> = landed.rows.lines().skip(3).map(cells).collect();
        assert_eq!(rows[0][1..4], ["1", "say \"hi\"", "f.csv"]);
        assert_eq!(rows[1][1..4], ["", "then,go", ""]);
        assert_eq!(rows[2][1..5], ["2", "a\\", "f.csv", "4"]);
        assert_eq!(rows[3][1..5], ["3", "plain \"quote", "f.csv", "5"]);
    }

    #[test]
    fn a_file_without_a_header_names_its_columns_and_lands_its_first_line() {
        let mut dialect = Dialect::crm_preset();
        dialect.header = false;
        let landed = land_in_any_chunks(
            b"\n\n7,a\n8,\"b\nc\"\n9,d\n",
            &dialect,
            &[column("column_1", ColumnType::Int)],
            BadRowLimit::Count(0),
        );
        assert_eq!(landed.outcome, Ok((3, 0)));
        assert!(
            landed.rows.starts_with(
                "+----------+----------+--------------+-------------+\
                 ---------------+----------------------+\n\
                 | column_1 | column_2 | _source_file | _source_row |"
            ),
            "{}",
            landed.rows
        );
        let cells = |line: &str| -> Vec<String> {
            line.split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        };
        let rows: Vec<Vec<String>> = landed.rows.lines().skip(3).map(cells).collect();
        assert_eq!(rows[0][1..5], ["7", "a", "f.csv", "3"]);
        assert_eq!(rows[1][1..5], ["8", "b", "f.csv", "4"]);
        assert_eq!(rows[2][1..5], ["", "c", "", ""]);
        assert_eq!(rows[3][1..5], ["9", "d", "f.csv", "6"]);
    }

    #[test]
    fn a_writer_that_stops_midway_stops_every_reading_thread() {
        let text: String = std::iter::once("id,note\n".to_string())
            .chain((0..5000).map(|i| format!("{i},\"note\n{i}\"\n")))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, &text).unwrap();
        let job = ReadJob {
            format: SourceFormat::Csv,
            path,
            display: "f.csv".into(),
            dialect: Dialect::crm_preset(),
            columns: vec![column("id", ColumnType::Int)],
            keys: Vec::new(),
            lineage: FileLineage {
                file: "f.csv".into(),
                batch_id: "b".into(),
                ingested_at: 0,
            },
            limits: LIMITS,
            listed: Listed::Fingerprint("etag:unchecked".into()),
            max_bad_rows: BadRowLimit::Count(0),
            chunk_bytes: 256,
        };
        let (sender, mut receiver) = mpsc::channel(1);
        let (finished, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = job.run(&sender).map(|outcome| outcome.rows);
            finished.send(result.map_err(|e| e.to_string())).unwrap();
        });
        // The writer takes one message, then fails (a full disk) and drops its end.
        assert!(receiver.blocking_recv().is_some());
        drop(receiver);
        let result = outcome
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the reading threads stop once the writer is gone");
        assert_eq!(result, Err("f.csv: the writer stopped".into()));
    }

    #[test]
    fn a_header_over_the_limit_is_the_files_error() {
        let limits = RecordLimits {
            max_field_bytes: 16,
            max_record_bytes: 64,
        };
        let wide = format!("{}\n1,2\n", vec!["column"; 20].join(","));
        for chunk_bytes in [1, 16, 1 << 20] {
            let landed = land(
                wide.as_bytes(),
                &Dialect::crm_preset(),
                &[],
                limits,
                BadRowLimit::Count(0),
                chunk_bytes,
            );
            assert_eq!(
                landed.outcome,
                Err("f.csv: line 1: the header is longer than max_record_bytes (64 bytes)".into())
            );
        }
    }
}
