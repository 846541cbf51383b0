//! The plan checker: verifies a plan against the constraints and measures it in the world
//! model, independently of how the plan was made.
//!
//! It shares no code with the optimizer's scoring. Routing, load, latency and cost come
//! from [`crate::simulate`], hour by hour over the last week of the telemetry, with the
//! world model's own service costs.

use rusqlite::Connection;
use serde::Serialize;

use crate::generate::Fleet;
use crate::optimize::{OptimizeSettings, Plan};
use crate::simulate::{self, Host, Placement, ServiceSpec, World, HOURS_PER_MONTH};

/// Hours of telemetry a plan is measured over: the last week.
pub const EVALUATION_HOURS: usize = 168;

/// The world model of a stored fleet, with the demand a plan is measured under.
#[derive(Debug, Clone)]
pub struct WorldFleet {
    /// Services in ascending id order.
    pub service_ids: Vec<i64>,
    pub names: Vec<String>,
    pub specs: Vec<ServiceSpec>,
    pub regions: Vec<String>,
    /// Mean RTT over the history, row-major.
    pub rtt_ms: Vec<f64>,
    pub usd_per_hour: Vec<f64>,
    pub transfer_usd_per_gb: Vec<f64>,
    /// Demand per hour, each `services x regions` row-major.
    pub hours: Vec<Vec<f64>>,
    /// Busiest hour's demand of each (service, origin) over those hours.
    pub peak_rps: Vec<f64>,
}

/// Errors in reading the world model from the store.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("SQLite failed while reading the world model")]
    Sqlite(#[from] rusqlite::Error),
    #[error("region `{region}` has no instance price, so plans there cannot be costed\nhint: generate the fleet with priced regions (`placewise regions` marks them)")]
    Unpriced { region: String },
    #[error("service {service_id} has no row in `world_services`\nhint: the world model comes with a generated fleet; run `placewise generate`")]
    MissingWorld { service_id: i64 },
}

impl WorldFleet {
    /// Reads the world model and the last week of demand from a placewise database.
    pub fn load(connection: &Connection) -> Result<WorldFleet, WorldError> {
        let mut regions = Vec::new();
        let mut usd_per_hour = Vec::new();
        let mut statement =
            connection.prepare("SELECT region, usd_per_hour FROM regions ORDER BY rowid")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let region: String = row.get(0)?;
            let price: Option<f64> = row.get(1)?;
            let Some(price) = price else {
                return Err(WorldError::Unpriced { region });
            };
            regions.push(region);
            usd_per_hour.push(price);
        }
        let n = regions.len();
        let position = |code: &str| regions.iter().position(|r| r == code);
        let mut transfer = vec![0.0; n * n];
        let mut statement = connection.prepare(
            "SELECT source_region, target_region, transfer_usd_per_gb FROM region_pairs",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let (a, b): (String, String) = (row.get(0)?, row.get(1)?);
            if let (Some(i), Some(j)) = (position(&a), position(&b)) {
                transfer[i * n + j] = row.get(2)?;
            }
        }
        // The mean is summed here, day after day, rather than by SQL's `AVG`, so that
        // [`WorldFleet::from_fleet`] gets the same figures from the same samples.
        let mut rtt_sums = vec![0.0; n * n];
        let mut rtt_days = vec![0usize; n * n];
        let mut statement = connection.prepare(
            "SELECT source_region, target_region, rtt_ms FROM regional_latency
             ORDER BY source_region, target_region, date",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let (a, b): (String, String) = (row.get(0)?, row.get(1)?);
            if let (Some(i), Some(j)) = (position(&a), position(&b)) {
                rtt_sums[i * n + j] += row.get::<_, f64>(2)?;
                rtt_days[i * n + j] += 1;
            }
        }
        let rtt = rtt_sums
            .iter()
            .zip(&rtt_days)
            .map(|(&sum, &days)| if days > 0 { sum / days as f64 } else { 0.0 })
            .collect();

