//! Exact search over one service's sets of hosting regions.
//!
//! Given a set of hosts, everything else in a service's program follows: each origin goes
//! to its nearest host, each host is sized for the peak it receives, and the objective is
//! a sum over hosts and origins. So the best set can be found by trying sets, which a
//! depth-first walk does in `sum_k C(n, k)` steps for `k` from the replica floor to the
//! ceiling (35,420 sets for 22 regions and 2 to 5 replicas). The walk keeps a lower bound
//! on every superset of its current set. Each origin ends on its nearest host so far or a
//! nearer one added later, and each host costs an instance at least. Subtrees whose bound
//! cannot beat the best set found so far are cut.
//!
//! This is what the fleet program needs to price its columns: with a price per vCPU in
//! each region it finds the best set under those prices, exactly, in about a millisecond.
//! A MILP solver would solve the same small program far slower, and no crate offers a
//! search with this bound, so it is written here.

use super::ServiceTerms;

/// A region set found by the search, with its value.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Found {
    pub value: f64,
    pub regions: Vec<usize>,
}

/// One service's program, reduced to the origins with demand and the allowed regions.
pub(super) struct SetSearch {
    /// Allowed regions, ascending. The search's positions index this list.
    candidates: Vec<usize>,
    origins: usize,
    /// Each origin's latency term in the objective at each candidate, origin-major.
    latency_cost: Vec<f64>,
    /// Predicted latency in ms for the SLO, origin-major, or empty without an SLO.
    latency_ms: Vec<f64>,
    slo_ms: f64,
    mean: Vec<f64>,
    peak: Vec<f64>,
    /// USD per month of one instance at each candidate, vCPU prices included.
    price: Vec<f64>,
    /// USD per month per request per second routed to each candidate.
    transfer: Vec<f64>,
    instance_rps: f64,
    min: usize,
    max: usize,
    /// Latency and transfer terms no set can go below.
    floor: f64,
    /// Whole instances the service's peak needs in all.
    instances_needed: f64,
    /// Lowest instance price from each position to the end.
    cheapest_from: Vec<f64>,
    /// Each origin's candidates by RTT, nearest first (ties to the lower position),
    /// origin-major.
    by_rtt: Vec<u8>,
    /// Each candidate's place in its origin's `by_rtt` row, origin-major.
    rank: Vec<u8>,
}

/// The walk's state at one depth: the set so far and each origin's nearest slot.
struct Level {
    nearest: Vec<u8>,
}

impl SetSearch {
    /// Builds the search of `terms` with `vcpu_price[r]` USD per vCPU-month added to each
    /// instance in region `r`.
    pub(super) fn new(
        optimizer: &super::Optimizer,
        service: usize,
        terms: &ServiceTerms,
        vcpu_price: Option<&[f64]>,
    ) -> SetSearch {
        let regions = optimizer.regions();
        let summary = &optimizer.summary.services[service];
        let settings = &optimizer.settings;
        let candidates: Vec<usize> = (0..regions).filter(|&r| terms.allowed[r]).collect();
        let demanded: Vec<usize> = (0..regions)
            .filter(|&o| summary.mean_demand[o] > 0.0 || summary.peak_demand[o] > 0.0)
            .collect();
        let slo = settings.slo_ms.filter(|_| summary.latency_critical);
        let weight = settings.lambda_usd_per_ms / optimizer.fleet_demand;
        let mut rtt = Vec::with_capacity(demanded.len() * candidates.len());
        let mut latency_cost = Vec::with_capacity(rtt.capacity());
        let mut latency_ms = Vec::new();
        for &o in &demanded {
            for &r in &candidates {
                let latency = terms.latency[o * regions + r];
                rtt.push(optimizer.rtt(o, r));
                latency_cost.push(weight * summary.mean_demand[o] * latency);
                if slo.is_some() {
                    // Origins without mean demand are not held to the SLO.
                    latency_ms.push(if summary.mean_demand[o] > 0.0 {
                        latency
                    } else {
                        f64::NEG_INFINITY
                    });
                }
            }
        }
        let price: Vec<f64> = candidates
            .iter()
            .map(|&r| terms.instance_month[r] + vcpu_price.map_or(0.0, |p| p[r] * summary.cores))
            .collect();
        let transfer: Vec<f64> = candidates.iter().map(|&r| terms.transfer[r]).collect();
        let count = candidates.len();
        let mut floor = 0.0;
        if count > 0 {
            let cheapest_transfer = transfer.iter().copied().fold(f64::INFINITY, f64::min);
            for (k, &o) in demanded.iter().enumerate() {
                let row = &latency_cost[k * count..(k + 1) * count];
                floor += row.iter().copied().fold(f64::INFINITY, f64::min);
                floor += summary.mean_demand[o] * cheapest_transfer;
            }
        }
        let mut cheapest_from = vec![f64::INFINITY; count + 1];
        for k in (0..count).rev() {
            cheapest_from[k] = cheapest_from[k + 1].min(price[k]);
        }
        let total_peak: f64 = demanded.iter().map(|&o| summary.peak_demand[o]).sum();
        let mut by_rtt = Vec::with_capacity(demanded.len() * count);
        let mut rank = vec![0u8; demanded.len() * count];
        for k in 0..demanded.len() {
            let row = &rtt[k * count..(k + 1) * count];
            let mut order: Vec<usize> = (0..count).collect();
            order.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
            for (place, &position) in order.iter().enumerate() {
                rank[k * count + position] = place as u8;
            }
            by_rtt.extend(order.iter().map(|&p| p as u8));
        }
        SetSearch {
            candidates,
            origins: demanded.len(),
            latency_cost,
            latency_ms,
            slo_ms: slo.unwrap_or(f64::INFINITY),
            mean: demanded.iter().map(|&o| summary.mean_demand[o]).collect(),
            peak: demanded.iter().map(|&o| summary.peak_demand[o]).collect(),
            price,
            transfer,
            instance_rps: terms.instance_rps,
            min: settings.min_replicas,
            max: settings.max_replicas.min(count),
            floor,
            instances_needed: (total_peak / terms.instance_rps).ceil(),
            cheapest_from,
            by_rtt,
            rank,
        }
    }

