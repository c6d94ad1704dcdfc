//! Java's `sasl.jaas.config` syntax, as Kafka's clients accept it:
//! `<login module class> <flag> key=value key2="quoted value";`.

use std::collections::BTreeMap;

/// One parsed login module entry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct JaasEntry {
    pub module: String,
    pub options: BTreeMap<String, String>,
}

// Options hold passwords: never print their values.
impl std::fmt::Debug for JaasEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JaasEntry").field("module", &self.module).field("options", &self.options.keys()).finish()
    }
}

/// Why a `sasl.jaas.config` value did not parse; never quotes the value (it holds secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JaasError(pub &'static str);

/// Parses exactly one login module entry, as Kafka's clients require.
pub(crate) fn parse(text: &str) -> Result<JaasEntry, JaasError> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let module = p.word().ok_or(JaasError("expected a login module class name"))?;
    let flag = p.word().ok_or(JaasError("expected a control flag (required, optional, ...)"))?;
    if !["required", "requisite", "sufficient", "optional"].contains(&flag.to_ascii_lowercase().as_str()) {
        return Err(JaasError("unknown control flag (required, requisite, sufficient or optional)"));
    }
    let mut options = BTreeMap::new();
    loop {
        p.skip_ws();
        match p.peek() {
            Some(b';') => {
                p.i += 1;
                break;
            }
            None => return Err(JaasError("missing ';' at the end of the login module entry")),
            _ => {}
        }
        let key = p.word().ok_or(JaasError("expected an option name"))?;
        p.skip_ws();
        if p.peek() != Some(b'=') {
            return Err(JaasError("expected '=' after an option name"));
        }
        p.i += 1;
        p.skip_ws();
        let value = if p.peek() == Some(b'"') { p.quoted()? } else { p.word().ok_or(JaasError("expected a value"))? };
        options.insert(key, value);
    }
    p.skip_ws();
    if p.peek().is_some() {
        return Err(JaasError("more than one login module entry"));
    }
    Ok(JaasEntry { module, options })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    /// An unquoted token: anything up to whitespace, `=`, `;` or a quote.
    fn word(&mut self) -> Option<String> {
        self.skip_ws();
        let start = self.i;
        while self.peek().is_some_and(|c| !c.is_ascii_whitespace() && !matches!(c, b'=' | b';' | b'"')) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// A double-quoted value; `\` escapes the next character, as in Java's parser.
    fn quoted(&mut self) -> Result<String, JaasError> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(JaasError("unterminated quoted value")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.i += 1;
                    out.push(self.peek().ok_or(JaasError("unterminated quoted value"))?);
                    self.i += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_java_syntax() {
        let e = parse(
            "org.apache.kafka.common.security.scram.ScramLoginModule required\n  username=\"alice\" password=\"p a\\\"ss\" tokenauth=false;",
        )
        .unwrap();
        assert_eq!(e.module, "org.apache.kafka.common.security.scram.ScramLoginModule");
        assert_eq!(e.options["username"], "alice");
        assert_eq!(e.options["password"], "p a\"ss");
        assert_eq!(e.options["tokenauth"], "false");
        assert!(!format!("{e:?}").contains("p a"));
        for bad in ["", "M", "M required", "M required a=\"b\"", "M maybe;", "M required a;", "M required; N required;"]
        {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
