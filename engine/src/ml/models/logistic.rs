//! Logistic regression fitted by L-BFGS: binary (one logit, the logistic function) and
//! multiclass (one score per class, softmax).
//!
//! The objective is the mean log loss plus `alpha / (2 × rows) × ‖w‖²` (the intercepts
//! are not penalized): the same minimizer as smartcore's `Σ loss + alpha/2 ‖w‖²`, so the
//! `alpha` of existing projects keeps its meaning. The loss and gradient are summed over
//! fixed blocks of rows on every core and the blocks added in order, so the model is the
//! same on any number of threads.

use serde::{Deserialize, Serialize};

use super::compiled::{CompiledModel, sigmoid, softmax_into};
use super::learner::Checked;
use super::parallel::map_in_order;

/// `logistic_regression`'s parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogisticParameters {
    /// L2 regularization strength (0: none).
    pub alpha: f64,
    /// Most L-BFGS iterations.
    pub max_iter: usize,
    /// Stop when no gradient component of the mean loss exceeds this.
    pub tolerance: f64,
}

impl Default for LogisticParameters {
    fn default() -> Self {
        Self {
            alpha: 0.0,
            max_iter: 500,
            tolerance: 1e-7,
        }
    }
}

impl Checked for LogisticParameters {
    fn problem(&self) -> Option<String> {
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return Some(format!("alpha must be 0 or more, not {}", self.alpha));
        }
        if self.max_iter == 0 {
            return Some(String::from("max_iter must be at least 1"));
        }
        if !(self.tolerance > 0.0 && self.tolerance.is_finite()) {
            return Some(format!("tolerance must be above 0, not {}", self.tolerance));
        }
        None
    }
}

/// Rows per block of the loss sum.
const BLOCK: usize = 4096;
/// Correction pairs L-BFGS keeps.
const MEMORY: usize = 10;

/// The rows a fit sees.
pub struct Problem<'a> {
    /// `rows × width` encoded values, row-major.
    pub values: &'a [f64],
    /// Encoded width.
    pub width: usize,
    /// Each row's class index.
    pub classes: &'a [i32],
    /// Classes (2 for binary).
    pub class_count: usize,
}

impl Problem<'_> {
    fn rows(&self) -> usize {
        self.classes.len()
    }

    /// Scores per row: 1 for binary, one per class otherwise.
    fn scores(&self) -> usize {
        if self.class_count <= 2 {
            1
        } else {
            self.class_count
        }
    }

    /// Mean loss and its gradient at `point` (per score: `width` weights, then the intercept).
    fn loss_and_gradient(&self, point: &[f64], alpha: f64, threads: usize) -> (f64, Vec<f64>) {
        let rows = self.rows();
        let blocks = rows.div_ceil(BLOCK).max(1);
        let partials = map_in_order(blocks, threads, |block| self.block(point, block));
        let mut loss = 0.0;
        let mut gradient = vec![0.0; point.len()];
        for (block_loss, block_gradient) in partials {
            loss += block_loss;
            for (g, b) in gradient.iter_mut().zip(&block_gradient) {
                *g += b;
            }
        }
        let n = rows.max(1) as f64;
        loss /= n;
        gradient.iter_mut().for_each(|g| *g /= n);
        let stride = self.width + 1;
        for (at, (g, w)) in gradient.iter_mut().zip(point).enumerate() {
            if at % stride != self.width {
                loss += alpha / (2.0 * n) * w * w;
                *g += alpha / n * w;
            }
        }
        (loss, gradient)
    }

    /// Summed loss and gradient of one block of rows.
    fn block(&self, point: &[f64], block: usize) -> (f64, Vec<f64>) {
        let width = self.width;
        let stride = width + 1;
        let scores = self.scores();
        let mut gradient = vec![0.0; point.len()];
        let mut loss = 0.0;
        let mut z = vec![0.0; scores];
        let mut p = vec![0.0; scores];
        let end = ((block + 1) * BLOCK).min(self.rows());
        for row in block * BLOCK..end {
            let x = &self.values[row * width..(row + 1) * width];
            for (k, zk) in z.iter_mut().enumerate() {
                let w = &point[k * stride..(k + 1) * stride];
                *zk = w[width] + w[..width].iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
            }
            let class = self.classes[row] as usize;
            if scores == 1 {
                let y = f64::from(u8::from(class == 1));
                // ln(1 + e^z) − y·z, computed without overflow.
                loss += z[0].max(0.0) + (-z[0].abs()).exp().ln_1p() - y * z[0];
                p[0] = sigmoid(z[0]) - y;
            } else {
                softmax_into(&z, &mut p);
                loss -= p[class].max(1e-300).ln();
                p[class] -= 1.0;
            }
            for (k, residual) in p.iter().enumerate() {
                let g = &mut gradient[k * stride..(k + 1) * stride];
                for (gj, xj) in g[..width].iter_mut().zip(x) {
                    *gj += residual * xj;
                }
                g[width] += residual;
            }
        }
        (loss, gradient)
    }
}

/// Fits logistic regression: [`CompiledModel::Linear`] (logistic) for two classes,
/// [`CompiledModel::Softmax`] for more.
pub fn fit(problem: &Problem<'_>, params: &LogisticParameters, threads: usize) -> CompiledModel {
    let stride = problem.width + 1;
    let mut point = vec![0.0; problem.scores() * stride];
    minimize(
        |at| problem.loss_and_gradient(at, params.alpha, threads),
        &mut point,
        params.max_iter,
        params.tolerance,
    );
    let width = problem.width;
    if problem.scores() == 1 {
        CompiledModel::Linear {
            weights: point[..width].to_vec(),
            intercept: point[width],
            logistic: true,
        }
    } else {
        CompiledModel::Softmax {
            weights: point.chunks(stride).map(|w| w[..width].to_vec()).collect(),
            intercepts: point.chunks(stride).map(|w| w[width]).collect(),
        }
    }
}

