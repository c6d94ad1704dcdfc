//! Java client properties as the command line and properties files give them: `key=value`
//! words (`-X`, `--producer-props`) and `java.util.Properties` files (`--producer.config`).

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
    /// A `\uXXXX` escape without four hex digits, on this line of the file.
    BadUnicodeEscape { line: usize },
}

impl fmt::Display for PropsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropsError::NotKeyValue(word) => write!(f, "invalid property {word:?}: expected key=value"),
            PropsError::BadUnicodeEscape { line } => write!(f, "line {line}: malformed \\uXXXX escape"),
        }
    }
}

/// Parses a `key=value` word as Kafka's tools do (`prop.split("=")` must give two pieces): the
/// key and the value are both non-empty and the value holds no further `=`.
pub(crate) fn parse_word(word: &str) -> Result<(String, String), PropsError> {
    match word.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() && !v.contains('=') => Ok((k.to_string(), v.to_string())),
        _ => Err(PropsError::NotKeyValue(word.to_string())),
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

/// The properties of a `--command-config` file (Java's client properties format), if given.
pub(crate) fn command_config(path: Option<&std::path::Path>) -> Result<Vec<(String, String)>, Failure> {
    let Some(path) = path else { return Ok(Vec::new()) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("--command-config {}: {e}", path.display())))?;
    parse_properties(&text).map_err(|e| Failure::Usage(format!("--command-config {}: {e}", path.display())))
}

/// Whitespace as `java.util.Properties` counts it.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// Reads a properties file the way `java.util.Properties::load` does: `#` and `!` comment
/// lines, blank lines, a key ending at the first unescaped `=`, `:` or whitespace, lines
/// continued by a trailing backslash, and `\t \n \r \f \uXXXX` escapes. Values are trimmed
/// (Kafka trims every value it parses, so trailing blanks would only mislead). Entries come
/// back in file order; a repeated key is given again.
pub(crate) fn parse_properties(text: &str) -> Result<Vec<(String, String)>, PropsError> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((number, first)) = lines.next() {
        let first = first.trim_start_matches(is_blank);
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes escapes the newline.
        let mut logical = String::new();
        let mut part = first;
        loop {
            let trailing = part.len() - part.trim_end_matches('\\').len();
            if trailing % 2 == 1 {
                logical.push_str(&part[..part.len() - 1]);
                match lines.next() {
                    Some((_, next)) => part = next.trim_start_matches(is_blank),
                    None => break,
                }
            } else {
                logical.push_str(part);
                break;
            }
        }
        let (key, rest) = split_key(&logical);
        out.push((unescape(key, number)?, unescape(rest, number)?.trim().to_string()));
    }
    Ok(out)
}

/// Splits a logical line into its raw key and raw value: the key ends at the first unescaped
/// separator; blanks around it and one `=` or `:` are skipped.
fn split_key(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut end = line.len();
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || is_blank(c) {
            end = i;
            break;
        }
    }
    let key = &line[..end];
    let mut rest = line[end..].trim_start_matches(is_blank);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches(is_blank);
    }
    (key, rest)
}

fn unescape(s: &str, line: usize) -> Result<String, PropsError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = (hex.len() == 4).then(|| u32::from_str_radix(&hex, 16).ok()).flatten();
                // A lone surrogate cannot be a Rust char; it is as malformed here as bad hex.
                match code.and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => return Err(PropsError::BadUnicodeEscape { line }),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse_properties(text).unwrap()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn files_read_like_java_properties() {
        let text = "# a comment\n! another\n\n   \nacks=all\n  linger.ms = 5  \ncompression.type:lz4\n\
                    batch.size 65536\nclient.id\n";
        assert_eq!(
            pairs(text),
            vec![
                kv("acks", "all"),
                kv("linger.ms", "5"),
                kv("compression.type", "lz4"),
                kv("batch.size", "65536"),
                kv("client.id", ""),
            ]
        );
    }

    #[test]
    fn continuations_and_escapes() {
        let text = "bootstrap.servers=a:1,\\\n    b:2\nkey\\=with\\:seps=v\\tx\nuni=\\u0041\\\\\nodd=x\\\\\nnext=1\r\n";
        assert_eq!(
            pairs(text),
            vec![
                kv("bootstrap.servers", "a:1,b:2"),
                kv("key=with:seps", "v\tx"),
                kv("uni", "A\\"),
                kv("odd", "x\\"),
                kv("next", "1")
            ]
        );
        assert_eq!(parse_properties("a=\\u12"), Err(PropsError::BadUnicodeEscape { line: 1 }));
        assert_eq!(parse_properties("# c\nb=\\uD800"), Err(PropsError::BadUnicodeEscape { line: 2 }));
    }

    #[test]
    fn repeated_keys_come_back_in_order() {
        assert_eq!(pairs("a=1\na=2"), vec![kv("a", "1"), kv("a", "2")]);
        // A comment sign inside a line is part of the value.
        assert_eq!(pairs("a=1 # not a comment"), vec![kv("a", "1 # not a comment")]);
    }

    #[test]
    fn words_split_like_kafka_tools() {
        assert_eq!(parse_word("acks=1"), Ok(kv("acks", "1")));
        for bad in ["acks", "acks=", "=1", "a=b=c", ""] {
            assert_eq!(parse_word(bad), Err(PropsError::NotKeyValue(bad.to_string())), "{bad}");
        }
        assert_eq!(parse_setting("sasl.jaas.config=x a=\"b\""), Ok(kv("sasl.jaas.config", "x a=\"b\"")));
        assert_eq!(parse_setting("acks="), Ok(kv("acks", "")));
        assert!(parse_setting("=1").is_err());
        assert!(parse_setting("acks").is_err());
    }
}
