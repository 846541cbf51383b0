//! The placement plan: a mixed-integer program solved by HiGHS, three baselines scored by
//! the same functions, and a checker that verifies any plan on its own.
//!
//! For each service the program chooses hosting regions `y_r` (binary), sends each origin's
//! traffic to a host (`x_or`, the share of origin `o` served in `r`) and sizes each host
//! (`n_r` instances, integer). Latency-based routing is kept by closest-assignment rows:
//! when `r` hosts the service, no origin goes to a host farther than `r`. The monthly
//! objective is
//!
//! ```text
//!   sum_r n_r x price(s, r)                       instance-months
//! + sum_or x_or x mean_demand_o x transfer(s, r)  dependency responses crossing regions
//! + lambda x sum_or x_or x mean_demand_o / fleet_demand x latency(s, o, r)
//! ```
//!
//! where `latency(s, o, r)` is the latency model's prediction for users of `o` served in
//! `r`. A host runs at most at the target utilization in its peak:
//! `n_r x capacity x target >= sum_o x_or x peak_demand_o`. Callers are solved after their callees, so a host's
//! dependency calls go to where the callees' plans put them. Without a CPU capacity per
//! region no constraint couples services, and each is solved alone; with one, the fleet is
//! one program whose dependency terms take the callees' hosts from the uncoupled plans.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use highs::{HighsModelStatus, RowProblem, Sense};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::features::{self, CandidateCall, CandidateHost, FleetSummary};
use crate::latency_model::LatencyModel;
use crate::simulate::HOURS_PER_MONTH;

mod columns;
mod search;

/// Settings of the program, with their units.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptimizeSettings {
    /// USD per month that one ms of fleet traffic-weighted mean latency is worth, at most
    /// `MAX_LAMBDA`.
    pub lambda_usd_per_ms: f64,
    /// Peak-hour CPU utilization that hosts are sized for, in [`MIN_TARGET_UTILIZATION`, 1].
    pub target_utilization: f64,
    pub min_replicas: usize,
    pub max_replicas: usize,
    /// Highest routed latency, in ms, that any origin of a latency-critical service may
    /// see; `None` for no bound.
    pub slo_ms: Option<f64>,
    /// vCPUs available to the fleet in each region; `None` for no limit.
    pub capacity_vcpus: Option<f64>,
    /// Seconds the solver may spend on one service's program, or on the fleet program.
    pub time_limit_seconds: f64,
    /// Relative gap at which the solver stops.
    pub mip_gap: f64,
    /// How each service's program is solved when no capacity couples them.
    pub solver: ServiceSolver,
}

/// The solver of the per-service programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServiceSolver {
    /// HiGHS up to 8 regions, the set search above.
    Auto,
    /// The mixed-integer program, solved by HiGHS.
    Highs,
    /// The exact search over region sets.
    Search,
}

/// Largest `--lambda`, in USD per month per ms. Far above it HiGHS loses precision
/// (1e20 gave an unknown status), and no fleet's latency is worth more.
pub const MAX_LAMBDA: f64 = 1e9;

/// Smallest `--target-utilization`. Below it the instance counts grow past any fleet.
pub const MIN_TARGET_UTILIZATION: f64 = 0.01;

/// Above this many regions `ServiceSolver::Auto` uses the set search: at 22 regions HiGHS
/// took about 2 s per service, the search about a millisecond, for the same optimum.
pub const SEARCH_ABOVE_REGIONS: usize = 8;

/// Rounds of the capacity-coupled fleet program at the most, each solved with the callee
/// hosts of the round before.
pub const DEPENDENCY_ROUNDS: usize = 4;

impl Default for OptimizeSettings {
    fn default() -> Self {
        OptimizeSettings {
            lambda_usd_per_ms: 1000.0,
            target_utilization: 0.6,
            min_replicas: 2,
            max_replicas: 5,
            slo_ms: None,
            capacity_vcpus: None,
            time_limit_seconds: 60.0,
            mip_gap: 1e-6,
            solver: ServiceSolver::Auto,
        }
    }
}

/// Errors of the optimizer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptimizeError {
    #[error("--{setting} {value} is invalid: {rule}")]
    InvalidSetting {
        setting: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("service `{service}` cannot meet `{constraint}`: {reason}")]
    Infeasible {
        service: String,
        constraint: String,
        reason: String,
    },
    #[error("the fleet cannot meet `{constraint}`: {reason}")]
    FleetInfeasible { constraint: String, reason: String },
    #[error("HiGHS failed on {what}: {status}")]
    Solver { what: String, status: String },
    #[error("the latency model failed")]
    Model(#[from] crate::latency_model::ModelError),
    #[error("optimization was interrupted; nothing was stored")]
    Interrupted,
    #[error(
        "the fleet program found no plan within --time-limit {seconds} s\nhint: raise --time-limit"
    )]
    TimedOut { seconds: f64 },
    #[error("HiGHS found no plan for {service} within --time-limit {seconds} s\nhint: raise --time-limit")]
    ServiceTimedOut { service: String, seconds: f64 },
    #[error("the database has no {what}\nhint: run `placewise {command}` first")]
    MissingModel {
        what: &'static str,
        command: &'static str,
    },
    #[error("the stored {what} does not fit this version of placewise\nhint: run `placewise {command}` again")]
    StaleModel {
        what: &'static str,
        command: &'static str,
    },
}

impl OptimizeSettings {
    pub fn validate(&self, regions: usize) -> Result<(), OptimizeError> {
        let invalid = |setting, value: String, rule| {
            Err(OptimizeError::InvalidSetting {
                setting,
                value,
                rule,
            })
        };
        if !(0.0..=MAX_LAMBDA).contains(&self.lambda_usd_per_ms) {
            return invalid(
                "lambda",
                self.lambda_usd_per_ms.to_string(),
                "use 0 to 1e9 USD per ms",
            );
        }
        if !(MIN_TARGET_UTILIZATION..=1.0).contains(&self.target_utilization) {
            return invalid(
                "target-utilization",
                self.target_utilization.to_string(),
                "use a number in [0.01, 1]",
            );
        }
        if self.min_replicas == 0 || self.min_replicas > regions {
            return invalid(
                "min-replicas",
                self.min_replicas.to_string(),
                "use 1 to the number of regions",
            );
        }
        if self.max_replicas < self.min_replicas {
            return invalid(
                "max-replicas",
                self.max_replicas.to_string(),
                "use at least --min-replicas",
            );
        }
        if let Some(slo) = self.slo_ms {
            if !(slo > 0.0 && slo.is_finite()) {
                return invalid("slo-ms", slo.to_string(), "use a positive number of ms");
            }
        }
        if let Some(capacity) = self.capacity_vcpus {
            if !(capacity > 0.0 && capacity.is_finite()) {
                return invalid(
                    "capacity-vcpus",
                    capacity.to_string(),
                    "use a positive number of vCPUs",
                );
            }
        }
        if self.time_limit_seconds.is_nan() || self.time_limit_seconds <= 0.0 {
            return invalid(
                "time-limit",
                self.time_limit_seconds.to_string(),
                "use a positive number of seconds",
            );
        }
        if !(self.mip_gap >= 0.0 && self.mip_gap < 1.0) {
            return invalid(
                "mip-gap",
                self.mip_gap.to_string(),
                "use a number in [0, 1)",
            );
        }
        Ok(())
    }
}