    /// Scores a set of candidate positions, or returns `None` when it breaks the SLO.
    fn value(&self, set: &[usize], nearest: &[u8]) -> Option<f64> {
        let count = self.candidates.len();
        let mut peak = [0.0f64; 64];
        let mut mean = [0.0f64; 64];
        let mut value = 0.0;
        for (o, &slot) in nearest.iter().enumerate() {
            let slot = slot as usize;
            let position = set[slot];
            peak[slot] += self.peak[o];
            mean[slot] += self.mean[o];
            value += self.latency_cost[o * count + position];
            if !self.latency_ms.is_empty() && self.latency_ms[o * count + position] > self.slo_ms {
                return None;
            }
        }
        for (slot, &position) in set.iter().enumerate() {
            let instances = (peak[slot] / self.instance_rps).ceil().max(1.0);
            value += instances * self.price[position] + mean[slot] * self.transfer[position];
        }
        Some(value)
    }

    /// Returns the best set as region indices, or `None` when no set has enough allowed
    /// regions or meets the SLO. Of sets with equal values, the first found is kept.
    pub(super) fn best(&self) -> Option<Found> {
        self.best_beating(&[])
    }

    /// Returns the best set as `best` does, starting the walk from the best of `known`
    /// sets (region indices) and the greedy set, so that more of the walk is cut.
    pub(super) fn best_beating(&self, known: &[&[usize]]) -> Option<Found> {
        let count = self.candidates.len();
        if count == 0 || self.min > self.max || self.max > 64 || count > 255 {
            return None;
        }
        let mut start = self.greedy();
        for regions in known {
            if let Some((value, positions)) = self.score_regions(regions) {
                if start.as_ref().is_none_or(|(best, _)| value < *best) {
                    start = Some((value, positions));
                }
            }
        }
        let mut walk = Walk {
            search: self,
            best: start,
            set: Vec::with_capacity(self.max),
            levels: (0..=self.max)
                .map(|_| Level {
                    nearest: vec![0; self.origins],
                })
                .collect(),
            fixed_price: 0.0,
        };
        walk.descend(0);
        walk.best.map(|(value, set)| {
            let mut regions: Vec<usize> = set.iter().map(|&p| self.candidates[p]).collect();
            regions.sort_unstable();
            Found { value, regions }
        })
    }

    /// Scores a set of region indices as the walk would, returning its value and positions,
    /// or `None` when a region is not allowed, the size is out of bounds or the SLO fails.
    fn score_regions(&self, regions: &[usize]) -> Option<(f64, Vec<usize>)> {
        if !(self.min..=self.max).contains(&regions.len()) {
            return None;
        }
        let positions: Vec<usize> = regions
            .iter()
            .map(|r| self.candidates.binary_search(r).ok())
            .collect::<Option<_>>()?;
        let count = self.candidates.len();
        let nearest: Vec<u8> = (0..self.origins)
            .map(|o| {
                let mut best = 0;
                for k in 1..positions.len() {
                    if self.rank[o * count + positions[k]] < self.rank[o * count + positions[best]]
                    {
                        best = k;
                    }
                }
                best as u8
            })
            .collect();
        Some((self.value(&positions, &nearest)?, positions))
    }

