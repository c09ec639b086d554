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

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, Float64Builder, ListArray, StringBuilder, StructArray,
};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{ScalarValue, exec_err, plan_datafusion_err, plan_err};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use datafusion::sql::parser::Statement;

use crate::config::{FeatureKind, FunctionsConfig, Task};
use crate::error::Result;
use crate::ml::models::dataset::{Converted, convert};
use crate::ml::models::explain::{
    BlockExplanations, WalkedBlock, explain_block, explained_over_every_tree,
};
use crate::ml::models::features::{FeatureArray, RawValue};
use crate::ml::models::loaded::{PREDICT, SessionModels};
use crate::ml::models::predict_codec::PredictCodec;
use crate::ml::models::prediction_id::prediction_id_function;
use crate::ml::models::registry::LoadedModel;
use crate::ml::models::tree_walk::TreePaths;
use crate::sql::cluster::FunctionCodec;
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

    fn operation_functions(&self) -> Vec<ScalarUDF> {
        vec![prediction_id_function()]
    }

    fn function_codecs(
        &self,
        lakehouse: &Arc<Lakehouse>,
        _config: &FunctionsConfig,
    ) -> Vec<Arc<dyn FunctionCodec>> {
        vec![Arc::new(PredictCodec::new(lakehouse.clone()))]
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

    /// The models resolved for this function's session.
    pub fn models(&self) -> &Arc<SessionModels> {
        &self.models
    }

    /// How many features each row's explanation lists.
    pub fn top_features(&self) -> usize {
        self.top_features
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
        let converted = model
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
                    .map_err(|e| DataFusionError::Execution(e.to_string()))
            })
            .collect::<DfResult<Vec<Converted>>>()?;
        let columns: Vec<FeatureArray<'_>> =
            converted.iter().map(Converted::feature_array).collect();
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

/// Rows scored together: their encoded values (a few hundred KiB) and their paths
/// through the trees stay in cache while each tree is walked for all of them.
const BLOCK_ROWS: usize = 256;

/// Scores `rows` rows of `columns` into `predict`'s struct array, explaining each with
/// its `top` largest contributions (none when `top` is 0).
pub fn score_rows(
    model: &LoadedModel,
    columns: &[FeatureArray<'_>],
    rows: usize,
    top: usize,
) -> DfResult<ArrayRef> {
    let manifest = &model.manifest;
    let artifact = &model.artifact;
    let positive = manifest
        .positive_class
        .as_ref()
        .and_then(|p| manifest.classes.iter().position(|c| c == p));
    let mut class_predictions = StringBuilder::with_capacity(rows, rows * 8);
    let mut value_predictions = Float64Builder::with_capacity(rows);
    let mut probabilities = Float64Builder::with_capacity(rows);
    let mut confidences = Float64Builder::with_capacity(rows);
    // An explanation names at most every feature, whatever `top` asks for.
    let named = top.min(manifest.features.len());
    let mut tops = TopFeatures::with_capacity(rows, rows * named);
    let width = artifact.preprocessing.width();
    if width == 0 {
        return exec_err!(
            "{PREDICT}: model '{}:{}' has no features to score",
            manifest.name,
            manifest.version
        );
    }
    let mut block = Vec::new();
    let mut paths = TreePaths::default();
    let credit_while_walking = top > 0 && explained_over_every_tree(&artifact.compiled);
    let mut class_probabilities = Vec::new();
    let mut explained_classes = Vec::with_capacity(BLOCK_ROWS);
    let mut explained = BlockExplanations::default();
    let mut ranked: Vec<usize> = Vec::new();
    let mut digits = ryu::Buffer::new();
    for start in (0..rows).step_by(BLOCK_ROWS) {
        let block_rows = start..rows.min(start + BLOCK_ROWS);
        artifact
            .preprocessing
            .encode_block(columns, block_rows.clone(), &mut block);
        model
            .trees
            .walk_block(&block, width, &mut paths, credit_while_walking);
        explained_classes.clear();
        for (at, encoded) in block.chunks_exact(width).enumerate() {
            let value =
                artifact
                    .compiled
                    .score_walked(encoded, &paths, at, &mut class_probabilities);
            let class = value as usize;
            match manifest.task {
                Task::Classification => {
                    class_predictions.append_option(manifest.classes.get(class));
                    let predicted = class_probabilities.get(class).copied();
                    probabilities.append_option(match positive {
                        Some(p) => class_probabilities.get(p).copied(),
                        None => predicted,
                    });
                    confidences.append_option(predicted);
                }
                Task::Regression => {
                    value_predictions.append_value(value);
                    probabilities.append_null();
                    confidences.append_null();
                }
            }
            explained_classes.push(positive.unwrap_or(class));
        }
        if top > 0 {
            let walked = WalkedBlock {
                encoded: &block,
                width,
                trees: &model.trees,
                paths: &paths,
            };
            explain_block(artifact, walked, &explained_classes, &mut explained);
        }
        for (at, row) in block_rows.enumerate() {
            if let Some(contributions) = explained.row(at) {
                largest_first(contributions, top, &mut ranked);
                for &feature in &ranked {
                    tops.names.append_value(&manifest.features[feature].name);
                    append_value_text(&mut tops.values, columns[feature], row, &mut digits);
                    tops.contributions.append_value(contributions[feature]);
                }
            }
            tops.end_row()?;
        }
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
            tops.finish()?,
        ],
        None,
    )?;
    Ok(Arc::new(result))
}

