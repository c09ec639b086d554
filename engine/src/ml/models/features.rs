//! Preprocessing that is part of a model: turning feature values into the numbers the
//! algorithm sees, learned from the training rows and stored in the manifest.
//!
//! - numeric: for linear algorithms, missing (and non-finite) values become the training
//!   mean and values are standardized with the training mean and standard deviation; for
//!   lakescore's tree learners, values stay as they are and missing ones become NaN, which
//!   each split sends to the side it learned (models registered before kept imputing the
//!   mean);
//! - boolean: true is 1, false 0, missing becomes the training majority;
//! - categorical: one-hot over the `max_categories` most frequent training values
//!   (missing counts as the value `(missing)`), plus one `(other)` column that every value
//!   not among them sets, including values never seen in training.

use std::collections::HashMap;
use std::ops::Range;

use datafusion::arrow::array::{Array, Float64Array, StringArray};
use serde::{Deserialize, Serialize};

use crate::config::FeatureKind;

/// The category name missing values are counted under.
pub const MISSING: &str = "(missing)";
/// The name of the bucket for categories outside the learned ones.
pub const OTHER: &str = "(other)";

/// One feature's values for a set of rows.
#[derive(Debug, Clone, PartialEq)]
pub enum RawColumn {
    /// Numbers and booleans (as 0/1), None when missing or unreadable.
    Numbers(Vec<Option<f64>>),
    /// Categories, None when missing.
    Texts(Vec<Option<String>>),
}

impl RawColumn {
    /// How many rows it holds.
    pub fn len(&self) -> usize {
        match self {
            RawColumn::Numbers(values) => values.len(),
            RawColumn::Texts(values) => values.len(),
        }
    }

    /// True when it holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How one feature is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Encoder {
    /// A number, imputed and maybe standardized.
    Numeric {
        /// The column.
        name: String,
        /// Training mean: fills missing values, and centres when scaling.
        mean: f64,
        /// Training standard deviation (1 when constant).
        std: f64,
        /// Whether the value is standardized.
        scaled: bool,
        /// Whether missing values stay missing (NaN) instead of becoming the mean.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        keeps_missing: bool,
    },
    /// True/false as 1/0.
    Boolean {
        /// The column.
        name: String,
        /// Training majority, filling missing values.
        fill: f64,
    },
    /// One-hot over the learned categories plus the other bucket.
    Categorical {
        /// The column.
        name: String,
        /// Learned categories, most frequent first.
        categories: Vec<String>,
    },
}

/// How an algorithm wants numeric features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericEncoding {
    /// Missing values imputed with the training mean, then standardized (linear models).
    Standardized,
    /// Values as they are, missing ones NaN (lakescore's tree learners).
    MissingKept,
}

/// The encoders of every feature, in feature order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    /// One encoder per feature.
    pub encoders: Vec<Encoder>,
}

/// A feature's value for one row, as read from a table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue<'a> {
    /// A number (or a boolean as 0/1).
    Number(f64),
    /// A category.
    Text(&'a str),
    /// NULL.
    Missing,
}

impl Encoder {
    /// The feature's column name.
    pub fn name(&self) -> &str {
        match self {
            Encoder::Numeric { name, .. }
            | Encoder::Boolean { name, .. }
            | Encoder::Categorical { name, .. } => name,
        }
    }

    /// How many encoded columns it writes: one, or a categorical's categories and
    /// `(other)`.
    pub fn width(&self) -> usize {
        match self {
            Encoder::Categorical { categories, .. } => categories.len() + 1,
            _ => 1,
        }
    }

    /// Names of the encoded columns (`industry=Retail`, `industry=(other)`).
    pub fn encoded_names(&self) -> Vec<String> {
        match self {
            Encoder::Categorical { name, categories } => categories
                .iter()
                .map(String::as_str)
                .chain(std::iter::once(OTHER))
                .map(|c| format!("{name}={c}"))
                .collect(),
            other => vec![other.name().to_string()],
        }
    }

    /// What scoring uses for a missing value of this feature, in words.
    pub fn when_missing(&self) -> String {
        match self {
            Encoder::Numeric {
                keeps_missing: true,
                ..
            } => String::from(
                "kept missing: each tree sends it the way it learned for missing values",
            ),
            Encoder::Numeric { mean, .. } => format!("the training mean, {mean}"),
            Encoder::Boolean { fill, .. } => format!("the training majority, {}", *fill != 0.0),
            Encoder::Categorical { .. } => format!("the category {MISSING}"),
        }
    }