/// Prices, names and residency rules: the program's inputs besides the telemetry summary
/// and the model.
#[derive(Debug, Clone)]
pub struct Market {
    /// Service names, in the summary's order.
    pub names: Vec<String>,
    /// USD per hour of one m5.large in each region.
    pub usd_per_hour: Vec<f64>,
    /// USD per GB from each region to each other, row-major, source row.
    pub transfer_usd_per_gb: Vec<f64>,
    /// Size of one response of each service to a caller, in KB (1,000 bytes).
    pub call_response_kb: Vec<f64>,
    /// Regions each service may run in; all when `None`.
    pub allowed: Vec<Option<Vec<bool>>>,
}

/// One hosting region of a planned service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedHost {
    pub region: usize,
    pub instances: u32,
    /// Share of the service's demand routed here.
    pub routed_share: f64,
    /// Predicted demand-weighted latency of the users routed here, in ms.
    pub predicted_latency_ms: f64,
    /// Instances and transfer, in USD per month.
    pub monthly_cost_usd: f64,
}

/// A placement of every service, with how it scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub hosts: Vec<Vec<PlannedHost>>,
    pub score: PlanScore,
}

impl Plan {
    /// Returns each service's regions, in ascending order.
    pub fn region_sets(&self) -> Vec<Vec<usize>> {
        self.hosts
            .iter()
            .map(|hosts| {
                let mut regions: Vec<usize> = hosts.iter().map(|h| h.region).collect();
                regions.sort_unstable();
                regions
            })
            .collect()
    }
}

/// A plan's objective and its two parts, all from the same functions for every plan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PlanScore {
    pub objective: f64,
    pub monthly_cost_usd: f64,
    /// Predicted latency, weighted by mean demand over services and origins, in ms.
    pub weighted_latency_ms: f64,
}

/// HiGHS's account of a solve, summed over the programs solved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SolverReport {
    pub status: String,
    pub objective: f64,
    /// The proven lower bound of the program(s) solved. Without capacity each service's
    /// program takes its callees' hosts as given, so the bound is of that decomposition,
    /// not of every placement of the fleet. Under capacity see [`CapacitySearch`].
    pub bound: f64,
    /// `(objective - bound) / objective`.
    pub gap: f64,
    pub programs: usize,
    /// `per service` or `fleet`.
    pub decomposition: String,
    /// `HiGHS`, `set search`, or `column generation` (HiGHS over searched columns).
    pub method: String,
    /// Region sets the fleet program generated; absent per service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<usize>,
    /// Under capacity, how the plan was found; absent per service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_search: Option<CapacitySearch>,
}

/// Record of how the capacity-coupled fleet was placed. A caller's coefficients depend on
/// where its callees run, so two ways are tried and the plan of lower objective is kept:
/// - `callees first`: one program per call-graph level, callees' levels first, each with
///   its callees' actual hosts and the vCPUs the levels before it left. `bound` is the sum
///   of the levels' bounds, so the gap is that of this decomposition, as without capacity.
/// - `rounds`: the whole fleet as one program, solved again with each round's plan as the
///   callees' hosts. `bound` holds for the chosen round's program, whose callers assume the
///   previous round's callee hosts. Priced with its own hosts the plan can cost more, and
///   no bound is known for that.
///
/// The report's `objective` prices every call at the callee's host in the plan itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacitySearch {
    /// `callees first` or `rounds`.
    pub chosen: &'static str,
    /// The chosen plan's objective in the program(s) that `bound` holds for.
    pub program_objective: f64,
    /// The callees-first plan's objective; absent when a level did not fit in what the
    /// levels before it left.
    pub callees_first_objective: Option<f64>,
    /// The objective of the best plan of the rounds, priced with its own callee hosts.
    pub rounds_objective: Option<f64>,
    /// Rounds solved.
    pub rounds: usize,
    /// Whether the last round's plan kept the callee hosts it assumed.
    pub rounds_settled: bool,
}

/// The plan kept by [`Optimizer::capacity_rounds`]: its objective with its own callee hosts
/// in `plan`, and as its round's program priced it in `report.objective`.
struct RoundsFound {
    plan: Plan,
    report: SolverReport,
    rounds: usize,
    /// Whether the kept plan keeps the callee hosts its round assumed.
    settled: bool,
}

/// The per-service data of the program: every coefficient is fixed before the solve.
#[derive(Debug, Clone)]
struct ServiceTerms {
    /// Predicted latency in ms of users of origin `o` served in `r`, row-major `o x r`.
    latency: Vec<f64>,
    /// USD per month per request per second routed to `r`, for dependency responses.
    transfer: Vec<f64>,
    /// USD per month of one instance in `r`.
    instance_month: Vec<f64>,
    /// Requests per second one instance serves at the target utilization.
    instance_rps: f64,
    /// Processing time in ms at `r` with dependency calls, for this service's callers.
    processing: Vec<f64>,
    /// Mean utilization a host of this service runs at.
    utilization: f64,
    allowed: Vec<bool>,
}

/// Everything needed to score and solve.
pub struct Optimizer<'a> {
    pub summary: &'a FleetSummary,
    pub market: &'a Market,
    pub model: &'a LatencyModel,
    pub settings: OptimizeSettings,
    /// Total mean demand of the fleet, in requests per second.
    fleet_demand: f64,
    /// Services by depth in the call graph: each level calls only earlier levels.
    levels: Vec<Vec<usize>>,
}

