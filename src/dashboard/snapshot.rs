//! What the dashboard shows, read from the database once and kept until the file changes.
//!
//! Every figure of every page is computed here from the stored tables, so the pages and the
//! JSON API show the same numbers. Queries that scan the telemetry run once per load, not
//! per request.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

/// Test predictions drawn at most in the predicted-versus-observed scatter; a larger test
/// set is thinned evenly, and the API reports how many rows there were.
pub const MAX_SCATTER_POINTS: usize = 2000;

/// Everything the pages and the API show, from one read of the database.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub overview: Overview,
    pub regions: RegionsView,
    /// The latest optimizer plan, with its run's random plan as the control.
    pub plan: Option<PlanView>,
    /// Per-service pages, by service id; empty without a plan.
    #[serde(skip)]
    pub services: BTreeMap<i64, ServiceView>,
    pub models: ModelsView,
    /// The latest experiment; `None` until `placewise experiment` has stored one.
    pub ab_test: Option<AbTestView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub counts: Counts,
    pub memory_tiers: Vec<MemoryTier>,
    pub latency_critical: CriticalShare,
    /// The ten services of highest mean traffic, highest first.
    pub top_services: Vec<ServiceTraffic>,
    pub traffic_by_hour: TrafficByHour,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub services: i64,
    pub regions: i64,
    /// Rows of `traffic_patterns`, `service_placement` and `regional_latency` together.
    pub telemetry_rows: i64,
    pub traffic_rows: i64,
    pub placement_rows: i64,
    pub latency_rows: i64,
    /// Rows of `models`: latency models and strategy classifiers.
    pub models: i64,
    pub plans: i64,
    pub experiments: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryTier {
    pub memory_mb: i64,
    pub services: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CriticalShare {
    pub services: i64,
    /// Latency-critical services over all services, 0 to 1.
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceTraffic {
    pub service_id: i64,
    pub service_name: String,
    /// Mean over the telemetry's hours, all origins together.
    pub mean_requests_per_second: f64,
}

/// Mean fleet traffic at each hour of the day (UTC), per origin region.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficByHour {
    pub hours: Vec<u32>,
    pub series: Vec<OriginSeries>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OriginSeries {
    pub origin_region: String,
    /// Requests per second of all services, one value per hour of `hours`.
    pub mean_requests_per_second: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionsView {
    pub regions: Vec<RegionInfo>,
    /// One cell per (source, target) pair of the stored daily RTT measurements.
    pub rtt: Vec<RttCell>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionInfo {
    pub region: String,
    pub city: String,
    pub country: String,
    pub latitude: f64,
    pub longitude: f64,
    /// One m5.large on demand, USD per hour; `None` where the catalog has no price.
    pub usd_per_hour: Option<f64>,
    pub internet_usd_per_gb: Option<f64>,
    /// Share of the fleet's requests that originate here, 0 to 1.
    pub traffic_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RttCell {
    pub source_region: String,
    pub target_region: String,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Sample standard deviation over the days (n - 1 in the denominator); 0 for one day.
    pub std_ms: f64,
    pub days: i64,
}

/// A stored plan's totals, as `plans` holds them.
#[derive(Debug, Clone, Serialize)]
pub struct PlanTotals {
    pub plan_id: i64,
    pub run_id: i64,
    pub kind: String,
    pub objective: f64,
    pub monthly_cost_usd: f64,
    pub weighted_latency_ms: f64,
    /// The plan measured in the world model.
    pub world: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanView {
    pub plan: PlanTotals,
    pub control: Option<PlanTotals>,
    /// Every plan of the optimizer's run: optimizer, random, heuristic, greedy.
    pub run_plans: Vec<PlanTotals>,
    pub services: Vec<PlanRow>,
}

/// One service under the plan and under the control.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRow {
    pub service_id: i64,
    pub service_name: String,
    pub template: String,
    pub latency_critical: bool,
    pub regions: Vec<String>,
    pub instances: i64,
    /// Mean of the hosts' predicted latency weighted by their routed share, in ms.
    pub predicted_latency_ms: f64,
    pub monthly_cost_usd: f64,
    pub control_regions: Vec<String>,
    pub control_instances: i64,
    pub control_latency_ms: Option<f64>,
    pub control_cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub region: String,
    pub instances: i64,
    pub routed_share: f64,
    pub predicted_latency_ms: f64,
    pub monthly_cost_usd: f64,
}

/// Where the users of one origin region are sent: the hosting region of lowest mean RTT,
/// ties to the region listed first, as the optimizer and the world model route.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub origin_region: String,
    /// Share of the service's requests that come from this origin, 0 to 1.
    pub demand_share: f64,
    pub plan_region: Option<String>,
    pub plan_rtt_ms: Option<f64>,
    pub control_region: Option<String>,
    pub control_rtt_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Neighbour {
    pub service_id: i64,
    pub service_name: String,
    /// Regions that host it under the plan.
    pub plan_regions: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub service_id: i64,
    pub service_name: String,
    pub template: String,
    pub memory_mb: i64,
    pub cores: f64,
    pub latency_critical: bool,
    pub mean_requests_per_second: f64,
    pub plan_id: i64,
    pub control_plan_id: Option<i64>,
    pub plan_hosts: Vec<HostRow>,
    pub control_hosts: Vec<HostRow>,
    pub routing: Vec<Route>,
    /// Services this one calls.
    pub dependencies: Vec<Neighbour>,
    /// Services that call this one.
    pub dependents: Vec<Neighbour>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelsView {
    pub latency: Option<LatencyModelView>,
    pub strategy: Option<StrategyView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyModelView {
    pub model_id: i64,
    pub run_id: i64,
    /// The model, the training-mean baseline and the oracle on the held-out rows.
    pub scores: Vec<Score>,
    /// The `metrics` column as stored.
    pub metrics: Value,
    pub hyperparameters: Value,
    pub feature_importance: Vec<FeatureGain>,
    pub predictions: Predictions,
}

#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub name: String,
    pub rmse_ms: Option<f64>,
    pub mae_ms: Option<f64>,
    pub r2: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureGain {
    pub feature: String,
    pub gain: f64,
    /// Gain over the total gain of all features, 0 to 1.
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Predictions {
    /// Test rows stored.
    pub rows: usize,
    /// `[observed_ms, predicted_ms]` pairs, at most [`MAX_SCATTER_POINTS`].
    pub points: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategyView {
    pub model_id: i64,
    pub run_id: i64,
    /// Class names of the rows and columns of `confusion`.
    pub labels: [&'static str; 2],
    /// Counts, actual class by row and predicted class by column.
    pub confusion: Vec<Vec<i64>>,
    /// The `metrics` column as stored: accuracy, precision, recall and their baselines.
    pub metrics: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct AbTestView {
    pub experiment_id: i64,
    pub run_id: i64,
    pub design: String,
    pub control: String,
    pub treatment: String,
    /// A plain statement of what was compared and what the result means.
    pub summary: String,
    /// The six metrics of both arms, in the order of the original study's table.
    pub comparison: Vec<ComparisonRow>,
    pub services: Vec<ExperimentService>,
    pub latency_histogram: LatencyHistogram,
    /// The stored document, every key included.
    pub document: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComparisonRow {
    pub key: String,
    pub metric: String,
    pub control: Option<f64>,
    pub treatment: Option<f64>,
    /// Treatment over control minus one, in percent; `None` when control is zero.
    pub change_pct: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ArmService {
    pub requests: Option<i64>,
    pub mean_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub monthly_cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExperimentService {
    pub service_id: i64,
    pub service_name: Option<String>,
    pub critical: bool,
    pub control: ArmService,
    pub treatment: ArmService,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistogramBin {
    pub bin_low_ms: f64,
    pub bin_high_ms: f64,
    pub requests: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyHistogram {
    pub control: Vec<HistogramBin>,
    pub treatment: Vec<HistogramBin>,
}

/// Keys and labels of the per-arm metrics: the original study's comparison table, and the
/// cost per service, which compares arms that hold different services (the split design).
const ARM_METRICS: [(&str, &str); 7] = [
    ("avg_latency_ms", "Average latency (ms)"),
    ("total_cost", "Total cost (USD)"),
    ("mean_cost_per_service_usd", "Cost per service (USD/month)"),
    ("total_placement_pairs", "Placement pairs"),
    ("total_requests", "Requests"),
    ("redundancy_score", "Redundancy score"),
    (
        "critical_services_latency_ms",
        "Critical service latency (ms)",
    ),
];

impl Snapshot {
    /// Reads every figure from `connection`. Fails with `QueryReturnedNoRows` never: a
    /// table without rows gives an empty figure, and a missing results table reads as
    /// empty too, so a database of an older schema still loads.
    pub fn load(connection: &Connection) -> rusqlite::Result<Snapshot> {
        let traffic = Traffic::load(connection)?;
        let regions = load_regions(connection, &traffic)?;
        let overview = load_overview(connection, &traffic)?;
        let plan = load_plan(connection)?;
        let services = match &plan {
            Some(plan) => load_services(connection, plan, &traffic)?,
            None => BTreeMap::new(),
        };
        Ok(Snapshot {
            overview,
            regions,
            plan,
            services,
            models: ModelsView {
                latency: load_latency_model(connection)?,
                strategy: load_strategy(connection)?,
            },
            ab_test: load_ab_test(connection)?,
        })
    }

    /// Returns whether the database contains any result of `train` or `optimize`.
    pub fn has_results(&self) -> bool {
        self.plan.is_some() || self.models.latency.is_some() || self.models.strategy.is_some()
    }
}

/// Treats a missing table as an empty result, for results tables that older databases or
/// branches of the schema lack.
fn tolerate_missing<T>(result: rusqlite::Result<T>, empty: T) -> rusqlite::Result<T> {
    match result {
        Err(rusqlite::Error::SqliteFailure(_, Some(ref message)))
            if message.starts_with("no such table") =>
        {
            Ok(empty)
        }
        other => other,
    }
}

fn count(connection: &Connection, table: &str) -> rusqlite::Result<i64> {
    let result = connection.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
        row.get(0)
    });
    tolerate_missing(result, 0)
}

/// Aggregates of `traffic_patterns`, from two scans of the table.
struct Traffic {
    /// Regions in catalog order (`regions` rowid), the order ties are broken in.
    region_order: Vec<String>,
    /// Sum of requests per second over the hours, by (service, origin).
    by_service_origin: HashMap<(i64, String), f64>,
    /// Sum of requests per second, by (origin, hour of day).
    by_origin_hour: HashMap<(String, u32), f64>,
    /// Distinct hourly timestamps.
    hours: i64,
}

impl Traffic {
    fn load(connection: &Connection) -> rusqlite::Result<Traffic> {
        let region_order = connection
            .prepare("SELECT region FROM regions ORDER BY rowid")?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        // One pass in table order, summed here. Two GROUP BY queries, which each sort the
        // table, made loading the default fleet (1.6 million rows) take 3.8 s, not 1.3 s.
        let mut sums: HashMap<(i64, usize), f64> = HashMap::new();
        let mut hourly: HashMap<(usize, u32), f64> = HashMap::new();
        let mut timestamps = std::collections::HashSet::new();
        let mut statement = connection.prepare(
            "SELECT service_id, origin_region, timestamp, requests_per_second
             FROM traffic_patterns",
        )?;
        let mut rows = statement.query([])?;
        let mut origin = 0;
        while let Some(row) = rows.next()? {
            let code = row.get_ref(1)?.as_str()?;
            if region_order.get(origin).is_none_or(|r| r != code) {
                let Some(found) = region_order.iter().position(|r| r == code) else {
                    continue;
                };
                origin = found;
            }
            let timestamp: i64 = row.get(2)?;
            let requests: f64 = row.get(3)?;
            *sums.entry((row.get(0)?, origin)).or_default() += requests;
            *hourly
                .entry((origin, (timestamp / 3600).rem_euclid(24) as u32))
                .or_default() += requests;
            timestamps.insert(timestamp);
        }
        let by_service_origin = sums
            .into_iter()
            .map(|((service, origin), sum)| ((service, region_order[origin].clone()), sum))
            .collect();
        let by_origin_hour = hourly
            .into_iter()
            .map(|((origin, hour), sum)| ((region_order[origin].clone(), hour), sum))
            .collect();
        let hours = timestamps.len() as i64;
        Ok(Traffic {
            region_order,
            by_service_origin,
            by_origin_hour,
            hours,
        })
    }

    fn origin_total(&self, origin: &str) -> f64 {
        self.by_origin_hour
            .iter()
            .filter(|((o, _), _)| o == origin)
            .map(|(_, sum)| sum)
            .sum()
    }

    fn total(&self) -> f64 {
        self.by_origin_hour.values().sum()
    }

    fn service_total(&self, service_id: i64) -> f64 {
        self.region_order
            .iter()
            .filter_map(|o| self.by_service_origin.get(&(service_id, o.clone())))
            .sum()
    }
}

fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

fn load_overview(connection: &Connection, traffic: &Traffic) -> rusqlite::Result<Overview> {
    let traffic_rows = count(connection, "traffic_patterns")?;
    let placement_rows = count(connection, "service_placement")?;
    let latency_rows = count(connection, "regional_latency")?;
    let counts = Counts {
        services: count(connection, "services")?,
        regions: count(connection, "regions")?,
        telemetry_rows: traffic_rows + placement_rows + latency_rows,
        traffic_rows,
        placement_rows,
        latency_rows,
        models: count(connection, "models")?,
        plans: count(connection, "plans")?,
        experiments: count(connection, "experiments")?,
    };

    let memory_tiers = connection
        .prepare("SELECT memory_mb, COUNT(*) FROM services GROUP BY memory_mb ORDER BY memory_mb")?
        .query_map([], |row| {
            Ok(MemoryTier {
                memory_mb: row.get(0)?,
                services: row.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let critical: i64 = connection.query_row(
        "SELECT COUNT(*) FROM services WHERE latency_critical != 0",
        [],
        |row| row.get(0),
    )?;

    let names = service_names(connection)?;
    let hours = traffic.hours.max(1) as f64;
    let mut top_services: Vec<ServiceTraffic> = names
        .iter()
        .map(|(&service_id, name)| ServiceTraffic {
            service_id,
            service_name: name.clone(),
            mean_requests_per_second: traffic.service_total(service_id) / hours,
        })
        .collect();
    top_services.sort_by(|a, b| {
        b.mean_requests_per_second
            .total_cmp(&a.mean_requests_per_second)
            .then(a.service_id.cmp(&b.service_id))
    });
    top_services.truncate(10);

    let days = (traffic.hours as f64 / 24.0).max(1.0);
    let series = traffic
        .region_order
        .iter()
        .map(|origin| OriginSeries {
            origin_region: origin.clone(),
            mean_requests_per_second: (0..24)
                .map(|hour| {
                    traffic
                        .by_origin_hour
                        .get(&(origin.clone(), hour))
                        .copied()
                        .unwrap_or(0.0)
                        / days
                })
                .collect(),
        })
        .collect();

    Ok(Overview {
        latency_critical: CriticalShare {
            services: critical,
            share: share(critical as f64, counts.services as f64),
        },
        counts,
        memory_tiers,
        top_services,
        traffic_by_hour: TrafficByHour {
            hours: (0..24).collect(),
            series,
        },
    })
}

fn service_names(connection: &Connection) -> rusqlite::Result<BTreeMap<i64, String>> {
    connection
        .prepare("SELECT service_id, service_name FROM services")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect()
}

fn load_regions(connection: &Connection, traffic: &Traffic) -> rusqlite::Result<RegionsView> {
    let total = traffic.total();
    let regions = connection
        .prepare(
            "SELECT region, city, country, latitude, longitude, usd_per_hour,
                    internet_usd_per_gb
             FROM regions ORDER BY rowid",
        )?
        .query_map([], |row| {
            let region: String = row.get(0)?;
            Ok(RegionInfo {
                traffic_share: share(traffic.origin_total(&region), total),
                region,
                city: row.get(1)?,
                country: row.get(2)?,
                latitude: row.get(3)?,
                longitude: row.get(4)?,
                usd_per_hour: row.get(5)?,
                internet_usd_per_gb: row.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;

    // Welford's update per pair: one pass, and stable where the days differ little.
    let mut statement = connection.prepare(
        "SELECT source_region, target_region, rtt_ms FROM regional_latency
         ORDER BY source_region, target_region",
    )?;
    let mut rows = statement.query([])?;
    let mut rtt: Vec<RttCell> = Vec::new();
    let mut m2 = 0.0;
    while let Some(row) = rows.next()? {
        let source: String = row.get(0)?;
        let target: String = row.get(1)?;
        let value: f64 = row.get(2)?;
        let same = rtt
            .last()
            .is_some_and(|c| c.source_region == source && c.target_region == target);
        if !same {
            finish_cell(rtt.last_mut(), m2);
            rtt.push(RttCell {
                source_region: source,
                target_region: target,
                mean_ms: 0.0,
                min_ms: value,
                max_ms: value,
                std_ms: 0.0,
                days: 0,
            });
            m2 = 0.0;
        }
        let cell = rtt.last_mut().expect("a cell was pushed");
        cell.days += 1;
        let delta = value - cell.mean_ms;
        cell.mean_ms += delta / cell.days as f64;
        m2 += delta * (value - cell.mean_ms);
        cell.min_ms = cell.min_ms.min(value);
        cell.max_ms = cell.max_ms.max(value);
    }
    finish_cell(rtt.last_mut(), m2);
    Ok(RegionsView { regions, rtt })
}

fn finish_cell(cell: Option<&mut RttCell>, m2: f64) {
    if let Some(cell) = cell {
        if cell.days > 1 {
            cell.std_ms = (m2 / (cell.days - 1) as f64).sqrt();
        }
    }
}

fn plan_totals(row: &rusqlite::Row) -> rusqlite::Result<PlanTotals> {
    let world: String = row.get(6)?;
    Ok(PlanTotals {
        plan_id: row.get(0)?,
        run_id: row.get(1)?,
        kind: row.get(2)?,
        objective: row.get(3)?,
        monthly_cost_usd: row.get(4)?,
        weighted_latency_ms: row.get(5)?,
        world: serde_json::from_str(&world).unwrap_or(Value::Null),
    })
}

const PLAN_COLUMNS: &str =
    "plan_id, run_id, kind, objective, monthly_cost_usd, weighted_latency_ms, world";

fn load_plan(connection: &Connection) -> rusqlite::Result<Option<PlanView>> {
    let latest = connection
        .query_row(
            &format!(
                "SELECT {PLAN_COLUMNS} FROM plans WHERE kind = 'optimizer'
                 ORDER BY plan_id DESC LIMIT 1"
            ),
            [],
            plan_totals,
        )
        .optional();
    let Some(plan) = tolerate_missing(latest, None)? else {
        return Ok(None);
    };
    let run_plans = connection
        .prepare(&format!(
            "SELECT {PLAN_COLUMNS} FROM plans WHERE run_id = ?1 ORDER BY plan_id"
        ))?
        .query_map([plan.run_id], plan_totals)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let control = run_plans.iter().find(|p| p.kind == "random").cloned();

    let hosts = plan_hosts(connection, plan.plan_id)?;
    let control_hosts = match &control {
        Some(control) => plan_hosts(connection, control.plan_id)?,
        None => HashMap::new(),
    };
    let mut statement = connection.prepare(
        "SELECT service_id, service_name, template, latency_critical FROM services
         ORDER BY service_id",
    )?;
    let services = statement
        .query_map([], |row| {
            let service_id: i64 = row.get(0)?;
            let planned = hosts.get(&service_id).map(Vec::as_slice).unwrap_or(&[]);
            let controlled = control_hosts.get(&service_id).map(Vec::as_slice);
            Ok(PlanRow {
                service_id,
                service_name: row.get(1)?,
                template: row.get(2)?,
                latency_critical: row.get::<_, i64>(3)? != 0,
                regions: planned.iter().map(|h| h.region.clone()).collect(),
                instances: planned.iter().map(|h| h.instances).sum(),
                predicted_latency_ms: weighted_latency(planned),
                monthly_cost_usd: planned.iter().map(|h| h.monthly_cost_usd).sum(),
                control_regions: controlled
                    .unwrap_or(&[])
                    .iter()
                    .map(|h| h.region.clone())
                    .collect(),
                control_instances: controlled.unwrap_or(&[]).iter().map(|h| h.instances).sum(),
                control_latency_ms: controlled.map(weighted_latency),
                control_cost_usd: controlled.map(|c| c.iter().map(|h| h.monthly_cost_usd).sum()),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(PlanView {
        plan,
        control,
        run_plans,
        services,
    }))
}

fn weighted_latency(hosts: &[HostRow]) -> f64 {
    let total: f64 = hosts.iter().map(|h| h.routed_share).sum();
    let weighted: f64 = hosts
        .iter()
        .map(|h| h.routed_share * h.predicted_latency_ms)
        .sum();
    share(weighted, total)
}

/// Hosts of a plan by service, in catalog region order.
fn plan_hosts(
    connection: &Connection,
    plan_id: i64,
) -> rusqlite::Result<HashMap<i64, Vec<HostRow>>> {
    let mut statement = connection.prepare(
        "SELECT h.service_id, h.region, h.instances, h.routed_share, h.predicted_latency_ms,
                h.monthly_cost_usd
         FROM plan_hosts h LEFT JOIN regions r ON r.region = h.region
         WHERE h.plan_id = ?1 ORDER BY h.service_id, r.rowid",
    )?;
    let mut hosts: HashMap<i64, Vec<HostRow>> = HashMap::new();
    let mut rows = statement.query([plan_id])?;
    while let Some(row) = rows.next()? {
        hosts.entry(row.get(0)?).or_default().push(HostRow {
            region: row.get(1)?,
            instances: row.get(2)?,
            routed_share: row.get(3)?,
            predicted_latency_ms: row.get(4)?,
            monthly_cost_usd: row.get(5)?,
        });
    }
    Ok(hosts)
}

fn load_services(
    connection: &Connection,
    plan: &PlanView,
    traffic: &Traffic,
) -> rusqlite::Result<BTreeMap<i64, ServiceView>> {
    let mean_rtt: HashMap<(String, String), f64> = connection
        .prepare(
            "SELECT source_region, target_region, AVG(rtt_ms) FROM regional_latency
             GROUP BY source_region, target_region",
        )?
        .query_map([], |row| Ok(((row.get(0)?, row.get(1)?), row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let hosts = plan_hosts(connection, plan.plan.plan_id)?;
    let control_hosts = match &plan.control {
        Some(control) => plan_hosts(connection, control.plan_id)?,
        None => HashMap::new(),
    };
    let mut calls: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut callers: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut statement = connection.prepare(
        "SELECT service_id, depends_on_id FROM service_dependencies
         ORDER BY service_id, depends_on_id",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (caller, callee): (i64, i64) = (row.get(0)?, row.get(1)?);
        calls.entry(caller).or_default().push(callee);
        callers.entry(callee).or_default().push(caller);
    }
    let names: HashMap<i64, &PlanRow> = plan.services.iter().map(|s| (s.service_id, s)).collect();
    let neighbours = |ids: Option<&Vec<i64>>| -> Vec<Neighbour> {
        ids.map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|id| Neighbour {
                service_id: *id,
                service_name: names
                    .get(id)
                    .map(|s| s.service_name.clone())
                    .unwrap_or_default(),
                plan_regions: names.get(id).map(|s| s.regions.clone()).unwrap_or_default(),
            })
            .collect()
    };
    let hours = traffic.hours.max(1) as f64;

    let mut services = BTreeMap::new();
    let mut statement = connection.prepare(
        "SELECT service_id, service_name, template, memory_mb, cores, latency_critical
         FROM services ORDER BY service_id",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let service_id: i64 = row.get(0)?;
        let planned = hosts.get(&service_id).cloned().unwrap_or_default();
        let controlled = control_hosts.get(&service_id).cloned().unwrap_or_default();
        let total = traffic.service_total(service_id);
        let routing = traffic
            .region_order
            .iter()
            .map(|origin| {
                let demand = traffic
                    .by_service_origin
                    .get(&(service_id, origin.clone()))
                    .copied()
                    .unwrap_or(0.0);
                let (plan_region, plan_rtt_ms) = nearest(origin, &planned, traffic, &mean_rtt);
                let (control_region, control_rtt_ms) =
                    nearest(origin, &controlled, traffic, &mean_rtt);
                Route {
                    origin_region: origin.clone(),
                    demand_share: share(demand, total),
                    plan_region,
                    plan_rtt_ms,
                    control_region,
                    control_rtt_ms,
                }
            })
            .collect();
        services.insert(
            service_id,
            ServiceView {
                service_id,
                service_name: row.get(1)?,
                template: row.get(2)?,
                memory_mb: row.get(3)?,
                cores: row.get(4)?,
                latency_critical: row.get::<_, i64>(5)? != 0,
                mean_requests_per_second: total / hours,
                plan_id: plan.plan.plan_id,
                control_plan_id: plan.control.as_ref().map(|c| c.plan_id),
                plan_hosts: planned,
                control_hosts: controlled,
                routing,
                dependencies: neighbours(calls.get(&service_id)),
                dependents: neighbours(callers.get(&service_id)),
            },
        );
    }
    Ok(services)
}

/// Returns the host nearest to `origin` by mean RTT and that RTT; ties go to the region
/// listed first in the catalog order.
fn nearest(
    origin: &str,
    hosts: &[HostRow],
    traffic: &Traffic,
    mean_rtt: &HashMap<(String, String), f64>,
) -> (Option<String>, Option<f64>) {
    let position = |region: &str| traffic.region_order.iter().position(|r| r == region);
    let mut best: Option<(&str, f64)> = None;
    for host in hosts {
        let Some(&rtt) = mean_rtt.get(&(origin.to_string(), host.region.clone())) else {
            continue;
        };
        let better = match best {
            None => true,
            Some((region, best_rtt)) => {
                rtt < best_rtt || (rtt == best_rtt && position(&host.region) < position(region))
            }
        };
        if better {
            best = Some((&host.region, rtt));
        }
    }
    match best {
        Some((region, rtt)) => (Some(region.to_string()), Some(rtt)),
        None => (None, None),
    }
}

/// Reads the latest model of `kind`: id, run, stored metrics and hyperparameters.
fn latest_model(
    connection: &Connection,
    kind: &str,
) -> rusqlite::Result<Option<(i64, i64, Value, Value)>> {
    let row = connection
        .query_row(
            "SELECT model_id, run_id, metrics, hyperparameters FROM models
             WHERE kind = ?1 ORDER BY model_id DESC LIMIT 1",
            [kind],
            |row| {
                let metrics: String = row.get(2)?;
                let hyperparameters: String = row.get(3)?;
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    serde_json::from_str(&metrics).unwrap_or(Value::Null),
                    serde_json::from_str(&hyperparameters).unwrap_or(Value::Null),
                ))
            },
        )
        .optional();
    tolerate_missing(row, None)
}

fn score(name: &str, metrics: &Value) -> Score {
    Score {
        name: name.to_string(),
        rmse_ms: metrics["rmse"].as_f64(),
        mae_ms: metrics["mae"].as_f64(),
        r2: metrics["r2"].as_f64(),
    }
}

fn load_latency_model(connection: &Connection) -> rusqlite::Result<Option<LatencyModelView>> {
    let Some((model_id, run_id, metrics, hyperparameters)) = latest_model(connection, "latency")?
    else {
        return Ok(None);
    };
    let mut feature_importance = connection
        .prepare("SELECT feature, gain FROM model_feature_importance WHERE model_id = ?1")?
        .query_map([model_id], |row| {
            Ok(FeatureGain {
                feature: row.get(0)?,
                gain: row.get(1)?,
                share: 0.0,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let total_gain: f64 = feature_importance.iter().map(|f| f.gain).sum();
    for feature in &mut feature_importance {
        feature.share = share(feature.gain, total_gain);
    }
    feature_importance.sort_by(|a, b| b.gain.total_cmp(&a.gain).then(a.feature.cmp(&b.feature)));

    let all: Vec<[f64; 2]> = connection
        .prepare(
            "SELECT observed_ms, predicted_ms FROM model_predictions WHERE model_id = ?1
             ORDER BY service_id, date, region",
        )?
        .query_map([model_id], |row| Ok([row.get(0)?, row.get(1)?]))?
        .collect::<rusqlite::Result<_>>()?;
    let rows = all.len();
    let points = if rows <= MAX_SCATTER_POINTS {
        all
    } else {
        (0..MAX_SCATTER_POINTS)
            .map(|i| all[i * rows / MAX_SCATTER_POINTS])
            .collect()
    };
    Ok(Some(LatencyModelView {
        model_id,
        run_id,
        scores: vec![
            score("model", &metrics["test"]),
            score("mean baseline", &metrics["mean_baseline"]),
            score("oracle", &metrics["oracle"]),
        ],
        metrics,
        hyperparameters,
        feature_importance,
        predictions: Predictions { rows, points },
    }))
}

fn load_strategy(connection: &Connection) -> rusqlite::Result<Option<StrategyView>> {
    let Some((model_id, run_id, metrics, _)) = latest_model(connection, "strategy")? else {
        return Ok(None);
    };
    let confusion = metrics["confusion"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map(|cells| cells.iter().filter_map(Value::as_i64).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(StrategyView {
        model_id,
        run_id,
        labels: ["single region", "several regions"],
        confusion,
        metrics,
    }))
}

fn load_ab_test(connection: &Connection) -> rusqlite::Result<Option<AbTestView>> {
    let row = connection
        .query_row(
            "SELECT experiment_id, run_id, design, control, treatment, document
             FROM experiments ORDER BY experiment_id DESC LIMIT 1",
            [],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                ))
            },
        )
        .optional();
    let Some((experiment_id, run_id, design, control, treatment, document)) =
        tolerate_missing(row, None)?
    else {
        return Ok(None);
    };
    let document: Value = serde_json::from_str(&document).unwrap_or(Value::Null);
    let comparison = comparison_rows(&document);
    let services = experiment_services(connection, experiment_id)?;
    let latency_histogram = LatencyHistogram {
        control: histogram(connection, experiment_id, "control")?,
        treatment: histogram(connection, experiment_id, "treatment")?,
    };
    Ok(Some(AbTestView {
        summary: super::summary::ab_test_sentence(&design, &control, &treatment, &document),
        experiment_id,
        run_id,
        design,
        control,
        treatment,
        comparison,
        services,
        latency_histogram,
        document,
    }))
}

fn comparison_rows(document: &Value) -> Vec<ComparisonRow> {
    let control = &document["control_metrics"];
    let treatment = &document["treatment_metrics"];
    ARM_METRICS
        .iter()
        .map(|(key, label)| {
            let control = control[key].as_f64();
            let treatment = treatment[key].as_f64();
            let change_pct = match (control, treatment) {
                (Some(c), Some(t)) if c != 0.0 => Some(100.0 * (t / c - 1.0)),
                _ => None,
            };
            ComparisonRow {
                key: key.to_string(),
                metric: label.to_string(),
                control,
                treatment,
                change_pct,
            }
        })
        .collect()
}

fn experiment_services(
    connection: &Connection,
    experiment_id: i64,
) -> rusqlite::Result<Vec<ExperimentService>> {
    let mut statement = connection.prepare(
        "SELECT e.service_id, s.service_name, e.arm, e.requests, e.mean_latency_ms,
                e.p95_latency_ms, e.monthly_cost_usd, e.critical
         FROM experiment_services e LEFT JOIN services s ON s.service_id = e.service_id
         WHERE e.experiment_id = ?1 ORDER BY e.service_id",
    )?;
    let mut services: Vec<ExperimentService> = Vec::new();
    let mut rows = statement.query([experiment_id])?;
    while let Some(row) = rows.next()? {
        let service_id: i64 = row.get(0)?;
        if services.last().is_none_or(|s| s.service_id != service_id) {
            services.push(ExperimentService {
                service_id,
                service_name: row.get(1)?,
                critical: false,
                control: ArmService::default(),
                treatment: ArmService::default(),
            });
        }
        let service = services.last_mut().expect("a service was pushed");
        let arm = ArmService {
            requests: row.get(3)?,
            mean_latency_ms: row.get(4)?,
            p95_latency_ms: row.get(5)?,
            monthly_cost_usd: row.get(6)?,
        };
        service.critical |= row.get::<_, Option<i64>>(7)?.unwrap_or(0) != 0;
        match row.get::<_, String>(2)?.as_str() {
            "control" => service.control = arm,
            "treatment" => service.treatment = arm,
            _ => {}
        }
    }
    Ok(services)
}

fn histogram(
    connection: &Connection,
    experiment_id: i64,
    arm: &str,
) -> rusqlite::Result<Vec<HistogramBin>> {
    let result = connection
        .prepare(
            "SELECT bin_low_ms, bin_high_ms, requests FROM experiment_latency_histogram
             WHERE experiment_id = ?1 AND arm = ?2 ORDER BY bin_low_ms",
        )
        .and_then(|mut statement| {
            statement
                .query_map(rusqlite::params![experiment_id, arm], |row| {
                    Ok(HistogramBin {
                        bin_low_ms: row.get(0)?,
                        bin_high_ms: row.get(1)?,
                        requests: row.get(2)?,
                    })
                })?
                .collect()
        });
    tolerate_missing(result, Vec::new())
}
