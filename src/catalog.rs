//! The region catalog compiled into the binary, and the selections of it that a run uses.
//!
//! The data files live in `data/` with their sources stated in `data/README.md`: 32 AWS
//! regions with city and coordinates, the median RTT matrix between them, the hourly price
//! of an m5.large instance (22 regions) and the data-transfer price per GB. They are parsed
//! once, on first use, and checked by the tests so that a bad edit fails the build's tests
//! rather than a user's run.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;

const REGIONS_CSV: &str = include_str!("../data/aws-regions.csv");
const RTT_JSON: &str = include_str!("../data/aws-rtt-p50-ms.json");
const M5_PRICE_CSV: &str = include_str!("../data/aws-m5-large-usd-per-hour.csv");
const TRANSFER_CSV: &str = include_str!("../data/aws-transfer-usd-per-gb.csv");
const UTC_OFFSET_CSV: &str = include_str!("../data/region-utc-offsets.csv");

/// The five regions of the original study, in its order.
pub const DEFAULT_REGIONS: [&str; 5] = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "ap-southeast-1",
    "ap-northeast-1",
];

/// vCPUs of the m5.large instance whose price the catalog carries.
pub const PRICED_INSTANCE_VCPUS: f64 = 2.0;

/// Memory of the m5.large instance whose price the catalog carries, in MiB.
pub const PRICED_INSTANCE_MEMORY_MB: f64 = 8192.0;

/// Errors in choosing regions from the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown region `{code}`\nhint: valid regions are {valid}")]
    UnknownRegion { code: String, valid: String },
    #[error("`{name}` names a whole selection and cannot be combined with region codes\nhint: pass `{name}` alone, or list the codes")]
    NamedSelectionInList { name: String },
    #[error("region `{code}` is listed twice in the selection")]
    DuplicateRegion { code: String },
    #[error("the region selection is empty\nhint: pass a comma list such as `us-east-1,eu-west-1`, or `all-priced`")]
    EmptySelection,
    #[error("region(s) {codes} have no instance price, so no cost can be planned for them\nhint: choose among the priced regions ({priced}) or pass `--regions all-priced`")]
    Unpriced { codes: String, priced: String },
}

/// One region of the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Region {
    /// AWS region code, such as `eu-west-1`.
    pub code: String,
    pub city: String,
    pub country: String,
    /// Latitude of the city in degrees.
    pub latitude: f64,
    /// Longitude of the city in degrees.
    pub longitude: f64,
    /// Standard-time UTC offset of the city in hours (daylight saving time ignored).
    pub utc_offset_hours: f64,
    /// On-demand price of one m5.large instance in USD per hour, where the catalog has one.
    pub usd_per_hour: Option<f64>,
    /// Data-transfer price from this region to the internet in USD per GB, where known.
    pub internet_usd_per_gb: Option<f64>,
}

/// The whole embedded catalog.
#[derive(Debug)]
pub struct Catalog {
    regions: Vec<Region>,
    /// Median RTT in ms, `rtt_ms[i][j]` from region `i` to region `j`.
    rtt_ms: Vec<Vec<f64>>,
    /// Transfer price in USD per GB between two distinct regions, where listed.
    transfer_usd_per_gb: HashMap<(usize, usize), f64>,
}

/// A selection of regions, indexed `0..len()` in the order chosen, with the matrices
/// restricted to it. Every later stage works on one of these.
#[derive(Debug, Clone)]
pub struct RegionSet {
    pub regions: Vec<Region>,
    /// Median RTT in ms, row-major `len() x len()`, source row, target column.
    pub rtt_ms: Vec<f64>,
    /// Transfer price in USD per GB, row-major, zero on the diagonal.
    pub transfer_usd_per_gb: Vec<f64>,
}

