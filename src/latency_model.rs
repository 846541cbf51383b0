//! The latency model: gradient-boosted trees that predict a host's observed latency from
//! the features of [`crate::features`].
//!
//! Training is LightGBM's, through the `lightgbm3` crate. This module validates the
//! settings and the matrix before LightGBM sees them, splits the rows (seeded), runs k-fold
//! cross-validation, scores the model on the held-out rows beside a predict-the-mean
//! baseline and beside the world model's noise-free latency (the oracle), and saves and
//! reloads the model in LightGBM's text format, which Python LightGBM also reads.
//!
//! Non-finite values are rejected, not treated as missing: the store never produces them,
//! so one in the matrix means a broken import, and silently routing it down LightGBM's
//! missing-value branch would hide that. A constant feature is kept; LightGBM never splits
//! on it, so its gain is zero. A constant target trains a constant model, whose R² is
//! undefined and reported as absent.

use lightgbm3::{Booster, Dataset, ImportanceType};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::features::LatencyMatrix;

/// Settings of the trees, with the original study's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hyperparameters {
    /// Boosting rounds, one tree each.
    pub trees: u32,
    /// Deepest split level of a tree.
    pub max_depth: u32,
    /// Shrinkage applied to each tree's output, in (0, 1].
    pub learning_rate: f64,
    /// Maximum leaves per tree, up to `2^max_depth`.
    pub num_leaves: u32,
    /// Minimum training rows in a leaf.
    pub min_data_in_leaf: u32,
    /// Worker threads of LightGBM.
    pub threads: usize,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Hyperparameters {
            trees: 100,
            max_depth: 5,
            learning_rate: 0.1,
            num_leaves: 31,
            min_data_in_leaf: 20,
            threads: 2,
        }
    }
}

/// Everything `train` needs besides the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrainSettings {
    pub hyperparameters: Hyperparameters,
    /// Share of rows held out for the test metrics, in (0, 1).
    pub test_fraction: f64,
    /// Folds of the cross-validation over the training rows; 0 skips it.
    pub folds: usize,
    pub seed: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            hyperparameters: Hyperparameters::default(),
            test_fraction: 0.2,
            folds: 5,
            seed: 42,
        }
    }
}

/// Errors of the latency model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("--{setting} {value} is invalid: {rule}")]
    InvalidSetting {
        setting: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("{purpose} needs at least {needed} {unit}, and there are {rows}{hint}")]
    TooFewRows {
        rows: usize,
        needed: usize,
        purpose: String,
        /// Unit of `rows` and `needed`, such as `rows` or `services`.
        unit: &'static str,
        /// A line that starts with a newline and `hint:`, or nothing.
        hint: &'static str,
    },
    #[error("feature `{column}` of row {row} is {value}; every feature must be a finite number\nhint: find the row's source with `placewise train --export-matrix FILE`")]
    NonFiniteFeature {
        column: String,
        row: usize,
        value: f64,
    },
    #[error("the target of row {row} is {value}; every target must be a finite number")]
    NonFiniteTarget { row: usize, value: f64 },
    #[error("the model expects {expected} features ({names}), the rows have {found}")]
    FeatureMismatch {
        expected: usize,
        found: usize,
        names: String,
    },
    #[error("LightGBM failed: {0}")]
    LightGbm(String),
    #[error("training was interrupted; nothing was stored")]
    Interrupted,
}

impl From<lightgbm3::Error> for ModelError {
    fn from(error: lightgbm3::Error) -> Self {
        ModelError::LightGbm(error.to_string())
    }
}

