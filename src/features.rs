//! The training matrix of the latency model, built from the store.
//!
//! SQL computes the aggregates: requests per service and origin region (mean, standard
//! deviation, maximum, coefficient of variation), RTT per region pair (mean, standard
//! deviation), daily demand and daily RTT. This module joins them with the placement
//! history into one row per (service, region, day). It adds what latency-based routing
//! implies on that day: the RTT of the users routed to the host, and the RTT and latency of
//! each dependency's nearest host. The bundled SQLite has no `sqrt`, so standard
//! deviations are finished here from SQL's sums of squares.
//!
//! Nothing here reads the `world_*` tables except [`LatencyMatrix::oracle_ms`], the world
//! model's noise-free latency for the same rows, which is used only to score models.

use std::collections::HashMap;

use rusqlite::Connection;

/// Names of the latency model's features, in column order.
pub const FEATURE_NAMES: [&str; 20] = [
    "memory_mb",
    "cores",
    "latency_critical",
    "dependency_count",
    "local_requests_mean",
    "local_requests_std",
    "local_requests_max",
    "local_requests_cv",
    "avg_outbound_rtt_ms",
    "instances",
    "routed_requests_per_second",
    "cpu_utilization",
    "peak_cpu_utilization",
    "requests_per_core",
    "queueing_stretch",
    "routed_user_rtt_ms",
    "dependency_max_rtt_ms",
    "dependency_mean_rtt_ms",
    "dependency_critical_path_ms",
    "dependency_max_utilization",
];

/// Errors in building the matrix.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("SQLite failed while building features")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database has no placement history\nhint: run `placewise generate` first")]
    NoHistory,
    #[error("placement of service {service_id} on {date} names region `{region}`, which has no RTT sample that day")]
    MissingRtt {
        service_id: i64,
        date: String,
        region: String,
    },
}

/// One row per (service, region, day) of the placement history.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyMatrix {
    pub feature_names: Vec<String>,
    /// Row-major `rows x feature_names.len()`.
    pub features: Vec<f64>,
    /// Observed latency in ms.
    pub target_ms: Vec<f64>,
    /// The world model's noise-free latency in ms for the same rows.
    pub oracle_ms: Vec<f64>,
    /// Service id of each row, the unit of the train/test split.
    pub service_ids: Vec<i64>,
    pub dates: Vec<String>,
    pub regions: Vec<String>,
}

impl LatencyMatrix {
    pub fn rows(&self) -> usize {
        self.target_ms.len()
    }

    pub fn columns(&self) -> usize {
        self.feature_names.len()
    }

    pub fn row(&self, index: usize) -> &[f64] {
        &self.features[index * self.columns()..(index + 1) * self.columns()]
    }
}

struct Service {
    memory_mb: f64,
    cores: f64,
    critical: f64,
    dependencies: Vec<i64>,
}

struct Placement {
    service_id: i64,
    date: String,
    region: usize,
    instances: f64,
    rps: f64,
    utilization: f64,
    latency_ms: f64,
    oracle_ms: f64,
    peak_utilization: f64,
    /// Days since 1970-01-01 of `date`.
    day: i64,
}

/// Request statistics of one (service, origin region).
#[derive(Clone, Copy, Default)]
struct RequestStats {
    mean: f64,
    std: f64,
    max: f64,
}

/// Everything the rows are assembled from, indexed for lookups.
struct Inputs {
    regions: Vec<String>,
    services: HashMap<i64, Service>,
    request_stats: HashMap<(i64, usize), RequestStats>,
    /// Mean RTT of each region to the other regions, over all days.
    avg_outbound_rtt: Vec<f64>,
    /// Daily mean demand per (service, origin, date).
    daily_demand: HashMap<(i64, usize, String), f64>,
    /// Hourly demand per (service, origin, day since 1970-01-01), in requests per second.
    hourly_demand: HashMap<(i64, usize, i64), [f64; 24]>,
    /// Daily RTT matrix per date, row-major.
    daily_rtt: HashMap<String, Vec<f64>>,
    placements: Vec<Placement>,
}

/// Builds the latency matrix from a placewise database.
pub fn latency_matrix(connection: &Connection) -> Result<LatencyMatrix, FeatureError> {
    let inputs = load_inputs(connection)?;
    if inputs.placements.is_empty() {
        return Err(FeatureError::NoHistory);
    }
    assemble(&inputs)
}

