//! The seeded synthetic fleet: services and their call graph, daily RTT samples, hourly
//! traffic per service and origin region, and a daily placement history whose latency and
//! error rate are observed through the world model.
//!
//! Every table draws from its own ChaCha8 stream of the one seed, so that changing the
//! number of days, say, leaves the services as they were. The default sizes follow the
//! original study: 150 services, five regions, 90 days.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, LogNormal};

use crate::catalog::RegionSet;
use crate::simulate::{self, Host, Placement, ServiceSpec, World};

/// Name templates; services are named `<template>-service-<k>`.
pub const TEMPLATES: [&str; 25] = [
    "auth",
    "user",
    "payment",
    "order",
    "inventory",
    "catalog",
    "search",
    "cart",
    "checkout",
    "shipping",
    "notification",
    "email",
    "recommendation",
    "review",
    "analytics",
    "logging",
    "gateway",
    "media",
    "billing",
    "profile",
    "session",
    "pricing",
    "fraud",
    "report",
    "config",
];

/// Memory sizes an instance can have, in MiB.
pub const MEMORY_MB: [u32; 5] = [256, 512, 1024, 2048, 4096];
/// vCPU counts an instance can have.
pub const CORES: [f64; 4] = [0.5, 1.0, 2.0, 4.0];
/// Probability that a service is latency-critical.
pub const CRITICAL_PROBABILITY: f64 = 0.3;
/// Range of a service's mean demand, in requests per second, inclusive.
pub const MEAN_RPS_RANGE: (u32, u32) = (1_000, 100_000);
/// Maximum number of services one service calls.
pub const MAX_DEPENDENCIES: usize = 5;
/// Tiers of the call graph: a service calls only services of deeper tiers, so no call
/// chain is longer than `CALL_TIERS - 1` hops, as in a layered microservice fleet (edge,
/// business logic, data access, storage).
pub const CALL_TIERS: usize = 3;
/// Fixed part of the unloaded processing time of a request, in ms.
pub const PROCESSING_FIXED_MS: f64 = 3.0;
/// Unloaded processing time per GiB of instance memory, in ms: services that hold more
/// state do more work per request.
pub const PROCESSING_MS_PER_GIB: f64 = 5.0;
/// Factor on the processing time of latency-critical services, which are built for speed.
pub const CRITICAL_PROCESSING_FACTOR: f64 = 0.6;
/// Range of the number of instances that would run at 100% CPU under the service's mean
/// demand, drawn uniformly. It sets the CPU cost of a request.
pub const FULL_LOAD_INSTANCES_RANGE: (f64, f64) = (1.0, 3.0);
/// Range of a dependency call's response size, in KB, drawn log-uniformly.
pub const CALL_RESPONSE_KB_RANGE: (f64, f64) = (0.5, 8.0);
/// Dirichlet concentration of a service's demand shares over origin regions: 1.5 spreads
/// demand unevenly, so that each service has markets of its own.
pub const ORIGIN_SHARE_CONCENTRATION: f64 = 1.5;

/// Traffic multiplier in local business hours (9:00 to 17:59).
pub const BUSINESS_HOURS_FACTOR: f64 = 2.0;
/// Traffic multiplier at night (22:00 to 5:59).
pub const NIGHT_FACTOR: f64 = 0.35;
/// Traffic multiplier on Saturdays and Sundays, local time.
pub const WEEKEND_FACTOR: f64 = 0.7;
/// Standard deviation of the log of an hourly traffic value around its profile.
pub const TRAFFIC_LOG_SD: f64 = 0.12;
/// Standard deviation of the log of a daily RTT sample around the catalog median.
pub const RTT_LOG_SD: f64 = 0.05;
/// Standard deviation of the log of an observed daily latency around the expected one.
pub const OBSERVED_LATENCY_LOG_SD: f64 = 0.08;
/// Standard deviation of the log of an observed daily error rate around the expected one.
pub const OBSERVED_ERROR_LOG_SD: f64 = 0.10;
/// Range of instances per hosting region in the history, inclusive.
pub const HISTORY_INSTANCES: (u32, u32) = (1, 5);
/// Range of the peak-hour utilization that the history's operators size each host for,
/// drawn uniformly per host; values above 1 under-provision, so some hosts overload.
pub const SIZING_TARGET_RANGE: (f64, f64) = (0.45, 1.15);