    /// Writes the encoded value(s) of `value` into `out`, which is [`width`](Self::width)
    /// long.
    pub fn encode_into(&self, value: RawValue<'_>, out: &mut [f64]) {
        match self {
            Encoder::Numeric {
                mean,
                std,
                scaled,
                keeps_missing,
                ..
            } => {
                let x = match value {
                    RawValue::Number(x) if x.is_finite() => x,
                    _ if *keeps_missing => f64::NAN,
                    _ => *mean,
                };
                out[0] = if *scaled { (x - mean) / std } else { x };
            }
            Encoder::Boolean { fill, .. } => {
                out[0] = match value {
                    RawValue::Number(x) if x.is_finite() => f64::from(u8::from(x != 0.0)),
                    _ => *fill,
                };
            }
            Encoder::Categorical { categories, .. } => {
                let category = match value {
                    RawValue::Text(text) => text,
                    RawValue::Missing | RawValue::Number(_) => MISSING,
                };
                let hot = categories
                    .iter()
                    .position(|c| c == category)
                    .unwrap_or(categories.len());
                out.fill(0.0);
                out[hot] = 1.0;
            }
        }
    }
}

/// One feature's values for a batch of rows, as scoring reads them from Arrow.
#[derive(Debug, Clone, Copy)]
pub enum FeatureArray<'a> {
    /// Numbers and booleans (as 0/1).
    Numbers(&'a Float64Array),
    /// Categories.
    Texts(&'a StringArray),
}

impl<'a> FeatureArray<'a> {
    /// Row `row`'s value.
    pub fn value(self, row: usize) -> RawValue<'a> {
        match self {
            FeatureArray::Numbers(array) if array.is_valid(row) => {
                RawValue::Number(array.value(row))
            }
            FeatureArray::Texts(array) if array.is_valid(row) => RawValue::Text(array.value(row)),
            _ => RawValue::Missing,
        }
    }
}

impl Preprocessor {
    /// Learns the encoders from the training columns.
    pub fn fit(
        features: &[(String, FeatureKind)],
        columns: &[RawColumn],
        numbers: NumericEncoding,
        max_categories: usize,
    ) -> Self {
        let encoders = features
            .iter()
            .zip(columns)
            .map(|((name, kind), column)| match (kind, column) {
                (FeatureKind::Categorical, RawColumn::Texts(values)) => Encoder::Categorical {
                    name: name.clone(),
                    categories: most_frequent(values, max_categories),
                },
                (FeatureKind::Boolean, RawColumn::Numbers(values)) => {
                    let (trues, known) =
                        values.iter().flatten().fold((0usize, 0usize), |(t, k), v| {
                            (t + usize::from(*v != 0.0), k + 1)
                        });
                    Encoder::Boolean {
                        name: name.clone(),
                        fill: f64::from(u8::from(trues * 2 > known)),
                    }
                }
                (_, column) => {
                    let values: Vec<f64> = match column {
                        RawColumn::Numbers(values) => values
                            .iter()
                            .flatten()
                            .copied()
                            .filter(|v| v.is_finite())
                            .collect(),
                        RawColumn::Texts(_) => Vec::new(),
                    };
                    let (mean, std) = mean_and_std(&values);
                    Encoder::Numeric {
                        name: name.clone(),
                        mean,
                        std,
                        scaled: numbers == NumericEncoding::Standardized,
                        keeps_missing: numbers == NumericEncoding::MissingKept,
                    }
                }
            })
            .collect();
        Self { encoders }
    }

    /// Names of the encoded columns, in order.
    pub fn encoded_names(&self) -> Vec<String> {
        self.encoders
            .iter()
            .flat_map(Encoder::encoded_names)
            .collect()
    }

    /// How many encoded columns a row has.
    pub fn width(&self) -> usize {
        self.encoders.iter().map(Encoder::width).sum()
    }

    /// Encodes row `row` of `columns` into `out` (cleared first).
    pub fn encode_row(&self, columns: &[RawColumn], row: usize, out: &mut Vec<f64>) {
        out.clear();
        for (encoder, column) in self.encoders.iter().zip(columns) {
            let value = match column {
                RawColumn::Numbers(values) => {
                    values[row].map_or(RawValue::Missing, RawValue::Number)
                }
                RawColumn::Texts(values) => values[row]
                    .as_deref()
                    .map_or(RawValue::Missing, RawValue::Text),
            };
            let at = out.len();
            out.resize(at + encoder.width(), 0.0);
            encoder.encode_into(value, &mut out[at..]);
        }
    }

