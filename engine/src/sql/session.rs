//! SQL sessions over the lakehouse: one DataFusion `SessionContext` with the lakehouse
//! catalog as its default catalog and lakescore's functions registered.
//!
//! Every SQL entry point (the CLI, SQL models, and later jobs and the wire server) gets its
//! session here, so they all see the same tables and functions. A session can pin tables
//! to versions, so a model run reads one consistent snapshot. Statements go through
//! [`SqlSession::plan`], which opens the table versions `table_at` asks for, turns a
//! reference to a missing table into an error listing the closest names, and plans. With
//! `[engine] mode = "ballista"` the session's queries run on a cluster ([`crate::sql::cluster`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{LogicalPlan, ScalarUDF};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::{DFParser, Statement};

use crate::config::{EngineConfig, FunctionsConfig};
use crate::error::{Error, Result};
use crate::sql::catalog::{CATALOG_NAME, LakehouseCatalog};
use crate::sql::cluster::{
    ClusterCodec, ClusterProcess, FunctionCodec, TableReads, cluster_context, run_on_cluster,
};
use crate::sql::functions::{FunctionWarning, FunctionWarnings, all_functions};
use crate::sql::read_only::{refuse_write_statement, refuse_writes};
use crate::sql::time_travel::{TABLE_AT, TimeTravel, tables_at_versions};
use crate::storage::lakehouse::{Lakehouse, TableName, TableVersion};

/// The schema unqualified table names resolve to; tables are normally named `schema.name`.
pub const DEFAULT_SCHEMA: &str = "public";

/// Schemas that describe the session rather than hold lakehouse tables: DataFusion's
/// `information_schema` and, in `lakescore serve`, PostgreSQL's `pg_catalog`.
pub const SYSTEM_SCHEMAS: [&str; 2] = ["information_schema", "pg_catalog"];

/// Table versions a session reads instead of the newest ones.
pub type Pins = BTreeMap<TableName, u64>;

/// A SQL session over the lakehouse.
pub struct SqlSession {
    ctx: SessionContext,
    lakehouse: Arc<Lakehouse>,
    catalog: Arc<LakehouseCatalog>,
    time_travel: Arc<TimeTravel>,
    pins: Arc<Pins>,
    visible: Option<Visibility>,
    warnings: FunctionWarnings,
    extensions: Vec<Arc<dyn SessionExtension>>,
    reads: TableReads,
}

/// What a session learns from outside the SQL layer, so the core session knows no model
/// or other capability by name: functions to register, and work to do on each statement
/// before it is planned (the model layer loads the models `predict` calls name).
#[async_trait::async_trait]
pub trait SessionExtension: Send + Sync {
    /// The functions to register, configured from the project's `[functions]` section.
    fn functions(&self, config: &FunctionsConfig) -> Vec<ScalarUDF>;

    /// Runs before `statement` is planned; an error refuses the statement.
    async fn prepare(&self, lakehouse: &Arc<Lakehouse>, statement: &Statement) -> Result<()>;

    /// Functions the operations of this extension register on the sessions they use (not
    /// on every session), which a cluster's processes must know too.
    fn operation_functions(&self) -> Vec<ScalarUDF> {
        Vec::new()
    }

    /// How the functions of this extension that hold state travel to a cluster.
    fn function_codecs(
        &self,
        _lakehouse: &Arc<Lakehouse>,
        _config: &FunctionsConfig,
    ) -> Vec<Arc<dyn FunctionCodec>> {
        Vec::new()
    }
}

/// Which lakehouse tables a session lists (in `information_schema`, `SHOW TABLES` and
/// catalogs built on them); a table it does not list can still be named.
pub type Visibility = Arc<dyn Fn(&TableName) -> bool + Send + Sync>;

/// Settings of a new [`SqlSession`]; `.build().await` opens it.
pub struct SessionBuilder {
    lakehouse: Arc<Lakehouse>,
    config: SessionConfig,
    functions: FunctionsConfig,
    pins: Pins,
    runtime: Option<Arc<RuntimeEnv>>,
    visible: Option<Visibility>,
    extensions: Vec<Arc<dyn SessionExtension>>,
    engine: EngineConfig,
}

impl SessionBuilder {
    /// Adds the functions and planning work of `extension`.
    pub fn extension(mut self, extension: impl SessionExtension + 'static) -> Self {
        self.extensions.push(Arc::new(extension));
        self
    }

    /// Uses a DataFusion config (e.g. to fix `target_partitions`).
    pub fn config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// Configures the SQL functions from the project's `[functions]` section.
    pub fn functions(mut self, functions: FunctionsConfig) -> Self {
        self.functions = functions;
        self
    }

