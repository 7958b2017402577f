//! Config files for the tests: a fixture (tests/fixtures/*.toml) read into a value, changed
//! by key rather than by text, and written out again as TOML.
//!
//! The fixture is read by the `config` crate, as lakeworker reads it, so what a test
//! changes is what the worker sees. Keys are dotted paths, and an array of tables is
//! entered by an item's `name`: `queue.pollers`, `datasets.users.inline`,
//! `datasets.users.columns.age.max`.

use std::path::Path;

use serde_json::{Map, Value};

use super::root;

/// The tests' own worker config (not the demo's config/local.toml).
pub const WORKER_CONFIG: &str = "tests/fixtures/worker.toml";

/// A parsed config file.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    value: Value,
}

impl ConfigFile {
    /// Reads a TOML file (a path from the crate root).
    pub fn load(path: &str) -> ConfigFile {
        let text = std::fs::read_to_string(root().join(path))
            .unwrap_or_else(|e| panic!("read the config fixture {path}: {e}"));
        ConfigFile::parse(&text)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> ConfigFile {
        let value = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<Value>())
            .unwrap_or_else(|e| panic!("a config fixture that is not TOML: {e}"));
        ConfigFile { value }
    }

    /// The value at `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let mut at = &self.value;
        for part in key.split('.') {
            at = match at {
                Value::Array(items) => items.iter().find(|item| item["name"] == part)?,
                Value::Object(map) => map.get(part)?,
                _ => return None,
            };
        }
        Some(at)
    }

    /// Sets `key` to `value`, making the tables on its way (a named item must exist).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        let (parent, last) = self.parent_mut(key);
        parent.insert(last.to_owned(), value.into());
        self
    }

    /// Removes `key`, returning what it held.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let (parent, last) = self.parent_mut(key);
        parent.remove(last)
    }

    /// Every dataset's table, to change them all.
    pub fn datasets_mut(&mut self) -> impl Iterator<Item = &mut Map<String, Value>> {
        self.value
            .get_mut("datasets")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
    }

    fn parent_mut<'k>(&mut self, key: &'k str) -> (&mut Map<String, Value>, &'k str) {
        let (path, last) = key.rsplit_once('.').unwrap_or(("", key));
        let mut at = &mut self.value;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            at = match at {
                Value::Array(items) => items
                    .iter_mut()
                    .find(|item| item["name"] == part)
                    .unwrap_or_else(|| panic!("{key}: no item named {part:?}")),
                Value::Object(map) => map
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Object(Map::new())),
                other => panic!("{key}: cannot enter {part:?} of {other}"),
            };
        }
        match at {
            Value::Object(map) => (map, last),
            other => panic!("{key}: {other} is not a table"),
        }
    }

    /// The file as TOML text.
    pub fn to_toml(&self) -> String {
        let top = self.value.as_object().expect("a config is a table");
        let mut text = String::new();
        let mut later = String::new();
        for (key, value) in sorted(top) {
            match value {
                Value::Object(table) => {
                    later.push_str(&format!("\n[{}]\n", toml_key(key)));
                    for (k, v) in sorted(table) {
                        later.push_str(&format!("{} = {}\n", toml_key(k), inline(v)));
                    }
                }
                Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                    for item in items {
                        later.push_str(&format!("\n[[{}]]\n", toml_key(key)));
                        for (k, v) in sorted(item.as_object().expect("a table")) {
                            later.push_str(&format!("{} = {}\n", toml_key(k), inline(v)));
                        }
                    }
                }
                other => text.push_str(&format!("{} = {}\n", toml_key(key), inline(other))),
            }
        }
        text + later.trim_start_matches('\n')
    }

    /// Writes the file as TOML to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_toml()).expect("write the config");
    }
}

fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        toml_string(key)
    }
}

/// A TOML basic string: JSON's escapes are TOML's, but for DEL, which TOML wants escaped.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text)
        .expect("a string")
        .replace('\u{7f}', "\\u007F")
}

/// A value in TOML's inline form (tables as `{k = v, ...}`).
fn inline(value: &Value) -> String {
    match value {
        Value::Null => panic!("TOML has no null"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => {
            let text = n.to_string();
            // TOML floats need a fraction or an exponent.
            if text.contains(['.', 'e', 'E']) {
                text
            } else {
                format!("{text}.0")
            }
        }
        Value::Number(n) => n.to_string(),
        Value::String(s) => toml_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(table) => {
            let entries: Vec<String> = sorted(table)
                .into_iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), inline(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}
