//! `obj_description(oid[, 'pg_class'])` and `col_description(oid, attnum)`: the table and
//! column descriptions the SQL models and `[[model]]`s declare, read from each table's
//! Delta metadata, so psql's `\dt+` and `\d+`, SQLAlchemy's `get_table_comment` and
//! `get_columns` (and with them Superset) and Metabase show them.
//!
//! Objects are named by the oids datafusion-pg-catalog hands out in `pg_class` and
//! `pg_attribute`, so a statement that asks for descriptions first reads those two
//! tables in its own session (the oids a connection sees stay the same across its
//! statements) and opens the tables they list; other statements keep answering NULL
//! without opening anything. The same descriptions are rows of `pg_description` (which
//! Metabase joins), after PostgreSQL's own descriptions of its built-in objects.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{StreamExt, TryStreamExt};
use lakescore_engine::datafusion::arrow::array::{
    Array, AsArray, Int32Array, RecordBatch, StringArray,
};
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Int64Type};
use lakescore_engine::datafusion::catalog::TableProvider;
use lakescore_engine::datafusion::catalog::view::ViewTable;
use lakescore_engine::datafusion::common::TableReference;
use lakescore_engine::datafusion::datasource::{MemTable, provider_as_source};
use lakescore_engine::datafusion::error::Result as DfResult;
use lakescore_engine::datafusion::logical_expr::{
    ColumnarValue, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, Statement, visit_expressions, visit_relations,
};
use lakescore_engine::storage::descriptions::Descriptions;
use lakescore_engine::{Lakehouse, TableName};

use super::shaped_like;

/// How many tables are opened at once to read their descriptions.
const OPENING_CONCURRENCY: usize = 16;

/// True when `statement` calls `obj_description` or `col_description` or reads
/// `pg_description` (any qualifier, any case), so descriptions are worth looking up.
pub fn asks_for_descriptions(statement: &Statement) -> bool {
    let last_is = |name: &ObjectName, wanted: &[&str]| {
        name.0
            .last()
            .and_then(|part| part.as_ident())
            .is_some_and(|ident| wanted.iter().any(|w| ident.value.eq_ignore_ascii_case(w)))
    };
    let calls = visit_expressions(statement, |expr| match expr {
        Expr::Function(function)
            if last_is(&function.name, &["obj_description", "col_description"]) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    let reads = visit_relations(statement, |relation| {
        if last_is(relation, &["pg_description"]) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    calls.is_break() || reads.is_break()
}

/// The descriptions of the tables a connection sees, by the oids its `pg_catalog` gives.
#[derive(Debug, Default)]
pub struct DescribedObjects {
    tables: HashMap<i64, String>,
    columns: HashMap<(i64, i64), String>,
    /// The oid of `pg_class` on this connection (what `'pg_class'::regclass` names),
    /// which `pg_description` rows of relations carry as their `classoid`.
    pg_class: i64,
}

/// A connection's descriptions, looked up again by each statement that asks for them.
pub type DescribedSlot = Arc<Mutex<Arc<DescribedObjects>>>;

impl DescribedObjects {
    /// Reads `pg_class` and `pg_attribute` in `context` and the descriptions of the
    /// lakehouse tables they list.
    pub async fn look_up(context: &SessionContext, lakehouse: &Lakehouse) -> DfResult<Self> {
        let relations = context
            .sql(
                "SELECT CAST(c.oid AS BIGINT) AS oid, n.nspname, c.relname \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
                 ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'v', 'm')",
            )
            .await?
            .collect()
            .await?;
        let mut tables: Vec<(i64, TableName)> = Vec::new();
        let mut pg_class = PG_CLASS_OID;
        for batch in &relations {
            let oids = batch.column(0).as_primitive::<Int64Type>();
            let schemas = batch.column(1).as_string::<i32>();
            let names = batch.column(2).as_string::<i32>();
            for row in 0..batch.num_rows() {
                let (oid, schema, name) = (oids.value(row), schemas.value(row), names.value(row));
                match schema {
                    "pg_catalog" if name == "pg_class" => pg_class = oid,
                    "pg_catalog" | "information_schema" => {}
                    _ => {
                        if let Ok(name) = TableName::parse(&format!("{schema}.{name}")) {
                            tables.push((oid, name));
                        }
                    }
                }
            }
        }
        let described: Vec<(i64, Descriptions)> = futures::stream::iter(tables)
            .map(|(oid, name)| async move {
                // A table gone since the listing, or a saved view, has no descriptions.
                let stored = match lakehouse.open_if_exists(&name).await {
                    Ok(Some(table)) => Descriptions::stored(&table),
                    _ => Descriptions::default(),
                };
                Ok::<_, lakescore_engine::datafusion::error::DataFusionError>((oid, stored))
            })
            .buffer_unordered(OPENING_CONCURRENCY)
            .try_filter(|(_, stored)| futures::future::ready(!stored.is_empty()))
            .try_collect()
            .await?;
        let mut objects = Self {
            pg_class,
            ..Self::default()
        };
        if described.is_empty() {
            return Ok(objects);
        }
        let by_oid: HashMap<i64, &Descriptions> = described.iter().map(|(o, d)| (*o, d)).collect();
        let attributes = context
            .sql(
                "SELECT CAST(attrelid AS BIGINT), CAST(attnum AS BIGINT), attname \
                 FROM pg_catalog.pg_attribute",
            )
            .await?
            .collect()
            .await?;
        for batch in &attributes {
            let oids = batch.column(0).as_primitive::<Int64Type>();
            let numbers = batch.column(1).as_primitive::<Int64Type>();
            let names = batch.column(2).as_string::<i32>();
            for row in 0..batch.num_rows() {
                let text = by_oid
                    .get(&oids.value(row))
                    .and_then(|d| d.columns.get(names.value(row)));
                if let Some(text) = text {
                    let key = (oids.value(row), numbers.value(row));
                    objects.columns.insert(key, text.clone());
                }
            }
        }
        for (oid, stored) in &described {
            if let Some(text) = &stored.table {
                objects.tables.insert(*oid, text.clone());
            }
        }
        Ok(objects)
    }

    /// Registers `obj_description` and `col_description` answering from these objects,
    /// and makes them the rows `slot`'s `pg_description` adds.
    pub fn register(self, context: &SessionContext, slot: &DescribedSlot) {
        let objects = Arc::new(self);
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = objects.clone();
        context.register_udf(ScalarUDF::from(DescriptionOf {
            name: "obj_description",
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Int64]),
                    TypeSignature::Exact(vec![DataType::Int64, DataType::Utf8]),
                ],
                Volatility::Stable,
            ),
            objects: objects.clone(),
        }));
        context.register_udf(ScalarUDF::from(DescriptionOf {
            name: "col_description",
            signature: Signature::exact(vec![DataType::Int64, DataType::Int64], Volatility::Stable),
            objects,
        }));
    }
}

