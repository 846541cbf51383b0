//! Reading a placement from a plan CSV, the format `placewise optimize` writes to
//! `results/plan.csv`: a header line, then one row per service-region placement.
//!
//! The columns `region` and `instances` are required, with `service_id` or
//! `service_name` (or both, which must then agree). Other columns, such as
//! `routed_share`, are ignored. Fields may be double-quoted, with `""` for a quote inside.

use std::path::{Path, PathBuf};

use crate::check::WorldFleet;
use crate::simulate::{Host, Placement};

/// An invalid plan file, with the line and field at fault and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{location}: {problem}\nhint: {hint}", location = self.location())]
pub struct PlanFileError {
    pub path: PathBuf,
    /// Line number from 1, when one line is at fault.
    pub line: Option<usize>,
    pub problem: String,
    pub hint: String,
}

impl PlanFileError {
    fn location(&self) -> String {
        match self.line {
            Some(line) => format!("plan file `{}` line {line}", self.path.display()),
            None => format!("plan file `{}`", self.path.display()),
        }
    }
}

/// Column positions of a plan file's header.
struct Columns {
    service_id: Option<usize>,
    service_name: Option<usize>,
    region: usize,
    instances: usize,
    count: usize,
}

/// Reads the plan file at `path` as a placement of the services of `fleet`.
pub fn read(path: &Path, fleet: &WorldFleet) -> Result<Placement, PlanFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| PlanFileError {
        path: path.to_path_buf(),
        line: None,
        problem: format!("cannot be read: {error}"),
        hint: "pass the path of a plan CSV, such as results/plan.csv".to_string(),
    })?;
    parse(path, &text, fleet)
}

/// Parses the text of a plan file; `path` names it in errors.
pub fn parse(path: &Path, text: &str, fleet: &WorldFleet) -> Result<Placement, PlanFileError> {
    let error = |line: Option<usize>, problem: String, hint: String| PlanFileError {
        path: path.to_path_buf(),
        line,
        problem,
        hint,
    };
    // A byte-order mark is not part of the first column's name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty());
    let Some((header_line, header)) = lines.next() else {
        return Err(error(
            None,
            "is empty".to_string(),
            "write a header line such as `service_id,service_name,region,instances`, then one row per placement".to_string(),
        ));
    };
    let columns = header_columns(&split_fields(header).map_err(|problem| {
        error(
            Some(header_line),
            problem,
            "close every quoted field".to_string(),
        )
    })?)
    .map_err(|(problem, hint)| error(Some(header_line), problem, hint))?;

    let mut hosts: Vec<Vec<(Host, usize)>> = vec![Vec::new(); fleet.specs.len()];
    for (number, line) in lines {
        let fields = split_fields(line).map_err(|problem| {
            error(
                Some(number),
                problem,
                "close every quoted field".to_string(),
            )
        })?;
        if fields.len() != columns.count {
            return Err(error(
                Some(number),
                format!(
                    "has {} fields, but the header has {}",
                    fields.len(),
                    columns.count
                ),
                "give every row the header's columns, in its order".to_string(),
            ));
        }
        let service = service_of(&fields, &columns, fleet)
            .map_err(|(problem, hint)| error(Some(number), problem, hint))?;
        let region_code = fields[columns.region].as_str();
        let Some(region) = fleet.regions.iter().position(|r| r == region_code) else {
            return Err(error(
                Some(number),
                format!("field `region` has `{region_code}`, which is not a region of the fleet"),
                format!("use one of {}", fleet.regions.join(", ")),
            ));
        };
        let instances = parse_instances(&fields[columns.instances]).map_err(|problem| {
            error(
                Some(number),
                problem,
                "write the number of instances in the region as a whole number, 1 or more"
                    .to_string(),
            )
        })?;
        if let Some((_, first)) = hosts[service].iter().find(|(h, _)| h.region == region) {
            return Err(error(
                Some(number),
                format!(
                    "places `{}` in `{region_code}` again (first on line {first})",
                    fleet.names[service]
                ),
                "give each service and region one row, with the total instances".to_string(),
            ));
        }
        hosts[service].push((Host { region, instances }, number));
    }

    if let Some(service) = hosts.iter().position(Vec::is_empty) {
        let missing = hosts.iter().filter(|h| h.is_empty()).count();
        return Err(error(
            None,
            format!(
                "has no row for {missing} service(s) of the database, the first `{}` (id {})",
                fleet.names[service], fleet.service_ids[service]
            ),
            "place every service of the database in at least one region; `placewise optimize` writes a complete plan".to_string(),
        ));
    }
    Ok(Placement {
        hosts: hosts
            .into_iter()
            .map(|mut list| {
                // Region order, as the plans in the database are read, so that the same
                // plan from either source gives the same results.
                list.sort_by_key(|(host, _)| host.region);
                list.into_iter().map(|(host, _)| host).collect()
            })
            .collect(),
    })
}