impl Catalog {
    /// Returns the catalog compiled into the binary.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            parse_catalog().unwrap_or_else(|message| {
                panic!("the embedded region catalog is invalid: {message}")
            })
        })
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Returns the index of a region code.
    pub fn index_of(&self, code: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.code == code)
    }

    /// Median RTT in ms from region `from` to region `to` (catalog indices).
    pub fn rtt_ms(&self, from: usize, to: usize) -> f64 {
        self.rtt_ms[from][to]
    }

    /// Codes of the regions that have an instance price, in catalog order.
    pub fn priced_codes(&self) -> Vec<&str> {
        self.regions
            .iter()
            .filter(|r| r.usd_per_hour.is_some())
            .map(|r| r.code.as_str())
            .collect()
    }

    /// Parses a selection: `default`, `all`, `all-priced` or a comma list of codes.
    pub fn select(&self, spec: &str) -> Result<RegionSet, CatalogError> {
        let codes: Vec<String> = match spec.trim() {
            "default" => DEFAULT_REGIONS.iter().map(|c| c.to_string()).collect(),
            "all" => self.regions.iter().map(|r| r.code.clone()).collect(),
            "all-priced" => self.priced_codes().iter().map(|c| c.to_string()).collect(),
            list => list
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect(),
        };
        self.select_codes(&codes)
    }

    /// Builds a selection from region codes, in the order given.
    pub fn select_codes(&self, codes: &[String]) -> Result<RegionSet, CatalogError> {
        if codes.is_empty() {
            return Err(CatalogError::EmptySelection);
        }
        let mut indices = Vec::with_capacity(codes.len());
        for code in codes {
            let index = self.index_of(code).ok_or_else(|| {
                if ["default", "all", "all-priced"].contains(&code.as_str()) {
                    CatalogError::NamedSelectionInList { name: code.clone() }
                } else {
                    CatalogError::UnknownRegion {
                        code: code.clone(),
                        valid: self.codes_joined(),
                    }
                }
            })?;
            if indices.contains(&index) {
                return Err(CatalogError::DuplicateRegion { code: code.clone() });
            }
            indices.push(index);
        }
        Ok(self.subset(&indices))
    }

    fn codes_joined(&self) -> String {
        let codes: Vec<&str> = self.regions.iter().map(|r| r.code.as_str()).collect();
        codes.join(", ")
    }

    fn subset(&self, indices: &[usize]) -> RegionSet {
        let n = indices.len();
        let mut rtt_ms = Vec::with_capacity(n * n);
        let mut transfer = Vec::with_capacity(n * n);
        for &i in indices {
            for &j in indices {
                rtt_ms.push(self.rtt_ms[i][j]);
                transfer.push(if i == j {
                    0.0
                } else {
                    self.transfer_price(i, j)
                });
            }
        }
        RegionSet {
            regions: indices.iter().map(|&i| self.regions[i].clone()).collect(),
            rtt_ms,
            transfer_usd_per_gb: transfer,
        }
    }

    /// Returns the transfer price between two distinct regions. A pair missing from the
    /// source file takes the highest inter-region price listed for the source region. A
    /// region with no listed price takes the highest price in the file, so that a gap in
    /// the data never makes a transfer look free.
    fn transfer_price(&self, from: usize, to: usize) -> f64 {
        if let Some(&price) = self.transfer_usd_per_gb.get(&(from, to)) {
            return price;
        }
        let from_source = self
            .transfer_usd_per_gb
            .iter()
            .filter(|((src, _), _)| *src == from)
            .map(|(_, &p)| p)
            .fold(f64::NAN, f64::max);
        if from_source.is_finite() {
            return from_source;
        }
        self.transfer_usd_per_gb
            .values()
            .copied()
            .fold(0.0, f64::max)
    }
}

impl RegionSet {
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Median RTT in ms from `from` to `to` (selection indices).
    pub fn rtt(&self, from: usize, to: usize) -> f64 {
        self.rtt_ms[from * self.len() + to]
    }

    /// Transfer price in USD per GB from `from` to `to` (selection indices).
    pub fn transfer(&self, from: usize, to: usize) -> f64 {
        self.transfer_usd_per_gb[from * self.len() + to]
    }

    pub fn codes(&self) -> Vec<&str> {
        self.regions.iter().map(|r| r.code.as_str()).collect()
    }

