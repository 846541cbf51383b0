//! The fleet program under a CPU capacity per region, solved by column generation.
//!
//! A column is one service's set of hosting regions, with the objective and the vCPUs per
//! region that the set implies. The master program picks one column per service so that
//! no region uses more vCPUs than its capacity:
//!
//! ```text
//!   min  sum_sp cost_sp z_sp
//!   s.t. sum_p z_sp = 1                      for each service s
//!        sum_sp vcpus_spr z_sp <= capacity    for each region r
//! ```
//!
//! HiGHS solves its relaxation over the columns found so far. Each capacity row's dual is
//! a price per vCPU-month, and the exact set search finds each service's best set under
//! those prices. That search also gives the Lagrangian bound
//! `sum_s min_p (cost_sp + price . vcpus_sp) - price . capacity`, which holds for every
//! plan, not only for the columns found. When the bound is within the gap setting of the
//! relaxation, or no service has a better set, HiGHS solves the master with integer `z`
//! over the columns found. The reported bound is the best Lagrangian bound, so the gap is
//! that of the whole program. Callees' hosts for the dependency terms are fixed: they come
//! from the plan the caller passes in, which [`Optimizer::optimal_plan`] changes from one
//! round to the next.

use std::collections::HashSet;
use std::time::Instant;

use highs::{ColProblem, HighsModelStatus, Model, Row, Sense};
use tracing::{debug, info};

use super::search::{Found, SetSearch};
use super::{relative_gap, OptimizeError, Optimizer, Plan, PlanScore, ServiceTerms, SolverReport};

/// Times the price of overflow rises by 1,000 before overflow counts as infeasibility.
const OVERFLOW_RAISES: usize = 3;

/// Share of the gap setting left to the relaxation; the integer solve gets the rest.
const RELAXATION_SHARE: f64 = 0.5;

/// One service's set of hosting regions and what it costs.
struct Column {
    /// Position of the service among the program's members.
    member: usize,
    regions: Vec<usize>,
    cost: f64,
    /// vCPUs the set uses in each of its regions.
    vcpus: Vec<(usize, f64)>,
}

/// One capacity-coupled program: the services it places, with their coefficients and a
/// first region set each, and the vCPUs each region offers them.
pub(super) struct Program<'a> {
    /// Services of the program, by their position in the fleet.
    pub members: Vec<usize>,
    /// Coefficients of each member, in the members' order.
    pub terms: Vec<&'a ServiceTerms>,
    /// A first region set for each member, such as its best set without capacity.
    pub start: Vec<Vec<usize>>,
    /// vCPUs each region offers the members.
    pub capacity: Vec<f64>,
    /// When the column generation stops adding columns. The integer program over the
    /// columns found gets at least a tenth of `--time-limit` after it.
    pub deadline: Instant,
}

/// Result of [`solve_program`]: a region set for each member, in the members' order.
pub(super) struct Solution {
    pub sets: Vec<Vec<usize>>,
    /// The best Lagrangian bound on the members' objective in the program.
    pub bound: f64,
    /// `optimal` (within `--mip-gap` of the bound), `time limit` or `gap above the setting`.
    pub status: String,
    /// Relaxations solved, with the integer program.
    pub programs: usize,
    pub columns: usize,
}

/// Solves the whole fleet under `--capacity-vcpus`, with the callee hosts of `assumed` in
/// every caller's coefficients `terms`. The plan is priced as that program prices it.
pub(super) fn fleet_plan(
    optimizer: &Optimizer,
    assumed: &Plan,
    terms: &[ServiceTerms],
    deadline: Instant,
) -> Result<(Plan, SolverReport), OptimizeError> {
    let capacity = optimizer
        .settings
        .capacity_vcpus
        .expect("called with a capacity");
    let services = optimizer.summary.services.len();
    let program = Program {
        members: (0..services).collect(),
        terms: terms.iter().collect(),
        start: assumed.region_sets(),
        capacity: vec![capacity; optimizer.regions()],
        deadline,
    };
    let solution = solve_program(optimizer, &program)?;
    let plan = plan_of(optimizer, terms, &program.members, &solution.sets);
    let report = SolverReport {
        status: solution.status,
        objective: plan.score.objective,
        bound: solution.bound,
        gap: relative_gap(plan.score.objective, solution.bound),
        programs: solution.programs,
        decomposition: "fleet".to_string(),
        method: "column generation".to_string(),
        columns: Some(solution.columns),
        capacity_search: None,
    };
    Ok((plan, report))
}

