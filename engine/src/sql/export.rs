//! `lakescore export TABLE[@VERSION]`: a table version as a CSV, JSON-lines or Parquet
//! file, for tools that want files instead of SQL. The rows stream from Delta into the
//! file; a `s3://`, `gs://` or `az://` destination is written locally first and then
//! uploaded in parts with the lakehouse's storage options, so memory stays flat.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::{ObjectStoreExt, WriteMultipart, parse_url_opts};
use url::Url;

use crate::error::{Error, Result};
use crate::sql::output::{Destination, OutputFormat, write_results};
use crate::sql::session::{Pins, SqlSession};
use crate::storage::lakehouse::{Lakehouse, TableName};

/// Upload part size.
const PART: usize = 8 * 1024 * 1024;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    /// The table and version exported.
    pub table: (TableName, u64),
    /// Rows written.
    pub rows: u64,
    /// Where they went.
    pub destination: String,
}

/// Exports `table` (`schema.name` or `schema.name@VERSION`) to `to` (a path or a URI).
pub async fn export(
    lakehouse: Arc<Lakehouse>,
    table: &str,
    format: OutputFormat,
    to: &str,
) -> Result<ExportReport> {
    if format == OutputFormat::Table {
        return Err(Error::Usage(String::from(
            "export writes files other tools read: use --format csv, json or parquet",
        )));
    }
    let (name, pinned) = TableName::parse_at(table)?;
    let version = match pinned {
        Some(version) => version,
        None => lakehouse.latest_version(&name).await?,
    };
    let remote = Url::parse(to)
        .ok()
        .filter(|url| url.scheme().len() > 1 && url.scheme() != "file");
    let local = match &remote {
        Some(_) => std::env::temp_dir().join(format!("lakescore-export-{}", uuid::Uuid::new_v4())),
        None => PathBuf::from(to.strip_prefix("file://").unwrap_or(to)),
    };
    let session = SqlSession::builder(lakehouse.clone())
        .pins(Pins::from([(name.clone(), version)]))
        .build()
        .await?;
    let stream = session
        .sql(&format!("SELECT * FROM {}", name.quoted()))
        .await?
        .execute_stream()
        .await?;
    let written = write_results(
        stream,
        format,
        &Destination::File(local.clone()),
        usize::MAX,
    )
    .await;
    let uploaded = match (&remote, &written) {
        (Some(url), Ok(_)) => upload(&lakehouse, &local, url).await,
        _ => Ok(()),
    };
    if remote.is_some() {
        let _ = std::fs::remove_file(&local);
    }
    let written = written?;
    uploaded?;
    Ok(ExportReport {
        table: (name, version),
        rows: written.rows,
        destination: remote.map_or_else(|| local.display().to_string(), |url| url.to_string()),
    })
}

/// Uploads the file at `local` to `url` in parts.
async fn upload(lakehouse: &Lakehouse, local: &Path, url: &Url) -> Result<()> {
    let storage = |cause: String| Error::Storage {
        uri: url.to_string(),
        cause,
    };
    let (store, path) = parse_url_opts(url, lakehouse.storage_options().iter())
        .map_err(|e| storage(e.to_string()))?;
    let upload = store
        .put_multipart(&path)
        .await
        .map_err(|e| storage(e.to_string()))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut file = std::fs::File::open(local).map_err(|source| Error::Io {
        path: local.to_path_buf(),
        source,
    })?;
    let mut buffer = vec![0u8; PART];
    loop {
        let read = file.read(&mut buffer).map_err(|source| Error::Io {
            path: local.to_path_buf(),
            source,
        })?;
        if read == 0 {
            break;
        }
        writer.write(&buffer[..read]);
    }
    writer.finish().await.map_err(|e| storage(e.to_string()))?;
    Ok(())
}
