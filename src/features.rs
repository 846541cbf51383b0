//! The training matrix of the latency model, built from the store or, in `run`, from the
//! generated fleet in memory.
//!
//! The tables are read in one pass each, and the aggregates are computed here: requests
//! per service and origin region (mean, standard deviation, maximum, coefficient of
//! variation), mean RTT per region pair, daily demand and daily RTT. This module joins
//! them with the placement history into one row per (service, region, day). It adds what
//! latency-based routing implies on that day: the RTT of the users routed to the host, and
//! the RTT and latency of each dependency's nearest host. Both sources fill the same
//! `Inputs` with the same values in the same order, so they give the same matrix, bit
//! for bit (a test compares them).
//!
//! Nothing here reads the `world_*` tables except [`LatencyMatrix::oracle_ms`], the world
//! model's noise-free latency for the same rows, which is used only to score models.

use std::collections::{BTreeMap, HashMap};

use rusqlite::Connection;

use crate::generate::{date_string, Fleet, START_DAY};

/// Names of the latency model's features, in column order.
pub const FEATURE_NAMES: [&str; 22] = [
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
    "memory_x_stretch",
    "routed_user_rtt_ms",
    "dependency_max_rtt_ms",
    "dependency_mean_rtt_ms",
    "dependency_critical_path_ms",
    "dependency_wait_ms",
    "dependency_max_utilization",
];

/// Errors in building the matrix.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("SQLite failed while building features")]
    Sqlite(#[source] rusqlite::Error),
    #[error("column `{column}` holds a {found} value where a number is expected\nhint: the database was changed outside placewise; regenerate it or fix the column")]
    WrongType { column: String, found: String },
    #[error("{table}.{column} = {value} for {key} is invalid: {rule}")]
    InvalidValue {
        table: &'static str,
        column: &'static str,
        key: String,
        value: f64,
        rule: &'static str,
    },
    #[error("{table} names service {service_id}, which is not in `services`")]
    UnknownService {
        table: &'static str,
        service_id: i64,
    },
    #[error("{table} names region `{region}` ({key}), which is not in `regions`")]
    UnknownRegion {
        table: &'static str,
        region: String,
        key: String,
    },
    #[error("the database has no placement history\nhint: run `placewise generate` first")]
    NoHistory,
    #[error("the dependencies of service {service_id} form a cycle\nhint: the call graph in `service_dependencies` must be acyclic")]
    DependencyCycle { service_id: i64 },
    #[error("placement of service {service_id} on {date} names region `{region}`, which has no RTT sample that day")]
    MissingRtt {
        service_id: i64,
        date: String,
        region: String,
    },
}

impl From<rusqlite::Error> for FeatureError {
    fn from(error: rusqlite::Error) -> Self {
        match error {
            rusqlite::Error::InvalidColumnType(_, column, found) => FeatureError::WrongType {
                column,
                found: format!("{found}").to_lowercase(),
            },
            other => FeatureError::Sqlite(other),
        }
    }
}

/// Rejects a value outside `[low, high]`, naming where it is.
fn check_range(
    table: &'static str,
    column: &'static str,
    key: impl FnOnce() -> String,
    value: f64,
    (low, high): (f64, f64),
    rule: &'static str,
) -> Result<(), FeatureError> {
    if value >= low && value <= high {
        Ok(())
    } else {
        Err(FeatureError::InvalidValue {
            table,
            column,
            key: key(),
            value,
            rule,
        })
    }
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
    /// Service id of each row.
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
    hourly_demand: HourlyDemand,
    /// Daily RTT matrix per date, row-major, in date order so that sums over days are the
    /// same in every run.
    daily_rtt: BTreeMap<String, Vec<f64>>,
    placements: Vec<Placement>,
}

/// Builds the latency matrix from a placewise database.
pub fn latency_matrix(connection: &Connection) -> Result<LatencyMatrix, FeatureError> {
    Ok(build(connection)?.0)
}

/// Builds the latency matrix and the fleet summary from one read of the database.
pub fn build(connection: &Connection) -> Result<(LatencyMatrix, FleetSummary), FeatureError> {
    build_from_inputs(&load_inputs(connection)?)
}

/// Builds the latency matrix and the fleet summary of a generated fleet, with its history,
/// without reading the database: the same values, bit for bit, that [`build`] returns on
/// the database `generate` writes for `fleet`. `run` uses it so that training need not
/// wait for the store.
pub fn build_from_fleet(fleet: &Fleet) -> Result<(LatencyMatrix, FleetSummary), FeatureError> {
    build_from_inputs(&inputs_from_fleet(fleet))
}

fn build_from_inputs(inputs: &Inputs) -> Result<(LatencyMatrix, FleetSummary), FeatureError> {
    if inputs.placements.is_empty() {
        return Err(FeatureError::NoHistory);
    }
    let (matrix, cpu_ms, idle_ms) = assemble(inputs)?;
    Ok((matrix, summarize(inputs, &cpu_ms, &idle_ms)))
}

