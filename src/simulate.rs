//! The world model: the ground truth that the generator observes and later stages evaluate
//! plans against.
//!
//! A placement puts each service on one or more regions with a number of instances.
//! [`evaluate`] takes the demand (requests per second from each origin region) and an RTT
//! matrix. It routes every origin's users to the hosting region of lowest RTT, loads each
//! host, and returns the expected latency and error rate per service and origin. [`hourly_cost`]
//! prices the same placement, and [`sample_requests`] draws request-level latencies from an
//! evaluation. `docs/world-model.md` states the model with its constants; the constants
//! below carry their units.
//!
//! Latency seen by a user from origin `o` of service `s` routed to host `h`:
//!
//! ```text
//! L(s, o)  = RTT(o, h) + P(s, h)
//! P(s, h)  = base_ms(s) / (1 - min(rho(s, h), UTILIZATION_CAP))
//!          + max over dependencies d of [ RTT(h, h_d) + P(d, h_d) ],  h_d = nearest host of d to h
//! rho(s, h) = routed_rps(s, h) * cpu_ms_per_request(s) / (1000 * instances(s, h) * cores(s))
//! ```
//!
//! The stretch `1 / (1 - rho)` is the response-time factor of a processor-sharing queue.
//! A service calls its dependencies in parallel and waits for the slowest, so the call
//! graph's depth, not its size, sets how much the calls add.
//! Requests beyond a host's capacity fail, so the error rate of a host is
//! `BASE_ERROR_RATE + max(0, 1 - 1 / rho)`, and a user's request fails when its host or any
//! dependency it calls fails.

use rand::Rng;
use rand_distr::{Distribution, LogNormal};

/// Utilization beyond which the queueing stretch stops growing (the stretch at the cap is
/// `1 / (1 - 0.95) = 20`). Past it, extra load turns into errors, not into more latency.
pub const UTILIZATION_CAP: f64 = 0.95;

/// Fraction of requests that fail on a host that is not overloaded.
pub const BASE_ERROR_RATE: f64 = 0.0005;

/// Hours in a billing month (365 * 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Standard deviation of the log of a single request's latency around its expected value.
pub const REQUEST_LATENCY_LOG_SD: f64 = 0.30;

/// Bytes in a gigabyte as AWS bills transfer (decimal).
const BYTES_PER_GB: f64 = 1e9;

/// A service in the world model: its shape, its hidden costs, and the services it calls.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// Memory per instance, in MiB.
    pub memory_mb: u32,
    /// vCPUs per instance.
    pub cores: f64,
    pub latency_critical: bool,
    /// Processing time of one request on an idle host, in ms, without dependency calls.
    pub base_processing_ms: f64,
    /// CPU time one request takes, in core-milliseconds; it sets the host's capacity.
    pub cpu_ms_per_request: f64,
    /// Size of one dependency call's response, in KB (1,000 bytes), billed when it crosses
    /// regions.
    pub call_response_kb: f64,
    /// Services this one calls, once each and in parallel, for every request it serves.
    pub dependencies: Vec<usize>,
}

impl ServiceSpec {
    /// Requests per second one instance serves at 100% CPU.
    pub fn capacity_per_instance(&self) -> f64 {
        self.cores * 1000.0 / self.cpu_ms_per_request
    }

    /// Returns the number of m5.large instances that one instance of this service costs:
    /// the larger of its vCPU share and its memory share.
    pub fn price_units(&self) -> f64 {
        let cpu = self.cores / crate::catalog::PRICED_INSTANCE_VCPUS;
        let memory = f64::from(self.memory_mb) / crate::catalog::PRICED_INSTANCE_MEMORY_MB;
        cpu.max(memory)
    }
}

/// Hosting regions and instance counts of every service.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement {
    pub hosts: Vec<Vec<Host>>,
}

/// One hosting region of a service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Host {
    /// Region index within the run's region selection.
    pub region: usize,
    pub instances: u32,
}

