//! YAML configs: reading, the sweep rule, and errors that name the key at fault.
//!
//! A config is one experiment (`kind:` plus its parameters) or a study
//! (`experiments:` a list of them). Wherever a parameter takes a single value, a
//! list of values means a sweep over them; several such lists sweep their
//! cartesian product. Parameters that are lists by nature (a width profile) sweep
//! with a list of lists. Typed parsing of each sweep point happens in
//! [`crate::experiment`], before any work starts.

use crate::experiment::Kind;
use anyhow::{Context, Result, anyhow, bail};
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// Keys allowed at the top of a config file, besides an experiment's own keys.
const TOP_LEVEL_KEYS: [&str; 6] = [
    "name",
    "description",
    "seed",
    "data_dir",
    "experiments",
    "kind",
];

/// A parsed config: its name, seed and experiments, each expanded into sweep points.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub description: Option<String>,
    pub seed: u64,
    pub data_dir: Option<PathBuf>,
    /// The file's text, kept verbatim for the run directory.
    pub source_text: String,
    pub experiments: Vec<ExperimentConfig>,
}

/// One experiment of a config, before typed parsing.
#[derive(Debug, Clone)]
pub struct ExperimentConfig {
    pub name: String,
    pub kind: Kind,
    /// The experiment's parameters as written (without `kind`/`name`).
    pub params: Mapping,
}

impl Config {
    /// Reads and checks the shape of a config file. `list_fields(kind)` names the
    /// parameters of a kind that are lists by nature; unknown kinds are reported by
    /// the caller, which knows them.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let default_name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".to_string());
        Self::parse(&text, &default_name).with_context(|| format!("in config {}", path.display()))
    }

    /// Parses config text; `default_name` is used when the config has no `name`.
    pub fn parse(text: &str, default_name: &str) -> Result<Self> {
        let value: Value =
            serde_yaml::from_str(text).map_err(|e| anyhow!("malformed YAML: {e}"))?;
        let Value::Mapping(top) = value else {
            bail!(
                "a config must be a YAML mapping of keys to values (kind: ..., name: ..., ...), found {}",
                describe(&value)
            );
        };
        let name = match top.get("name") {
            None => default_name.to_string(),
            Some(v) => scalar_string(v).ok_or_else(|| anyhow!("key `name` must be a string"))?,
        };
        check_name(&name).context("key `name`")?;
        let description = match top.get("description") {
            None => None,
            Some(v) => Some(
                scalar_string(v).ok_or_else(|| anyhow!("key `description` must be a string"))?,
            ),
        };
        let seed = match top.get("seed") {
            None => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| anyhow!("key `seed` must be a non-negative integer (a single seed: every unit derives its own from it), found {}", describe(v)))?,
        };
        let data_dir = match top.get("data_dir") {
            None => None,
            Some(v) => Some(PathBuf::from(
                scalar_string(v).ok_or_else(|| anyhow!("key `data_dir` must be a path"))?,
            )),
        };
        let experiments = match (top.get("experiments"), top.get("kind")) {
            (Some(_), Some(_)) => bail!(
                "a config has either `kind:` (one experiment) or `experiments:` (a list of them), not both"
            ),
            (None, None) => bail!("missing key `kind` (one of {})", Kind::names().join(", ")),
            (None, Some(_)) => {
                let mut params = top.clone();
                for key in ["name", "description", "seed", "data_dir"] {
                    params.remove(key);
                }
                vec![experiment_from_mapping(params, name.clone())?]
            }
            (Some(list), None) => {
                for key in top.keys() {
                    let k = key.as_str().unwrap_or("");
                    if !TOP_LEVEL_KEYS.contains(&k) {
                        bail!(
                            "unknown top-level key `{}`: with `experiments:`, parameters go inside each experiment (top-level keys: name, description, seed, data_dir, experiments)",
                            key_str(key)
                        );
                    }
                }
                let Value::Sequence(items) = list else {
                    bail!("key `experiments` must be a list of experiments, each with a `kind`");
                };
                if items.is_empty() {
                    bail!("key `experiments` is empty: list at least one experiment");
                }
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let Value::Mapping(m) = item else {
                        bail!("experiments[{i}] must be a mapping with a `kind`");
                    };
                    let default = format!(
                        "{}-{}",
                        i + 1,
                        m.get("kind")
                            .and_then(Value::as_str)
                            .unwrap_or("experiment")
                    );
                    out.push(
                        experiment_from_mapping(m.clone(), default)
                            .with_context(|| format!("in experiments[{i}]"))?,
                    );
                }
                let mut names: Vec<&str> = out.iter().map(|e| e.name.as_str()).collect();
                names.sort();
                if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                    bail!(
                        "two experiments are named `{}`: give each a distinct `name`",
                        w[0]
                    );
                }
                out
            }
        };
        Ok(Config {
            name,
            description,
            seed,
            data_dir,
            source_text: text.to_string(),
            experiments,
        })
    }
}

