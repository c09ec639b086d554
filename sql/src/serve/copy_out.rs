//! `COPY (query) TO STDOUT` and `COPY table [(columns)] TO STDOUT`, the export path of
//! psql's `\copy`, psycopg's `copy()` and BI extract jobs: the query is planned, checked
//! against the role's grants, run under the connection's limits and audited like any
//! other; its rows stream to the client in PostgreSQL's text or CSV format (`FORMAT`,
//! `HEADER`, `DELIMITER`, `NULL`, `QUOTE`, `ESCAPE`, and the pre-9.0 `WITH CSV HEADER`
//! spelling). `COPY ... FROM` and `COPY ... TO 'file'` stay refused: the server writes
//! nothing, neither tables nor files.

use std::sync::Arc;

use datafusion_postgres::pgwire::api::results::{CopyResponse, FieldInfo};
use datafusion_postgres::pgwire::error::PgWireResult;
use datafusion_postgres::pgwire::messages::copy::CopyData;
use datafusion_postgres::pgwire::messages::data::DataRow;
use futures::{Stream, StreamExt};
use lakescore_engine::datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
    Query, Statement,
};
use lakescore_engine::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use lakescore_engine::datafusion::sql::sqlparser::parser::Parser;

/// How rows are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormat {
    /// PostgreSQL's text format: tab-separated, backslash escapes, `\N` for NULL.
    Text {
        /// Between fields.
        delimiter: char,
        /// What a NULL is written as.
        null: String,
    },
    /// CSV, quoted where needed, NULL as an unquoted empty field by default.
    Csv {
        /// Between fields.
        delimiter: char,
        /// What a NULL is written as.
        null: String,
        /// Around a field that needs quoting.
        quote: char,
        /// Before a quote inside a quoted field.
        escape: char,
        /// Whether the column names come first.
        header: bool,
    },
}

/// A `COPY ... TO STDOUT` to run: its query and format.
#[derive(Debug, Clone)]
pub struct CopyOut {
    /// The query whose rows are copied.
    pub query: Statement,
    /// How they are written.
    pub format: CopyFormat,
}

impl CopyOut {
    /// The copy `statement` asks for; an error names what the server does not do.
    pub fn parse(statement: &Statement) -> Result<Self, String> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = statement
        else {
            return Err(String::from("not a COPY statement"));
        };
        if !*to || *target != CopyTarget::Stdout {
            return Err(String::from(
                "lakescore serve is read-only: only COPY ... TO STDOUT is allowed (psql: \\copy (SELECT ...) TO 'file.csv' WITH CSV HEADER). Tables are written by lakescore ingest, transform and score",
            ));
        }
        let query = match source {
            CopySource::Query(query) => Statement::Query(query.clone()),
            CopySource::Table {
                table_name,
                columns,
            } => select_from(table_name, columns)?,
        };
        let options = Options::read(options, legacy_options)?;
        Ok(Self {
            query,
            format: options.format()?,
        })
    }
}

/// `SELECT columns FROM table`, or `*` without columns.
fn select_from(table: &ObjectName, columns: &[Ident]) -> Result<Statement, String> {
    let projection = if columns.is_empty() {
        String::from("*")
    } else {
        columns
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("SELECT {projection} FROM {table}"))
        .and_then(|mut parser| parser.parse_query())
        .map(|query: Box<Query>| Statement::Query(query))
        .map_err(|e| format!("cannot copy {table}: {e}"))
}

/// The options of a `COPY`, in either spelling.
#[derive(Default)]
struct Options {
    format: Option<String>,
    delimiter: Option<char>,
    null: Option<String>,
    header: bool,
    quote: Option<char>,
    escape: Option<char>,
}