/// A summary of each service's telemetry, for building feature rows of placements
/// that the history never tried. Vectors over regions follow `regions`.
#[derive(Debug, Clone)]
pub struct FleetSummary {
    pub regions: Vec<String>,
    /// Mean RTT between regions over the history, row-major, source row.
    pub mean_rtt_ms: Vec<f64>,
    /// Mean RTT of each region to the other regions.
    pub avg_outbound_rtt_ms: Vec<f64>,
    /// Services in ascending id order.
    pub services: Vec<ServiceSummary>,
}

#[derive(Debug, Clone)]
pub struct ServiceSummary {
    pub service_id: i64,
    pub memory_mb: f64,
    pub cores: f64,
    pub latency_critical: bool,
    /// Positions in [`FleetSummary::services`] of the services this one calls.
    pub dependencies: Vec<usize>,
    /// Mean requests per second from each origin region.
    pub mean_demand: Vec<f64>,
    /// Busiest hour's requests per second from each origin region.
    pub peak_demand: Vec<f64>,
    /// Mean requests per second of the whole service in each hour of the day (UTC).
    pub daily_profile: [f64; 24],
    /// Request statistics of each origin region.
    pub request_mean: Vec<f64>,
    pub request_std: Vec<f64>,
    pub request_max: Vec<f64>,
    /// Estimated CPU time per request, in core-milliseconds; NaN when every row saturated.
    pub cpu_ms_per_request: f64,
    /// Estimated processing time on an idle host, in ms, dependency calls excluded.
    pub idle_processing_ms: f64,
}

fn summarize(
    inputs: &Inputs,
    cpu_ms: &HashMap<i64, f64>,
    idle_ms: &HashMap<i64, f64>,
) -> FleetSummary {
    let n = inputs.regions.len();
    let mut ids: Vec<i64> = inputs.services.keys().copied().collect();
    ids.sort_unstable();
    let position: HashMap<i64, usize> = ids.iter().enumerate().map(|(k, &id)| (id, k)).collect();
    let mut mean_rtt = vec![0.0; n * n];
    let days = inputs.daily_rtt.len().max(1) as f64;
    for matrix in inputs.daily_rtt.values() {
        for (total, value) in mean_rtt.iter_mut().zip(matrix) {
            if value.is_finite() {
                *total += value / days;
            }
        }
    }
    let mut demand_sums: HashMap<(i64, usize), (f64, f64, f64)> = HashMap::new();
    let mut profiles: HashMap<i64, ([f64; 24], HashMap<i64, ()>)> = HashMap::new();
    for (&(service_id, origin, day), hours) in &inputs.hourly_demand {
        let entry = demand_sums.entry((service_id, origin)).or_default();
        entry.0 += hours.iter().sum::<f64>();
        entry.1 += 24.0;
        entry.2 = hours.iter().fold(entry.2, |peak, &v| peak.max(v));
        let profile = profiles.entry(service_id).or_default();
        for (total, value) in profile.0.iter_mut().zip(hours) {
            *total += value;
        }
        profile.1.insert(day, ());
    }
    let services = ids
        .iter()
        .map(|id| {
            let service = &inputs.services[id];
            let per_origin = |pick: fn(&(f64, f64, f64)) -> f64| -> Vec<f64> {
                (0..n)
                    .map(|origin| demand_sums.get(&(*id, origin)).map_or(0.0, pick))
                    .collect()
            };
            let stats = |origin: usize| {
                inputs
                    .request_stats
                    .get(&(*id, origin))
                    .copied()
                    .unwrap_or_default()
            };
            let mut daily_profile = [0.0; 24];
            if let Some((totals, days)) = profiles.get(id) {
                for (slot, total) in daily_profile.iter_mut().zip(totals) {
                    *slot = total / days.len() as f64;
                }
            }
            ServiceSummary {
                service_id: *id,
                memory_mb: service.memory_mb,
                cores: service.cores,
                latency_critical: service.critical > 0.0,
                dependencies: service
                    .dependencies
                    .iter()
                    .filter_map(|d| position.get(d).copied())
                    .collect(),
                mean_demand: per_origin(|&(sum, hours, _)| sum / hours),
                peak_demand: per_origin(|&(_, _, peak)| peak),
                daily_profile,
                request_mean: (0..n).map(|o| stats(o).mean).collect(),
                request_std: (0..n).map(|o| stats(o).std).collect(),
                request_max: (0..n).map(|o| stats(o).max).collect(),
                cpu_ms_per_request: cpu_ms.get(id).copied().unwrap_or(f64::NAN),
                idle_processing_ms: idle_ms.get(id).copied().unwrap_or(0.0),
            }
        })
        .collect();
    FleetSummary {
        regions: inputs.regions.clone(),
        mean_rtt_ms: mean_rtt,
        avg_outbound_rtt_ms: inputs.avg_outbound_rtt.clone(),
        services,
    }
}

/// The state of a host that a plan proposes, from which [`candidate_row`] builds the
/// latency model's features.
#[derive(Debug, Clone, Copy)]
pub struct CandidateHost {
    pub instances: f64,
    /// Mean requests per second routed to the host.
    pub routed_rps: f64,
    pub mean_utilization: f64,
    pub peak_utilization: f64,
    /// Traffic-weighted mean of `1 / (1 - rho)` over the day.
    pub queueing_stretch: f64,
    /// Demand-weighted RTT of the users the host serves, in ms.
    pub user_rtt_ms: f64,
}