/// Solves one capacity-coupled program by column generation, then HiGHS over the columns.
pub(super) fn solve_program(
    optimizer: &Optimizer,
    program: &Program,
) -> Result<Solution, OptimizeError> {
    let settings = &optimizer.settings;
    let terms = &program.terms;
    let members = program.members.len();
    let capacity = &program.capacity;
    let past_deadline = || Instant::now() >= program.deadline;

    let mut columns: Vec<Column> = Vec::new();
    let mut known: HashSet<(usize, Vec<usize>)> = HashSet::new();
    let mut add = |columns: &mut Vec<Column>, member: usize, set: Vec<usize>| {
        if known.insert((member, set.clone())) {
            let service = program.members[member];
            columns.push(column(optimizer, member, service, terms[member], set));
            true
        } else {
            false
        }
    };
    // The first sets, then each member's next best sets.
    for (member, set) in program.start.iter().enumerate() {
        add(&mut columns, member, set.clone());
    }

    // A vCPU over capacity costs far more than an instance, so the relaxation is feasible
    // from the start and prefers real columns to overflow. Should overflow remain once no
    // column improves, its price rises and the search goes on, so that overflow left at the
    // end means the relaxation itself has no room, not that overflow was cheap.
    let mut overflow_price = 100.0
        * program
            .members
            .iter()
            .zip(terms)
            .flat_map(|(&s, member_terms)| {
                let cores = optimizer.summary.services[s].cores.max(f64::MIN_POSITIVE);
                member_terms.instance_month.iter().map(move |p| p / cores)
            })
            .fold(1.0, f64::max);
    let relaxation_gap = settings.mip_gap * RELAXATION_SHARE;
    let mut master = Master::new(members, capacity, overflow_price);
    for c in &columns {
        master.add(c);
    }
    let mut best_bound = f64::NEG_INFINITY;
    let mut rounds = 0;
    let mut converged = false;
    let mut overflow;
    let mut last_overflow = 0.0;
    let mut raises = 0;
    loop {
        if crate::interrupt::requested() {
            return Err(OptimizeError::Interrupted);
        }
        let solved = match master.solve_relaxation() {
            Ok(solved) => solved,
            // Each raise multiplies the overflow price by 1,000, and at the highest HiGHS
            // can fail on the numbers. Overflow that outlasted the lower prices then shows
            // that the relaxation has no room.
            Err(_) if raises > 0 => {
                return Err(OptimizeError::FleetInfeasible {
                    constraint: capacity_setting(capacity),
                    reason: overflow_reason(capacity, last_overflow, OVERFLOW_WORDS),
                })
            }
            Err(error) => return Err(error),
        };
        rounds += 1;
        overflow = solved.overflow;
        last_overflow = overflow;
        let prices: Vec<f64> = solved
            .capacity_duals
            .iter()
            .map(|d| (-d).max(0.0))
            .collect();
        let found = price_all(optimizer, program, &prices, &columns)?;
        let mut bound = -prices
            .iter()
            .zip(capacity)
            .map(|(price, limit)| price * limit)
            .sum::<f64>();
        let mut added = 0;
        for (member, best) in found.into_iter().enumerate() {
            let Some(best) = best else {
                let service = program.members[member];
                return Err(optimizer.replica_error(service, terms[member]));
            };
            bound += best.value;
            let reduced = best.value - solved.convexity_duals[member];
            if reduced < -1e-9 * best.value.abs().max(1.0)
                && add(&mut columns, member, best.regions)
            {
                master.add(columns.last().expect("just added"));
                added += 1;
            }
        }
        best_bound = best_bound.max(bound);
        let gap = relative_gap(solved.objective, best_bound);
        debug!(
            round = rounds,
            relaxation = format!("{:.2}", solved.objective),
            bound = format!("{:.2}", best_bound),
            gap = format!("{gap:.2e}"),
            columns = columns.len(),
            added,
            "column generation"
        );
        if added == 0 {
            if overflow > 1e-6 && raises < OVERFLOW_RAISES {
                raises += 1;
                overflow_price *= 1e3;
                master = Master::new(members, capacity, overflow_price);
                for c in &columns {
                    master.add(c);
                }
                continue;
            }
            converged = true;
            break;
        }
        if (gap <= relaxation_gap && solved.overflow <= 1e-9) || past_deadline() {
            break;
        }
    }
    if converged && overflow > 1e-6 {
        return Err(OptimizeError::FleetInfeasible {
            constraint: capacity_setting(capacity),
            reason: overflow_reason(capacity, overflow, OVERFLOW_WORDS),
        });
    }
    info!(
        rounds,
        columns = columns.len(),
        bound = format!("{best_bound:.2}"),
        "column generation done; solving the integer program over its columns"
    );

    let limit = settings.time_limit_seconds;
    let remaining = program
        .deadline
        .saturating_duration_since(Instant::now())
        .as_secs_f64()
        .max(0.1 * limit);
    let chosen = master.solve_integer(
        &columns,
        settings.mip_gap * (1.0 - RELAXATION_SHARE),
        remaining,
    )?;
    let Some((status, chosen)) = chosen else {
        return Err(OptimizeError::FleetInfeasible {
            constraint: capacity_setting(capacity),
            reason: format!(
                "no choice among the {} region sets generated fits every region's capacity",
                columns.len()
            ),
        });
    };
    if !chosen_once(&columns, &chosen, members) {
        // HiGHS stopped at its time limit before it had an integer solution.
        return Err(OptimizeError::TimedOut {
            seconds: settings.time_limit_seconds,
        });
    }
    let mut sets = vec![Vec::new(); members];
    let mut objective = 0.0;
    for &index in &chosen {
        sets[columns[index].member] = columns[index].regions.clone();
        objective += columns[index].cost;
    }
    // The objective is only for the status: callers price the sets with their own terms.
    let gap = relative_gap(objective, best_bound);
    let status = if gap <= settings.mip_gap * (1.0 + 1e-9) {
        "optimal".to_string()
    } else if status == "time limit" || past_deadline() {
        "time limit".to_string()
    } else {
        "gap above the setting".to_string()
    };
    Ok(Solution {
        sets,
        bound: best_bound,
        status,
        programs: rounds + 1,
        columns: columns.len(),
    })
}