impl Hyperparameters {
    /// Rejects settings LightGBM would misread or reject later, naming the value.
    pub fn validate(&self) -> Result<(), ModelError> {
        let invalid = |setting, value: String, rule| {
            Err(ModelError::InvalidSetting {
                setting,
                value,
                rule,
            })
        };
        if self.trees == 0 || self.trees > 100_000 {
            return invalid("trees", self.trees.to_string(), "use 1 to 100000");
        }
        if self.max_depth == 0 || self.max_depth > 30 {
            return invalid("max-depth", self.max_depth.to_string(), "use 1 to 30");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return invalid(
                "learning-rate",
                self.learning_rate.to_string(),
                "use a number in (0, 1]",
            );
        }
        let most_leaves = 1u64 << self.max_depth.min(31);
        if self.num_leaves < 2 || u64::from(self.num_leaves) > most_leaves.min(131_072) {
            return invalid(
                "num-leaves",
                self.num_leaves.to_string(),
                "use 2 to 2^max_depth (and at most 131072)",
            );
        }
        if self.min_data_in_leaf == 0 {
            return invalid("min-data-in-leaf", "0".to_string(), "use 1 or more");
        }
        if self.threads == 0 || self.threads > 1024 {
            return invalid("threads", self.threads.to_string(), "use 1 to 1024");
        }
        Ok(())
    }

    /// LightGBM's parameters. `deterministic` and `force_col_wise` make the same data,
    /// seed and thread count give the same model, byte for byte.
    fn lightgbm_parameters(&self, seed: u64) -> serde_json::Value {
        serde_json::json!({
            "objective": "regression",
            "num_iterations": self.trees,
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "num_threads": self.threads,
            "seed": seed % (i32::MAX as u64),
            "deterministic": true,
            "force_col_wise": true,
            "verbosity": -1,
        })
    }
}

impl TrainSettings {
    pub fn validate(&self) -> Result<(), ModelError> {
        self.hyperparameters.validate()?;
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(ModelError::InvalidSetting {
                setting: "test-fraction",
                value: self.test_fraction.to_string(),
                rule: "use a number strictly between 0 and 1",
            });
        }
        if self.folds == 1 || self.folds > 100 {
            return Err(ModelError::InvalidSetting {
                setting: "folds",
                value: self.folds.to_string(),
                rule: "use 0 (no cross-validation) or 2 to 100",
            });
        }
        Ok(())
    }
}

/// RMSE, MAE and R² of predictions, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    pub rmse: f64,
    pub mae: f64,
    /// Absent when the actual values are all equal, where R² is undefined.
    pub r2: Option<f64>,
}

impl Metrics {
    pub fn of(predicted: &[f64], actual: &[f64]) -> Metrics {
        assert_eq!(predicted.len(), actual.len(), "one prediction per value");
        let n = actual.len() as f64;
        let mean = actual.iter().sum::<f64>() / n;
        let (mut squares, mut absolute, mut total) = (0.0, 0.0, 0.0);
        for (p, a) in predicted.iter().zip(actual) {
            squares += (p - a) * (p - a);
            absolute += (p - a).abs();
            total += (a - mean) * (a - mean);
        }
        Metrics {
            rmse: (squares / n).sqrt(),
            mae: absolute / n,
            r2: (total > 0.0).then(|| 1.0 - squares / total),
        }
    }
}

/// The training and test rows of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Splits rows by group (the service): shuffles the distinct groups with a seeded ChaCha8
/// and holds out the rows of the first `round(groups x test_fraction)` of them, at least
/// one and never all. A service is thus on one side only, and the test rows are services
/// the model has never seen. Both parts are sorted.
pub fn split_rows(groups: &[i64], test_fraction: f64, seed: u64) -> Result<Split, ModelError> {
    let mut distinct: Vec<i64> = groups.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 2 {
        return Err(ModelError::TooFewRows {
            rows: distinct.len(),
            needed: 2,
            purpose: "a train/test split by service".to_string(),
            unit: "services",
            hint: "",
        });
    }
    distinct.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let held =
        ((distinct.len() as f64 * test_fraction).round() as usize).clamp(1, distinct.len() - 1);
    let mut test_groups = distinct[..held].to_vec();
    test_groups.sort_unstable();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (row, group) in groups.iter().enumerate() {
        if test_groups.binary_search(group).is_ok() {
            test.push(row);
        } else {
            train.push(row);
        }
    }
    Ok(Split { train, test })
}