/// One dependency call of a proposed host: the RTT to the callee's nearest host and the
/// callee's processing time there.
#[derive(Debug, Clone, Copy)]
pub struct CandidateCall {
    pub rtt_ms: f64,
    pub callee_processing_ms: f64,
    pub callee_utilization: f64,
}

/// Builds the latency model's feature row, in [`FEATURE_NAMES`] order, for `service`
/// hosted in `region` in the state `host`, calling its dependencies as `calls`.
pub fn candidate_row(
    summary: &FleetSummary,
    service: &ServiceSummary,
    region: usize,
    host: &CandidateHost,
    calls: &[CandidateCall],
) -> Vec<f64> {
    let mean = service.request_mean[region];
    let cv = if mean > 0.0 {
        service.request_std[region] / mean
    } else {
        0.0
    };
    let (mut max_rtt, mut total_rtt, mut wait, mut max_utilization) = (0.0f64, 0.0, 0.0f64, 0.0f64);
    for call in calls {
        max_rtt = max_rtt.max(call.rtt_ms);
        total_rtt += call.rtt_ms;
        wait = wait.max(call.rtt_ms + call.callee_processing_ms);
        max_utilization = max_utilization.max(call.callee_utilization);
    }
    let mean_rtt = if calls.is_empty() {
        0.0
    } else {
        total_rtt / calls.len() as f64
    };
    vec![
        service.memory_mb,
        service.cores,
        if service.latency_critical { 1.0 } else { 0.0 },
        service.dependencies.len() as f64,
        mean,
        service.request_std[region],
        service.request_max[region],
        cv,
        summary.avg_outbound_rtt_ms[region],
        host.instances,
        host.routed_rps,
        host.mean_utilization,
        host.peak_utilization,
        host.routed_rps / (host.instances * service.cores),
        host.queueing_stretch,
        service.memory_mb * host.queueing_stretch,
        host.user_rtt_ms,
        max_rtt,
        mean_rtt,
        wait,
        wait,
        max_utilization,
    ]
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
        let key = || format!("service {id}");
        let positive = (f64::MIN_POSITIVE, f64::MAX);
        check_range(
            "services",
            "memory_mb",
            key,
            service.memory_mb,
            positive,
            "use a positive size in MiB",
        )?;
        check_range(
            "services",
            "cores",
            key,
            service.cores,
            positive,
            "use a positive vCPU count",
        )?;
        services.insert(id, service);
    }
    let mut statement = connection
        .prepare("SELECT service_id, depends_on_id FROM service_dependencies ORDER BY 1, 2")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (caller, callee): (i64, i64) = (row.get(0)?, row.get(1)?);
        if !services.contains_key(&callee) {
            return Err(FeatureError::UnknownService {
                table: "service_dependencies",
                service_id: callee,
            });
        }
        let Some(service) = services.get_mut(&caller) else {
            return Err(FeatureError::UnknownService {
                table: "service_dependencies",
                service_id: caller,
            });
        };
        service.dependencies.push(callee);
    }

    let n = regions.len();
    let (hourly_demand, request_stats) = scan_traffic(connection, &index_of)?;

    let mut daily_rtt: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut statement = connection
        .prepare("SELECT date, source_region, target_region, rtt_ms FROM regional_latency")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (source, target): (String, String) = (row.get(1)?, row.get(2)?);
        if let (Some(i), Some(j)) = (index_of(&source), index_of(&target)) {
            let date: String = row.get(0)?;
            let rtt: f64 = row.get(3)?;
            check_range(
                "regional_latency",
                "rtt_ms",
                || format!("{source} to {target} on {date}"),
                rtt,
                (0.0, f64::MAX),
                "use a finite RTT, 0 or more",
            )?;
            let matrix = daily_rtt
                .entry(date)
                .or_insert_with(|| vec![f64::NAN; n * n]);
            matrix[i * n + j] = rtt;
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
        let code: String = row.get(2)?;
        let service_id: i64 = row.get(0)?;
        let date: String = row.get(1)?;
        let Some(region) = index_of(&code) else {
            return Err(FeatureError::UnknownRegion {
                table: "service_placement",
                region: code,
                key: format!("service {service_id} on {date}"),
            });
        };
        if !services.contains_key(&service_id) {
            return Err(FeatureError::UnknownService {
                table: "service_placement",
                service_id,
            });
        }
        let key = || format!("service {service_id} on {date} in {code}");
        let table = "service_placement";
        let instances: f64 = row.get(3)?;
        check_range(
            table,
            "instances",
            key,
            instances,
            (1.0, f64::MAX),
            "use 1 or more",
        )?;
        let rps: f64 = row.get(4)?;
        check_range(
            table,
            "requests_per_second",
            key,
            rps,
            (0.0, f64::MAX),
            "use 0 or more",
        )?;
        let utilization: f64 = row.get(5)?;
        check_range(
            table,
            "cpu_utilization",
            key,
            utilization,
            (0.0, 1.0),
            "use 0 to 1",
        )?;
        let latency: f64 = row.get(6)?;
        check_range(
            table,
            "latency_ms",
            key,
            latency,
            (0.0, f64::MAX),
            "use a finite latency, 0 or more",
        )?;
        let peak: f64 = row.get(8)?;
        check_range(
            table,
            "peak_cpu_utilization",
            key,
            peak,
            (0.0, 1.0),
            "use 0 to 1",
        )?;
        placements.push(Placement {
            service_id,
            date,
            region,
            instances,
            rps,
            utilization,
            latency_ms: latency,
            oracle_ms: row.get::<_, Option<f64>>(7)?.unwrap_or(f64::NAN),
            peak_utilization: peak,
            day: row.get(9)?,
        });
    }

    Ok(Inputs {
        avg_outbound_rtt: avg_outbound_rtt(&daily_rtt, n),
        regions,
        services,
        request_stats,
        hourly_demand,
        daily_rtt,
        placements,
    })
}