impl<'a> Optimizer<'a> {
    pub fn new(
        summary: &'a FleetSummary,
        market: &'a Market,
        model: &'a LatencyModel,
        settings: OptimizeSettings,
    ) -> Result<Self, OptimizeError> {
        settings.validate(summary.regions.len())?;
        let callees: Vec<&[usize]> = summary
            .services
            .iter()
            .map(|s| s.dependencies.as_slice())
            .collect();
        let order = crate::simulate::call_graph_order(&callees).map_err(|error| {
            OptimizeError::FleetInfeasible {
                constraint: "an acyclic call graph".to_string(),
                reason: error.to_string(),
            }
        })?;
        let fleet_demand = summary
            .services
            .iter()
            .map(|s| s.mean_demand.iter().sum::<f64>())
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
        let mut depth = vec![0usize; summary.services.len()];
        for &service in &order {
            depth[service] = summary.services[service]
                .dependencies
                .iter()
                .map(|&callee| depth[callee] + 1)
                .max()
                .unwrap_or(0);
        }
        let mut levels = vec![Vec::new(); depth.iter().copied().max().map_or(0, |d| d + 1)];
        for &service in &order {
            levels[depth[service]].push(service);
        }
        Ok(Optimizer {
            summary,
            market,
            model,
            settings,
            fleet_demand,
            levels,
        })
    }

    fn regions(&self) -> usize {
        self.summary.regions.len()
    }

    fn rtt(&self, from: usize, to: usize) -> f64 {
        self.summary.mean_rtt_ms[from * self.regions() + to]
    }

    /// Returns the host in `hosts` nearest to `from`; ties go to the lower region index,
    /// as in the world model.
    fn nearest(&self, from: usize, hosts: &[usize]) -> usize {
        let mut best = hosts[0];
        for &host in &hosts[1..] {
            let (a, b) = (self.rtt(from, host), self.rtt(from, best));
            if a < b || (a == b && host < best) {
                best = host;
            }
        }
        best
    }

    /// Builds the coefficients of `service`, with its callees hosted as in `plan`.
    /// Builds the coefficients of `service` but its latencies, and the latency model's
    /// input rows for them, with its callees hosted as in `plan`.
    fn terms_without_latency(
        &self,
        service: usize,
        plan: &[Vec<usize>],
        processing: &[Vec<f64>],
        utilization: &[f64],
    ) -> (ServiceTerms, Vec<f64>) {
        let regions = self.regions();
        let summary = &self.summary.services[service];
        let total_mean: f64 = summary.mean_demand.iter().sum();
        let total_peak: f64 = summary.peak_demand.iter().sum();
        let target = self.settings.target_utilization;
        let cpu_ms = if summary.cpu_ms_per_request.is_finite() {
            summary.cpu_ms_per_request
        } else {
            1.0
        };
        let instance_rps = summary.cores * 1000.0 / cpu_ms * target;
        // A host of the plan carries a share of the demand at the target utilization in
        // its peak hour, so its utilization follows the daily profile below that.
        let profile_peak = summary.daily_profile.iter().copied().fold(0.0, f64::max);
        let cap = crate::simulate::UTILIZATION_CAP;
        let (mut weighted, mut weight, mut mean_util) = (0.0, 0.0, 0.0);
        for &hour in &summary.daily_profile {
            let rho = if profile_peak > 0.0 {
                target * hour / profile_peak
            } else {
                0.0
            };
            weighted += hour / (1.0 - rho.min(cap));
            weight += hour;
            mean_util += rho / 24.0;
        }
        let stretch = if weight > 0.0 { weighted / weight } else { 1.0 };
        let share = 1.0 / self.settings.min_replicas as f64;
        let routed_rps = total_mean * share;
        let instances = (total_peak * share / instance_rps).ceil().max(1.0);

        let price_units = (summary.cores / crate::catalog::PRICED_INSTANCE_VCPUS)
            .max(summary.memory_mb / crate::catalog::PRICED_INSTANCE_MEMORY_MB);
        let mut transfer = vec![0.0; regions];
        let mut instance_month = vec![0.0; regions];
        let mut processing_at = vec![0.0; regions];
        let mut rows = Vec::with_capacity(regions * regions * self.model.feature_names().len());
        for r in 0..regions {
            instance_month[r] = self.market.usd_per_hour[r] * price_units * HOURS_PER_MONTH;
            let mut calls = Vec::new();
            let mut transfer_per_rps = 0.0;
            let mut wait = 0.0f64;
            for &dependency in &summary.dependencies {
                let callee_host = self.nearest(r, &plan[dependency]);
                let rtt = self.rtt(r, callee_host);
                let callee_processing = processing[dependency][callee_host];
                calls.push(CandidateCall {
                    rtt_ms: rtt,
                    callee_processing_ms: callee_processing,
                    callee_utilization: utilization[dependency],
                });
                wait = wait.max(rtt + callee_processing);
                if callee_host != r {
                    let gb_per_rps_month = 3600.0
                        * HOURS_PER_MONTH
                        * self.market.call_response_kb[dependency]
                        * 1000.0
                        / 1e9;
                    transfer_per_rps += gb_per_rps_month
                        * self.market.transfer_usd_per_gb[callee_host * regions + r];
                }
            }
            transfer[r] = transfer_per_rps;
            processing_at[r] = summary.idle_processing_ms * stretch + wait;
            for o in 0..regions {
                let host = CandidateHost {
                    instances,
                    routed_rps,
                    mean_utilization: mean_util,
                    peak_utilization: target.min(1.0),
                    queueing_stretch: stretch,
                    user_rtt_ms: self.rtt(o, r),
                };
                rows.extend(features::candidate_row(
                    self.summary,
                    summary,
                    r,
                    &host,
                    &calls,
                ));
            }
        }
        let allowed = self.market.allowed[service]
            .clone()
            .unwrap_or_else(|| vec![true; regions]);
        let terms = ServiceTerms {
            latency: Vec::new(),
            transfer,
            instance_month,
            instance_rps,
            processing: processing_at,
            utilization: mean_util,
            allowed,
        };
        (terms, rows)
    }

    /// Builds the coefficients of every service in `level`, which call none of each
    /// other, with one call of the latency model for all of them.
    fn level_terms(
        &self,
        level: &[usize],
        plan: &[Vec<usize>],
        processing: &[Vec<f64>],
        utilization: &[f64],
    ) -> Result<Vec<ServiceTerms>, OptimizeError> {
        let regions = self.regions();
        let mut all_rows = Vec::new();
        let mut partial = Vec::with_capacity(level.len());
        for &service in level {
            let (terms, rows) = self.terms_without_latency(service, plan, processing, utilization);
            all_rows.extend(rows);
            partial.push(terms);
        }
        let predicted = self.model.predict(&all_rows)?;
        for (k, terms) in partial.iter_mut().enumerate() {
            let block = &predicted[k * regions * regions..(k + 1) * regions * regions];
            terms.latency = vec![0.0; regions * regions];
            for r in 0..regions {
                for o in 0..regions {
                    terms.latency[o * regions + r] = block[r * regions + o];
                }
            }
        }
        Ok(partial)
    }

