//! The A/B experiment: two placements (the arms) compared on request latency drawn from
//! the world model, with the service as the unit of every service-level test.
//!
//! Requests are drawn in proportion to the demand over services, origin regions and the
//! hours of the evaluation week, each with a latency drawn around the world model's
//! expected one ([`simulate::sample_requests`]). The two designs:
//!
//! - *paired*: every service runs under both arms. With common random numbers both arms
//!   see the same requests (service, origin, hour) and the same latency noise, so a
//!   service's difference is the placement's effect alone.
//! - *split*: each service is assigned to one arm at random (seeded), as a rollout would
//!   be, and the fleet runs the mix: a service's calls go to where its callees' arms put
//!   them.
//!
//! Requests within a service are correlated (they share its placement), so the tests and
//! intervals resample and compare services, not requests. `docs/experiment.md` explains
//! the choice. The request-level Welch test is kept for comparison with the original
//! study only.

use std::borrow::Cow;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::check::WorldFleet;
use crate::simulate::{self, Placement, SimulateError, World, HOURS_PER_MONTH};
use crate::stats::{self, PowerDesign, StatsError, TestResult};

/// Significance level of every test.
pub const ALPHA: f64 = 0.05;
/// Power the sample size is found for.
pub const POWER: f64 = 0.8;
/// Coverage of the bootstrap intervals.
pub const CONFIDENCE: f64 = 0.95;
/// Bins of the latency histogram, log-spaced between the lowest and highest latency drawn
/// in either arm.
pub const HISTOGRAM_BINS: usize = 40;

/// ChaCha8 stream of the control arm's requests, and of both arms' under common random
/// numbers.
pub const CONTROL_STREAM: u64 = 1;
/// ChaCha8 stream of the treatment arm's requests when they are drawn independently.
pub const TREATMENT_STREAM: u64 = 2;
/// ChaCha8 stream of the split design's assignment of services to arms.
pub const ASSIGNMENT_STREAM: u64 = 3;
/// Requests drawn between two checks for an interrupt.
const INTERRUPT_EVERY: usize = 1 << 20;

/// Minimum number of bootstrap resamples. With fewer, the 2.5% and 97.5% percentiles are the
/// extremes of a handful of draws and need not contain the estimate.
pub const MIN_RESAMPLES: usize = 100;

/// ChaCha8 stream of the bootstrap resamples.
pub const BOOTSTRAP_STREAM: u64 = 4;

/// The assignment of services to the two arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Design {
    /// Every service runs under both arms.
    Paired,
    /// Each service runs under one arm, chosen at random.
    Split,
}

/// Whether the two arms share their random draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Noise {
    /// Both arms draw the same requests and latency noise (paired design only; the split
    /// design's arms serve different services, so nothing is shared).
    Common,
    /// Each arm draws its own requests and noise.
    Independent,
}

/// Settings of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentSettings {
    pub design: Design,
    pub noise: Noise,
    /// Requests drawn per arm.
    pub requests: usize,
    /// Bootstrap resamples of the services.
    pub resamples: usize,
    pub seed: u64,
}