    /// Reads each of these tables at the given version instead of its newest.
    pub fn pins(mut self, pins: Pins) -> Self {
        self.pins = pins;
        self
    }

    /// Runs queries in `runtime` (its memory pool and spill folder) instead of a default
    /// one without limits.
    pub fn runtime(mut self, runtime: Arc<RuntimeEnv>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Runs queries where `engine` says: in this process, or on a Ballista cluster.
    pub fn engine(mut self, engine: EngineConfig) -> Self {
        self.engine = engine;
        self
    }

    /// A scheduler or executor process of a cluster that runs this builder's sessions: it
    /// knows the same functions.
    pub fn cluster_process(self) -> ClusterProcess {
        let warnings = FunctionWarnings::default();
        let (functions, codec) = self.cluster_functions(&warnings);
        ClusterProcess::new(self.lakehouse, functions, codec)
    }

    /// Every function a session or a cluster process knows, and the codec that sends them.
    fn cluster_functions(&self, warnings: &FunctionWarnings) -> (Vec<ScalarUDF>, ClusterCodec) {
        let functions: Vec<ScalarUDF> = self.session_functions(warnings).collect();
        let operation_functions = self
            .extensions
            .iter()
            .flat_map(|extension| extension.operation_functions());
        let codecs = self
            .extensions
            .iter()
            .flat_map(|extension| extension.function_codecs(&self.lakehouse, &self.functions));
        let codec = ClusterCodec::new(functions.iter().cloned().chain(operation_functions), codecs);
        (functions, codec)
    }

    /// The functions every session registers.
    fn session_functions<'a>(
        &'a self,
        warnings: &'a FunctionWarnings,
    ) -> impl Iterator<Item = ScalarUDF> + 'a {
        let extension_functions = self
            .extensions
            .iter()
            .flat_map(|extension| extension.functions(&self.functions));
        all_functions(&self.functions, warnings).chain(extension_functions)
    }

    /// Lists only the tables `visible` accepts.
    pub fn visible(mut self, visible: Visibility) -> Self {
        self.visible = Some(visible);
        self
    }

    /// Lists the lakehouse and registers the catalog and the functions.
    pub async fn build(self) -> Result<SqlSession> {
        let config = self
            .config
            .clone()
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_SCHEMA);
        let warnings = FunctionWarnings::default();
        let (ctx, functions, reads) = match self.engine.cluster() {
            None => {
                let ctx = match self.runtime.clone() {
                    Some(runtime) => SessionContext::new_with_config_rt(config, runtime),
                    None => SessionContext::new_with_config(config),
                };
                let functions: Vec<ScalarUDF> = self.session_functions(&warnings).collect();
                (ctx, functions, TableReads::Delta)
            }
            Some(scheduler) => {
                let (functions, codec) = self.cluster_functions(&warnings);
                let runtime = self.runtime.clone().unwrap_or_default();
                let config = match self.engine.partitions {
                    Some(partitions) => config.with_target_partitions(partitions),
                    None => config,
                };
                let ctx = cluster_context(
                    scheduler,
                    config,
                    runtime,
                    &self.lakehouse,
                    functions.clone(),
                    Arc::new(codec),
                )
                .await?;
                (ctx, functions, TableReads::Listing)
            }
        };
        // Registered after a cluster context is made: making one replaces the functions.
        for function in functions {
            ctx.register_udf(function);
        }
        let pins = Arc::new(self.pins);
        let (catalog, time_travel) =
            attach_lakehouse(&ctx, &self.lakehouse, &pins, &self.visible, reads).await?;
        Ok(SqlSession {
            ctx,
            lakehouse: self.lakehouse,
            catalog,
            time_travel,
            pins,
            visible: self.visible,
            warnings,
            extensions: self.extensions,
            reads,
        })
    }
}

impl SqlSession {
    /// A session with default settings: `SqlSession::builder(lakehouse).build().await`.
    pub fn builder(lakehouse: Arc<Lakehouse>) -> SessionBuilder {
        SessionBuilder {
            lakehouse,
            config: SessionConfig::new(),
            functions: FunctionsConfig::default(),
            pins: Pins::new(),
            runtime: None,
            visible: None,
            extensions: Vec::new(),
            engine: EngineConfig::default(),
        }
    }

    /// Forgets the tables opened so far and lists the lakehouse again, so the next
    /// statement reads every unpinned table at its newest version. Settings are kept.
    pub async fn refresh(&mut self) -> Result<()> {
        (self.catalog, self.time_travel) = attach_lakehouse(
            &self.ctx,
            &self.lakehouse,
            &self.pins,
            &self.visible,
            self.reads,
        )
        .await?;
        Ok(())
    }