impl Options {
    fn read(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Self, String> {
        let mut read = Self::default();
        for option in options {
            match option {
                CopyOption::Format(name) => read.format = Some(name.value.to_lowercase()),
                CopyOption::Delimiter(c) => read.delimiter = Some(*c),
                CopyOption::Null(text) => read.null = Some(text.clone()),
                CopyOption::Header(on) => read.header = *on,
                CopyOption::Quote(c) => read.quote = Some(*c),
                CopyOption::Escape(c) => read.escape = Some(*c),
                CopyOption::Encoding(encoding)
                    if matches!(encoding.to_uppercase().as_str(), "UTF8" | "UTF-8") => {}
                other => return Err(format!("COPY option {other} is not supported")),
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Binary => read.format = Some(String::from("binary")),
                CopyLegacyOption::Csv(csv) => {
                    read.format = Some(String::from("csv"));
                    for csv_option in csv {
                        match csv_option {
                            CopyLegacyCsvOption::Header => read.header = true,
                            CopyLegacyCsvOption::Quote(c) => read.quote = Some(*c),
                            CopyLegacyCsvOption::Escape(c) => read.escape = Some(*c),
                            other => return Err(format!("COPY option {other} is not supported")),
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => read.delimiter = Some(*c),
                CopyLegacyOption::Null(text) => read.null = Some(text.clone()),
                CopyLegacyOption::Header => read.header = true,
                other => return Err(format!("COPY option {other} is not supported")),
            }
        }
        Ok(read)
    }

    fn format(self) -> Result<CopyFormat, String> {
        match self.format.as_deref().unwrap_or("text") {
            "text" => {
                if self.header {
                    return Err(String::from(
                        "COPY HEADER is available only in CSV format: add FORMAT csv",
                    ));
                }
                Ok(CopyFormat::Text {
                    delimiter: self.delimiter.unwrap_or('\t'),
                    null: self.null.unwrap_or_else(|| String::from("\\N")),
                })
            }
            "csv" => {
                let quote = self.quote.unwrap_or('"');
                Ok(CopyFormat::Csv {
                    delimiter: self.delimiter.unwrap_or(','),
                    null: self.null.unwrap_or_default(),
                    quote,
                    escape: self.escape.unwrap_or(quote),
                    header: self.header,
                })
            }
            "binary" => Err(String::from(
                "COPY in binary format is not supported: use FORMAT csv or the default text format",
            )),
            other => Err(format!(
                "COPY format \"{other}\" not recognized: use text or csv"
            )),
        }
    }
}

/// The response streaming `rows` (text-encoded, with `fields`) in `format`.
pub fn copy_response(
    format: CopyFormat,
    fields: Arc<Vec<FieldInfo>>,
    rows: impl Stream<Item = PgWireResult<DataRow>> + Send + 'static,
) -> CopyResponse {
    let columns = fields.len();
    let mut header = match &format {
        CopyFormat::Csv { header: true, .. } => {
            let names: Vec<Option<&[u8]>> =
                fields.iter().map(|f| Some(f.name().as_bytes())).collect();
            Some(line(&format, &names))
        }
        _ => None,
    };
    let lines = rows.map(move |row| {
        let row = row?;
        let mut data = header.take().unwrap_or_default();
        data.extend_from_slice(&line(&format, &fields_of(&row)));
        Ok(CopyData::new(data.into()))
    });
    CopyResponse::new(0, columns, lines)
}

/// The fields of a text-encoded data row: each value's bytes, or None for NULL.
fn fields_of(row: &DataRow) -> Vec<Option<&[u8]>> {
    let mut fields = Vec::with_capacity(row.field_count.max(0) as usize);
    let mut rest: &[u8] = &row.data;
    for _ in 0..row.field_count {
        let Some((length, after)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let length = i32::from_be_bytes(*length);
        if length < 0 {
            fields.push(None);
            rest = after;
            continue;
        }
        let (value, after) = after.split_at((length as usize).min(after.len()));
        fields.push(Some(value));
        rest = after;
    }
    fields
}

/// One row of `fields` as a line of `format`, ending in a newline.
fn line(format: &CopyFormat, fields: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        match format {
            CopyFormat::Text { delimiter, null } => {
                if index > 0 {
                    push_char(&mut out, *delimiter);
                }
                match field {
                    None => out.extend_from_slice(null.as_bytes()),
                    Some(value) => text_escaped(&mut out, value, *delimiter),
                }
            }
            CopyFormat::Csv {
                delimiter,
                null,
                quote,
                escape,
                ..
            } => {
                if index > 0 {
                    push_char(&mut out, *delimiter);
                }
                match field {
                    None => out.extend_from_slice(null.as_bytes()),
                    Some(value) => csv_field(&mut out, value, *delimiter, *quote, *escape, null),
                }
            }
        }
    }
    out.push(b'\n');
    out
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buffer = [0; 4];
    out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
}

/// `value` in the text format: backslash, newline, carriage return, tab and the delimiter
/// escaped with a backslash.
fn text_escaped(out: &mut Vec<u8>, value: &[u8], delimiter: char) {
    let text = String::from_utf8_lossy(value);
    for c in text.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' if delimiter == '\t' => out.extend_from_slice(b"\\t"),
            c if c == delimiter => {
                out.push(b'\\');
                push_char(out, c);
            }
            c => push_char(out, c),
        }
    }
}

/// `value` as a CSV field: quoted when it holds the delimiter, the quote, a line break,
/// or reads as the NULL string (an empty string is `""` when NULL is empty).
fn csv_field(
    out: &mut Vec<u8>,
    value: &[u8],
    delimiter: char,
    quote: char,
    escape: char,
    null: &str,
) {
    let text = String::from_utf8_lossy(value);
    let needs_quotes = text == null
        || text
            .chars()
            .any(|c| c == delimiter || c == quote || c == '\n' || c == '\r');
    if !needs_quotes {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    push_char(out, quote);
    for c in text.chars() {
        if c == quote || c == escape {
            push_char(out, escape);
        }
        push_char(out, c);
    }
    push_char(out, quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Result<CopyOut, String> {
        let statement = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_statement())
            .unwrap();
        CopyOut::parse(&statement)
    }

    #[test]
    fn copy_statements_name_their_query_and_format() {
        let copy = parsed("COPY (SELECT a, b FROM t) TO STDOUT WITH (FORMAT csv, HEADER)").unwrap();
        assert_eq!(copy.query.to_string(), "SELECT a, b FROM t");
        assert_eq!(
            copy.format,
            CopyFormat::Csv {
                delimiter: ',',
                null: String::new(),
                quote: '"',
                escape: '"',
                header: true
            }
        );
        let copy = parsed("COPY curated.customers (id, name) TO STDOUT").unwrap();
        assert_eq!(
            copy.query.to_string(),
            "SELECT id, name FROM curated.customers"
        );
        assert_eq!(
            copy.format,
            CopyFormat::Text {
                delimiter: '\t',
                null: String::from("\\N")
            }
        );
        // psql's \copy ... WITH CSV HEADER sends the pre-9.0 spelling.
        let copy = parsed("COPY ( SELECT 1 ) TO STDOUT WITH CSV HEADER DELIMITER ';'").unwrap();
        assert!(matches!(
            copy.format,
            CopyFormat::Csv {
                header: true,
                delimiter: ';',
                ..
            }
        ));
        for (sql, error) in [
            ("COPY t FROM STDIN", "only COPY ... TO STDOUT is allowed"),
            (
                "COPY t TO '/etc/passwd'",
                "only COPY ... TO STDOUT is allowed",
            ),
            (
                "COPY t TO STDOUT (FORMAT binary)",
                "binary format is not supported",
            ),
            ("COPY t TO STDOUT (HEADER)", "only in CSV format"),
        ] {
            let message = parsed(sql).unwrap_err();
            assert!(message.contains(error), "{sql}: {message}");
        }
    }

    #[test]
    fn fields_are_written_as_postgresql_writes_them() {
        let text = CopyFormat::Text {
            delimiter: '\t',
            null: String::from("\\N"),
        };
        assert_eq!(
            line(&text, &[Some(b"a\tb\\c\nd"), None, Some(b"")]),
            b"a\\tb\\\\c\\nd\t\\N\t\n"
        );
        let csv = CopyFormat::Csv {
            delimiter: ',',
            null: String::new(),
            quote: '"',
            escape: '"',
            header: false,
        };
        assert_eq!(
            line(
                &csv,
                &[
                    Some(b"plain"),
                    Some(b"a,b"),
                    Some(b"say \"hi\""),
                    None,
                    Some(b"")
                ]
            ),
            b"plain,\"a,b\",\"say \"\"hi\"\"\",,\"\"\n"
        );
    }
}