/// Errors of an experiment.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExperimentError {
    #[error("--{setting} {value} is invalid: {rule}")]
    InvalidSetting {
        setting: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("{arms} {found} service(s) with sampled requests, but the service-level tests need at least 2\nhint: raise --requests, or generate more services")]
    TooFewServices { arms: &'static str, found: usize },
    #[error("the {arm} placement cannot be evaluated in the world model")]
    Placement {
        arm: &'static str,
        #[source]
        source: SimulateError,
    },
    #[error("the fleet has no demand in the evaluation week, so no request can be drawn")]
    NoDemand,
    #[error("a statistic cannot be computed")]
    Stats(#[from] StatsError),
    #[error("the experiment was interrupted; nothing was written")]
    Interrupted,
}

impl ExperimentSettings {
    /// Checks the settings, naming the flag of a value out of range.
    pub fn validate(&self) -> Result<(), ExperimentError> {
        if !(2..=100_000_000).contains(&self.requests) {
            return Err(ExperimentError::InvalidSetting {
                setting: "requests",
                value: self.requests.to_string(),
                rule: "use 2 to 100000000 requests per arm",
            });
        }
        if self.resamples > 1_000_000 || (1..MIN_RESAMPLES).contains(&self.resamples) {
            return Err(ExperimentError::InvalidSetting {
                setting: "resamples",
                value: self.resamples.to_string(),
                rule: "use 0 (no intervals) or 100 to 1000000",
            });
        }
        if self.design == Design::Split && self.noise == Noise::Common {
            return Err(ExperimentError::InvalidSetting {
                setting: "noise",
                value: "common".to_string(),
                rule: "the split design's arms serve different services and share no draws; use --noise independent",
            });
        }
        Ok(())
    }
}

/// The measurements of one arm: per service in fleet order, and its requests.
#[derive(Debug, Clone)]
pub struct ArmData {
    /// Services that ran under this arm.
    pub members: Vec<bool>,
    /// Hosting regions of each service under this arm's placement.
    pub regions: Vec<usize>,
    pub requests: Vec<usize>,
    /// Sum of the sampled latencies of each service's requests, in ms.
    pub latency_sum_ms: Vec<f64>,
    /// 95th percentile of each service's sampled latencies, in ms; NaN without requests.
    pub p95_latency_ms: Vec<f64>,
    /// Instances and transfer at the evaluation week's mean hourly cost, in USD per month.
    pub monthly_cost_usd: Vec<f64>,
    /// Every sampled latency in ascending order, in ms, with its service beside it.
    pub sorted_latency_ms: Vec<f64>,
    pub sorted_service: Vec<u32>,
    pub failed: usize,
}

impl ArmData {
    /// Mean sampled latency of each service, in ms; NaN without requests.
    pub fn mean_latency_ms(&self) -> Vec<f64> {
        self.latency_sum_ms
            .iter()
            .zip(&self.requests)
            .map(|(&sum, &count)| sum / count as f64)
            .collect()
    }
}

/// Figures of one arm, with the original study's names first.
#[derive(Debug, Clone, Serialize)]
pub struct ArmMetrics {
    /// Service-region pairs hosted, over the arm's services.
    pub total_placement_pairs: usize,
    /// Requests drawn.
    pub total_requests: usize,
    /// Mean latency of the requests drawn, in ms.
    pub avg_latency_ms: f64,
    /// Instances and transfer of the arm's services, in USD per month.
    pub total_cost: f64,
    /// Mean hosting regions per service.
    pub redundancy_score: f64,
    /// Mean latency of the requests of latency-critical services, in ms; 0 when the arm
    /// has no latency-critical service.
    pub critical_services_latency_ms: f64,
    pub p95_latency_ms: f64,
    pub p99_latency_ms: f64,
    /// Fraction of the requests drawn that failed.
    pub error_rate: f64,
    pub services: usize,
    pub services_with_requests: usize,
    pub critical_services: usize,
    pub mean_cost_per_service_usd: f64,
}

/// A test's outcome with the method that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct NamedTest {
    pub method: &'static str,
    /// The unit of one observation: `request` or `service`.
    pub unit: &'static str,
    pub observations: usize,
    /// NaN (null in JSON) where the statistic is undefined, e.g. every difference zero.
    pub statistic: f64,
    pub p_value: f64,
    pub df: Option<f64>,
    pub is_significant: bool,
}

impl NamedTest {
    fn new(
        method: &'static str,
        unit: &'static str,
        observations: usize,
        result: TestResult,
    ) -> Self {
        NamedTest {
            method,
            unit,
            observations,
            statistic: result.statistic,
            p_value: result.p_value,
            df: result.df,
            is_significant: result.p_value < ALPHA,
        }
    }

    /// Builds the entry of a test that is undefined on these samples.
    fn undefined(method: &'static str, unit: &'static str, observations: usize) -> Self {
        NamedTest {
            method,
            unit,
            observations,
            statistic: f64::NAN,
            p_value: f64::NAN,
            df: None,
            is_significant: false,
        }
    }
}

/// A relative change of treatment over control, in percent, with its bootstrap interval.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// `100 * (treatment / control - 1)`: negative is a reduction.
    pub change_pct: f64,
    pub low_pct: f64,
    pub high_pct: f64,
    /// Whether the interval excludes zero.
    pub excludes_zero: bool,
    /// Resamples on which the ratio exists (a resample without critical services has no
    /// critical latency, for one).
    pub resamples_used: usize,
}

/// The four intervals of an experiment.
#[derive(Debug, Clone, Serialize)]
pub struct Intervals {
    pub method: &'static str,
    pub confidence: f64,
    pub resamples: usize,
    pub mean_latency: Interval,
    pub p95_latency: Interval,
    pub cost: Interval,
    pub critical_latency: Interval,
}