/// First day of the generated telemetry, as days since 1970-01-01: Monday 2025-01-06.
pub const START_DAY: i64 = 20_094;

/// Settings of a generated fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub services: usize,
    pub days: usize,
    pub regions: RegionSet,
    pub seed: u64,
}

/// Errors in the generator's settings.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("`--{flag}` must be at least {min}, got {value}")]
    TooSmall {
        flag: &'static str,
        min: usize,
        value: usize,
    },
    #[error("`--{flag}` must be at most {max}, got {value}\nhint: {hint}")]
    TooLarge {
        flag: &'static str,
        max: usize,
        value: usize,
        hint: &'static str,
    },
    #[error("generation was interrupted")]
    Interrupted,
}

/// Largest fleet accepted, so that a typing slip cannot ask for terabytes.
pub const MAX_SERVICES: usize = 100_000;
/// Maximum history accepted, in days.
pub const MAX_DAYS: usize = 3_660;
/// Largest traffic table accepted, in rows (about 20 GB of SQLite).
pub const MAX_TRAFFIC_ROWS: usize = 500_000_000;

/// One generated service, as stored in `services`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    pub name: String,
    pub template: &'static str,
    pub mean_rps: u32,
    pub spec: ServiceSpec,
}

/// One day's placement of one service in one region, as stored in `service_placement`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRecord {
    pub day: usize,
    pub service: usize,
    pub region: usize,
    pub instances: u32,
    /// Mean requests per second routed to this host over the day.
    pub routed_rps: f64,
    /// Mean observed CPU utilization over the day (a host cannot show more than 1).
    pub cpu_utilization: f64,
    /// Highest hourly CPU utilization of the day, capped at 1 like the mean.
    pub peak_cpu_utilization: f64,
    /// Observed latency, traffic-weighted over the day's routed requests, in ms.
    pub latency_ms: f64,
    /// Observed fraction of failed requests.
    pub error_rate: f64,
    /// The world model's expected latency for the same row, before observation noise.
    pub expected_latency_ms: f64,
    /// The world model's expected error rate, before observation noise.
    pub expected_error_rate: f64,
}

/// Everything `generate` produces.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub config: FleetConfig,
    pub services: Vec<ServiceRecord>,
    /// Demand share of each origin, row-major `services x regions`, rows summing to 1.
    pub origin_share: Vec<f64>,
    /// Daily RTT samples in ms, `[day][source][target]` flattened.
    pub rtt_samples: Vec<f64>,
    /// Hourly requests per second, `[service][origin][hour]` flattened.
    pub traffic: Vec<u32>,
    pub history: Vec<PlacementRecord>,
}

impl Fleet {
    pub fn hours(&self) -> usize {
        self.config.days * 24
    }

    /// Requests per second of `service` from `origin` in hour `hour`.
    pub fn traffic_at(&self, service: usize, origin: usize, hour: usize) -> u32 {
        let regions = self.config.regions.len();
        self.traffic[(service * regions + origin) * self.hours() + hour]
    }

    /// Returns the RTT matrix in effect on `day`.
    pub fn rtt_on(&self, day: usize) -> &[f64] {
        let cells = self.config.regions.len().pow(2);
        &self.rtt_samples[day * cells..(day + 1) * cells]
    }

    pub fn specs(&self) -> Vec<ServiceSpec> {
        self.services.iter().map(|s| s.spec.clone()).collect()
    }
}

/// Independent random streams, one per table.
#[derive(Clone, Copy)]
enum Stream {
    Services = 1,
    Rtt = 2,
    Traffic = 3,
    Placement = 4,
    Observation = 5,
    OriginShares = 6,
}

