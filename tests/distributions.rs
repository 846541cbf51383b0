//! SQL checks on a default-size database that the generated telemetry has the shape the
//! world model promises. They cover the hourly and weekly profile in each region's local
//! time, demand shares per origin, the range of every column, and observations that scatter
//! around the world model's expectation.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use placewise::generate::{BUSINESS_HOURS_FACTOR, NIGHT_FACTOR, WEEKEND_FACTOR};
use rusqlite::Connection;

/// Opens the one default fleet that every test of this file reads. It is written under
/// cargo's directory for test files, because statics are never dropped and a temporary
/// directory would be left behind.
fn database() -> Connection {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        common::generate(&directory, "distributions-fleet.db", &[])
    });
    Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn scalar(connection: &Connection, sql: &str) -> f64 {
    connection.query_row(sql, [], |row| row.get(0)).unwrap()
}

/// Mean requests per origin over rows whose local time matches `condition`, written with
/// `hour` (0 to 23) and `weekday` (0 = Sunday, as SQLite's `%w`).
fn mean_where(connection: &Connection, origin: &str, condition: &str) -> f64 {
    let sql = format!(
        "WITH local AS (
            SELECT t.requests_per_second AS rps,
                   CAST(strftime('%H', t.timestamp + r.utc_offset_hours * 3600, 'unixepoch') AS INTEGER) AS hour,
                   CAST(strftime('%w', t.timestamp + r.utc_offset_hours * 3600, 'unixepoch') AS INTEGER) AS weekday
            FROM traffic_patterns t JOIN regions r ON r.region = t.origin_region
            WHERE t.origin_region = '{origin}')
         SELECT AVG(rps) FROM local WHERE {condition}"
    );
    scalar(connection, &sql)
}

const WEEKDAY: &str = "weekday BETWEEN 1 AND 5";

#[test]
fn business_hours_peak_in_local_time() {
    let connection = database();
    for origin in ["us-east-1", "eu-west-1", "ap-northeast-1", "ap-southeast-1"] {
        let business = mean_where(
            &connection,
            origin,
            &format!("{WEEKDAY} AND hour BETWEEN 9 AND 17"),
        );
        let night = mean_where(
            &connection,
            origin,
            &format!("{WEEKDAY} AND (hour >= 22 OR hour < 6)"),
        );
        let shoulder = mean_where(
            &connection,
            origin,
            &format!("{WEEKDAY} AND hour IN (6, 7, 8, 18, 19, 20, 21)"),
        );
        let ratio = business / night;
        let expected = BUSINESS_HOURS_FACTOR / NIGHT_FACTOR;
        assert!(
            (ratio / expected - 1.0).abs() < 0.03,
            "{origin}: {ratio} vs {expected}"
        );
        assert!(
            (business / shoulder / BUSINESS_HOURS_FACTOR - 1.0).abs() < 0.03,
            "{origin}"
        );
    }
}

#[test]
fn weekend_dips_in_local_time() {
    let connection = database();
    for origin in ["us-west-2", "ap-northeast-1"] {
        let weekday = mean_where(&connection, origin, WEEKDAY);
        let weekend = mean_where(&connection, origin, "weekday IN (0, 6)");
        let ratio = weekend / weekday;
        assert!(
            (ratio / WEEKEND_FACTOR - 1.0).abs() < 0.03,
            "{origin}: {ratio}"
        );
    }
}

#[test]
fn mean_demand_matches_service_rate() {
    let connection = database();
    // Mean over the 90 days of the summed origins, against the service's mean rate. The
    // 90 days hold 12 whole weeks and 6 weekdays, so the weekday excess is about 1.5%.
    let ratio = scalar(
        &connection,
        "SELECT AVG(total * 1.0 / s.mean_requests_per_second) FROM (
             SELECT service_id, SUM(requests_per_second) / 2160.0 AS total
             FROM traffic_patterns GROUP BY service_id) t
         JOIN services s USING (service_id)",
    );
    assert!((ratio - 1.0).abs() < 0.03, "{ratio}");
}

#[test]
fn origin_shares_follow_world_shares() {
    let connection = database();
    let worst = scalar(
        &connection,
        "WITH observed AS (
             SELECT service_id, origin_region,
                    SUM(requests_per_second) * 1.0
                      / SUM(SUM(requests_per_second)) OVER (PARTITION BY service_id) AS share
             FROM traffic_patterns GROUP BY service_id, origin_region)
         SELECT MAX(ABS(o.share - w.share)) FROM observed o
         JOIN world_origin_shares w USING (service_id, origin_region)",
    );
    // Local-time profiles shift a little demand between origins; 3 points is far below
    // the spread of the shares themselves.
    assert!(worst < 0.03, "{worst}");
    let spread = scalar(
        &connection,
        "SELECT MAX(share) - MIN(share) FROM world_origin_shares",
    );
    assert!(spread > 0.5, "{spread}");
}