fn load_inputs(connection: &Connection) -> Result<Inputs, FeatureError> {
    let regions: Vec<String> = connection
        .prepare("SELECT region FROM regions ORDER BY rowid")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let region_index: HashMap<String, usize> = regions
        .iter()
        .enumerate()
        .map(|(i, r)| (r.clone(), i))
        .collect();
    let index_of = |code: &str| region_index.get(code).copied();

    let mut services = HashMap::new();
    let mut statement = connection.prepare(
        "SELECT service_id, memory_mb, cores, latency_critical FROM services ORDER BY service_id",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let service = Service {
            memory_mb: row.get(1)?,
            cores: row.get(2)?,
            critical: row.get(3)?,
            dependencies: Vec::new(),
        };
        services.insert(id, service);
    }
    let mut statement = connection
        .prepare("SELECT service_id, depends_on_id FROM service_dependencies ORDER BY 1, 2")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (caller, callee): (i64, i64) = (row.get(0)?, row.get(1)?);
        if let Some(service) = services.get_mut(&caller) {
            service.dependencies.push(callee);
        }
    }

    // One pass over the traffic gives both the daily demand and, summed over days, the
    // request statistics per (service, origin).
    let mut request_stats = HashMap::new();
    let mut daily_demand = HashMap::new();
    let mut sums: HashMap<(i64, usize), (f64, f64, f64, f64)> = HashMap::new();
    let mut statement = connection.prepare(
        "SELECT service_id, origin_region, date(timestamp, 'unixepoch'), COUNT(*),
                SUM(requests_per_second), SUM(requests_per_second * requests_per_second),
                MAX(requests_per_second)
         FROM traffic_patterns GROUP BY service_id, origin_region, timestamp / 86400",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let origin: String = row.get(1)?;
        let Some(origin) = index_of(&origin) else {
            continue;
        };
        let service_id: i64 = row.get(0)?;
        let (count, sum, square, max): (f64, f64, f64, f64) =
            (row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?);
        daily_demand.insert((service_id, origin, row.get(2)?), sum / count);
        let entry = sums
            .entry((service_id, origin))
            .or_insert((0.0, 0.0, 0.0, 0.0));
        entry.0 += count;
        entry.1 += sum;
        entry.2 += square;
        entry.3 = entry.3.max(max);
    }
    for (key, (count, sum, square, max)) in sums {
        let mean = sum / count;
        let std = (square / count - mean * mean).max(0.0).sqrt();
        request_stats.insert(key, RequestStats { mean, std, max });
    }

    let n = regions.len();
    let mut pair_mean = vec![0.0; n * n];
    let mut statement = connection.prepare(
        "SELECT source_region, target_region, AVG(rtt_ms) FROM regional_latency
         GROUP BY source_region, target_region",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (source, target): (String, String) = (row.get(0)?, row.get(1)?);
        if let (Some(i), Some(j)) = (index_of(&source), index_of(&target)) {
            pair_mean[i * n + j] = row.get(2)?;
        }
    }
    let avg_outbound_rtt = (0..n)
        .map(|i| {
            let others: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| pair_mean[i * n + j])
                .collect();
            if others.is_empty() {
                0.0
            } else {
                others.iter().sum::<f64>() / others.len() as f64
            }
        })
        .collect();

    let mut hourly_demand: HashMap<(i64, usize, i64), [f64; 24]> = HashMap::new();
    let mut statement = connection.prepare(
        "SELECT service_id, origin_region, timestamp, requests_per_second FROM traffic_patterns",
    )?;
    let mut rows = statement.query([])?;
    let mut last_origin = (String::new(), None);
    while let Some(row) = rows.next()? {
        let origin = row.get_ref(1)?.as_str().unwrap_or_default();
        if origin != last_origin.0 {
            last_origin = (origin.to_string(), index_of(origin));
        }
        let Some(origin) = last_origin.1 else {
            continue;
        };
        let timestamp: i64 = row.get(2)?;
        let hours = hourly_demand
            .entry((row.get(0)?, origin, timestamp.div_euclid(86_400)))
            .or_insert([0.0; 24]);
        hours[(timestamp.rem_euclid(86_400) / 3600) as usize] = row.get(3)?;
    }

    let mut daily_rtt: HashMap<String, Vec<f64>> = HashMap::new();
    let mut statement = connection
        .prepare("SELECT date, source_region, target_region, rtt_ms FROM regional_latency")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (source, target): (String, String) = (row.get(1)?, row.get(2)?);
        if let (Some(i), Some(j)) = (index_of(&source), index_of(&target)) {
            let matrix = daily_rtt
                .entry(row.get(0)?)
                .or_insert_with(|| vec![f64::NAN; n * n]);
            matrix[i * n + j] = row.get(3)?;
        }
    }

    let mut placements = Vec::new();
    let mut statement = connection.prepare(
        "SELECT p.service_id, p.date, p.region, p.instances, p.requests_per_second,
                p.cpu_utilization, p.latency_ms, e.expected_latency_ms, p.peak_cpu_utilization,
                CAST(strftime('%s', p.date) AS INTEGER) / 86400
         FROM service_placement p
         LEFT JOIN world_placement_expected e USING (service_id, date, region)
         ORDER BY p.service_id, p.date, p.region",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let region: String = row.get(2)?;
        let Some(region) = index_of(&region) else {
            continue;
        };
        placements.push(Placement {
            service_id: row.get(0)?,
            date: row.get(1)?,
            region,
            instances: row.get(3)?,
            rps: row.get(4)?,
            utilization: row.get(5)?,
            latency_ms: row.get(6)?,
            oracle_ms: row.get::<_, Option<f64>>(7)?.unwrap_or(f64::NAN),
            peak_utilization: row.get(8)?,
            day: row.get(9)?,
        });
    }

    Ok(Inputs {
        regions,
        services,
        request_stats,
        avg_outbound_rtt,
        daily_demand,
        hourly_demand,
        daily_rtt,
        placements,
    })
}