    /// Encodes rows `rows` of `columns` into `out` (cleared first): row after row,
    /// [`width`](Self::width) values each, the same as [`encode_row`](Self::encode_row)
    /// gives, filled one feature at a time.
    pub fn encode_block(
        &self,
        columns: &[FeatureArray<'_>],
        rows: Range<usize>,
        out: &mut Vec<f64>,
    ) {
        let width = self.width();
        out.clear();
        out.resize(rows.len() * width, 0.0);
        let mut at = 0;
        for (encoder, column) in self.encoders.iter().zip(columns) {
            let encoded = encoder.width();
            for (row, values) in rows.clone().zip(out.chunks_exact_mut(width)) {
                encoder.encode_into(column.value(row), &mut values[at..at + encoded]);
            }
            at += encoded;
        }
    }
}

fn most_frequent(values: &[Option<String>], limit: usize) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for value in values {
        *counts
            .entry(value.as_deref().unwrap_or(MISSING))
            .or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(limit)
        .map(|(v, _)| v.to_string())
        .collect()
}

/// Mean and standard deviation (1 for constant or empty input, so scaling never divides
/// by zero).
pub fn mean_and_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 1.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let std = variance.sqrt();
    (mean, if std > 1e-12 { std } else { 1.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::models::dataset::Converted;

    #[test]
    fn encodes_imputes_and_buckets_unseen_categories() {
        let features = vec![
            ("revenue".to_string(), FeatureKind::Numeric),
            ("active".to_string(), FeatureKind::Boolean),
            ("industry".to_string(), FeatureKind::Categorical),
        ];
        let columns = vec![
            RawColumn::Numbers(vec![Some(1.0), Some(3.0), None]),
            RawColumn::Numbers(vec![Some(1.0), Some(1.0), Some(0.0)]),
            RawColumn::Texts(vec![Some("retail".into()), Some("retail".into()), None]),
        ];
        let pre = Preprocessor::fit(&features, &columns, NumericEncoding::Standardized, 10);
        assert_eq!(
            pre.encoded_names(),
            [
                "revenue",
                "active",
                "industry=retail",
                "industry=(missing)",
                "industry=(other)"
            ]
        );
        let mut row = Vec::new();
        pre.encode_row(&columns, 2, &mut row);
        assert_eq!(
            row,
            vec![0.0, 0.0, 0.0, 1.0, 0.0],
            "mean-imputed and scaled to 0"
        );
        let unseen = [
            RawColumn::Numbers(vec![Some(3.0)]),
            RawColumn::Numbers(vec![None]),
            RawColumn::Texts(vec![Some("energy".into())]),
        ];
        pre.encode_row(&unseen, 0, &mut row);
        assert_eq!(row, vec![1.0, 1.0, 0.0, 0.0, 1.0]);

        let kept = Preprocessor::fit(&features, &columns, NumericEncoding::MissingKept, 10);
        kept.encode_row(&columns, 2, &mut row);
        assert!(
            row[0].is_nan(),
            "a missing number stays missing for the trees: {row:?}"
        );
        kept.encode_row(&columns, 1, &mut row);
        assert_eq!(row[0], 3.0, "and is not scaled");
    }

    #[test]
    fn a_block_encodes_each_row_as_encoding_it_alone_does() {
        let features = vec![
            ("revenue".to_string(), FeatureKind::Numeric),
            ("active".to_string(), FeatureKind::Boolean),
            ("industry".to_string(), FeatureKind::Categorical),
        ];
        let columns = vec![
            RawColumn::Numbers(vec![Some(1.0), Some(3.0), None, Some(f64::NAN), Some(-2.5)]),
            RawColumn::Numbers(vec![Some(1.0), None, Some(0.0), Some(1.0), Some(0.0)]),
            RawColumn::Texts(vec![
                Some("retail".into()),
                Some("energy".into()),
                None,
                Some("retail".into()),
                Some("never seen".into()),
            ]),
        ];
        let arrays: Vec<Converted> = columns.iter().map(Converted::from).collect();
        let block_columns: Vec<FeatureArray<'_>> =
            arrays.iter().map(Converted::feature_array).collect();
        for numbers in [NumericEncoding::Standardized, NumericEncoding::MissingKept] {
            let pre = Preprocessor::fit(&features, &columns[..3], numbers, 2);
            let mut block = Vec::new();
            pre.encode_block(&block_columns, 1..5, &mut block);
            let mut row = Vec::new();
            for (at, encoded) in block.chunks(pre.width()).enumerate() {
                pre.encode_row(&columns, at + 1, &mut row);
                // NaN never equals itself: compare the bits.
                let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(encoded), bits(&row), "row {}", at + 1);
            }
            assert_eq!(block.len(), 4 * pre.width());
        }
    }
}