/// Names the capacity a program was held to: the setting itself when every region has the
/// same limit, or what the levels before left.
fn capacity_setting(capacity: &[f64]) -> String {
    match capacity.first() {
        Some(&first) if capacity.iter().all(|&c| c == first) => {
            format!("--capacity-vcpus {first}")
        }
        _ => "the vCPUs left by the services placed before".to_string(),
    }
}

/// Subject and verb of [`overflow_reason`]'s sentence when the relaxation overflows.
const OVERFLOW_WORDS: &str =
    "even with services split across region sets, the fleet at its replica floor and target utilization needs";

/// Explains `overflow` vCPUs more than the regions hold and, when every region has the same
/// limit, a limit below which the fleet cannot fit.
fn overflow_reason(capacity: &[f64], overflow: f64, needs: &str) -> String {
    let reason = format!("{needs} {overflow:.1} vCPUs more than the regions hold");
    match capacity.first() {
        Some(&first) if capacity.iter().all(|&c| c == first) => {
            // Raising every region's limit by d removes at most `regions x d` of the
            // overflow, so no limit below this one can hold the fleet. It is a lower
            // bound only: a limit just above it can still be too small.
            let lowest = first + overflow / capacity.len() as f64;
            format!(
                "{reason}\nhint: no limit below {:.1} vCPUs per region can hold it; raise --capacity-vcpus above that, or lower --min-replicas or raise --target-utilization",
                (lowest * 10.0).floor() / 10.0
            )
        }
        _ => reason,
    }
}

/// Returns whether `chosen` picks one column of each member.
fn chosen_once(columns: &[Column], chosen: &[usize], members: usize) -> bool {
    let mut count = vec![0usize; members];
    for &index in chosen {
        count[columns[index].member] += 1;
    }
    count.iter().all(|&c| c == 1)
}

fn column(
    optimizer: &Optimizer,
    member: usize,
    service: usize,
    terms: &ServiceTerms,
    regions: Vec<usize>,
) -> Column {
    let (planned, score) = optimizer.score_service(service, terms, &regions);
    let cores = optimizer.summary.services[service].cores;
    Column {
        member,
        vcpus: planned
            .iter()
            .map(|h| (h.region, f64::from(h.instances) * cores))
            .collect(),
        regions,
        cost: score.objective,
    }
}