/// Errors in evaluating a placement.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimulateError {
    #[error("service {service} has no hosting region")]
    NoHost { service: usize },
    #[error("service {service} has zero instances in region {region}")]
    NoInstances { service: usize, region: usize },
    #[error("service {service} names region {region}, but only {regions} regions exist")]
    RegionOutOfRange {
        service: usize,
        region: usize,
        regions: usize,
    },
    #[error("service {service} is hosted twice in region {region}")]
    DuplicateHost { service: usize, region: usize },
    #[error("service {service} depends on service {dependency}, which does not exist")]
    UnknownDependency { service: usize, dependency: usize },
    #[error("the dependencies of service {service} form a cycle")]
    DependencyCycle { service: usize },
    #[error("expected {expected} values ({what}), found {found}")]
    Shape {
        what: &'static str,
        expected: usize,
        found: usize,
    },
}

/// The fleet and network a placement is evaluated in.
#[derive(Debug, Clone, Copy)]
pub struct World<'a> {
    pub services: &'a [ServiceSpec],
    pub regions: usize,
    /// RTT in ms, row-major `regions x regions`, source row.
    pub rtt_ms: &'a [f64],
}

/// The expected state of the world under one placement and one demand. Matrices are
/// row-major `services x regions`.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub regions: usize,
    /// Host region that serves each (service, origin).
    pub route: Vec<usize>,
    /// Expected latency in ms seen by users of each (service, origin).
    pub user_latency_ms: Vec<f64>,
    /// Expected fraction of failed requests for each (service, origin).
    pub user_error_rate: Vec<f64>,
    /// Requests per second routed to each (service, host region); zero where not hosted.
    pub routed_rps: Vec<f64>,
    /// CPU utilization of each (service, host region); zero where not hosted.
    pub utilization: Vec<f64>,
    /// Processing time in ms at each (service, host region), dependency calls included;
    /// NaN where not hosted.
    pub processing_ms: Vec<f64>,
    /// Fraction of failed requests at each (service, host region), dependency calls
    /// included; NaN where not hosted.
    pub host_error_rate: Vec<f64>,
}

/// Hourly cost of a placement, in USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourlyCost {
    pub instances_usd: f64,
    pub transfer_usd: f64,
}

impl HourlyCost {
    pub fn total(&self) -> f64 {
        self.instances_usd + self.transfer_usd
    }
}

/// One simulated request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestSample {
    pub service: usize,
    pub origin: usize,
    pub latency_ms: f64,
    pub failed: bool,
}

impl World<'_> {
    fn rtt(&self, from: usize, to: usize) -> f64 {
        self.rtt_ms[from * self.regions + to]
    }

    /// Returns the host of `hosts` with the lowest RTT from `from`. Ties go to the lower index.
    fn nearest(&self, from: usize, hosts: &[Host]) -> usize {
        let mut best = hosts[0].region;
        for host in &hosts[1..] {
            let better = self.rtt(from, host.region) < self.rtt(from, best);
            let tie = self.rtt(from, host.region) == self.rtt(from, best) && host.region < best;
            if better || tie {
                best = host.region;
            }
        }
        best
    }
}

/// Checks a placement against the world and returns the services in an order where every
/// dependency comes before the services that call it.
pub fn validate(world: &World, placement: &Placement) -> Result<Vec<usize>, SimulateError> {
    let count = world.services.len();
    check_shape(
        "RTT matrix",
        world.regions * world.regions,
        world.rtt_ms.len(),
    )?;
    check_shape("placement services", count, placement.hosts.len())?;
    for (service, hosts) in placement.hosts.iter().enumerate() {
        if hosts.is_empty() {
            return Err(SimulateError::NoHost { service });
        }
        for (k, host) in hosts.iter().enumerate() {
            if host.region >= world.regions {
                return Err(SimulateError::RegionOutOfRange {
                    service,
                    region: host.region,
                    regions: world.regions,
                });
            }
            if host.instances == 0 {
                return Err(SimulateError::NoInstances {
                    service,
                    region: host.region,
                });
            }
            if hosts[..k].iter().any(|h| h.region == host.region) {
                return Err(SimulateError::DuplicateHost {
                    service,
                    region: host.region,
                });
            }
        }
    }
    dependency_order(world.services)
}

/// Orders services so that each follows all of its dependencies, or reports a cycle.
pub fn dependency_order(services: &[ServiceSpec]) -> Result<Vec<usize>, SimulateError> {
    let dependencies: Vec<&[usize]> = services.iter().map(|s| s.dependencies.as_slice()).collect();
    call_graph_order(&dependencies)
}