    /// Returns the index of a region code within the selection.
    pub fn index_of(&self, code: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.code == code)
    }

    /// Returns the m5.large price of every region, or an error naming the regions that have
    /// none. Every computation of cost goes through here.
    pub fn instance_prices(&self) -> Result<Vec<f64>, CatalogError> {
        let unpriced: Vec<&str> = self
            .regions
            .iter()
            .filter(|r| r.usd_per_hour.is_none())
            .map(|r| r.code.as_str())
            .collect();
        if !unpriced.is_empty() {
            return Err(CatalogError::Unpriced {
                codes: unpriced.join(", "),
                priced: Catalog::embedded().priced_codes().join(", "),
            });
        }
        Ok(self.regions.iter().filter_map(|r| r.usd_per_hour).collect())
    }
}

fn parse_catalog() -> Result<Catalog, String> {
    let mut regions = parse_regions()?;
    let index: HashMap<String, usize> = regions
        .iter()
        .enumerate()
        .map(|(i, r)| (r.code.clone(), i))
        .collect();

    for (line, fields) in csv_rows("region-utc-offsets.csv", UTC_OFFSET_CSV, 3)? {
        let i = lookup(&index, "region-utc-offsets.csv", line, fields[0])?;
        regions[i].utc_offset_hours = parse_number("region-utc-offsets.csv", line, fields[2])?;
    }
    for (line, fields) in csv_rows("aws-m5-large-usd-per-hour.csv", M5_PRICE_CSV, 2)? {
        let i = lookup(&index, "aws-m5-large-usd-per-hour.csv", line, fields[0])?;
        regions[i].usd_per_hour = Some(parse_number(
            "aws-m5-large-usd-per-hour.csv",
            line,
            fields[1],
        )?);
    }

    let mut transfer_usd_per_gb = HashMap::new();
    for (line, fields) in csv_rows("aws-transfer-usd-per-gb.csv", TRANSFER_CSV, 3)? {
        // The source lists regions this catalog lacks (GovCloud): skip them.
        let Some(&src) = index.get(fields[0]) else {
            continue;
        };
        let price = parse_number("aws-transfer-usd-per-gb.csv", line, fields[2])?;
        if fields[1] == "internet" {
            regions[src].internet_usd_per_gb = Some(price);
        } else if let Some(&dst) = index.get(fields[1]) {
            transfer_usd_per_gb.insert((src, dst), price);
        }
    }

    let rtt_ms = parse_rtt(&regions)?;
    Ok(Catalog {
        regions,
        rtt_ms,
        transfer_usd_per_gb,
    })
}

fn parse_regions() -> Result<Vec<Region>, String> {
    csv_rows("aws-regions.csv", REGIONS_CSV, 5)?
        .into_iter()
        .map(|(line, f)| {
            Ok(Region {
                code: f[0].to_string(),
                city: f[1].to_string(),
                country: f[2].to_string(),
                latitude: parse_number("aws-regions.csv", line, f[3])?,
                longitude: parse_number("aws-regions.csv", line, f[4])?,
                utc_offset_hours: f64::NAN,
                usd_per_hour: None,
                internet_usd_per_gb: None,
            })
        })
        .collect()
}

fn parse_rtt(regions: &[Region]) -> Result<Vec<Vec<f64>>, String> {
    let json: serde_json::Value =
        serde_json::from_str(RTT_JSON).map_err(|e| format!("aws-rtt-p50-ms.json: {e}"))?;
    let data = json
        .get("data")
        .ok_or("aws-rtt-p50-ms.json: missing `data`")?;
    let mut matrix = vec![vec![f64::NAN; regions.len()]; regions.len()];
    for (i, from) in regions.iter().enumerate() {
        for (j, to) in regions.iter().enumerate() {
            let value = data
                .get(&from.code)
                .and_then(|row| row.get(&to.code))
                .and_then(|v| v.as_f64())
                .ok_or_else(|| {
                    format!(
                        "aws-rtt-p50-ms.json: no RTT from {} to {}",
                        from.code, to.code
                    )
                })?;
            matrix[i][j] = value;
        }
    }
    for region in regions {
        if !region.utc_offset_hours.is_finite() {
            return Err(format!(
                "region-utc-offsets.csv: no row for {}",
                region.code
            ));
        }
    }
    Ok(matrix)
}

