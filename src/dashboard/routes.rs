//! Routes of the dashboard: the pages, the JSON API and the embedded assets, with errors
//! as 4xx answers that say what was wrong.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use tower_http::trace::{DefaultMakeSpan, DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use super::snapshot::{PlanRow, PlanTotals, PlanView};
use super::{assets, pages, to_json, Dashboard, Prepared};

/// Message of the A/B page and API while the database contains no experiment.
pub const NO_EXPERIMENT: &str = "no experiment yet: run `placewise experiment` or `placewise run`";
const NO_PLAN: &str = "no plan yet: run `placewise optimize` or `placewise run`";
const NO_MODEL: &str = "no model yet: run `placewise train` or `placewise run`";

/// Largest page of the plan API.
const MAX_PLAN_LIMIT: usize = 100_000;

/// Policy that keeps every page on this server: scripts, styles, data and images come from
/// it alone. ECharts sets inline styles, so styles allow `unsafe-inline`.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Builds every route of the dashboard over `dashboard`, with request tracing.
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(overview_page))
        .route("/ab-test", get(ab_test_page))
        .route("/regions", get(regions_page))
        .route("/plan", get(plan_page))
        .route("/plan/{service_id}", get(service_page))
        .route("/models", get(models_page))
        .route("/about", get(about_page))
        .route("/api", get(api_index))
        .route("/api/overview", get(overview_api))
        .route("/api/ab-test", get(ab_test_api))
        .route("/api/regions", get(regions_api))
        .route("/api/plan", get(plan_api))
        .route("/api/plan/{service_id}", get(service_api))
        .route("/api/models", get(models_api))
        .route("/assets/{*name}", get(asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            dashboard.clone(),
            check_host,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .with_state(dashboard)
}

type Shared = State<Arc<Dashboard>>;

/// Where an error is shown: as an HTML page or as a JSON object.
#[derive(Debug, Clone, Copy)]
enum Surface {
    Page,
    Api,
}

/// A 4xx response with the reason.
#[derive(Debug)]
struct Rejection {
    surface: Surface,
    status: StatusCode,
    message: String,
}

impl Rejection {
    fn new(surface: Surface, status: StatusCode, message: impl Into<String>) -> Rejection {
        Rejection {
            surface,
            status,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: u16,
    error: &'a str,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self.surface {
            Surface::Api => {
                let body = ErrorBody {
                    status: self.status.as_u16(),
                    error: &self.message,
                };
                (self.status, json(to_json(&body))).into_response()
            }
            Surface::Page => {
                let title = self.status.canonical_reason().unwrap_or("Error");
                (self.status, html(pages::error(title, &self.message))).into_response()
            }
        }
    }
}

fn json(body: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Rejects a request that names a host other than `localhost` or a loopback address,
/// unless the dashboard accepts any host. The names checked are every `Host` header and
/// the authority of an absolute request target (`GET http://host/...`), which HTTP/1.1
/// lets override `Host`. A request that names no host passes.
async fn check_host(State(dashboard): Shared, request: Request, next: Next) -> Response {
    if dashboard.any_host {
        return next.run(request).await;
    }
    let mut named: Vec<String> = request
        .headers()
        .get_all(header::HOST)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    if let Some(authority) = request.uri().authority() {
        named.push(authority.as_str().to_string());
    }
    let Some(foreign) = named.iter().find(|host| !is_loopback_host(host)) else {
        return next.run(request).await;
    };
    tracing::debug!(host = foreign, "rejected a request for another host name");
    Rejection::new(
        surface_of(request.uri()),
        StatusCode::FORBIDDEN,
        format!(
            "this dashboard answers to localhost and loopback addresses only, not to host \
             `{foreign}`; open it as http://127.0.0.1:PORT/, or start it with --addr \
             0.0.0.0:PORT, which listens on every network interface, to accept other names"
        ),
    )
    .into_response()
}

/// Returns whether a host (with any port) names this machine's loopback: `localhost` or
/// a name under `.localhost`, which RFC 6761 reserves for the loopback, or a loopback
/// address, IPv4-mapped ones included. A trailing dot (`localhost.`) is allowed.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        match rest.split_once(']') {
            Some((address, port)) if port.is_empty() || port.starts_with(':') => address,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    if let Ok(address) = name.parse::<std::net::IpAddr>() {
        return address.to_canonical().is_loopback();
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn overview_page() -> Response {
    html(pages::overview())
}

async fn ab_test_page(State(dashboard): Shared) -> Result<Response, Rejection> {
    let data = dashboard.current().await;
    if data.snapshot.ab_test.is_none() {
        return Err(Rejection::new(
            Surface::Page,
            StatusCode::NOT_FOUND,
            NO_EXPERIMENT,
        ));
    }
    Ok(html(pages::ab_test()))
}

async fn regions_page() -> Response {
    html(pages::regions())
}

async fn plan_page(State(dashboard): Shared) -> Result<Response, Rejection> {
    let data = dashboard.current().await;
    if data.snapshot.plan.is_none() {
        return Err(Rejection::new(
            Surface::Page,
            StatusCode::NOT_FOUND,
            NO_PLAN,
        ));
    }
    Ok(html(pages::plan()))
}

async fn service_page(
    State(dashboard): Shared,
    Path(service_id): Path<String>,
) -> Result<Response, Rejection> {
    let data = dashboard.current().await;
    let service_id = find_service(&data, &service_id, Surface::Page)?;
    let view = &data.snapshot.services[&service_id];
    Ok(html(pages::service(service_id, &view.service_name)))
}

async fn models_page(State(dashboard): Shared) -> Result<Response, Rejection> {
    let data = dashboard.current().await;
    let models = &data.snapshot.models;
    if models.latency.is_none() && models.strategy.is_none() {
        return Err(Rejection::new(
            Surface::Page,
            StatusCode::NOT_FOUND,
            NO_MODEL,
        ));
    }
    Ok(html(pages::models()))
}

async fn about_page() -> Response {
    html(pages::about())
}

/// One API route, for the index at `/api`.
#[derive(Serialize)]
struct Endpoint {
    path: &'static str,
    returns: &'static str,
}

async fn api_index() -> Response {
    let endpoints = [
        Endpoint {
            path: "/api/overview",
            returns: "counts, services by memory tier, latency-critical share, top 10 services by traffic, traffic by hour of day per origin",
        },
        Endpoint {
            path: "/api/ab-test",
            returns: "the latest experiment: summary, comparison table, service-level results, latency histograms and the stored document",
        },
        Endpoint {
            path: "/api/regions",
            returns: "regions with coordinates, prices and traffic share; RTT mean, min, max and standard deviation per pair",
        },
        Endpoint {
            path: "/api/plan?q=&sort=&order=&limit=&offset=",
            returns: "services under the latest plan and the control, filtered and sorted",
        },
        Endpoint {
            path: "/api/plan/{service_id}",
            returns: "one service: hosts, routing per origin and dependencies under the plan and the control",
        },
        Endpoint {
            path: "/api/models",
            returns: "latency model scores beside the baseline and the oracle, feature gains, predictions; the classifier's confusion matrix",
        },
    ];
    json(to_json(&endpoints))
}

async fn overview_api(State(dashboard): Shared) -> Response {
    json(dashboard.current().await.overview_json.clone())
}

async fn ab_test_api(State(dashboard): Shared) -> Result<Response, Rejection> {
    let data = dashboard.current().await;
    match &data.ab_test_json {
        Some(body) => Ok(json(body.clone())),
        None => Err(Rejection::new(
            Surface::Api,
            StatusCode::NOT_FOUND,
            NO_EXPERIMENT,
        )),
    }
}

async fn regions_api(State(dashboard): Shared) -> Response {
    json(dashboard.current().await.regions_json.clone())
}

async fn models_api(State(dashboard): Shared) -> Result<Response, Rejection> {
    let data = dashboard.current().await;
    let models = &data.snapshot.models;
    if models.latency.is_none() && models.strategy.is_none() {
        return Err(Rejection::new(
            Surface::Api,
            StatusCode::NOT_FOUND,
            NO_MODEL,
        ));
    }
    Ok(json(data.models_json.clone()))
}

async fn service_api(
    State(dashboard): Shared,
    Path(service_id): Path<String>,
) -> Result<Response, Rejection> {
    let data = dashboard.current().await;
    let service_id = find_service(&data, &service_id, Surface::Api)?;
    Ok(json(data.services_json[&service_id].clone()))
}

/// Parses a service id of a path and checks that the plan covers it.
fn find_service(data: &Prepared, text: &str, surface: Surface) -> Result<i64, Rejection> {
    if data.snapshot.plan.is_none() {
        return Err(Rejection::new(surface, StatusCode::NOT_FOUND, NO_PLAN));
    }
    let service_id: i64 = text.parse().map_err(|_| {
        Rejection::new(
            surface,
            StatusCode::BAD_REQUEST,
            format!("invalid service id `{text}`: use a whole number, such as 0"),
        )
    })?;
    if !data.snapshot.services.contains_key(&service_id) {
        return Err(Rejection::new(
            surface,
            StatusCode::NOT_FOUND,
            format!("no service with id {service_id}; /plan lists every service"),
        ));
    }
    Ok(service_id)
}

/// Query of `/api/plan`. Values are parsed by hand so that an invalid one gets a message
/// naming the parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanQuery {
    /// Case-insensitive text matched against the service name, template and regions.
    q: Option<String>,
    sort: Option<String>,
    order: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

/// Columns `/api/plan` sorts by.
const SORT_COLUMNS: [&str; 11] = [
    "service_id",
    "service_name",
    "template",
    "latency_critical",
    "regions",
    "instances",
    "predicted_latency_ms",
    "monthly_cost_usd",
    "control_instances",
    "control_latency_ms",
    "control_cost_usd",
];

#[derive(Serialize)]
struct PlanPage<'a> {
    plan: &'a PlanTotals,
    control: Option<&'a PlanTotals>,
    run_plans: &'a [PlanTotals],
    /// Services in the plan.
    total: usize,
    /// Services that match `q`.
    matched: usize,
    offset: usize,
    limit: usize,
    sort: &'a str,
    order: &'a str,
    services: Vec<&'a PlanRow>,
}

/// Rewords serde's query error ("Failed to deserialize query string: colour: unknown field
/// `colour`, expected one of ...") as a sentence about the query.
fn query_message(text: &str) -> String {
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    format!("invalid query string: {detail}")
}

async fn plan_api(
    State(dashboard): Shared,
    query: Result<Query<PlanQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Rejection> {
    let bad = |message: String| Rejection::new(Surface::Api, StatusCode::BAD_REQUEST, message);
    let Query(query) = query.map_err(|e| bad(query_message(&e.body_text())))?;
    let sort = query.sort.as_deref().unwrap_or("service_id");
    if !SORT_COLUMNS.contains(&sort) {
        return Err(bad(format!(
            "invalid sort `{sort}`: use one of {}",
            SORT_COLUMNS.join(", ")
        )));
    }
    let order = query.order.as_deref().unwrap_or("asc");
    if order != "asc" && order != "desc" {
        return Err(bad(format!("invalid order `{order}`: use asc or desc")));
    }
    let limit = match query.limit.as_deref() {
        None => MAX_PLAN_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PLAN_LIMIT).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "invalid limit `{text}`: use a whole number from 1 to {MAX_PLAN_LIMIT}"
                ))
            })?,
    };
    let offset = match query.offset.as_deref() {
        None => 0,
        Some(text) => text.parse::<usize>().map_err(|_| {
            bad(format!(
                "invalid offset `{text}`: use a whole number, 0 or more"
            ))
        })?,
    };

    let data = dashboard.current().await;
    let Some(plan) = &data.snapshot.plan else {
        return Err(Rejection::new(Surface::Api, StatusCode::NOT_FOUND, NO_PLAN));
    };
    let mut services = filter_services(plan, query.q.as_deref().unwrap_or(""));
    sort_services(&mut services, sort);
    if order == "desc" {
        services.reverse();
    }
    let matched = services.len();
    let page: Vec<&PlanRow> = services.into_iter().skip(offset).take(limit).collect();
    let body = PlanPage {
        plan: &plan.plan,
        control: plan.control.as_ref(),
        run_plans: &plan.run_plans,
        total: plan.services.len(),
        matched,
        offset,
        limit,
        sort,
        order,
        services: page,
    };
    Ok(json(to_json(&body)))
}

