//! Parquet extracts: read batch by batch; each value is handed on as its text form so it is
//! typed by the same rules as every other format.

use std::fs::File;
use std::path::Path;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::parquet::arrow::arrow_reader::{
    ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};

use super::{Record, RecordReader, file_error};
use crate::cell::Cell;
use crate::error::Result;

const BATCH_ROWS: usize = 8192;

/// Reads a Parquet file.
pub struct ParquetReader {
    display: String,
    batches: ParquetRecordBatchReader,
    headers: Vec<String>,
    current: Option<RecordBatch>,
    offset: usize,
    row: u64,
}

impl ParquetReader {
    /// Opens `path` and reads its schema.
    pub fn open(path: &Path, display: &str) -> Result<Self> {
        let file = File::open(path).map_err(|e| file_error(display, e))?;
        let unreadable = |e| file_error(display, format!("not a readable Parquet file: {e}"));
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(unreadable)?;
        let headers = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let batches = builder
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(unreadable)?;
        Ok(Self {
            display: display.to_string(),
            batches,
            headers,
            current: None,
            offset: 0,
            row: 0,
        })
    }

    fn record_at(&self, batch: &RecordBatch, index: usize) -> Result<Record> {
        let options = FormatOptions::default().with_null("");
        let mut cells = Vec::with_capacity(batch.num_columns());
        let mut raw = Vec::with_capacity(batch.num_columns());
        for column in batch.columns() {
            if column.is_null(index) {
                cells.push(Cell::Null);
                raw.push(String::new());
                continue;
            }
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)
                .map_err(|e| file_error(&self.display, e))?;
            let text = formatter.value(index).to_string();
            raw.push(text.clone());
            cells.push(Cell::Text(text));
        }
        Ok(Record {
            row: self.row,
            raw: raw.join(","),
            fields: Ok(cells),
        })
    }
}

impl Iterator for ParquetReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = &self.current
                && self.offset < batch.num_rows()
            {
                let index = self.offset;
                self.offset += 1;
                self.row += 1;
                return Some(self.record_at(batch, index));
            }
            match self.batches.next()? {
                Ok(batch) => {
                    self.current = Some(batch);
                    self.offset = 0;
                }
                Err(e) => return Some(Err(file_error(&self.display, e))),
            }
        }
    }
}

impl RecordReader for ParquetReader {
    fn headers(&self) -> &[String] {
        &self.headers
    }
}
