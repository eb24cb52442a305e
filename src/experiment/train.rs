//! `kind: train` (the paper's Figs. 1 and 3): for each initialiser, width, depth,
//! learning rate, slope, normalisation, dataset and repetition, Adam on
//! cross-entropy for a number of steps; test loss and accuracy on the whole test set
//! at the end (and at optional intermediate steps); the training-loss curve. Runs
//! of one shape train together as an ensemble (their jobs), each with its own
//! initial network and its own shuffling. One row per run.

use super::columns::{self as col, columns};
use super::context::one_network;
use super::input_stats::{InputCache, InputMoments};
use super::{Context, Job, Point, PointKey, Sweep, Todo, UnitSpec, unit_key};
use crate::config::check;
use crate::data::{Dataset, DatasetName, Normalization};
use crate::init::{Initializer, initialize, member_streams};
use crate::net::{Arch, Ensemble, Norm};
use crate::results::{Cell, Table};
use crate::seed::Key;
use crate::theory::output_kurtosis;
use crate::train::{MemberResult, TrainOptions, train};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainPoint {
    pub dataset: DatasetName,
    pub init: Initializer,
    pub width: usize,
    pub depth: usize,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default)]
    pub slope: f64,
    #[serde(default)]
    pub norm: Norm,
    #[serde(default)]
    pub normalization: Normalization,
    /// Independent runs of this point (repetitions).
    #[serde(default = "default_repeats")]
    pub repeats: usize,
    #[serde(default = "default_steps")]
    pub steps: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Also evaluate on the test set after these steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eval_steps: Vec<usize>,
}

/// The most repetitions of one sweep point (each is a work unit).
const MAX_REPEATS: usize = 100_000;

fn default_lr() -> f64 {
    1e-4
}
fn default_repeats() -> usize {
    1
}
fn default_steps() -> usize {
    500
}
fn default_batch() -> usize {
    90
}

impl TrainPoint {
    pub fn arch(&self) -> Arch {
        super::dataset_arch(self.dataset, self.width, self.depth, self.slope, self.norm)
    }

    fn check(&self) -> Result<()> {
        check::at_least("width", self.width as u64, 1)?;
        check::positive("lr", self.lr)?;
        check::network_slope(self.slope)?;
        check::at_least("repeats", self.repeats as u64, 1)?;
        check::at_most(
            "repeats",
            self.repeats as u64,
            MAX_REPEATS as u64,
            "each repetition is a work unit, listed before work starts",
        )?;
        // With no step there is no training loss, and the row would report 0.
        check::at_least("steps", self.steps as u64, 1)?;
        check::at_least("batch_size", self.batch_size as u64, 1)?;
        if self.norm == Norm::Batch && self.batch_size < 2 {
            bail!("`norm: batch` needs batch_size >= 2");
        }
        if let Some(s) = self.eval_steps.iter().find(|&&s| s > self.steps) {
            bail!(
                "`eval_steps` entry {s} is after the last step ({})",
                self.steps
            );
        }
        self.init.check_arch(&self.arch())
    }

    /// Runs sharing this key train together.
    fn shape_key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{:?}|{}|{}|{:?}",
            self.dataset,
            self.width,
            self.depth,
            self.slope,
            self.norm.name(),
            self.normalization,
            self.steps,
            self.batch_size,
            self.eval_steps
        )
    }

    /// Names the initial network and data order of repetition r (not the learning
    /// rate or the number of steps: runs that differ only there start alike).
    fn network_key(&self) -> Result<Key> {
        super::network_key(
            "train-network",
            self.dataset,
            &self.init,
            &self.arch(),
            self.normalization,
        )
    }
}

impl PointKey for TrainPoint {
    fn key(&self) -> Result<Key> {
        let eval_steps: Vec<u64> = self.eval_steps.iter().map(|&s| s as u64).collect();
        Ok(Key::new("train")
            .key("family", &self.network_key()?)
            .float("lr", self.lr)?
            .uint("repeats", self.repeats as u64)
            .uint("steps", self.steps as u64)
            .uint("batch_size", self.batch_size as u64)
            .uints("eval_steps", &eval_steps))
    }
}

/// One run: a point and a repetition.
#[derive(Debug, Clone, Copy)]
struct Run {
    point: usize,
    repeat: usize,
}

