//! The DataFusion catalog over the lakehouse: every Delta table under the root is the SQL
//! table `schema.name`, found on the storage itself, without registration.
//!
//! Listing is a snapshot taken when the catalog is built (for `SHOW TABLES` and
//! `information_schema`), while looking a table up by name always asks the storage, so a
//! table another writer created a moment ago is queryable at once. Within one catalog a
//! table is opened once, so every reference to it in a statement reads the same version.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};

use crate::error::{Error, Result};
use crate::lakehouse::{Lakehouse, TableName, TableVersion};

/// The name of lakescore's catalog in every SQL session.
pub const CATALOG_NAME: &str = "lakehouse";

/// Every Delta table under the lakehouse root, as a DataFusion catalog.
pub struct LakehouseCatalog {
    lakehouse: Arc<Lakehouse>,
    listed: BTreeMap<String, Vec<String>>,
    schemas: Mutex<HashMap<String, Arc<LakehouseSchema>>>,
}

impl fmt::Debug for LakehouseCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakehouseCatalog")
            .field("root", &self.lakehouse.root().as_str())
            .finish()
    }
}

impl LakehouseCatalog {
    /// Lists the lakehouse and builds the catalog.
    pub async fn discover(lakehouse: Arc<Lakehouse>) -> Result<Self> {
        let mut listed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for schema in lakehouse.list_schemas().await? {
            listed.entry(schema).or_default();
        }
        for table in lakehouse.list_tables().await? {
            listed.entry(table.schema).or_default().push(table.name);
        }
        Ok(Self {
            lakehouse,
            listed,
            schemas: Mutex::new(HashMap::new()),
        })
    }

    /// Opens `name` through the catalog's cache: the same provider every time it is asked.
    pub async fn table(&self, name: &TableName) -> Result<Arc<dyn TableProvider>> {
        self.schema_provider(&name.schema).open(&name.name).await
    }

    fn schema_provider(&self, schema: &str) -> Arc<LakehouseSchema> {
        let mut schemas = self.schemas.lock().unwrap_or_else(|e| e.into_inner());
        schemas
            .entry(schema.to_string())
            .or_insert_with(|| {
                Arc::new(LakehouseSchema {
                    lakehouse: self.lakehouse.clone(),
                    schema: schema.to_string(),
                    listed: self.listed.get(schema).cloned().unwrap_or_default(),
                    opened: Mutex::new(HashMap::new()),
                })
            })
            .clone()
    }
}

impl CatalogProvider for LakehouseCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.listed.keys().cloned().collect()
    }

    /// Any schema name is answered, so a schema created after discovery is still found.
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        Some(self.schema_provider(name))
    }
}

/// One schema folder under the root.
struct LakehouseSchema {
    lakehouse: Arc<Lakehouse>,
    schema: String,
    listed: Vec<String>,
    opened: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
}

impl fmt::Debug for LakehouseSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakehouseSchema")
            .field("schema", &self.schema)
            .finish()
    }
}

impl LakehouseSchema {
    async fn open(&self, table: &str) -> Result<Arc<dyn TableProvider>> {
        if let Some(provider) = self.cached(table) {
            return Ok(provider);
        }
        let name = TableName {
            schema: self.schema.clone(),
            name: table.to_string(),
        };
        let delta = self
            .lakehouse
            .open_table(&name, TableVersion::Latest)
            .await?;
        let provider = delta.table_provider().await.map_err(|e| Error::Storage {
            uri: delta.table_url().to_string(),
            cause: e.to_string(),
        })?;
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        Ok(opened.entry(table.to_string()).or_insert(provider).clone())
    }

    fn cached(&self, table: &str) -> Option<Arc<dyn TableProvider>> {
        let opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        opened.get(table).cloned()
    }
}

#[async_trait]
impl SchemaProvider for LakehouseSchema {
    fn table_names(&self) -> Vec<String> {
        self.listed.clone()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if TableName::parse(&format!("{}.{name}", self.schema)).is_err() {
            return Ok(None);
        }
        match self.open(name).await {
            Ok(provider) => Ok(Some(provider)),
            Err(Error::UnknownTable { .. }) => Ok(None),
            Err(other) => Err(DataFusionError::External(Box::new(other))),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.listed.iter().any(|t| t == name) || self.cached(name).is_some()
    }
}