fn rng_for(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

impl FleetConfig {
    /// Checks sizes before any work starts.
    pub fn validate(&self) -> Result<(), GenerateError> {
        let checks = [
            (
                "services",
                self.services,
                MAX_SERVICES,
                "use at most 100000 services",
            ),
            (
                "days",
                self.days,
                MAX_DAYS,
                "use at most 3660 days (ten years)",
            ),
        ];
        for (flag, value, max, hint) in checks {
            if value == 0 {
                return Err(GenerateError::TooSmall {
                    flag,
                    min: 1,
                    value,
                });
            }
            if value > max {
                return Err(GenerateError::TooLarge {
                    flag,
                    max,
                    value,
                    hint,
                });
            }
        }
        let rows = self.traffic_rows();
        if rows > MAX_TRAFFIC_ROWS {
            return Err(GenerateError::TooLarge {
                flag: "services",
                max: MAX_TRAFFIC_ROWS / (self.days * 24 * self.regions.len()),
                value: self.services,
                hint: "the traffic table would exceed 500,000,000 rows: lower --services, --days or the number of regions",
            });
        }
        Ok(())
    }

    /// Rows of `traffic_patterns`: services x origin regions x hours.
    pub fn traffic_rows(&self) -> usize {
        self.services
            .saturating_mul(self.regions.len())
            .saturating_mul(self.days.saturating_mul(24))
    }
}

/// Generates the whole fleet. `on_day` is called after each day of history with the count
/// of days done, and may return `false` to stop with [`GenerateError::Interrupted`].
pub fn generate(
    config: &FleetConfig,
    mut on_day: impl FnMut(usize) -> bool,
) -> Result<Fleet, GenerateError> {
    let mut fleet = generate_telemetry(config, || true)?;
    fleet.history = generate_history(&fleet, &mut on_day)?;
    Ok(fleet)
}

/// Generates everything but the placement history (left empty): services, demand shares,
/// RTT samples and traffic. [`generate_history`] completes it, possibly on another thread
/// while the telemetry is being stored. `keep_going` is polled once per service of the
/// traffic and may return `false` to stop with [`GenerateError::Interrupted`].
pub fn generate_telemetry(
    config: &FleetConfig,
    keep_going: impl Fn() -> bool,
) -> Result<Fleet, GenerateError> {
    config.validate()?;
    let services = generate_services(config);
    let origin_share = generate_origin_shares(config);
    let rtt_samples = generate_rtt(config);
    let traffic = generate_traffic(config, &services, &origin_share, keep_going)?;
    Ok(Fleet {
        config: config.clone(),
        services,
        origin_share,
        rtt_samples,
        traffic,
        history: Vec::new(),
    })
}

/// Unloaded processing time of a request, in ms, from the service's observable shape, so
/// that a model can predict it for a service it has never seen.
pub fn base_processing_ms(memory_mb: u32, latency_critical: bool) -> f64 {
    let base = PROCESSING_FIXED_MS + PROCESSING_MS_PER_GIB * f64::from(memory_mb) / 1024.0;
    if latency_critical {
        base * CRITICAL_PROCESSING_FACTOR
    } else {
        base
    }
}

fn log_uniform(rng: &mut ChaCha8Rng, (low, high): (f64, f64)) -> f64 {
    (low.ln() + rng.random::<f64>() * (high.ln() - low.ln())).exp()
}

fn generate_services(config: &FleetConfig) -> Vec<ServiceRecord> {
    let mut rng = rng_for(config.seed, Stream::Services);
    let count = config.services;
    let tiers: Vec<usize> = (0..count)
        .map(|_| rng.random_range(0..CALL_TIERS))
        .collect();
    // Callees of a tier-t service: every service of a deeper tier, listed once per tier.
    let deeper: Vec<Vec<usize>> = (0..CALL_TIERS)
        .map(|tier| (0..count).filter(|&j| tiers[j] > tier).collect())
        .collect();

    (0..count)
        .map(|i| {
            let template = TEMPLATES[i % TEMPLATES.len()];
            let memory_mb = *MEMORY_MB.choose(&mut rng).expect("non-empty");
            let cores = *CORES.choose(&mut rng).expect("non-empty");
            let latency_critical = rng.random::<f64>() < CRITICAL_PROBABILITY;
            let mean_rps = rng.random_range(MEAN_RPS_RANGE.0..=MEAN_RPS_RANGE.1);
            let dependency_count = rng.random_range(0..=MAX_DEPENDENCIES);
            let callees = &deeper[tiers[i]];
            let mut dependencies: Vec<usize> = callees
                .choose_multiple(&mut rng, dependency_count.min(callees.len()))
                .copied()
                .collect();
            dependencies.sort_unstable();
            let full_load =
                rng.random_range(FULL_LOAD_INSTANCES_RANGE.0..FULL_LOAD_INSTANCES_RANGE.1);
            let spec = ServiceSpec {
                memory_mb,
                cores,
                latency_critical,
                base_processing_ms: base_processing_ms(memory_mb, latency_critical),
                cpu_ms_per_request: full_load * cores * 1000.0 / f64::from(mean_rps),
                call_response_kb: log_uniform(&mut rng, CALL_RESPONSE_KB_RANGE),
                dependencies,
            };
            ServiceRecord {
                name: format!("{template}-service-{}", i / TEMPLATES.len() + 1),
                template,
                mean_rps,
                spec,
            }
        })
        .collect()
}

/// Demand shares per service over origin regions: a Dirichlet draw, made as normalized
/// Gamma draws because `rand_distr`'s Dirichlet needs its size at compile time.
fn generate_origin_shares(config: &FleetConfig) -> Vec<f64> {
    let mut rng = rng_for(config.seed, Stream::OriginShares);
    let gamma = Gamma::new(ORIGIN_SHARE_CONCENTRATION, 1.0).expect("positive shape");
    let regions = config.regions.len();
    let mut shares = Vec::with_capacity(config.services * regions);
    for _ in 0..config.services {
        let draws: Vec<f64> = (0..regions).map(|_| gamma.sample(&mut rng)).collect();
        let total: f64 = draws.iter().sum();
        shares.extend(draws.iter().map(|d| d / total));
    }
    shares
}

fn generate_rtt(config: &FleetConfig) -> Vec<f64> {
    let mut rng = rng_for(config.seed, Stream::Rtt);
    let jitter = LogNormal::new(0.0, RTT_LOG_SD).expect("positive sigma");
    let set = &config.regions;
    let mut samples = Vec::with_capacity(config.days * set.len() * set.len());
    for _ in 0..config.days {
        for source in 0..set.len() {
            for target in 0..set.len() {
                samples.push(set.rtt(source, target) * jitter.sample(&mut rng));
            }
        }
    }
    samples
}

/// Traffic multiplier of the daily and weekly profile for a local hour and weekday
/// (0 = Monday), before normalization.
pub fn profile_factor(local_hour: u32, local_weekday: u32) -> f64 {
    let daily = match local_hour {
        9..=17 => BUSINESS_HOURS_FACTOR,
        22..=23 | 0..=5 => NIGHT_FACTOR,
        _ => 1.0,
    };
    let weekly = if local_weekday >= 5 {
        WEEKEND_FACTOR
    } else {
        1.0
    };
    daily * weekly
}

/// Mean of [`profile_factor`] over a week, by which the profile is divided so that a
/// service's mean demand is its `mean_rps`.
pub fn profile_mean() -> f64 {
    let mut sum = 0.0;
    for weekday in 0..7 {
        for hour in 0..24 {
            sum += profile_factor(hour, weekday);
        }
    }
    sum / (7.0 * 24.0)
}

/// Local hour and weekday (0 = Monday) of UTC hour `hour` after the start, for a region at
/// `offset_hours` from UTC.
pub fn local_time(hour: usize, offset_hours: f64) -> (u32, u32) {
    let utc_minutes = (START_DAY * 24 + hour as i64) * 60;
    let local_minutes = utc_minutes + (offset_hours * 60.0).round() as i64;
    let local_hours = local_minutes.div_euclid(60);
    let local_day = local_hours.div_euclid(24);
    // 1970-01-01 was a Thursday (weekday 3 counting from Monday).
    let weekday = (local_day + 3).rem_euclid(7) as u32;
    (local_hours.rem_euclid(24) as u32, weekday)
}

fn generate_traffic(
    config: &FleetConfig,
    services: &[ServiceRecord],
    origin_share: &[f64],
    keep_going: impl Fn() -> bool,
) -> Result<Vec<u32>, GenerateError> {
    let mut rng = rng_for(config.seed, Stream::Traffic);
    let noise = LogNormal::new(-TRAFFIC_LOG_SD * TRAFFIC_LOG_SD / 2.0, TRAFFIC_LOG_SD)
        .expect("positive sigma");
    let regions = config.regions.len();
    let hours = config.days * 24;
    let mean = profile_mean();
    // The profile depends only on origin and hour, so compute it once per origin.
    let profiles: Vec<Vec<f64>> = config
        .regions
        .regions
        .iter()
        .map(|region| {
            (0..hours)
                .map(|hour| {
                    let (local_hour, weekday) = local_time(hour, region.utc_offset_hours);
                    profile_factor(local_hour, weekday) / mean
                })
                .collect()
        })
        .collect();

    let mut traffic = Vec::with_capacity(config.traffic_rows());
    for (service, record) in services.iter().enumerate() {
        if !keep_going() {
            return Err(GenerateError::Interrupted);
        }
        for (origin, profile) in profiles.iter().enumerate() {
            let level = f64::from(record.mean_rps) * origin_share[service * regions + origin];
            for factor in profile {
                let rps = level * factor * noise.sample(&mut rng);
                traffic.push(rps.round() as u32);
            }
        }
    }
    Ok(traffic)
}

/// Draws each day's placement by the original study's rules: latency-critical services in
/// one or two regions, others in two to four, one to five instances each. Then observes
/// each host's latency and error rate through the world model, hour by hour. `on_day` is
/// called after each day with the count of days done, and may return `false` to stop.
pub fn generate_history(
    fleet: &Fleet,
    on_day: &mut impl FnMut(usize) -> bool,
) -> Result<Vec<PlacementRecord>, GenerateError> {
    let config = &fleet.config;
    let mut placement_rng = rng_for(config.seed, Stream::Placement);
    let mut observation_rng = rng_for(config.seed, Stream::Observation);
    let latency_noise = LogNormal::new(
        -OBSERVED_LATENCY_LOG_SD * OBSERVED_LATENCY_LOG_SD / 2.0,
        OBSERVED_LATENCY_LOG_SD,
    )
    .expect("positive sigma");
    let error_noise = LogNormal::new(
        -OBSERVED_ERROR_LOG_SD * OBSERVED_ERROR_LOG_SD / 2.0,
        OBSERVED_ERROR_LOG_SD,
    )
    .expect("positive sigma");
    let specs = fleet.specs();
    let regions = config.regions.len();
    let region_ids: Vec<usize> = (0..regions).collect();
    let mut history = Vec::new();

    for day in 0..config.days {
        let placement = Placement {
            hosts: specs
                .iter()
                .enumerate()
                .map(|(service, spec)| {
                    let shares = &fleet.origin_share[service * regions..(service + 1) * regions];
                    let mean_rps = f64::from(fleet.services[service].mean_rps);
                    let regions_chosen = draw_regions(&mut placement_rng, spec, &region_ids);
                    size_hosts(
                        &mut placement_rng,
                        spec,
                        mean_rps,
                        shares,
                        fleet.rtt_on(day),
                        regions_chosen,
                    )
                })
                .collect(),
        };
        let world = World {
            services: &specs,
            regions,
            rtt_ms: fleet.rtt_on(day),
        };
        let day_totals = observe_day(fleet, &world, &placement, day);
        for (service, hosts) in placement.hosts.iter().enumerate() {
            for host in hosts {
                let totals = &day_totals[service * regions + host.region];
                let expected_latency_ms = totals.latency_ms();
                let expected_error_rate = totals.error_rate();
                history.push(PlacementRecord {
                    day,
                    service,
                    region: host.region,
                    instances: host.instances,
                    routed_rps: totals.requests / 24.0,
                    cpu_utilization: totals.utilization / 24.0,
                    peak_cpu_utilization: totals.peak_utilization,
                    latency_ms: expected_latency_ms * latency_noise.sample(&mut observation_rng),
                    error_rate: (expected_error_rate * error_noise.sample(&mut observation_rng))
                        .min(1.0),
                    expected_latency_ms,
                    expected_error_rate,
                });
            }
        }
        if !on_day(day + 1) {
            return Err(GenerateError::Interrupted);
        }
    }
    Ok(history)
}

fn draw_regions(rng: &mut ChaCha8Rng, spec: &ServiceSpec, region_ids: &[usize]) -> Vec<usize> {
    let (low, high) = if spec.latency_critical {
        (1, 2)
    } else {
        (2, 4)
    };
    let count = rng.random_range(low..=high).min(region_ids.len());
    let mut chosen: Vec<usize> = region_ids.choose_multiple(rng, count).copied().collect();
    chosen.sort_unstable();
    chosen
}

/// Sizes each chosen region the way an operator would: from the share of demand that
/// latency-based routing sends there and the peak-hour factor, at a drawn target
/// utilization, clamped to [`HISTORY_INSTANCES`].
fn size_hosts(
    rng: &mut ChaCha8Rng,
    spec: &ServiceSpec,
    mean_rps: f64,
    origin_share: &[f64],
    rtt_ms: &[f64],
    chosen: Vec<usize>,
) -> Vec<Host> {
    let regions = origin_share.len();
    let mut routed_share = vec![0.0; chosen.len()];
    for (origin, share) in origin_share.iter().enumerate() {
        let nearest = (0..chosen.len())
            .min_by(|&a, &b| {
                rtt_ms[origin * regions + chosen[a]]
                    .total_cmp(&rtt_ms[origin * regions + chosen[b]])
            })
            .expect("at least one region is chosen");
        routed_share[nearest] += share;
    }
    let peak_factor = BUSINESS_HOURS_FACTOR / profile_mean();
    chosen
        .into_iter()
        .zip(routed_share)
        .map(|(region, share)| {
            let target = rng.random_range(SIZING_TARGET_RANGE.0..SIZING_TARGET_RANGE.1);
            let needed = mean_rps * share * peak_factor / (spec.capacity_per_instance() * target);
            let instances = (needed.ceil() as u32).clamp(HISTORY_INSTANCES.0, HISTORY_INSTANCES.1);
            Host { region, instances }
        })
        .collect()
}

/// Sums over one day of a host's hourly state.
#[derive(Debug, Clone, Default)]
struct HostDay {
    /// Sum of hourly routed requests per second.
    requests: f64,
    /// Sum over hours of latency times routed requests per second.
    weighted_latency: f64,
    /// Sum over hours of error rate times routed requests per second.
    weighted_errors: f64,
    /// Sum of hourly observed utilization (capped at 1).
    utilization: f64,
    /// Highest hourly observed utilization (capped at 1).
    peak_utilization: f64,
    /// Sums of the unweighted hourly processing time and error rate, for hosts that
    /// received no traffic all day.
    processing_ms: f64,
    host_errors: f64,
}

impl HostDay {
    fn latency_ms(&self) -> f64 {
        if self.requests > 0.0 {
            self.weighted_latency / self.requests
        } else {
            self.processing_ms / 24.0
        }
    }

    fn error_rate(&self) -> f64 {
        if self.requests > 0.0 {
            self.weighted_errors / self.requests
        } else {
            self.host_errors / 24.0
        }
    }
}

fn observe_day(fleet: &Fleet, world: &World, placement: &Placement, day: usize) -> Vec<HostDay> {
    let regions = world.regions;
    let cells = world.services.len() * regions;
    let mut totals = vec![HostDay::default(); cells];
    let mut demand = vec![0.0; cells];
    for hour in day * 24..(day + 1) * 24 {
        for service in 0..world.services.len() {
            for origin in 0..regions {
                demand[service * regions + origin] =
                    f64::from(fleet.traffic_at(service, origin, hour));
            }
        }
        let evaluation = simulate::evaluate(world, placement, &demand)
            .expect("the generator builds valid placements");
        for (cell, &rps) in demand.iter().enumerate() {
            let at_host = cell / regions * regions + evaluation.route[cell];
            let total = &mut totals[at_host];
            total.weighted_latency += rps * evaluation.user_latency_ms[cell];
            total.weighted_errors += rps * evaluation.user_error_rate[cell];
        }
        for (service, hosts) in placement.hosts.iter().enumerate() {
            for host in hosts {
                let cell = service * regions + host.region;
                let total = &mut totals[cell];
                total.requests += evaluation.routed_rps[cell];
                let observed = evaluation.utilization[cell].min(1.0);
                total.utilization += observed;
                total.peak_utilization = total.peak_utilization.max(observed);
                total.processing_ms += evaluation.processing_ms[cell];
                total.host_errors += evaluation.host_error_rate[cell];
            }
        }
    }
    totals
}

/// Rebuilds the placement of `day` from the history.
pub fn history_placement(fleet: &Fleet, day: usize) -> Placement {
    let mut hosts = vec![Vec::new(); fleet.services.len()];
    for row in fleet.history.iter().filter(|row| row.day == day) {
        hosts[row.service].push(Host {
            region: row.region,
            instances: row.instances,
        });
    }
    Placement { hosts }
}

/// Request-weighted distribution of hourly host utilization over the whole history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UtilizationSummary {
    pub p25: f64,
    pub median: f64,
    pub p75: f64,
    /// Fraction of requests that reach a host above 100% utilization.
    pub overloaded_request_share: f64,
    /// Fraction of (host, hour) pairs above 100% utilization.
    pub overloaded_host_hour_share: f64,
}