/// Returns each region's mean RTT to the other regions: the mean over days of each pair's
/// daily RTT, averaged over the other regions. Days without a pair's measurement are left
/// out of that pair's mean.
fn avg_outbound_rtt(daily_rtt: &BTreeMap<String, Vec<f64>>, n: usize) -> Vec<f64> {
    let mut sums = vec![0.0; n * n];
    let mut counts = vec![0usize; n * n];
    for matrix in daily_rtt.values() {
        for (cell, &value) in matrix.iter().enumerate() {
            if value.is_finite() {
                sums[cell] += value;
                counts[cell] += 1;
            }
        }
    }
    let pair_mean: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(&sum, &count)| if count > 0 { sum / count as f64 } else { 0.0 })
        .collect();
    (0..n)
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
        .collect()
}

/// Builds the inputs from a generated fleet in memory, with the values and row order that
/// [`load_inputs`] reads from the database `generate` writes for it.
fn inputs_from_fleet(fleet: &Fleet) -> Inputs {
    let codes = fleet.config.regions.codes();
    let n = codes.len();
    let services = fleet
        .services
        .iter()
        .enumerate()
        .map(|(id, service)| {
            let spec = &service.spec;
            let mut dependencies: Vec<i64> = spec.dependencies.iter().map(|&d| d as i64).collect();
            dependencies.sort_unstable();
            let record = Service {
                memory_mb: f64::from(spec.memory_mb),
                cores: spec.cores,
                critical: if spec.latency_critical { 1.0 } else { 0.0 },
                dependencies,
            };
            (id as i64, record)
        })
        .collect();

    let hours = fleet.hours();
    let mut hourly_demand = HourlyDemand::new();
    let mut request_stats = RequestStatsMap::new();
    for service in 0..fleet.services.len() {
        for origin in 0..n {
            let series = &fleet.traffic[(service * n + origin) * hours..][..hours];
            let mut accumulator = SeriesStats::default();
            for (day, day_hours) in series.chunks(24).enumerate() {
                let mut demand = [0.0; 24];
                for (slot, &requests) in demand.iter_mut().zip(day_hours) {
                    *slot = f64::from(requests);
                    accumulator.add(*slot);
                }
                let key = (service as i64, origin, START_DAY + day as i64);
                hourly_demand.insert(key, demand);
            }
            request_stats.insert((service as i64, origin), accumulator.finish());
        }
    }

    let daily_rtt: BTreeMap<String, Vec<f64>> = (0..fleet.config.days)
        .map(|day| (date_string(day), fleet.rtt_on(day).to_vec()))
        .collect();

    let mut order: Vec<usize> = (0..fleet.history.len()).collect();
    order.sort_by_key(|&k| {
        let row = &fleet.history[k];
        (row.service, row.day, codes[row.region])
    });
    let placements = order
        .into_iter()
        .map(|k| {
            let row = &fleet.history[k];
            Placement {
                service_id: row.service as i64,
                date: date_string(row.day),
                region: row.region,
                instances: f64::from(row.instances),
                rps: row.routed_rps,
                utilization: row.cpu_utilization,
                latency_ms: row.latency_ms,
                oracle_ms: row.expected_latency_ms,
                peak_utilization: row.peak_cpu_utilization,
                day: START_DAY + row.day as i64,
            }
        })
        .collect();

    Inputs {
        regions: codes.iter().map(|code| code.to_string()).collect(),
        services,
        request_stats,
        avg_outbound_rtt: avg_outbound_rtt(&daily_rtt, n),
        hourly_demand,
        daily_rtt,
        placements,
    }
}

/// Hourly demand per (service, origin, day since 1970-01-01), in requests per second.
type HourlyDemand = HashMap<(i64, usize, i64), [f64; 24]>;

/// Request statistics per (service, origin).
type RequestStatsMap = HashMap<(i64, usize), RequestStats>;

/// Running count, sum, sum of squares and maximum of one series of hourly requests.
#[derive(Clone, Copy, Default)]
struct SeriesStats {
    count: f64,
    sum: f64,
    square: f64,
    max: f64,
}