/// Cohen's d of the service-level comparison, and the services needed to detect it.
#[derive(Debug, Clone, Serialize)]
pub struct EffectSize {
    pub method: &'static str,
    /// Treatment minus control, over the standard deviation: negative is a reduction.
    pub cohens_d: f64,
    pub power_method: &'static str,
    pub alpha: f64,
    pub target_power: f64,
    /// Services the experiment would need for the target power at the observed effect:
    /// pairs in the paired design, both arms together in the split design. Null when no
    /// count up to 10 million per arm reaches it.
    pub services_needed: Option<u64>,
    /// Power of the test at the observed effect with the services measured.
    pub power_at_measured_services: f64,
}

/// Everything an experiment computes, besides the raw per-arm data.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub control: ArmData,
    pub treatment: ArmData,
    pub control_metrics: ArmMetrics,
    pub treatment_metrics: ArmMetrics,
    /// Welch's t-test on the requests, as the original study's.
    pub request_welch: NamedTest,
    pub service_tests: Vec<NamedTest>,
    pub intervals: Option<Intervals>,
    pub effect_size: EffectSize,
    /// Histogram bins `(low_ms, high_ms)`, shared by both arms, with each arm's counts.
    pub histogram_edges_ms: Vec<f64>,
    pub control_histogram: Vec<usize>,
    pub treatment_histogram: Vec<usize>,
}

fn world_of(fleet: &WorldFleet) -> World<'_> {
    World {
        services: &fleet.specs,
        regions: fleet.regions.len(),
        rtt_ms: &fleet.rtt_ms,
    }
}

/// A placement evaluated hour by hour over the evaluation week: what drawing requests
/// and pricing services need, kept so that many experiments can share one evaluation.
#[derive(Debug, Clone)]
struct Week {
    placement: Placement,
    /// Expected latency in ms of each (service, origin), per hour.
    latency_ms: Vec<Vec<f64>>,
    /// Expected fraction of failed requests of each (service, origin), per hour.
    error_rate: Vec<Vec<f64>>,
    /// Instances and transfer of each service at the week's mean hourly cost, in USD per
    /// month.
    monthly_cost_usd: Vec<f64>,
}

impl Week {
    fn evaluate(
        fleet: &WorldFleet,
        placement: &Placement,
        arm: &'static str,
        proceed: &dyn Fn() -> bool,
    ) -> Result<Week, ExperimentError> {
        let world = world_of(fleet);
        let invalid = |source| ExperimentError::Placement { arm, source };
        simulate::validate(&world, placement).map_err(invalid)?;
        let mut week = Week {
            placement: placement.clone(),
            latency_ms: Vec::with_capacity(fleet.hours.len()),
            error_rate: Vec::with_capacity(fleet.hours.len()),
            monthly_cost_usd: vec![0.0; fleet.specs.len()],
        };
        for demand in &fleet.hours {
            if !proceed() {
                return Err(ExperimentError::Interrupted);
            }
            let evaluation = simulate::evaluate(&world, placement, demand).map_err(invalid)?;
            let costs = simulate::hourly_cost_by_service(
                &world,
                placement,
                &evaluation,
                &fleet.usd_per_hour,
                &fleet.transfer_usd_per_gb,
            )
            .map_err(invalid)?;
            for (total, cost) in week.monthly_cost_usd.iter_mut().zip(&costs) {
                *total += cost.total() * HOURS_PER_MONTH / fleet.hours.len() as f64;
            }
            week.latency_ms.push(evaluation.user_latency_ms);
            week.error_rate.push(evaluation.user_error_rate);
        }
        Ok(week)
    }
}

/// Two arms evaluated in the world of a fleet, ready to run experiments on with any
/// settings; [`run`] makes one and runs it once.
pub struct Experiment<'a> {
    fleet: &'a WorldFleet,
    control: Week,
    /// `None` when the treatment's placement is the control's (an A/A experiment).
    treatment: Option<Week>,
}