/// Replays the history hour by hour and summarizes the utilization its requests meet.
pub fn utilization_summary(fleet: &Fleet) -> UtilizationSummary {
    let specs = fleet.specs();
    let regions = fleet.config.regions.len();
    let cells = specs.len() * regions;
    let mut weighted = Vec::new();
    let mut host_hours = 0usize;
    let mut overloaded_host_hours = 0usize;
    let mut demand = vec![0.0; cells];

    for day in 0..fleet.config.days {
        let placement = history_placement(fleet, day);
        let world = World {
            services: &specs,
            regions,
            rtt_ms: fleet.rtt_on(day),
        };
        for hour in day * 24..(day + 1) * 24 {
            for (cell, value) in demand.iter_mut().enumerate() {
                *value = f64::from(fleet.traffic_at(cell / regions, cell % regions, hour));
            }
            let evaluation = simulate::evaluate(&world, &placement, &demand)
                .expect("history placements are valid");
            for (service, hosts) in placement.hosts.iter().enumerate() {
                for host in hosts {
                    let cell = service * regions + host.region;
                    let rho = evaluation.utilization[cell];
                    weighted.push((rho, evaluation.routed_rps[cell]));
                    host_hours += 1;
                    overloaded_host_hours += usize::from(rho > 1.0);
                }
            }
        }
    }

    weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = weighted.iter().map(|w| w.1).sum();
    let overloaded: f64 = weighted.iter().filter(|w| w.0 > 1.0).map(|w| w.1).sum();
    UtilizationSummary {
        p25: weighted_quantile(&weighted, total, 0.25),
        median: weighted_quantile(&weighted, total, 0.5),
        p75: weighted_quantile(&weighted, total, 0.75),
        overloaded_request_share: overloaded / total,
        overloaded_host_hour_share: overloaded_host_hours as f64 / host_hours as f64,
    }
}