/// Orders the nodes of a call graph, given as each node's callees, so that every callee
/// comes before its callers, or reports a cycle or a callee out of range.
pub fn call_graph_order<D: AsRef<[usize]>>(
    dependencies: &[D],
) -> Result<Vec<usize>, SimulateError> {
    // 0 = not visited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; dependencies.len()];
    let mut order = Vec::with_capacity(dependencies.len());
    for start in 0..dependencies.len() {
        if state[start] != 0 {
            continue;
        }
        // Iterative depth-first search: (service, next dependency position).
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some(&mut (service, ref mut next)) = stack.last_mut() {
            let callees = dependencies[service].as_ref();
            if *next < callees.len() {
                let dependency = callees[*next];
                *next += 1;
                if dependency >= dependencies.len() {
                    return Err(SimulateError::UnknownDependency {
                        service,
                        dependency,
                    });
                }
                match state[dependency] {
                    0 => {
                        state[dependency] = 1;
                        stack.push((dependency, 0));
                    }
                    1 => return Err(SimulateError::DependencyCycle { service }),
                    _ => {}
                }
            } else {
                state[service] = 2;
                order.push(service);
                stack.pop();
            }
        }
    }
    Ok(order)
}

fn check_shape(what: &'static str, expected: usize, found: usize) -> Result<(), SimulateError> {
    if expected == found {
        Ok(())
    } else {
        Err(SimulateError::Shape {
            what,
            expected,
            found,
        })
    }
}

/// Evaluates a placement under a demand of `demand_rps[service * regions + origin]`
/// requests per second.
pub fn evaluate(
    world: &World,
    placement: &Placement,
    demand_rps: &[f64],
) -> Result<Evaluation, SimulateError> {
    let order = validate(world, placement)?;
    let regions = world.regions;
    let cells = world.services.len() * regions;
    check_shape("demand", cells, demand_rps.len())?;

    let mut evaluation = Evaluation {
        regions,
        route: vec![0; cells],
        user_latency_ms: vec![0.0; cells],
        user_error_rate: vec![0.0; cells],
        routed_rps: vec![0.0; cells],
        utilization: vec![0.0; cells],
        processing_ms: vec![f64::NAN; cells],
        host_error_rate: vec![f64::NAN; cells],
    };

    // Dependencies first, so that a caller finds its callees' processing times ready.
    for &service in &order {
        route_and_load(world, placement, demand_rps, service, &mut evaluation);
        process_at_hosts(world, placement, service, &mut evaluation);
    }
    for service in 0..world.services.len() {
        for origin in 0..regions {
            let cell = service * regions + origin;
            let host = evaluation.route[cell];
            let at_host = service * regions + host;
            evaluation.user_latency_ms[cell] =
                world.rtt(origin, host) + evaluation.processing_ms[at_host];
            evaluation.user_error_rate[cell] = evaluation.host_error_rate[at_host];
        }
    }
    Ok(evaluation)
}

/// Routes every origin of `service` to its nearest host and sets each host's load.
fn route_and_load(
    world: &World,
    placement: &Placement,
    demand_rps: &[f64],
    service: usize,
    evaluation: &mut Evaluation,
) {
    let regions = world.regions;
    let hosts = &placement.hosts[service];
    for origin in 0..regions {
        let host = world.nearest(origin, hosts);
        evaluation.route[service * regions + origin] = host;
        evaluation.routed_rps[service * regions + host] += demand_rps[service * regions + origin];
    }
    let spec = &world.services[service];
    for host in hosts {
        let cell = service * regions + host.region;
        let capacity = spec.capacity_per_instance() * f64::from(host.instances);
        evaluation.utilization[cell] = evaluation.routed_rps[cell] / capacity;
    }
}

/// Sets processing time and error rate at each host of `service`, dependency calls
/// included. The service's dependencies must already be evaluated.
fn process_at_hosts(
    world: &World,
    placement: &Placement,
    service: usize,
    evaluation: &mut Evaluation,
) {
    let regions = world.regions;
    let spec = &world.services[service];
    for host in &placement.hosts[service] {
        let cell = service * regions + host.region;
        let rho = evaluation.utilization[cell];
        let own = spec.base_processing_ms / (1.0 - rho.min(UTILIZATION_CAP));
        let mut slowest_call: f64 = 0.0;
        let mut success = 1.0 - host_error_rate(rho);
        for &dependency in &spec.dependencies {
            let callee = world.nearest(host.region, &placement.hosts[dependency]);
            let callee_cell = dependency * regions + callee;
            let call = world.rtt(host.region, callee) + evaluation.processing_ms[callee_cell];
            slowest_call = slowest_call.max(call);
            success *= 1.0 - evaluation.host_error_rate[callee_cell];
        }
        evaluation.processing_ms[cell] = own + slowest_call;
        evaluation.host_error_rate[cell] = 1.0 - success;
    }
}

