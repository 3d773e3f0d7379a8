//! Writing settings back into the file's text, keeping its comments and layout.

use serde_json::Value as Json;
use toml_edit::{Array, DocumentMut, Item, Table, Value};

/// Sets `section.key = value` in `text` and returns the new text. A value that is already in
/// the file keeps its surrounding whitespace and trailing comment.
pub fn edit(text: &str, edits: &[(&str, &str, &Json)]) -> Result<String, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    for (section, name, value) in edits {
        let table = doc
            .entry(section)
            .or_insert_with(|| Item::Table(Table::new()))
            .as_table_like_mut()
            .ok_or_else(|| format!("`{section}` is not a table"))?;
        let mut new = to_toml(value);
        if let Some(old) = table.get(name).and_then(Item::as_value) {
            *new.decor_mut() = old.decor().clone();
        }
        table.insert(name, Item::Value(new));
    }
    Ok(doc.to_string())
}

fn to_toml(value: &Json) -> Value {
    match value {
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => Value::from(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(items.iter().map(to_toml).collect::<Array>()),
        // The schema has no null or table values; validation refuses them before this.
        Json::Null | Json::Object(_) => Value::from(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn edit_keeps_comments_and_layout() {
        let text = "# top\n[detection]\nconfidence_threshold = 0.5   # 0..1\nenabled = false\n";
        let out = edit(text, &[("detection", "confidence_threshold", &json!(0.75))]).unwrap();
        assert_eq!(
            out,
            "# top\n[detection]\nconfidence_threshold = 0.75   # 0..1\nenabled = false\n"
        );
    }

    #[test]
    fn edit_adds_missing_keys_and_sections() {
        let out = edit(
            "[input]\nfps = 30\n",
            &[
                ("pose", "overlay", &json!(["links"])),
                ("input", "loop", &json!(false)),
            ],
        )
        .unwrap();
        let reparsed = crate::settings::load::parse(&out).unwrap().to_settings();
        assert_eq!(reparsed.pose.overlay, vec!["links"]);
        assert!(!reparsed.input.looping);
        assert_eq!(reparsed.input.fps, 30);
    }

    #[test]
    fn floats_stay_floats() {
        let out = edit("", &[("classification", "output_smoothing", &json!(1.0))]).unwrap();
        assert!(out.contains("output_smoothing = 1.0"), "{out}");
    }
}