impl SeriesStats {
    fn add(&mut self, requests: f64) {
        self.count += 1.0;
        self.sum += requests;
        self.square += requests * requests;
        self.max = self.max.max(requests);
    }

    fn merge(&mut self, other: &SeriesStats) {
        self.count += other.count;
        self.sum += other.sum;
        self.square += other.square;
        self.max = self.max.max(other.max);
    }

    fn finish(&self) -> RequestStats {
        let mean = self.sum / self.count;
        let std = (self.square / self.count - mean * mean).max(0.0).sqrt();
        RequestStats {
            mean,
            std,
            max: self.max,
        }
    }
}

/// Reads the hourly traffic in one scan and returns it by (service, origin, day) together
/// with the request statistics of each (service, origin).
///
/// The statistics are accumulated in this pass rather than by a `GROUP BY` in SQL: the
/// hourly values are needed here anyway, and on the default fleet's 1.62 million rows the
/// `GROUP BY` alone took 2.1 s (it sorts, since the table has no index on the groups)
/// where the whole scan takes a fraction of that. `generate` writes each series' rows
/// together, so the maps are updated once per day and once per series, not once per row.
/// Rows of one series that arrive apart are merged into it.
fn scan_traffic(
    connection: &Connection,
    index_of: &impl Fn(&str) -> Option<usize>,
) -> Result<(HourlyDemand, RequestStatsMap), FeatureError> {
    let mut hourly: HourlyDemand = HashMap::new();
    let mut sums: HashMap<(i64, usize), SeriesStats> = HashMap::new();
    let mut statement = connection.prepare(
        "SELECT service_id, origin_region, timestamp, requests_per_second FROM traffic_patterns",
    )?;
    let mut rows = statement.query([])?;
    let mut current_day: Option<(i64, usize, i64)> = None;
    let mut day_hours = [0.0; 24];
    let mut current_series: Option<(i64, usize)> = None;
    let mut series = SeriesStats::default();
    let mut last_origin = (String::new(), None);
    while let Some(row) = rows.next()? {
        let origin = row.get_ref(1)?.as_str().unwrap_or_default();
        if origin != last_origin.0 {
            last_origin = (origin.to_string(), index_of(origin));
        }
        let Some(origin) = last_origin.1 else {
            continue;
        };
        let service_id: i64 = row.get(0)?;
        let timestamp: i64 = row.get(2)?;
        let requests: f64 = row.get(3)?;
        if !(requests >= 0.0 && requests.is_finite()) {
            return Err(FeatureError::InvalidValue {
                table: "traffic_patterns",
                column: "requests_per_second",
                key: format!("service {service_id} at {timestamp}"),
                value: requests,
                rule: "use a finite rate, 0 or more",
            });
        }
        let day = (service_id, origin, timestamp.div_euclid(86_400));
        if current_day != Some(day) {
            add_day(&mut hourly, current_day, &mut day_hours);
            current_day = Some(day);
        }
        day_hours[(timestamp.rem_euclid(86_400) / 3600) as usize] += requests;
        if current_series != Some((service_id, origin)) {
            if let Some(key) = current_series {
                sums.entry(key).or_default().merge(&series);
            }
            current_series = Some((service_id, origin));
            series = SeriesStats::default();
        }
        series.add(requests);
    }
    add_day(&mut hourly, current_day, &mut day_hours);
    if let Some(key) = current_series {
        sums.entry(key).or_default().merge(&series);
    }
    let stats = sums
        .into_iter()
        .map(|(key, series)| (key, series.finish()))
        .collect();
    Ok((hourly, stats))
}

/// Adds one day's gathered hours to `hourly` under `key`, and clears them.
fn add_day(hourly: &mut HourlyDemand, key: Option<(i64, usize, i64)>, hours: &mut [f64; 24]) {
    if let Some(key) = key {
        let slot = hourly.entry(key).or_insert([0.0; 24]);
        for (total, value) in slot.iter_mut().zip(hours.iter()) {
            *total += value;
        }
    }
    *hours = [0.0; 24];
}

/// Per (service, date): the hosting regions, each with its index into the placements.
type DayHosts = HashMap<(i64, String), Vec<usize>>;

/// The hourly routing and load of one placement row over its day.
#[derive(Clone)]
struct HostHours {
    /// Requests per second routed to the host in each hour.
    routed: [f64; 24],
    /// Estimated processor-sharing stretch `1 / (1 - rho)` in each hour.
    stretch: [f64; 24],
    /// Estimated wait for the slowest dependency call in each hour, in ms.
    wait: [f64; 24],
    /// Estimated processing time with dependency calls in each hour, in ms.
    processing: [f64; 24],
    /// Demand-weighted RTT of the users routed to the host, in ms.
    user_rtt: f64,
}

impl HostHours {
    /// Mean of `values` weighted by the routed requests; the plain mean when none arrive.
    fn weighted(&self, values: &[f64; 24]) -> f64 {
        let total: f64 = self.routed.iter().sum();
        if total > 0.0 {
            self.routed
                .iter()
                .zip(values)
                .map(|(r, v)| r * v)
                .sum::<f64>()
                / total
        } else {
            values.iter().sum::<f64>() / 24.0
        }
    }
}

