//! Table and column descriptions kept in a Delta table's own metadata, where Delta readers
//! (Spark, Databricks, Unity Catalog) and `lakescore serve`'s `obj_description` and
//! `col_description` find them: the table's in the log's `metaData.description`, each
//! column's as the `comment` of its schema field.
//!
//! A new table gets its descriptions in the commit that creates it ([`described_plan`] puts
//! the column comments on the written plan's fields). An existing table whose declared
//! descriptions changed gets them in one metadata-only commit after its data
//! ([`describe`]); a rewrite that declares none keeps the ones it has.

use std::collections::BTreeMap;

use datafusion::common::Column;
use datafusion::logical_expr::expr::FieldMetadata;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Metadata, MetadataValue, StructField, StructType};
use deltalake::operations::update_table_metadata::TableMetadataUpdate;
use deltalake::protocol::DeltaOperation;
use serde_json::json;

use crate::error::{Error, Result};

/// The field metadata key of a column's description, as Spark and Databricks write it.
pub const COMMENT: &str = "comment";

/// The descriptions of a table and its columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptions {
    /// What the table holds.
    pub table: Option<String>,
    /// Each described column's description, by column name.
    pub columns: BTreeMap<String, String>,
}

impl Descriptions {
    /// The descriptions `table`'s loaded version stores (none for a table not created yet).
    pub fn stored(table: &DeltaTable) -> Self {
        let Ok(snapshot) = table.snapshot() else {
            return Self::default();
        };
        let columns = snapshot
            .schema()
            .fields()
            .filter_map(|field| Some((field.name().clone(), comment(field)?)))
            .collect();
        Self {
            table: snapshot
                .metadata()
                .description()
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            columns,
        }
    }

    /// True when nothing is described.
    pub fn is_empty(&self) -> bool {
        self.table.is_none() && self.columns.is_empty()
    }
}

/// A column's description in its field metadata.
fn comment(field: &StructField) -> Option<String> {
    match field.metadata().get(COMMENT)? {
        MetadataValue::String(text) if !text.is_empty() => Some(text.clone()),
        _ => None,
    }
}

/// `plan` with a `comment` on each output column that has one: the one `wanted` declares,
/// or, when `wanted` declares nothing, the one `table` stores, so rewriting a table keeps
/// its column descriptions and its schema.
pub fn described_plan(
    plan: LogicalPlan,
    table: &DeltaTable,
    wanted: &Descriptions,
) -> Result<LogicalPlan> {
    let stored;
    let comments = if wanted.is_empty() {
        stored = Descriptions::stored(table);
        &stored.columns
    } else {
        &wanted.columns
    };
    let schema = plan.schema().clone();
    if !schema
        .fields()
        .iter()
        .any(|field| comments.contains_key(field.name()))
    {
        return Ok(plan);
    }
    let columns = schema.iter().map(|(qualifier, field)| {
        let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
        match comments.get(field.name()) {
            Some(text) => {
                let mut metadata = field.metadata().clone();
                metadata.insert(COMMENT.to_string(), text.clone());
                column.alias_with_metadata(field.name(), Some(FieldMetadata::from(metadata)))
            }
            None => column,
        }
    });
    Ok(LogicalPlanBuilder::from(plan).project(columns)?.build()?)
}

/// Records `wanted` as `table`'s descriptions in one metadata-only commit with
/// `properties`, when `wanted` declares any and the table stores others: the table
/// description becomes the declared one and each declared column's comment its declared
/// one; columns `wanted` does not describe keep theirs (a column a query passes through
/// unchanged brings the description of the column it reads). Returns the table's newest
/// version. A described column the table lacks is an error that names it, before
/// anything is committed.
pub async fn describe(
    table: &DeltaTable,
    wanted: &Descriptions,
    properties: CommitProperties,
) -> Result<u64> {
    let uri = table.table_url().to_string();
    let loaded = table.version().unwrap_or_default();
    let stored = Descriptions::stored(table);
    let recorded = stored.table == wanted.table
        && wanted
            .columns
            .iter()
            .all(|(column, text)| stored.columns.get(column) == Some(text));
    if wanted.is_empty() || recorded {
        return Ok(loaded);
    }
    let delta = Error::delta_at(&uri);
    let snapshot = table.snapshot().map_err(delta)?;
    let schema = snapshot.schema();
    if let Some(missing) = wanted
        .columns
        .keys()
        .find(|name| schema.field(name).is_none())
    {
        return Err(Error::Usage(format!(
            "{uri} has no column '{missing}' to describe: describe only the columns the table has"
        )));
    }
    let fields = schema
        .fields()
        .map(|field| match wanted.columns.get(field.name()) {
            Some(text) => {
                let mut metadata = field.metadata().clone();
                metadata.insert(COMMENT.to_string(), MetadataValue::String(text.clone()));
                field.clone().with_metadata(metadata)
            }
            None => field.clone(),
        });
    let schema = StructType::try_new(fields).map_err(|e| delta(e.into()))?;
    let metadata =
        with_descriptions(snapshot.metadata(), wanted.table.as_deref(), &schema).map_err(delta)?;
    let operation = DeltaOperation::UpdateTableMetadata {
        metadata_update: TableMetadataUpdate {
            name: None,
            description: wanted.table.clone(),
        },
    };
    let log_store = table.log_store();
    crate::fault::check("describe-commit")?;
    let commit = CommitBuilder::from(properties)
        .with_actions(vec![Action::Metadata(metadata)])
        .build(Some(snapshot), log_store.clone(), operation)
        .await
        .map_err(delta)?;
    Ok(commit.version())
}

