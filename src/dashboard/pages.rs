//! The HTML of each page: a layout with the navigation and empty figures, which
//! `assets/dashboard.js` fills from the JSON API of the same page.

/// Pages of the navigation bar: path, label and the `data-page` name that the script reads.
const NAVIGATION: [(&str, &str, &str); 6] = [
    ("/", "Overview", "overview"),
    ("/ab-test", "A/B test", "ab-test"),
    ("/regions", "Regions", "regions"),
    ("/plan", "Plan", "plan"),
    ("/models", "Models", "models"),
    ("/about", "About", "about"),
];

/// Escapes text for HTML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Scripts a page loads, in order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scripts {
    None,
    Charts,
    ChartsAndMap,
}

/// Wraps `content` in the layout. `page` is the `data-page` name, `attributes` more
/// attributes of `<body>`, already escaped.
fn layout(title: &str, page: &str, attributes: &str, scripts: Scripts, content: &str) -> String {
    let mut navigation = String::new();
    for (path, label, name) in NAVIGATION {
        let current = if name == page || (name == "plan" && page == "service") {
            " aria-current=\"page\""
        } else {
            ""
        };
        navigation.push_str(&format!("<a href=\"{path}\"{current}>{label}</a>"));
    }
    let mut script_tags = String::new();
    if scripts != Scripts::None {
        script_tags.push_str("<script src=\"/assets/vendor/echarts.min.js\"></script>\n");
    }
    if scripts == Scripts::ChartsAndMap {
        script_tags.push_str("<script src=\"/assets/vendor/topojson-client.min.js\"></script>\n");
    }
    if scripts != Scripts::None {
        script_tags.push_str("<script src=\"/assets/dashboard.js\"></script>\n");
    }
    let title = escape(title);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · placewise</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/dashboard.css">
</head>
<body data-page="{page}"{attributes}>
<header class="top">
<a class="brand" href="/">placewise</a>
<nav>{navigation}</nav>
</header>
<main>
<h1>{title}</h1>
{content}
</main>
<footer>placewise {version} · read-only view of the database · <a href="/api">JSON API</a> · <a href="/assets/vendor/README.md">third-party licences</a></footer>
{script_tags}</body>
</html>
"#,
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// A figure: a heading, an optional note and an empty chart box with its id.
fn chart(id: &str, heading: &str, note: &str) -> String {
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("<p class=\"note\">{note}</p>")
    };
    format!(
        "<section class=\"card\"><h2>{heading}</h2>{note}<div class=\"chart\" id=\"{id}\" role=\"img\" aria-label=\"{heading}\"></div></section>"
    )
}

/// A table that the script fills, in a box that scrolls sideways on narrow screens.
fn table(id: &str, heading: &str, note: &str) -> String {
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("<p class=\"note\">{note}</p>")
    };
    format!(
        "<section class=\"card wide\"><h2>{heading}</h2>{note}<div class=\"table-scroll\"><table id=\"{id}\"></table></div></section>"
    )
}

pub fn overview() -> String {
    let content = [
        "<div class=\"tiles\" id=\"counts\"></div>".to_string(),
        "<div class=\"grid\">".to_string(),
        chart("memory-tiers", "Services by memory tier", ""),
        chart(
            "critical-share",
            "Latency-critical services",
            "Share of services whose latency counts toward the SLO.",
        ),
        chart(
            "top-services",
            "Top 10 services by traffic",
            "Mean requests per second over the telemetry, all origins together.",
        ),
        chart(
            "traffic-by-hour",
            "Traffic by hour of day",
            "Mean requests per second of the whole fleet at each hour (UTC), per origin region.",
        ),
        "</div>".to_string(),
    ]
    .concat();
    layout("Overview", "overview", "", Scripts::Charts, &content)
}

pub fn ab_test() -> String {
    let content = [
        "<p class=\"lead\" id=\"ab-summary\"></p>".to_string(),
        "<div class=\"tiles\" id=\"ab-cards\"></div>".to_string(),
        "<div class=\"grid\">".to_string(),
        table("ab-comparison", "Metrics of both arms", ""),
        chart("ab-latency", "Average latency", ""),
        chart("ab-cost", "Monthly cost per service", ""),
        chart(
            "ab-histogram",
            "Latency distribution",
            "Requests per latency bin in each arm.",
        ),
        chart(
            "ab-ecdf",
            "Cumulative latency distribution",
            "Share of requests at or below each bin's upper edge.",
        ),
        chart(
            "ab-services-chart",
            "Mean latency per service",
            "Each service under the control and the treatment.",
        ),
        table("ab-services", "Service-level results", ""),
        "</div>".to_string(),
        "<div id=\"ab-document\"></div>".to_string(),
    ]
    .concat();
    layout("A/B test", "ab-test", "", Scripts::Charts, &content)
}

