//! Rendering of responses: pretty JSON with `--json`, narrow tables otherwise.

use std::io::{self, Write as _};

use anyhow::Result;
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::{Value, json};

/// The output mode chosen by the global `--json` flag.
pub(crate) struct Output {
    json: bool,
}

/// One column of a list table, or one row of a key/value table.
#[derive(Clone, Copy)]
pub(crate) struct Field {
    label: &'static str,
    /// Dotted path into the object, such as `receipt.actor.agent`.
    path: &'static str,
    /// Longest cell in characters; longer values end in `…`.
    max: Option<usize>,
    render: Render,
}

/// How a value turns into a table cell.
#[derive(Clone, Copy)]
pub(crate) enum Render {
    /// Strings as they are, scalars as JSON, arrays of scalars joined with `, `.
    Plain,
    /// The length of an array.
    Count,
    /// An array of Key objects as `kid… (status)`.
    Keys,
    /// Unix milliseconds as an RFC 3339 UTC time.
    UnixMs,
    /// The date part of an RFC 3339 time.
    Date,
    /// A receipt's `actor` object as its agent, else its human.
    Actor,
    /// Compact JSON.
    Json,
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// Prints one object: the JSON itself, or a two-column table of `fields`.
    pub(crate) fn object(&self, value: &Value, fields: &[Field]) -> Result<()> {
        if self.json {
            return print_json(value);
        }
        let mut table = table();
        for field in fields {
            table.add_row(vec![field.label.to_owned(), field.cell(value)]);
        }
        print_stdout(&format!("{table}\n"))
    }

    /// Prints a whole list: a list envelope with `next: null`, or a table with one row per item.
    pub(crate) fn list(&self, items: Vec<Value>, fields: &[Field]) -> Result<()> {
        if self.json {
            return print_json(&json!({ "items": items, "next": null }));
        }
        let mut table = table();
        table.set_header(fields.iter().map(|f| f.label).collect::<Vec<_>>());
        for item in &items {
            table.add_row(fields.iter().map(|f| f.cell(item)).collect::<Vec<_>>());
        }
        print_stdout(&format!("{table}\n"))
    }
}

impl Field {
    pub(crate) const fn new(label: &'static str, path: &'static str) -> Self {
        Self {
            label,
            path,
            max: None,
            render: Render::Plain,
        }
    }

    pub(crate) const fn label(&self) -> &'static str {
        self.label
    }

    /// Truncates the cell to `max` characters.
    pub(crate) const fn max(mut self, max: usize) -> Self {
        self.max = Some(max);
        self
    }

    pub(crate) const fn render(mut self, render: Render) -> Self {
        self.render = render;
        self
    }

    /// The table cell for this field of `value`.
    pub(crate) fn cell(&self, value: &Value) -> String {
        let v = lookup(value, self.path);
        let text = match self.render {
            Render::Plain => plain(v),
            Render::Count => v
                .as_array()
                .map_or_else(|| plain(v), |a| a.len().to_string()),
            Render::Keys => keys(v),
            Render::UnixMs => v.as_i64().map_or_else(|| plain(v), unix_ms_to_rfc3339),
            Render::Actor => {
                let agent = v.get("agent").filter(|a| !a.is_null());
                plain(agent.or_else(|| v.get("human")).unwrap_or(&Value::Null))
            }
            Render::Date => match v.as_str() {
                Some(time) => time.split('T').next().unwrap_or(time).to_owned(),
                None => plain(v),
            },
            Render::Json => match v {
                Value::Null => "-".to_owned(),
                other => other.to_string(),
            },
        };
        let text = sanitize(&text);
        match self.max {
            Some(max) => ellipsize(&text, max),
            None => text,
        }
    }
}

/// Pretty-prints JSON on stdout.
pub(crate) fn print_json(value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    print_stdout(&format!("{text}\n"))
}

/// Prints JSON on one line (for streams).
pub(crate) fn print_json_line(value: &Value) -> Result<()> {
    print_stdout(&format!("{value}\n"))
}

/// Writes to stdout and flushes, reporting a closed pipe as an error instead of panicking.
pub(crate) fn print_stdout(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Cuts `s` to at most `max` characters, the last one being `…` when something was cut.
pub(crate) fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Formats Unix milliseconds as `2026-11-23T10:00:00.123Z`.
pub(crate) fn unix_ms_to_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn table() -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table
}

fn lookup<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .try_fold(value, |v, key| v.get(key))
        .unwrap_or(&Value::Null)
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_owned(),
        Value::Array(a) if a.iter().all(|x| !x.is_array() && !x.is_object()) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn keys(v: &Value) -> String {
    let Some(keys) = v.as_array() else {
        return plain(v);
    };
    if keys.is_empty() {
        return "-".to_owned();
    }
    keys.iter()
        .map(|k| {
            let kid = k.get("kid").and_then(Value::as_str).unwrap_or("?");
            let status = k.get("status").and_then(Value::as_str).unwrap_or("?");
            format!("{} ({status})", ellipsize(kid, 12))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replaces control characters so server-supplied text cannot drive the terminal.
pub(crate) fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipsize_counts_characters() {
        assert_eq!(ellipsize("abcdef", 6), "abcdef");
        assert_eq!(ellipsize("abcdefg", 6), "abcde…");
        assert_eq!(ellipsize("ééééééé", 3), "éé…");
    }

    #[test]
    fn unix_ms_formats_as_rfc3339() {
        assert_eq!(unix_ms_to_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            unix_ms_to_rfc3339(1_795_946_400_123),
            "2026-11-29T10:00:00.123Z"
        );
        assert_eq!(
            unix_ms_to_rfc3339(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(unix_ms_to_rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn cells_render_paths_counts_and_keys() {
        let v = json!({
            "id": "agt_1",
            "actor": {"agent": null},
            "tags": ["a", "b"],
            "keys": [{"kid": "0123456789abcdefghij", "status": "active"}],
            "name": "evil\u{1b}[2J",
        });
        assert_eq!(Field::new("", "id").cell(&v), "agt_1");
        assert_eq!(Field::new("", "actor.agent").cell(&v), "-");
        assert_eq!(Field::new("", "missing.path").cell(&v), "-");
        assert_eq!(Field::new("", "tags").cell(&v), "a, b");
        assert_eq!(Field::new("", "tags").render(Render::Count).cell(&v), "2");
        assert_eq!(
            Field::new("", "keys").render(Render::Keys).cell(&v),
            "0123456789a… (active)"
        );
        assert_eq!(Field::new("", "name").cell(&v), "evil\u{fffd}[2J");
        assert_eq!(Field::new("", "id").max(3).cell(&v), "ag…");
        let actor =
            json!({"a": {"agent": null, "human": "usr_1"}, "b": {"agent": "agt_1", "human": null}});
        assert_eq!(
            Field::new("", "a").render(Render::Actor).cell(&actor),
            "usr_1"
        );
        assert_eq!(
            Field::new("", "b").render(Render::Actor).cell(&actor),
            "agt_1"
        );
        let t = json!({"at": "2026-11-23T10:00:00.123Z"});
        assert_eq!(
            Field::new("", "at").render(Render::Date).cell(&t),
            "2026-11-23"
        );
    }
}