#[test]
fn service_columns_stay_in_range() {
    let connection = database();
    let bad = scalar(
        &connection,
        "SELECT COUNT(*) FROM services WHERE
            memory_mb NOT IN (256, 512, 1024, 2048, 4096)
            OR cores NOT IN (0.5, 1, 2, 4)
            OR latency_critical NOT IN (0, 1)
            OR mean_requests_per_second NOT BETWEEN 1000 AND 100000
            OR dependency_count NOT BETWEEN 0 AND 5
            OR service_name NOT GLOB '*-service-[1-6]'
            OR dependency_count != (SELECT COUNT(*) FROM service_dependencies d
                                    WHERE d.service_id = services.service_id)",
    );
    assert_eq!(bad, 0.0);
    let critical = scalar(&connection, "SELECT AVG(latency_critical) FROM services");
    assert!((0.15..0.45).contains(&critical), "{critical}");
    let templates = scalar(&connection, "SELECT COUNT(DISTINCT template) FROM services");
    assert_eq!(templates, 25.0);
    let self_calls = scalar(
        &connection,
        "SELECT COUNT(*) FROM service_dependencies WHERE service_id = depends_on_id",
    );
    assert_eq!(self_calls, 0.0);
}

#[test]
fn placement_history_follows_study_rules() {
    let connection = database();
    let bad_counts = scalar(
        &connection,
        "SELECT COUNT(*) FROM (
             SELECT p.service_id, p.date, COUNT(*) AS hosts, s.latency_critical AS critical
             FROM service_placement p JOIN services s USING (service_id)
             GROUP BY p.service_id, p.date)
         WHERE (critical = 1 AND hosts NOT BETWEEN 1 AND 2)
            OR (critical = 0 AND hosts NOT BETWEEN 2 AND 4)",
    );
    assert_eq!(bad_counts, 0.0);
    let days = scalar(
        &connection,
        "SELECT COUNT(DISTINCT date) FROM service_placement",
    );
    assert_eq!(days, 90.0);
    let bad_values = scalar(
        &connection,
        "SELECT COUNT(*) FROM service_placement WHERE
            instances NOT BETWEEN 1 AND 5 OR latency_ms <= 0
            OR error_rate < 0 OR error_rate > 1
            OR cpu_utilization < 0 OR cpu_utilization > 1 OR requests_per_second < 0
            OR peak_cpu_utilization < cpu_utilization - 1e-12 OR peak_cpu_utilization > 1",
    );
    assert_eq!(bad_values, 0.0);
}

/// Returns the values of a one-column query.
fn column(connection: &Connection, sql: &str) -> Vec<f64> {
    let mut statement = connection.prepare(sql).unwrap();
    let rows = statement.query_map([], |row| row.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[test]
fn observed_latency_scatters_around_expected() {
    let connection = database();
    // The bundled SQLite has no math functions, so logs are taken here.
    let ratios = column(
        &connection,
        "SELECT p.latency_ms / e.expected_latency_ms FROM service_placement p
         JOIN world_placement_expected e USING (service_id, date, region)",
    );
    assert!((mean(&ratios) - 1.0).abs() < 0.005, "{}", mean(&ratios));
    let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
    let log_mean = mean(&logs);
    let log_sd =
        (logs.iter().map(|l| (l - log_mean).powi(2)).sum::<f64>() / logs.len() as f64).sqrt();
    let expected = placewise::generate::OBSERVED_LATENCY_LOG_SD;
    assert!((log_sd / expected - 1.0).abs() < 0.05, "{log_sd}");
}

#[test]
fn latency_grows_with_utilization_in_history() {
    let connection = database();
    // Same service, low versus high utilization days: processing stretches with load.
    let ratio = scalar(
        &connection,
        "WITH ranked AS (
             SELECT service_id, latency_ms, cpu_utilization,
                    NTILE(4) OVER (PARTITION BY service_id ORDER BY cpu_utilization) AS quartile
             FROM service_placement)
         SELECT AVG(high) / AVG(low) FROM (
             SELECT service_id,
                    AVG(CASE WHEN quartile = 4 THEN latency_ms END) AS high,
                    AVG(CASE WHEN quartile = 1 THEN latency_ms END) AS low
             FROM ranked GROUP BY service_id)",
    );
    assert!(ratio > 1.1, "{ratio}");
}

#[test]
fn rtt_samples_jitter_around_median() {
    let connection = database();
    let logs: Vec<f64> = column(
        &connection,
        "SELECT l.rtt_ms / p.median_rtt_ms FROM regional_latency l
         JOIN region_pairs p USING (source_region, target_region)",
    )
    .iter()
    .map(|r| r.ln())
    .collect();
    let mean_log = mean(&logs);
    let max_log = logs.iter().fold(0.0f64, |m, l| m.max(l.abs()));
    assert!(mean_log.abs() < 0.005, "{mean_log}");
    // Six standard deviations of the log jitter.
    assert!(max_log < 6.0 * placewise::generate::RTT_LOG_SD, "{max_log}");
    let pairs = scalar(&connection, "SELECT COUNT(*) FROM region_pairs");
    assert_eq!(pairs, 25.0);
}