impl<'a> Experiment<'a> {
    /// Evaluates both placements over the evaluation week. `proceed` is polled between
    /// hours and returns `false` to stop.
    pub fn new(
        fleet: &'a WorldFleet,
        control: &Placement,
        treatment: &Placement,
        proceed: &dyn Fn() -> bool,
    ) -> Result<Experiment<'a>, ExperimentError> {
        let control_week = Week::evaluate(fleet, control, "control", proceed)?;
        let treatment_week = if treatment == control {
            None
        } else {
            Some(Week::evaluate(fleet, treatment, "treatment", proceed)?)
        };
        Ok(Experiment {
            fleet,
            control: control_week,
            treatment: treatment_week,
        })
    }

    fn treatment(&self) -> &Week {
        self.treatment.as_ref().unwrap_or(&self.control)
    }

    /// Runs one experiment with `settings`.
    pub fn run(
        &self,
        settings: &ExperimentSettings,
        proceed: &dyn Fn() -> bool,
    ) -> Result<Outcome, ExperimentError> {
        settings.validate()?;
        let fleet = self.fleet;
        let services = fleet.specs.len();
        let stream = |id: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
            rng.set_stream(id);
            rng
        };
        let treatment_stream = match settings.noise {
            Noise::Common => CONTROL_STREAM,
            Noise::Independent => TREATMENT_STREAM,
        };

        let mixed_week;
        let (control_week, treatment_week, treated) = match settings.design {
            Design::Paired => (&self.control, self.treatment(), vec![true; services]),
            Design::Split => {
                let treated = assign(services, &mut stream(ASSIGNMENT_STREAM));
                let week = if self.treatment.is_none() {
                    &self.control
                } else {
                    let hosts = (0..services)
                        .map(|s| {
                            let arm = if treated[s] {
                                self.treatment()
                            } else {
                                &self.control
                            };
                            arm.placement.hosts[s].clone()
                        })
                        .collect();
                    mixed_week = Week::evaluate(fleet, &Placement { hosts }, "mixed", proceed)?;
                    &mixed_week
                };
                (week, week, treated)
            }
        };
        let control_members: Vec<bool> = match settings.design {
            Design::Paired => vec![true; services],
            Design::Split => treated.iter().map(|t| !t).collect(),
        };
        let control_data = measure_arm(
            fleet,
            control_week,
            &control_members,
            settings.requests,
            &mut stream(CONTROL_STREAM),
        )?;
        let treatment_data = measure_arm(
            fleet,
            treatment_week,
            &treated,
            settings.requests,
            &mut stream(treatment_stream),
        )?;
        if !proceed() {
            return Err(ExperimentError::Interrupted);
        }

        let critical: Vec<bool> = fleet.specs.iter().map(|s| s.latency_critical).collect();
        let control_metrics = arm_metrics(&control_data, &critical);
        let treatment_metrics = arm_metrics(&treatment_data, &critical);
        let request_welch = NamedTest::new(
            "Welch's t-test on request latency (unequal variances, Welch-Satterthwaite df); requests are not independent, so kept for comparison only",
            "request",
            control_data.sorted_latency_ms.len() + treatment_data.sorted_latency_ms.len(),
            stats::welch(
                &treatment_data.sorted_latency_ms,
                &control_data.sorted_latency_ms,
            )?,
        );
        let (service_tests, effect_size) =
            service_level(settings.design, &control_data, &treatment_data)?;
        let intervals = if settings.resamples == 0 {
            None
        } else {
            Some(bootstrap(
                settings,
                &control_data,
                &treatment_data,
                &critical,
                &mut stream(BOOTSTRAP_STREAM),
                proceed,
            )?)
        };
        let histogram_edges_ms = histogram_edges(&control_data, &treatment_data);
        let control_histogram = histogram(&control_data.sorted_latency_ms, &histogram_edges_ms);
        let treatment_histogram = histogram(&treatment_data.sorted_latency_ms, &histogram_edges_ms);
        Ok(Outcome {
            control: control_data,
            treatment: treatment_data,
            control_metrics,
            treatment_metrics,
            request_welch,
            service_tests,
            intervals,
            effect_size,
            histogram_edges_ms,
            control_histogram,
            treatment_histogram,
        })
    }
}

/// Runs an experiment of `control` against `treatment` in the world of `fleet`.
/// `proceed` is polled between steps and returns `false` to stop.
pub fn run(
    fleet: &WorldFleet,
    control: &Placement,
    treatment: &Placement,
    settings: &ExperimentSettings,
    proceed: &dyn Fn() -> bool,
) -> Result<Outcome, ExperimentError> {
    settings.validate()?;
    Experiment::new(fleet, control, treatment, proceed)?.run(settings, proceed)
}

/// Assigns `floor(services / 2)` services to the treatment at random: `true` is treated.
fn assign(services: usize, rng: &mut ChaCha8Rng) -> Vec<bool> {
    let mut order: Vec<usize> = (0..services).collect();
    order.shuffle(rng);
    let mut treated = vec![false; services];
    for &service in &order[..services / 2] {
        treated[service] = true;
    }
    treated
}