fn experiment_from_mapping(mut m: Mapping, default_name: String) -> Result<ExperimentConfig> {
    let name = match m.remove("name") {
        None => default_name,
        Some(v) => scalar_string(&v).ok_or_else(|| anyhow!("key `name` must be a string"))?,
    };
    check_name(&name).context("key `name`")?;
    let kind = match m.remove("kind") {
        None => bail!("missing key `kind`"),
        Some(v) => {
            let text = v.as_str().ok_or_else(|| {
                anyhow!(
                    "key `kind` must be a single experiment kind, not {}",
                    describe(&v)
                )
            })?;
            text.parse::<Kind>().map_err(|_| {
                anyhow!(
                    "experiment `{name}`: unknown kind `{text}`; known kinds: {}",
                    Kind::names().join(", ")
                )
            })?
        }
    };
    for key in m.keys() {
        if !matches!(key, Value::String(_)) {
            bail!(
                "key `{}` is not a string: parameter names are words like width or depth",
                key_str(key)
            );
        }
    }
    Ok(ExperimentConfig {
        name,
        kind,
        params: m,
    })
}

/// Names become folder names: keep them simple.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        bail!(
            "name `{name}` must be non-empty and use only letters, digits, '-', '_' and '.' (it names a folder)"
        );
    }
    Ok(())
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn key_str(v: &Value) -> String {
    serde_yaml::to_string(v)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A short description of a YAML value for error messages.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string \"{s}\""),
        Value::Sequence(s) => format!("a list of {} items", s.len()),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Expands sweeps: every parameter whose value is a list (a list of lists for the
/// `list_fields`, which are lists by nature) becomes an axis; the result is the
/// cartesian product, in the order the keys are written, last key fastest.
pub fn expand_sweep(params: &Mapping, list_fields: &[&str]) -> Result<Vec<Mapping>> {
    // The product is counted before anything is built: a few long lists would
    // otherwise expand into more points than memory holds.
    let mut count: u128 = 1;
    for (key, value) in params {
        if let Value::Sequence(items) = value {
            let is_list_field = list_fields.contains(&key.as_str().unwrap_or_default());
            if !is_list_field || items.iter().all(|i| matches!(i, Value::Sequence(_))) {
                count = count.saturating_mul(items.len().max(1) as u128);
            }
        }
    }
    if count > MAX_SWEEP_POINTS as u128 {
        bail!(
            "the sweep's lists multiply out to {count} points, more than the {MAX_SWEEP_POINTS} one experiment may have: shorten the lists or split the sweep into several configs"
        );
    }
    let mut points = vec![Mapping::new()];
    for (key, value) in params {
        let name = key.as_str().unwrap_or_default();
        let is_list_field = list_fields.contains(&name);
        let axis: Option<&Vec<Value>> = match value {
            Value::Sequence(items) if !is_list_field => Some(items),
            Value::Sequence(items)
                if is_list_field
                    && !items.is_empty()
                    && items.iter().all(|i| matches!(i, Value::Sequence(_))) =>
            {
                Some(items)
            }
            _ => None,
        };
        match axis {
            Some(items) => {
                if items.is_empty() {
                    bail!("key `{name}` is an empty list: a sweep needs at least one value");
                }
                let mut next = Vec::with_capacity(points.len() * items.len());
                for point in &points {
                    for item in items {
                        let mut p = point.clone();
                        p.insert(key.clone(), item.clone());
                        next.push(p);
                    }
                }
                points = next;
            }
            None => {
                for point in &mut points {
                    point.insert(key.clone(), value.clone());
                }
            }
        }
    }
    Ok(points)
}

/// The most points one experiment's sweep may expand into (each point is parsed,
/// validated and kept in memory before any work starts).
pub const MAX_SWEEP_POINTS: usize = 100_000;

/// Range checks for hyper-parameters, shared by every experiment kind and
/// initialiser. Each error names the key, the allowed range and the value found,
/// so that a NaN or an infinity written in YAML (`.nan`, `.inf`) is refused by name.
pub mod check {
    use anyhow::{Result, bail};

    /// A finite number > 0 (learning rates, gains, tolerances).
    pub fn positive(key: &str, value: f64) -> Result<()> {
        if !(value.is_finite() && value > 0.0) {
            bail!("`{key}` must be a finite number > 0, got {value}");
        }
        Ok(())
    }

    /// A finite number in the closed interval [lo, hi].
    pub fn within(key: &str, value: f64, lo: f64, hi: f64) -> Result<()> {
        if !(value.is_finite() && (lo..=hi).contains(&value)) {
            bail!("`{key}` must be a finite number in [{lo}, {hi}], got {value}");
        }
        Ok(())
    }

    /// A finite number in [lo, hi), e.g. a momentum, which must stay below 1.
    pub fn within_open_above(key: &str, value: f64, lo: f64, hi: f64) -> Result<()> {
        if !(value.is_finite() && value >= lo && value < hi) {
            bail!("`{key}` must be a finite number in [{lo}, {hi}), got {value}");
        }
        Ok(())
    }

    /// A finite number in (lo, hi], e.g. a probability that must not be 0.
    pub fn within_open_below(key: &str, value: f64, lo: f64, hi: f64) -> Result<()> {
        if !(value.is_finite() && value > lo && value <= hi) {
            bail!("`{key}` must be a finite number in ({lo}, {hi}], got {value}");
        }
        Ok(())
    }

    /// A count of at least `min`.
    pub fn at_least(key: &str, value: u64, min: u64) -> Result<()> {
        if value < min {
            bail!("`{key}` must be at least {min}, got {value}");
        }
        Ok(())
    }

    /// A count of at most `max`; `why` says what the bound protects.
    pub fn at_most(key: &str, value: u64, max: u64, why: &str) -> Result<()> {
        if value > max {
            bail!("`{key}` must be at most {max} ({why}), got {value}");
        }
        Ok(())
    }

    /// The leaky-ReLU slope of a network that is built and run. The training
    /// kernels take the activation's derivative from the sign of its output, which
    /// equals the pre-activation's only for slopes >= 0; the paper's theory is for
    /// |slope| <= 1. So networks take 0 <= slope <= 1.
    pub fn network_slope(value: f64) -> Result<()> {
        if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
            bail!(
                "`slope` (the leaky ReLU's negative slope) must be a finite number in [0, 1] for networks, got {value} (negative slopes are supported only by kind: theory, in [-1, 1])"
            );
        }
        Ok(())
    }
}

