//! Load on the Overview API of `placewise serve`, on loopback only and bounded in count
//! and time.
//!
//! It runs the pipeline on the default fleet, starts the real binary on a free port of
//! 127.0.0.1, and then measures two loads of `GET /api/overview`, each over keep-alive
//! connections of this file's own client:
//! - an open loop at a fixed rate (1,000 requests/s for 10 s by default): requests are
//!   scheduled in advance and each latency counts from its scheduled time, so a slow
//!   response also delays the ones queued behind it;
//! - a closed loop of back-to-back requests (5 s), for the highest rate.
//!
//! The open loop runs `BENCH_REPEATS` times (1 to 10, default 3), each reported with the
//! one-minute load average at its start. `BENCH_RATE` (1 to 5,000 requests/s) and
//! `BENCH_SECONDS` (1 to 30) change it. Run with `cargo bench --bench serve`.

#[path = "../tests/common/http.rs"]
mod http;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Client connections, each on its own thread.
const CONNECTIONS: usize = 4;
/// Length of the closed loop.
const CLOSED_LOOP: Duration = Duration::from_secs(5);
/// Requests of the closed loop at the most, whatever the rate.
const CLOSED_LOOP_MAX_REQUESTS: usize = 500_000;
const TARGET: &str = "/api/overview";
/// The p99 latency the open loop is held to, in ms.
const TARGET_P99_MS: f64 = 10.0;

fn setting(name: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> u64 {
    let value = std::env::var(name)
        .ok()
        .map(|text| {
            text.parse()
                .unwrap_or_else(|_| panic!("{name} must be a whole number, not `{text}`"))
        })
        .unwrap_or(default);
    assert!(
        range.contains(&value),
        "{name} = {value} is out of range {range:?}"
    );
    value
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the pipeline on the default fleet in `directory` and starts the dashboard on it,
/// with its request log (at the default level, one line a request) in `serve.log`.
fn start(directory: &std::path::Path) -> (Server, SocketAddr) {
    let binary = env!("CARGO_BIN_EXE_placewise");
    let status = Command::new(binary)
        .current_dir(directory)
        .env("RUST_LOG", "warn")
        .args(["run"])
        .stdout(Stdio::null())
        .status()
        .expect("the binary runs");
    assert!(status.success(), "placewise run failed");

    let log = std::fs::File::create(directory.join("serve.log")).expect("the log file opens");
    let child = Command::new(binary)
        .current_dir(directory)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stderr(log)
        .spawn()
        .expect("the server starts");
    let server = Server(child);
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(directory.join("serve.log")).unwrap_or_default();
        if let Some(address) = text
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|address| address.parse().ok())
        {
            return (server, address);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server printed no address within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `count` requests on one connection at `interval` apart from `start`, and
/// returns each latency counted from its scheduled time.
fn open_loop(address: SocketAddr, start: Instant, interval: Duration, count: usize) -> Vec<f64> {
    let mut connection = http::Connection::open(address).expect("the server accepts");
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let scheduled = start + interval * i as u32;
        let now = Instant::now();
        if scheduled > now {
            std::thread::sleep(scheduled - now);
        }
        let response = connection.get(TARGET).expect("the request succeeds");
        assert_eq!(response.status, 200);
        latencies.push(scheduled.elapsed().as_secs_f64() * 1000.0);
    }
    latencies
}

fn closed_loop(address: SocketAddr, until: Instant, limit: usize) -> Vec<f64> {
    let mut connection = http::Connection::open(address).expect("the server accepts");
    let mut latencies = Vec::new();
    while Instant::now() < until && latencies.len() < limit {
        let sent = Instant::now();
        let response = connection.get(TARGET).expect("the request succeeds");
        assert_eq!(response.status, 200);
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    latencies
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Prints one row of the table and returns the p99 latency in ms.
fn report(name: &str, mut latencies: Vec<f64>, seconds: f64) -> f64 {
    latencies.sort_by(f64::total_cmp);
    println!(
        "{name:<36} {:>8} {:>10.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
        latencies.len(),
        latencies.len() as f64 / seconds,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        latencies.last().copied().unwrap_or(0.0)
    );
    percentile(&latencies, 0.99)
}

fn main() {
    let rate = setting("BENCH_RATE", 1000, 1..=5000);
    let seconds = setting("BENCH_SECONDS", 10, 1..=30);
    let repeats = setting("BENCH_REPEATS", 3, 1..=10);
    let directory = tempfile::tempdir().expect("a temporary directory");
    let (_server, address) = start(directory.path());
    let body = http::get(address, TARGET).expect("the overview responds");
    println!(
        "GET {TARGET} on {address}: {} bytes, default fleet, {CONNECTIONS} keep-alive connections",
        body.body.len()
    );

    let warm_up = Instant::now() + Duration::from_secs(1);
    let _ = closed_loop(address, warm_up, 2_000);

    println!(
        "{:<36} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "load", "requests", "per second", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    let mut held = 0;
    for repeat in 1..=repeats {
        let load = load_average();
        let (latencies, elapsed) = open_loops(address, rate, seconds);
        let p99 = report(
            &format!("open loop {repeat}, {rate}/s, load {load}"),
            latencies,
            elapsed,
        );
        if p99 < TARGET_P99_MS {
            held += 1;
        }
    }

    let started = Instant::now();
    let until = started + CLOSED_LOOP;
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            std::thread::spawn(move || {
                closed_loop(address, until, CLOSED_LOOP_MAX_REQUESTS / CONNECTIONS)
            })
        })
        .collect();
    let latencies: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a client thread"))
        .collect();
    report(
        "closed loop, back to back",
        latencies,
        started.elapsed().as_secs_f64(),
    );
    println!(
        "open loop p99 under {TARGET_P99_MS} ms at {rate} requests/s in {held} of {repeats} runs"
    );
}

/// Runs the open loop once over every connection, and returns the latencies with the
/// loop's length in seconds.
fn open_loops(address: SocketAddr, rate: u64, seconds: u64) -> (Vec<f64>, f64) {
    let per_connection = (rate * seconds) as usize / CONNECTIONS;
    let interval = Duration::from_secs_f64(CONNECTIONS as f64 / rate as f64);
    let start = Instant::now() + Duration::from_millis(100);
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            // Connections are offset within the interval, so the requests are evenly spread.
            let offset = interval.mul_f64(i as f64 / CONNECTIONS as f64);
            std::thread::spawn(move || open_loop(address, start + offset, interval, per_connection))
        })
        .collect();
    let latencies: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a client thread"))
        .collect();
    (latencies, start.elapsed().as_secs_f64())
}

/// Returns the one-minute load average, as `/proc/loadavg` gives it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}
