//! The latency model on the default fleet: close to the oracle, equal to the reference
//! libraries on the same matrix and split, reproducible, and clear about bad matrices.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use placewise::features::{self, LatencyMatrix};
use placewise::latency_model::{
    self, Hyperparameters, LatencyModel, ModelError, TrainReport, TrainSettings,
};
use rusqlite::{Connection, OpenFlags};

struct Trained {
    matrix: LatencyMatrix,
    report: TrainReport,
    model_text: String,
}

/// Trains once, with the defaults of `placewise train`, on one default fleet shared by the
/// tests of this file.
fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = common::generate(&directory, "latency-model-fleet.db", &[]);
        let connection = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the fleet opens");
        let matrix = features::latency_matrix(&connection).expect("the matrix builds");
        let (model, report) =
            latency_model::train(&matrix, &TrainSettings::default(), |_| true).expect("trains");
        let model_text = model.to_text().expect("the model saves");
        Trained {
            matrix,
            report,
            model_text,
        }
    })
}

#[test]
fn default_fleet_model_comes_close_to_the_oracle() {
    let report = &trained().report;
    let oracle = report.oracle.expect("the generator stores the oracle");
    let ratio = report.test.rmse / oracle.rmse;
    assert!(ratio <= 1.15, "test RMSE / oracle RMSE = {ratio:.3}");
    // The ratio cannot fall far below 1 on 7,000 rows: the oracle is the truth.
    assert!(ratio > 0.97, "test RMSE / oracle RMSE = {ratio:.3}");
    let r2 = report.test.r2.unwrap();
    assert!(r2 >= 0.8, "R² {r2}");
    assert!(report.test.rmse < report.mean_baseline.rmse / 3.0);
    assert_eq!(report.cross_validation.len(), 5);
    for fold in &report.cross_validation {
        assert!(fold.rmse < 1.3 * oracle.rmse, "fold RMSE {}", fold.rmse);
    }
}

#[derive(serde::Deserialize)]
struct Reference {
    matrix_rows: usize,
    test_rows: usize,
    features: Vec<String>,
    oracle_test_rmse: f64,
    lightgbm: Library,
    xgboost_hist: Library,
}

#[derive(serde::Deserialize)]
struct Library {
    test_rmse: f64,
}

/// The fixture was made by `scripts/reference/make_latency_fixture.sh` from the matrix that
/// `placewise train --export-matrix` writes for the default fleet.
#[test]
fn rmse_matches_python_lightgbm_and_xgboost() {
    let reference: Reference =
        serde_json::from_str(include_str!("fixtures/latency_reference.json"))
            .expect("the fixture parses");
    let trained = trained();
    let report = &trained.report;
    // Same rows, features and split as the fixture's, or the comparison means nothing.
    assert_eq!(reference.matrix_rows, report.rows);
    assert_eq!(reference.test_rows, report.test_rows);
    assert_eq!(reference.features, trained.matrix.feature_names);
    let oracle = report.oracle.unwrap().rmse;
    assert!(
        (oracle - reference.oracle_test_rmse).abs() <= 1e-9 * oracle,
        "oracle RMSE {oracle} vs the fixture's {}",
        reference.oracle_test_rmse
    );
    for (library, rmse) in [
        ("Python LightGBM", reference.lightgbm.test_rmse),
        ("XGBoost hist", reference.xgboost_hist.test_rmse),
    ] {
        let relative = (report.test.rmse - rmse).abs() / rmse;
        assert!(
            relative <= 0.03,
            "RMSE {} vs {library} {rmse}: {:.2}% apart",
            report.test.rmse,
            100.0 * relative
        );
    }
}

#[test]
fn saved_model_predicts_bit_for_bit() {
    let trained = trained();
    let reloaded = LatencyModel::from_text(&trained.model_text).unwrap();
    assert_eq!(reloaded.feature_names(), trained.matrix.feature_names);
    let predicted = reloaded
        .predict_rows(&trained.matrix, &trained.report.split.test)
        .unwrap();
    assert_eq!(predicted.len(), trained.report.test_predictions.len());
    for (again, first) in predicted.iter().zip(&trained.report.test_predictions) {
        assert_eq!(again.to_bits(), first.to_bits());
    }
    // A reloaded model saves to the same text.
    assert_eq!(reloaded.to_text().unwrap(), trained.model_text);
}

#[test]
fn same_seed_trains_the_same_model() {
    let trained = trained();
    // `train` runs its six fits two at a time, one LightGBM thread each.
    let hyperparameters = Hyperparameters {
        threads: 1,
        ..Hyperparameters::default()
    };
    let split = &trained.report.split;
    let again = LatencyModel::fit(&trained.matrix, &split.train, &hyperparameters, 42).unwrap();
    assert!(
        again.to_text().unwrap() == trained.model_text,
        "the model text differs"
    );
}