/// Finds each service's best set under `prices` (USD per vCPU-month per region), on as
/// many threads as the machine has. The result does not depend on the threads.
fn price_all(
    optimizer: &Optimizer,
    program: &Program,
    prices: &[f64],
    columns: &[Column],
) -> Result<Vec<Option<Found>>, OptimizeError> {
    let services = program.members.len();
    // Each member's columns so far are the search's first sets to beat.
    let mut known: Vec<Vec<&[usize]>> = vec![Vec::new(); services];
    for c in columns {
        known[c.member].push(&c.regions);
    }
    // The searches hold plain numbers only, so they can go to other threads; the
    // optimizer, with its LightGBM handle, stays on this one.
    let searches: Vec<SetSearch> = program
        .members
        .iter()
        .zip(&program.terms)
        .map(|(&s, terms)| SetSearch::new(optimizer, s, terms, Some(prices)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, services.max(1));
    let chunk = services.div_ceil(threads).max(1);
    let mut found: Vec<Option<Found>> = vec![None; services];
    std::thread::scope(|scope| {
        for ((slots, searches), known) in found
            .chunks_mut(chunk)
            .zip(searches.chunks(chunk))
            .zip(known.chunks(chunk))
        {
            scope.spawn(move || {
                for ((slot, search), known) in slots.iter_mut().zip(searches).zip(known) {
                    *slot = search.best_beating(known);
                }
            });
        }
    });
    if crate::interrupt::requested() {
        return Err(OptimizeError::Interrupted);
    }
    Ok(found)
}

/// The relaxation of the master program, kept between rounds so that HiGHS starts each
/// solve from the last basis.
struct Master {
    model: Option<Model>,
    convexity: Vec<Row>,
    capacity_rows: Vec<Row>,
    capacity: Vec<f64>,
    members: usize,
    overflow_columns: usize,
}

struct Relaxation {
    objective: f64,
    convexity_duals: Vec<f64>,
    capacity_duals: Vec<f64>,
    /// vCPUs over capacity in the relaxation's solution, summed over regions.
    overflow: f64,
}

impl Master {
    fn new(members: usize, capacity: &[f64], overflow_price: f64) -> Master {
        let mut problem = ColProblem::default();
        let convexity: Vec<Row> = (0..members).map(|_| problem.add_row(1.0..=1.0)).collect();
        let capacity_rows: Vec<Row> = capacity
            .iter()
            .map(|&limit| problem.add_row(..=limit))
            .collect();
        for &row in &capacity_rows {
            problem.add_column(overflow_price, 0.0.., [(row, -1.0)]);
        }
        let mut model = problem.optimise(Sense::Minimise);
        quiet(&mut model);
        Master {
            model: Some(model),
            convexity,
            overflow_columns: capacity_rows.len(),
            capacity_rows,
            capacity: capacity.to_vec(),
            members,
        }
    }

    fn add(&mut self, column: &Column) {
        let model = self
            .model
            .as_mut()
            .expect("the model is kept between solves");
        let mut rows = vec![(self.convexity[column.member], 1.0)];
        rows.extend(
            column
                .vcpus
                .iter()
                .map(|&(r, v)| (self.capacity_rows[r], v)),
        );
        model.add_col(column.cost, 0.0..=1.0, rows);
    }

    fn solve_relaxation(&mut self) -> Result<Relaxation, OptimizeError> {
        let model = self.model.take().expect("the model is kept between solves");
        let solved = model.try_solve().map_err(|status| OptimizeError::Solver {
            what: "the fleet relaxation".to_string(),
            status: format!("{status:?}"),
        })?;
        if solved.status() != HighsModelStatus::Optimal {
            return Err(OptimizeError::Solver {
                what: "the fleet relaxation".to_string(),
                status: format!("{:?}", solved.status()),
            });
        }
        let objective = solved.objective_value();
        let solution = solved.get_solution();
        let duals = solution.dual_rows();
        let relaxation = Relaxation {
            objective,
            convexity_duals: duals[..self.members].to_vec(),
            capacity_duals: duals[self.members..self.members + self.capacity.len()].to_vec(),
            overflow: solution.columns()[..self.overflow_columns].iter().sum(),
        };
        self.model = Some(Model::from(solved));
        Ok(relaxation)
    }

    /// Solves the master with integer choices over `columns`; `None` when no choice fits.
    fn solve_integer(
        &self,
        columns: &[Column],
        gap: f64,
        seconds: f64,
    ) -> Result<Option<(String, Vec<usize>)>, OptimizeError> {
        let mut problem = ColProblem::default();
        let convexity: Vec<Row> = (0..self.members)
            .map(|_| problem.add_row(1.0..=1.0))
            .collect();
        let capacity_rows: Vec<Row> = self
            .capacity
            .iter()
            .map(|&limit| problem.add_row(..=limit))
            .collect();
        for column in columns {
            let mut rows = vec![(convexity[column.member], 1.0)];
            rows.extend(column.vcpus.iter().map(|&(r, v)| (capacity_rows[r], v)));
            problem.add_integer_column(column.cost, 0.0..=1.0, rows);
        }
        let mut model = problem.optimise(Sense::Minimise);
        quiet(&mut model);
        model.set_option("time_limit", seconds);
        model.set_option("mip_rel_gap", gap);
        let solved = model.try_solve().map_err(|status| OptimizeError::Solver {
            what: "the fleet program".to_string(),
            status: format!("{status:?}"),
        })?;
        let status = match solved.status() {
            HighsModelStatus::Optimal => "optimal",
            HighsModelStatus::ReachedTimeLimit => "time limit",
            HighsModelStatus::Infeasible | HighsModelStatus::UnboundedOrInfeasible => {
                return Ok(None)
            }
            other => {
                return Err(OptimizeError::Solver {
                    what: "the fleet program".to_string(),
                    status: format!("{other:?}"),
                })
            }
        };
        let values = solved.get_solution().columns().to_vec();
        if values.len() != columns.len() {
            // A time limit before any feasible choice.
            return Ok(None);
        }
        let chosen: Vec<usize> = (0..columns.len()).filter(|&k| values[k] > 0.5).collect();
        Ok(Some((status.to_string(), chosen)))
    }
}

fn quiet(model: &mut Model) {
    model.make_quiet();
    model.set_option("threads", 1);
    model.set_option("random_seed", 0);
}

/// Solves the fleet program over every region set of every service, to a zero gap: the
/// reference the column generation is tested against. The work grows as `2^regions` per
/// service, so this is for tests and small fleets.
pub(super) fn every_set_plan(
    optimizer: &Optimizer,
    terms: &[ServiceTerms],
) -> Result<Plan, OptimizeError> {
    let settings = &optimizer.settings;
    let capacity = settings.capacity_vcpus.expect("called with a capacity");
    let regions = optimizer.regions();
    let mut columns = Vec::new();
    for (service, service_terms) in terms.iter().enumerate() {
        for mask in 1u64..(1u64 << regions) {
            let set: Vec<usize> = (0..regions).filter(|r| mask >> r & 1 == 1).collect();
            if (settings.min_replicas..=settings.max_replicas).contains(&set.len())
                && set.iter().all(|&r| service_terms.allowed[r])
                && optimizer.meets_slo(service, service_terms, &set)
            {
                columns.push(column(optimizer, service, service, service_terms, set));
            }
        }
    }
    let master = Master::new(terms.len(), &vec![capacity; regions], 0.0);
    let Some((_, chosen)) = master.solve_integer(&columns, 0.0, settings.time_limit_seconds)?
    else {
        return Err(OptimizeError::FleetInfeasible {
            constraint: format!("--capacity-vcpus {capacity}"),
            reason: "no choice of region sets fits every region's capacity".to_string(),
        });
    };
    let members: Vec<usize> = (0..terms.len()).collect();
    let mut sets = vec![Vec::new(); terms.len()];
    for &index in &chosen {
        sets[columns[index].member] = columns[index].regions.clone();
    }
    Ok(plan_of(optimizer, terms, &members, &sets))
}

/// Scores the plan that gives each member of `members` its set in `sets`, with `terms`.
fn plan_of(
    optimizer: &Optimizer,
    terms: &[ServiceTerms],
    members: &[usize],
    sets: &[Vec<usize>],
) -> Plan {
    let mut hosts = vec![Vec::new(); terms.len()];
    let mut score = PlanScore {
        objective: 0.0,
        monthly_cost_usd: 0.0,
        weighted_latency_ms: 0.0,
    };
    for (&service, set) in members.iter().zip(sets) {
        let (planned, service_score) = optimizer.score_service(service, &terms[service], set);
        score.objective += service_score.objective;
        score.monthly_cost_usd += service_score.monthly_cost_usd;
        score.weighted_latency_ms += service_score.weighted_latency_ms;
        hosts[service] = planned;
    }
    Plan { hosts, score }
}
