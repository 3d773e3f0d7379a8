//! A complete set of setting values, one per schema key, in schema order.

use super::schema::{self, Key, SCHEMA};
use super::typed::Settings;
use serde_json::{Map, Value as Json};

#[derive(Debug, Clone, PartialEq)]
pub struct Values(Vec<Json>);

impl Values {
    pub fn defaults() -> Self {
        Values(SCHEMA.iter().map(|k| k.default.clone()).collect())
    }

    pub fn index(section: &str, name: &str) -> Option<usize> {
        SCHEMA
            .iter()
            .position(|k| k.section == section && k.name == name)
    }

    pub fn get(&self, index: usize) -> &Json {
        &self.0[index]
    }

    pub fn set(&mut self, index: usize, value: Json) {
        self.0[index] = value;
    }

    /// The keys whose values differ, with their new values.
    pub fn changes<'a>(&self, newer: &'a Values) -> Vec<(&'static Key, &'a Json)> {
        SCHEMA
            .iter()
            .zip(self.0.iter().zip(newer.0.iter()))
            .filter(|(_, (old, new))| old != new)
            .map(|(key, (_, new))| (key, new))
            .collect()
    }

    /// The values as `{section: {key: value}}`, in file order.
    pub fn tree(&self) -> Json {
        let mut root = Map::new();
        for section in schema::sections() {
            root.insert(section.to_owned(), Json::Object(Map::new()));
        }
        for (key, value) in SCHEMA.iter().zip(&self.0) {
            root[key.section]
                .as_object_mut()
                .expect("sections are objects")
                .insert(key.name.to_owned(), value.clone());
        }
        Json::Object(root)
    }

    pub fn to_settings(&self) -> Settings {
        serde_json::from_value(self.tree())
            .expect("validated values always fit the typed settings (see typed.rs test)")
    }
}