#[test]
fn thread_count_leaves_trees_unchanged() {
    let trained = trained();
    let split = &trained.report.split;
    let text = |threads| {
        let hyperparameters = Hyperparameters {
            threads,
            ..Hyperparameters::default()
        };
        let model = LatencyModel::fit(&trained.matrix, &split.train, &hyperparameters, 42);
        let text = model.unwrap().to_text().unwrap();
        // The parameters at the end of the text record the thread count itself.
        text.lines()
            .filter(|line| !line.starts_with("[num_threads:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        text(1) == text(2),
        "the trees differ between 1 and 2 threads"
    );
    assert!(
        text(1) == text(3),
        "the trees differ between 1 and 3 threads"
    );
}

/// A small matrix of `rows` rows: feature `a` carries the signal, `b` is constant.
fn small_matrix(rows: usize) -> LatencyMatrix {
    let mut features = Vec::new();
    let mut target = Vec::new();
    for row in 0..rows {
        let a = row as f64;
        features.extend_from_slice(&[a, 7.0]);
        target.push(if row % 2 == 0 { 10.0 } else { 50.0 } + a * 0.1);
    }
    LatencyMatrix {
        feature_names: vec!["a".to_string(), "b".to_string()],
        features,
        oracle_ms: target.clone(),
        target_ms: target,
        service_ids: (0..rows as i64).collect(),
        dates: vec!["2025-01-06".to_string(); rows],
        regions: vec!["us-east-1".to_string(); rows],
    }
}

fn small_settings() -> TrainSettings {
    TrainSettings {
        hyperparameters: Hyperparameters {
            min_data_in_leaf: 2,
            ..Hyperparameters::default()
        },
        folds: 2,
        ..TrainSettings::default()
    }
}

#[test]
fn constant_feature_gets_no_gain() {
    let matrix = small_matrix(200);
    let (_, report) = latency_model::train(&matrix, &small_settings(), |_| true).unwrap();
    assert_eq!(report.importance_gain[1], 0.0);
    assert!(report.importance_gain[0] > 0.0);
}

#[test]
fn constant_target_trains_a_constant_model_without_r2() {
    let mut matrix = small_matrix(100);
    matrix.target_ms = vec![25.0; 100];
    matrix.oracle_ms = vec![25.0; 100];
    let (model, report) = latency_model::train(&matrix, &small_settings(), |_| true).unwrap();
    assert_eq!(report.test.r2, None);
    assert!(report.test.rmse < 1e-9, "RMSE {}", report.test.rmse);
    let predicted = model.predict(&[1.0, 7.0, 99.0, 7.0]).unwrap();
    assert!(
        predicted.iter().all(|p| (p - 25.0).abs() < 1e-9),
        "{predicted:?}"
    );
}

#[test]
fn non_finite_feature_is_rejected_with_its_column_and_row() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut matrix = small_matrix(50);
        matrix.features[2 * 17 + 1] = bad;
        let error = latency_model::train(&matrix, &small_settings(), |_| true).unwrap_err();
        match &error {
            ModelError::NonFiniteFeature { column, row, .. } => {
                assert_eq!((column.as_str(), *row), ("b", 17));
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(
            error.to_string().contains("feature `b` of row 17"),
            "{error}"
        );
    }
}

#[test]
fn non_finite_target_is_rejected_with_its_row() {
    let mut matrix = small_matrix(50);
    matrix.target_ms[3] = f64::NAN;
    let error = latency_model::train(&matrix, &small_settings(), |_| true).unwrap_err();
    assert!(
        matches!(error, ModelError::NonFiniteTarget { row: 3, .. }),
        "{error:?}"
    );
}

#[test]
fn prediction_rejects_what_training_rejects() {
    let matrix = small_matrix(100);
    let (model, _) = latency_model::train(&matrix, &small_settings(), |_| true).unwrap();
    let error = model.predict(&[1.0, f64::NAN]).unwrap_err();
    assert!(
        matches!(error, ModelError::NonFiniteFeature { row: 0, .. }),
        "{error:?}"
    );
    let error = model.predict(&[1.0, 2.0, 3.0]).unwrap_err();
    assert!(
        matches!(error, ModelError::FeatureMismatch { expected: 2, .. }),
        "{error:?}"
    );
}

#[test]
fn fewer_rows_than_folds_is_an_error_naming_both() {
    let matrix = small_matrix(6);
    let settings = TrainSettings {
        folds: 10,
        ..small_settings()
    };
    let error = latency_model::train(&matrix, &settings, |_| true).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::TooFewRows {
                rows: 5,
                needed: 10,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("10-fold"), "{error}");
}

#[test]
fn single_row_cannot_be_split() {
    let matrix = small_matrix(1);
    let error = latency_model::train(&matrix, &small_settings(), |_| true).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::TooFewRows {
                rows: 1,
                needed: 2,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn invalid_hyperparameters_name_the_value() {
    let cases = [
        (
            Hyperparameters {
                trees: 0,
                ..Default::default()
            },
            "--trees 0",
        ),
        (
            Hyperparameters {
                learning_rate: -0.1,
                ..Default::default()
            },
            "--learning-rate -0.1",
        ),
        (
            Hyperparameters {
                learning_rate: f64::NAN,
                ..Default::default()
            },
            "--learning-rate NaN",
        ),
        (
            Hyperparameters {
                max_depth: 2,
                num_leaves: 31,
                ..Default::default()
            },
            "--num-leaves 31",
        ),
        (
            Hyperparameters {
                threads: 0,
                ..Default::default()
            },
            "--threads 0",
        ),
    ];
    for (hyperparameters, expected) in cases {
        let error = hyperparameters.validate().unwrap_err().to_string();
        assert!(
            error.starts_with(expected),
            "{error} does not start with {expected}"
        );
    }
}
