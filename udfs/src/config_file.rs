//! Rule and model files written as JSON or YAML, read into typed structs with serde. YAML
//! is parsed by yaml-rust2 and handed to serde as the JSON value it denotes.

use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// `bytes` as `T`: YAML when `path` ends in `.yaml` or `.yml`, JSON otherwise.
pub fn parse_json_or_yaml<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        let value = yaml_to_json(text)?;
        serde_json::from_value(value).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

fn yaml_to_json(text: &str) -> Result<Value, String> {
    let documents = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    match documents.as_slice() {
        [document] => json_of(document),
        [] => Err("the file is empty".to_string()),
        _ => Err("the file holds several YAML documents; expected one".to_string()),
    }
}

fn json_of(yaml: &Yaml) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(text) => {
            let number: f64 = text
                .parse()
                .map_err(|_| format!("'{text}' is not a number"))?;
            Value::Number(
                Number::from_f64(number)
                    .ok_or_else(|| format!("'{text}' is not a finite number"))?,
            )
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(json_of).collect::<Result<_, _>>()?),
        Yaml::Hash(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(format!("a mapping key must be a string, not {other:?}")),
                };
                map.insert(key, json_of(value)?);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) => return Err("YAML aliases are not supported".to_string()),
        Yaml::BadValue => return Err("a value YAML cannot read".to_string()),
    })
}
