//! Parsing and validating the config file's text, collecting every problem with its line
//! and column rather than stopping at the first.

use super::schema;
use super::values::Values;
use serde_json::Value as Json;
use std::fmt;
use std::ops::Range;
use toml_edit::{Document, Item, Value};

/// One problem in a config file, located in its text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    /// `section.key` when the problem is about one setting.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Parses and validates a whole file: every key known, every value of the right type and
/// in range. Absent keys take their defaults.
pub fn parse(text: &str) -> Result<Values, Vec<Problem>> {
    let doc = Document::parse(text).map_err(|e| {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        vec![problem(text, at, None, e.message().trim().to_owned())]
    })?;
    let mut values = Values::defaults();
    let mut problems = Vec::new();
    for (section, item) in doc.iter() {
        let at = span_start(
            item.span(),
            doc.as_table().key(section).and_then(|k| k.span()),
        );
        let Some(table) = item.as_table_like() else {
            problems.push(problem(
                text,
                at,
                None,
                format!("`{section}` must be a table ([{section}])"),
            ));
            continue;
        };
        if !schema::sections().contains(&section) {
            problems.push(problem(
                text,
                at,
                None,
                format!(
                    "unknown section [{section}]; known: {}",
                    schema::sections().join(", ")
                ),
            ));
            continue;
        }
        for (name, item) in table.iter() {
            let path = format!("{section}.{name}");
            let key_at = span_start(table.key(name).and_then(|k| k.span()), item.span());
            let Some(index) = Values::index(section, name) else {
                problems.push(problem(
                    text,
                    key_at,
                    Some(path.clone()),
                    format!("unknown key `{path}`"),
                ));
                continue;
            };
            let value_at = span_start(item.span(), None).max(key_at);
            let checked = to_json(item).and_then(|json| schema::SCHEMA[index].check(&json));
            match checked {
                Ok(json) => values.set(index, json),
                Err(message) => problems.push(problem(
                    text,
                    value_at,
                    Some(path.clone()),
                    format!("`{path}`: {message}"),
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        problems.sort_by_key(|p| (p.line, p.column));
        Err(problems)
    }
}

fn span_start(first: Option<Range<usize>>, second: Option<Range<usize>>) -> usize {
    first.or(second).map(|s| s.start).unwrap_or(0)
}

fn problem(text: &str, offset: usize, key: Option<String>, message: String) -> Problem {
    let (line, column) = line_column(text, offset);
    Problem {
        line,
        column,
        key,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// A TOML item as JSON; tables and dates are not setting values.
pub fn to_json(item: &Item) -> Result<Json, String> {
    match item {
        Item::Value(value) => value_to_json(value),
        _ => Err("expected a value, found a table".to_owned()),
    }
}

fn value_to_json(value: &Value) -> Result<Json, String> {
    Ok(match value {
        Value::String(s) => Json::from(s.value().as_str()),
        Value::Integer(i) => Json::from(*i.value()),
        Value::Float(f) => serde_json::Number::from_f64(*f.value())
            .map(Json::Number)
            .ok_or("expected a finite number")?,
        Value::Boolean(b) => Json::from(*b.value()),
        Value::Array(items) => {
            Json::Array(items.iter().map(value_to_json).collect::<Result<_, _>>()?)
        }
        Value::Datetime(_) => return Err("expected a setting value, found a date".to_owned()),
        Value::InlineTable(_) => {
            return Err("expected a setting value, found an inline table".to_owned())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Values::defaults());
    }

    #[test]
    fn values_override_defaults() {
        let values = parse("[detection]\nenabled = true\nconfidence_threshold = 0.7\n").unwrap();
        let settings = values.to_settings();
        assert!(settings.detection.model.enabled);
        assert_eq!(settings.detection.confidence_threshold, 0.7);
    }

    #[test]
    fn every_problem_is_reported_with_line_and_column() {
        let text = "[detection]\nconfidence_threshold = 2.0\nbogus = 1\n[pose]\noverlay = [\"wings\"]\n[nope]\n";
        let problems = parse(text).unwrap_err();
        let located: Vec<(usize, usize, Option<&str>)> = problems
            .iter()
            .map(|p| (p.line, p.column, p.key.as_deref()))
            .collect();
        assert_eq!(
            located,
            vec![
                (2, 24, Some("detection.confidence_threshold")),
                (3, 1, Some("detection.bogus")),
                (5, 11, Some("pose.overlay")),
                (6, 1, None),
            ]
        );
        assert!(
            problems[0].message.contains("out of range"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn syntax_error_has_its_position() {
        let problems = parse("[input]\nwidth = = 3\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 2);
    }

    #[test]
    fn wrong_type_names_the_key() {
        let problems = parse("[input]\nfps = \"fast\"\n").unwrap_err();
        assert_eq!(problems[0].key.as_deref(), Some("input.fps"));
        assert!(problems[0].message.contains("expected an integer"));
        assert_eq!(to_json(&toml_edit::value(1.5)).unwrap(), json!(1.5));
    }

    #[test]
    fn shipped_config_sets_every_key_to_its_default() {
        let text = include_str!("../../etc/visiond/visiond.toml");
        assert_eq!(parse(text).unwrap(), Values::defaults());
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        for key in crate::settings::schema::SCHEMA.iter() {
            assert!(
                doc.get(key.section).and_then(|s| s.get(key.name)).is_some(),
                "{} is not in the shipped file",
                key.path()
            );
        }
    }
}