/// The matrix, with the estimated CPU time per request and idle processing time of each
/// service.
type Assembled = (LatencyMatrix, HashMap<i64, f64>, HashMap<i64, f64>);

fn assemble(inputs: &Inputs) -> Result<Assembled, FeatureError> {
    let mut hosts: DayHosts = HashMap::new();
    for (index, placement) in inputs.placements.iter().enumerate() {
        hosts
            .entry((placement.service_id, placement.date.clone()))
            .or_default()
            .push(index);
    }
    let mut hours = route_hours(inputs, &hosts)?;
    let cpu_ms = cpu_ms_per_request(inputs);
    for (index, placement) in inputs.placements.iter().enumerate() {
        let service = &inputs.services[&placement.service_id];
        let per_request = cpu_ms
            .get(&placement.service_id)
            .copied()
            .unwrap_or(f64::NAN);
        hours[index].stretch =
            hourly_stretch(placement, service, per_request, &hours[index].routed);
    }
    let idle_ms = estimate_call_waits(inputs, &hosts, &mut hours)?;

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
        let calls = dependency_features(inputs, &hosts, &hours, service, placement, rtt);
        let cv = if stats.mean > 0.0 {
            stats.std / stats.mean
        } else {
            0.0
        };
        let host = &hours[index];
        let stretch = host.weighted(&host.stretch);
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
            stretch,
            service.memory_mb * stretch,
            host.user_rtt,
            calls.max_rtt,
            calls.mean_rtt,
            calls.critical_path,
            host.weighted(&host.wait),
            calls.max_utilization,
        ]);
    }

    let matrix = LatencyMatrix {
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
    };
    Ok((matrix, cpu_ms, idle_ms))
}

/// Routes each day's users to their nearest host, as latency-based routing does, and
/// returns per placement row the hourly routed requests and the routed users' RTT.
fn route_hours(inputs: &Inputs, hosts: &DayHosts) -> Result<Vec<HostHours>, FeatureError> {
    let n = inputs.regions.len();
    let empty = HostHours {
        routed: [0.0; 24],
        stretch: [1.0; 24],
        wait: [0.0; 24],
        processing: [0.0; 24],
        user_rtt: 0.0,
    };
    let mut hours = vec![empty; inputs.placements.len()];
    for ((service_id, date), indices) in hosts {
        let rtt = day_rtt(inputs, *service_id, date, &inputs.placements[indices[0]])?;
        let day = inputs.placements[indices[0]].day;
        let mut weighted = vec![0.0; indices.len()];
        let mut weights = vec![0.0; indices.len()];
        for origin in 0..n {
            let nearest = nearest_host(inputs, indices, rtt, origin);
            let Some(demand) = inputs.hourly_demand.get(&(*service_id, origin, day)) else {
                continue;
            };
            let host = &mut hours[indices[nearest]];
            for (routed, requests) in host.routed.iter_mut().zip(demand) {
                *routed += requests;
            }
            let daily: f64 = demand.iter().sum::<f64>() / 24.0;
            let host_region = inputs.placements[indices[nearest]].region;
            weighted[nearest] += daily * rtt[origin * n + host_region];
            weights[nearest] += daily;
        }
        for (k, &index) in indices.iter().enumerate() {
            if weights[k] > 0.0 {
                hours[index].user_rtt = weighted[k] / weights[k];
            }
        }
    }
    Ok(hours)
}

/// Estimates each service's CPU time per request, in core-milliseconds, as the median over
/// its placement rows of `utilization x instances x cores x 1000 / routed requests`. Rows
/// whose peak hour reached 100% are left out: the telemetry caps utilization there.
fn cpu_ms_per_request(inputs: &Inputs) -> HashMap<i64, f64> {
    let mut samples: HashMap<i64, Vec<f64>> = HashMap::new();
    for placement in &inputs.placements {
        if placement.peak_utilization >= 1.0 || placement.rps <= 0.0 {
            continue;
        }
        let cores = inputs.services[&placement.service_id].cores;
        samples
            .entry(placement.service_id)
            .or_default()
            .push(placement.utilization * placement.instances * cores * 1000.0 / placement.rps);
    }
    samples
        .into_iter()
        .map(|(service_id, mut values)| {
            values.sort_by(f64::total_cmp);
            (service_id, values[values.len() / 2])
        })
        .collect()
}

/// Estimates the hourly processor-sharing stretch `1 / (1 - rho)` of a host. Hourly
/// utilization is not in the telemetry, but hourly requests are: utilization in an hour is
/// the requests times the service's CPU time per request over the host's cores. Without an
/// estimate of CPU time per request (every row of the service saturated), utilization is
/// taken to follow the requests around the day's mean utilization.
fn hourly_stretch(
    placement: &Placement,
    service: &Service,
    cpu_ms_per_request: f64,
    routed: &[f64; 24],
) -> [f64; 24] {
    let cap = crate::simulate::UTILIZATION_CAP;
    let mean: f64 = routed.iter().sum::<f64>() / 24.0;
    let per_request = if cpu_ms_per_request.is_finite() {
        cpu_ms_per_request / (1000.0 * placement.instances * service.cores)
    } else if mean > 0.0 {
        placement.utilization / mean
    } else {
        0.0
    };
    let mut stretch = [1.0; 24];
    for (value, requests) in stretch.iter_mut().zip(routed) {
        let utilization = if mean > 0.0 {
            requests * per_request
        } else {
            placement.utilization
        };
        *value = 1.0 / (1.0 - utilization.min(cap));
    }
    stretch
}