/// Draws `requests` requests of the member services from `week`, in proportion to their
/// demand over services, origins and hours, and sums them by service.
fn measure_arm(
    fleet: &WorldFleet,
    week: &Week,
    members: &[bool],
    requests: usize,
    rng: &mut ChaCha8Rng,
) -> Result<ArmData, ExperimentError> {
    let regions = fleet.regions.len();
    let services = fleet.specs.len();
    let everyone = members.iter().all(|&m| m);
    let member_demand = |hour: &[f64]| -> Vec<f64> {
        hour.iter()
            .enumerate()
            .map(|(cell, &rps)| if members[cell / regions] { rps } else { 0.0 })
            .collect()
    };
    let demand: Vec<Cow<[f64]>> = fleet
        .hours
        .iter()
        .map(|hour| {
            if everyone {
                Cow::Borrowed(hour.as_slice())
            } else {
                Cow::Owned(member_demand(hour))
            }
        })
        .collect();
    // Requests per hour, drawn one by one in proportion to the hour's demand before any
    // latency: the draws then follow the same sequence whatever the placement, which is
    // what common random numbers need.
    let hourly_demand: Vec<f64> = demand.iter().map(|hour| hour.iter().sum()).collect();
    let cumulative: Vec<f64> = hourly_demand
        .iter()
        .scan(0.0, |sum, &x| {
            *sum += x;
            Some(*sum)
        })
        .collect();
    let total = cumulative.last().copied().unwrap_or(0.0);
    if total <= 0.0 {
        return Err(ExperimentError::NoDemand);
    }
    let mut per_hour = vec![0usize; fleet.hours.len()];
    for drawn in 0..requests {
        if drawn % INTERRUPT_EVERY == 0 && crate::interrupt::requested() {
            return Err(ExperimentError::Interrupted);
        }
        let target = rng.random::<f64>() * total;
        let hour = cumulative
            .partition_point(|&c| c <= target)
            .min(cumulative.len() - 1);
        per_hour[hour] += 1;
    }

    let mut samples = Vec::with_capacity(requests);
    for (hour, demand) in demand.iter().enumerate() {
        if per_hour[hour] == 0 {
            continue;
        }
        if crate::interrupt::requested() {
            return Err(ExperimentError::Interrupted);
        }
        let drawn = simulate::draw_requests(
            &week.latency_ms[hour],
            &week.error_rate[hour],
            regions,
            demand,
            per_hour[hour],
            rng,
        )
        .map_err(|source| ExperimentError::Placement {
            arm: "drawn",
            source,
        })?;
        samples.extend(drawn);
    }

    let mut data = ArmData {
        members: members.to_vec(),
        regions: week.placement.hosts.iter().map(Vec::len).collect(),
        requests: vec![0; services],
        latency_sum_ms: vec![0.0; services],
        p95_latency_ms: vec![f64::NAN; services],
        monthly_cost_usd: week
            .monthly_cost_usd
            .iter()
            .zip(members)
            .map(|(&cost, &member)| if member { cost } else { 0.0 })
            .collect(),
        sorted_latency_ms: Vec::with_capacity(requests),
        sorted_service: Vec::with_capacity(requests),
        failed: 0,
    };
    for sample in &samples {
        data.requests[sample.service] += 1;
        data.latency_sum_ms[sample.service] += sample.latency_ms;
        data.failed += usize::from(sample.failed);
    }
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_unstable_by(|&i, &j| {
        samples[i]
            .latency_ms
            .total_cmp(&samples[j].latency_ms)
            .then(samples[i].service.cmp(&samples[j].service))
            .then(i.cmp(&j))
    });
    let mut by_service: Vec<Vec<f64>> = vec![Vec::new(); services];
    for &i in &order {
        data.sorted_latency_ms.push(samples[i].latency_ms);
        data.sorted_service.push(samples[i].service as u32);
        by_service[samples[i].service].push(samples[i].latency_ms);
    }
    for (service, latencies) in by_service.iter().enumerate() {
        if !latencies.is_empty() {
            data.p95_latency_ms[service] = stats::quantile_sorted(latencies, 0.95);
        }
    }
    Ok(data)
}