/// Returns the `q` quantile of `(value, weight)` pairs sorted by value, whose weights sum
/// to `total`.
fn weighted_quantile(sorted: &[(f64, f64)], total: f64, q: f64) -> f64 {
    let mut sum = 0.0;
    for &(value, weight) in sorted {
        sum += weight;
        if sum >= q * total {
            return value;
        }
    }
    sorted.last().map_or(0.0, |w| w.0)
}

/// Formats day `day` after the start as `YYYY-MM-DD`.
pub fn date_string(day: usize) -> String {
    let (year, month, dom) = civil_from_days(START_DAY + day as i64);
    format!("{year:04}-{month:02}-{dom:02}")
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`). Written here because only this one conversion is needed.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn config(services: usize, days: usize) -> FleetConfig {
        FleetConfig {
            services,
            days,
            regions: Catalog::embedded().select("default").unwrap(),
            seed: 42,
        }
    }

    #[test]
    fn dates_match_the_calendar() {
        assert_eq!(date_string(0), "2025-01-06");
        assert_eq!(date_string(26), "2025-02-01");
        assert_eq!(date_string(360), "2026-01-01");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn local_time_follows_offset() {
        // Hour 0 is Monday 00:00 UTC: Sunday 19:00 in New York, Monday 09:00 in Tokyo.
        assert_eq!(local_time(0, -5.0), (19, 6));
        assert_eq!(local_time(0, 9.0), (9, 0));
        assert_eq!(local_time(0, 5.5), (5, 0));
        assert_eq!(local_time(5 * 24, 0.0), (0, 5));
    }

    #[test]
    fn profile_mean_normalizes_to_one() {
        let mean = profile_mean();
        let direct: f64 = (0..7 * 24)
            .map(|h| profile_factor((h % 24) as u32, (h / 24) as u32))
            .sum::<f64>()
            / 168.0;
        assert!((mean - direct).abs() < 1e-12);
        // 9 business, 8 night and 7 other hours; 5 weekdays and 2 weekend days.
        let daily = (9.0 * 2.0 + 8.0 * 0.35 + 7.0) / 24.0;
        assert!((mean - daily * (5.0 + 2.0 * 0.7) / 7.0).abs() < 1e-12);
    }

    #[test]
    fn zero_sizes_are_rejected() {
        assert!(matches!(
            config(0, 5).validate(),
            Err(GenerateError::TooSmall {
                flag: "services",
                ..
            })
        ));
        assert!(matches!(
            config(5, 0).validate(),
            Err(GenerateError::TooSmall { flag: "days", .. })
        ));
        assert!(matches!(
            config(MAX_SERVICES + 1, 1).validate(),
            Err(GenerateError::TooLarge { .. })
        ));
    }

    #[test]
    fn call_graph_is_acyclic_and_bounded() {
        let services = generate_services(&config(500, 1));
        let specs: Vec<ServiceSpec> = services.iter().map(|s| s.spec.clone()).collect();
        assert!(simulate::dependency_order(&specs).is_ok());
        assert!(specs
            .iter()
            .all(|s| s.dependencies.len() <= MAX_DEPENDENCIES));
        assert!(specs
            .iter()
            .any(|s| s.dependencies.len() == MAX_DEPENDENCIES));
        assert!(specs.iter().any(|s| s.dependencies.is_empty()));
    }

    #[test]
    fn typical_utilization_is_moderate_with_some_overload() {
        let fleet = generate(&config(150, 14), |_| true).unwrap();
        let summary = utilization_summary(&fleet);
        assert!(summary.median > 0.3, "{summary:?}");
        assert!(summary.median < 0.8, "{summary:?}");
        assert!(summary.p25 > 0.2, "{summary:?}");
        assert!(summary.p75 < 0.95, "{summary:?}");
        assert!(summary.overloaded_host_hour_share > 0.001, "{summary:?}");
        assert!(summary.overloaded_host_hour_share < 0.1, "{summary:?}");
    }

    #[test]
    fn interruption_stops_generation() {
        let result = generate(&config(10, 3), |day| day < 2);
        assert!(matches!(result, Err(GenerateError::Interrupted)));
    }
}