/// Per (service, date): the hosting regions, each with its index into the placements.
type DayHosts = HashMap<(i64, String), Vec<usize>>;

fn assemble(inputs: &Inputs) -> Result<LatencyMatrix, FeatureError> {
    let n = inputs.regions.len();
    let mut hosts: DayHosts = HashMap::new();
    for (index, placement) in inputs.placements.iter().enumerate() {
        hosts
            .entry((placement.service_id, placement.date.clone()))
            .or_default()
            .push(index);
    }

    // First pass: the RTT of the users each host serves, needed by callers in the second.
    let mut user_rtt = vec![0.0; inputs.placements.len()];
    let mut stretch = vec![1.0; inputs.placements.len()];
    for ((service_id, date), indices) in &hosts {
        let rtt = day_rtt(inputs, *service_id, date, &inputs.placements[indices[0]])?;
        let day = inputs.placements[indices[0]].day;
        let mut weighted = vec![0.0; indices.len()];
        let mut weights = vec![0.0; indices.len()];
        let mut routed_hours = vec![[0.0; 24]; indices.len()];
        for origin in 0..n {
            let nearest = nearest_host(inputs, indices, rtt, origin);
            if let Some(hours) = inputs.hourly_demand.get(&(*service_id, origin, day)) {
                for (routed, demand) in routed_hours[nearest].iter_mut().zip(hours) {
                    *routed += demand;
                }
            }
            let demand = inputs
                .daily_demand
                .get(&(*service_id, origin, date.clone()))
                .copied()
                .unwrap_or(0.0);
            let host_region = inputs.placements[indices[nearest]].region;
            weighted[nearest] += demand * rtt[origin * n + host_region];
            weights[nearest] += demand;
        }
        for (k, &index) in indices.iter().enumerate() {
            stretch[index] =
                queueing_stretch(inputs.placements[index].utilization, &routed_hours[k]);
            user_rtt[index] = if weights[k] > 0.0 {
                weighted[k] / weights[k]
            } else {
                0.0
            };
        }
    }

    let columns = FEATURE_NAMES.len();
    let mut features = Vec::with_capacity(inputs.placements.len() * columns);
    for (index, placement) in inputs.placements.iter().enumerate() {
        let service = &inputs.services[&placement.service_id];
        let rtt = day_rtt(inputs, placement.service_id, &placement.date, placement)?;
        let stats = inputs
            .request_stats
            .get(&(placement.service_id, placement.region))
            .copied()
            .unwrap_or_default();
        let calls = dependency_features(inputs, &hosts, &user_rtt, service, placement, rtt);
        let cv = if stats.mean > 0.0 {
            stats.std / stats.mean
        } else {
            0.0
        };
        features.extend_from_slice(&[
            service.memory_mb,
            service.cores,
            service.critical,
            service.dependencies.len() as f64,
            stats.mean,
            stats.std,
            stats.max,
            cv,
            inputs.avg_outbound_rtt[placement.region],
            placement.instances,
            placement.rps,
            placement.utilization,
            placement.peak_utilization,
            placement.rps / (placement.instances * service.cores),
            stretch[index],
            user_rtt[index],
            calls.max_rtt,
            calls.mean_rtt,
            calls.critical_path,
            calls.max_utilization,
        ]);
    }

    Ok(LatencyMatrix {
        feature_names: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        features,
        target_ms: inputs.placements.iter().map(|p| p.latency_ms).collect(),
        oracle_ms: inputs.placements.iter().map(|p| p.oracle_ms).collect(),
        service_ids: inputs.placements.iter().map(|p| p.service_id).collect(),
        dates: inputs.placements.iter().map(|p| p.date.clone()).collect(),
        regions: inputs
            .placements
            .iter()
            .map(|p| inputs.regions[p.region].clone())
            .collect(),
    })
}

