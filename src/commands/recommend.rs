//! `placewise recommend`: the strategy classifier's prediction for a service that is not in
//! the fleet.

use anyhow::Result;
use rusqlite::OpenFlags;
use serde::Serialize;

use crate::cli::{Cli, RecommendArgs};
use crate::commands::write_stdout;
use crate::optimize::OptimizeError;
use crate::store;
use crate::strategy::{ServiceAttributes, StrategyModel};

#[derive(Debug, Serialize)]
struct Recommendation {
    service: ServiceAttributes,
    multi_region: bool,
    /// The forest's probability that several regions are needed.
    multi_region_probability: f64,
    replicas: usize,
    model_id: i64,
}

pub fn run(cli: &Cli, args: &RecommendArgs) -> Result<()> {
    for (setting, value) in [
        ("memory-mb", args.memory_mb),
        ("cores", args.cores),
        ("rps", args.rps),
    ] {
        if !(value.is_finite() && value > 0.0) {
            return Err(OptimizeError::InvalidSetting {
                setting,
                value: value.to_string(),
                rule: "use a positive number",
            }
            .into());
        }
    }
    let connection = store::open_existing(&cli.db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let row: Option<(i64, String)> = connection
        .query_row(
            "SELECT model_id, model_text FROM models WHERE kind = 'strategy'
             ORDER BY model_id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .ok();
    let Some((model_id, text)) = row else {
        return Err(OptimizeError::MissingModel {
            what: "strategy classifier",
            command: "optimize",
        }
        .into());
    };
    let texts: serde_json::Value = serde_json::from_str(&text)?;
    let (Some(multi), Some(replicas)) =
        (texts["multi_region"].as_str(), texts["replicas"].as_str())
    else {
        return Err(OptimizeError::StaleModel {
            what: "strategy classifier",
            command: "optimize",
        }
        .into());
    };
    let model = StrategyModel::from_text(multi, replicas)?;
    let service = ServiceAttributes {
        memory_mb: args.memory_mb,
        cores: args.cores,
        requests_per_second: args.rps,
        latency_critical: args.critical,
    };
    let (multi_region, probability) = model.predict_multi(&service)?;
    let recommendation = Recommendation {
        service,
        multi_region,
        multi_region_probability: probability,
        replicas: model.predict_replicas(&service)?,
        model_id,
    };
    if args.json {
        let mut text = serde_json::to_string_pretty(&recommendation)?;
        text.push('\n');
        write_stdout(&text)?;
    } else {
        write_stdout(&format!(
            "{}: {} (probability of several regions {:.2}); replicas: {}\n",
            if args.critical {
                "latency-critical service"
            } else {
                "service"
            },
            if multi_region {
                "several regions"
            } else {
                "one region"
            },
            probability,
            recommendation.replicas
        ))?;
    }
    Ok(())
}
