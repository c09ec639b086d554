//! Writing query results for people and for other tools: an aligned table, CSV, JSON lines
//! or Parquet, to standard output or a file.
//!
//! Results stream batch by batch into the writer, so exporting a large table never holds
//! it in memory. The table format shows at most `max_rows` rows (and counts the rest),
//! since aligning columns needs the rows it shows.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::arrow::ArrowWriter;
use futures::TryStreamExt;

use crate::error::{Error, Result};

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An aligned text table, for people.
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// JSON lines: one object per row.
    Json,
    /// Apache Parquet (needs a file destination).
    Parquet,
}

/// Where results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A file, created or replaced.
    File(PathBuf),
}

impl Destination {
    fn describe(&self) -> String {
        match self {
            Destination::Stdout => String::from("standard output"),
            Destination::File(path) => path.display().to_string(),
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSummary {
    /// Rows in the result.
    pub rows: u64,
    /// Rows left out of a table display because of `max_rows`.
    pub rows_not_shown: u64,
}

/// Writes `stream` to `destination` in `format`; `max_rows` limits the table format only.
pub async fn write_results(
    stream: SendableRecordBatchStream,
    format: OutputFormat,
    destination: &Destination,
    max_rows: usize,
) -> Result<OutputSummary> {
    let output_error = |cause: String| Error::Output {
        what: destination.describe(),
        cause,
    };
    if format == OutputFormat::Parquet && *destination == Destination::Stdout {
        return Err(Error::Usage(String::from(
            "Parquet is binary and is not written to standard output: pass --output FILE.parquet",
        )));
    }
    let sink: Box<dyn Write + Send> = match destination {
        Destination::Stdout => Box::new(io::stdout()),
        Destination::File(path) => {
            Box::new(create_file(path).map_err(|e| output_error(e.to_string()))?)
        }
    };
    let schema = stream.schema();
    let mut writer = BatchWriter::new(format, sink, schema, max_rows)
        .map_err(|e| output_error(e.to_string()))?;
    let mut stream = stream;
    while let Some(batch) = stream.try_next().await? {
        writer
            .write(&batch)
            .map_err(|e| output_error(e.to_string()))?;
    }
    writer.finish().map_err(|e| output_error(e.to_string()))
}

/// Writes already computed batches (small listings such as `lakescore tables`).
pub async fn write_batches(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    format: OutputFormat,
    destination: &Destination,
) -> Result<OutputSummary> {
    let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
        schema,
        futures::stream::iter(batches.into_iter().map(Ok)),
    );
    write_results(Box::pin(stream), format, destination, usize::MAX).await
}

fn create_file(path: &Path) -> io::Result<BufWriter<File>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    Ok(BufWriter::new(File::create(path)?))
}

type Sink = Box<dyn Write + Send>;

/// One writer per format, fed batch by batch.
enum BatchWriter {
    Table {
        sink: Sink,
        schema: SchemaRef,
        shown: Vec<RecordBatch>,
        max_rows: usize,
        rows: u64,
    },
    Csv(datafusion::arrow::csv::Writer<Sink>, u64),
    Json(LineDelimitedWriter<Sink>, u64),
    Parquet(ArrowWriter<Sink>, u64),
}

type WriteResult<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

impl BatchWriter {
    fn new(
        format: OutputFormat,
        sink: Sink,
        schema: SchemaRef,
        max_rows: usize,
    ) -> WriteResult<Self> {
        Ok(match format {
            OutputFormat::Table => BatchWriter::Table {
                sink,
                schema,
                shown: Vec::new(),
                max_rows,
                rows: 0,
            },
            OutputFormat::Csv => {
                BatchWriter::Csv(CsvWriterBuilder::new().with_header(true).build(sink), 0)
            }
            OutputFormat::Json => BatchWriter::Json(LineDelimitedWriter::new(sink), 0),
            OutputFormat::Parquet => {
                BatchWriter::Parquet(ArrowWriter::try_new(sink, schema, None)?, 0)
            }
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> WriteResult<()> {
        let added = batch.num_rows() as u64;
        match self {
            BatchWriter::Table {
                shown,
                max_rows,
                rows,
                ..
            } => {
                let room = (*max_rows as u64).saturating_sub(*rows) as usize;
                if room > 0 {
                    shown.push(batch.slice(0, room.min(batch.num_rows())));
                }
                *rows += added;
            }
            BatchWriter::Csv(writer, rows) => {
                writer.write(&nested_as_json(batch)?)?;
                *rows += added;
            }
            BatchWriter::Json(writer, rows) => {
                writer.write(batch)?;
                *rows += added;
            }
            BatchWriter::Parquet(writer, rows) => {
                writer.write(batch)?;
                *rows += added;
            }
        }
        Ok(())
    }

    fn finish(self) -> WriteResult<OutputSummary> {
        let done = |rows| OutputSummary {
            rows,
            rows_not_shown: 0,
        };
        match self {
            BatchWriter::Table {
                mut sink,
                schema,
                shown,
                max_rows,
                rows,
            } => {
                let table = if shown.is_empty() {
                    pretty_format_batches(&[RecordBatch::new_empty(schema)])?
                } else {
                    pretty_format_batches(&shown)?
                };
                writeln!(sink, "{table}")?;
                let not_shown = rows.saturating_sub(max_rows as u64);
                let noun = if rows == 1 { "row" } else { "rows" };
                if not_shown > 0 {
                    writeln!(
                        sink,
                        "{rows} {noun} ({not_shown} not shown: raise --max-rows or use --format csv)"
                    )?;
                } else {
                    writeln!(sink, "{rows} {noun}")?;
                }
                sink.flush()?;
                Ok(OutputSummary {
                    rows,
                    rows_not_shown: not_shown,
                })
            }
            BatchWriter::Csv(writer, rows) => {
                writer.into_inner().flush()?;
                Ok(done(rows))
            }
            BatchWriter::Json(mut writer, rows) => {
                writer.finish()?;
                writer.into_inner().flush()?;
                Ok(done(rows))
            }
            BatchWriter::Parquet(writer, rows) => {
                writer.into_inner()?.flush()?;
                Ok(done(rows))
            }
        }
    }
}

/// `batch` with its list, struct and map columns as JSON text, which CSV can hold.
fn nested_as_json(batch: &RecordBatch) -> WriteResult<RecordBatch> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| f.data_type().is_nested())
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !field.data_type().is_nested() {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let single = RecordBatch::try_new(
            Arc::new(Schema::new(vec![field.as_ref().clone()])),
            vec![column.clone()],
        )?;
        let mut lines = Vec::new();
        {
            let mut writer = LineDelimitedWriter::new(&mut lines);
            writer.write(&single)?;
            writer.finish()?;
        }
        let texts: Vec<Option<String>> = String::from_utf8_lossy(&lines)
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|row| row.get(field.name()).map(|v| v.to_string()))
            })
            .collect();
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(texts)) as ArrayRef);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn sample() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = |ids: Vec<i64>, names: Vec<Option<&str>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(names)),
                ],
            )
            .unwrap()
        };
        let batches = vec![
            batch(vec![1, 2], vec![Some("Ada, Ltd"), None]),
            batch(vec![3], vec![Some("Bo")]),
        ];
        (schema, batches)
    }

    async fn written(format: OutputFormat) -> (String, OutputSummary) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/out");
        let (schema, batches) = sample();
        let summary = write_batches(schema, batches, format, &Destination::File(path.clone()))
            .await
            .unwrap();
        (std::fs::read_to_string(&path).unwrap_or_default(), summary)
    }

    #[tokio::test]
    async fn csv_quotes_and_leaves_nulls_empty() {
        let (text, summary) = written(OutputFormat::Csv).await;
        assert_eq!(text, "id,name\n1,\"Ada, Ltd\"\n2,\n3,Bo\n");
        assert_eq!(summary.rows, 3);
    }

    #[tokio::test]
    async fn csv_holds_lists_and_structs_as_json_text() {
        use datafusion::arrow::array::{Array, Float64Array, ListArray, StructArray};
        use datafusion::arrow::buffer::OffsetBuffer;
        let feature = Arc::new(Field::new("feature", DataType::Utf8, true));
        let weight = Arc::new(Field::new("weight", DataType::Float64, true));
        let items = StructArray::from(vec![
            (
                feature.clone(),
                Arc::new(StringArray::from(vec!["events", "industry"])) as ArrayRef,
            ),
            (
                weight.clone(),
                Arc::new(Float64Array::from(vec![0.5, -0.25])) as ArrayRef,
            ),
        ]);
        let item = Arc::new(Field::new("item", items.data_type().clone(), true));
        let lists = ListArray::new(
            item.clone(),
            OffsetBuffer::from_lengths([2, 0]),
            Arc::new(items),
            None,
        );
        let schema = Arc::new(Schema::new(vec![Field::new(
            "top",
            lists.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(lists)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        write_batches(
            schema,
            vec![batch],
            OutputFormat::Csv,
            &Destination::File(path.clone()),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "top\n\"[{\"\"feature\"\":\"\"events\"\",\"\"weight\"\":0.5},{\"\"feature\"\":\"\"industry\"\",\"\"weight\"\":-0.25}]\"\n[]\n"
        );
    }

    #[tokio::test]
    async fn json_is_one_object_per_line() {
        let (text, _) = written(OutputFormat::Json).await;
        assert_eq!(
            text,
            "{\"id\":1,\"name\":\"Ada, Ltd\"}\n{\"id\":2}\n{\"id\":3,\"name\":\"Bo\"}\n"
        );
    }

    #[tokio::test]
    async fn table_counts_rows_it_does_not_show() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        let (schema, batches) = sample();
        let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(batches.into_iter().map(Ok)),
        );
        let summary = write_results(
            Box::pin(stream),
            OutputFormat::Table,
            &Destination::File(path.clone()),
            2,
        )
        .await
        .unwrap();
        assert_eq!(
            summary,
            OutputSummary {
                rows: 3,
                rows_not_shown: 1
            }
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "+----+----------+\n| id | name     |\n+----+----------+\n| 1  | Ada, Ltd |\n| 2  |          |\n+----+----------+\n3 rows (1 not shown: raise --max-rows or use --format csv)\n"
        );
    }

    #[tokio::test]
    async fn parquet_round_trips_and_refuses_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        let (schema, batches) = sample();
        write_batches(
            schema.clone(),
            batches.clone(),
            OutputFormat::Parquet,
            &Destination::File(path.clone()),
        )
        .await
        .unwrap();
        let file = File::open(&path).unwrap();
        let reader =
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
                .unwrap();
        let read: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(
            pretty_format_batches(&read).unwrap().to_string(),
            pretty_format_batches(&batches).unwrap().to_string()
        );
        let error = write_batches(schema, batches, OutputFormat::Parquet, &Destination::Stdout)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("--output"), "{error}");
    }
}
