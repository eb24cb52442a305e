//! Experiment kinds and what they share: a kind turns its typed sweep points into
//! work units (the smallest piece of work whose result is saved on its own),
//! grouped into jobs (units that are best computed together, e.g. one ensemble),
//! and computes the rows of any pending units of a job.

pub mod context;
pub mod input_stats;
pub mod kurtosis_mc;
pub mod sweep;
pub mod theory;
pub mod train;
pub mod variance;

use crate::config::{Config, ExperimentConfig, expand_sweep, parse_point};
use crate::results::Table;
use crate::seed::Key;
use anyhow::{Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use context::Context;

/// The kinds an experiment can have, as written after `kind:`.
pub const KINDS: [&str; 5] = ["theory", "input_stats", "variance", "train", "kurtosis_mc"];

/// A unit of work: saved on its own, skipped when a rerun finds it done.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSpec {
    /// Stable id: the id of a [`Key`] of the kind, the sweep point and the unit's part of it.
    pub id: String,
    /// A short human description for the log.
    pub label: String,
    /// Relative cost, for progress, ETA and balancing shards.
    pub cost: f64,
}

/// Units computed together (one ensemble shape, one sweep point). Jobs are a
/// function of the config alone, so every machine of a sharded run agrees on them.
#[derive(Debug, Clone)]
pub struct Job {
    /// Which of the kind's own job list this is.
    pub index: usize,
    pub units: Vec<UnitSpec>,
}

impl Job {
    pub fn cost(&self) -> f64 {
        self.units.iter().map(|u| u.cost).sum()
    }
}

/// Receives the rows of finished units, as soon as they are finished.
pub type Sink<'a> = dyn FnMut(Table, &[UnitSpec]) -> Result<()> + 'a;

/// One experiment of a config, typed and validated.
pub trait Experiment: Send + Sync {
    fn kind(&self) -> &'static str;
    fn name(&self) -> &str;
    /// Every sweep point with its defaults filled in, for `config.resolved.yaml`.
    fn resolved(&self) -> serde_yaml::Value;
    fn jobs(&self) -> Vec<Job>;
    /// Loads what the experiment needs (datasets) before any unit runs, and
    /// returns what the metadata should record about it.
    fn prepare(&self, ctx: &mut Context) -> Result<serde_json::Value>;
    /// Computes the units `pending` (indices into `job.units`) and hands rows to `sink`.
    fn run_job(
        &self,
        job: &Job,
        pending: &[usize],
        ctx: &mut Context,
        sink: &mut Sink,
    ) -> Result<()>;
}

/// Parses every sweep point of an experiment into `T`, validating each.
pub fn typed_points<T: DeserializeOwned + Serialize + PointKey>(
    exp: &ExperimentConfig,
    list_fields: &[&str],
    validate: impl Fn(&T) -> Result<()>,
) -> Result<Vec<T>> {
    let points = expand_sweep(&exp.params, list_fields)?;
    let mut out = Vec::with_capacity(points.len());
    for point in &points {
        let typed: T = parse_point(point, &exp.name, &exp.kind)?;
        validate(&typed).and_then(|_| typed.key()).map_err(|e| {
            anyhow::anyhow!("experiment `{}` (kind: {}): {e:#}", exp.name, exp.kind)
        })?;
        out.push(typed);
    }
    Ok(out)
}

/// The architecture of a network on a dataset's inputs (ten classes).
pub fn dataset_arch(
    dataset: crate::data::DatasetName,
    width: usize,
    depth: usize,
    slope: f64,
    norm: crate::net::Norm,
) -> crate::net::Arch {
    crate::net::Arch {
        input: dataset.features(),
        width,
        depth,
        classes: 10,
        slope,
        norm,
    }
}

/// Names a family of networks for their random streams: a key of `kind` with
/// everything that decides a network's weights (not how many are drawn, nor how
/// they are trained). A sweep point's key holds it as its field `family`.
pub fn network_key(
    kind: &str,
    dataset: crate::data::DatasetName,
    init: &crate::init::Initializer,
    arch: &crate::net::Arch,
    normalization: crate::data::Normalization,
) -> Result<Key> {
    let key = Key::new(kind).text("dataset", &dataset.to_string());
    Ok(init
        .write_key(key)?
        .uint("width", arch.width as u64)
        .uint("depth", arch.depth as u64)
        .float("slope", arch.slope)?
        .text("norm", arch.norm.name())
        .text("normalization", normalization.name()))
}

/// `config.resolved.yaml`'s entry of an experiment: its typed points.
pub fn resolved_points<T: Serialize>(points: &[T]) -> serde_yaml::Value {
    serde_yaml::to_value(points).expect("points serialise")
}

/// One job of one unit per sweep point.
pub fn one_job_per_point(points: usize, unit: impl Fn(usize) -> UnitSpec) -> Vec<Job> {
    (0..points)
        .map(|i| Job {
            index: i,
            units: vec![unit(i)],
        })
        .collect()
}

/// A sweep point's explicit identity: a [`Key`] of its kind with every field
/// by name, in a fixed order. Unit ids are this key with the unit's part of the
/// point (a block of networks, a repetition).
pub trait PointKey {
    fn key(&self) -> Result<Key>;
}

/// The key of a point that [`typed_points`] accepted (it refuses a point whose
/// key cannot be built, e.g. a NaN, before any work).
pub fn unit_key<T: PointKey>(point: &T) -> Key {
    point
        .key()
        .expect("typed_points refuses points whose key cannot be built")
}

/// Builds the typed experiments of a config; every error surfaces here, before work.
pub fn build(config: &Config) -> Result<Vec<Box<dyn Experiment>>> {
    let mut out: Vec<Box<dyn Experiment>> = Vec::new();
    for exp in &config.experiments {
        let built: Box<dyn Experiment> = match exp.kind.as_str() {
            "theory" => Box::new(theory::TheoryExperiment::from_config(exp)?),
            "input_stats" => Box::new(input_stats::InputStatsExperiment::from_config(exp)?),
            "variance" => Box::new(variance::VarianceExperiment::from_config(exp)?),
            "train" => Box::new(train::TrainExperiment::from_config(exp)?),
            "kurtosis_mc" => Box::new(kurtosis_mc::KurtosisExperiment::from_config(exp)?),
            other => bail!(
                "experiment `{}`: unknown kind `{other}`; known kinds: {}",
                exp.name,
                KINDS.join(", ")
            ),
        };
        out.push(built);
    }
    Ok(out)
}

/// `config.resolved.yaml`: name, seed and every experiment's resolved points.
pub fn resolved_text(config: &Config, experiments: &[Box<dyn Experiment>]) -> Result<String> {
    let mut root = serde_yaml::Mapping::new();
    root.insert("name".into(), config.name.clone().into());
    root.insert("seed".into(), config.seed.into());
    let list: Vec<serde_yaml::Value> = experiments
        .iter()
        .map(|e| {
            let mut m = serde_yaml::Mapping::new();
            m.insert("name".into(), e.name().into());
            m.insert("kind".into(), e.kind().into());
            m.insert("points".into(), e.resolved());
            serde_yaml::Value::Mapping(m)
        })
        .collect();
    root.insert("experiments".into(), list.into());
    Ok(serde_yaml::to_string(&root)?)
}