/// Deals the groups of `rows` into `folds` folds (shuffled with `seed`), so that each
/// group's rows stay in one fold, and returns each fold's rows, sorted.
pub fn fold_groups(
    rows: &[usize],
    groups: &[i64],
    folds: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>, ModelError> {
    let mut distinct: Vec<i64> = rows.iter().map(|&r| groups[r]).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let parts = fold_rows(&(0..distinct.len()).collect::<Vec<_>>(), folds, seed)?;
    let mut fold_of = vec![0; distinct.len()];
    for (k, part) in parts.iter().enumerate() {
        for &g in part {
            fold_of[g] = k;
        }
    }
    let mut result = vec![Vec::new(); folds];
    for &row in rows {
        let g = distinct
            .binary_search(&groups[row])
            .expect("the group is listed");
        result[fold_of[g]].push(row);
    }
    Ok(result)
}

/// Mixed into the seed of the fold shuffle, so that folds do not follow the split's order.
const FOLD_STREAM: u64 = 0x666f_6c64;

/// Deals `rows` (shuffled with `seed`) into `folds` folds of sizes differing by at most one.
/// The folds come back sorted.
pub fn fold_rows(rows: &[usize], folds: usize, seed: u64) -> Result<Vec<Vec<usize>>, ModelError> {
    if rows.len() < folds {
        return Err(ModelError::TooFewRows {
            rows: rows.len(),
            needed: folds,
            purpose: format!("{folds}-fold cross-validation by service"),
            unit: "training services",
            hint: "\nhint: pass `--folds 0` to skip cross-validation, or fewer folds",
        });
    }
    let mut order = rows.to_vec();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ FOLD_STREAM));
    let mut result = vec![Vec::new(); folds];
    for (k, row) in order.into_iter().enumerate() {
        result[k % folds].push(row);
    }
    for fold in &mut result {
        fold.sort_unstable();
    }
    Ok(result)
}

/// Checks that every feature and target is finite, naming the first that is not.
pub fn check_finite(matrix: &LatencyMatrix) -> Result<(), ModelError> {
    check_features(&matrix.features, &matrix.feature_names)?;
    if let Some((row, &value)) = matrix
        .target_ms
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
    {
        return Err(ModelError::NonFiniteTarget { row, value });
    }
    Ok(())
}

fn check_features(features: &[f64], names: &[String]) -> Result<(), ModelError> {
    if names.is_empty() || !features.len().is_multiple_of(names.len()) {
        return Err(ModelError::FeatureMismatch {
            expected: names.len(),
            found: features.len(),
            names: names.join(", "),
        });
    }
    if let Some(position) = features.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::NonFiniteFeature {
            column: names[position % names.len()].clone(),
            row: position / names.len(),
            value: features[position],
        });
    }
    Ok(())
}

/// Batches of fewer rows than this are predicted on one thread.
const PARALLEL_PREDICTION_ROWS: usize = 10_000;

/// A trained latency model with the names of the features it reads, in order.
pub struct LatencyModel {
    booster: Booster,
    feature_names: Vec<String>,
}

impl std::fmt::Debug for LatencyModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyModel")
            .field("feature_names", &self.feature_names)
            .finish_non_exhaustive()
    }
}