/// Estimates, in call-graph order from the leaves up, each service's processing time on an
/// idle host and, hour by hour, the wait of each placement row for its slowest dependency
/// call.
///
/// A row's observed latency less its users' RTT is its processing time: the idle time
/// stretched by load, plus the wait for dependencies. For a service whose callees are
/// already estimated, the wait follows from the callees' hourly processing at their nearest
/// hosts, so the idle time is the ratio of the summed remainder to the summed stretch over
/// all its rows. Averaging over every row of a service keeps the observation noise of any
/// one day out of its callers' features, and no row's own latency enters its own features.
fn estimate_call_waits(
    inputs: &Inputs,
    hosts: &DayHosts,
    hours: &mut [HostHours],
) -> Result<HashMap<i64, f64>, FeatureError> {
    let mut idle = HashMap::new();
    let n = inputs.regions.len();
    let mut ids: Vec<i64> = inputs.services.keys().copied().collect();
    ids.sort_unstable();
    let position: HashMap<i64, usize> = ids.iter().enumerate().map(|(k, &id)| (id, k)).collect();
    let callees: Vec<Vec<usize>> = ids
        .iter()
        .map(|id| {
            inputs.services[id]
                .dependencies
                .iter()
                .filter_map(|d| position.get(d).copied())
                .collect()
        })
        .collect();
    let order =
        crate::simulate::call_graph_order(&callees).map_err(|_| FeatureError::DependencyCycle {
            service_id: first_cycle_member(&callees, &ids),
        })?;
    let mut rows_of: HashMap<i64, Vec<usize>> = HashMap::new();
    for (index, placement) in inputs.placements.iter().enumerate() {
        rows_of.entry(placement.service_id).or_default().push(index);
    }

    for &k in &order {
        let service_id = ids[k];
        let Some(rows) = rows_of.get(&service_id) else {
            continue;
        };
        let service = &inputs.services[&service_id];
        for &index in rows {
            let placement = &inputs.placements[index];
            let rtt = day_rtt(inputs, service_id, &placement.date, placement)?;
            let mut wait = [0.0f64; 24];
            for dependency in &service.dependencies {
                let Some(indices) = hosts.get(&(*dependency, placement.date.clone())) else {
                    continue;
                };
                let callee = indices[nearest_host(inputs, indices, rtt, placement.region)];
                let call_rtt = rtt[placement.region * n + inputs.placements[callee].region];
                for (slot, processing) in wait.iter_mut().zip(&hours[callee].processing) {
                    *slot = slot.max(call_rtt + processing);
                }
            }
            hours[index].wait = wait;
        }
        let (mut remainder, mut stretch) = (0.0, 0.0);
        for &index in rows {
            let host = &hours[index];
            if host.routed.iter().sum::<f64>() <= 0.0 {
                continue;
            }
            let latency = inputs.placements[index].latency_ms;
            remainder += latency - host.user_rtt - host.weighted(&host.wait);
            stretch += host.weighted(&host.stretch);
        }
        let idle_ms = if stretch > 0.0 {
            (remainder / stretch).max(0.0)
        } else {
            0.0
        };
        for &index in rows {
            let host = &mut hours[index];
            for t in 0..24 {
                host.processing[t] = idle_ms * host.stretch[t] + host.wait[t];
            }
        }
        idle.insert(service_id, idle_ms);
    }
    Ok(idle)
}