        let mut service_ids = Vec::new();
        let mut names = Vec::new();
        let mut specs = Vec::new();
        let mut statement = connection.prepare(
            "SELECT s.service_id, s.service_name, s.memory_mb, s.cores, s.latency_critical,
                    w.base_processing_ms, w.cpu_ms_per_request, w.call_response_kb
             FROM services s LEFT JOIN world_services w USING (service_id)
             ORDER BY s.service_id",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let service_id: i64 = row.get(0)?;
            let base: Option<f64> = row.get(5)?;
            let Some(base_processing_ms) = base else {
                return Err(WorldError::MissingWorld { service_id });
            };
            service_ids.push(service_id);
            names.push(row.get(1)?);
            specs.push(ServiceSpec {
                memory_mb: row.get(2)?,
                cores: row.get(3)?,
                latency_critical: row.get::<_, i64>(4)? != 0,
                base_processing_ms,
                cpu_ms_per_request: row.get(6)?,
                call_response_kb: row.get(7)?,
                dependencies: Vec::new(),
            });
        }
        let index = |id: i64| service_ids.binary_search(&id).ok();
        let mut statement = connection
            .prepare("SELECT service_id, depends_on_id FROM service_dependencies ORDER BY 1, 2")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            if let (Some(caller), Some(callee)) = (index(row.get(0)?), index(row.get(1)?)) {
                specs[caller].dependencies.push(callee);
            }
        }

        let last: Option<i64> =
            connection.query_row("SELECT MAX(timestamp) FROM traffic_patterns", [], |row| {
                row.get(0)
            })?;
        let last = last.unwrap_or(0);
        let first = last - (EVALUATION_HOURS as i64 - 1) * 3600;
        let cells = specs.len() * n;
        let mut hours = vec![vec![0.0; cells]; EVALUATION_HOURS];
        let mut statement = connection.prepare(
            "SELECT service_id, origin_region, timestamp, requests_per_second
             FROM traffic_patterns WHERE timestamp >= ?1",
        )?;
        let mut rows = statement.query([first])?;
        while let Some(row) = rows.next()? {
            let origin: String = row.get(1)?;
            let (Some(service), Some(origin)) = (index(row.get(0)?), position(&origin)) else {
                continue;
            };
            let hour = ((row.get::<_, i64>(2)? - first) / 3600) as usize;
            if hour < EVALUATION_HOURS {
                hours[hour][service * n + origin] = row.get(3)?;
            }
        }
        Ok(WorldFleet {
            service_ids,
            names,
            specs,
            regions,
            rtt_ms: rtt,
            usd_per_hour,
            transfer_usd_per_gb: transfer,
            peak_rps: peak_rps(&hours),
            hours,
        })
    }

    /// Builds the world model of a generated fleet without a database: the same figures,
    /// bit for bit, that [`WorldFleet::load`] reads from the database `generate` writes
    /// for it. Hours before the first are zero when the fleet has fewer than
    /// [`EVALUATION_HOURS`].
    pub fn from_fleet(fleet: &Fleet) -> Result<WorldFleet, WorldError> {
        let set = &fleet.config.regions;
        let regions = set.len();
        let mut usd_per_hour = Vec::with_capacity(regions);
        for region in &set.regions {
            let Some(price) = region.usd_per_hour else {
                return Err(WorldError::Unpriced {
                    region: region.code.clone(),
                });
            };
            usd_per_hour.push(price);
        }
        let days = fleet.config.days;
        let mut rtt_ms = vec![0.0; regions * regions];
        for day in 0..days {
            for (sum, &value) in rtt_ms.iter_mut().zip(fleet.rtt_on(day)) {
                *sum += value;
            }
        }
        for mean in &mut rtt_ms {
            *mean /= days as f64;
        }

        let services = fleet.services.len();
        let recorded = fleet.hours();
        let mut hours = vec![vec![0.0; services * regions]; EVALUATION_HOURS];
        for (k, demand) in hours.iter_mut().enumerate() {
            let Some(hour) = (recorded + k).checked_sub(EVALUATION_HOURS) else {
                continue;
            };
            for service in 0..services {
                for origin in 0..regions {
                    demand[service * regions + origin] =
                        f64::from(fleet.traffic_at(service, origin, hour));
                }
            }
        }
        let mut specs = fleet.specs();
        // The store lists each service's dependencies by id.
        for spec in &mut specs {
            spec.dependencies.sort_unstable();
        }
        Ok(WorldFleet {
            service_ids: (0..services as i64).collect(),
            names: fleet.services.iter().map(|s| s.name.clone()).collect(),
            specs,
            regions: set.codes().iter().map(|c| c.to_string()).collect(),
            rtt_ms,
            usd_per_hour,
            transfer_usd_per_gb: set.transfer_usd_per_gb.clone(),
            peak_rps: peak_rps(&hours),
            hours,
        })
    }

    fn world(&self) -> World<'_> {
        World {
            services: &self.specs,
            regions: self.regions.len(),
            rtt_ms: &self.rtt_ms,
        }
    }
}

