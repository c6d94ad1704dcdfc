//! Reading Apache Kafka's JSON message specs into a small typed model.

use std::collections::BTreeMap;

use serde_json::Value;

/// An inclusive version range; empty when `lo > hi`. `N+` reaches `i16::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub lo: i16,
    pub hi: i16,
}

impl Versions {
    pub const NONE: Versions = Versions { lo: 1, hi: 0 };

    pub fn parse(s: &str) -> Result<Versions, String> {
        let s = s.trim();
        if s == "none" {
            return Ok(Versions::NONE);
        }
        let num = |t: &str| t.trim().parse::<i16>().map_err(|e| format!("bad version {s:?}: {e}"));
        if let Some(lo) = s.strip_suffix('+') {
            return Ok(Versions { lo: num(lo)?, hi: i16::MAX });
        }
        if let Some((lo, hi)) = s.split_once('-') {
            return Ok(Versions { lo: num(lo)?, hi: num(hi)? });
        }
        let v = num(s)?;
        Ok(Versions { lo: v, hi: v })
    }

    pub fn is_empty(self) -> bool {
        self.lo > self.hi
    }

    pub fn intersect(self, o: Versions) -> Versions {
        let r = Versions { lo: self.lo.max(o.lo), hi: self.hi.min(o.hi) };
        if r.is_empty() {
            Versions::NONE
        } else {
            r
        }
    }

    /// Whether `self` covers every version of `within`.
    pub fn covers(self, within: Versions) -> bool {
        within.is_empty() || (self.lo <= within.lo && self.hi >= within.hi)
    }

    pub fn describe(self) -> String {
        if self.is_empty() {
            "none".into()
        } else if self.hi == i16::MAX {
            format!("{}+", self.lo)
        } else if self.lo == self.hi {
            format!("{}", self.lo)
        } else {
            format!("{}-{}", self.lo, self.hi)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
    Header,
    Data,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    Uint16,
    Uint32,
    Float64,
    Uuid,
    String,
    Bytes,
    Records,
    Array(Box<Type>),
    Struct(String),
}

impl Type {
    fn parse(s: &str) -> Type {
        if let Some(inner) = s.strip_prefix("[]") {
            return Type::Array(Box::new(Type::parse(inner)));
        }
        match s {
            "bool" => Type::Bool,
            "int8" => Type::Int8,
            "int16" => Type::Int16,
            "int32" => Type::Int32,
            "int64" => Type::Int64,
            "uint16" => Type::Uint16,
            "uint32" => Type::Uint32,
            "float64" => Type::Float64,
            "uuid" => Type::Uuid,
            "string" => Type::String,
            "bytes" => Type::Bytes,
            "records" => Type::Records,
            other => Type::Struct(other.to_string()),
        }
    }

    pub fn spec_name(&self) -> String {
        match self {
            Type::Bool => "bool".into(),
            Type::Int8 => "int8".into(),
            Type::Int16 => "int16".into(),
            Type::Int32 => "int32".into(),
            Type::Int64 => "int64".into(),
            Type::Uint16 => "uint16".into(),
            Type::Uint32 => "uint32".into(),
            Type::Float64 => "float64".into(),
            Type::Uuid => "uuid".into(),
            Type::String => "string".into(),
            Type::Bytes => "bytes".into(),
            Type::Records => "records".into(),
            Type::Array(t) => format!("[]{}", t.spec_name()),
            Type::Struct(n) => n.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: Type,
    pub versions: Versions,
    pub nullable: Versions,
    pub tagged: Versions,
    pub tag: Option<u32>,
    pub ignorable: bool,
    pub default: Option<Value>,
    pub entity: Option<String>,
    /// Field-level override of the compact encoding (only `RequestHeader.ClientId` uses it).
    pub flexible_override: Option<Versions>,
}

#[derive(Debug, Clone)]
pub struct Struct {
    pub name: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub kind: Kind,
    pub api_key: Option<i16>,
    pub valid: Versions,
    pub flexible: Versions,
    pub latest_unstable: bool,
    pub fields: Vec<Field>,
    /// Every named struct in the file (inline and common), in order of first appearance.
    pub structs: BTreeMap<String, Struct>,
    pub struct_order: Vec<String>,
}

/// Removes `//` comments that are outside string literals.
pub fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let mut in_str = false;
        let mut escaped = false;
        let bytes = line.as_bytes();
        let mut end = bytes.len();
        for i in 0..bytes.len() {
            let c = bytes[i];
            if in_str {
                if escaped {
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                } else if c == b'"' {
                    in_str = false;
                }
            } else if c == b'"' {
                in_str = true;
            } else if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
                end = i;
                break;
            }
        }
        out.push_str(&line[..end]);
        out.push('\n');
    }
    out
}

fn str_of<'a>(v: &'a Value, key: &str, ctx: &str) -> Result<&'a str, String> {
    v.get(key).and_then(Value::as_str).ok_or_else(|| format!("{ctx}: missing string key {key:?}"))
}

fn opt_versions(v: &Value, key: &str, ctx: &str) -> Result<Option<Versions>, String> {
    match v.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Versions::parse(s).map(Some).map_err(|e| format!("{ctx}.{key}: {e}")),
        Some(other) => Err(format!("{ctx}.{key}: expected a version string, found {other}")),
    }
}