/// What a train experiment keeps besides its points.
pub struct TrainState {
    /// Jobs: the runs of one shape.
    groups: Vec<Vec<Run>>,
    /// κ₀ and c₀ of each dataset's inputs, for the theory column.
    inputs: InputCache,
}

fn unit(p: &TrainPoint, run: Run) -> UnitSpec {
    let arch = p.arch();
    let flops = 6.0 * p.steps as f64 * p.batch_size as f64 * arch.parameters_per_member() as f64;
    UnitSpec {
        id: unit_key(p).uint("repeat", run.repeat as u64).id(),
        label: format!(
            "{} w{} d{} lr {} {} repeat {}",
            p.init.name(),
            p.width,
            p.depth,
            p.lr,
            p.dataset,
            run.repeat
        ),
        cost: flops * 1e-12 + 1e-4 * (p.depth as f64 + 1.0) * p.steps as f64 / 500.0,
    }
}

/// Bytes one member needs while training, or while being initialised if that
/// takes more (MetaInit's third-order graph); in f64, so that an absurd shape
/// saturates rather than overflows before `prepare` refuses it.
fn bytes_per_member(p: &TrainPoint) -> f64 {
    let arch = p.arch();
    let params = arch.parameters_per_member() as f64;
    let acts =
        p.batch_size as f64 * (arch.width as f64 * (arch.depth as f64 + 1.0) + arch.input as f64);
    // parameters, gradient, two Adam moments, views; saved activations ×4;
    // the loss curve, one f32 per step, and its f64 copy in the results
    let training = 4.0 * (5.0 * params + 6.0 * acts) + 12.0 * p.steps as f64;
    training.max(p.init.init_bytes_per_member(&arch))
}

/// An ensemble of runs of one shape, initialised, with what its rows record.
struct Initialised {
    net: Ensemble,
    /// Member j of the ensemble is run `order[j]` of the chunk.
    order: Vec<usize>,
    /// Per run of the chunk: its network family and repetition, and its restarts.
    families: Vec<(Key, usize)>,
    restarts: Vec<usize>,
}

/// Initialises the runs of a chunk by initialiser (so that MetaInit runs
/// batched), then stacks them into one ensemble.
fn initialise(
    points: &[TrainPoint],
    runs: &[(Run, UnitSpec)],
    seed: u64,
    data: &Dataset,
) -> Result<Initialised> {
    let arch = points[runs[0].0.point].arch();
    let mut by_init: Vec<(Initializer, Vec<usize>)> = Vec::new();
    for (i, (run, _)) in runs.iter().enumerate() {
        let init = &points[run.point].init;
        match by_init.iter_mut().find(|(x, _)| x == init) {
            Some((_, members)) => members.push(i),
            None => by_init.push((init.clone(), vec![i])),
        }
    }
    // Member i's network and data order: repetition r of its point's network family.
    let families = runs
        .iter()
        .map(|(run, _)| Ok((points[run.point].network_key()?, run.repeat)))
        .collect::<Result<Vec<_>>>()?;
    let mut order: Vec<usize> = Vec::new();
    let mut stacks: Vec<Vec<Tensor>> = (0..=arch.depth).map(|_| Vec::new()).collect();
    let mut restarts = vec![0usize; runs.len()];
    for (init, members) in &by_init {
        let mut streams: Vec<_> = members
            .iter()
            .map(|&i| {
                let (family, repeat) = &families[i];
                member_streams(seed, family, *repeat, 1).remove(0)
            })
            .collect();
        let (net, report) = initialize(init, &arch, &mut streams, Some(&data.train_x))?;
        for (l, w) in net.weights.into_iter().enumerate() {
            stacks[l].push(w);
        }
        for (j, &i) in members.iter().enumerate() {
            restarts[i] = report.restarts[j];
        }
        order.extend(members);
    }
    let weights: Vec<Tensor> = stacks.iter().map(|s| Tensor::cat(s, 0)).collect();
    Ok(Initialised {
        net: Ensemble::from_weights(arch, weights),
        order,
        families,
        restarts,
    })
}

