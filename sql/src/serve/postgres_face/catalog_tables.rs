//! `pg_catalog`'s tables with the columns and types clients' catalog queries expect.
//! datafusion-pg-catalog keeps vector and array columns as PostgreSQL's text forms
//! (`indkey` as `1 2`, `conkey` as `{1,2}`), so the queries SQLAlchemy and psql send to
//! reflect keys and indexes (`unnest(i.indkey)`, `generate_subscripts(con.conkey, 1)`)
//! cannot be planned, and it lacks a few columns they select (`pg_class.reloptions`).
//! [`CatalogAsClientsExpect`] serves those tables as views that split the text into typed
//! lists and add the missing columns as NULL, `pg_description` with the lakehouse's table
//! and column descriptions ([`super::descriptions`]), and every other table as it is.

use std::sync::Arc;

use async_trait::async_trait;
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Field};
use lakescore_engine::datafusion::catalog::view::ViewTable;
use lakescore_engine::datafusion::catalog::{SchemaProvider, TableProvider};
use lakescore_engine::datafusion::common::{Column, TableReference};
use lakescore_engine::datafusion::datasource::provider_as_source;
use lakescore_engine::datafusion::error::Result as DfResult;
use lakescore_engine::datafusion::functions::expr_fn::btrim;
use lakescore_engine::datafusion::functions_nested::expr_fn::string_to_array;
use lakescore_engine::datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, lit};
use lakescore_engine::datafusion::scalar::ScalarValue;

use super::descriptions::{DescribedSlot, pg_description};

/// How a column's text is written.
#[derive(Debug, Clone, Copy)]
enum TextForm {
    /// `int2vector` and `oidvector`: elements separated by spaces, `1 2`.
    Vector,
    /// An array literal, `{1,2}`.
    Array,
}

/// The columns served as lists: (table, column, text form, element type).
const ARRAY_COLUMNS: [(&str, &str, TextForm, DataType); 7] = [
    ("pg_index", "indkey", TextForm::Vector, DataType::Int16),
    ("pg_index", "indclass", TextForm::Vector, DataType::Int32),
    (
        "pg_index",
        "indcollation",
        TextForm::Vector,
        DataType::Int32,
    ),
    ("pg_index", "indoption", TextForm::Vector, DataType::Int16),
    ("pg_constraint", "conkey", TextForm::Array, DataType::Int16),
    ("pg_constraint", "confkey", TextForm::Array, DataType::Int16),
    ("pg_namespace", "nspacl", TextForm::Array, DataType::Utf8),
];

/// Columns PostgreSQL has that datafusion-pg-catalog's tables lack: (table, column, type).
fn missing_columns() -> [(&'static str, &'static str, DataType); 1] {
    [(
        "pg_class",
        "reloptions",
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
    )]
}

/// `pg_catalog` with [`ARRAY_COLUMNS`] as lists, [`missing_columns`] added and the
/// descriptions in `pg_description`.
#[derive(Debug)]
pub struct CatalogAsClientsExpect {
    inner: Arc<dyn SchemaProvider>,
    described: DescribedSlot,
}

impl CatalogAsClientsExpect {
    /// Wraps datafusion-pg-catalog's `pg_catalog`; `described` holds the connection's
    /// descriptions.
    pub fn new(inner: Arc<dyn SchemaProvider>, described: DescribedSlot) -> Self {
        Self { inner, described }
    }
}

/// True when `name` is served as a view.
fn is_reshaped(name: &str) -> bool {
    ARRAY_COLUMNS.iter().any(|(table, ..)| *table == name)
        || missing_columns().iter().any(|(table, ..)| *table == name)
}

/// `table` (named `name`) as a view with its array columns split into lists and its
/// missing columns added.
fn reshaped(name: &str, table: Arc<dyn TableProvider>) -> DfResult<Arc<dyn TableProvider>> {
    let schema = table.schema();
    let mut columns: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|field| {
            let column = Expr::Column(Column::new(
                Some(TableReference::partial("pg_catalog", name)),
                field.name(),
            ));
            let converted = ARRAY_COLUMNS
                .iter()
                .find(|(t, c, ..)| *t == name && c == field.name())
                .map(|(_, _, form, element)| {
                    let elements = match form {
                        TextForm::Vector => string_to_array(column.clone(), lit(" "), lit("")),
                        TextForm::Array => string_to_array(
                            btrim(vec![column.clone(), lit("{}")]),
                            lit(","),
                            lit("NULL"),
                        ),
                    };
                    let list = DataType::List(Arc::new(Field::new("item", element.clone(), true)));
                    cast(elements, list)
                });
            converted.unwrap_or(column).alias(field.name())
        })
        .collect();
    for (_, column, data_type) in missing_columns()
        .into_iter()
        .filter(|(table, column, _)| *table == name && schema.field_with_name(column).is_err())
    {
        columns.push(cast(lit(ScalarValue::Null), data_type).alias(column));
    }
    // The scan keeps the table's schema, so the grants see a catalog table.
    let reference = TableReference::partial("pg_catalog", name);
    let plan = LogicalPlanBuilder::scan(reference, provider_as_source(table), None)?
        .project(columns)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

#[async_trait]
impl SchemaProvider for CatalogAsClientsExpect {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        if is_reshaped(name) {
            return reshaped(name, table).map(Some);
        }
        if name == "pg_description" {
            return pg_description(table, &self.described).map(Some);
        }
        Ok(Some(table))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}