    /// Values the normalization functions turned into NULL since the last call.
    pub fn take_warnings(&self) -> Vec<FunctionWarning> {
        self.warnings.take()
    }

    /// The DataFusion context, for registering more functions or running DataFrames.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Removes the schemas registered on the lakehouse catalog (such as the server's
    /// `pg_catalog`, which refers back to the session): call it when the session ends.
    pub fn release_registered_schemas(&self) {
        self.catalog.release_registered_schemas();
    }

    /// The lakehouse this session reads.
    pub fn lakehouse(&self) -> &Arc<Lakehouse> {
        &self.lakehouse
    }

    /// Splits `sql` into statements. A syntax error names the line and column and points
    /// at them.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        let dialect = self.ctx.state().config().options().sql_parser.dialect;
        DFParser::parse_sql_with_dialect(sql, dialect_for(&dialect).as_ref())
            .map(Vec::from)
            .map_err(|error| {
                let message = match error.find_root() {
                    DataFusionError::SQL(parser_error, _) => parser_error.to_string(),
                    other => other.strip_backtrace(),
                };
                Error::Sql(point_at_position(sql, &message))
            })
    }

    /// Plans one statement and returns it as a DataFrame, ready to stream. A statement
    /// that would write (DDL, DML, `COPY`, also under `EXPLAIN ANALYZE`) is refused with
    /// [`Error::ReadOnly`].
    pub async fn plan(&self, statement: Statement) -> Result<DataFrame> {
        let plan = self.logical_plan(statement).await?;
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// Plans one statement without running anything, refusing writes like [`Self::plan`].
    pub async fn logical_plan(&self, statement: Statement) -> Result<LogicalPlan> {
        refuse_write_statement(&statement)?;
        self.time_travel
            .resolve(&self.lakehouse, &statement)
            .await?;
        for extension in &self.extensions {
            extension.prepare(&self.lakehouse, &statement).await?;
        }
        self.check_tables_exist(&statement).await?;
        let state = self.ctx.state();
        let plan = state.statement_to_plan(statement).await?;
        refuse_writes(&plan)?;
        Ok(plan)
    }

    /// Table `name` as the session reads it (at its pin, or newest), as a DataFrame to
    /// build a plan on.
    pub async fn table(&self, name: &TableName) -> Result<DataFrame> {
        let provider = self.catalog.table(name).await?;
        Ok(self.ctx.read_table(provider)?)
    }

    /// Version `version` of table `name`, whatever the session's pins, as a DataFrame.
    pub async fn table_at(&self, name: &TableName, version: u64) -> Result<DataFrame> {
        let table = self
            .lakehouse
            .open_table(name, TableVersion::Version(version))
            .await?;
        Ok(self.ctx.read_table(self.provider(&table).await?)?)
    }

    /// `table` (at the version it was opened at) as this session reads tables.
    pub async fn provider(&self, table: &deltalake::DeltaTable) -> Result<Arc<dyn TableProvider>> {
        self.reads.provider(table).await
    }

    /// True when this session's queries run on a cluster.
    pub fn runs_on_cluster(&self) -> bool {
        self.reads == TableReads::Listing
    }

    /// `frame` as the input of a Delta write in this process: itself in local mode; on a
    /// cluster, a frame reading the result of the job that runs it there.
    pub async fn for_write(&self, frame: DataFrame) -> Result<DataFrame> {
        if self.runs_on_cluster() {
            run_on_cluster(frame).await
        } else {
            Ok(frame)
        }
    }

    /// Rows of `table` (a quoted name) as the session's pins and versions see it.
    pub async fn count_rows(&self, table: &str) -> Result<u64> {
        let batches = self
            .sql(&format!("SELECT count(*) FROM {table}"))
            .await?
            .collect()
            .await?;
        Ok(batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0) as u64)
    }

    /// Parses and plans `sql`, which must hold exactly one statement.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let mut statements = self.parse(sql)?;
        match statements.len() {
            1 => match statements.pop() {
                Some(statement) => self.plan(statement).await,
                None => Err(Error::Sql(String::from("no SQL statement given"))),
            },
            0 => Err(Error::Sql(String::from("no SQL statement given"))),
            n => Err(Error::Sql(format!(
                "expected one SQL statement, found {n}: run them one at a time"
            ))),
        }
    }

    /// Every lakehouse table `statement` reads, as written and as a name: plain references
    /// (unqualified ones are in [`DEFAULT_SCHEMA`]) and the tables of `table_at` calls.
    /// Common table expressions and [`SYSTEM_SCHEMAS`] are not tables of the lakehouse.
    pub fn tables_read(&self, statement: &Statement) -> Result<Vec<(String, TableName)>> {
        let state = self.ctx.state();
        let mut tables = Vec::new();
        for reference in state.resolve_table_references(statement)? {
            if self.is_table_function(&reference) {
                continue;
            }
            let resolved = reference.clone().resolve(CATALOG_NAME, DEFAULT_SCHEMA);
            if resolved.catalog.as_ref() != CATALOG_NAME
                || SYSTEM_SCHEMAS.contains(&resolved.schema.as_ref())
            {
                continue;
            }
            let name = TableName {
                schema: resolved.schema.to_string(),
                name: resolved.table.to_string(),
            };
            tables.push((reference.to_string(), name));
        }
        for (name, _) in tables_at_versions(statement)? {
            tables.push((name.to_string(), name));
        }
        Ok(tables)
    }

    /// True when `reference` names one of the session's table functions (`table_at`,
    /// `generate_series`, ...) rather than a table: unqualified or in [`DEFAULT_SCHEMA`].
    pub fn is_table_function(&self, reference: &TableReference) -> bool {
        // Planned scans of a table function are named after the call: `table_at()`.
        let name = reference.table();
        reference.catalog().is_none()
            && reference
                .schema()
                .is_none_or(|schema| schema == DEFAULT_SCHEMA)
            && self
                .ctx
                .state_ref()
                .read()
                .table_functions()
                .contains_key(name.strip_suffix("()").unwrap_or(name))
    }

    /// Fails with the closest existing names when the statement reads a table that is not
    /// in the lakehouse.
    async fn check_tables_exist(&self, statement: &Statement) -> Result<()> {
        for (written, name) in self.tables_read(statement)? {
            match self.catalog.table(&name).await {
                Ok(_) => {}
                Err(Error::UnknownTable {
                    mut suggestions, ..
                }) => {
                    if let Some(visible) = &self.visible {
                        suggestions.retain(|s| TableName::parse(s).is_ok_and(|t| visible(&t)));
                    }
                    return Err(Error::UnknownTable {
                        name: written,
                        suggestions,
                    });
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }
}

/// Registers a freshly listed catalog and a new `table_at` function on `ctx`.
async fn attach_lakehouse(
    ctx: &SessionContext,
    lakehouse: &Arc<Lakehouse>,
    pins: &Arc<Pins>,
    visible: &Option<Visibility>,
    reads: TableReads,
) -> Result<(Arc<LakehouseCatalog>, Arc<TimeTravel>)> {
    let catalog = Arc::new(
        LakehouseCatalog::discover(lakehouse.clone(), pins.clone(), visible.clone(), reads).await?,
    );
    catalog.attach_session(ctx.state_weak_ref());
    ctx.register_catalog(CATALOG_NAME, catalog.clone());
    let time_travel = Arc::new(TimeTravel::new(reads));
    ctx.register_udtf(TABLE_AT, time_travel.clone());
    Ok((catalog, time_travel))
}

fn dialect_for(
    name: &datafusion::config::Dialect,
) -> Box<dyn datafusion::sql::sqlparser::dialect::Dialect> {
    datafusion::sql::sqlparser::dialect::dialect_from_str(name)
        .unwrap_or_else(|| Box::new(datafusion::sql::sqlparser::dialect::GenericDialect {}))
}

/// Appends the offending SQL line with a caret under the column that a parser message
/// names as `Line: L, Column: C`.
fn point_at_position(sql: &str, message: &str) -> String {
    let position = message.rfind("Line: ").and_then(|at| {
        let rest = &message[at + "Line: ".len()..];
        let (line, rest) = rest.split_once(", Column: ")?;
        let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some((line.parse::<usize>().ok()?, column.parse::<usize>().ok()?))
    });
    match position {
        Some((line, column)) if line >= 1 && column >= 1 => match sql.lines().nth(line - 1) {
            Some(text) => format!(
                "{message}\n  {line:>3} | {text}\n      | {}^",
                " ".repeat(column - 1)
            ),
            None => message.to_string(),
        },
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_point_at_the_column() {
        let message =
            "sql parser error: Expected: end of statement, found: FRM at Line: 2, Column: 3";
        let annotated = point_at_position("SELECT 1\n  FRM x", message);
        assert_eq!(
            annotated,
            format!("{message}\n    2 |   FRM x\n      |   ^")
        );
        assert_eq!(point_at_position("x", "no position"), "no position");
    }
}