fn arm_metrics(data: &ArmData, critical: &[bool]) -> ArmMetrics {
    let members: Vec<usize> = (0..data.members.len())
        .filter(|&s| data.members[s])
        .collect();
    let total_requests: usize = members.iter().map(|&s| data.requests[s]).sum();
    let latency_sum: f64 = members.iter().map(|&s| data.latency_sum_ms[s]).sum();
    let critical_members: Vec<usize> = members.iter().copied().filter(|&s| critical[s]).collect();
    let critical_requests: usize = critical_members.iter().map(|&s| data.requests[s]).sum();
    let critical_sum: f64 = critical_members
        .iter()
        .map(|&s| data.latency_sum_ms[s])
        .sum();
    let total_cost: f64 = members.iter().map(|&s| data.monthly_cost_usd[s]).sum();
    let pairs: usize = members.iter().map(|&s| data.regions[s]).sum();
    let ratio = |numerator: f64, denominator: usize| {
        if denominator == 0 {
            0.0
        } else {
            numerator / denominator as f64
        }
    };
    ArmMetrics {
        total_placement_pairs: pairs,
        total_requests,
        avg_latency_ms: ratio(latency_sum, total_requests),
        total_cost,
        redundancy_score: ratio(pairs as f64, members.len()),
        critical_services_latency_ms: ratio(critical_sum, critical_requests),
        p95_latency_ms: stats::quantile_sorted(&data.sorted_latency_ms, 0.95),
        p99_latency_ms: stats::quantile_sorted(&data.sorted_latency_ms, 0.99),
        error_rate: ratio(data.failed as f64, total_requests),
        services: members.len(),
        services_with_requests: members.iter().filter(|&&s| data.requests[s] > 0).count(),
        critical_services: critical_members.len(),
        mean_cost_per_service_usd: ratio(total_cost, members.len()),
    }
}

/// Runs the service-level tests of `design` on each service's mean latency, treatment
/// minus control, and measures the effect size and the services it needs.
fn service_level(
    design: Design,
    control: &ArmData,
    treatment: &ArmData,
) -> Result<(Vec<NamedTest>, EffectSize), ExperimentError> {
    let control_means = control.mean_latency_ms();
    let treatment_means = treatment.mean_latency_ms();
    let measured = |data: &ArmData, s: usize| data.members[s] && data.requests[s] > 0;
    let services = control.members.len();
    match design {
        Design::Paired => {
            let both: Vec<usize> = (0..services)
                .filter(|&s| measured(control, s) && measured(treatment, s))
                .collect();
            if both.len() < 2 {
                return Err(ExperimentError::TooFewServices {
                    arms: "both arms share",
                    found: both.len(),
                });
            }
            let a: Vec<f64> = both.iter().map(|&s| treatment_means[s]).collect();
            let b: Vec<f64> = both.iter().map(|&s| control_means[s]).collect();
            let n = both.len();
            let paired_method = "paired t-test on service mean latency (df = services - 1)";
            let wilcoxon_method = "Wilcoxon signed-rank test on service mean latency, normal approximation with tie correction, zero differences dropped, no continuity correction";
            let all_zero = a.iter().zip(&b).all(|(x, y)| x == y);
            let tests = if all_zero {
                // Both arms measured every service identically (an A/A with common random
                // numbers), so neither statistic exists; there is no evidence of a change.
                vec![
                    NamedTest::undefined(paired_method, "service", n),
                    NamedTest::undefined(wilcoxon_method, "service", n),
                ]
            } else {
                vec![
                    NamedTest::new(paired_method, "service", n, stats::paired_t(&a, &b)?),
                    NamedTest::new(wilcoxon_method, "service", n, stats::wilcoxon(&a, &b)?),
                ]
            };
            let d = if all_zero {
                0.0
            } else {
                stats::cohens_d_paired(&a, &b)?
            };
            Ok((
                tests,
                effect_size(
                    "Cohen's d_z: mean of the service differences over their standard deviation",
                    PowerDesign::Paired,
                    d,
                    n as u64,
                ),
            ))
        }
        Design::Split => {
            let select = |data: &ArmData, means: &[f64]| -> Vec<f64> {
                (0..services)
                    .filter(|&s| measured(data, s))
                    .map(|s| means[s])
                    .collect()
            };
            let a = select(treatment, &treatment_means);
            let b = select(control, &control_means);
            for (arms, values) in [("the treatment arm has", &a), ("the control arm has", &b)] {
                if values.len() < 2 {
                    return Err(ExperimentError::TooFewServices {
                        arms,
                        found: values.len(),
                    });
                }
            }
            let n = a.len() + b.len();
            let tests = vec![
                NamedTest::new(
                    "Welch's t-test on service mean latency (unequal variances, Welch-Satterthwaite df)",
                    "service",
                    n,
                    stats::welch(&a, &b)?,
                ),
                NamedTest::new(
                    "Mann-Whitney U test on service mean latency, asymptotic with tie and continuity correction",
                    "service",
                    n,
                    stats::mann_whitney(&a, &b)?,
                ),
            ];
            let d = stats::cohens_d(&a, &b)?;
            // Power is found for equal arms; the measured power uses the smaller arm.
            let per_arm = a.len().min(b.len()) as u64;
            let mut effect = effect_size(
                "Cohen's d: difference of the arms' mean service latency over the pooled standard deviation",
                PowerDesign::TwoSample,
                d,
                per_arm,
            );
            effect.services_needed = effect.services_needed.map(|n| 2 * n);
            Ok((tests, effect))
        }
    }
}

