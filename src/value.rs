//! Conversion between Rhai values and JSON, with secrets masked on the way out.

use rhai::{Array, Dynamic, Map};
use serde_json::Value;

use crate::secrets::{self, Secret};

/// Converts a script value to JSON for the journal and reports. Secrets become the mask;
/// values with no JSON form (functions, opaque handles) become their type name.
pub fn to_json(value: &Dynamic) -> Value {
    convert(value, true)
}

/// Converts a script value to JSON for an encrypted artifact: secrets still become the mask,
/// but plain strings are kept exactly (a container's environment must come back as it was,
/// even when one of its values was also seen as a secret).
pub fn to_json_exact(value: &Dynamic) -> Value {
    convert(value, false)
}

fn convert(value: &Dynamic, redact: bool) -> Value {
    if value.is_unit() {
        Value::Null
    } else if let Some(b) = value.clone().try_cast::<bool>() {
        Value::Bool(b)
    } else if let Ok(i) = value.as_int() {
        Value::from(i)
    } else if let Ok(f) = value.as_float() {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    } else if value.is_string() {
        let text = value.clone().into_string().unwrap_or_default();
        Value::String(if redact { secrets::redact(&text) } else { text })
    } else if value.is::<Secret>() {
        Value::String(secrets::MASK.to_string())
    } else if value.is_array() {
        let array = value.read_lock::<Array>().expect("checked is_array");
        Value::Array(array.iter().map(|v| convert(v, redact)).collect())
    } else if value.is_map() {
        let map = value.read_lock::<Map>().expect("checked is_map");
        Value::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), convert(v, redact)))
                .collect(),
        )
    } else if value.is_blob() {
        Value::String(format!(
            "<{} bytes>",
            value.read_lock::<rhai::Blob>().map_or(0, |b| b.len())
        ))
    } else if value.is_char() {
        Value::String(value.as_char().map(String::from).unwrap_or_default())
    } else {
        Value::String(format!("<{}>", value.type_name()))
    }
}

/// Converts JSON (a recorded step result, a file read by a primitive) to a script value.
pub fn from_json(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.clone().into(),
        Value::Array(items) => items.iter().map(from_json).collect::<Array>().into(),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.as_str().into(), from_json(v)))
            .collect::<Map>()
            .into(),
    }
}

/// A short description of a value's kind for error messages ("expected a string, got map").
pub fn kind(value: &Dynamic) -> &'static str {
    if value.is_unit() {
        "nothing"
    } else if value.is_string() {
        "a string"
    } else if value.is_int() {
        "an integer"
    } else if value.is_float() {
        "a number"
    } else if value.is_bool() {
        "a bool"
    } else if value.is_array() {
        "a list"
    } else if value.is_map() {
        "a map"
    } else if value.is::<Secret>() {
        "a secret"
    } else {
        "a value"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_plain_values() {
        let json = serde_json::json!({"a": 1, "b": [true, "x", null], "c": {"d": 2.5}});
        assert_eq!(to_json(&from_json(&json)), json);
    }

    #[test]
    fn secrets_inside_maps_are_masked() {
        let mut map = Map::new();
        map.insert(
            "password".into(),
            Dynamic::from(Secret::new("canary-in-map")),
        );
        assert_eq!(
            to_json(&map.into()),
            serde_json::json!({"password": secrets::MASK})
        );
    }
}