/// Minimizes `objective` (value and gradient) from `point` with L-BFGS and a backtracking
/// line search; stops when no gradient component exceeds `tolerance`, the value stops
/// falling, or after `max_iter` iterations.
fn minimize(
    objective: impl Fn(&[f64]) -> (f64, Vec<f64>),
    point: &mut [f64],
    max_iter: usize,
    tolerance: f64,
) {
    let (mut value, mut gradient) = objective(point);
    let mut pairs: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    for iteration in 0..max_iter {
        if gradient.iter().all(|g| g.abs() <= tolerance) {
            return;
        }
        let mut direction = two_loop(&gradient, &pairs);
        let mut slope = dot(&direction, &gradient);
        if slope >= 0.0 {
            // Not a descent direction: start over from steepest descent.
            pairs.clear();
            direction = gradient.iter().map(|g| -g).collect();
            slope = dot(&direction, &gradient);
        }
        let mut step = if iteration == 0 && pairs.is_empty() {
            1.0 / norm(&gradient).max(1e-12)
        } else {
            1.0
        };
        let mut accepted = None;
        for _ in 0..40 {
            let candidate: Vec<f64> = point
                .iter()
                .zip(&direction)
                .map(|(x, d)| x + step * d)
                .collect();
            let (candidate_value, candidate_gradient) = objective(&candidate);
            if candidate_value <= value + 1e-4 * step * slope {
                accepted = Some((candidate, candidate_value, candidate_gradient));
                break;
            }
            step /= 2.0;
        }
        let Some((next, next_value, next_gradient)) = accepted else {
            return;
        };
        let s: Vec<f64> = next.iter().zip(point.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = next_gradient
            .iter()
            .zip(&gradient)
            .map(|(a, b)| a - b)
            .collect();
        let curvature = dot(&s, &y);
        if curvature > 1e-12 {
            if pairs.len() == MEMORY {
                pairs.remove(0);
            }
            pairs.push((s, y, 1.0 / curvature));
        }
        let falling = value - next_value;
        point.copy_from_slice(&next);
        value = next_value;
        gradient = next_gradient;
        if falling.abs() <= 1e-15 * value.abs().max(1.0) {
            return;
        }
    }
}

/// The L-BFGS direction: minus the inverse-hessian estimate times the gradient.
fn two_loop(gradient: &[f64], pairs: &[(Vec<f64>, Vec<f64>, f64)]) -> Vec<f64> {
    let mut q = gradient.to_vec();
    let mut alphas = Vec::with_capacity(pairs.len());
    for (s, y, rho) in pairs.iter().rev() {
        let a = rho * dot(s, &q);
        q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
        alphas.push(a);
    }
    if let Some((s, y, _)) = pairs.last() {
        let gamma = dot(s, y) / dot(y, y).max(1e-300);
        q.iter_mut().for_each(|qi| *qi *= gamma);
    }
    for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
        let b = rho * dot(y, &q);
        q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
    }
    q.iter_mut().for_each(|qi| *qi = -*qi);
    q
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows from a known logistic model: the fit recovers its weights.
    #[test]
    fn recovers_the_weights_of_a_known_binary_model() {
        let mut rng = crate::ml::models::trees::rng::Rng::new(3, 0);
        let (rows, width) = (20_000, 3);
        let truth = [1.5, -2.0, 0.5];
        let mut values = Vec::new();
        let mut classes = Vec::new();
        for _ in 0..rows {
            let x: Vec<f64> = (0..width).map(|_| rng.unit() * 4.0 - 2.0).collect();
            let z = 0.3 + truth.iter().zip(&x).map(|(w, v)| w * v).sum::<f64>();
            classes.push(i32::from(rng.unit() < sigmoid(z)));
            values.extend(x);
        }
        let problem = Problem {
            values: &values,
            width,
            classes: &classes,
            class_count: 2,
        };
        let fitted = fit(&problem, &LogisticParameters::default(), 2);
        let CompiledModel::Linear {
            weights, intercept, ..
        } = &fitted
        else {
            panic!("binary logistic regression compiles to a linear model: {fitted:?}");
        };
        for (got, want) in weights.iter().zip(truth) {
            assert!((got - want).abs() < 0.1, "{weights:?} vs {truth:?}");
        }
        assert!((intercept - 0.3).abs() < 0.1, "{intercept}");
        // The same model on one thread as on two.
        assert_eq!(fit(&problem, &LogisticParameters::default(), 1), fitted);
    }

    #[test]
    fn multiclass_fits_softmax_scores_that_pick_the_right_class() {
        // Class = which of three bands x falls in.
        let values: Vec<f64> = (0..3000).map(|i| f64::from(i % 300) / 100.0).collect();
        let classes: Vec<i32> = values.iter().map(|x| (*x as i32).min(2)).collect();
        let problem = Problem {
            values: &values,
            width: 1,
            classes: &classes,
            class_count: 3,
        };
        let model = fit(&problem, &LogisticParameters::default(), 2);
        let correct = values
            .iter()
            .zip(&classes)
            .filter(|(x, c)| model.score(&[**x]).value as i32 == **c)
            .count();
        assert!(correct > 2700, "{correct} of 3000");
    }
}
