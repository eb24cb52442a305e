//! Experiment kinds and what they share: a kind turns its typed sweep points into
//! work units (the smallest piece of work whose result is saved on its own),
//! grouped into jobs (units that are best computed together, e.g. one ensemble),
//! and computes the rows of any pending units of a job.

pub mod columns;
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
use anyhow::Result;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use context::Context;

snake_case_names! {
    /// The kinds an experiment can have (`kind: kurtosis_mc`).
    pub enum Kind {
        Theory,
        InputStats,
        Variance,
        Train,
        KurtosisMc,
    }
}

impl Kind {
    /// The columns this kind's results tables have.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Theory => theory::COLUMNS,
            Kind::InputStats => input_stats::COLUMNS,
            Kind::Variance => variance::COLUMNS,
            Kind::Train => train::COLUMNS,
            Kind::KurtosisMc => kurtosis_mc::COLUMNS,
        }
    }
}

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

/// A job to compute: which of its units are still pending (never none), the
/// context they run in and where their rows go.
pub struct Todo<'a, 'b> {
    pub job: &'a Job,
    pub pending: &'a [usize],
    pub ctx: &'a mut Context,
    pub sink: &'a mut Sink<'b>,
}

impl Todo<'_, '_> {
    /// The first unit of the job: the only one where a job is one sweep point.
    pub fn unit(&self) -> &UnitSpec {
        &self.job.units[0]
    }

    /// Hands the rows of the job's only unit on.
    pub fn finish_unit(&mut self, table: Table) -> Result<()> {
        let unit = &self.job.units[0];
        (self.sink)(table, std::slice::from_ref(unit))
    }
}

/// One experiment of a config, typed and validated.
pub trait Experiment: Send + Sync {
    fn kind(&self) -> Kind;
    fn name(&self) -> &str;
    /// Every sweep point with its defaults filled in, for `config.resolved.yaml`.
    fn resolved(&self) -> serde_yaml::Value;
    fn jobs(&self) -> Vec<Job>;
    /// Loads what the experiment needs (datasets) before any unit runs, and
    /// returns what the metadata should record about it.
    fn prepare(&self, ctx: &mut Context) -> Result<serde_json::Value>;
    /// Computes the pending units of a job and hands their rows to its sink.
    fn run_job(&self, todo: Todo) -> Result<()>;
}

/// What a kind adds to its typed sweep points: validation, the work units,
/// what to load first and how a job is computed. [`Sweep`] makes any of them
/// an [`Experiment`], so that the kinds differ only where their work does.
pub trait Point: Serialize + DeserializeOwned + PointKey + Send + Sync + Sized + 'static {
    const KIND: Kind;
    /// Parameters that are lists by nature (a width profile): swept with a list of lists.
    const LIST_FIELDS: &'static [&'static str] = &[];
    /// What an experiment of this kind keeps besides its points.
    type State: Send + Sync;

    fn validate(&self) -> Result<()>;
    fn state(points: &[Self]) -> Self::State;
    fn jobs(sweep: &Sweep<Self>) -> Vec<Job>;
    fn prepare(sweep: &Sweep<Self>, ctx: &mut Context) -> Result<serde_json::Value>;
    fn run_job(sweep: &Sweep<Self>, todo: Todo) -> Result<()>;
}

/// An experiment of kind `P::KIND`: its name, typed points and state.
pub struct Sweep<P: Point> {
    pub name: String,
    pub points: Vec<P>,
    pub state: P::State,
}

impl<P: Point> Sweep<P> {
    /// Parses and validates every sweep point of an experiment.
    pub fn from_config(exp: &ExperimentConfig) -> Result<Self> {
        let points = expand_sweep(&exp.params, P::LIST_FIELDS)?;
        let mut typed = Vec::with_capacity(points.len());
        for point in &points {
            let p: P = parse_point(point, &exp.name, exp.kind)?;
            p.validate().and_then(|_| p.key()).map_err(|e| {
                anyhow::anyhow!("experiment `{}` (kind: {}): {e:#}", exp.name, exp.kind)
            })?;
            typed.push(p);
        }
        Ok(Sweep {
            name: exp.name.clone(),
            state: P::state(&typed),
            points: typed,
        })
    }

    /// The point of a job whose jobs are one per point.
    pub fn point_of(&self, job: &Job) -> &P {
        &self.points[job.index]
    }
}

impl<P: Point> Experiment for Sweep<P> {
    fn kind(&self) -> Kind {
        P::KIND
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn resolved(&self) -> serde_yaml::Value {
        serde_yaml::to_value(&self.points).expect("points serialise")
    }
    fn jobs(&self) -> Vec<Job> {
        P::jobs(self)
    }
    fn prepare(&self, ctx: &mut Context) -> Result<serde_json::Value> {
        P::prepare(self, ctx)
    }
    fn run_job(&self, todo: Todo) -> Result<()> {
        if todo.pending.is_empty() {
            return Ok(());
        }
        P::run_job(self, todo)
    }
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

/// One job of one unit per sweep point, the unit named by the point's key;
/// `describe` gives each unit's label and cost.
pub fn one_job_per_point<P: PointKey>(
    points: &[P],
    describe: impl Fn(&P) -> (String, f64),
) -> Vec<Job> {
    points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (label, cost) = describe(p);
            Job {
                index: i,
                units: vec![UnitSpec {
                    id: unit_key(p).id(),
                    label,
                    cost,
                }],
            }
        })
        .collect()
}

/// A sweep point's explicit identity: a [`Key`] of its kind with every field
/// by name, in a fixed order. Unit ids are this key with the unit's part of the
/// point (a block of networks, a repetition).
pub trait PointKey {
    fn key(&self) -> Result<Key>;
}

/// The key of a point that [`Sweep::from_config`] accepted (it refuses a point whose
/// key cannot be built, e.g. a NaN, before any work).
pub fn unit_key<T: PointKey>(point: &T) -> Key {
    point
        .key()
        .expect("Sweep::from_config refuses points whose key cannot be built")
}

/// Builds the typed experiments of a config; every error surfaces here, before work.
pub fn build(config: &Config) -> Result<Vec<Box<dyn Experiment>>> {
    fn sweep<P: Point>(exp: &ExperimentConfig) -> Result<Box<dyn Experiment>> {
        Ok(Box::new(Sweep::<P>::from_config(exp)?))
    }
    config
        .experiments
        .iter()
        .map(|exp| match exp.kind {
            Kind::Theory => sweep::<theory::TheoryPoint>(exp),
            Kind::InputStats => sweep::<input_stats::InputStatsPoint>(exp),
            Kind::Variance => sweep::<variance::VariancePoint>(exp),
            Kind::Train => sweep::<train::TrainPoint>(exp),
            Kind::KurtosisMc => sweep::<kurtosis_mc::KurtosisPoint>(exp),
        })
        .collect()
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
            m.insert("kind".into(), e.kind().name().into());
            m.insert("points".into(), e.resolved());
            serde_yaml::Value::Mapping(m)
        })
        .collect();
    root.insert("experiments".into(), list.into());
    Ok(serde_yaml::to_string(&root)?)
}