pub fn regions() -> String {
    let content = [
        "<div class=\"grid\">".to_string(),
        chart(
            "rtt-heatmap",
            "Round-trip time between regions",
            "Mean of the stored daily measurements, in ms; rows are the source.",
        ),
        chart(
            "region-map",
            "Regions and prices",
            "Each region at its coordinates; the colour is the m5.large price in USD per hour.",
        ),
        chart(
            "traffic-share",
            "Traffic share per origin region",
            "Share of the fleet's requests that come from each region.",
        ),
        table(
            "rtt-table",
            "RTT statistics per pair",
            "Over the stored days, in ms.",
        ),
        table("region-table", "Regions", ""),
        "</div>".to_string(),
    ]
    .concat();
    layout("Regions", "regions", "", Scripts::ChartsAndMap, &content)
}

pub fn plan() -> String {
    let content = [
        "<div class=\"grid\">".to_string(),
        table(
            "plan-totals",
            "Plans of the latest optimize run",
            "Predicted by the latency model, and measured in the world model.",
        ),
        chart(
            "plan-chart",
            "Plan against the control",
            "Monthly cost and traffic-weighted latency of each plan, predicted.",
        ),
        "</div>".to_string(),
        r#"<section class="card wide"><h2>Services</h2>
<p class="note">Latency is the predicted latency of the service's hosts, weighted by the share of demand routed to each; the control is the random plan of the same run. Click a column to sort, a service to see its routing.</p>
<label class="search">Search <input type="search" id="plan-search" placeholder="service, template or region" autocomplete="off"></label>
<p class="note" id="plan-count"></p>
<div class="table-scroll"><table id="plan-table" class="sortable"></table></div>
</section>"#
            .to_string(),
    ]
    .concat();
    layout("Plan", "plan", "", Scripts::Charts, &content)
}

pub fn service(service_id: i64, service_name: &str) -> String {
    let content = [
        "<p><a href=\"/plan\">← all services</a></p>".to_string(),
        "<div class=\"tiles\" id=\"service-attributes\"></div>".to_string(),
        "<div class=\"grid\">".to_string(),
        table(
            "service-hosts",
            "Hosts",
            "Under the plan and under the control.",
        ),
        chart(
            "service-shares",
            "Routed share per region",
            "Share of the service's demand each region serves.",
        ),
        table(
            "service-routing",
            "Routing",
            "Users of each origin go to the hosting region of lowest mean RTT.",
        ),
        table("service-dependencies", "Dependencies", ""),
        "</div>".to_string(),
    ]
    .concat();
    let attributes = format!(" data-service-id=\"{service_id}\"");
    layout(
        service_name,
        "service",
        &attributes,
        Scripts::Charts,
        &content,
    )
}

pub fn models() -> String {
    let content = [
        "<div class=\"grid\">".to_string(),
        table(
            "model-scores",
            "Latency model on the held-out services",
            "Errors in ms. The mean baseline predicts the training mean; the oracle is the world model's noise-free latency.",
        ),
        chart("model-rmse", "RMSE beside the baseline and the oracle", ""),
        chart(
            "feature-importance",
            "Feature importance",
            "Total gain of the splits on each feature.",
        ),
        chart(
            "predictions",
            "Predicted against observed latency",
            "Held-out rows, in ms; the line is a perfect prediction.",
        ),
        chart(
            "confusion",
            "Strategy classifier: confusion matrix",
            "One region or several, by cross-validation; rows are the optimizer's choice.",
        ),
        table("classifier-metrics", "Strategy classifier", ""),
        "</div>".to_string(),
    ]
    .concat();
    layout("Models", "models", "", Scripts::Charts, &content)
}

pub fn about() -> String {
    let content = r#"<section class="card wide">
<p>placewise recommends where each service should run across cloud regions, and with how many replicas. This dashboard shows what the last run stored in the database: the fleet and its telemetry, the latency model, the placement plan beside its baselines, and the A/B experiment. Every figure is read from the database; nothing is sampled anew.</p>
<p>The pipeline: <code>placewise generate</code> writes a synthetic fleet and its telemetry, <code>placewise train</code> fits the LightGBM latency model, <code>placewise optimize</code> solves the placement plan and trains the strategy classifier, and <code>placewise experiment</code> compares the plan with a random control. <code>placewise run</code> runs them all.</p>
<p>Each figure's data is at a JSON endpoint that <a href="/api">/api</a> lists. The charts use Apache ECharts, and the map outline is Natural Earth data from the world-atlas package, all embedded in the binary; their licences are in <a href="/assets/vendor/README.md">the vendor notes</a>.</p>
</section>"#;
    layout("About", "about", "", Scripts::None, content)
}

/// A page that states an error, such as a missing experiment or an unknown service.
pub fn error(title: &str, message: &str) -> String {
    let content = format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message));
    layout(title, "error", "", Scripts::None, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn service_page_escapes_name() {
        let page = service(3, "<script>alert(1)</script>");
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("data-service-id=\"3\""));
    }

    #[test]
    fn navigation_marks_current_page() {
        let page = regions();
        assert!(page.contains("<a href=\"/regions\" aria-current=\"page\">Regions</a>"));
        assert!(page.contains("<a href=\"/plan\">Plan</a>"));
    }
}