/// The indices of the `top` largest `contributions` by magnitude, largest first, into
/// `ranked` (ties keep feature order). One pass that keeps the `top` found so far in
/// order: a model has tens of features and explanations name a handful.
fn largest_first(contributions: &[f64], top: usize, ranked: &mut Vec<usize>) {
    ranked.clear();
    if top == 0 {
        return;
    }
    for (feature, contribution) in contributions.iter().enumerate() {
        let magnitude = contribution.abs();
        let smaller = |kept: &usize| contributions[*kept].abs().total_cmp(&magnitude).is_lt();
        // With every place taken, a feature no larger than the last kept one (most of
        // them) is out after one comparison.
        if ranked.len() == top && !ranked.last().is_some_and(smaller) {
            continue;
        }
        // After every kept feature at least as large (earlier features win ties).
        let place = ranked.iter().position(smaller).unwrap_or(ranked.len());
        if ranked.len() == top {
            ranked.pop();
        }
        ranked.insert(place, feature);
    }
}

/// The `top_features` lists of a batch, built column by column: each row's features'
/// names, values as text and contributions, and where each row's list ends.
struct TopFeatures {
    names: StringBuilder,
    values: StringBuilder,
    contributions: Float64Builder,
    ends: Vec<i32>,
}

impl TopFeatures {
    fn with_capacity(rows: usize, features: usize) -> Self {
        let mut ends = Vec::with_capacity(rows + 1);
        ends.push(0);
        Self {
            names: StringBuilder::with_capacity(features, features * 8),
            values: StringBuilder::with_capacity(features, features * 8),
            contributions: Float64Builder::with_capacity(features),
            ends,
        }
    }

    /// Ends the current row's list with the features appended since the last one; fails
    /// when a batch's lists would hold more features than a list's 32-bit offsets reach.
    fn end_row(&mut self) -> DfResult<()> {
        let end = i32::try_from(self.names.len()).map_err(|_| {
            DataFusionError::Execution(format!(
                "{PREDICT}: a batch's top_features would hold over {} features; score with fewer top_features or smaller batches",
                i32::MAX
            ))
        })?;
        self.ends.push(end);
        Ok(())
    }