/// Splits a header-led CSV without quoting into rows of `width` fields, with 1-based line
/// numbers. The catalog files contain no quoted fields, so no CSV crate is needed.
fn csv_rows<'a>(
    file: &str,
    text: &'a str,
    width: usize,
) -> Result<Vec<(usize, Vec<&'a str>)>, String> {
    let mut rows = Vec::new();
    for (number, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != width {
            return Err(format!(
                "{file} line {}: expected {width} fields, found {}",
                number + 1,
                fields.len()
            ));
        }
        rows.push((number + 1, fields));
    }
    Ok(rows)
}

fn parse_number(file: &str, line: usize, text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{file} line {line}: `{text}` is not a number"))
}

fn lookup(
    index: &HashMap<String, usize>,
    file: &str,
    line: usize,
    code: &str,
) -> Result<usize, String> {
    index
        .get(code)
        .copied()
        .ok_or_else(|| format!("{file} line {line}: region `{code}` is not in aws-regions.csv"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_has_32_regions_and_22_prices() {
        let catalog = Catalog::embedded();
        assert_eq!(catalog.regions().len(), 32);
        assert_eq!(catalog.priced_codes().len(), 22);
    }

    #[test]
    fn rtt_matrix_is_positive_and_nearly_symmetric() {
        let catalog = Catalog::embedded();
        let n = catalog.regions().len();
        for i in 0..n {
            for j in 0..n {
                let forward = catalog.rtt_ms(i, j);
                assert!(forward > 0.0, "rtt {i}->{j} is {forward}");
                let backward = catalog.rtt_ms(j, i);
                assert!((forward - backward).abs() < 0.15 * forward.max(backward) + 5.0);
            }
            // A region reaches itself faster than any other region.
            let own = catalog.rtt_ms(i, i);
            assert!((0..n)
                .filter(|&j| j != i)
                .all(|j| catalog.rtt_ms(i, j) > own));
        }
    }

    #[test]
    fn default_selection_keeps_study_order() {
        let set = Catalog::embedded().select("default").unwrap();
        assert_eq!(set.codes(), DEFAULT_REGIONS.to_vec());
        let us_east = 0;
        let eu_west = 2;
        assert_eq!(
            set.rtt(us_east, eu_west),
            Catalog::embedded().rtt_ms(28, 20)
        );
        assert_eq!(set.transfer(us_east, us_east), 0.0);
        assert_eq!(set.transfer(us_east, eu_west), 0.02);
        assert_eq!(set.instance_prices().unwrap()[0], 0.096);
    }

    #[test]
    fn unknown_region_lists_valid_codes() {
        let error = Catalog::embedded().select("us-east-1,mars-1").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`mars-1`"), "{message}");
        assert!(message.contains("eu-west-1"), "{message}");
    }

    #[test]
    fn duplicate_and_empty_selections_are_rejected() {
        let catalog = Catalog::embedded();
        assert!(matches!(
            catalog.select("us-east-1,us-east-1"),
            Err(CatalogError::DuplicateRegion { .. })
        ));
        assert!(matches!(
            catalog.select(" , "),
            Err(CatalogError::EmptySelection)
        ));
    }

    #[test]
    fn unpriced_region_is_rejected_for_cost() {
        let set = Catalog::embedded().select("us-east-1,sa-east-1").unwrap();
        let message = set.instance_prices().unwrap_err().to_string();
        assert!(
            message.starts_with("region(s) sa-east-1 have no instance price"),
            "{message}"
        );
        assert!(
            message.contains("hint: choose among the priced regions"),
            "{message}"
        );
    }

    #[test]
    fn missing_transfer_pair_takes_source_maximum() {
        let set = Catalog::embedded()
            .select("ap-southeast-3,ap-northeast-3")
            .unwrap();
        assert!(set.transfer(0, 1) > 0.0);
        let all = Catalog::embedded().select("all-priced").unwrap();
        let from = all.index_of("ap-southeast-3").unwrap();
        let highest = (0..all.len())
            .map(|j| all.transfer(from, j))
            .fold(0.0, f64::max);
        assert_eq!(set.transfer(0, 1), highest);
    }
}
