//! JSON as PostgreSQL clients expect it: `json_build_object(key, value, ...)`, which
//! SQLAlchemy's column reflection calls, and nested result columns (`top_features`)
//! served as `json` ([`JsonColumns`]), both written with Arrow's JSON encoders so every
//! column type has one JSON form.

use std::sync::Arc;

use datafusion_postgres::pgwire::api::Type;
use datafusion_postgres::pgwire::api::results::FieldInfo;
use lakescore_engine::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringBuilder,
};
use lakescore_engine::datafusion::arrow::compute::cast;
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use lakescore_engine::datafusion::arrow::json::writer::{EncoderOptions, make_encoder};
use lakescore_engine::datafusion::error::{DataFusionError, Result as DfResult};
use lakescore_engine::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use lakescore_engine::datafusion::prelude::SessionContext;

use super::shaped_like;

/// Registers `json_build_object` on `context`.
pub fn register(context: &SessionContext) {
    context.register_udf(ScalarUDF::new_from_impl(JsonBuildObject {
        signature: Signature::variadic_any(Volatility::Immutable),
    }));
}

/// `json_build_object(key, value, ...)`: an object of the pairs, as JSON text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arguments: &[DataType]) -> DfResult<DataType> {
        if arguments.len() % 2 == 1 {
            return Err(DataFusionError::Plan(String::from(
                "json_build_object takes keys and values in pairs: the argument list must have an even number of elements",
            )));
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        let keys = arrays
            .iter()
            .step_by(2)
            .map(|key| cast(key, &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()?;
        let value_fields: Vec<FieldRef> = arrays
            .iter()
            .skip(1)
            .step_by(2)
            .map(|value| Arc::new(Field::new("value", value.data_type().clone(), true)))
            .collect();
        let options = EncoderOptions::default().with_explicit_nulls(true);
        let mut encoders = arrays
            .iter()
            .skip(1)
            .step_by(2)
            .zip(&value_fields)
            .map(|(value, field)| make_encoder(field, value.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        let mut objects = StringBuilder::new();
        let mut object = Vec::new();
        for row in 0..rows {
            object.clear();
            object.push(b'{');
            for (pair, (key, encoder)) in keys.iter().zip(&mut encoders).enumerate() {
                if key.is_null(row) {
                    return Err(DataFusionError::Execution(String::from(
                        "json_build_object: a key must not be NULL",
                    )));
                }
                if pair > 0 {
                    object.extend_from_slice(b", ");
                }
                let key = serde_json::Value::from(key.as_string::<i32>().value(row));
                object.extend_from_slice(key.to_string().as_bytes());
                object.extend_from_slice(b" : ");
                if encoder.is_null(row) {
                    object.extend_from_slice(b"null");
                } else {
                    encoder.encode(row, &mut object);
                }
            }
            object.push(b'}');
            objects.append_value(String::from_utf8_lossy(&object));
        }
        let objects: ArrayRef = Arc::new(objects.finish());
        shaped_like(&args.args, objects)
    }
}

/// The columns of a result served as `json`: structs, and lists or maps that hold them,
/// which PostgreSQL would return as composite types drivers cannot read without knowing
/// the type (psycopg2 sees `{"(seconds,295,0.117)"}` as one string). As JSON, psycopg2,
/// psycopg 3, pandas and BI tools get lists of objects: `[{"feature": "seconds", ...}]`.
#[derive(Debug, Clone, Default)]
pub struct JsonColumns {
    indices: Vec<usize>,
}

impl JsonColumns {
    /// The columns of `schema` served as JSON, and the schema with them as text.
    pub fn of(schema: &Schema) -> (Self, Schema) {
        let indices: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, field)| holds_struct(field.data_type()))
            .map(|(index, _)| index)
            .collect();
        let fields: Vec<FieldRef> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| {
                if indices.contains(&index) {
                    Arc::new(Field::new(
                        field.name(),
                        DataType::Utf8,
                        field.is_nullable(),
                    ))
                } else {
                    field.clone()
                }
            })
            .collect();
        (
            Self { indices },
            Schema::new_with_metadata(fields, schema.metadata().clone()),
        )
    }

    /// `fields` (of the schema [`JsonColumns::of`] returned) with the JSON columns typed
    /// `json`.
    pub fn typed(&self, fields: Vec<FieldInfo>) -> Vec<FieldInfo> {
        fields
            .into_iter()
            .enumerate()
            .map(|(index, field)| {
                if self.indices.contains(&index) {
                    FieldInfo::new(
                        field.name().to_string(),
                        None,
                        None,
                        Type::JSON,
                        field.format(),
                    )
                } else {
                    field
                }
            })
            .collect()
    }

    /// `batch` with the JSON columns written as JSON text.
    pub fn apply(&self, batch: RecordBatch) -> DfResult<RecordBatch> {
        if self.indices.is_empty() {
            return Ok(batch);
        }
        let schema = batch.schema();
        let mut columns = batch.columns().to_vec();
        let options = EncoderOptions::default().with_explicit_nulls(true);
        for &index in &self.indices {
            let field: FieldRef = Arc::new(schema.field(index).clone());
            columns[index] = json_texts(&field, &columns[index], &options)?;
        }
        let (_, text_schema) = Self::of(&schema);
        Ok(RecordBatch::try_new(Arc::new(text_schema), columns)?)
    }
}

/// Each value of `array` as JSON text.
fn json_texts(field: &FieldRef, array: &ArrayRef, options: &EncoderOptions) -> DfResult<ArrayRef> {
    let mut encoder = make_encoder(field, array.as_ref(), options)?;
    let mut texts = StringBuilder::new();
    let mut text = Vec::new();
    for row in 0..array.len() {
        if encoder.is_null(row) {
            texts.append_null();
            continue;
        }
        text.clear();
        encoder.encode(row, &mut text);
        texts.append_value(String::from_utf8_lossy(&text));
    }
    Ok(Arc::new(texts.finish()))
}

/// True for a struct, or a list or map that holds one.
pub(super) fn holds_struct(data_type: &DataType) -> bool {
    match data_type {
        DataType::Struct(_) => true,
        DataType::List(item)
        | DataType::LargeList(item)
        | DataType::ListView(item)
        | DataType::LargeListView(item)
        | DataType::FixedSizeList(item, _)
        | DataType::Map(item, _) => holds_struct(item.data_type()),
        _ => false,
    }
}