/// Returns each (service, origin)'s busiest hour of demand over `hours`.
fn peak_rps(hours: &[Vec<f64>]) -> Vec<f64> {
    let mut peak_rps = vec![0.0f64; hours.first().map_or(0, Vec::len)];
    for hour in hours {
        for (peak, &value) in peak_rps.iter_mut().zip(hour) {
            *peak = peak.max(value);
        }
    }
    peak_rps
}

/// The figures of a plan in the world model over the evaluation week.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WorldScore {
    /// Instances and transfer at the week's mean hourly cost, in USD per month.
    pub monthly_cost_usd: f64,
    /// Expected latency weighted by requests over services, origins and hours, in ms.
    pub weighted_latency_ms: f64,
    /// The same for latency-critical services only.
    pub critical_latency_ms: f64,
    /// Expected fraction of failed requests.
    pub error_rate: f64,
    /// Highest hourly CPU utilization of any host.
    pub peak_utilization: f64,
    /// Origins of latency-critical services whose latency in the world model is above
    /// `--slo-ms`, with the highest such latency. The optimizer holds the SLO on the
    /// latency model's predictions, so prediction error can put an origin over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo_misses: Option<SloMisses>,
}

/// The origins at which a plan misses the latency SLO in the world model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SloMisses {
    pub slo_ms: f64,
    /// (service, origin) pairs of latency-critical services with demand.
    pub origins: usize,
    /// Those whose request-weighted latency in the world model is above the SLO.
    pub missed: usize,
    /// The highest such latency, in ms; absent when none misses.
    pub worst_ms: Option<f64>,
}

/// One way in which a plan breaks the constraints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub service: String,
    pub constraint: String,
    pub detail: String,
}

struct Found<'a> {
    names: &'a [String],
    violations: Vec<Violation>,
}

impl Found<'_> {
    fn add(&mut self, service: usize, constraint: String, detail: String) {
        self.violations.push(Violation {
            service: self.names.get(service).cloned().unwrap_or_default(),
            constraint,
            detail,
        });
    }
}

/// Converts a plan to the world model's placement.
pub fn placement(plan: &Plan) -> Placement {
    Placement {
        hosts: plan
            .hosts
            .iter()
            .map(|hosts| {
                hosts
                    .iter()
                    .map(|h| Host {
                        region: h.region,
                        instances: h.instances,
                    })
                    .collect()
            })
            .collect(),
    }
}

