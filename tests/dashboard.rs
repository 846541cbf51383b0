//! The dashboard's router, driven without a socket: every figure of the API against the
//! database and the experiment document read independently, bad requests, path traversal
//! and reloading after the database changes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use placewise::dashboard::{self, Dashboard};
use rusqlite::Connection;
use serde_json::Value;
use tower::ServiceExt;

struct Fixture {
    _directory: tempfile::TempDir,
    database: PathBuf,
    /// `results/ab_test_results.json` as the experiment stage writes it.
    document: Value,
    results: PathBuf,
    router: Router,
}

/// Returns the pipeline run that the tests of this file share, with an experiment stored.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let directory = tempfile::tempdir().unwrap();
        let database = common::run_small_pipeline(directory.path());
        let results = directory.path().join("results");
        let document = common::ensure_experiment(&database, &results);
        let router = dashboard::router(Arc::new(Dashboard::open(&database).unwrap()));
        Fixture {
            _directory: directory,
            database,
            document,
            results,
            router,
        }
    })
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn send(router: &Router, method: &str, uri: &str) -> Reply {
    send_to_host(router, method, uri, None)
}

/// Sends a request with the `Host` header `host`, or none.
fn send_to_host(router: &Router, method: &str, uri: &str, host: Option<&str>) -> Reply {
    let hosts: Vec<&str> = host.into_iter().collect();
    send_request(router, method, uri, &hosts)
}

/// Sends `GET uri` with one `Host` header per entry of `hosts`.
fn send_with_hosts(router: &Router, uri: &str, hosts: &[&str]) -> Reply {
    send_request(router, "GET", uri, hosts)
}

fn send_request(router: &Router, method: &str, uri: &str, hosts: &[&str]) -> Reply {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = Request::builder().method(method).uri(uri);
        for host in hosts {
            request = request.header("host", *host);
        }
        let request = request.body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            content_type,
            body,
        }
    })
}

fn get(uri: &str) -> Reply {
    send(&fixture().router, "GET", uri)
}

fn get_json(uri: &str) -> Value {
    let reply = get(uri);
    assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text());
    assert_eq!(reply.content_type, "application/json", "{uri}");
    reply.json()
}

