//! `predict(model, feature, ...)`: scores rows with a registered model version, inline in
//! any SQL statement, with an explanation per row.
//!
//! The model is `'name'` (its champion), `'name@challenger'` or `'name:3'`, a text
//! literal; the features follow in the model's feature order (`lakescore models show`
//! lists them). A wrong number of features, or a column whose type does not fit a
//! feature's kind, is a planning error naming the expected features. The result is a
//! struct:
//!
//! - `prediction`: the class (text) or the predicted value (double);
//! - `probability`: binary: of the positive class; multiclass: of the predicted class;
//!   NULL for regression;
//! - `confidence`: the predicted class's probability; NULL for regression;
//! - `top_features`: the features that moved this prediction most, as a list of
//!   `{feature, value, contribution}` (see the explanations module for what a
//!   contribution measures), largest magnitude first, at most `[functions] top_features`.
//!
//! Missing and unreadable feature values are scored with the training-time imputation
//! and category values never seen in training with the `(other)` bucket, never an error.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Builder, ListBuilder, StringBuilder, StructArray, StructBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{ScalarValue, plan_datafusion_err, plan_err};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use datafusion::sql::parser::Statement;

use crate::config::{FeatureKind, FunctionsConfig, Task};
use crate::error::Result;
use crate::ml::models::dataset::{Converted, convert};
use crate::ml::models::explain::explain_into;
use crate::ml::models::features::RawColumn;
use crate::ml::models::loaded::{PREDICT, SessionModels};
use crate::ml::models::registry::LoadedModel;
use crate::sql::session::{SessionBuilder, SessionExtension, SqlSession};
use crate::storage::lakehouse::Lakehouse;

/// A session builder with lakescore's SQL functions and `predict`: what every session
/// that runs a user's SQL starts from.
pub fn sql_session(lakehouse: Arc<Lakehouse>) -> SessionBuilder {
    SqlSession::builder(lakehouse).extension(ModelScoring::default())
}

/// `predict` as a session extension: registers the function and, before each statement is
/// planned, loads the models its `predict` calls name.
#[derive(Debug, Default)]
pub struct ModelScoring {
    models: Arc<SessionModels>,
}

#[async_trait::async_trait]
impl SessionExtension for ModelScoring {
    fn functions(&self, config: &FunctionsConfig) -> Vec<ScalarUDF> {
        vec![ScalarUDF::from(Predict::new(
            self.models.clone(),
            config.top_features,
        ))]
    }

    async fn prepare(&self, lakehouse: &Arc<Lakehouse>, statement: &Statement) -> Result<()> {
        self.models.resolve(lakehouse, statement).await
    }
}

/// The `predict` SQL function of one session.
#[derive(Debug)]
pub struct Predict {
    signature: Signature,
    models: Arc<SessionModels>,
    top_features: usize,
}

impl PartialEq for Predict {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.models, &other.models) && self.top_features == other.top_features
    }
}

impl Eq for Predict {}

impl std::hash::Hash for Predict {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.top_features.hash(state);
    }
}

impl Predict {
    /// The function over the session's resolved models, explaining `top_features`
    /// features per row.
    pub fn new(models: Arc<SessionModels>, top_features: usize) -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
            models,
            top_features,
        }
    }

    fn model(&self, reference: Option<&ScalarValue>) -> DfResult<Arc<LoadedModel>> {
        let text = match reference {
            Some(
                ScalarValue::Utf8(Some(t))
                | ScalarValue::Utf8View(Some(t))
                | ScalarValue::LargeUtf8(Some(t)),
            ) => t,
            _ => {
                return plan_err!(
                    "{PREDICT}: the first argument must be a model reference in quotes, e.g. {PREDICT}('churn_risk', ...)"
                );
            }
        };
        self.models.get(text).ok_or_else(|| {
            plan_datafusion_err!("{PREDICT}: model '{text}' was not loaded before planning")
        })
    }
}

/// The struct `predict` returns for a model of `task`.
pub fn result_type(task: Task) -> DataType {
    let prediction = match task {
        Task::Classification => DataType::Utf8,
        Task::Regression => DataType::Float64,
    };
    DataType::Struct(Fields::from(vec![
        Field::new("prediction", prediction, true),
        Field::new("probability", DataType::Float64, true),
        Field::new("confidence", DataType::Float64, true),
        Field::new(
            "top_features",
            DataType::List(Arc::new(Field::new("item", contribution_type(), true))),
            true,
        ),
    ]))
}