fn header_columns(names: &[String]) -> Result<Columns, (String, String)> {
    for (k, name) in names.iter().enumerate() {
        if names[..k].contains(name) {
            return Err((
                format!("the header has the column `{name}` twice"),
                "keep one column of each name".to_string(),
            ));
        }
    }
    let find = |name: &str| names.iter().position(|n| n == name);
    let missing = |column: &str| {
        (
            format!(
                "the header has no column `{column}` (found: {})",
                names.join(",")
            ),
            "start the file with a header such as `service_id,service_name,region,instances`"
                .to_string(),
        )
    };
    let service_id = find("service_id");
    let service_name = find("service_name");
    if service_id.is_none() && service_name.is_none() {
        return Err(missing("service_id` or `service_name"));
    }
    Ok(Columns {
        service_id,
        service_name,
        region: find("region").ok_or_else(|| missing("region"))?,
        instances: find("instances").ok_or_else(|| missing("instances"))?,
        count: names.len(),
    })
}

/// Finds the row's service by id or name, checking that the two agree when both are given.
fn service_of(
    fields: &[String],
    columns: &Columns,
    fleet: &WorldFleet,
) -> Result<usize, (String, String)> {
    let list_hint = "list the database's services with `sqlite3 placewise.db \"SELECT service_id, service_name FROM services\"`".to_string();
    let by_id = match columns.service_id {
        Some(column) => {
            let value = &fields[column];
            let id: i64 = value.parse().map_err(|_| {
                (
                    format!("field `service_id` has `{value}`, which is not a whole number"),
                    list_hint.clone(),
                )
            })?;
            let index = fleet.service_ids.binary_search(&id).map_err(|_| {
                (
                    format!(
                        "field `service_id` has `{value}`, which is not a service of the database"
                    ),
                    list_hint.clone(),
                )
            })?;
            Some(index)
        }
        None => None,
    };
    let by_name = match columns.service_name {
        Some(column) => {
            let value = &fields[column];
            let index = fleet.names.iter().position(|n| n == value).ok_or_else(|| {
                (
                    format!("field `service_name` has `{value}`, which is not a service of the database"),
                    list_hint.clone(),
                )
            })?;
            Some(index)
        }
        None => None,
    };
    match (by_id, by_name) {
        (Some(id), Some(name)) if id != name => Err((
            format!(
                "field `service_id` names `{}` but field `service_name` has `{}`",
                fleet.names[id], fleet.names[name]
            ),
            "make the id and the name of each row agree, or drop one of the two columns"
                .to_string(),
        )),
        (Some(index), _) | (None, Some(index)) => Ok(index),
        (None, None) => unreachable!("the header has one of the two columns"),
    }
}

/// Most instances one plan row may hold, far above any region's fleet.
pub const MAX_INSTANCES: u64 = 100_000;

fn parse_instances(value: &str) -> Result<u32, String> {
    let digits = value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty();
    match value.parse::<u64>() {
        Ok(count) if digits && (1..=MAX_INSTANCES).contains(&count) => Ok(count as u32),
        Ok(count) if digits && count > MAX_INSTANCES => Err(format!(
            "field `instances` has `{value}`, more than the {MAX_INSTANCES} instances a row may hold"
        )),
        _ => Err(format!(
            "field `instances` has `{value}`, which is not a whole number of 1 or more"
        )),
    }
}

