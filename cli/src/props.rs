//! Java client properties as the command line gives them: `key=value` words (`-X`).

use std::collections::BTreeMap;
use std::fmt;

use crate::Failure;

/// Properties by name; a later setting of a name replaces an earlier one, as in a Java
/// `Properties` object.
pub(crate) type Props = BTreeMap<String, String>;

/// A property that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PropsError {
    /// A command-line word that is not `key=value`.
    NotKeyValue(String),
}

impl fmt::Display for PropsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropsError::NotKeyValue(word) => write!(f, "invalid property {word:?}: expected key=value"),
        }
    }
}

/// Parses `key=value` words where the value may hold `=` (a `-X` value such as
/// `sasl.jaas.config=... password="a=b"`); only the key must be non-empty.
pub(crate) fn parse_setting(word: &str) -> Result<(String, String), PropsError> {
    match word.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(PropsError::NotKeyValue(word.to_string())),
    }
}

/// [`sansa::Config::from_properties`] checked as a client would check it, with a warning for
/// each property sansa does not use (as the Java client logs one).
pub(crate) fn client_config(all: &Props) -> Result<sansa::Config, Failure> {
    let config = sansa::Config::from_properties(all.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| Failure::Usage(e.to_string()))?;
    config.validate().map_err(|e| Failure::Usage(e.to_string()))?;
    for name in &config.unused_properties {
        eprintln!("warning: property {name} is not used by sansa");
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_split_at_the_first_equals_sign() {
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(parse_setting("sasl.jaas.config=x a=\"b\""), Ok(kv("sasl.jaas.config", "x a=\"b\"")));
        assert_eq!(parse_setting("acks="), Ok(kv("acks", "")));
        assert!(parse_setting("=1").is_err());
        assert!(parse_setting("acks").is_err());
    }
}