/// PostgreSQL's oid of `pg_class`, which its own `pg_description` rows carry (and ours
/// when the connection's `pg_class` does not list itself).
const PG_CLASS_OID: i64 = 1259;

/// `pg_catalog.pg_description`: PostgreSQL's descriptions of its built-in objects
/// (`builtin`), then a row per described table (`objsubid` 0) and column (its number)
/// of `slot`'s objects.
pub fn pg_description(
    builtin: Arc<dyn TableProvider>,
    slot: &DescribedSlot,
) -> DfResult<Arc<dyn TableProvider>> {
    let objects = slot.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let schema = builtin.schema();
    let tables = objects.tables.iter().map(|(oid, text)| (*oid, 0, text));
    let columns = objects
        .columns
        .iter()
        .map(|((oid, number), text)| (*oid, *number, text));
    let (mut oids, mut subids, mut texts) = (Vec::new(), Vec::new(), Vec::new());
    for (oid, subid, text) in tables.chain(columns) {
        oids.push(oid as i32);
        subids.push(subid as i32);
        texts.push(text.as_str());
    }
    let class_oids = vec![objects.pg_class as i32; oids.len()];
    let ours = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from(oids)),
            Arc::new(Int32Array::from(class_oids)),
            Arc::new(Int32Array::from(subids)),
            Arc::new(StringArray::from(texts)),
        ],
    )?;
    let ours = MemTable::try_new(schema, vec![vec![ours]])?;
    // Both scans are of pg_catalog.pg_description, so the grants see a catalog table.
    let reference = || TableReference::partial("pg_catalog", "pg_description");
    let plan = LogicalPlanBuilder::scan(reference(), provider_as_source(builtin), None)?
        .union(
            LogicalPlanBuilder::scan(reference(), provider_as_source(Arc::new(ours)), None)?
                .build()?,
        )?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// `obj_description` or `col_description`, answered from the objects looked up.
#[derive(Debug)]
struct DescriptionOf {
    name: &'static str,
    signature: Signature,
    objects: Arc<DescribedObjects>,
}

impl PartialEq for DescriptionOf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.objects, &other.objects)
    }
}

impl Eq for DescriptionOf {}

impl std::hash::Hash for DescriptionOf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for DescriptionOf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let oids = args.args[0].to_array(rows)?;
        let oids = oids.as_primitive::<Int64Type>();
        let second = args.args.get(1).map(|a| a.to_array(rows)).transpose()?;
        let descriptions: StringArray = match (self.name, &second) {
            ("col_description", Some(numbers)) => {
                let numbers = numbers.as_primitive::<Int64Type>();
                (0..rows)
                    .map(|row| {
                        let valid = oids.is_valid(row) && numbers.is_valid(row);
                        let key = (oids.value(row), numbers.value(row));
                        valid.then(|| self.objects.columns.get(&key)).flatten()
                    })
                    .collect()
            }
            _ => {
                // Only relations (`pg_class`) have descriptions here, not schemas or types.
                let catalogs = second.as_ref().map(|c| c.as_string::<i32>());
                (0..rows)
                    .map(|row| {
                        let of_relation =
                            catalogs.is_none_or(|c| c.is_valid(row) && c.value(row) == "pg_class");
                        let found = oids.is_valid(row) && of_relation;
                        found
                            .then(|| self.objects.tables.get(&oids.value(row)))
                            .flatten()
                    })
                    .collect()
            }
        };
        shaped_like(&args.args, Arc::new(descriptions))
    }
}

#[cfg(test)]
mod tests {
    use lakescore_engine::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use lakescore_engine::datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn asks(sql: &str) -> bool {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        asks_for_descriptions(&statement)
    }

    #[test]
    fn only_statements_about_descriptions_look_them_up() {
        assert!(asks(
            "SELECT pg_catalog.obj_description(c.oid, 'pg_class') FROM pg_class AS c"
        ));
        assert!(asks(
            "SELECT COL_DESCRIPTION(a.attrelid, a.attnum) FROM pg_attribute AS a"
        ));
        assert!(asks(
            "SELECT c.relname FROM pg_class AS c LEFT JOIN pg_catalog.pg_description AS d ON d.objoid = c.oid"
        ));
        assert!(asks(
            "SELECT x FROM t WHERE x IN (SELECT description FROM pg_description)"
        ));
        assert!(!asks(
            "SELECT description, 'obj_description' FROM curated.customers"
        ));
        assert!(!asks("SELECT relname FROM pg_catalog.pg_class"));
    }
}
