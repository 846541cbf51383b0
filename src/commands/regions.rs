//! `placewise regions`: lists the region catalog, or a selection of it.

use anyhow::Result;
use serde::Serialize;

use crate::catalog::{Catalog, Region, RegionSet};
use crate::cli::RegionsArgs;
use crate::commands::write_stdout;

/// Largest selection for which the table also prints the RTT matrix.
const MAX_MATRIX_REGIONS: usize = 8;

#[derive(Serialize)]
struct RegionEntry<'a> {
    #[serde(flatten)]
    region: &'a Region,
    /// Median RTT in ms to each region of the selection.
    rtt_ms: serde_json::Map<String, serde_json::Value>,
    /// Transfer price in USD per GB to each other region of the selection.
    transfer_usd_per_gb: serde_json::Map<String, serde_json::Value>,
}

pub fn run(args: &RegionsArgs) -> Result<()> {
    let set = Catalog::embedded().select(&args.regions)?;
    if args.json {
        let mut json = serde_json::to_string_pretty(&entries(&set))?;
        json.push('\n');
        write_stdout(&json)?;
    } else {
        write_stdout(&table(&set))?;
    }
    Ok(())
}

fn entries(set: &RegionSet) -> Vec<RegionEntry<'_>> {
    set.regions
        .iter()
        .enumerate()
        .map(|(i, region)| {
            let mut rtt_ms = serde_json::Map::new();
            let mut transfer = serde_json::Map::new();
            for (j, other) in set.regions.iter().enumerate() {
                rtt_ms.insert(other.code.clone(), set.rtt(i, j).into());
                if i != j {
                    transfer.insert(other.code.clone(), set.transfer(i, j).into());
                }
            }
            RegionEntry {
                region,
                rtt_ms,
                transfer_usd_per_gb: transfer,
            }
        })
        .collect()
}

/// Formats the selection as a text table, with the RTT matrix for small selections.
pub fn table(set: &RegionSet) -> String {
    let mut out = format!(
        "{:<15} {:<14} {:<15} {:>8} {:>9} {:>6} {:>9} {:>10}\n",
        "region", "city", "country", "lat", "lon", "utc", "usd/hour", "usd/GB out"
    );
    for region in &set.regions {
        let price = region
            .usd_per_hour
            .map_or_else(|| "-".to_string(), |p| format!("{p:.3}"));
        let internet = region
            .internet_usd_per_gb
            .map_or_else(|| "-".to_string(), |p| format!("{p:.3}"));
        out.push_str(&format!(
            "{:<15} {:<14} {:<15} {:>8.3} {:>9.3} {:>+6.1} {:>9} {:>10}\n",
            region.code,
            region.city,
            region.country,
            region.latitude,
            region.longitude,
            region.utc_offset_hours,
            price,
            internet
        ));
    }
    if set.len() <= MAX_MATRIX_REGIONS {
        out.push_str("\nmedian RTT in ms (row: source, column: target)\n");
        out.push_str(&format!("{:<15}", ""));
        for code in set.codes() {
            out.push_str(&format!(" {code:>14}"));
        }
        out.push('\n');
        for (i, code) in set.codes().iter().enumerate() {
            out.push_str(&format!("{code:<15}"));
            for j in 0..set.len() {
                out.push_str(&format!(" {:>14.1}", set.rtt(i, j)));
            }
            out.push('\n');
        }
    }
    out
}
