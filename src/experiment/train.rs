//! `kind: train` (the paper's Figs. 1 and 3): for each initialiser, width, depth,
//! learning rate, slope, normalisation, dataset and repetition, Adam on
//! cross-entropy for a number of steps; test loss and accuracy on the whole test set
//! at the end (and at optional intermediate steps); the training-loss curve. Runs
//! of one shape train together as an ensemble (their jobs), each with its own
//! initial network and its own shuffling. One row per run.

use super::input_stats::exact_for_kurtosis;
use super::{Context, Experiment, Job, PointKey, Sink, UnitSpec, typed_points, unit_key};
use crate::config::ExperimentConfig;
use crate::data::{DatasetName, Normalization};
use crate::init::{Initializer, initialize, member_streams};
use crate::net::{Arch, Ensemble, Norm};
use crate::results::{Cell, Table};
use crate::seed::Key;
use crate::theory::output_kurtosis;
use crate::train::{TrainOptions, train};
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

    fn validate(&self) -> Result<()> {
        use crate::config::check;
        if self.width == 0 {
            bail!("`width` must be at least 1");
        }
        check::positive("lr", self.lr)?;
        check::network_slope(self.slope)?;
        if self.repeats == 0 {
            bail!("`repeats` must be at least 1");
        }
        check::at_most(
            "repeats",
            self.repeats as u64,
            MAX_REPEATS as u64,
            "each repetition is a work unit, listed before work starts",
        )?;
        // With no step there is no training loss, and the row would report 0.
        check::at_least("steps", self.steps as u64, 1)?;
        if self.batch_size == 0 {
            bail!("`batch_size` must be at least 1");
        }
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

pub struct TrainExperiment {
    name: String,
    points: Vec<TrainPoint>,
    /// Jobs: runs of one shape.
    groups: Vec<Vec<Run>>,
    /// Per (dataset, normalisation, κ_w bits): κ₀ and c₀ of the input, for the theory column.
    input_stats: std::sync::Mutex<BTreeMap<(String, u64), (f64, f64)>>,
}

impl TrainExperiment {
    pub fn from_config(exp: &ExperimentConfig) -> Result<Self> {
        let points = typed_points(exp, &["eval_steps"], TrainPoint::validate)?;
        let mut by_shape: BTreeMap<String, Vec<Run>> = BTreeMap::new();
        let mut order = Vec::new();
        for (i, p) in points.iter().enumerate() {
            let key = p.shape_key();
            if !by_shape.contains_key(&key) {
                order.push(key.clone());
            }
            let runs = by_shape.entry(key).or_default();
            for r in 0..p.repeats {
                runs.push(Run {
                    point: i,
                    repeat: r,
                });
            }
        }
        let groups = order
            .into_iter()
            .map(|k| by_shape.remove(&k).expect("present"))
            .collect();
        Ok(TrainExperiment {
            name: exp.name.clone(),
            points,
            groups,
            input_stats: Default::default(),
        })
    }

    fn unit(&self, run: Run) -> UnitSpec {
        let p = &self.points[run.point];
        let arch = p.arch();
        let flops =
            6.0 * p.steps as f64 * p.batch_size as f64 * arch.parameters_per_member() as f64;
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

    fn stats_key(p: &TrainPoint, kw: f64) -> (String, u64) {
        (format!("{}|{:?}", p.dataset, p.normalization), kw.to_bits())
    }

    /// Bytes one member needs while training, or while being initialised if that
    /// takes more (MetaInit's third-order graph); in f64, so that an absurd shape
    /// saturates rather than overflows before `prepare` refuses it.
    fn bytes_per_member(p: &TrainPoint) -> f64 {
        let arch = p.arch();
        let params = arch.parameters_per_member() as f64;
        let acts = p.batch_size as f64
            * (arch.width as f64 * (arch.depth as f64 + 1.0) + arch.input as f64);
        // parameters, gradient, two Adam moments, views; saved activations ×4;
        // the loss curve, one f32 per step, and its f64 copy in the results
        let training = 4.0 * (5.0 * params + 6.0 * acts) + 12.0 * p.steps as f64;
        training.max(p.init.init_bytes_per_member(&arch))
    }

    fn train_runs(
        &self,
        runs: &[(Run, UnitSpec)],
        ctx: &mut Context,
        sink: &mut Sink,
    ) -> Result<()> {
        let p0 = &self.points[runs[0].0.point];
        let data = ctx.dataset(p0.dataset, p0.normalization)?;
        let arch = p0.arch();
        // Initialise by initialiser (so that MetaInit runs batched), then stack.
        let mut by_init: Vec<(Initializer, Vec<usize>)> = Vec::new();
        for (i, (run, _)) in runs.iter().enumerate() {
            let init = &self.points[run.point].init;
            match by_init.iter_mut().find(|(x, _)| x == init) {
                Some((_, members)) => members.push(i),
                None => by_init.push((init.clone(), vec![i])),
            }
        }
        let mut order: Vec<usize> = Vec::new();
        let mut stacks: Vec<Vec<Tensor>> = (0..=arch.depth).map(|_| Vec::new()).collect();
        let mut restarts = vec![0usize; runs.len()];
        // Member i's network and data order: repetition r of its point's network family.
        let families = runs
            .iter()
            .map(|(run, _)| Ok((self.points[run.point].network_key()?, run.repeat)))
            .collect::<Result<Vec<_>>>()?;
        for (init, members) in &by_init {
            let mut streams: Vec<_> = members
                .iter()
                .map(|&i| {
                    let (family, repeat) = &families[i];
                    member_streams(ctx.seed, family, *repeat, 1).remove(0)
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
        let net = Ensemble::from_weights(arch, weights);
        let shuffles = order
            .iter()
            .map(|&i| {
                let (family, repeat) = &families[i];
                family
                    .clone()
                    .text("stream", "shuffle")
                    .uint("member", *repeat as u64)
                    .stream(ctx.seed)
            })
            .collect();
        let mut opts = TrainOptions::adam(
            p0.steps,
            p0.batch_size,
            order
                .iter()
                .map(|&i| self.points[runs[i].0.point].lr)
                .collect(),
        );
        opts.eval_at = p0.eval_steps.clone();
        let started = std::time::Instant::now();
        let results = train(&net, &data, shuffles, &opts)?;
        let secs = started.elapsed().as_secs_f64() / order.len() as f64;

        let mut table = Table::new();
        let mut units = Vec::new();
        for (j, &i) in order.iter().enumerate() {
            let (run, unit) = &runs[i];
            let p = &self.points[run.point];
            let r = &results[j];
            let last = r.evals.last().expect("the last step is evaluated");
            let (kappa_w, kappa0, c0, theory) = match p.init.weight_kurtosis() {
                Some(kw) => {
                    let (k0, c0) = self
                        .input_stats
                        .lock()
                        .expect("not poisoned")
                        .get(&Self::stats_key(p, kw))
                        .copied()
                        .unwrap_or((f64::NAN, f64::NAN));
                    let t =
                        output_kurtosis(p.width, p.depth, p.slope, kw, k0, c0).unwrap_or(f64::NAN);
                    (
                        Cell::Float(kw),
                        Cell::Float(k0),
                        Cell::Float(c0),
                        Cell::Float(t),
                    )
                }
                None => (
                    Cell::NullFloat,
                    Cell::NullFloat,
                    Cell::NullFloat,
                    Cell::NullFloat,
                ),
            };
            let tail = r.train_loss.len().saturating_sub(10);
            let final_train = r.train_loss[tail..].iter().map(|&x| x as f64).sum::<f64>()
                / (r.train_loss.len() - tail).max(1) as f64;
            table.push(vec![
                ("work_unit", unit.id.as_str().into()),
                ("dataset", p.dataset.to_string().into()),
                ("init", p.init.name().into()),
                ("width", p.width.into()),
                ("depth", p.depth.into()),
                ("lr", p.lr.into()),
                ("slope", p.slope.into()),
                ("norm", p.norm.name().into()),
                ("repeat", run.repeat.into()),
                ("seed", ctx.seed.into()),
                ("steps", p.steps.into()),
                ("batch_size", p.batch_size.into()),
                ("test_acc", last.test_acc.into()),
                ("test_loss", last.test_loss.into()),
                ("train_loss_final", final_train.into()),
                ("diverged", r.diverged_at.is_some().into()),
                (
                    "diverged_step",
                    r.diverged_at.map(|s| s as i64).unwrap_or(-1).into(),
                ),
                ("kappa_w", kappa_w),
                ("kappa0", kappa0),
                ("c0", c0),
                ("theory_kurtosis", theory),
                ("restarts", restarts[i].into()),
                ("seconds", secs.into()),
                (
                    "train_loss",
                    Cell::FloatList(r.train_loss.iter().map(|&x| x as f64).collect()),
                ),
                (
                    "eval_step",
                    Cell::IntList(r.evals.iter().map(|e| e.step as i64).collect()),
                ),
                (
                    "eval_acc",
                    Cell::FloatList(r.evals.iter().map(|e| e.test_acc).collect()),
                ),
                (
                    "eval_loss",
                    Cell::FloatList(r.evals.iter().map(|e| e.test_loss).collect()),
                ),
            ]);
            units.push(unit.clone());
        }
        sink(table, &units)
    }
}

impl Experiment for TrainExperiment {
    fn kind(&self) -> &'static str {
        "train"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn resolved(&self) -> serde_yaml::Value {
        super::resolved_points(&self.points)
    }
    fn jobs(&self) -> Vec<Job> {
        self.groups
            .iter()
            .enumerate()
            .map(|(i, runs)| Job {
                index: i,
                units: runs.iter().map(|&r| self.unit(r)).collect(),
            })
            .collect()
    }
    fn prepare(&self, ctx: &mut Context) -> Result<serde_json::Value> {
        // A shape that cannot fit even one network is refused before any dataset
        // is loaded or unit runs.
        for p in &self.points {
            let what = format!(
                "one network of `{}` width {} depth {} on {} (batch_size {})",
                p.init.name(),
                p.width,
                p.depth,
                p.dataset,
                p.batch_size
            );
            let smaller = match p.init {
                Initializer::MetaInit(_) | Initializer::Lsuv(_) => {
                    "width, depth, batch_size or the initialiser's `batch`"
                }
                _ => "width, depth or batch_size",
            };
            ctx.check_fits(&what, Self::bytes_per_member(p), smaller)?;
        }
        let mut described = Vec::new();
        let mut seen = Vec::new();
        for p in &self.points {
            let data = ctx.dataset(p.dataset, p.normalization)?;
            if !seen.contains(&(p.dataset, p.normalization)) {
                seen.push((p.dataset, p.normalization));
                described.push(data.describe());
            }
            if let Some(kw) = p.init.weight_kurtosis() {
                let key = Self::stats_key(p, kw);
                let mut stats = self.input_stats.lock().expect("not poisoned");
                stats
                    .entry(key)
                    .or_insert_with(|| exact_for_kurtosis(&data, kw));
            }
            if p.batch_size > data.train_len() {
                bail!(
                    "`batch_size` {} exceeds the {} training examples of {}",
                    p.batch_size,
                    data.train_len(),
                    p.dataset
                );
            }
        }
        Ok(serde_json::Value::Array(described))
    }
    fn run_job(
        &self,
        job: &Job,
        pending: &[usize],
        ctx: &mut Context,
        sink: &mut Sink,
    ) -> Result<()> {
        let runs = &self.groups[job.index];
        let pending: Vec<(Run, UnitSpec)> = pending
            .iter()
            .map(|&u| (runs[u], job.units[u].clone()))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        // Runs of one job share a shape but not an initialiser: size for the largest.
        let per = pending
            .iter()
            .map(|(run, _)| Self::bytes_per_member(&self.points[run.point]))
            .fold(1.0, f64::max);
        let ensemble = ((ctx.memory_budget as f64 / per) as usize).clamp(1, pending.len());
        for chunk in pending.chunks(ensemble) {
            self.train_runs(chunk, ctx, sink)?;
        }
        Ok(())
    }
}
