//! The one place that parses YAML, so a maintained fork of serde_yaml can replace it here alone.
//!
//! Every error names the file, the field path inside it (`users[0].tasks[2].weight`) and what is wrong, without
//! repeating the file's text ([`crate::redact`]).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::redact;

/// A configuration error: which file, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted field path inside the file, empty when the error concerns the whole file.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: impl Into<PathBuf>, field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { file: file.into(), field: field.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and parses one YAML document from a file.
pub fn read_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, "", format!("cannot read file: {e}")))?;
    from_str(&text, path)
}

/// Parses one YAML document; `file` only labels errors.
pub fn from_str<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| ConfigError::new(file, "", redact::parse_error(&e.to_string())))?;
    from_value(value, file)
}

/// Parses every document of a multi-document YAML stream (`---` separated), skipping empty ones.
pub fn documents_from_str<T: DeserializeOwned>(text: &str, file: &Path) -> Result<Vec<T>, ConfigError> {
    let mut out = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let label = format!("document {}", index + 1);
        let value: serde_yaml::Value = serde::Deserialize::deserialize(document)
            .map_err(|e| ConfigError::new(file, label.clone(), redact::parse_error(&e.to_string())))?;
        // An empty document (a trailing `---`) is null: skip it rather than fail.
        if value.is_null() {
            continue;
        }
        let parsed = from_value(value, file).map_err(|mut e| {
            e.field = if e.field.is_empty() { label.clone() } else { format!("{label}: {}", e.field) };
            e
        })?;
        out.push(parsed);
    }
    Ok(out)
}

/// Maps a YAML tree onto `T` through a JSON tree: enums then read as `{variant: value}` maps, the same form
/// the JSON control API takes, and `<<` merge keys are applied first.
fn from_value<T: DeserializeOwned>(mut value: serde_yaml::Value, file: &Path) -> Result<T, ConfigError> {
    value.apply_merge().map_err(|e| ConfigError::new(file, "", e.to_string()))?;
    // JSON has no NaN or infinity: the conversion below would turn them into null, and the error into a baffling
    // "invalid type: null". Name the value and its field instead.
    if let Some((field, written)) = non_finite_number(&value, String::new()) {
        return Err(ConfigError::new(file, field, format!("{written} is not a finite number")));
    }
    let json = serde_json::to_value(&value).map_err(|e| ConfigError::new(file, "", e.to_string()))?;
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ConfigError::new(file, field, redact::parse_error(&e.inner().to_string()))
    })
}

/// The field path of the first NaN or infinite number in `value`, and how YAML writes it (`.nan`, `.inf`, `-.inf`).
fn non_finite_number(value: &serde_yaml::Value, at: String) -> Option<(String, &'static str)> {
    use serde_yaml::Value;
    match value {
        Value::Number(n) => {
            let x = n.as_f64()?;
            match () {
                _ if x.is_nan() => Some((at, ".nan")),
                _ if x == f64::INFINITY => Some((at, ".inf")),
                _ if x == f64::NEG_INFINITY => Some((at, "-.inf")),
                _ => None,
            }
        }
        Value::Sequence(items) => {
            items.iter().enumerate().find_map(|(i, item)| non_finite_number(item, format!("{at}[{i}]")))
        }
        Value::Mapping(map) => map.iter().find_map(|(key, item)| {
            let key = match key {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).map(|s| s.trim_end().to_string()).unwrap_or_default(),
            };
            non_finite_number(item, if at.is_empty() { key } else { format!("{at}.{key}") })
        }),
        Value::Tagged(tagged) => non_finite_number(&tagged.value, at),
        Value::Null | Value::Bool(_) | Value::String(_) => None,
    }
}

/// Writes a value as YAML (for resolved configs the user can read back).
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        items: Vec<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        weight: u32,
    }

    #[test]
    fn errors_name_the_field_path() {
        let err = from_str::<Outer>("items:\n  - weight: 1\n  - weight: -3\n", Path::new("f.yaml")).unwrap_err();
        assert_eq!(err.field, "items[1].weight");
        assert!(err.to_string().starts_with("f.yaml: items[1].weight: "), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = from_str::<Outer>("items:\n  - weigth: 1\n", Path::new("f.yaml")).unwrap_err();
        assert!(err.message.contains("unknown field `weigth`"), "{err}");
    }

    #[test]
    fn enums_read_as_single_key_maps_and_merge_keys_apply() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(rename_all = "snake_case")]
        enum Wait {
            Between([f64; 2]),
        }
        #[derive(Debug, Deserialize)]
        struct Doc {
            wait: Wait,
            merged: std::collections::BTreeMap<String, u32>,
        }
        let doc: Doc =
            from_str("base: &b {x: 1}\nwait: {between: [1, 10]}\nmerged: {<<: *b, y: 2}\n", Path::new("f.yaml"))
                .unwrap();
        assert_eq!(doc.wait, Wait::Between([1.0, 10.0]));
        assert_eq!(doc.merged.get("x"), Some(&1));
    }

    #[test]
    fn errors_do_not_repeat_the_files_text() {
        let text = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";
        let err = from_str::<Outer>(text, Path::new("passwd")).unwrap_err();
        assert!(!err.to_string().contains("root:"), "{err}");
        assert!(err.message.contains("expected struct Outer"), "{err}");
        let err = documents_from_str::<Inner>(text, Path::new("passwd")).unwrap_err();
        assert!(!err.to_string().contains("root:"), "{err}");
    }

    #[test]
    fn nan_and_infinities_are_named_with_their_field() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            items: Vec<std::collections::BTreeMap<String, f64>>,
        }
        for (written, shown) in [(".nan", ".nan"), (".NaN", ".nan"), (".inf", ".inf"), ("-.Inf", "-.inf")] {
            let text = format!("items:\n  - {{a: 1}}\n  - {{a: 2, b: {written}}}\n");
            let err = from_str::<Doc>(&text, Path::new("f.yaml")).unwrap_err();
            assert_eq!(err.to_string(), format!("f.yaml: items[1].b: {shown} is not a finite number"));
        }
        // Merged in by a merge key, or in a later document: still named.
        let err = from_str::<Doc>("items: [{a: 1}, {<<: {a: .nan}}]\n", Path::new("f.yaml")).unwrap_err();
        assert_eq!(err.field, "items[1].a");
        let err = documents_from_str::<Inner>("weight: 1\n---\nweight: .inf\n", Path::new("m.yaml")).unwrap_err();
        assert_eq!(err.to_string(), "m.yaml: document 2: weight: .inf is not a finite number");
    }

    #[test]
    fn multi_document_errors_name_the_document() {
        let err = documents_from_str::<Inner>("weight: 1\n---\nweight: x\n", Path::new("m.yaml")).unwrap_err();
        assert_eq!(err.field, "document 2: weight");
    }
}