    /// Scores the hosts `regions` of one service: nearest routing, sizing at the target
    /// utilization, and the objective's three parts.
    fn score_service(
        &self,
        service: usize,
        terms: &ServiceTerms,
        hosts: &[usize],
    ) -> (Vec<PlannedHost>, PlanScore) {
        let regions = self.regions();
        let summary = &self.summary.services[service];
        let total: f64 = summary
            .mean_demand
            .iter()
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
        let mut peak = vec![0.0; regions];
        let mut mean = vec![0.0; regions];
        let mut weighted_latency = vec![0.0; regions];
        for o in 0..regions {
            let host = self.nearest(o, hosts);
            peak[host] += summary.peak_demand[o];
            mean[host] += summary.mean_demand[o];
            weighted_latency[host] += summary.mean_demand[o] * terms.latency[o * regions + host];
        }
        let mut planned = Vec::with_capacity(hosts.len());
        let mut score = PlanScore {
            objective: 0.0,
            monthly_cost_usd: 0.0,
            weighted_latency_ms: 0.0,
        };
        for &r in hosts {
            let instances = (peak[r] / terms.instance_rps).ceil().max(1.0);
            let cost = instances * terms.instance_month[r] + mean[r] * terms.transfer[r];
            score.monthly_cost_usd += cost;
            score.weighted_latency_ms += weighted_latency[r] / self.fleet_demand;
            planned.push(PlannedHost {
                region: r,
                instances: instances as u32,
                routed_share: mean[r] / total,
                predicted_latency_ms: if mean[r] > 0.0 {
                    weighted_latency[r] / mean[r]
                } else {
                    terms.latency[r * regions + r]
                },
                monthly_cost_usd: cost,
            });
        }
        score.objective =
            score.monthly_cost_usd + self.settings.lambda_usd_per_ms * score.weighted_latency_ms;
        (planned, score)
    }

    /// Builds a plan by choosing each service's regions with `choose`, in call-graph order,
    /// and scores it.
    fn plan_with(
        &self,
        choose: impl FnMut(usize, &ServiceTerms) -> Result<Vec<usize>, OptimizeError>,
    ) -> Result<Plan, OptimizeError> {
        Ok(self.plan_with_terms(choose)?.0)
    }

    /// Builds a plan as `plan_with` does, and keeps each service's coefficients.
    fn plan_with_terms(
        &self,
        mut choose: impl FnMut(usize, &ServiceTerms) -> Result<Vec<usize>, OptimizeError>,
    ) -> Result<(Plan, Vec<ServiceTerms>), OptimizeError> {
        self.plan_by_level(|level, terms| {
            let mut chosen = Vec::with_capacity(level.len());
            for (&service, terms) in level.iter().zip(terms) {
                if crate::interrupt::requested() {
                    return Err(OptimizeError::Interrupted);
                }
                chosen.push(choose(service, terms)?);
            }
            Ok(chosen)
        })
    }

    /// Builds a plan level by level of the call graph: `choose_level` returns the regions
    /// of every service of one level, in the level's order, given their coefficients.
    fn plan_by_level(
        &self,
        mut choose_level: impl FnMut(
            &[usize],
            &[ServiceTerms],
        ) -> Result<Vec<Vec<usize>>, OptimizeError>,
    ) -> Result<(Plan, Vec<ServiceTerms>), OptimizeError> {
        let services = self.summary.services.len();
        let regions = self.regions();
        let mut chosen = vec![Vec::new(); services];
        let mut processing = vec![vec![0.0; regions]; services];
        let mut utilization = vec![0.0; services];
        let mut hosts = vec![Vec::new(); services];
        let mut all_terms = vec![None; services];
        let mut score = PlanScore {
            objective: 0.0,
            monthly_cost_usd: 0.0,
            weighted_latency_ms: 0.0,
        };
        for level in &self.levels {
            if crate::interrupt::requested() {
                return Err(OptimizeError::Interrupted);
            }
            let level_terms = self.level_terms(level, &chosen, &processing, &utilization)?;
            let level_chosen = choose_level(level, &level_terms)?;
            for ((&service, terms), mut regions_chosen) in
                level.iter().zip(level_terms).zip(level_chosen)
            {
                regions_chosen.sort_unstable();
                let (planned, service_score) = self.score_service(service, &terms, &regions_chosen);
                score.objective += service_score.objective;
                score.monthly_cost_usd += service_score.monthly_cost_usd;
                score.weighted_latency_ms += service_score.weighted_latency_ms;
                processing[service] = terms.processing.clone();
                utilization[service] = terms.utilization;
                chosen[service] = regions_chosen;
                hosts[service] = planned;
                all_terms[service] = Some(terms);
            }
        }
        let all_terms = all_terms
            .into_iter()
            .map(|terms| terms.expect("every service is in the call-graph order"))
            .collect();
        Ok((Plan { hosts, score }, all_terms))
    }

