//! sansa-codegen: turns Apache Kafka's JSON message specs into `core/src/protocol/messages/`.
//!
//! ```text
//! cargo run -p sansa-codegen                      # specs from the pinned kafka-clients jar
//! cargo run -p sansa-codegen -- --check           # regenerate in memory, fail on any difference
//! cargo run -p sansa-codegen -- --specs DIR|JAR   # another spec source
//! ```
//!
//! With no `--specs`, the generator reads the kafka-clients jar whose version is pinned in
//! `core/codegen/KAFKA_CLIENTS_VERSION` from the local Maven repository, fetching it with Maven
//! when it is missing.

mod rust;
mod spec;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

struct Args {
    specs: Option<PathBuf>,
    out: PathBuf,
    check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { specs: None, out: Path::new(MANIFEST_DIR).join("../src/protocol/messages"), check: false };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--check" => args.check = true,
            "--specs" => args.specs = Some(it.next().ok_or("--specs needs a directory or a jar")?.into()),
            "--out" => args.out = it.next().ok_or("--out needs a directory")?.into(),
            "-h" | "--help" => {
                println!(
                    "usage: sansa-codegen [--specs DIR|JAR] [--out DIR] [--check]\n\n\
                     Generates sansa's protocol messages from Apache Kafka's JSON message specs.\n\
                     --specs  a directory of *.json specs or a kafka-clients jar (default: the pinned jar)\n\
                     --out    output directory (default: core/src/protocol/messages)\n\
                     --check  regenerate in memory and exit 1 if the output directory differs"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    Ok(args)
}

fn pinned_version() -> Result<String, String> {
    let path = Path::new(MANIFEST_DIR).join("KAFKA_CLIENTS_VERSION");
    let v = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(v.trim().to_string())
}

fn maven_repo() -> PathBuf {
    if let Ok(r) = std::env::var("MAVEN_REPO_LOCAL") {
        return r.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    Path::new(&home).join(".m2/repository")
}

/// The pinned kafka-clients jar, fetched into the local Maven repository when absent.
fn pinned_jar() -> Result<PathBuf, String> {
    let version = pinned_version()?;
    let jar = maven_repo().join(format!("org/apache/kafka/kafka-clients/{version}/kafka-clients-{version}.jar"));
    if jar.exists() {
        return Ok(jar);
    }
    eprintln!("sansa-codegen: fetching org.apache.kafka:kafka-clients:{version} with Maven");
    let status = Command::new("mvn")
        .args(["-q", "-B", "dependency:get", "-Dtransitive=false"])
        .arg(format!("-Dartifact=org.apache.kafka:kafka-clients:{version}"))
        .arg(format!("-Dmaven.repo.local={}", maven_repo().display()))
        .status()
        .map_err(|e| format!("could not run mvn: {e}"))?;
    if !status.success() || !jar.exists() {
        return Err(format!("mvn could not fetch kafka-clients {version} (exit {status})"));
    }
    Ok(jar)
}

/// Reads `(file name, contents)` of every spec, sorted by name.
fn read_specs(source: &Path) -> Result<Vec<(String, String)>, String> {
    let mut out = BTreeMap::new();
    if source.is_dir() {
        for entry in std::fs::read_dir(source).map_err(|e| format!("{}: {e}", source.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                out.insert(name, text);
            }
        }
    } else {
        let file = std::fs::File::open(source).map_err(|e| format!("{}: {e}", source.display()))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", source.display()))?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
            let name = entry.name().to_string();
            if let Some(base) = name.strip_prefix("common/message/") {
                if base.ends_with(".json") && !base.contains('/') {
                    let mut text = String::new();
                    entry.read_to_string(&mut text).map_err(|e| format!("{name}: {e}"))?;
                    out.insert(base.to_string(), text);
                }
            }
        }
    }
    if out.is_empty() {
        return Err(format!("no message specs found in {}", source.display()));
    }
    Ok(out.into_iter().collect())
}

fn rustfmt(code: &str) -> Result<String, String> {
    let config = Path::new(MANIFEST_DIR).join("../../rustfmt.toml");
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout", "--config-path"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run rustfmt: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("rustfmt stdin")?;
    let input = code.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    writer.join().map_err(|_| "rustfmt writer panicked")?.map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("rustfmt failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    String::from_utf8(output.stdout).map_err(|e| e.to_string())
}

fn run() -> Result<bool, String> {
    let args = parse_args()?;
    let source = match &args.specs {
        Some(p) => p.clone(),
        None => pinned_jar()?,
    };
    let raw = read_specs(&source)?;
    let mut specs = Vec::new();
    for (name, text) in &raw {
        specs.push(spec::parse(name, text)?);
    }
    let error_table_path = Path::new(MANIFEST_DIR).join("error_codes.tsv");
    let error_table =
        std::fs::read_to_string(&error_table_path).map_err(|e| format!("{}: {e}", error_table_path.display()))?;
    let files = rust::generate(&specs, &error_table)?;

    let mut formatted = BTreeMap::new();
    for (name, code) in &files {
        formatted.insert(name.clone(), rustfmt(code).map_err(|e| format!("{name}: {e}"))?);
    }

    let existing: BTreeMap<String, String> = match std::fs::read_dir(&args.out) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .filter_map(|p| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                Some((name, std::fs::read_to_string(&p).ok()?))
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    };

    let apis = specs.iter().filter(|s| s.kind == spec::Kind::Request && !s.valid.is_empty()).count();
    let pairs: usize = specs
        .iter()
        .filter(|s| s.kind == spec::Kind::Request && !s.valid.is_empty())
        .map(|s| {
            let r = rust::stable_range(s, s.latest_unstable);
            if r.is_empty() {
                0
            } else {
                (r.hi - r.lo + 1) as usize
            }
        })
        .sum();

    if args.check {
        let mut differ = Vec::new();
        for (name, code) in &formatted {
            if existing.get(name) != Some(code) {
                differ.push(name.clone());
            }
        }
        for name in existing.keys() {
            if !formatted.contains_key(name) {
                differ.push(format!("{name} (stale)"));
            }
        }
        if differ.is_empty() {
            println!(
                "sansa-codegen --check: {} files up to date ({apis} APIs, {pairs} stable (API, version) pairs) from {}",
                formatted.len(),
                source.display()
            );
            return Ok(true);
        }
        eprintln!("sansa-codegen --check: generated code is out of date in {}:", args.out.display());
        for d in &differ {
            eprintln!("  {d}");
        }
        eprintln!("run `cargo run -p sansa-codegen` to regenerate");
        return Ok(false);
    }

    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    for name in existing.keys() {
        if !formatted.contains_key(name) {
            std::fs::remove_file(args.out.join(name)).map_err(|e| e.to_string())?;
        }
    }
    for (name, code) in &formatted {
        if existing.get(name) != Some(code) {
            std::fs::write(args.out.join(name), code).map_err(|e| format!("{name}: {e}"))?;
        }
    }
    println!(
        "sansa-codegen: wrote {} files ({apis} APIs, {pairs} stable (API, version) pairs) from {}",
        formatted.len(),
        source.display()
    );
    Ok(true)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sansa-codegen: {e}");
            ExitCode::from(2)
        }
    }
}
