//! What the command line prints: query results as a table, CSV or JSON, and progress bars.

use std::io::IsTerminal;

use anyhow::Result;
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
use serde_json::json;
use tiermesh_federation::query::{QueryResult, Value};

/// Output formats of `tiermesh query`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object: columns, rows, data version. A cell withheld by disclosure control is
    /// the string "suppressed" (in CSV and the table too).
    Json,
}

/// Renders a query result.
pub fn render(
    result: &QueryResult,
    format: Format,
    data_version: u64,
    elapsed: std::time::Duration,
) -> Result<String> {
    match format {
        Format::Table => Ok(format!(
            "{}\n{} rows; {} rows scanned in {:.1} ms; data version {data_version}\n",
            table(result),
            result.rows.len(),
            result.rows_scanned,
            elapsed.as_secs_f64() * 1e3
        )),
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(&result.columns)?;
            for row in &result.rows {
                writer.write_record(row.iter().map(|value| match value {
                    Value::Null => String::new(),
                    other => other.to_string(),
                }))?;
            }
            Ok(String::from_utf8(writer.into_inner()?)?)
        }
        Format::Json => {
            let rows: Vec<Vec<serde_json::Value>> = result
                .rows
                .iter()
                .map(|row| row.iter().map(json_value).collect())
                .collect();
            let document = json!({
                "columns": result.columns,
                "rows": rows,
                "data_version": data_version,
                "rows_scanned": result.rows_scanned,
                "elapsed_ms": elapsed.as_secs_f64() * 1e3,
            });
            Ok(format!("{}\n", serde_json::to_string_pretty(&document)?))
        }
    }
}

/// The rows of a result as a table for people, numbers right-aligned.
pub fn table(result: &QueryResult) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(result.columns.iter());
    for row in &result.rows {
        table.add_row(row.iter().map(|value| {
            let cell = comfy_table::Cell::new(value.to_string());
            if is_number(value) {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    table
}

fn is_number(value: &Value) -> bool {
    matches!(value, Value::Int(_) | Value::Decimal(_) | Value::Float(_))
}

/// A value as JSON: numbers as numbers, money as exact decimal text.
pub fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Int(number) => json!(number),
        // Exact decimal text, so no binary rounding creeps into money.
        Value::Decimal(_) => serde_json::Value::String(value.to_string()),
        Value::Float(number) => json!(number),
        Value::Bool(flag) => json!(flag),
        Value::Text(text) => json!(text),
        // A withheld cell (disclosure control) is the string "suppressed", never null (which
        // means "no input") and never 0, so a consumer cannot mistake it for a value.
        Value::Suppressed => json!("suppressed"),
    }
}

/// A byte-counting progress bar on stderr, hidden unless wanted and stderr is a terminal.
pub fn progress_bar(wanted: bool, total_bytes: u64) -> indicatif::ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total_bytes);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppressed_cells_print_as_the_word_in_every_format() {
        let result = QueryResult {
            columns: vec!["cause".to_string(), "n".to_string()],
            rows: vec![
                vec![Value::Text("illness".to_string()), Value::Suppressed],
                vec![Value::Text("land".to_string()), Value::Int(7)],
            ],
            rows_scanned: 9,
        };
        let elapsed = std::time::Duration::ZERO;
        let csv = render(&result, Format::Csv, 1, elapsed).expect("csv");
        assert_eq!(csv, "cause,n\nillness,suppressed\nland,7\n");
        let json = render(&result, Format::Json, 1, elapsed).expect("json");
        let document: serde_json::Value = serde_json::from_str(&json).expect("json parses");
        assert_eq!(
            document["rows"],
            json!([["illness", "suppressed"], ["land", 7]])
        );
        let table = render(&result, Format::Table, 1, elapsed).expect("table");
        assert!(table.contains("suppressed"), "{table}");
    }
}