/// Checks `plan` against the constraints of `settings` and measures it in the world model.
/// `allowed` lists each service's permitted regions (`None` for all). Returns every
/// violation found, or the plan's world score when there is none.
pub fn check(
    fleet: &WorldFleet,
    plan: &Plan,
    settings: &OptimizeSettings,
    allowed: &[Option<Vec<bool>>],
) -> Result<WorldScore, Vec<Violation>> {
    let regions = fleet.regions.len();
    let mut found = Found {
        names: &fleet.names,
        violations: Vec::new(),
    };
    if plan.hosts.len() != fleet.specs.len() {
        found.add(
            0,
            "one entry per service".to_string(),
            format!(
                "{} entries for {} services",
                plan.hosts.len(),
                fleet.specs.len()
            ),
        );
        return Err(found.violations);
    }
    let mut vcpus = vec![0.0; regions];
    for (service, hosts) in plan.hosts.iter().enumerate() {
        let count = hosts.len();
        if count < settings.min_replicas || count > settings.max_replicas {
            found.add(
                service,
                format!(
                    "{} to {} replicas",
                    settings.min_replicas, settings.max_replicas
                ),
                format!("{count} regions"),
            );
        }
        for (k, host) in hosts.iter().enumerate() {
            if host.region >= regions || hosts[..k].iter().any(|h| h.region == host.region) {
                found.add(
                    service,
                    "distinct regions of the fleet".to_string(),
                    format!("region index {}", host.region),
                );
                continue;
            }
            if host.instances == 0 {
                found.add(
                    service,
                    "at least one instance per host".to_string(),
                    fleet.regions[host.region].clone(),
                );
            }
            if let Some(mask) = &allowed[service] {
                if !mask[host.region] {
                    found.add(
                        service,
                        "allowed regions".to_string(),
                        format!("hosted in {}", fleet.regions[host.region]),
                    );
                }
            }
            vcpus[host.region] += f64::from(host.instances) * fleet.specs[service].cores;
        }
    }
    if let Some(capacity) = settings.capacity_vcpus {
        for (r, &used) in vcpus.iter().enumerate() {
            if used > capacity + 1e-9 {
                found.add(
                    0,
                    format!("--capacity-vcpus {capacity}"),
                    format!("{} uses {used} vCPUs", fleet.regions[r]),
                );
            }
        }
    }
    if !found.violations.is_empty() {
        return Err(found.violations);
    }

    let world = fleet.world();
    let placement = placement(plan);
    let mut score = WorldScore {
        monthly_cost_usd: 0.0,
        weighted_latency_ms: 0.0,
        critical_latency_ms: 0.0,
        error_rate: 0.0,
        peak_utilization: 0.0,
        slo_misses: None,
    };
    let (mut requests, mut critical_requests) = (0.0, 0.0);
    let mut origin_latency = vec![0.0; fleet.specs.len() * regions];
    let mut origin_requests = vec![0.0; fleet.specs.len() * regions];
    for demand in &fleet.hours {
        let evaluation = match simulate::evaluate(&world, &placement, demand) {
            Ok(evaluation) => evaluation,
            Err(error) => {
                found.add(0, "a valid placement".to_string(), error.to_string());
                return Err(found.violations);
            }
        };
        let cost = simulate::hourly_cost(
            &world,
            &placement,
            &evaluation,
            &fleet.usd_per_hour,
            &fleet.transfer_usd_per_gb,
        )
        .expect("the placement was validated");
        score.monthly_cost_usd += cost.total() * HOURS_PER_MONTH / fleet.hours.len() as f64;
        for (cell, &rps) in demand.iter().enumerate() {
            let latency = evaluation.user_latency_ms[cell];
            requests += rps;
            score.weighted_latency_ms += rps * latency;
            score.error_rate += rps * evaluation.user_error_rate[cell];
            origin_latency[cell] += rps * latency;
            origin_requests[cell] += rps;
            if fleet.specs[cell / regions].latency_critical {
                critical_requests += rps;
                score.critical_latency_ms += rps * latency;
            }
        }
        for &utilization in &evaluation.utilization {
            score.peak_utilization = score.peak_utilization.max(utilization);
        }
    }
    if requests > 0.0 {
        score.weighted_latency_ms /= requests;
        score.error_rate /= requests;
    }
    if critical_requests > 0.0 {
        score.critical_latency_ms /= critical_requests;
    }
    if let Some(slo) = settings.slo_ms {
        let mut misses = SloMisses {
            slo_ms: slo,
            origins: 0,
            missed: 0,
            worst_ms: None,
        };
        for (cell, &total) in origin_requests.iter().enumerate() {
            let service = cell / regions;
            if !fleet.specs[service].latency_critical || total <= 0.0 {
                continue;
            }
            misses.origins += 1;
            let latency = origin_latency[cell] / total;
            if latency > slo {
                misses.missed += 1;
                misses.worst_ms = Some(misses.worst_ms.map_or(latency, |w: f64| w.max(latency)));
            }
        }
        score.slo_misses = Some(misses);
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_from_fleet_equals_stored_world() {
        // Fewer days than the evaluation week, then more.
        for (services, days, seed) in [(25, 3, 7), (40, 10, 8)] {
            let (_directory, fleet, path) = crate::store::stored_test_fleet(services, days, seed);
            let stored = WorldFleet::load(&Connection::open(&path).unwrap()).unwrap();
            let built = WorldFleet::from_fleet(&fleet).unwrap();
            // Debug prints every f64 in its shortest exact form.
            assert_eq!(format!("{built:?}"), format!("{stored:?}"));
        }
    }
}