/// Fraction of failed requests on a host at utilization `rho`, its own calls excluded.
pub fn host_error_rate(rho: f64) -> f64 {
    let overload = if rho > 1.0 { 1.0 - 1.0 / rho } else { 0.0 };
    (BASE_ERROR_RATE + overload).min(1.0)
}

/// Prices a placement for one hour: instance-hours at each region's m5.large price scaled
/// by [`ServiceSpec::price_units`], plus the transfer of dependency-call responses that
/// cross regions, billed at the callee region's price towards the caller's region.
pub fn hourly_cost(
    world: &World,
    placement: &Placement,
    evaluation: &Evaluation,
    usd_per_hour: &[f64],
    transfer_usd_per_gb: &[f64],
) -> Result<HourlyCost, SimulateError> {
    let by_service = hourly_cost_by_service(
        world,
        placement,
        evaluation,
        usd_per_hour,
        transfer_usd_per_gb,
    )?;
    let mut cost = HourlyCost {
        instances_usd: 0.0,
        transfer_usd: 0.0,
    };
    for part in by_service {
        cost.instances_usd += part.instances_usd;
        cost.transfer_usd += part.transfer_usd;
    }
    Ok(cost)
}

/// Prices a placement for one hour as [`hourly_cost`] does, split by service. A caller
/// pays for the responses of its dependencies that cross regions to reach it.
pub fn hourly_cost_by_service(
    world: &World,
    placement: &Placement,
    evaluation: &Evaluation,
    usd_per_hour: &[f64],
    transfer_usd_per_gb: &[f64],
) -> Result<Vec<HourlyCost>, SimulateError> {
    validate(world, placement)?;
    check_shape("instance prices", world.regions, usd_per_hour.len())?;
    check_shape(
        "transfer prices",
        world.regions * world.regions,
        transfer_usd_per_gb.len(),
    )?;
    let mut costs = Vec::with_capacity(world.services.len());
    for (service, spec) in world.services.iter().enumerate() {
        let mut cost = HourlyCost {
            instances_usd: 0.0,
            transfer_usd: 0.0,
        };
        for host in &placement.hosts[service] {
            cost.instances_usd +=
                f64::from(host.instances) * spec.price_units() * usd_per_hour[host.region];
            let calls_per_hour =
                evaluation.routed_rps[service * world.regions + host.region] * 3600.0;
            for &dependency in &spec.dependencies {
                let callee = world.nearest(host.region, &placement.hosts[dependency]);
                if callee == host.region {
                    continue;
                }
                let callee_spec = &world.services[dependency];
                let gigabytes =
                    calls_per_hour * callee_spec.call_response_kb * 1000.0 / BYTES_PER_GB;
                cost.transfer_usd +=
                    gigabytes * transfer_usd_per_gb[callee * world.regions + host.region];
            }
        }
        costs.push(cost);
    }
    Ok(costs)
}

/// Draws `count` requests in proportion to `demand_rps` over (service, origin), each with a
/// latency drawn log-normally around the expected one (mean preserved) and a failure drawn
/// at the expected error rate.
pub fn sample_requests<R: Rng>(
    evaluation: &Evaluation,
    demand_rps: &[f64],
    count: usize,
    rng: &mut R,
) -> Result<Vec<RequestSample>, SimulateError> {
    draw_requests(
        &evaluation.user_latency_ms,
        &evaluation.user_error_rate,
        evaluation.regions,
        demand_rps,
        count,
        rng,
    )
}

