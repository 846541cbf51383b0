//! The files the pages load, embedded in the binary. A request names a file of this table
//! exactly, so no path reaches the file system.

/// One embedded file under `/assets/`.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Path below `/assets/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// Third-party files never change within a build, so browsers may keep them a day.
    pub vendor: bool,
}

macro_rules! asset {
    ($name:literal, $type:literal, $vendor:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $name)),
            vendor: $vendor,
        }
    };
}

/// Every file served under `/assets/`; `assets/vendor/README.md` gives the sources and
/// licences of the vendor files.
pub const ASSETS: &[Asset] = &[
    asset!("dashboard.js", "text/javascript; charset=utf-8", false),
    asset!("dashboard.css", "text/css; charset=utf-8", false),
    asset!(
        "vendor/echarts.min.js",
        "text/javascript; charset=utf-8",
        true
    ),
    asset!(
        "vendor/topojson-client.min.js",
        "text/javascript; charset=utf-8",
        true
    ),
    asset!("vendor/countries-110m.json", "application/json", true),
    asset!("vendor/README.md", "text/plain; charset=utf-8", true),
    asset!("vendor/echarts.LICENSE", "text/plain; charset=utf-8", true),
    asset!("vendor/echarts.NOTICE", "text/plain; charset=utf-8", true),
    asset!(
        "vendor/echarts-d3.LICENSE",
        "text/plain; charset=utf-8",
        true
    ),
    asset!("vendor/zrender.LICENSE", "text/plain; charset=utf-8", true),
    asset!(
        "vendor/topojson-client.LICENSE",
        "text/plain; charset=utf-8",
        true
    ),
    asset!(
        "vendor/world-atlas.LICENSE",
        "text/plain; charset=utf-8",
        true
    ),
];

/// Returns the embedded file of that exact name.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}
