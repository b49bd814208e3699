//! The SDKs' `nanoserver.json`, read into the keys `config.toml` has: the
//! SDKs' camelCase keys renamed, this server's own kept, the rest (SDK
//! projects carry keys of their own tools) dropped with a note.

use std::path::Path;

use super::{
    ConfigError, LoadNote,
    file::{FileConfig, file_config_keys, key_error},
};

/// The SDKs' `nanoserver.json` keys (camelCase) and the keys of this server
/// they stand for. `domain` and `port` are spelled alike in both.
const SDK_KEYS: &[(&str, &str)] = &[
    ("serverDisplayName", "server_name"),
    ("serverUid", "server_uid"),
    ("serverPackageId", "server_package_id"),
    ("nodesPath", "nodes_path"),
    ("autoWatch", "auto_watch"),
    ("watchDebounceTime", "watch_debounce_time"),
];

/// Reads a `nanoserver.json`: `language` and unknown keys are dropped with a
/// note each in `notes`.
pub(super) fn parse_json(text: &str, file: &Path, notes: &mut Vec<LoadNote>) -> Result<FileConfig, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|err| {
        let message = err.to_string();
        // serde_json appends the position, which the line already gives.
        let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
        ConfigError::Syntax {
            file: file.to_owned(),
            line: err.line(),
            message: message.to_owned(),
        }
    })?;
    let serde_json::Value::Object(entries) = value else {
        return Err(ConfigError::Syntax {
            file: file.to_owned(),
            line: 1,
            message: "expected a JSON object of keys".to_owned(),
        });
    };
    let own_keys = file_config_keys();
    let mut keys = serde_json::Map::new();
    let mut unknown = Vec::new();
    for (key, value) in &entries {
        if let Some((sdk, own)) = SDK_KEYS.iter().find(|(sdk, _)| sdk == key) {
            if entries.contains_key(*own) {
                return Err(ConfigError::Key {
                    file: file.to_owned(),
                    key: (*sdk).to_owned(),
                    message: format!("also given as `{own}`; keep one of the two"),
                });
            }
            keys.insert((*own).to_owned(), value.clone());
        } else if key == "language" {
            // Informational: every library is served by its kind (node.py
            // files by Python workers), whatever the project's language.
        } else if own_keys.contains(&key.as_str()) {
            keys.insert(key.clone(), value.clone());
        } else {
            unknown.push(format!("`{key}`"));
        }
    }
    if !unknown.is_empty() {
        notes.push(LoadNote::Warning(format!(
            "{}: ignoring unknown key(s) {}: neither the SDKs' keys nor nano-server's (see docs/configuration.md)",
            file.display(),
            unknown.join(", ")
        )));
    }
    serde_path_to_error::deserialize(serde_json::Value::Object(keys)).map_err(|err| {
        // Named as the file spells it.
        let path = err.path().to_string();
        let (head, rest) = path
            .split_once('.')
            .map_or((path.as_str(), None), |(h, r)| (h, Some(r)));
        let head = SDK_KEYS
            .iter()
            .find(|(_, own)| *own == head)
            .map_or(head, |(sdk, _)| *sdk);
        let path = rest.map_or_else(|| head.to_owned(), |rest| format!("{head}.{rest}"));
        key_error(file, path, err.inner().to_string())
    })
}