/// Estimates the traffic-weighted processor-sharing stretch `1 / (1 - rho)` over a day from
/// the day's mean utilization and the hourly requests routed to the host, assuming
/// utilization follows the routed requests hour by hour. Hourly utilization is not in the
/// telemetry, but hourly requests are.
fn queueing_stretch(mean_utilization: f64, routed_hours: &[f64; 24]) -> f64 {
    let total: f64 = routed_hours.iter().sum();
    let cap = crate::simulate::UTILIZATION_CAP;
    if total <= 0.0 {
        return 1.0 / (1.0 - mean_utilization.min(cap));
    }
    let mean = total / 24.0;
    let weighted: f64 = routed_hours
        .iter()
        .map(|&requests| {
            let utilization = mean_utilization * requests / mean;
            requests / (1.0 - utilization.min(cap))
        })
        .sum();
    weighted / total
}

fn day_rtt<'a>(
    inputs: &'a Inputs,
    service_id: i64,
    date: &str,
    placement: &Placement,
) -> Result<&'a [f64], FeatureError> {
    inputs
        .daily_rtt
        .get(date)
        .map(Vec::as_slice)
        .ok_or_else(|| FeatureError::MissingRtt {
            service_id,
            date: date.to_string(),
            region: inputs.regions[placement.region].clone(),
        })
}

/// Position within `indices` of the host of lowest RTT from `from`; ties go to the first.
fn nearest_host(inputs: &Inputs, indices: &[usize], rtt: &[f64], from: usize) -> usize {
    let n = inputs.regions.len();
    let mut best = 0;
    for k in 1..indices.len() {
        let candidate = rtt[from * n + inputs.placements[indices[k]].region];
        let current = rtt[from * n + inputs.placements[indices[best]].region];
        if candidate < current {
            best = k;
        }
    }
    best
}

struct CallFeatures {
    max_rtt: f64,
    mean_rtt: f64,
    /// Slowest dependency call: RTT to the callee's nearest host plus the callee's
    /// observed latency there less the RTT of the callee's own users.
    critical_path: f64,
    max_utilization: f64,
}

