//! Views: saved SQL queries that read as tables.
//!
//! View `schema.name` is the file `<root>/_views/<schema>/<name>.sql` holding one `SELECT`.
//! The catalog plans it whenever a statement reads it, so a view always shows its inputs'
//! current (or pinned) versions. A Delta table of the same name takes precedence.

use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::storage::lakehouse::{Lakehouse, TableName};
use futures::TryStreamExt;

/// The folder under the root that holds view definitions.
const VIEWS: &str = "_views";

fn view_path(name: &TableName) -> StorePath {
    StorePath::from_iter([VIEWS, &name.schema, &format!("{}.sql", name.name)])
}

fn storage(lakehouse: &Lakehouse, error: impl std::fmt::Display) -> Error {
    Error::Storage {
        uri: format!("{}{VIEWS}", lakehouse.root()),
        cause: error.to_string(),
    }
}

/// The SQL of view `name`, or None when there is no such view.
pub async fn read_view(lakehouse: &Lakehouse, name: &TableName) -> Result<Option<String>> {
    let store = lakehouse.store()?;
    match store.get(&view_path(name)).await {
        Ok(found) => {
            let bytes = found.bytes().await.map_err(|e| storage(lakehouse, e))?;
            String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|e| storage(lakehouse, e))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(error) => Err(storage(lakehouse, error)),
    }
}

/// Saves view `name` as `sql`, replacing an earlier definition.
pub async fn write_view(lakehouse: &Lakehouse, name: &TableName, sql: &str) -> Result<()> {
    let store = lakehouse.store()?;
    store
        .put(&view_path(name), PutPayload::from(sql.to_string()))
        .await
        .map(|_| ())
        .map_err(|e| storage(lakehouse, e))
}

/// Every view, sorted by name.
pub async fn list_views(lakehouse: &Lakehouse) -> Result<Vec<TableName>> {
    let store = lakehouse.store()?;
    let prefix = StorePath::from(VIEWS);
    let objects: Vec<_> = match store.list(Some(&prefix)).try_collect().await {
        Ok(objects) => objects,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(error) => return Err(storage(lakehouse, error)),
    };
    let mut views: Vec<TableName> = objects
        .iter()
        .filter_map(|meta| {
            let parts: Vec<_> = meta.location.parts().collect();
            match parts.as_slice() {
                [_, schema, file] => Some(TableName {
                    schema: schema.as_ref().to_string(),
                    name: file.as_ref().strip_suffix(".sql")?.to_string(),
                }),
                _ => None,
            }
        })
        .collect();
    views.sort();
    Ok(views)
}