/// `metadata` with `description` (none clears it) and `schema`, everything else kept.
fn with_descriptions(
    metadata: &Metadata,
    description: Option<&str>,
    schema: &StructType,
) -> deltalake::DeltaResult<Metadata> {
    let value = json!({
        "id": metadata.id(),
        "name": metadata.name(),
        "description": description,
        "format": { "provider": "parquet", "options": {} },
        "schemaString": serde_json::to_string(schema)?,
        "partitionColumns": metadata.partition_columns(),
        "configuration": metadata.configuration(),
        "createdTime": metadata.created_time(),
    });
    Ok(serde_json::from_value(value)?)
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::config::LakehouseConfig;
    use crate::storage::lakehouse::{Lakehouse, TableName, TableVersion};
    use crate::storage::write::{WriteMode, committed_version, table_for_write, write_frame};

    fn declared(table: &str, columns: &[(&str, &str)]) -> Descriptions {
        Descriptions {
            table: Some(table.to_string()),
            columns: columns
                .iter()
                .map(|(c, d)| (c.to_string(), d.to_string()))
                .collect(),
        }
    }

    async fn write(
        lakehouse: &Lakehouse,
        name: &TableName,
        descriptions: &Descriptions,
    ) -> DeltaTable {
        let frame = SessionContext::new()
            .sql("SELECT 1 AS id, 'pro' AS plan")
            .await
            .unwrap();
        let table = table_for_write(lakehouse, name).await.unwrap();
        let properties = CommitProperties::default();
        write_frame(table, frame, WriteMode::Overwrite, properties, descriptions)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn descriptions_live_in_the_delta_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let lakehouse = Lakehouse::new(&LakehouseConfig::default(), dir.path()).unwrap();
        let name = TableName::parse("curated.customers").unwrap();
        let wanted = declared("One row per customer", &[("plan", "The plan they pay for")]);

        // Created with its descriptions, in the commit that creates it.
        let created = write(&lakehouse, &name, &wanted).await;
        assert_eq!(committed_version(&created).unwrap(), 0);
        assert_eq!(Descriptions::stored(&created), wanted);

        // Rewritten without declaring any: the column's is kept, in one commit.
        let rewritten = write(&lakehouse, &name, &Descriptions::default()).await;
        assert_eq!(committed_version(&rewritten).unwrap(), 1);
        assert_eq!(Descriptions::stored(&rewritten).columns, wanted.columns);

        // Unchanged descriptions commit nothing; changed ones one metadata commit.
        let properties = CommitProperties::default;
        assert_eq!(
            describe(&rewritten, &wanted, properties()).await.unwrap(),
            1
        );
        let changed = declared("Customers", &[("id", "The CRM id")]);
        assert_eq!(
            describe(&rewritten, &changed, properties()).await.unwrap(),
            2
        );
        let newest = lakehouse
            .open_table(&name, TableVersion::Latest)
            .await
            .unwrap();
        let mut expected = changed.clone();
        expected.columns.extend(wanted.columns.clone());
        assert_eq!(
            Descriptions::stored(&newest),
            expected,
            "the table's and id's changed, plan's kept"
        );
        let rows = SessionContext::new()
            .read_table(
                crate::storage::lakehouse::table_provider(&newest)
                    .await
                    .unwrap(),
            )
            .unwrap()
            .count()
            .await
            .unwrap();
        assert_eq!(rows, 1, "describing a table leaves its rows alone");

        let unknown = declared("Customers", &[("revenue", "Yearly revenue")]);
        let error = describe(&newest, &unknown, properties()).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("has no column 'revenue' to describe"),
            "{error}"
        );
    }
}