fn dependency_features(
    inputs: &Inputs,
    hosts: &DayHosts,
    user_rtt: &[f64],
    service: &Service,
    placement: &Placement,
    rtt: &[f64],
) -> CallFeatures {
    let n = inputs.regions.len();
    let mut calls = CallFeatures {
        max_rtt: 0.0,
        mean_rtt: 0.0,
        critical_path: 0.0,
        max_utilization: 0.0,
    };
    let mut count = 0.0;
    for dependency in &service.dependencies {
        let Some(indices) = hosts.get(&(*dependency, placement.date.clone())) else {
            continue;
        };
        let callee_index = indices[nearest_host(inputs, indices, rtt, placement.region)];
        let callee = &inputs.placements[callee_index];
        let call_rtt = rtt[placement.region * n + callee.region];
        let callee_processing = (callee.latency_ms - user_rtt[callee_index]).max(0.0);
        calls.max_rtt = calls.max_rtt.max(call_rtt);
        calls.mean_rtt += call_rtt;
        calls.critical_path = calls.critical_path.max(call_rtt + callee_processing);
        calls.max_utilization = calls.max_utilization.max(callee.utilization);
        count += 1.0;
    }
    if count > 0.0 {
        calls.mean_rtt /= count;
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::generate::{self, date_string, FleetConfig};
    use crate::store::{self, RunRecord};

    fn small_fleet() -> (tempfile::TempDir, generate::Fleet, LatencyMatrix) {
        let config = FleetConfig {
            services: 30,
            days: 3,
            regions: Catalog::embedded().select("default").unwrap(),
            seed: 5,
        };
        let fleet = generate::generate(&config, |_| true).unwrap();
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("fleet.db");
        let run = RunRecord {
            command: "test".to_string(),
            seed: 5,
            parameters: serde_json::json!({}),
            timings: Vec::new(),
            record_timings: false,
        };
        let history = fleet.history.clone();
        let target = store::Target::acquire(&path).unwrap();
        store::write_fleet(&target, &fleet, || Some(history), &run, |_| true).unwrap();
        let matrix = latency_matrix(&Connection::open(&path).unwrap()).unwrap();
        (directory, fleet, matrix)
    }

    fn column(matrix: &LatencyMatrix, name: &str) -> usize {
        matrix.feature_names.iter().position(|n| n == name).unwrap()
    }

    #[test]
    fn matrix_has_one_row_per_placement() {
        let (_directory, fleet, matrix) = small_fleet();
        assert_eq!(matrix.rows(), fleet.history.len());
        assert_eq!(matrix.features.len(), matrix.rows() * FEATURE_NAMES.len());
        assert!(matrix.features.iter().all(|v| v.is_finite()));
        assert!(matrix.oracle_ms.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn routed_user_rtt_matches_world_routing() {
        let (_directory, fleet, matrix) = small_fleet();
        let regions = fleet.config.regions.len();
        let user_rtt = column(&matrix, "routed_user_rtt_ms");
        let codes = fleet.config.regions.codes();
        for record in &fleet.history {
            let rtt = fleet.rtt_on(record.day);
            let hosts: Vec<usize> = fleet
                .history
                .iter()
                .filter(|r| r.day == record.day && r.service == record.service)
                .map(|r| r.region)
                .collect();
            let (mut weighted, mut weight) = (0.0, 0.0);
            for origin in 0..regions {
                let nearest = *hosts
                    .iter()
                    .min_by(|&&a, &&b| {
                        rtt[origin * regions + a].total_cmp(&rtt[origin * regions + b])
                    })
                    .unwrap();
                if nearest != record.region {
                    continue;
                }
                let demand: f64 = (record.day * 24..record.day * 24 + 24)
                    .map(|hour| f64::from(fleet.traffic_at(record.service, origin, hour)))
                    .sum::<f64>()
                    / 24.0;
                weighted += demand * rtt[origin * regions + record.region];
                weight += demand;
            }
            let expected = if weight > 0.0 { weighted / weight } else { 0.0 };
            let row = (0..matrix.rows())
                .find(|&i| {
                    matrix.service_ids[i] == record.service as i64
                        && matrix.dates[i] == date_string(record.day)
                        && matrix.regions[i] == codes[record.region]
                })
                .unwrap();
            let found = matrix.row(row)[user_rtt];
            assert!(
                (found - expected).abs() < 1e-6 * expected.max(1.0),
                "{found} vs {expected}"
            );
        }
    }

    #[test]
    fn observed_columns_copy_the_history() {
        let (_directory, fleet, matrix) = small_fleet();
        let utilization = column(&matrix, "cpu_utilization");
        let instances = column(&matrix, "instances");
        let total_utilization: f64 = fleet.history.iter().map(|r| r.cpu_utilization).sum();
        let matrix_utilization: f64 = (0..matrix.rows()).map(|i| matrix.row(i)[utilization]).sum();
        assert!((total_utilization - matrix_utilization).abs() < 1e-9 * total_utilization);
        let total_instances: f64 = fleet.history.iter().map(|r| f64::from(r.instances)).sum();
        let matrix_instances: f64 = (0..matrix.rows()).map(|i| matrix.row(i)[instances]).sum();
        assert_eq!(total_instances, matrix_instances);
        let target: f64 = matrix.target_ms.iter().sum();
        let history: f64 = fleet.history.iter().map(|r| r.latency_ms).sum();
        assert!((target - history).abs() < 1e-9 * history);
    }
}