fn filter_services<'a>(plan: &'a PlanView, text: &str) -> Vec<&'a PlanRow> {
    let needle = text.trim().to_lowercase();
    plan.services
        .iter()
        .filter(|row| {
            needle.is_empty()
                || row.service_name.to_lowercase().contains(&needle)
                || row.template.to_lowercase().contains(&needle)
                || row
                    .regions
                    .iter()
                    .chain(&row.control_regions)
                    .any(|r| r.to_lowercase().contains(&needle))
        })
        .collect()
}

/// Sorts ascending by `column`, ties by service id; a missing value sorts first.
fn sort_services(services: &mut [&PlanRow], column: &str) {
    let number = |row: &PlanRow| -> Option<f64> {
        match column {
            "latency_critical" => Some(f64::from(u8::from(row.latency_critical))),
            "regions" => Some(row.regions.len() as f64),
            "instances" => Some(row.instances as f64),
            "predicted_latency_ms" => Some(row.predicted_latency_ms),
            "monthly_cost_usd" => Some(row.monthly_cost_usd),
            "control_instances" => Some(row.control_instances as f64),
            "control_latency_ms" => row.control_latency_ms,
            "control_cost_usd" => row.control_cost_usd,
            _ => Some(row.service_id as f64),
        }
    };
    services.sort_by(|a, b| {
        let primary = match column {
            "service_name" => a.service_name.cmp(&b.service_name),
            "template" => a.template.cmp(&b.template),
            _ => match (number(a), number(b)) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (x, y) => x.is_some().cmp(&y.is_some()),
            },
        };
        primary.then(a.service_id.cmp(&b.service_id))
    });
}

async fn asset(Path(name): Path<String>) -> Result<Response, Rejection> {
    let Some(asset) = assets::find(&name) else {
        return Err(Rejection::new(
            Surface::Api,
            StatusCode::NOT_FOUND,
            format!("no asset `{name}`"),
        ));
    };
    let cache = if asset.vendor {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    Ok((
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
        ],
        Body::from(asset.body),
    )
        .into_response())
}

fn surface_of(uri: &Uri) -> Surface {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") || path.starts_with("/assets/") {
        Surface::Api
    } else {
        Surface::Page
    }
}

async fn not_found(uri: Uri) -> Rejection {
    Rejection::new(
        surface_of(&uri),
        StatusCode::NOT_FOUND,
        format!(
            "no page at `{}`; the pages are /, /ab-test, /regions, /plan, /models and /about, and /api lists the API",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Rejection {
    Rejection::new(
        surface_of(&uri),
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {method} is not allowed on `{}`: the dashboard is read-only, so use GET",
            uri.path()
        ),
    )
}