/// Splits one CSV line into trimmed fields, undoing double quotes.
fn split_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, _) => field.push(c),
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut field).trim().to_string()),
            (false, _) => field.push(c),
        }
    }
    if quoted {
        return Err("has a quoted field that is not closed".to_string());
    }
    fields.push(field.trim().to_string());
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::ServiceSpec;

    fn fleet() -> WorldFleet {
        let spec = ServiceSpec {
            memory_mb: 1024,
            cores: 1.0,
            latency_critical: false,
            base_processing_ms: 10.0,
            cpu_ms_per_request: 2.0,
            call_response_kb: 1.0,
            dependencies: vec![],
        };
        WorldFleet {
            service_ids: vec![0, 1],
            names: vec!["auth-service-1".to_string(), "user-service-2".to_string()],
            specs: vec![spec.clone(), spec],
            regions: vec!["us-east-1".to_string(), "eu-west-1".to_string()],
            rtt_ms: vec![1.0, 80.0, 80.0, 1.0],
            usd_per_hour: vec![0.1, 0.1],
            transfer_usd_per_gb: vec![0.0; 4],
            hours: vec![vec![1.0; 4]],
            peak_rps: vec![1.0; 4],
        }
    }

    fn parse_text(text: &str) -> Result<Placement, PlanFileError> {
        parse(Path::new("plan.csv"), text, &fleet())
    }

    #[test]
    fn optimize_format_is_read() {
        let text = "service_id,service_name,region,instances,routed_share,predicted_latency_ms,monthly_cost_usd\n\
                    0,auth-service-1,eu-west-1,2,0.5,30.0,100.00\n\
                    0,auth-service-1,us-east-1,3,0.5,20.0,100.00\n\
                    1,user-service-2,us-east-1,1,1.0,20.0,50.00\n";
        let placement = parse_text(text).unwrap();
        assert_eq!(
            placement.hosts[0],
            vec![
                Host {
                    region: 0,
                    instances: 3
                },
                Host {
                    region: 1,
                    instances: 2
                }
            ]
        );
        assert_eq!(placement.hosts[1].len(), 1);
    }

    #[test]
    fn names_and_quotes_are_enough() {
        let text = "\"service_name\" , region,instances\r\n\"auth-service-1\",us-east-1,1\r\n\r\nuser-service-2,\"eu-west-1\",4\r\n";
        let placement = parse_text(text).unwrap();
        assert_eq!(placement.hosts[1][0].instances, 4);
        assert_eq!(placement.hosts[1][0].region, 1);
    }

    #[test]
    fn errors_name_line_field_and_value() {
        let header = "service_id,service_name,region,instances\n";
        let cases = [
            ("", None, "is empty"),
            ("service_id,instances\n0,1\n", Some(1), "no column `region`"),
            (
                "region,instances\nus-east-1,1\n",
                Some(1),
                "no column `service_id` or `service_name`",
            ),
            (
                "service_id,region,instances\n7,us-east-1,1\n",
                Some(2),
                "field `service_id` has `7`, which is not a service",
            ),
            (
                "service_id,region,instances\nx,us-east-1,1\n",
                Some(2),
                "field `service_id` has `x`, which is not a whole number",
            ),
            (
                "service_name,region,instances\nnobody,us-east-1,1\n",
                Some(2),
                "field `service_name` has `nobody`",
            ),
            (
                "service_id,service_name,region,instances\n0,user-service-2,us-east-1,1\n",
                Some(2),
                "names `auth-service-1` but field `service_name` has `user-service-2`",
            ),
            (
                "service_id,region,instances\n0,mars-1,1\n",
                Some(2),
                "field `region` has `mars-1`",
            ),
            (
                "service_id,region,instances\n0,us-east-1,0\n",
                Some(2),
                "field `instances` has `0`",
            ),
            (
                "service_id,region,instances\n0,us-east-1,2.5\n",
                Some(2),
                "field `instances` has `2.5`",
            ),
            (
                "service_id,region,instances\n0,us-east-1\n",
                Some(2),
                "has 2 fields, but the header has 3",
            ),
            (
                "service_id,region,instances\n\"0,us-east-1,1\n",
                Some(2),
                "quoted field that is not closed",
            ),
            (
                "service_id,region,instances\n0,us-east-1,1\n0,us-east-1,2\n1,us-east-1,1\n",
                Some(3),
                "again (first on line 2)",
            ),
            (
                "service_id,region,instances\n0,us-east-1,1\n",
                None,
                "no row for 1 service(s) of the database, the first `user-service-2` (id 1)",
            ),
        ];
        for (text, line, expected) in cases {
            let error = parse_text(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.to_string().contains(expected), "{text:?}: {error}");
            assert!(error.to_string().contains("\nhint: "), "{text:?}: {error}");
        }
        let error = parse_text(&format!("{header}0,auth-service-1,mars-1,1\n")).unwrap_err();
        assert!(error.hint.contains("us-east-1, eu-west-1"), "{error}");
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let text = "\u{feff}service_id,region,instances\n0,us-east-1,1\n1,eu-west-1,2\n";
        let placement = parse_text(text).unwrap();
        assert_eq!(placement.hosts[1][0].instances, 2);
    }

    #[test]
    fn repeated_column_and_huge_count_are_rejected() {
        let repeated = "service_id,region,instances,instances\n0,us-east-1,1,5\n1,us-east-1,1,5\n";
        let error = parse_text(repeated).unwrap_err();
        assert!(error.problem.contains("`instances` twice"), "{error}");
        let huge = "service_id,region,instances\n0,us-east-1,4294967295\n1,us-east-1,1\n";
        let error = parse_text(huge).unwrap_err();
        assert!(
            error.problem.contains("more than the 100000 instances"),
            "{error}"
        );
        let signed = "service_id,region,instances\n0,us-east-1,+3\n1,us-east-1,1\n";
        let error = parse_text(signed).unwrap_err();
        assert!(error.problem.contains("not a whole number"), "{error}");
    }
}