impl LatencyModel {
    /// Trains on the rows `rows` of `matrix`.
    pub fn fit(
        matrix: &LatencyMatrix,
        rows: &[usize],
        hyperparameters: &Hyperparameters,
        seed: u64,
    ) -> Result<LatencyModel, ModelError> {
        hyperparameters.validate()?;
        if rows.is_empty() {
            return Err(ModelError::TooFewRows {
                rows: 0,
                needed: 1,
                purpose: "training".to_string(),
                unit: "rows",
                hint: "",
            });
        }
        let (features, target) = gather(matrix, rows);
        check_features(&features, &matrix.feature_names)?;
        if let Some((k, &value)) = target.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ModelError::NonFiniteTarget {
                row: rows[k],
                value: f64::from(value),
            });
        }
        crate::lightgbm_log::route_to_tracing();
        let columns = i32::try_from(matrix.columns()).expect("feature count fits in i32");
        let mut dataset = Dataset::from_slice(&features, &target, columns, true)?;
        dataset.set_feature_names(&matrix.feature_names)?;
        let booster = Booster::train(dataset, &hyperparameters.lightgbm_parameters(seed))?;
        Ok(LatencyModel {
            booster,
            feature_names: matrix.feature_names.clone(),
        })
    }

    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Predicts the latency in ms of each row of `features` (row-major, in the model's
    /// feature order).
    pub fn predict(&self, features: &[f64]) -> Result<Vec<f64>, ModelError> {
        check_features(features, &self.feature_names)?;
        if features.is_empty() {
            return Ok(Vec::new());
        }
        let columns = i32::try_from(self.feature_names.len()).expect("feature count fits in i32");
        // Threads cost more than they save on the small batches the optimizer predicts.
        let rows = features.len() / self.feature_names.len();
        if rows < PARALLEL_PREDICTION_ROWS {
            return Ok(self.booster.predict_with_params(
                features,
                columns,
                true,
                "num_threads=1",
            )?);
        }
        Ok(self.booster.predict(features, columns, true)?)
    }

    /// Predicts the rows `rows` of `matrix`, after checking that its features are the
    /// model's.
    pub fn predict_rows(
        &self,
        matrix: &LatencyMatrix,
        rows: &[usize],
    ) -> Result<Vec<f64>, ModelError> {
        if matrix.feature_names != self.feature_names {
            return Err(ModelError::FeatureMismatch {
                expected: self.feature_names.len(),
                found: matrix.columns(),
                names: self.feature_names.join(", "),
            });
        }
        let mut features = Vec::with_capacity(rows.len() * matrix.columns());
        for &row in rows {
            features.extend_from_slice(matrix.row(row));
        }
        self.predict(&features)
    }

    /// Total gain of the splits on each feature, in the model's feature order.
    pub fn importance_gain(&self) -> Result<Vec<f64>, ModelError> {
        Ok(self.booster.feature_importance(ImportanceType::Gain)?)
    }

    /// Returns the model in LightGBM's text format, feature names included.
    pub fn to_text(&self) -> Result<String, ModelError> {
        Ok(self.booster.save_string()?)
    }

    /// Loads a model written by [`LatencyModel::to_text`] or by any LightGBM.
    pub fn from_text(text: &str) -> Result<LatencyModel, ModelError> {
        crate::lightgbm_log::route_to_tracing();
        let booster = Booster::from_string(text)?;
        let feature_names = booster.feature_name()?;
        Ok(LatencyModel {
            booster,
            feature_names,
        })
    }
}

/// Copies the rows `rows` of the matrix into a feature block and a target LightGBM reads.
fn gather(matrix: &LatencyMatrix, rows: &[usize]) -> (Vec<f64>, Vec<f32>) {
    let mut features = Vec::with_capacity(rows.len() * matrix.columns());
    let mut target = Vec::with_capacity(rows.len());
    for &row in rows {
        features.extend_from_slice(matrix.row(row));
        target.push(matrix.target_ms[row] as f32);
    }
    (features, target)
}

/// One LightGBM fit of [`train`]: the rows it trains on and the rows it predicts.
struct PlannedFit {
    label: String,
    rows: Vec<usize>,
    held_out: Vec<usize>,
    /// Whether the model itself is kept, not only its predictions.
    keep: bool,
}

/// Result of one fit of [`train`]: its predictions of the held-out rows and, for the kept
/// model, the model's text and the gain of each feature.
struct FitOutcome {
    predicted: Vec<f64>,
    model: Option<(String, Vec<f64>)>,
}

/// The measurements of one training run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainReport {
    pub rows: usize,
    pub train_rows: usize,
    pub test_rows: usize,
    /// The model on the test rows.
    pub test: Metrics,
    /// The mean of the training targets, predicted for every test row.
    pub mean_baseline: Metrics,
    /// The world model's noise-free latency against the observed test targets: the error
    /// no model can beat on average. Absent when the matrix has no oracle.
    pub oracle: Option<Metrics>,
    /// One entry per fold of the cross-validation over the training rows.
    pub cross_validation: Vec<Metrics>,
    /// Gain of each feature, in the matrix's feature order.
    pub importance_gain: Vec<f64>,
    /// Test rows with their prediction, in the order of `split.test`.
    pub test_predictions: Vec<f64>,
    #[serde(skip)]
    pub split: Split,
}

