//! The DataFusion catalog over the lakehouse: every Delta table under the root is the SQL
//! table `schema.name`, found on the storage itself, without registration.
//!
//! Listing is a snapshot taken when the catalog is built (for `SHOW TABLES` and
//! `information_schema`), while looking a table up by name always asks the storage, so a
//! table another writer created a moment ago is queryable at once. Within one catalog a
//! table is opened once, so every reference to it in a statement reads the same version.
//! Pinned tables are opened at their pinned version instead of the newest. A name with no
//! Delta table but a saved view ([`crate::sql::views`]) is planned from the view's SQL in the
//! session that asked, so the view reads the same (pinned) versions as the statement.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use parking_lot::RwLock;

use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionState;

use crate::error::{Error, Result};
use crate::sql::cluster::TableReads;
use crate::sql::session::{Pins, Visibility};
use crate::sql::views::{list_views, read_view};
use crate::storage::lakehouse::{Lakehouse, TableName, TableVersion};

/// The session a catalog belongs to, for planning views; set once the session exists.
type SessionSlot = Arc<OnceLock<Weak<RwLock<SessionState>>>>;

/// The name of lakescore's catalog in every SQL session.
pub const CATALOG_NAME: &str = "lakehouse";

/// Every Delta table under the lakehouse root, as a DataFusion catalog.
pub struct LakehouseCatalog {
    lakehouse: Arc<Lakehouse>,
    listed: BTreeMap<String, Vec<String>>,
    pins: Arc<Pins>,
    reads: TableReads,
    session: SessionSlot,
    schemas: Mutex<HashMap<String, Arc<LakehouseSchema>>>,
    /// Schemas registered by the session (the PostgreSQL server's `pg_catalog`).
    registered: Mutex<HashMap<String, Arc<dyn SchemaProvider>>>,
}

impl fmt::Debug for LakehouseCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakehouseCatalog")
            .field("root", &self.lakehouse.root().as_str())
            .finish()
    }
}

impl LakehouseCatalog {
    /// Lists the lakehouse and builds the catalog, which opens `pins` at their versions
    /// and lists only the tables `visible` accepts (all without it).
    pub async fn discover(
        lakehouse: Arc<Lakehouse>,
        pins: Arc<Pins>,
        visible: Option<Visibility>,
        reads: TableReads,
    ) -> Result<Self> {
        let mut listed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let shown = |table: &TableName| visible.as_ref().is_none_or(|visible| visible(table));
        if visible.is_none() {
            for schema in lakehouse.list_schemas().await? {
                listed.entry(schema).or_default();
            }
        }
        let tables = lakehouse.list_tables().await?;
        for table in tables.into_iter().chain(list_views(&lakehouse).await?) {
            if shown(&table) {
                listed.entry(table.schema).or_default().push(table.name);
            }
        }
        Ok(Self {
            lakehouse,
            listed,
            pins,
            reads,
            session: SessionSlot::default(),
            schemas: Mutex::new(HashMap::new()),
            registered: Mutex::new(HashMap::new()),
        })
    }

    /// Drops the schemas the session registered here.
    pub fn release_registered_schemas(&self) {
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Lets views be planned in `session`, the session this catalog is registered in.
    pub fn attach_session(&self, session: Weak<RwLock<SessionState>>) {
        let _ = self.session.set(session);
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
                    pins: self.pins.clone(),
                    reads: self.reads,
                    session: self.session.clone(),
                    opened: Mutex::new(HashMap::new()),
                })
            })
            .clone()
    }
}

impl CatalogProvider for LakehouseCatalog {
    fn schema_names(&self) -> Vec<String> {
        let registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        self.listed
            .keys()
            .cloned()
            .chain(registered.keys().cloned())
            .collect()
    }

    /// Any schema name is answered, so a schema created after discovery is still found.
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(schema) = registered.get(name) {
            return Some(schema.clone());
        }
        Some(self.schema_provider(name))
    }

    /// Keeps a schema that is not in the lakehouse (such as `pg_catalog`) in this catalog.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        Ok(registered.insert(name.to_string(), schema))
    }
}

/// One schema folder under the root.
struct LakehouseSchema {
    lakehouse: Arc<Lakehouse>,
    schema: String,
    listed: Vec<String>,
    pins: Arc<Pins>,
    reads: TableReads,
    session: SessionSlot,
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
        let version = self
            .pins
            .get(&name)
            .map_or(TableVersion::Latest, |v| TableVersion::Version(*v));
        let delta = match self.lakehouse.open_table(&name, version).await {
            Ok(delta) => delta,
            Err(Error::UnknownTable { suggestions, .. }) => {
                return match read_view(&self.lakehouse, &name).await? {
                    Some(sql) => self.plan_view(table, &name, sql).await,
                    None => Err(Error::UnknownTable {
                        name: name.to_string(),
                        suggestions,
                    }),
                };
            }
            Err(other) => return Err(other),
        };
        let provider = self.reads.provider(&delta).await?;
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        Ok(opened.entry(table.to_string()).or_insert(provider).clone())
    }

    async fn plan_view(
        &self,
        table: &str,
        name: &TableName,
        sql: String,
    ) -> Result<Arc<dyn TableProvider>> {
        let state = self
            .session
            .get()
            .and_then(Weak::upgrade)
            .map(|state| state.read().clone())
            .ok_or_else(|| Error::Sql(format!("view {name} can only be read in a SQL session")))?;
        let plan = state.create_logical_plan(&sql).await.map_err(|e| {
            Error::Sql(format!(
                "view {name} does not plan: {}",
                e.strip_backtrace()
            ))
        })?;
        let provider = self
            .reads
            .read_only(Arc::new(ViewTable::new(plan, Some(sql))));
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
            // A statement that names a broken table gets its error from the session's
            // check of named tables; listings (information_schema, pg_catalog) go on
            // without it, so one broken table or view hides nothing else.
            Err(other) => {
                tracing::warn!(table = %format!("{}.{name}", self.schema), "left out: {other}");
                Ok(None)
            }
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.listed.iter().any(|t| t == name) || self.cached(name).is_some()
    }
}
