//! The environment contract, as the real provider reads it: Coder's
//! provisioner passes everything about the build in `CODER_*` variables,
//! so data sources read the process environment, never the network.

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("read {name}: not valid JSON for {what}: {source}")]
    Json {
        name: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The variable's value; unset and not UTF-8 both read as empty, as Go's
/// `os.Getenv` does.
pub fn get(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// The variable's value, or `None` when it is unset (set but empty counts
/// as a value: an empty parameter value is a value).
pub fn lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub fn is_true(name: &str) -> bool {
    get(name) == "true"
}

/// A JSON-valued variable (groups, roles); unset or empty reads as `T`'s
/// default.
pub fn json<T: DeserializeOwned + Default>(name: &str, what: &'static str) -> Result<T, EnvError> {
    let text = get(name);
    if text.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(&text).map_err(|source| EnvError::Json {
        name: name.to_string(),
        what,
        source,
    })
}

/// `CODER_PARAMETER_<lowercase hex sha256 of the name>`: hashing keeps any
/// parameter name usable as a variable name.
pub fn parameter_var(name: &str) -> String {
    format!(
        "CODER_PARAMETER_{}",
        hex::encode(Sha256::digest(name.as_bytes()))
    )
}

/// The value the parameter had in the workspace's previous build.
pub fn previous_parameter_var(name: &str) -> String {
    format!(
        "CODER_PARAMETER_PREVIOUS_{}",
        hex::encode(Sha256::digest(name.as_bytes()))
    )
}

/// Whether terraform runs for a workspace build (the provisioner sets the
/// build id) rather than a template import, where parameters may lack
/// values.
pub fn in_build() -> bool {
    !get("CODER_WORKSPACE_BUILD_ID").is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names_hash_to_lowercase_hex() {
        // As `printf region | sha256sum` prints it.
        let hash = "c697d2981bf416569a16cfbcdec1542b5398f3cc77d2b905819aa99c46ecf6f6";
        assert_eq!(parameter_var("region"), format!("CODER_PARAMETER_{hash}"));
        assert_eq!(
            previous_parameter_var("region"),
            format!("CODER_PARAMETER_PREVIOUS_{hash}")
        );
    }
}
