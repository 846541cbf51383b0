//! The strategy classifier: from a service's attributes alone (memory, cores, requests per
//! second, latency-critical flag), whether its optimal plan uses one region or several, and
//! how many.
//!
//! The labels come from the optimizer's plans, solved with a replica floor of one so that
//! both classes occur. The forest is LightGBM's random-forest mode (`boosting = rf`: bagged
//! trees, each on 63% of the rows and 75% of the features, averaged), chosen over
//! smartcore's `RandomForestClassifier` because LightGBM is already built and loaded for
//! the latency model, its model text goes to the same `models` table, and it keeps the
//! build free of another machine-learning crate. Scored by k-fold cross-validation beside
//! the majority class.

use lightgbm3::{Booster, Dataset};
use serde::Serialize;

use crate::latency_model::{fold_rows, ModelError};

/// Names of the classifier's features, in column order.
pub const STRATEGY_FEATURES: [&str; 4] = [
    "memory_mb",
    "cores",
    "requests_per_second",
    "latency_critical",
];

/// Trees in each forest.
const TREES: u32 = 100;

/// The attributes of a service that the classifier reads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServiceAttributes {
    pub memory_mb: f64,
    pub cores: f64,
    /// Mean requests per second over all origins.
    pub requests_per_second: f64,
    pub latency_critical: bool,
}

impl ServiceAttributes {
    fn row(&self) -> [f64; 4] {
        [
            self.memory_mb,
            self.cores,
            self.requests_per_second,
            if self.latency_critical { 1.0 } else { 0.0 },
        ]
    }
}

/// Cross-validated quality of the one-or-several prediction, beside the majority class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyReport {
    pub services: usize,
    pub folds: usize,
    /// Services whose optimal plan uses one region, and several.
    pub single_region: usize,
    pub multi_region: usize,
    pub accuracy: f64,
    /// Of the services predicted to need several regions, the share that do.
    pub precision: f64,
    /// Of the services that need several regions, the share predicted so.
    pub recall: f64,
    /// `[[single predicted single, single predicted multi], [multi predicted single,
    /// multi predicted multi]]`.
    pub confusion: [[usize; 2]; 2],
    /// Accuracy of always predicting the more common class.
    pub majority_accuracy: f64,
    /// Accuracy of the predicted replica count, and of the most common count.
    pub replica_accuracy: f64,
    pub replica_majority_accuracy: f64,
}

/// The two forests: one-or-several, and the replica count.
pub struct StrategyModel {
    multi: Booster,
    replicas: Booster,
    /// Highest replica count among the labels; classes are 1 to this.
    pub max_replicas: usize,
}

fn forest_parameters(objective: &str, classes: usize, seed: u64) -> serde_json::Value {
    let mut parameters = serde_json::json!({
        "boosting": "rf",
        "objective": objective,
        "num_iterations": TREES,
        "num_leaves": 15,
        "min_data_in_leaf": 3,
        "bagging_fraction": 0.632,
        "bagging_freq": 1,
        "feature_fraction": 0.75,
        "seed": seed % (i32::MAX as u64),
        "deterministic": true,
        "force_col_wise": true,
        "num_threads": 1,
        "verbosity": -1,
    });
    // LightGBM's multiclass objective needs the count even for two classes.
    if objective == "multiclass" {
        parameters["num_class"] = serde_json::json!(classes);
    }
    parameters
}

fn fit(
    rows: &[[f64; 4]],
    labels: &[f32],
    objective: &str,
    classes: usize,
    seed: u64,
) -> Result<Booster, ModelError> {
    crate::lightgbm_log::route_to_tracing();
    let features: Vec<f64> = rows.iter().flatten().copied().collect();
    let mut dataset = Dataset::from_slice(&features, labels, 4, true)?;
    dataset.set_feature_names(&STRATEGY_FEATURES.map(String::from))?;
    Ok(Booster::train(
        dataset,
        &forest_parameters(objective, classes, seed),
    )?)
}

impl StrategyModel {
    /// Trains both forests on every service.
    pub fn fit(
        attributes: &[ServiceAttributes],
        replicas: &[usize],
        seed: u64,
    ) -> Result<StrategyModel, ModelError> {
        let rows: Vec<[f64; 4]> = attributes.iter().map(ServiceAttributes::row).collect();
        let max_replicas = replicas.iter().copied().max().unwrap_or(1).max(2);
        let multi_labels: Vec<f32> = replicas
            .iter()
            .map(|&r| if r > 1 { 1.0 } else { 0.0 })
            .collect();
        let count_labels: Vec<f32> = replicas.iter().map(|&r| (r - 1) as f32).collect();
        let multi = fit(&rows, &multi_labels, "binary", 2, seed)?;
        let counts = fit(&rows, &count_labels, "multiclass", max_replicas, seed)?;
        Ok(StrategyModel {
            multi,
            replicas: counts,
            max_replicas,
        })
    }

    /// Predicts whether the service needs several regions, with the forest's probability.
    pub fn predict_multi(&self, service: &ServiceAttributes) -> Result<(bool, f64), ModelError> {
        let row = service.row();
        let probability = self.multi.predict(&row, 4, true)?[0];
        Ok((probability >= 0.5, probability))
    }

    /// Predicts the replica count.
    pub fn predict_replicas(&self, service: &ServiceAttributes) -> Result<usize, ModelError> {
        let row = service.row();
        let probabilities = self.replicas.predict(&row, 4, true)?;
        let best = probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(k, _)| k);
        Ok(best + 1)
    }

    /// Both forests in LightGBM's text format.
    pub fn to_text(&self) -> Result<(String, String), ModelError> {
        Ok((self.multi.save_string()?, self.replicas.save_string()?))
    }

    pub fn from_text(multi: &str, replicas: &str) -> Result<StrategyModel, ModelError> {
        crate::lightgbm_log::route_to_tracing();
        let replicas = Booster::from_string(replicas)?;
        let max_replicas = usize::try_from(replicas.num_classes()).unwrap_or(2).max(2);
        Ok(StrategyModel {
            multi: Booster::from_string(multi)?,
            replicas,
            max_replicas,
        })
    }
}