pub fn parse(file_name: &str, src: &str) -> Result<Spec, String> {
    let json: Value = serde_json::from_str(&strip_comments(src)).map_err(|e| format!("{file_name}: {e}"))?;
    let name = str_of(&json, "name", file_name)?.to_string();
    let kind = match str_of(&json, "type", file_name)? {
        "request" => Kind::Request,
        "response" => Kind::Response,
        "header" => Kind::Header,
        "data" => Kind::Data,
        other => return Err(format!("{file_name}: unknown message type {other:?}")),
    };
    let api_key = match json.get("apiKey") {
        None => None,
        Some(v) => Some(v.as_i64().and_then(|k| i16::try_from(k).ok()).ok_or(format!("{file_name}: bad apiKey"))?),
    };
    let valid = opt_versions(&json, "validVersions", file_name)?.ok_or(format!("{file_name}: no validVersions"))?;
    let flexible = opt_versions(&json, "flexibleVersions", file_name)?.unwrap_or(Versions::NONE);
    let latest_unstable = json.get("latestVersionUnstable").and_then(Value::as_bool).unwrap_or(false);

    let mut spec = Spec {
        name: name.clone(),
        kind,
        api_key,
        valid,
        flexible,
        latest_unstable,
        fields: Vec::new(),
        structs: BTreeMap::new(),
        struct_order: Vec::new(),
    };
    let empty = Vec::new();
    let top_fields = json.get("fields").and_then(Value::as_array).unwrap_or(&empty);
    spec.fields = parse_fields(&mut spec, top_fields, &name)?;
    if let Some(common) = json.get("commonStructs").and_then(Value::as_array) {
        for cs in common {
            let cs_name = str_of(cs, "name", file_name)?.to_string();
            let fields = cs.get("fields").and_then(Value::as_array).unwrap_or(&empty);
            let parsed = parse_fields(&mut spec, fields, &cs_name)?;
            add_struct(&mut spec, Struct { name: cs_name, fields: parsed })?;
        }
    }
    // Every struct type used must be defined.
    for s in spec.structs.values().chain(std::iter::once(&Struct { name: name.clone(), fields: spec.fields.clone() })) {
        for f in &s.fields {
            if let Some(n) = struct_name(&f.ty) {
                if !spec.structs.contains_key(n) {
                    return Err(format!("{file_name}: {}.{} uses undefined struct {n}", s.name, f.name));
                }
            }
        }
    }
    Ok(spec)
}

pub fn struct_name(t: &Type) -> Option<&str> {
    match t {
        Type::Struct(n) => Some(n),
        Type::Array(inner) => struct_name(inner),
        _ => None,
    }
}

fn add_struct(spec: &mut Spec, s: Struct) -> Result<(), String> {
    if spec.structs.contains_key(&s.name) {
        return Err(format!("{}: struct {} defined twice", spec.name, s.name));
    }
    spec.struct_order.push(s.name.clone());
    spec.structs.insert(s.name.clone(), s);
    Ok(())
}

fn parse_fields(spec: &mut Spec, fields: &[Value], owner: &str) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    for f in fields {
        let fname = str_of(f, "name", owner)?.to_string();
        let ctx = format!("{}.{}", owner, fname);
        let ty = Type::parse(str_of(f, "type", &ctx)?);
        let tagged = opt_versions(f, "taggedVersions", &ctx)?.unwrap_or(Versions::NONE);
        let versions = match opt_versions(f, "versions", &ctx)? {
            Some(v) => v,
            None if !tagged.is_empty() => tagged,
            None => return Err(format!("{ctx}: no versions")),
        };
        let tag = match f.get("tag") {
            None => None,
            // Tags are numbers, though some specs write them as strings.
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or(format!("{ctx}: bad tag {v}"))?,
            ),
        };
        if tag.is_some() == tagged.is_empty() {
            return Err(format!("{ctx}: tag and taggedVersions must come together"));
        }
        let field = Field {
            name: fname,
            ty: ty.clone(),
            versions,
            nullable: opt_versions(f, "nullableVersions", &ctx)?.unwrap_or(Versions::NONE),
            tagged,
            tag,
            ignorable: f.get("ignorable").and_then(Value::as_bool).unwrap_or(false),
            default: f.get("default").cloned(),
            entity: f.get("entityType").and_then(Value::as_str).map(str::to_string),
            flexible_override: opt_versions(f, "flexibleVersions", &ctx)?,
        };
        if let Some(inner) = f.get("fields").and_then(Value::as_array) {
            let sname = struct_name(&ty).ok_or(format!("{ctx}: fields given for a non-struct type"))?.to_string();
            let parsed = parse_fields(spec, inner, &sname)?;
            add_struct(spec, Struct { name: sname, fields: parsed })?;
        }
        out.push(field);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings() {
        assert_eq!(Versions::parse("3+").unwrap(), Versions { lo: 3, hi: i16::MAX });
        assert_eq!(Versions::parse("0-4").unwrap(), Versions { lo: 0, hi: 4 });
        assert_eq!(Versions::parse("7").unwrap(), Versions { lo: 7, hi: 7 });
        assert!(Versions::parse("none").unwrap().is_empty());
    }

    #[test]
    fn comments_inside_strings_survive() {
        let src = "{ \"about\": \"see http://x\" } // gone\n// all gone\n";
        assert_eq!(strip_comments(src), "{ \"about\": \"see http://x\" } \n\n");
    }
}