    /// Finds a good first set for the walk to beat: from the empty set, adds the position
    /// that gives the lowest value while the value falls or the replica floor is not met.
    fn greedy(&self) -> Option<(f64, Vec<usize>)> {
        let count = self.candidates.len();
        let mut set: Vec<usize> = Vec::new();
        let mut nearest = vec![0u8; self.origins];
        let mut best: Option<(f64, Vec<usize>)> = None;
        let mut current = f64::INFINITY;
        while set.len() < self.max {
            let mut step: Option<(f64, usize, Vec<u8>)> = None;
            for position in 0..count {
                if set.contains(&position) {
                    continue;
                }
                let slot = set.len() as u8;
                let trial_nearest: Vec<u8> = (0..self.origins)
                    .map(|o| {
                        if set.is_empty() {
                            return slot;
                        }
                        let host = set[nearest[o] as usize];
                        if self.rank[o * count + position] < self.rank[o * count + host] {
                            slot
                        } else {
                            nearest[o]
                        }
                    })
                    .collect();
                set.push(position);
                // A set that breaks the SLO still leads on, scored by its other terms.
                let value = self.value(&set, &trial_nearest).unwrap_or(f64::INFINITY);
                set.pop();
                if step.as_ref().is_none_or(|(v, _, _)| value < *v) {
                    step = Some((value, position, trial_nearest));
                }
            }
            let Some((value, position, trial_nearest)) = step else {
                break;
            };
            if set.len() >= self.min && value >= current {
                break;
            }
            set.push(position);
            nearest = trial_nearest;
            current = value;
            if set.len() >= self.min
                && value.is_finite()
                && best.as_ref().is_none_or(|(v, _)| value < *v)
            {
                best = Some((value, set.clone()));
            }
        }
        best
    }

    /// The lowest value any set reached from `set` by adding positions after its last can
    /// have. Each origin ends on its nearest host so far or on a nearer one added later,
    /// so its peak, latency and transfer cost at least their cheapest over those hosts.
    fn bound(&self, set: &[usize], nearest: &[u8], fixed_price: f64) -> f64 {
        let count = self.candidates.len();
        let last = *set.last().expect("a set has a last position");
        let mut peak_cost = 0.0;
        let mut other = 0.0;
        for o in 0..self.origins {
            let host = set[nearest[o] as usize];
            let (mut price, mut latency, mut transfer) = (
                self.price[host],
                self.latency_cost[o * count + host],
                self.transfer[host],
            );
            let row = &self.by_rtt[o * count..(o + 1) * count];
            for &position in &row[..self.rank[o * count + host] as usize] {
                let position = position as usize;
                if position > last {
                    price = price.min(self.price[position]);
                    latency = latency.min(self.latency_cost[o * count + position]);
                    transfer = transfer.min(self.transfer[position]);
                }
            }
            peak_cost += self.peak[o] / self.instance_rps * price;
            other += latency + self.mean[o] * transfer;
        }
        let missing = self.min.saturating_sub(set.len()) as f64;
        let floor_cost = fixed_price + missing * self.cheapest_from[last + 1];
        peak_cost.max(floor_cost) + other
    }
}

struct Walk<'s> {
    search: &'s SetSearch,
    /// The best set so far and its value.
    best: Option<(f64, Vec<usize>)>,
    set: Vec<usize>,
    levels: Vec<Level>,
    /// Sum of the instance prices of the set so far.
    fixed_price: f64,
}

impl Walk<'_> {
    /// The value a set must beat to be kept.
    fn bar(&self) -> f64 {
        self.best
            .as_ref()
            .map_or(f64::INFINITY, |(value, _)| *value)
    }

    /// Extends the current set by every later position in turn.
    fn descend(&mut self, from: usize) {
        let search = self.search;
        let count = search.candidates.len();
        let depth = self.set.len();
        for position in from..count {
            // A first cut before any work: every host costs an instance, and the peak
            // needs its instances somewhere.
            let size = depth + 1;
            let extra = (search.instances_needed.max(search.min as f64) - size as f64).max(0.0);
            let cheapest = self
                .set
                .iter()
                .fold(search.cheapest_from[position], |c, &p| {
                    c.min(search.price[p])
                });
            if search.floor + self.fixed_price + search.price[position] + extra * cheapest
                >= self.bar()
            {
                continue;
            }
            let (done, rest) = self.levels.split_at_mut(size);
            let next = &mut rest[0].nearest;
            if depth == 0 {
                next.fill(0);
            } else {
                let previous = &done[depth].nearest;
                for o in 0..search.origins {
                    let slot = previous[o];
                    let host = self.set[slot as usize];
                    next[o] = if search.rank[o * count + position] < search.rank[o * count + host] {
                        depth as u8
                    } else {
                        slot
                    };
                }
            }
            self.set.push(position);
            self.fixed_price += search.price[position];
            let nearest = &self.levels[size].nearest;
            if size >= search.min {
                if let Some(value) = search.value(&self.set, nearest) {
                    if value < self.bar() {
                        self.best = Some((value, self.set.clone()));
                    }
                }
            }
            if size < search.max
                && position + 1 < count
                && search.bound(&self.set, nearest, self.fixed_price) < self.bar()
            {
                self.descend(position + 1);
            }
            self.fixed_price -= search.price[position];
            self.set.pop();
        }
    }
}