fn effect_size(method: &'static str, design: PowerDesign, d: f64, n: u64) -> EffectSize {
    let power_method = match design {
        PowerDesign::Paired => "two-sided paired t-test, noncentral t with noncentrality d_z sqrt(n)",
        PowerDesign::TwoSample => "two-sided two-sample t-test with equal arms, noncentral t with noncentrality d sqrt(n / 2)",
    };
    let power = if d.is_finite() {
        stats::design_power(design, d, n, ALPHA)
    } else {
        f64::NAN
    };
    EffectSize {
        method,
        cohens_d: d,
        power_method,
        alpha: ALPHA,
        target_power: POWER,
        services_needed: stats::sample_size(design, d, POWER, ALPHA),
        power_at_measured_services: power,
    }
}

/// Sums of one arm over a weighted set of services.
struct Totals {
    requests: f64,
    latency_ms: f64,
    cost_usd: f64,
    services: f64,
    critical_requests: f64,
    critical_latency_ms: f64,
}

fn totals(data: &ArmData, weights: &[u32], critical: &[bool]) -> Totals {
    let mut totals = Totals {
        requests: 0.0,
        latency_ms: 0.0,
        cost_usd: 0.0,
        services: 0.0,
        critical_requests: 0.0,
        critical_latency_ms: 0.0,
    };
    for (service, &weight) in weights.iter().enumerate() {
        if weight == 0 {
            continue;
        }
        let w = f64::from(weight);
        totals.requests += w * data.requests[service] as f64;
        totals.latency_ms += w * data.latency_sum_ms[service];
        totals.cost_usd += w * data.monthly_cost_usd[service];
        totals.services += w;
        if critical[service] {
            totals.critical_requests += w * data.requests[service] as f64;
            totals.critical_latency_ms += w * data.latency_sum_ms[service];
        }
    }
    totals
}

/// Returns the `q` quantile, by linear interpolation as [`stats::quantile_sorted`], of the
/// requests of `data` where each service's requests count `weights[service]` times.
/// Walks down from the highest latency, so upper quantiles cost a small share of the
/// requests.
pub fn weighted_quantile(data: &ArmData, weights: &[u32], q: f64) -> f64 {
    let total: u64 = data
        .requests
        .iter()
        .zip(weights)
        .map(|(&count, &w)| count as u64 * u64::from(w))
        .sum();
    if total == 0 {
        return f64::NAN;
    }
    let position = q.clamp(0.0, 1.0) * (total - 1) as f64;
    let lower = position.floor() as u64;
    let fraction = position - lower as f64;
    // Ranks counted from the top: the value at ascending rank r has top rank total-1-r.
    let lower_from_top = total - 1 - lower;
    let upper_from_top = lower_from_top.saturating_sub(1);
    let (mut upper_value, mut covered) = (f64::NAN, 0u64);
    for i in (0..data.sorted_latency_ms.len()).rev() {
        let weight = u64::from(weights[data.sorted_service[i] as usize]);
        if weight == 0 {
            continue;
        }
        covered += weight;
        if upper_value.is_nan() && covered > upper_from_top {
            upper_value = data.sorted_latency_ms[i];
        }
        if covered > lower_from_top {
            let lower_value = data.sorted_latency_ms[i];
            return lower_value + fraction * (upper_value - lower_value);
        }
    }
    unreachable!("the weights cover {total} requests")
}

/// Computes one resample's four ratios, treatment over control: mean latency, p95
/// latency, mean cost per service and critical-service latency.
fn ratios(
    control: &ArmData,
    treatment: &ArmData,
    control_weights: &[u32],
    treatment_weights: &[u32],
    critical: &[bool],
) -> [f64; 4] {
    let c = totals(control, control_weights, critical);
    let t = totals(treatment, treatment_weights, critical);
    let ratio = |numerator: f64, denominator: f64| {
        if denominator > 0.0 && numerator.is_finite() {
            numerator / denominator
        } else {
            f64::NAN
        }
    };
    [
        ratio(
            ratio(t.latency_ms, t.requests),
            ratio(c.latency_ms, c.requests),
        ),
        ratio(
            weighted_quantile(treatment, treatment_weights, 0.95),
            weighted_quantile(control, control_weights, 0.95),
        ),
        ratio(ratio(t.cost_usd, t.services), ratio(c.cost_usd, c.services)),
        ratio(
            ratio(t.critical_latency_ms, t.critical_requests),
            ratio(c.critical_latency_ms, c.critical_requests),
        ),
    ]
}