fn database() -> Connection {
    Connection::open_with_flags(
        &fixture().database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

fn scalar(connection: &Connection, sql: &str) -> f64 {
    connection
        .query_row(sql, [], |row| row.get::<_, f64>(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn close(actual: &Value, expected: f64, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {actual} is not a number"));
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: the API shows {actual}, the database holds {expected}"
    );
}

#[test]
fn overview_counts_match_database() {
    let overview = get_json("/api/overview");
    let db = database();
    let counts = &overview["counts"];
    for (key, sql) in [
        ("services", "SELECT COUNT(*) FROM services"),
        ("regions", "SELECT COUNT(*) FROM regions"),
        ("traffic_rows", "SELECT COUNT(*) FROM traffic_patterns"),
        ("placement_rows", "SELECT COUNT(*) FROM service_placement"),
        ("latency_rows", "SELECT COUNT(*) FROM regional_latency"),
        ("models", "SELECT COUNT(*) FROM models"),
        ("plans", "SELECT COUNT(*) FROM plans"),
    ] {
        close(&counts[key], scalar(&db, sql), key);
    }
    close(
        &counts["telemetry_rows"],
        scalar(
            &db,
            "SELECT (SELECT COUNT(*) FROM traffic_patterns) + (SELECT COUNT(*) FROM service_placement)
                  + (SELECT COUNT(*) FROM regional_latency)",
        ),
        "telemetry_rows",
    );
    assert_eq!(counts["services"], 40);
}

#[test]
fn overview_figures_match_database() {
    let overview = get_json("/api/overview");
    let db = database();

    let tiers = overview["memory_tiers"].as_array().unwrap();
    let total: i64 = tiers.iter().map(|t| t["services"].as_i64().unwrap()).sum();
    assert_eq!(total, 40);
    for tier in tiers {
        let memory = tier["memory_mb"].as_i64().unwrap();
        let expected = scalar(
            &db,
            &format!("SELECT COUNT(*) FROM services WHERE memory_mb = {memory}"),
        );
        close(&tier["services"], expected, &format!("tier {memory} MB"));
    }

    let critical = scalar(&db, "SELECT SUM(latency_critical) FROM services");
    close(
        &overview["latency_critical"]["services"],
        critical,
        "critical services",
    );
    close(
        &overview["latency_critical"]["share"],
        critical / 40.0,
        "critical share",
    );

    // Mean requests per second over the hours, written as an average of hourly totals.
    let mut statement = db
        .prepare(
            "SELECT service_id, AVG(total) FROM (
                 SELECT service_id, timestamp, SUM(requests_per_second) AS total
                 FROM traffic_patterns GROUP BY service_id, timestamp)
             GROUP BY service_id ORDER BY AVG(total) DESC, service_id LIMIT 10",
        )
        .unwrap();
    let expected: Vec<(i64, f64)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let top = overview["top_services"].as_array().unwrap();
    assert_eq!(top.len(), 10);
    for (shown, (service_id, mean)) in top.iter().zip(&expected) {
        assert_eq!(shown["service_id"], *service_id);
        let relative = (shown["mean_requests_per_second"].as_f64().unwrap() - mean).abs() / mean;
        assert!(
            relative < 1e-9,
            "service {service_id}: {shown} against {mean}"
        );
    }

    let series = overview["traffic_by_hour"]["series"].as_array().unwrap();
    assert_eq!(series.len(), 5);
    for origin in series {
        let region = origin["origin_region"].as_str().unwrap();
        for hour in [0, 7, 23] {
            let expected = scalar(
                &db,
                &format!(
                    "SELECT SUM(requests_per_second) / 7.0 FROM traffic_patterns
                     WHERE origin_region = '{region}'
                       AND CAST(strftime('%H', timestamp, 'unixepoch') AS INTEGER) = {hour}"
                ),
            );
            let shown = &origin["mean_requests_per_second"][hour];
            let relative = (shown.as_f64().unwrap() - expected).abs() / expected;
            assert!(
                relative < 1e-9,
                "{region} at {hour}:00: {shown} against {expected}"
            );
        }
    }
}

#[test]
fn regions_match_database() {
    let regions = get_json("/api/regions");
    let db = database();
    let listed = regions["regions"].as_array().unwrap();
    assert_eq!(listed.len(), 5);
    let total = scalar(&db, "SELECT SUM(requests_per_second) FROM traffic_patterns");
    let mut shares = 0.0;
    for region in listed {
        let code = region["region"].as_str().unwrap();
        for column in ["latitude", "longitude", "usd_per_hour"] {
            let expected = scalar(
                &db,
                &format!("SELECT {column} FROM regions WHERE region = '{code}'"),
            );
            close(&region[column], expected, &format!("{code} {column}"));
        }
        let origin = scalar(
            &db,
            &format!(
                "SELECT SUM(requests_per_second) FROM traffic_patterns WHERE origin_region = '{code}'"
            ),
        );
        close(
            &region["traffic_share"],
            origin / total,
            &format!("{code} share"),
        );
        shares += region["traffic_share"].as_f64().unwrap();
    }
    assert!((shares - 1.0).abs() < 1e-9, "shares add up to {shares}");

    let cells = regions["rtt"].as_array().unwrap();
    assert_eq!(cells.len(), 25);
    for cell in cells {
        let (source, target) = (
            cell["source_region"].as_str().unwrap(),
            cell["target_region"].as_str().unwrap(),
        );
        let pair = format!("source_region = '{source}' AND target_region = '{target}'");
        let mean = scalar(
            &db,
            &format!("SELECT AVG(rtt_ms) FROM regional_latency WHERE {pair}"),
        );
        let variance = scalar(
            &db,
            &format!(
                "SELECT SUM((rtt_ms - {mean}) * (rtt_ms - {mean})) / (COUNT(*) - 1)
                 FROM regional_latency WHERE {pair}"
            ),
        );
        let what = format!("{source} to {target}");
        assert!(
            (cell["mean_ms"].as_f64().unwrap() - mean).abs() < 1e-9,
            "{what}"
        );
        close(
            &cell["min_ms"],
            scalar(
                &db,
                &format!("SELECT MIN(rtt_ms) FROM regional_latency WHERE {pair}"),
            ),
            &what,
        );
        close(
            &cell["max_ms"],
            scalar(
                &db,
                &format!("SELECT MAX(rtt_ms) FROM regional_latency WHERE {pair}"),
            ),
            &what,
        );
        assert!(
            (cell["std_ms"].as_f64().unwrap() - variance.sqrt()).abs() < 1e-9,
            "{what}: sd {} against {}",
            cell["std_ms"],
            variance.sqrt()
        );
        assert_eq!(cell["days"], 7);
    }
}

/// Rows of `results/plan.csv`: service id, region and instances.
fn plan_csv(results: &Path) -> Vec<(i64, String, i64)> {
    let text = std::fs::read_to_string(results.join("plan.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (
                fields[0].parse().unwrap(),
                fields[2].to_string(),
                fields[3].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn plan_matches_database_and_csv() {
    let plan = get_json("/api/plan");
    let db = database();
    let plan_id = scalar(
        &db,
        "SELECT MAX(plan_id) FROM plans WHERE kind = 'optimizer'",
    );
    close(&plan["plan"]["plan_id"], plan_id, "plan id");
    let control_id = scalar(
        &db,
        &format!(
            "SELECT plan_id FROM plans WHERE kind = 'random'
             AND run_id = (SELECT run_id FROM plans WHERE plan_id = {plan_id})"
        ),
    );
    close(&plan["control"]["plan_id"], control_id, "control id");
    assert_eq!(plan["run_plans"].as_array().unwrap().len(), 4);
    close(
        &plan["plan"]["monthly_cost_usd"],
        scalar(
            &db,
            &format!("SELECT monthly_cost_usd FROM plans WHERE plan_id = {plan_id}"),
        ),
        "plan cost",
    );

    let csv = plan_csv(&fixture().results);
    let services = plan["services"].as_array().unwrap();
    assert_eq!(services.len(), 40);
    for service in services {
        let id = service["service_id"].as_i64().unwrap();
        let hosts =
            |plan: f64| format!("FROM plan_hosts WHERE plan_id = {plan} AND service_id = {id}");
        close(
            &service["instances"],
            scalar(&db, &format!("SELECT SUM(instances) {}", hosts(plan_id))),
            &format!("service {id} instances"),
        );
        let cost = scalar(
            &db,
            &format!("SELECT SUM(monthly_cost_usd) {}", hosts(plan_id)),
        );
        assert!((service["monthly_cost_usd"].as_f64().unwrap() - cost).abs() < 1e-6);
        let latency = scalar(
            &db,
            &format!(
                "SELECT SUM(routed_share * predicted_latency_ms) / SUM(routed_share) {}",
                hosts(plan_id)
            ),
        );
        assert!(
            (service["predicted_latency_ms"].as_f64().unwrap() - latency).abs() < 1e-9,
            "service {id} latency"
        );
        close(
            &service["control_instances"],
            scalar(&db, &format!("SELECT SUM(instances) {}", hosts(control_id))),
            &format!("service {id} control instances"),
        );
        let mut regions: Vec<String> = service["regions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        regions.sort();
        let mut from_csv: Vec<String> = csv
            .iter()
            .filter(|(s, _, _)| *s == id)
            .map(|(_, r, _)| r.clone())
            .collect();
        from_csv.sort();
        assert_eq!(regions, from_csv, "service {id} regions in plan.csv");
        let csv_instances: i64 = csv.iter().filter(|(s, _, _)| *s == id).map(|r| r.2).sum();
        assert_eq!(service["instances"], csv_instances, "service {id}");
    }
}

#[test]
fn plan_search_sort_and_pages() {
    let all = get_json("/api/plan");
    let matching = get_json("/api/plan?q=AUTH");
    let names: Vec<&str> = matching["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["auth-service-1", "auth-service-2"]);
    assert_eq!(matching["matched"], 2);
    assert_eq!(matching["total"], 40);

    let by_region = get_json("/api/plan?q=ap-southeast-1");
    assert!(by_region["services"].as_array().unwrap().iter().all(|s| {
        s["regions"]
            .as_array()
            .unwrap()
            .iter()
            .chain(s["control_regions"].as_array().unwrap())
            .any(|r| r == "ap-southeast-1")
    }));

    let sorted = get_json("/api/plan?sort=monthly_cost_usd&order=desc");
    let costs: Vec<f64> = sorted["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["monthly_cost_usd"].as_f64().unwrap())
        .collect();
    assert!(costs.windows(2).all(|w| w[0] >= w[1]), "{costs:?}");
    assert_eq!(costs.len(), 40);

    let page = get_json("/api/plan?sort=service_id&limit=5&offset=10");
    let ids: Vec<i64> = page["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [10, 11, 12, 13, 14]);
    assert_eq!(all["services"][10], page["services"][0]);

    let none = get_json("/api/plan?q=no-such-service");
    assert_eq!(none["matched"], 0);
    assert_eq!(none["services"].as_array().unwrap().len(), 0);
}

#[test]
fn service_page_routes_to_nearest_host() {
    let db = database();
    let plan_id = scalar(
        &db,
        "SELECT MAX(plan_id) FROM plans WHERE kind = 'optimizer'",
    );
    for id in [0, 7, 39] {
        let service = get_json(&format!("/api/plan/{id}"));
        assert_eq!(service["service_id"], id);
        let hosts: Vec<String> = service["plan_hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["region"].as_str().unwrap().to_string())
            .collect();
        close(
            &Value::from(hosts.len() as f64),
            scalar(
                &db,
                &format!(
                    "SELECT COUNT(*) FROM plan_hosts WHERE plan_id = {plan_id} AND service_id = {id}"
                ),
            ),
            "hosts",
        );
        let routing = service["routing"].as_array().unwrap();
        assert_eq!(routing.len(), 5);
        let mut demand = 0.0;
        for route in routing {
            let origin = route["origin_region"].as_str().unwrap();
            let nearest = scalar(
                &db,
                &format!(
                    "SELECT MIN(mean) FROM (SELECT AVG(rtt_ms) AS mean FROM regional_latency
                     WHERE source_region = '{origin}' AND target_region IN ({})
                     GROUP BY target_region)",
                    hosts
                        .iter()
                        .map(|h| format!("'{h}'"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            );
            assert!(
                (route["plan_rtt_ms"].as_f64().unwrap() - nearest).abs() < 1e-9,
                "service {id} from {origin}: {route}"
            );
            assert!(hosts.contains(&route["plan_region"].as_str().unwrap().to_string()));
            demand += route["demand_share"].as_f64().unwrap();
        }
        assert!((demand - 1.0).abs() < 1e-9, "service {id} demand {demand}");
        let calls = scalar(
            &db,
            &format!("SELECT COUNT(*) FROM service_dependencies WHERE service_id = {id}"),
        );
        close(
            &Value::from(service["dependencies"].as_array().unwrap().len() as f64),
            calls,
            "dependencies",
        );
    }
}

#[test]
fn models_match_database() {
    let models = get_json("/api/models");
    let db = database();
    let (model_id, metrics): (i64, String) = db
        .query_row(
            "SELECT model_id, metrics FROM models WHERE kind = 'latency'
             ORDER BY model_id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    let metrics: Value = serde_json::from_str(&metrics).unwrap();
    let latency = &models["latency"];
    assert_eq!(latency["model_id"], model_id);
    let scores = latency["scores"].as_array().unwrap();
    for (score, key) in scores.iter().zip(["test", "mean_baseline", "oracle"]) {
        for (shown, stored) in [("rmse_ms", "rmse"), ("mae_ms", "mae"), ("r2", "r2")] {
            close(
                &score[shown],
                metrics[key][stored].as_f64().unwrap(),
                &format!("{key} {stored}"),
            );
        }
    }
    let features = latency["feature_importance"].as_array().unwrap();
    close(
        &Value::from(features.len() as f64),
        scalar(
            &db,
            &format!("SELECT COUNT(*) FROM model_feature_importance WHERE model_id = {model_id}"),
        ),
        "features",
    );
    let top: (String, f64) = db
        .query_row(
            "SELECT feature, gain FROM model_feature_importance WHERE model_id = ?1
             ORDER BY gain DESC LIMIT 1",
            [model_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(features[0]["feature"], top.0.as_str());
    close(&features[0]["gain"], top.1, "top gain");

    let rows = scalar(
        &db,
        &format!("SELECT COUNT(*) FROM model_predictions WHERE model_id = {model_id}"),
    );
    close(&latency["predictions"]["rows"], rows, "prediction rows");
    let points = latency["predictions"]["points"].as_array().unwrap();
    assert_eq!(points.len() as f64, rows);
    let observed: f64 = points.iter().map(|p| p[0].as_f64().unwrap()).sum();
    let expected = scalar(
        &db,
        &format!("SELECT SUM(observed_ms) FROM model_predictions WHERE model_id = {model_id}"),
    );
    assert!((observed - expected).abs() < 1e-6 * expected);

    let stored: String = db
        .query_row(
            "SELECT metrics FROM models WHERE kind = 'strategy' ORDER BY model_id DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(models["strategy"]["confusion"], stored["confusion"]);
    assert_eq!(
        models["strategy"]["metrics"]["accuracy"],
        stored["accuracy"]
    );
}

#[test]
fn ab_test_matches_document() {
    let ab = get_json("/api/ab-test");
    let document = &fixture().document;
    for arm in ["control", "treatment"] {
        let metrics = &document[format!("{arm}_metrics")];
        for row in ab["comparison"].as_array().unwrap() {
            let key = row["key"].as_str().unwrap();
            close(
                &row[arm],
                metrics[key].as_f64().unwrap(),
                &format!("{arm} {key}"),
            );
        }
    }
    assert_eq!(ab["document"]["improvements"], document["improvements"]);
    assert_eq!(
        ab["document"]["statistical_significance"],
        document["statistical_significance"]
    );
    let summary = ab["summary"].as_str().unwrap();
    let control_latency = document["control_metrics"]["avg_latency_ms"]
        .as_f64()
        .unwrap();
    assert!(
        summary.contains(&format!("{control_latency:.2} ms")),
        "{summary}"
    );
    // The sentence concludes from the service-level tests, never from the request-level
    // test of the original study.
    let tests = document["service_level_tests"].as_array().unwrap();
    let significant = tests
        .iter()
        .all(|test| test["is_significant"].as_bool().unwrap());
    assert_eq!(
        summary.contains("is statistically significant"),
        significant,
        "{summary}"
    );
    assert!(summary.contains("shown for comparison only"), "{summary}");

    let db = database();
    let services = ab["services"].as_array().unwrap();
    close(
        &Value::from(services.len() as f64),
        scalar(
            &db,
            "SELECT COUNT(DISTINCT service_id) FROM experiment_services",
        ),
        "services",
    );
    for service in services.iter().step_by(9) {
        let id = service["service_id"].as_i64().unwrap();
        for arm in ["control", "treatment"] {
            let mean = scalar(
                &db,
                &format!(
                    "SELECT mean_latency_ms FROM experiment_services
                     WHERE service_id = {id} AND arm = '{arm}'"
                ),
            );
            close(
                &service[arm]["mean_latency_ms"],
                mean,
                &format!("{id} {arm}"),
            );
        }
    }
    for arm in ["control", "treatment"] {
        let bins = ab["latency_histogram"][arm].as_array().unwrap();
        let requests: i64 = bins.iter().map(|b| b["requests"].as_i64().unwrap()).sum();
        close(
            &Value::from(requests as f64),
            scalar(
                &db,
                &format!(
                    "SELECT SUM(requests) FROM experiment_latency_histogram WHERE arm = '{arm}'"
                ),
            ),
            arm,
        );
    }
}

/// Copies the fixture's database to a new directory, for tests that change it.
fn copy_database() -> (tempfile::TempDir, PathBuf) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("copy.db");
    std::fs::copy(&fixture().database, &path).unwrap();
    (directory, path)
}

#[test]
fn ab_test_absent_gives_404() {
    let (_directory, path) = copy_database();
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DELETE FROM experiment_services; DELETE FROM experiment_latency_histogram;
             DELETE FROM experiments;",
        )
        .unwrap();
    let router = dashboard::router(Arc::new(Dashboard::open(&path).unwrap()));
    let message = "no experiment yet: run `placewise experiment` or `placewise run`";
    let api = send(&router, "GET", "/api/ab-test");
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.json()["error"], message);
    let page = send(&router, "GET", "/ab-test");
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.text().contains(message), "{}", page.text());
    let overview = send(&router, "GET", "/api/overview");
    assert_eq!(overview.status, StatusCode::OK);
}

#[test]
fn database_change_is_shown() {
    let (_directory, path) = copy_database();
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DELETE FROM experiment_services; DELETE FROM experiment_latency_histogram;
             DELETE FROM experiments;",
        )
        .unwrap();
    let router = dashboard::router(Arc::new(Dashboard::open(&path).unwrap()));
    assert_eq!(
        send(&router, "GET", "/api/ab-test").status,
        StatusCode::NOT_FOUND
    );
    common::store_experiment(&path, &fixture().document);
    let reply = send(&router, "GET", "/api/ab-test");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["experiment_id"], 1);
}

#[test]
fn bad_requests_get_4xx_with_message() {
    let cases = [
        ("GET", "/plan/999", 404, "no service with id 999"),
        ("GET", "/api/plan/999", 404, "no service with id 999"),
        ("GET", "/api/plan/-1", 404, "no service with id -1"),
        ("GET", "/plan/abc", 400, "invalid service id `abc`"),
        ("GET", "/api/plan/1.5", 400, "invalid service id `1.5`"),
        (
            "GET",
            "/api/plan/99999999999999999999",
            400,
            "invalid service id",
        ),
        ("GET", "/api/plan?limit=abc", 400, "invalid limit `abc`"),
        ("GET", "/api/plan?limit=0", 400, "invalid limit `0`"),
        ("GET", "/api/plan?limit=-3", 400, "invalid limit `-3`"),
        ("GET", "/api/plan?offset=-1", 400, "invalid offset `-1`"),
        ("GET", "/api/plan?sort=cost", 400, "invalid sort `cost`"),
        ("GET", "/api/plan?order=up", 400, "invalid order `up`"),
        ("GET", "/api/plan?colour=red", 400, "unknown field `colour`"),
        (
            "GET",
            "/api/plan?limit=1&limit=2",
            400,
            "invalid query string",
        ),
        ("GET", "/api/plan?limit=1e3", 400, "invalid limit `1e3`"),
        ("GET", "/api/plan?offset=1.5", 400, "invalid offset `1.5`"),
        ("GET", "/nope", 404, "no page at `/nope`"),
        ("GET", "/api/nope", 404, "no page at `/api/nope`"),
        ("GET", "/plan/", 404, "no page at `/plan/`"),
        ("GET", "/assets/nope.js", 404, "no asset `nope.js`"),
        ("POST", "/api/overview", 405, "method POST is not allowed"),
        ("DELETE", "/plan", 405, "method DELETE is not allowed"),
    ];
    for (method, uri, status, message) in cases {
        let reply = send(&fixture().router, method, uri);
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{method} {uri}: {}",
            reply.text()
        );
        let text = reply.text();
        assert!(text.contains(message), "{method} {uri}: {text}");
        if uri.starts_with("/api") {
            assert_eq!(reply.json()["status"], status, "{uri}");
        }
    }
}

#[test]
fn foreign_host_names_are_rejected() {
    let router = &fixture().router;
    let loopback = [
        "localhost:8080",
        "LOCALHOST",
        "127.0.0.1:9000",
        "127.1.2.3",
        "[::1]:8080",
        "[::1]",
        "dashboard.localhost:8080",
        "localhost.",
        "dashboard.localhost.:8080",
        "[::ffff:127.0.0.1]:8080",
    ];
    for host in loopback {
        let reply = send_to_host(router, "GET", "/api/overview", Some(host));
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.text());
    }
    let foreign = [
        "attacker.example",
        "attacker.example:8080",
        "10.0.0.5:8080",
        "localhost.attacker.example",
        "[::2]:8080",
        "[::1",
        "0.0.0.0:8080",
        "[::ffff:10.0.0.5]",
        "",
    ];
    for host in foreign {
        for uri in ["/", "/api/overview", "/assets/dashboard.js"] {
            let reply = send_to_host(router, "GET", uri, Some(host));
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{host} {uri}");
            let text = reply.text();
            assert!(
                text.contains(&format!("host `{host}`")),
                "{host} {uri}: {text}"
            );
            if uri.starts_with("/api") || uri.starts_with("/assets/") {
                assert_eq!(reply.json()["status"], 403, "{host} {uri}");
            }
        }
    }
    // An absolute request target names its host too, and so does a second Host header.
    let reply = send_to_host(
        router,
        "GET",
        "http://attacker.example/api/overview",
        Some("localhost"),
    );
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    let reply = send_to_host(router, "GET", "http://localhost:8080/api/overview", None);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = send_with_hosts(router, "/api/overview", &["localhost", "attacker.example"]);
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());

    // A server that listens beyond loopback is reached by the machine's other names.
    let mut dashboard = Dashboard::open(&fixture().database).unwrap();
    dashboard.accept_any_host();
    let open = dashboard::router(Arc::new(dashboard));
    let reply = send_to_host(&open, "GET", "/api/overview", Some("attacker.example"));
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[test]
fn paths_outside_assets_are_unreadable() {
    let secrets = ["[package]", "root:", "CREATE TABLE", "SQLite format"];
    for uri in [
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/%2e%2e%2fCargo.toml",
        "/assets/..%2F..%2FCargo.toml",
        "/assets/vendor/../../Cargo.toml",
        "/assets/vendor/%2e%2e/%2e%2e/Cargo.toml",
        "/assets//etc/passwd",
        "/assets/%2Fetc%2Fpasswd",
        "/assets/../../../../etc/passwd",
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "//etc/passwd",
        "/etc/passwd",
        "/assets/dashboard.js/../../Cargo.toml",
        "/assets/./dashboard.js",
        "/assets/dashboard.js%00.txt",
        "/assets/src/main.rs",
        "/assets/../src/store.rs",
        "/placewise.db",
        "/assets/../placewise.db",
    ] {
        let reply = send(&fixture().router, "GET", uri);
        assert!(
            reply.status.is_client_error(),
            "{uri}: {} {}",
            reply.status,
            reply.text()
        );
        let text = reply.text();
        for secret in secrets {
            assert!(!text.contains(secret), "{uri} returned file contents");
        }
    }
}

#[test]
fn assets_are_embedded_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    for (name, content_type) in [
        ("vendor/echarts.min.js", "text/javascript; charset=utf-8"),
        (
            "vendor/topojson-client.min.js",
            "text/javascript; charset=utf-8",
        ),
        ("vendor/countries-110m.json", "application/json"),
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("dashboard.css", "text/css; charset=utf-8"),
    ] {
        let reply = get(&format!("/assets/{name}"));
        assert_eq!(reply.status, StatusCode::OK, "{name}");
        assert_eq!(reply.content_type, content_type, "{name}");
        assert_eq!(
            reply.body,
            std::fs::read(root.join(name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn pages_load_nothing_from_other_hosts() {
    for uri in [
        "/", "/ab-test", "/regions", "/plan", "/plan/3", "/models", "/about",
    ] {
        let reply = get(uri);
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text());
        assert_eq!(reply.content_type, "text/html; charset=utf-8");
        let text = reply.text();
        for attribute in ["src=\"", "href=\""] {
            for (index, _) in text.match_indices(attribute) {
                let target = &text[index + attribute.len()..];
                assert!(
                    target.starts_with('/') || target.starts_with("data:"),
                    "{uri} refers to {}",
                    &target[..target.find('"').unwrap_or(target.len())]
                );
            }
        }
    }
    let script = String::from_utf8(get("/assets/dashboard.js").body).unwrap();
    assert!(!script.contains("http://"));
    assert!(!script.contains("https://"));
}

#[test]
fn responses_carry_security_headers() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let response = runtime.block_on(async {
        fixture()
            .router
            .clone()
            .oneshot(Request::builder().uri("/").body(Body::empty()).unwrap())
            .await
            .unwrap()
    });
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
}