/// Returns the service id of a node on a cycle, for the error message.
fn first_cycle_member(callees: &[Vec<usize>], ids: &[i64]) -> i64 {
    match crate::simulate::call_graph_order(callees) {
        Err(crate::simulate::SimulateError::DependencyCycle { service }) => ids[service],
        _ => ids.first().copied().unwrap_or_default(),
    }
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
    hours: &[HostHours],
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
        let callee_processing = (callee.latency_ms - hours[callee_index].user_rtt).max(0.0);
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

/// Writes the matrix as CSV: one header line, then one line per row with the service id,
/// date and region, every feature, the observed latency, the world model's oracle latency
/// and, when `test_rows` (sorted) is given, the row's split, `train` or `test`. Numbers
/// are written in Rust's shortest form that reads back to the same `f64`.
pub fn write_csv(
    matrix: &LatencyMatrix,
    test_rows: Option<&[usize]>,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    write!(out, "service_id,date,region")?;
    for name in &matrix.feature_names {
        write!(out, ",{name}")?;
    }
    write!(out, ",latency_ms,oracle_latency_ms")?;
    if test_rows.is_some() {
        write!(out, ",split")?;
    }
    writeln!(out)?;
    for row in 0..matrix.rows() {
        write!(
            out,
            "{},{},{}",
            matrix.service_ids[row], matrix.dates[row], matrix.regions[row]
        )?;
        for value in matrix.row(row) {
            write!(out, ",{value:?}")?;
        }
        write!(
            out,
            ",{:?},{:?}",
            matrix.target_ms[row], matrix.oracle_ms[row]
        )?;
        if let Some(test) = test_rows {
            let split = if test.binary_search(&row).is_ok() {
                "test"
            } else {
                "train"
            };
            write!(out, ",{split}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate;
    use crate::store;

    fn small_fleet() -> (tempfile::TempDir, generate::Fleet, LatencyMatrix) {
        stored_fleet(30, 3, 5)
    }

    /// Generates a fleet, stores it in a temporary database and builds its matrix.
    fn stored_fleet(
        services: usize,
        days: usize,
        seed: u64,
    ) -> (tempfile::TempDir, generate::Fleet, LatencyMatrix) {
        let (directory, fleet, path) = store::stored_test_fleet(services, days, seed);
        let matrix = latency_matrix(&Connection::open(&path).unwrap()).unwrap();
        (directory, fleet, matrix)
    }

    fn column(matrix: &LatencyMatrix, name: &str) -> usize {
        matrix.feature_names.iter().position(|n| n == name).unwrap()
    }

    #[test]
    fn fleet_in_memory_gives_the_stored_matrix() {
        for (services, days, seed) in [(30, 3, 5), (60, 9, 11)] {
            let (directory, fleet, stored) = stored_fleet(services, days, seed);
            let connection = Connection::open(directory.path().join("fleet.db")).unwrap();
            let (_, stored_summary) = build(&connection).unwrap();
            let (matrix, summary) = build_from_fleet(&fleet).unwrap();
            let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&matrix.features), bits(&stored.features));
            assert_eq!(bits(&matrix.target_ms), bits(&stored.target_ms));
            assert_eq!(bits(&matrix.oracle_ms), bits(&stored.oracle_ms));
            assert_eq!(matrix.service_ids, stored.service_ids);
            assert_eq!(matrix.dates, stored.dates);
            assert_eq!(matrix.regions, stored.regions);
            // Debug prints every f64 in its shortest exact form, NaN included.
            assert_eq!(format!("{summary:?}"), format!("{stored_summary:?}"));
        }
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

    /// The dependency wait estimated from telemetry tracks the world model's own wait for
    /// the slowest call, hour by hour, far closer than the observation noise.
    #[test]
    fn dependency_wait_tracks_the_world_model() {
        let (_directory, fleet, matrix) = stored_fleet(40, 20, 11);
        let config = &fleet.config;
        let wait = column(&matrix, "dependency_wait_ms");

        let specs = fleet.specs();
        let regions = config.regions.len();
        let codes = config.regions.codes();
        let cap = crate::simulate::UTILIZATION_CAP;
        let (mut squares, mut noise_squares, mut rows) = (0.0, 0.0, 0.0);
        for day in 0..config.days {
            let placement = generate::history_placement(&fleet, day);
            let world = crate::simulate::World {
                services: &specs,
                regions,
                rtt_ms: fleet.rtt_on(day),
            };
            // Traffic-weighted true wait per (service, host) over the day.
            let mut weighted = vec![0.0; specs.len() * regions];
            let mut weights = vec![0.0; specs.len() * regions];
            for hour in day * 24..(day + 1) * 24 {
                let demand: Vec<f64> = (0..specs.len() * regions)
                    .map(|cell| f64::from(fleet.traffic_at(cell / regions, cell % regions, hour)))
                    .collect();
                let evaluation = crate::simulate::evaluate(&world, &placement, &demand).unwrap();
                for cell in 0..specs.len() * regions {
                    let rps = evaluation.routed_rps[cell];
                    if rps <= 0.0 {
                        continue;
                    }
                    let own = specs[cell / regions].base_processing_ms
                        / (1.0 - evaluation.utilization[cell].min(cap));
                    weighted[cell] += rps * (evaluation.processing_ms[cell] - own);
                    weights[cell] += rps;
                }
            }
            for record in fleet.history.iter().filter(|r| r.day == day) {
                let cell = record.service * regions + record.region;
                if specs[record.service].dependencies.is_empty() || weights[cell] <= 0.0 {
                    continue;
                }
                let truth = weighted[cell] / weights[cell];
                let row = (0..matrix.rows())
                    .find(|&i| {
                        matrix.service_ids[i] == record.service as i64
                            && matrix.dates[i] == date_string(day)
                            && matrix.regions[i] == codes[record.region]
                    })
                    .unwrap();
                let estimate = matrix.row(row)[wait];
                squares += (estimate - truth) * (estimate - truth);
                let noise = record.latency_ms - record.expected_latency_ms;
                noise_squares += noise * noise;
                rows += 1.0;
            }
        }
        assert!(rows > 100.0, "{rows} rows with dependencies");
        let error = (squares / rows).sqrt();
        let noise = (noise_squares / rows).sqrt();
        assert!(
            error < 0.25 * noise,
            "wait estimate RMSE {error:.2} ms against observation noise {noise:.2} ms"
        );
    }
}