/// Splits, cross-validates, trains on the training rows and scores on the test rows.
/// `on_fit` is called before each fit with the fit's label, for progress, and returns
/// `false` to stop.
///
/// The cross-validation fits and the final fit are independent, so they run at the same
/// time, as many as `threads` allows, each on `threads / fits` LightGBM threads (at least
/// one). With `deterministic` and `force_col_wise` the trees do not depend on the thread
/// count, so this changes the time and not the model.
pub fn train(
    matrix: &LatencyMatrix,
    settings: &TrainSettings,
    on_fit: impl Fn(&str) -> bool + Sync,
) -> Result<(LatencyModel, TrainReport), ModelError> {
    settings.validate()?;
    check_finite(matrix)?;
    let split = split_rows(&matrix.service_ids, settings.test_fraction, settings.seed)?;

    let mut fits = Vec::new();
    if settings.folds > 0 {
        let folds = fold_groups(
            &split.train,
            &matrix.service_ids,
            settings.folds,
            settings.seed,
        )?;
        for (k, held_out) in folds.iter().enumerate() {
            let rows: Vec<usize> = folds
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != k)
                .flat_map(|(_, rows)| rows.iter().copied())
                .collect();
            fits.push(PlannedFit {
                label: format!("fold {}/{}", k + 1, settings.folds),
                rows,
                held_out: held_out.clone(),
                keep: false,
            });
        }
    }
    fits.push(PlannedFit {
        label: "final model".to_string(),
        rows: split.train.clone(),
        held_out: split.test.clone(),
        keep: true,
    });

    let threads = settings.hyperparameters.threads;
    let concurrent = threads.min(fits.len());
    let hyperparameters = Hyperparameters {
        threads: threads / concurrent,
        ..settings.hyperparameters
    };
    // A booster cannot move between threads, so each fit returns its predictions and the
    // final fit its model's text and gains, which reload to the same model bit for bit.
    let fit = |planned: &PlannedFit| -> Result<FitOutcome, ModelError> {
        if !on_fit(&planned.label) {
            return Err(ModelError::Interrupted);
        }
        let model = LatencyModel::fit(matrix, &planned.rows, &hyperparameters, settings.seed)?;
        Ok(FitOutcome {
            predicted: model.predict_rows(matrix, &planned.held_out)?,
            model: if planned.keep {
                Some((model.to_text()?, model.importance_gain()?))
            } else {
                None
            },
        })
    };
    let mut outcomes: Vec<FitOutcome> = if concurrent > 1 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(concurrent)
            .build()
            .map_err(|error| ModelError::LightGbm(format!("cannot start threads: {error}")))?;
        pool.install(|| fits.par_iter().map(fit).collect::<Result<_, _>>())?
    } else {
        fits.iter().map(fit).collect::<Result<_, _>>()?
    };

    let last = outcomes.pop().expect("the final fit is planned last");
    let (text, importance_gain) = last.model.expect("the final fit keeps its model");
    let model = LatencyModel::from_text(&text)?;
    let predicted = last.predicted;
    let cross_validation = fits
        .iter()
        .zip(&outcomes)
        .map(|(planned, outcome)| {
            let actual: Vec<f64> = planned
                .held_out
                .iter()
                .map(|&r| matrix.target_ms[r])
                .collect();
            Metrics::of(&outcome.predicted, &actual)
        })
        .collect();
    let actual: Vec<f64> = split.test.iter().map(|&r| matrix.target_ms[r]).collect();
    let train_mean = split
        .train
        .iter()
        .map(|&r| matrix.target_ms[r])
        .sum::<f64>()
        / split.train.len() as f64;
    let oracle: Vec<f64> = split.test.iter().map(|&r| matrix.oracle_ms[r]).collect();
    let report = TrainReport {
        rows: matrix.rows(),
        train_rows: split.train.len(),
        test_rows: split.test.len(),
        test: Metrics::of(&predicted, &actual),
        mean_baseline: Metrics::of(&vec![train_mean; actual.len()], &actual),
        oracle: oracle
            .iter()
            .all(|v| v.is_finite())
            .then(|| Metrics::of(&oracle, &actual)),
        cross_validation,
        importance_gain,
        test_predictions: predicted,
        split,
    };
    Ok((model, report))
}