fn contribution_fields() -> Fields {
    Fields::from(vec![
        Field::new("feature", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new("contribution", DataType::Float64, true),
    ])
}

fn contribution_type() -> DataType {
    DataType::Struct(contribution_fields())
}

fn fits(kind: FeatureKind, data_type: &DataType) -> bool {
    match kind {
        FeatureKind::Numeric => data_type.is_numeric() || *data_type == DataType::Null,
        FeatureKind::Boolean => matches!(data_type, DataType::Boolean | DataType::Null),
        FeatureKind::Categorical => true,
    }
}

impl ScalarUDFImpl for Predict {
    fn name(&self) -> &str {
        PREDICT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        plan_err!("{PREDICT}: the result type depends on the model")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let model = self.model(args.scalar_arguments.first().copied().flatten())?;
        let manifest = &model.manifest;
        let kind = |kind: FeatureKind| match kind {
            FeatureKind::Numeric => "numeric",
            FeatureKind::Categorical => "categorical",
            FeatureKind::Boolean => "boolean",
        };
        let expected: Vec<String> = manifest
            .features
            .iter()
            .map(|f| format!("{} ({})", f.name, kind(f.kind)))
            .collect();
        let given = args.arg_fields.len().saturating_sub(1);
        if given != manifest.features.len() {
            return plan_err!(
                "{PREDICT}('{}:{}', ...) takes {} features in this order: {}; {given} given",
                manifest.name,
                manifest.version,
                manifest.features.len(),
                expected.join(", ")
            );
        }
        for (index, (feature, field)) in manifest
            .features
            .iter()
            .zip(&args.arg_fields[1..])
            .enumerate()
        {
            if !fits(feature.kind, field.data_type()) {
                return plan_err!(
                    "{PREDICT}('{}:{}', ...): argument {} is {} but feature '{}' is {}; the features are: {}",
                    manifest.name,
                    manifest.version,
                    index + 2,
                    field.data_type(),
                    feature.name,
                    kind(feature.kind),
                    expected.join(", ")
                );
            }
        }
        Ok(Arc::new(Field::new(
            PREDICT,
            result_type(manifest.task),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let reference = match args.args.first() {
            Some(ColumnarValue::Scalar(value)) => Some(value.clone()),
            _ => None,
        };
        let model = self.model(reference.as_ref())?;
        let all_scalars = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args[1..])?;
        let rows = if all_scalars { 1 } else { args.number_rows };
        let columns = model
            .manifest
            .features
            .iter()
            .zip(&arrays)
            .map(|(feature, array)| {
                let array = if array.len() == rows {
                    array.clone()
                } else {
                    array.slice(0, rows.min(array.len()))
                };
                convert(&feature.name, feature.kind, &array)
                    .map(raw_column)
                    .map_err(|e| DataFusionError::Execution(e.to_string()))
            })
            .collect::<DfResult<Vec<RawColumn>>>()?;
        let result = score_rows(&model, &columns, rows, self.top_features)?;
        if all_scalars {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

fn raw_column(converted: Converted) -> RawColumn {
    match converted {
        Converted::Numbers(array) => RawColumn::Numbers(array.iter().collect()),
        Converted::Texts(array) => {
            RawColumn::Texts(array.iter().map(|v| v.map(str::to_string)).collect())
        }
    }
}

/// Scores `rows` rows of `columns` into `predict`'s struct array.
pub fn score_rows(
    model: &LoadedModel,
    columns: &[RawColumn],
    rows: usize,
    top: usize,
) -> DfResult<ArrayRef> {
    let manifest = &model.manifest;
    let artifact = &model.artifact;
    let positive = manifest
        .positive_class
        .as_ref()
        .and_then(|p| manifest.classes.iter().position(|c| c == p));
    let mut class_predictions = StringBuilder::new();
    let mut value_predictions = Float64Builder::new();
    let mut probabilities = Float64Builder::new();
    let mut confidences = Float64Builder::new();
    let mut tops = ListBuilder::new(StructBuilder::from_fields(contribution_fields(), top))
        .with_field(Arc::new(Field::new("item", contribution_type(), true)));
    let mut encoded = Vec::new();
    let mut per_column = Vec::new();
    let mut contributions = Vec::new();
    let mut ranked: Vec<usize> = Vec::new();
    for row in 0..rows {
        artifact
            .preprocessing
            .encode_row(columns, row, &mut encoded);
        let output = artifact.compiled.score(&encoded);
        let class = output.value as usize;
        match manifest.task {
            Task::Classification => {
                class_predictions.append_option(manifest.classes.get(class));
                let predicted = output.probabilities.get(class).copied();
                probabilities.append_option(match positive {
                    Some(p) => output.probabilities.get(p).copied(),
                    None => predicted,
                });
                confidences.append_option(predicted);
            }
            Task::Regression => {
                value_predictions.append_value(output.value);
                probabilities.append_null();
                confidences.append_null();
            }
        }
        let explained = explain_into(
            artifact,
            &encoded,
            positive.unwrap_or(class),
            &mut per_column,
            &mut contributions,
        )
        .is_some();
        if explained {
            largest_first(&contributions, top, &mut ranked);
            let builder = tops.values();
            for &feature in &ranked {
                if let Some(name) = builder.field_builder::<StringBuilder>(0) {
                    name.append_value(&manifest.features[feature].name);
                }
                if let Some(value) = builder.field_builder::<StringBuilder>(1) {
                    append_value_text(value, &columns[feature], row);
                }
                if let Some(amount) = builder.field_builder::<Float64Builder>(2) {
                    amount.append_value(contributions[feature]);
                }
                builder.append(true);
            }
        }
        tops.append(true);
    }
    let prediction: ArrayRef = match manifest.task {
        Task::Classification => Arc::new(class_predictions.finish()),
        Task::Regression => Arc::new(value_predictions.finish()),
    };
    let DataType::Struct(fields) = result_type(manifest.task) else {
        return plan_err!("{PREDICT}: result type is not a struct");
    };
    let result = StructArray::try_new(
        fields,
        vec![
            prediction,
            Arc::new(probabilities.finish()),
            Arc::new(confidences.finish()),
            Arc::new(tops.finish()),
        ],
        None,
    )?;
    Ok(Arc::new(result))
}

/// The indices of the `top` largest `contributions` by magnitude, largest first, into
/// `ranked` (ties keep feature order).
fn largest_first(contributions: &[f64], top: usize, ranked: &mut Vec<usize>) {
    ranked.clear();
    ranked.extend(0..contributions.len());
    let by_magnitude = |a: &usize, b: &usize| {
        contributions[*b]
            .abs()
            .total_cmp(&contributions[*a].abs())
            .then(a.cmp(b))
    };
    if top < ranked.len() {
        ranked.select_nth_unstable_by(top, by_magnitude);
        ranked.truncate(top);
    }
    ranked.sort_by(by_magnitude);
}

/// Appends row `row` of `column` as text (NULL when missing), written straight into the
/// builder's buffer.
fn append_value_text(builder: &mut StringBuilder, column: &RawColumn, row: usize) {
    match column {
        RawColumn::Numbers(values) => match values[row] {
            Some(value) => {
                // Writing into a StringBuilder cannot fail; the value ends at append_value.
                let _ = write!(builder, "{value}");
                builder.append_value("");
            }
            None => builder.append_null(),
        },
        RawColumn::Texts(values) => builder.append_option(values[row].as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::sql::functions::{FunctionWarnings, all_functions};

    #[test]
    fn a_scoring_session_registers_every_function_under_its_own_name() {
        let config = FunctionsConfig::default();
        let functions: Vec<ScalarUDF> = all_functions(&config, &FunctionWarnings::default())
            .chain(ModelScoring::default().functions(&config))
            .collect();
        let mut names = HashSet::new();
        for function in &functions {
            for name in std::iter::once(function.name())
                .chain(function.aliases().iter().map(String::as_str))
            {
                assert!(
                    names.insert(name.to_string()),
                    "duplicate function name {name}"
                );
            }
        }
        assert_eq!(names.len(), 7);
        assert!(names.contains(PREDICT), "{names:?}");
    }
}