/// Bytes in a short human form (`1.5 GiB`, `512 KiB`), for messages about memory.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Deserialises one sweep point into a kind's typed parameters, turning serde's
/// message into one that names the experiment and the key.
pub fn parse_point<T: DeserializeOwned>(
    point: &Mapping,
    experiment: &str,
    kind: Kind,
) -> Result<T> {
    serde_path_to_error::deserialize(Value::Mapping(point.clone())).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        let hint = if msg.contains("unknown field") {
            " (check the spelling; docs/configs.md lists each kind's keys)"
        } else {
            ""
        };
        if path == "." || path.is_empty() {
            anyhow!("experiment `{experiment}` (kind: {kind}): {msg}{hint}")
        } else {
            anyhow!("experiment `{experiment}` (kind: {kind}), key `{path}`: {msg}{hint}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(text: &str) -> Mapping {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn scalars_are_one_point_lists_sweep() {
        let points = expand_sweep(&mapping("a: 1\nb: [2, 3]\nc: [x, y, z]\n"), &[]).unwrap();
        assert_eq!(points.len(), 6);
        assert_eq!(points[0], mapping("a: 1\nb: 2\nc: x\n"));
        assert_eq!(points[1], mapping("a: 1\nb: 2\nc: y\n"));
        assert_eq!(points[5], mapping("a: 1\nb: 3\nc: z\n"));
    }

    #[test]
    fn list_fields_sweep_only_with_lists_of_lists() {
        let one = expand_sweep(&mapping("widths: [10, 20]\n"), &["widths"]).unwrap();
        assert_eq!(one, vec![mapping("widths: [10, 20]\n")]);
        let two = expand_sweep(&mapping("widths: [[10, 20], [5]]\n"), &["widths"]).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1], mapping("widths: [5]\n"));
    }

    #[test]
    fn empty_sweep_is_an_error_naming_the_key() {
        let err = expand_sweep(&mapping("depth: []\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`depth`"), "{err}");
    }

    #[test]
    fn a_sweep_too_large_to_expand_is_refused_before_expanding() {
        let list = format!("[{}]", vec!["1"; 1001].join(", "));
        let text = format!("a: {list}\nb: {list}\n");
        let err = expand_sweep(&mapping(&text), &[]).unwrap_err().to_string();
        assert!(err.contains("1002001 points"), "{err}");
        // a list field with a single list of values is one point, not an axis
        assert_eq!(
            expand_sweep(&mapping(&format!("w: {list}\n")), &["w"])
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn checks_name_the_key_and_refuse_nan_and_infinity() {
        let e = |r: Result<()>| format!("{:#}", r.unwrap_err());
        assert!(
            e(check::positive("gain", f64::NAN))
                .contains("`gain` must be a finite number > 0, got NaN")
        );
        assert!(e(check::positive("lr", f64::INFINITY)).contains("got inf"));
        assert!(e(check::positive("lr", 0.0)).contains("`lr`"));
        assert!(check::positive("lr", 1e-300).is_ok());
        assert!(e(check::within("x", -0.1, 0.0, 1.0)).contains("[0, 1]"));
        assert!(check::within("x", 1.0, 0.0, 1.0).is_ok());
        assert!(e(check::within_open_above("momentum", 1.0, 0.0, 1.0)).contains("[0, 1)"));
        assert!(check::within_open_above("momentum", 0.0, 0.0, 1.0).is_ok());
        assert!(
            e(check::within_open_below("p", 0.0, 0.0, 1.0))
                .contains("`p` must be a finite number in (0, 1], got 0")
        );
        assert!(check::within_open_below("p", 1.0, 0.0, 1.0).is_ok());
        assert!(e(check::at_least("batch", 1, 2)).contains("`batch` must be at least 2, got 1"));
        assert!(e(check::at_most("n", 3, 2, "why")).contains("at most 2 (why)"));
        for bad in [-0.1, 1.5, f64::NAN, f64::NEG_INFINITY] {
            assert!(e(check::network_slope(bad)).contains("`slope`"), "{bad}");
        }
        for good in [0.0, 0.2, 1.0] {
            assert!(check::network_slope(good).is_ok(), "{good}");
        }
        assert_eq!(human_bytes(100), "100 bytes");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn single_experiment_and_study_forms() {
        let c = Config::parse("name: t\nkind: theory\nwidth: 10\nseed: 3\n", "file").unwrap();
        assert_eq!(c.name, "t");
        assert_eq!(c.seed, 3);
        assert_eq!(c.experiments.len(), 1);
        assert_eq!(c.experiments[0].kind, Kind::Theory);
        assert_eq!(c.experiments[0].name, "t");
        assert!(c.experiments[0].params.get("seed").is_none());

        let s = Config::parse(
            "experiments:\n  - kind: theory\n    width: 3\n  - kind: theory\n    name: other\n",
            "study",
        )
        .unwrap();
        assert_eq!(s.name, "study");
        assert_eq!(s.experiments[0].name, "1-theory");
        assert_eq!(s.experiments[1].name, "other");
    }

    #[test]
    fn shape_errors_are_clear() {
        let e = |t: &str| format!("{:#}", Config::parse(t, "x").unwrap_err());
        assert!(e("kind: [theory\n").contains("malformed YAML"));
        assert!(e("- 1\n- 2\n").contains("must be a YAML mapping"));
        assert!(e("width: 3\n").contains("missing key `kind`"));
        assert!(e("kind: theory\nseed: -1\n").contains("`seed`"));
        assert!(e("kind: theory\nname: 'a b'\n").contains("name `a b`"));
        assert!(e("experiments: []\n").contains("empty"));
        assert!(
            e("experiments:\n  - kind: theory\nwidth: 3\n")
                .contains("unknown top-level key `width`")
        );
        assert!(
            e("experiments:\n  - {kind: theory, name: a}\n  - {kind: theory, name: a}\n")
                .contains("two experiments")
        );
    }
}