/// Trains a chunk of runs of one shape as one ensemble and hands their rows on.
fn train_runs(sweep: &Sweep<TrainPoint>, runs: &[(Run, UnitSpec)], todo: &mut Todo) -> Result<()> {
    let p0 = &sweep.points[runs[0].0.point];
    let seed = todo.ctx.seed;
    let data = todo.ctx.dataset(p0.dataset, p0.normalization)?;
    let init = initialise(&sweep.points, runs, seed, &data)?;
    let shuffles = init
        .order
        .iter()
        .map(|&i| {
            let (family, repeat) = &init.families[i];
            family
                .clone()
                .text("stream", "shuffle")
                .uint("member", *repeat as u64)
                .stream(seed)
        })
        .collect();
    let lrs = (init.order.iter())
        .map(|&i| sweep.points[runs[i].0.point].lr)
        .collect();
    let mut opts = TrainOptions::adam(p0.steps, p0.batch_size, lrs);
    opts.eval_at = p0.eval_steps.clone();
    let started = std::time::Instant::now();
    let results = train(&init.net, &data, shuffles, &opts)?;
    let secs = started.elapsed().as_secs_f64() / init.order.len() as f64;

    let mut table = Table::new();
    let mut units = Vec::new();
    for (j, &i) in init.order.iter().enumerate() {
        let (run, unit) = &runs[i];
        let p = &sweep.points[run.point];
        let inputs = (p.init.weight_kurtosis())
            .map(|kw| (kw, sweep.state.inputs.get(p.dataset, p.normalization, kw)));
        let done = Done {
            unit: &unit.id,
            repeat: run.repeat,
            seed,
            result: &results[j],
            restarts: init.restarts[i],
            seconds: secs,
        };
        table.push(row(p, inputs, &done));
        units.push(unit.clone());
    }
    (todo.sink)(table, &units)
}

/// A finished run, as its row records it.
struct Done<'a> {
    unit: &'a str,
    repeat: usize,
    seed: u64,
    result: &'a MemberResult,
    restarts: usize,
    seconds: f64,
}

/// The row of one run; `inputs` is the weights' kurtosis and the inputs'
/// moments where the initialiser is iid (the theory columns are null otherwise).
fn row(
    p: &TrainPoint,
    inputs: Option<(f64, Option<InputMoments>)>,
    d: &Done,
) -> Vec<(&'static str, Cell)> {
    let r = d.result;
    let last = r.evals.last().expect("the last step is evaluated");
    let float = |x: Option<f64>| x.map(Cell::Float).unwrap_or(Cell::NullFloat);
    let (kw, k0, c0, theory) = match inputs {
        Some((kw, m)) => {
            let (k0, c0) = m.map_or((f64::NAN, f64::NAN), |m| (m.kappa0, m.c0));
            let t = output_kurtosis(p.width, p.depth, p.slope, kw, k0, c0).unwrap_or(f64::NAN);
            (Some(kw), Some(k0), Some(c0), Some(t))
        }
        None => (None, None, None, None),
    };
    let tail = r.train_loss.len().saturating_sub(10);
    let final_train = r.train_loss[tail..].iter().map(|&x| x as f64).sum::<f64>()
        / (r.train_loss.len() - tail).max(1) as f64;
    vec![
        (col::WORK_UNIT, d.unit.into()),
        (col::DATASET, p.dataset.to_string().into()),
        (col::INIT, p.init.name().into()),
        (col::WIDTH, p.width.into()),
        (col::DEPTH, p.depth.into()),
        (col::LR, p.lr.into()),
        (col::SLOPE, p.slope.into()),
        (col::NORM, p.norm.name().into()),
        (col::REPEAT, d.repeat.into()),
        (col::SEED, d.seed.into()),
        (col::STEPS, p.steps.into()),
        (col::BATCH_SIZE, p.batch_size.into()),
        (col::TEST_ACC, last.test_acc.into()),
        (col::TEST_LOSS, last.test_loss.into()),
        (col::TRAIN_LOSS_FINAL, final_train.into()),
        (col::DIVERGED, r.diverged_at.is_some().into()),
        (
            col::DIVERGED_STEP,
            r.diverged_at.map_or(-1, |s| s as i64).into(),
        ),
        (col::KAPPA_W, float(kw)),
        (col::KAPPA0, float(k0)),
        (col::C0, float(c0)),
        (col::THEORY_KURTOSIS, float(theory)),
        (col::RESTARTS, d.restarts.into()),
        (col::SECONDS, d.seconds.into()),
        (
            col::TRAIN_LOSS,
            Cell::FloatList(r.train_loss.iter().map(|&x| x as f64).collect()),
        ),
        (
            col::EVAL_STEP,
            Cell::IntList(r.evals.iter().map(|e| e.step as i64).collect()),
        ),
        (
            col::EVAL_ACC,
            Cell::FloatList(r.evals.iter().map(|e| e.test_acc).collect()),
        ),
        (
            col::EVAL_LOSS,
            Cell::FloatList(r.evals.iter().map(|e| e.test_loss).collect()),
        ),
    ]
}