/// Cross-validates the classifier over `folds` folds (seeded) and reports it beside the
/// majority class.
/// Rejects a fleet of too few services for `folds`-fold cross-validation.
pub fn check_services(services: usize, folds: usize) -> Result<(), ModelError> {
    if services < folds.max(2) {
        return Err(ModelError::TooFewRows {
            rows: services,
            needed: folds.max(2),
            purpose: format!("{folds}-fold cross-validation of the strategy classifier"),
            unit: "services",
            hint: "",
        });
    }
    Ok(())
}

pub fn cross_validate(
    attributes: &[ServiceAttributes],
    replicas: &[usize],
    folds: usize,
    seed: u64,
) -> Result<StrategyReport, ModelError> {
    let services = attributes.len();
    check_services(services, folds)?;
    let all: Vec<usize> = (0..services).collect();
    let parts = fold_rows(&all, folds, seed)?;
    let mut confusion = [[0usize; 2]; 2];
    let mut replica_hits = 0;
    for (k, held_out) in parts.iter().enumerate() {
        let fit_rows: Vec<usize> = parts
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != k)
            .flat_map(|(_, rows)| rows.iter().copied())
            .collect();
        let pick = |rows: &[usize]| -> (Vec<ServiceAttributes>, Vec<usize>) {
            (
                rows.iter().map(|&r| attributes[r]).collect(),
                rows.iter().map(|&r| replicas[r]).collect(),
            )
        };
        let (fit_attributes, fit_replicas) = pick(&fit_rows);
        let model = StrategyModel::fit(&fit_attributes, &fit_replicas, seed)?;
        for &row in held_out {
            let (multi, _) = model.predict_multi(&attributes[row])?;
            let actual = replicas[row] > 1;
            confusion[usize::from(actual)][usize::from(multi)] += 1;
            if model.predict_replicas(&attributes[row])? == replicas[row] {
                replica_hits += 1;
            }
        }
    }
    let multi_region = replicas.iter().filter(|&&r| r > 1).count();
    let single_region = services - multi_region;
    let mut counts = std::collections::BTreeMap::new();
    for &r in replicas {
        *counts.entry(r).or_insert(0usize) += 1;
    }
    let most_common = counts.values().copied().max().unwrap_or(0);
    let ratio = |a: usize, b: usize| if b > 0 { a as f64 / b as f64 } else { 0.0 };
    Ok(StrategyReport {
        services,
        folds,
        single_region,
        multi_region,
        accuracy: ratio(confusion[0][0] + confusion[1][1], services),
        precision: ratio(confusion[1][1], confusion[0][1] + confusion[1][1]),
        recall: ratio(confusion[1][1], confusion[1][0] + confusion[1][1]),
        confusion,
        majority_accuracy: ratio(single_region.max(multi_region), services),
        replica_accuracy: ratio(replica_hits, services),
        replica_majority_accuracy: ratio(most_common, services),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(memory_mb: f64, requests_per_second: f64, critical: bool) -> ServiceAttributes {
        ServiceAttributes {
            memory_mb,
            cores: 1.0,
            requests_per_second,
            latency_critical: critical,
        }
    }

    /// Builds services that follow a rule the forest can find: busy ones need three regions,
    /// quiet ones one.
    fn separable() -> (Vec<ServiceAttributes>, Vec<usize>) {
        let mut attributes = Vec::new();
        let mut replicas = Vec::new();
        for k in 0..60 {
            let busy = k % 2 == 0;
            let rps = if busy {
                50_000.0 + k as f64 * 100.0
            } else {
                1_000.0 + k as f64 * 10.0
            };
            attributes.push(service(512.0 + (k % 7) as f64 * 256.0, rps, k % 3 == 0));
            replicas.push(if busy { 3 } else { 1 });
        }
        (attributes, replicas)
    }

    #[test]
    fn forest_learns_a_separable_rule() {
        let (attributes, replicas) = separable();
        let report = cross_validate(&attributes, &replicas, 5, 1).unwrap();
        assert_eq!(report.single_region, 30);
        assert_eq!(report.multi_region, 30);
        assert_eq!(report.majority_accuracy, 0.5);
        assert!(report.accuracy >= 0.95, "{report:?}");
        assert!(report.replica_accuracy >= 0.95, "{report:?}");
        let total: usize = report.confusion.iter().flatten().sum();
        assert_eq!(total, 60);
    }

    #[test]
    fn saved_forests_answer_the_same() {
        let (attributes, replicas) = separable();
        let model = StrategyModel::fit(&attributes, &replicas, 1).unwrap();
        let (multi, replicas_text) = model.to_text().unwrap();
        let reloaded = StrategyModel::from_text(&multi, &replicas_text).unwrap();
        for service in &attributes {
            assert_eq!(
                model.predict_multi(service).unwrap(),
                reloaded.predict_multi(service).unwrap()
            );
            assert_eq!(
                model.predict_replicas(service).unwrap(),
                reloaded.predict_replicas(service).unwrap()
            );
        }
    }

    #[test]
    fn too_few_services_for_the_folds_is_an_error() {
        let (attributes, replicas) = separable();
        let error = cross_validate(&attributes[..3], &replicas[..3], 5, 1).unwrap_err();
        assert!(
            matches!(
                error,
                ModelError::TooFewRows {
                    rows: 3,
                    needed: 5,
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