    fn finish(mut self) -> DfResult<ArrayRef> {
        let features = StructArray::try_new(
            contribution_fields(),
            vec![
                Arc::new(self.names.finish()),
                Arc::new(self.values.finish()),
                Arc::new(self.contributions.finish()),
            ],
            None,
        )?;
        let item = Arc::new(Field::new("item", contribution_type(), true));
        let ends = OffsetBuffer::new(ScalarBuffer::from(self.ends));
        Ok(Arc::new(ListArray::try_new(
            item,
            ends,
            Arc::new(features),
            None,
        )?))
    }
}

/// Appends row `row` of `column` as text (NULL when missing), written straight into the
/// builder's buffer.
fn append_value_text(
    builder: &mut StringBuilder,
    column: FeatureArray<'_>,
    row: usize,
    digits: &mut ryu::Buffer,
) {
    match column.value(row) {
        RawValue::Number(value) => builder.append_value(display_text(value, digits)),
        RawValue::Text(text) => builder.append_value(text),
        RawValue::Missing => builder.append_null(),
    }
}

/// `value` as Rust's `Display` writes it (the shortest digits that read back as the same
/// number, never an exponent), written by `ryu`, several times faster. Both give the
/// same digits when at most 15 are needed, as then only one such number exists; ryu then
/// differs only by a trailing `.0` on whole numbers. Longer ones (where the two may pick
/// different last digits) and those ryu writes with an exponent go through `Display`.
fn display_text(value: f64, digits: &mut ryu::Buffer) -> std::borrow::Cow<'_, str> {
    if !value.is_finite() {
        return value.to_string().into();
    }
    let text = digits.format_finite(value);
    let text = text.strip_suffix(".0").unwrap_or(text);
    let significant = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&digit| digit == b'0')
        .count();
    if text.contains('e') || significant > 15 {
        return value.to_string().into();
    }
    text.into()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::sql::functions::{FunctionWarnings, all_functions};

    #[test]
    fn explanations_name_the_largest_contributions_first_and_ties_in_feature_order() {
        let mut ranked = Vec::new();
        largest_first(&[0.1, -0.5, 0.5, 0.0, 2.0], 3, &mut ranked);
        assert_eq!(ranked, [4, 1, 2]);
        largest_first(&[0.1, -0.5], 5, &mut ranked);
        assert_eq!(ranked, [1, 0]);
        largest_first(&[0.1, f64::NAN, -3.0], 2, &mut ranked);
        assert_eq!(ranked, [1, 2]);
        largest_first(&[1.0, 2.0], 0, &mut ranked);
        assert!(ranked.is_empty());
        // The same as sorting every feature, on many rows of many features.
        let mut state = 7_u64;
        for _ in 0..500 {
            let contributions: Vec<f64> = (0..23)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    // Few distinct magnitudes, so ties are common.
                    ((state >> 59) as f64 - 16.0) / 4.0
                })
                .collect();
            let mut sorted: Vec<usize> = (0..contributions.len()).collect();
            sorted.sort_by(|a, b| {
                contributions[*b]
                    .abs()
                    .total_cmp(&contributions[*a].abs())
                    .then(a.cmp(b))
            });
            largest_first(&contributions, 4, &mut ranked);
            assert_eq!(ranked, sorted[..4], "{contributions:?}");
        }
    }

    #[test]
    fn feature_values_read_as_rust_displays_them() {
        let mut state = 11_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state
        };
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -3.0,
            0.1,
            1e-5,
            1e-7,
            123456789.125,
            1e15,
            1e16,
            1e21,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for _ in 0..20_000 {
            let bits = next();
            values.push(f64::from_bits(bits));
            // Numbers as extracts hold them: a few decimals, a wide range.
            values.push((bits % 2_000_000_000) as f64 / 10f64.powi((bits >> 60) as i32) - 1e5);
        }
        let mut digits = ryu::Buffer::new();
        for value in values {
            assert_eq!(
                display_text(value, &mut digits),
                value.to_string(),
                "{value:e}"
            );
        }
    }

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