/// The columns of a train table.
pub const COLUMNS: &[&str] = columns! {
    WORK_UNIT, DATASET, INIT, WIDTH, DEPTH, LR, SLOPE, NORM, REPEAT, SEED, STEPS, BATCH_SIZE,
    TEST_ACC, TEST_LOSS, TRAIN_LOSS_FINAL, DIVERGED, DIVERGED_STEP, KAPPA_W, KAPPA0, C0,
    THEORY_KURTOSIS, RESTARTS, SECONDS, TRAIN_LOSS, EVAL_STEP, EVAL_ACC, EVAL_LOSS,
};

impl Point for TrainPoint {
    const KIND: super::Kind = super::Kind::Train;
    const LIST_FIELDS: &'static [&'static str] = &["eval_steps"];
    type State = TrainState;

    fn validate(&self) -> Result<()> {
        self.check()
    }
    /// Groups the runs by shape: a job trains one shape's runs together.
    fn state(points: &[Self]) -> TrainState {
        let mut by_shape: BTreeMap<String, Vec<Run>> = BTreeMap::new();
        let mut order = Vec::new();
        for (i, p) in points.iter().enumerate() {
            let key = p.shape_key();
            if !by_shape.contains_key(&key) {
                order.push(key.clone());
            }
            let runs = by_shape.entry(key).or_default();
            runs.extend((0..p.repeats).map(|repeat| Run { point: i, repeat }));
        }
        let groups = order
            .into_iter()
            .map(|k| by_shape.remove(&k).expect("present"))
            .collect();
        TrainState {
            groups,
            inputs: InputCache::default(),
        }
    }
    fn jobs(sweep: &Sweep<Self>) -> Vec<Job> {
        (sweep.state.groups.iter().enumerate())
            .map(|(index, runs)| Job {
                index,
                units: runs
                    .iter()
                    .map(|&r| unit(&sweep.points[r.point], r))
                    .collect(),
            })
            .collect()
    }
    fn prepare(sweep: &Sweep<Self>, ctx: &mut Context) -> Result<serde_json::Value> {
        // A shape that cannot fit even one network is refused before any dataset
        // is loaded or unit runs.
        for p in &sweep.points {
            let what = one_network(
                &p.init,
                p.width,
                p.depth,
                format!("{} (batch_size {})", p.dataset, p.batch_size),
            );
            let smaller = match p.init {
                Initializer::MetaInit(_) | Initializer::Lsuv(_) => {
                    "width, depth, batch_size or the initialiser's `batch`"
                }
                _ => "width, depth or batch_size",
            };
            ctx.check_fits(&what, bytes_per_member(p), smaller)?;
        }
        let described =
            ctx.describe_datasets(sweep.points.iter().map(|p| (p.dataset, p.normalization)))?;
        for p in &sweep.points {
            if let Some(kw) = p.init.weight_kurtosis() {
                sweep
                    .state
                    .inputs
                    .fill(ctx, p.dataset, p.normalization, kw)?;
            }
            let train_len = ctx.dataset(p.dataset, p.normalization)?.train_len();
            if p.batch_size > train_len {
                bail!(
                    "`batch_size` {} exceeds the {train_len} training examples of {}",
                    p.batch_size,
                    p.dataset
                );
            }
        }
        Ok(described)
    }
    fn run_job(sweep: &Sweep<Self>, mut todo: Todo) -> Result<()> {
        let runs = &sweep.state.groups[todo.job.index];
        let pending: Vec<(Run, UnitSpec)> = (todo.pending.iter())
            .map(|&u| (runs[u], todo.job.units[u].clone()))
            .collect();
        // Runs of one job share a shape but not an initialiser: size for the largest.
        let per = pending
            .iter()
            .map(|(run, _)| bytes_per_member(&sweep.points[run.point]))
            .fold(1.0, f64::max);
        let ensemble = ((todo.ctx.memory_budget as f64 / per) as usize).clamp(1, pending.len());
        for chunk in pending.chunks(ensemble) {
            train_runs(sweep, chunk, &mut todo)?;
        }
        Ok(())
    }
}