/// Draws requests as [`sample_requests`] does, from the expected latency and error rate of
/// each (service, origin) alone, row-major with `regions` origins per service. The draws
/// taken from `rng` depend on `demand_rps` and `count` only, not on the latencies.
pub fn draw_requests<R: Rng>(
    user_latency_ms: &[f64],
    user_error_rate: &[f64],
    regions: usize,
    demand_rps: &[f64],
    count: usize,
    rng: &mut R,
) -> Result<Vec<RequestSample>, SimulateError> {
    check_shape("demand", user_latency_ms.len(), demand_rps.len())?;
    check_shape("error rates", user_latency_ms.len(), user_error_rate.len())?;
    let total: f64 = demand_rps.iter().sum();
    if count == 0 || total <= 0.0 {
        return Ok(Vec::new());
    }
    let cumulative: Vec<f64> = demand_rps
        .iter()
        .scan(0.0, |sum, &x| {
            *sum += x;
            Some(*sum)
        })
        .collect();
    let sigma = REQUEST_LATENCY_LOG_SD;
    let noise = LogNormal::new(-sigma * sigma / 2.0, sigma).expect("constant sigma is valid");
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let target = rng.random::<f64>() * total;
        let cell = cumulative
            .partition_point(|&c| c <= target)
            .min(cumulative.len() - 1);
        let latency_ms = user_latency_ms[cell] * noise.sample(rng);
        let failed = rng.random::<f64>() < user_error_rate[cell];
        samples.push(RequestSample {
            service: cell / regions,
            origin: cell % regions,
            latency_ms,
            failed,
        });
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Three regions on a line: A -10 ms- B -30 ms- C, 2 ms within a region.
    const RTT: [f64; 9] = [2.0, 10.0, 40.0, 10.0, 2.0, 30.0, 40.0, 30.0, 2.0];

    fn spec(dependencies: Vec<usize>) -> ServiceSpec {
        ServiceSpec {
            memory_mb: 2048,
            cores: 2.0,
            latency_critical: false,
            base_processing_ms: 10.0,
            // 2 cores * 1000 / 2 ms = 1,000 requests/s per instance.
            cpu_ms_per_request: 2.0,
            call_response_kb: 5.0,
            dependencies,
        }
    }

    fn hosts(list: &[(usize, u32)]) -> Vec<Host> {
        list.iter()
            .map(|&(region, instances)| Host { region, instances })
            .collect()
    }

    fn world(services: &[ServiceSpec]) -> World<'_> {
        World {
            services,
            regions: 3,
            rtt_ms: &RTT,
        }
    }

    #[test]
    fn routing_picks_nearest_host() {
        let services = vec![spec(vec![])];
        let placement = Placement {
            hosts: vec![hosts(&[(0, 1), (2, 1)])],
        };
        let demand = [100.0, 100.0, 100.0];
        let eval = evaluate(&world(&services), &placement, &demand).unwrap();
        // B is 10 ms from A and 30 ms from C, so B's users go to A.
        assert_eq!(eval.route, vec![0, 0, 2]);
        assert_eq!(eval.routed_rps[0], 200.0);
        assert_eq!(eval.routed_rps[2], 100.0);
        assert_eq!(eval.routed_rps[1], 0.0);
    }

    #[test]
    fn latency_is_rtt_plus_stretched_processing() {
        let services = vec![spec(vec![])];
        let placement = Placement {
            hosts: vec![hosts(&[(0, 1)])],
        };
        // 500 requests/s on one 1,000 requests/s instance: rho = 0.5, stretch 2.
        let demand = [0.0, 500.0, 0.0];
        let eval = evaluate(&world(&services), &placement, &demand).unwrap();
        assert!((eval.utilization[0] - 0.5).abs() < 1e-12);
        assert!((eval.processing_ms[0] - 20.0).abs() < 1e-12);
        assert!((eval.user_latency_ms[1] - 30.0).abs() < 1e-12);
        assert!((eval.user_latency_ms[2] - 60.0).abs() < 1e-12);
    }

    #[test]
    fn latency_rises_with_utilization() {
        let services = vec![spec(vec![])];
        let mut previous = 0.0;
        for rps in [0.0, 200.0, 500.0, 800.0, 940.0, 2000.0] {
            let placement = Placement {
                hosts: vec![hosts(&[(0, 1)])],
            };
            let eval = evaluate(&world(&services), &placement, &[rps, 0.0, 0.0]).unwrap();
            assert!(eval.user_latency_ms[0] > previous || rps >= 2000.0);
            assert!(eval.user_latency_ms[0] >= previous);
            previous = eval.user_latency_ms[0];
        }
        // Past the cap the stretch is 20.
        assert!((previous - (2.0 + 10.0 * 20.0)).abs() < 1e-9);
    }

    #[test]
    fn remote_dependency_adds_its_rtt() {
        // Service 0 calls service 1.
        let services = vec![spec(vec![1]), spec(vec![])];
        let demand = [0.0; 6];
        let local = Placement {
            hosts: vec![hosts(&[(0, 1)]), hosts(&[(0, 1)])],
        };
        let remote = Placement {
            hosts: vec![hosts(&[(0, 1)]), hosts(&[(2, 1)])],
        };
        let local = evaluate(&world(&services), &local, &demand).unwrap();
        let remote = evaluate(&world(&services), &remote, &demand).unwrap();
        // Idle hosts: 10 ms each; the call costs 2 ms locally and 40 ms to C.
        assert!((local.processing_ms[0] - 22.0).abs() < 1e-12);
        assert!((remote.processing_ms[0] - 60.0).abs() < 1e-12);
    }

    #[test]
    fn parallel_calls_wait_for_slowest() {
        // Service 0 calls services 1 and 2; 1 sits in A with it, 2 in C.
        let services = vec![spec(vec![1, 2]), spec(vec![]), spec(vec![])];
        let placement = Placement {
            hosts: vec![hosts(&[(0, 1)]), hosts(&[(0, 1)]), hosts(&[(2, 1)])],
        };
        let eval = evaluate(&world(&services), &placement, &[0.0; 9]).unwrap();
        // Own 10 ms, then max(2 + 10, 40 + 10) = 50 ms.
        assert!((eval.processing_ms[0] - 60.0).abs() < 1e-12);
    }

    #[test]
    fn dependency_call_goes_to_callee_nearest_host() {
        let services = vec![spec(vec![1]), spec(vec![])];
        let placement = Placement {
            hosts: vec![hosts(&[(1, 1)]), hosts(&[(0, 1), (2, 1)])],
        };
        let eval = evaluate(&world(&services), &placement, &[0.0; 6]).unwrap();
        // From B the nearest callee host is A (10 ms), not C (30 ms).
        assert!((eval.processing_ms[1] - (10.0 + 10.0 + 10.0)).abs() < 1e-12);
    }

    #[test]
    fn overload_raises_error_rate() {
        assert_eq!(host_error_rate(0.5), BASE_ERROR_RATE);
        assert_eq!(host_error_rate(1.0), BASE_ERROR_RATE);
        // At rho = 2 half of the requests find no capacity.
        assert!((host_error_rate(2.0) - (0.5 + BASE_ERROR_RATE)).abs() < 1e-12);
        let services = vec![spec(vec![1]), spec(vec![])];
        let placement = Placement {
            hosts: vec![hosts(&[(0, 1)]), hosts(&[(0, 1)])],
        };
        // The callee gets 4,000 requests/s on 1,000 of capacity.
        let demand = [100.0, 0.0, 0.0, 4000.0, 0.0, 0.0];
        let eval = evaluate(&world(&services), &placement, &demand).unwrap();
        let callee = BASE_ERROR_RATE + 0.75;
        assert!((eval.host_error_rate[3] - callee).abs() < 1e-12);
        let caller = 1.0 - (1.0 - BASE_ERROR_RATE) * (1.0 - callee);
        assert!((eval.user_error_rate[0] - caller).abs() < 1e-12);
    }

    #[test]
    fn cost_is_instance_hours_times_price() {
        let services = vec![spec(vec![])];
        let placement = Placement {
            hosts: vec![hosts(&[(0, 3), (2, 2)])],
        };
        let eval = evaluate(&world(&services), &placement, &[0.0; 3]).unwrap();
        let prices = [0.1, 0.2, 0.3];
        let cost = hourly_cost(&world(&services), &placement, &eval, &prices, &[0.0; 9]).unwrap();
        // 2 cores and 2 GiB are one m5.large unit each.
        assert!((cost.instances_usd - (3.0 * 0.1 + 2.0 * 0.3)).abs() < 1e-12);
        assert_eq!(cost.transfer_usd, 0.0);
    }

    #[test]
    fn cross_region_calls_pay_transfer() {
        let services = vec![spec(vec![1]), spec(vec![])];
        let placement = Placement {
            hosts: vec![hosts(&[(0, 1)]), hosts(&[(2, 1)])],
        };
        let demand = [100.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let eval = evaluate(&world(&services), &placement, &demand).unwrap();
        let mut transfer = [0.0; 9];
        transfer[2 * 3] = 0.02;
        let cost = hourly_cost(&world(&services), &placement, &eval, &[0.0; 3], &transfer).unwrap();
        // 100 calls/s * 3600 s * 5 KB = 1.8 GB at 0.02 USD.
        assert!((cost.transfer_usd - 1.8 * 0.02).abs() < 1e-12);
    }

    #[test]
    fn cost_by_service_sums_to_total() {
        let services = vec![spec(vec![1]), spec(vec![])];
        let placement = Placement {
            hosts: vec![hosts(&[(0, 2)]), hosts(&[(2, 1)])],
        };
        let demand = [100.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let eval = evaluate(&world(&services), &placement, &demand).unwrap();
        let prices = [0.1, 0.2, 0.3];
        let mut transfer = [0.0; 9];
        transfer[2 * 3] = 0.02;
        let parts =
            hourly_cost_by_service(&world(&services), &placement, &eval, &prices, &transfer)
                .unwrap();
        // The caller pays its two instances and the callee's responses; the callee its one
        // instance.
        assert!((parts[0].instances_usd - 0.2).abs() < 1e-12);
        assert!((parts[0].transfer_usd - 1.8 * 0.02).abs() < 1e-12);
        assert!((parts[1].instances_usd - 0.3).abs() < 1e-12);
        assert_eq!(parts[1].transfer_usd, 0.0);
        let total = hourly_cost(&world(&services), &placement, &eval, &prices, &transfer).unwrap();
        assert!((total.total() - parts[0].total() - parts[1].total()).abs() < 1e-12);
    }

    #[test]
    fn price_units_take_larger_share() {
        let mut service = spec(vec![]);
        service.cores = 4.0;
        service.memory_mb = 1024;
        assert_eq!(service.price_units(), 2.0);
        service.cores = 0.5;
        service.memory_mb = 4096;
        assert_eq!(service.price_units(), 0.5);
    }

    #[test]
    fn invalid_placements_are_rejected() {
        let services = vec![spec(vec![])];
        let w = world(&services);
        let demand = [0.0; 3];
        let empty = Placement {
            hosts: vec![vec![]],
        };
        assert_eq!(
            evaluate(&w, &empty, &demand).unwrap_err(),
            SimulateError::NoHost { service: 0 }
        );
        let zero = Placement {
            hosts: vec![hosts(&[(1, 0)])],
        };
        assert!(matches!(
            evaluate(&w, &zero, &demand),
            Err(SimulateError::NoInstances { .. })
        ));
        let far = Placement {
            hosts: vec![hosts(&[(7, 1)])],
        };
        assert!(matches!(
            evaluate(&w, &far, &demand),
            Err(SimulateError::RegionOutOfRange { .. })
        ));
    }

    #[test]
    fn dependency_cycle_is_rejected() {
        let services = vec![spec(vec![1]), spec(vec![2]), spec(vec![0])];
        assert!(matches!(
            dependency_order(&services),
            Err(SimulateError::DependencyCycle { .. })
        ));
        let chain = vec![spec(vec![1]), spec(vec![2]), spec(vec![])];
        assert_eq!(dependency_order(&chain).unwrap(), vec![2, 1, 0]);
    }

    #[test]
    fn samples_follow_demand_and_expected_latency() {
        let services = vec![spec(vec![]), spec(vec![])];
        let placement = Placement {
            hosts: vec![hosts(&[(0, 1)]), hosts(&[(2, 1)])],
        };
        let demand = [300.0, 0.0, 0.0, 0.0, 0.0, 100.0];
        let eval = evaluate(&world(&services), &placement, &demand).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let samples = sample_requests(&eval, &demand, 40_000, &mut rng).unwrap();
        let first: Vec<f64> = samples
            .iter()
            .filter(|s| s.service == 0)
            .map(|s| s.latency_ms)
            .collect();
        let share = first.len() as f64 / samples.len() as f64;
        assert!((share - 0.75).abs() < 0.01, "share {share}");
        let mean = first.iter().sum::<f64>() / first.len() as f64;
        let expected = eval.user_latency_ms[0];
        assert!((mean / expected - 1.0).abs() < 0.01, "{mean} vs {expected}");
        assert!(samples.iter().all(|s| s.origin == 0 || s.origin == 2));
    }
}