/// Draws `members.len()` services with replacement from `members` and returns each
/// service's count.
fn resample(members: &[usize], services: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut weights = vec![0u32; services];
    for _ in 0..members.len() {
        weights[members[rng.random_range(0..members.len())]] += 1;
    }
    weights
}

/// Builds percentile intervals from resamples of services: in the paired design one draw
/// of services serves both arms, in the split design each arm's services are drawn apart.
fn bootstrap(
    settings: &ExperimentSettings,
    control: &ArmData,
    treatment: &ArmData,
    critical: &[bool],
    rng: &mut ChaCha8Rng,
    proceed: &dyn Fn() -> bool,
) -> Result<Intervals, ExperimentError> {
    let services = control.members.len();
    let members =
        |data: &ArmData| -> Vec<usize> { (0..services).filter(|&s| data.members[s]).collect() };
    let (control_members, treatment_members) = (members(control), members(treatment));
    let ones = |list: &[usize]| {
        let mut weights = vec![0u32; services];
        for &s in list {
            weights[s] = 1;
        }
        weights
    };
    let estimate = ratios(
        control,
        treatment,
        &ones(&control_members),
        &ones(&treatment_members),
        critical,
    );
    let mut replicates: [Vec<f64>; 4] = Default::default();
    for resample_index in 0..settings.resamples {
        if resample_index % 256 == 0 && !proceed() {
            return Err(ExperimentError::Interrupted);
        }
        let (control_weights, treatment_weights) = match settings.design {
            Design::Paired => {
                let weights = resample(&control_members, services, rng);
                (weights.clone(), weights)
            }
            Design::Split => (
                resample(&control_members, services, rng),
                resample(&treatment_members, services, rng),
            ),
        };
        let values = ratios(
            control,
            treatment,
            &control_weights,
            &treatment_weights,
            critical,
        );
        for (list, value) in replicates.iter_mut().zip(values) {
            if value.is_finite() {
                list.push(value);
            }
        }
    }
    let [mean_latency, p95_latency, cost, critical_latency] =
        std::array::from_fn(|k| interval(estimate[k], &mut replicates[k]));
    Ok(Intervals {
        method: "percentile bootstrap over services (cluster bootstrap: a resampled service brings all its requests), seeded",
        confidence: CONFIDENCE,
        resamples: settings.resamples,
        mean_latency,
        p95_latency,
        cost,
        critical_latency,
    })
}

fn interval(estimate: f64, replicates: &mut [f64]) -> Interval {
    replicates.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    let percent = |ratio: f64| 100.0 * (ratio - 1.0);
    let low = percent(stats::quantile_sorted(replicates, tail));
    let high = percent(stats::quantile_sorted(replicates, 1.0 - tail));
    Interval {
        change_pct: percent(estimate),
        low_pct: low,
        high_pct: high,
        excludes_zero: low > 0.0 || high < 0.0,
        resamples_used: replicates.len(),
    }
}

/// Returns `HISTOGRAM_BINS + 1` log-spaced edges from the lowest to the highest latency of
/// both arms.
fn histogram_edges(control: &ArmData, treatment: &ArmData) -> Vec<f64> {
    let ends = |data: &ArmData| {
        (
            data.sorted_latency_ms.first().copied(),
            data.sorted_latency_ms.last().copied(),
        )
    };
    let ((c_low, c_high), (t_low, t_high)) = (ends(control), ends(treatment));
    let low = c_low.into_iter().chain(t_low).fold(f64::INFINITY, f64::min);
    let high = c_high.into_iter().chain(t_high).fold(0.0, f64::max);
    if !(low.is_finite() && high > low && low > 0.0) {
        return vec![low.min(high), high];
    }
    let step = (high.ln() - low.ln()) / HISTOGRAM_BINS as f64;
    let mut edges: Vec<f64> = (0..=HISTOGRAM_BINS)
        .map(|k| (low.ln() + k as f64 * step).exp())
        .collect();
    edges[0] = low;
    edges[HISTOGRAM_BINS] = high;
    edges
}

/// Counts `sorted` values per bin; the last bin includes its upper edge.
fn histogram(sorted: &[f64], edges: &[f64]) -> Vec<usize> {
    let bins = edges.len() - 1;
    let mut counts = vec![0; bins];
    for &value in sorted {
        let bin = edges[1..bins].partition_point(|&edge| edge <= value);
        counts[bin] += 1;
    }
    counts
}