    /// Builds the random control of the original study: two to four regions drawn per
    /// service.
    pub fn random_plan(&self, seed: u64) -> Result<Plan, OptimizeError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let regions: Vec<usize> = (0..self.regions()).collect();
        // Draw in service order, whatever the solve order, so the control is the same
        // for the same seed.
        let draws: Vec<Vec<usize>> = (0..self.summary.services.len())
            .map(|_| {
                let count = rng.random_range(2..=4).min(regions.len());
                regions.choose_multiple(&mut rng, count).copied().collect()
            })
            .collect();
        self.plan_with(|service, _| Ok(draws[service].clone()))
    }

    /// Builds the original study's heuristic plan: latency-critical services in the two
    /// regions of lowest mean outbound RTT, the others in their three busiest origin regions.
    pub fn heuristic_plan(&self) -> Result<Plan, OptimizeError> {
        let regions = self.regions();
        let mut by_rtt: Vec<usize> = (0..regions).collect();
        by_rtt.sort_by(|&a, &b| {
            self.summary.avg_outbound_rtt_ms[a].total_cmp(&self.summary.avg_outbound_rtt_ms[b])
        });
        self.plan_with(|service, _| {
            let summary = &self.summary.services[service];
            if summary.latency_critical {
                Ok(by_rtt.iter().take(2).copied().collect())
            } else {
                let mut busiest: Vec<usize> = (0..regions).collect();
                busiest.sort_by(|&a, &b| summary.mean_demand[b].total_cmp(&summary.mean_demand[a]));
                Ok(busiest.into_iter().take(3).collect())
            }
        })
    }

    /// Greedy: from the best single region, add the region that lowers the service's
    /// objective most, while it lowers it or the replica floor or the SLO is not yet met.
    pub fn greedy_plan(&self) -> Result<Plan, OptimizeError> {
        self.plan_with(|service, terms| {
            let mut chosen: Vec<usize> = Vec::new();
            let mut best_objective = f64::INFINITY;
            loop {
                let mut best: Option<(usize, f64)> = None;
                for r in 0..self.regions() {
                    if !terms.allowed[r] || chosen.contains(&r) {
                        continue;
                    }
                    let mut trial = chosen.clone();
                    trial.push(r);
                    let (_, score) = self.score_service(service, terms, &trial);
                    if best.is_none_or(|(_, objective)| score.objective < objective) {
                        best = Some((r, score.objective));
                    }
                }
                let Some((region, objective)) = best else {
                    break;
                };
                let needed = chosen.len() < self.settings.min_replicas
                    || !self.meets_slo(service, terms, &chosen);
                if chosen.len() >= self.settings.max_replicas
                    || (!needed && objective >= best_objective)
                {
                    break;
                }
                chosen.push(region);
                best_objective = objective;
            }
            if chosen.len() < self.settings.min_replicas {
                return Err(self.replica_error(service, terms));
            }
            Ok(chosen)
        })
    }

    fn meets_slo(&self, service: usize, terms: &ServiceTerms, hosts: &[usize]) -> bool {
        let summary = &self.summary.services[service];
        let Some(slo) = self.settings.slo_ms.filter(|_| summary.latency_critical) else {
            return true;
        };
        if hosts.is_empty() {
            return false;
        }
        let regions = self.regions();
        (0..regions).all(|o| {
            summary.mean_demand[o] <= 0.0
                || terms.latency[o * regions + self.nearest(o, hosts)] <= slo
        })
    }

    fn replica_error(&self, service: usize, terms: &ServiceTerms) -> OptimizeError {
        let allowed: Vec<&str> = (0..self.regions())
            .filter(|&r| terms.allowed[r])
            .map(|r| self.summary.regions[r].as_str())
            .collect();
        OptimizeError::Infeasible {
            service: self.market.names[service].clone(),
            constraint: format!("--min-replicas {}", self.settings.min_replicas),
            reason: format!(
                "only {} allowed region(s): {}",
                allowed.len(),
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ),
        }
    }

    /// Solves the program for every service and returns the plan with HiGHS's report.
    /// Each service is its own program, solved after its callees. Putting a whole level
    /// of the call graph into one program of independent blocks was tried and was slower:
    /// HiGHS branched on the blocks together and hit the time limit.
    pub fn optimal_plan(&self) -> Result<(Plan, SolverReport), OptimizeError> {
        if self.settings.capacity_vcpus.is_some() {
            return self.capacity_plan();
        }
        let mut report = SolverReport {
            status: "optimal".to_string(),
            objective: 0.0,
            bound: 0.0,
            gap: 0.0,
            programs: 0,
            decomposition: "per service".to_string(),
            method: "HiGHS".to_string(),
            columns: None,
            capacity_search: None,
        };
        let search = match self.settings.solver {
            ServiceSolver::Highs => false,
            ServiceSolver::Search => true,
            ServiceSolver::Auto => self.regions() > SEARCH_ABOVE_REGIONS,
        };
        if search {
            let plan = self.searched_plan()?;
            report.method = "set search".to_string();
            report.objective = plan.score.objective;
            report.bound = plan.score.objective;
            report.programs = plan.hosts.len();
            return Ok((plan, report));
        }
        let (plan, _) = self.plan_by_level(|level, terms| {
            let solved = self.solve_level(level, terms)?;
            let mut chosen = Vec::with_capacity(solved.len());
            for solved in solved {
                report.objective += solved.objective;
                report.bound += solved.bound;
                report.programs += 1;
                if solved.status != "optimal" {
                    report.status = solved.status.clone();
                }
                chosen.push(solved.regions);
            }
            Ok(chosen)
        })?;
        report.gap = relative_gap(report.objective, report.bound);
        Ok((plan, report))
    }

    /// Solves the capacity-coupled fleet by column generation, callees first and in rounds
    /// (see [`CapacitySearch`]), within one `--time-limit`, and returns the plan of lower
    /// objective.
    ///
    /// The report's `gap` is of the plan's own objective against the chosen way's bound.
    /// Its status is `optimal` within `--mip-gap`, `time limit` or `gap above the setting`.
    /// It is `callee hosts not settled` when the rounds' plan moved callees that its
    /// callers' terms assumed, because its bound is then of another program.
    fn capacity_plan(&self) -> Result<(Plan, SolverReport), OptimizeError> {
        let deadline = Instant::now() + Duration::from_secs_f64(self.settings.time_limit_seconds);
        let by_level = self.capacity_by_level(deadline);
        let rounds = self.capacity_rounds(deadline);
        let (by_level, rounds) = match (by_level, rounds) {
            // The rounds hold the whole fleet to the setting itself, so their error (an
            // infeasible capacity with the limit it needs, or no plan in time) is the one
            // to report.
            (Err(_), Err(error)) => return Err(error),
            (by_level, rounds) => (by_level.ok(), rounds.ok()),
        };

        let programs = by_level.as_ref().map_or(0, |(_, r)| r.programs)
            + rounds.as_ref().map_or(0, |found| found.report.programs);
        let callees_first_objective = by_level.as_ref().map(|(plan, _)| plan.score.objective);
        let rounds_objective = rounds.as_ref().map(|found| found.plan.score.objective);
        let rounds_solved = rounds.as_ref().map_or(0, |found| found.rounds);
        let rounds_settled = rounds.as_ref().is_some_and(|found| found.settled);
        let use_rounds = match (&by_level, &rounds) {
            (Some((plan, _)), Some(found)) => found.plan.score.objective < plan.score.objective,
            (None, _) => true,
            (Some(_), None) => false,
        };

        let (plan, mut report, chosen, program_objective) = if use_rounds {
            let found = rounds.expect("the rounds found a plan");
            let mut report = found.report;
            let program = report.objective;
            report.objective = found.plan.score.objective;
            report.gap = relative_gap(report.objective, report.bound);
            // When the rounds did not settle, the kept plan's bound is of a program whose
            // callers assumed other callee hosts, so the plan's own gap is unproven.
            if !found.settled && report.status == "optimal" {
                report.status = "callee hosts not settled".to_string();
            }
            (found.plan, report, "rounds", program)
        } else {
            let (plan, report) = by_level.expect("the levels found a plan");
            let objective = plan.score.objective;
            (plan, report, "callees first", objective)
        };
        report.programs = programs;
        report.capacity_search = Some(CapacitySearch {
            chosen,
            program_objective,
            callees_first_objective,
            rounds_objective,
            rounds: rounds_solved,
            rounds_settled,
        });
        Ok((plan, report))
    }

    /// Places the fleet one call-graph level at a time, callees first, each level under
    /// the vCPUs the levels before it left. Every caller's coefficients have its callees'
    /// actual hosts, so the plan's objective is the sum of the levels' objectives, and the
    /// sum of their bounds bounds it.
    fn capacity_by_level(&self, deadline: Instant) -> Result<(Plan, SolverReport), OptimizeError> {
        let capacity = self
            .settings
            .capacity_vcpus
            .expect("called with a capacity");
        let mut left = vec![capacity; self.regions()];
        let mut report = SolverReport {
            status: "optimal".to_string(),
            objective: 0.0,
            bound: 0.0,
            gap: 0.0,
            programs: 0,
            decomposition: "fleet, by call-graph level".to_string(),
            method: "column generation".to_string(),
            columns: Some(0),
            capacity_search: None,
        };
        let mut timed_out = false;
        let (plan, _) = self.plan_by_level(|level, terms| {
            let start = level
                .iter()
                .zip(terms)
                .map(|(&service, terms)| self.search_service(service, terms))
                .collect::<Result<Vec<_>, _>>()?;
            let program = columns::Program {
                members: level.to_vec(),
                terms: terms.iter().collect(),
                start,
                capacity: left.clone(),
                deadline,
            };
            let solution = columns::solve_program(self, &program)?;
            for ((&service, terms), set) in level.iter().zip(terms).zip(&solution.sets) {
                let (planned, _) = self.score_service(service, terms, set);
                let cores = self.summary.services[service].cores;
                for host in planned {
                    left[host.region] -= f64::from(host.instances) * cores;
                }
            }
            report.bound += solution.bound;
            report.programs += solution.programs;
            if let Some(columns) = report.columns.as_mut() {
                *columns += solution.columns;
            }
            timed_out |= solution.status == "time limit";
            Ok(solution.sets)
        })?;
        report.objective = plan.score.objective;
        report.gap = relative_gap(plan.score.objective, report.bound);
        report.status = if timed_out {
            "time limit"
        } else if report.gap <= self.settings.mip_gap * (1.0 + 1e-9) {
            "optimal"
        } else {
            "gap above the setting"
        }
        .to_string();
        Ok((plan, report))
    }

    /// Solves the whole fleet as one program in rounds. Each round takes the callee hosts of
    /// the previous round's plan, and the first those of the plan without capacity. The
    /// rounds stop when a plan keeps the hosts its round assumed, when the deadline passes,
    /// or after [`DEPENDENCY_ROUNDS`]. A round that finds no plan in time ends the rounds, with the
    /// best plan so far. The plan returned is the one of lowest objective priced with its
    /// own callee hosts.
    fn capacity_rounds(&self, deadline: Instant) -> Result<RoundsFound, OptimizeError> {
        let (mut assumed, mut terms) =
            self.plan_with_terms(|service, terms| self.search_service(service, terms))?;
        let mut best: Option<(Plan, SolverReport)> = None;
        let mut rounds = 0;
        let mut settled = false;
        let mut programs = 0;
        while rounds < DEPENDENCY_ROUNDS && !settled {
            if best.is_some() && Instant::now() >= deadline {
                break;
            }
            let (solved, report) = match columns::fleet_plan(self, &assumed, &terms, deadline) {
                Ok(found) => found,
                Err(OptimizeError::TimedOut { .. }) if best.is_some() => break,
                Err(error) => return Err(error),
            };
            rounds += 1;
            programs += report.programs;
            let sets = solved.region_sets();
            settled = sets == assumed.region_sets();
            let (plan, next_terms) =
                self.plan_with_terms(|service, _| Ok(sets[service].clone()))?;
            tracing::info!(
                round = rounds,
                objective = format!("{:.2}", plan.score.objective),
                program_objective = format!("{:.2}", solved.score.objective),
                settled,
                "capacity round solved"
            );
            let better = best
                .as_ref()
                .is_none_or(|(kept, _)| plan.score.objective < kept.score.objective);
            if better {
                best = Some((plan.clone(), report));
            }
            assumed = plan;
            terms = next_terms;
        }
        let (plan, mut report) = best.expect("the first round returns a plan or an error");
        report.programs = programs;
        // `settled` is of the last round; the kept plan settled only if it is that plan.
        let settled = settled && plan.region_sets() == assumed.region_sets();
        Ok(RoundsFound {
            plan,
            report,
            rounds,
            settled,
        })
    }

    /// Prices a plan of the given region sets, one per service: every call at the callee's
    /// host in this plan, as [`Optimizer::optimal_plan`] returns it.
    pub fn priced_plan(&self, sets: &[Vec<usize>]) -> Result<Plan, OptimizeError> {
        self.plan_with(|service, _| Ok(sets[service].clone()))
    }

    /// Finds each service's best regions by the exact set search instead of HiGHS: the
    /// same optimum, found far faster when there are many regions.
    pub fn searched_plan(&self) -> Result<Plan, OptimizeError> {
        self.plan_with(|service, terms| self.search_service(service, terms))
    }

    fn search_service(
        &self,
        service: usize,
        terms: &ServiceTerms,
    ) -> Result<Vec<usize>, OptimizeError> {
        self.precheck(service, terms)?;
        search::SetSearch::new(self, service, terms, None)
            .best()
            .map(|found| found.regions)
            .ok_or_else(|| {
                if self.settings.slo_ms.is_some() && self.summary.services[service].latency_critical
                {
                    self.slo_error(service)
                } else {
                    self.overflow_error(service)
                }
            })
    }

    /// Names the settings when no region set of `service` has a finite objective.
    fn overflow_error(&self, service: usize) -> OptimizeError {
        OptimizeError::Infeasible {
            service: self.market.names[service].clone(),
            constraint: format!(
                "--lambda {} with --target-utilization {}",
                self.settings.lambda_usd_per_ms, self.settings.target_utilization
            ),
            reason: "every region set's objective overflows; use a smaller --lambda or a larger --target-utilization".to_string(),
        }
    }

    fn slo_error(&self, service: usize) -> OptimizeError {
        OptimizeError::Infeasible {
            service: self.market.names[service].clone(),
            constraint: format!(
                "--slo-ms {} with --min-replicas {}",
                self.settings.slo_ms.unwrap_or(f64::INFINITY),
                self.settings.min_replicas
            ),
            reason: "no set of allowed regions meets the SLO for every origin under latency-based routing".to_string(),
        }
    }

    /// Checks the settings that can be judged before a solve, naming the service.
    fn precheck(&self, service: usize, terms: &ServiceTerms) -> Result<(), OptimizeError> {
        let allowed = terms.allowed.iter().filter(|&&a| a).count();
        if allowed < self.settings.min_replicas {
            return Err(self.replica_error(service, terms));
        }
        let summary = &self.summary.services[service];
        if let Some(slo) = self.settings.slo_ms.filter(|_| summary.latency_critical) {
            let regions = self.regions();
            for o in 0..regions {
                if summary.mean_demand[o] <= 0.0 {
                    continue;
                }
                let (best, region) = (0..regions)
                    .filter(|&r| terms.allowed[r])
                    .map(|r| (terms.latency[o * regions + r], r))
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .expect("at least one region is allowed");
                if best > slo {
                    return Err(OptimizeError::Infeasible {
                        service: self.market.names[service].clone(),
                        constraint: format!("--slo-ms {slo}"),
                        reason: format!(
                            "users in {} see at least {best:.1} ms predicted, from the \
                             nearest allowed region, {}",
                            self.summary.regions[o], self.summary.regions[region]
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Solves the program of every service of one call-graph level. The services of a
    /// level do not call each other, so their programs are built here, solved at the same
    /// time on rayon's threads (one HiGHS thread each), and read back in the level's order.
    fn solve_level(
        &self,
        level: &[usize],
        terms: &[ServiceTerms],
    ) -> Result<Vec<SolvedService>, OptimizeError> {
        let mut problems = Vec::with_capacity(level.len());
        let mut columns = Vec::with_capacity(level.len());
        // A service that fails its precheck is reported only after the services before it
        // are solved, so the error names the same service as a solve one by one would.
        let mut failed = None;
        for (&service, terms) in level.iter().zip(terms) {
            if let Err(error) = self.precheck(service, terms) {
                failed = Some(error);
                break;
            }
            let mut problem = RowProblem::default();
            columns.push(self.add_service(&mut problem, service, terms));
            problems.push((problem, self.market.names[service].as_str()));
        }
        let settings = &self.settings;
        let results: Vec<Result<Solved, OptimizeError>> = problems
            .into_par_iter()
            .map(|(problem, name)| {
                if crate::interrupt::requested() {
                    return Err(OptimizeError::Interrupted);
                }
                run_highs(settings, problem, name)
            })
            .collect();
        let mut solved = Vec::with_capacity(level.len());
        for ((&service, columns), result) in level.iter().zip(&columns).zip(results) {
            let result = result?;
            if result.status == "infeasible" {
                return Err(self.slo_error(service));
            }
            solved.push(SolvedService {
                regions: columns.open_regions(&result.values),
                objective: result.objective,
                bound: result.bound,
                status: result.status,
            });
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(solved),
        }
    }

    /// Adds one service's columns and rows.
    fn add_service(
        &self,
        problem: &mut RowProblem,
        service: usize,
        terms: &ServiceTerms,
    ) -> ServiceColumns {
        let regions = self.regions();
        let summary = &self.summary.services[service];
        let lambda = self.settings.lambda_usd_per_ms;
        let open: Vec<highs::Col> = (0..regions)
            .map(|r| {
                let upper = if terms.allowed[r] { 1.0 } else { 0.0 };
                problem.add_integer_column(0.0, 0.0..=upper)
            })
            .collect();
        let instances: Vec<highs::Col> = (0..regions)
            .map(|r| problem.add_integer_column(terms.instance_month[r], 0.0..))
            .collect();
        let mut assign = Vec::with_capacity(regions * regions);
        for o in 0..regions {
            let demand = summary.mean_demand[o];
            for r in 0..regions {
                let cost = demand * terms.transfer[r]
                    + lambda * demand / self.fleet_demand * terms.latency[o * regions + r];
                assign.push(problem.add_column(cost, 0.0..=1.0));
            }
        }
        for o in 0..regions {
            problem.add_row(
                1.0..=1.0,
                (0..regions).map(|r| (assign[o * regions + r], 1.0)),
            );
            for r in 0..regions {
                problem.add_row(..=0.0, [(assign[o * regions + r], 1.0), (open[r], -1.0)]);
                // Latency-based routing: with r open, nothing goes farther than r.
                let key = |k: usize| (self.rtt(o, k), k);
                let mut row = vec![(open[r], 1.0)];
                for k in 0..regions {
                    if key(k).0 > key(r).0 || (key(k).0 == key(r).0 && k > r) {
                        row.push((assign[o * regions + k], 1.0));
                    }
                }
                problem.add_row(..=1.0, row);
            }
            if let Some(slo) = self.settings.slo_ms.filter(|_| summary.latency_critical) {
                if summary.mean_demand[o] > 0.0 {
                    problem.add_row(
                        ..=slo,
                        (0..regions)
                            .map(|r| (assign[o * regions + r], terms.latency[o * regions + r])),
                    );
                }
            }
        }
        let most_instances = (summary.peak_demand.iter().sum::<f64>() / terms.instance_rps)
            .ceil()
            .max(1.0);
        for r in 0..regions {
            // Sized for the routed peak at the target utilization, and one instance at least.
            let mut row = vec![(instances[r], terms.instance_rps)];
            for o in 0..regions {
                row.push((assign[o * regions + r], -summary.peak_demand[o]));
            }
            problem.add_row(0.0.., row);
            problem.add_row(0.0.., [(instances[r], 1.0), (open[r], -1.0)]);
            // Valid for integer plans and tighter in the relaxation: a host that serves
            // origin o needs at least the whole instances o's peak takes.
            for o in 0..regions {
                let needed = (summary.peak_demand[o] / terms.instance_rps).ceil();
                if needed > 1.0 {
                    problem.add_row(
                        0.0..,
                        [(instances[r], 1.0), (assign[o * regions + r], -needed)],
                    );
                }
            }
            // No host needs more instances than the whole peak demand takes.
            problem.add_row(..=0.0, [(instances[r], 1.0), (open[r], -most_instances)]);
        }
        problem.add_row(
            self.settings.min_replicas as f64..=self.settings.max_replicas as f64,
            open.iter().map(|&c| (c, 1.0)),
        );
        ServiceColumns { open }
    }

    /// Solves the first round of the capacity-coupled fleet program: column generation with
    /// the callee hosts of the plan without capacity, the plan priced as that program
    /// prices it. [`Optimizer::optimal_plan`] starts with this round.
    pub fn first_capacity_round(&self) -> Result<(Plan, SolverReport), OptimizeError> {
        let (assumed, terms) =
            self.plan_with_terms(|service, terms| self.search_service(service, terms))?;
        let deadline = Instant::now() + Duration::from_secs_f64(self.settings.time_limit_seconds);
        columns::fleet_plan(self, &assumed, &terms, deadline)
    }

    /// Solves the first round of the capacity-coupled fleet program over every region set of
    /// every service, to a zero gap: the optimum that [`Optimizer::first_capacity_round`]
    /// comes within its gap of. For tests and small fleets: the work grows as 2^regions per
    /// service.
    pub fn enumerated_fleet_plan(&self) -> Result<Plan, OptimizeError> {
        if self.settings.capacity_vcpus.is_none() {
            return self.enumerated_plan();
        }
        let (_, terms) =
            self.plan_with_terms(|service, terms| self.search_service(service, terms))?;
        columns::every_set_plan(self, &terms)
    }

    /// Finds each service's best set of regions by trying every subset within the replica
    /// bounds, with the same scoring as the program. For tests and small fleets: the work
    /// grows as 2^regions per service.
    pub fn enumerated_plan(&self) -> Result<Plan, OptimizeError> {
        let regions = self.regions();
        self.plan_with(|service, terms| {
            let mut best: Option<(f64, Vec<usize>)> = None;
            for mask in 1u64..(1u64 << regions) {
                let subset: Vec<usize> = (0..regions).filter(|r| mask >> r & 1 == 1).collect();
                if subset.len() < self.settings.min_replicas
                    || subset.len() > self.settings.max_replicas
                    || subset.iter().any(|&r| !terms.allowed[r])
                    || !self.meets_slo(service, terms, &subset)
                {
                    continue;
                }
                let (_, score) = self.score_service(service, terms, &subset);
                if best
                    .as_ref()
                    .is_none_or(|(objective, _)| score.objective < *objective)
                {
                    best = Some((score.objective, subset));
                }
            }
            best.map(|(_, subset)| subset)
                .ok_or_else(|| self.replica_error(service, terms))
        })
    }
}

/// Solves one service's program with HiGHS on one thread.
fn run_highs(
    settings: &OptimizeSettings,
    problem: RowProblem,
    what: &str,
) -> Result<Solved, OptimizeError> {
    let mut model = problem.optimise(Sense::Minimise);
    model.make_quiet();
    model.set_option("time_limit", settings.time_limit_seconds);
    model.set_option("mip_rel_gap", settings.mip_gap);
    model.set_option("threads", 1);
    model.set_option("random_seed", 0);
    // Feasibility jump took a fifth of the time on the small per-service programs,
    // which branch-and-bound closes at once.
    model.set_option("mip_heuristic_run_feasibility_jump", false);

    let solved = model.try_solve().map_err(|status| OptimizeError::Solver {
        what: what.to_string(),
        status: format!("{status:?}"),
    })?;
    let status = match solved.status() {
        HighsModelStatus::Optimal => "optimal",
        HighsModelStatus::Infeasible | HighsModelStatus::UnboundedOrInfeasible => {
            return Ok(Solved {
                status: "infeasible".to_string(),
                objective: f64::NAN,
                bound: f64::NAN,
                values: Vec::new(),
            })
        }
        HighsModelStatus::ReachedTimeLimit => "time limit",
        other => {
            return Err(OptimizeError::Solver {
                what: what.to_string(),
                status: format!("{other:?}"),
            })
        }
    };

    let objective = solved.objective_value();
    let bound = solved
        .double_info_value(c"mip_dual_bound")
        .unwrap_or(objective);
    let values = solved.get_solution().columns().to_vec();
    if (values.is_empty() || !objective.is_finite()) && status == "time limit" {
        return Err(OptimizeError::ServiceTimedOut {
            service: what.to_string(),
            seconds: settings.time_limit_seconds,
        });
    }
    if values.is_empty() || !objective.is_finite() {
        return Err(OptimizeError::Solver {
            what: what.to_string(),
            status: format!("{status} without a solution"),
        });
    }
    Ok(Solved {
        status: status.to_string(),
        objective,
        bound,
        values,
    })
}

fn relative_gap(objective: f64, bound: f64) -> f64 {
    if objective.abs() > 0.0 {
        ((objective - bound) / objective.abs()).max(0.0)
    } else {
        0.0
    }
}

struct SolvedService {
    regions: Vec<usize>,
    objective: f64,
    bound: f64,
    status: String,
}

struct Solved {
    status: String,
    objective: f64,
    bound: f64,
    values: Vec<f64>,
}

struct ServiceColumns {
    open: Vec<highs::Col>,
}

impl ServiceColumns {
    fn open_regions(&self, values: &[f64]) -> Vec<usize> {
        self.open
            .iter()
            .enumerate()
            .filter(|(_, col)| values[col.index()] > 0.5)
            .map(|(r, _)| r)
            .collect()
    }
}

/// Maps service names and templates to the regions they may run in.
pub fn allowed_regions(
    rules: &[(String, Vec<String>)],
    names: &[String],
    regions: &[String],
) -> Result<Vec<Option<Vec<bool>>>, OptimizeError> {
    let mut allowed = vec![None; names.len()];
    let index: HashMap<&str, usize> = regions
        .iter()
        .enumerate()
        .map(|(k, r)| (r.as_str(), k))
        .collect();
    for (pattern, codes) in rules {
        let mut mask = vec![false; regions.len()];
        for code in codes {
            let Some(&k) = index.get(code.as_str()) else {
                return Err(OptimizeError::InvalidSetting {
                    setting: "allow",
                    value: format!("{pattern}={}", codes.join("+")),
                    rule: "name regions of the fleet (see `placewise regions`)",
                });
            };
            mask[k] = true;
        }
        let mut matched = false;
        for (service, name) in names.iter().enumerate() {
            let template = name
                .rsplit_once('-')
                .map_or(name.as_str(), |(head, _)| head);
            if name == pattern || template == pattern {
                allowed[service] = Some(mask.clone());
                matched = true;
            }
        }
        if !matched {
            return Err(OptimizeError::InvalidSetting {
                setting: "allow",
                value: pattern.clone(),
                rule: "name a service (auth-service-1) or a template (auth-service)",
            });
        }
    }
    Ok(allowed)
}
