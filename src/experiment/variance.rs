//! `kind: variance` (the paper's Fig. 2): for each initialiser, width, depth,
//! slope and dataset, N networks; the unbiased empirical variance over the whole
//! training set of output unit 0 after every Linear layer (optionally of every
//! unit, and the empirical kurtosis), accumulated in f64. One row per (network,
//! layer[, neuron]). Networks come in blocks (the work units); a block runs as one
//! or more ensembles sized to fit the memory budget.

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
use crate::stats::StreamingMoments;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VariancePoint {
    pub dataset: DatasetName,
    pub init: Initializer,
    pub width: usize,
    pub depth: usize,
    #[serde(default)]
    pub slope: f64,
    #[serde(default)]
    pub norm: Norm,
    #[serde(default)]
    pub normalization: Normalization,
    /// Networks to draw.
    pub networks: usize,
    /// Networks per work unit (saved together).
    #[serde(default = "default_block")]
    pub block: usize,
    /// Statistics of every unit, not just unit 0.
    #[serde(default)]
    pub all_units: bool,
    /// Also the empirical kurtosis.
    #[serde(default)]
    pub kurtosis: bool,
    /// Which split the statistics run over.
    #[serde(default)]
    pub split: Split,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    #[default]
    Train,
    Test,
}

impl Split {
    /// The name, as in YAML.
    pub fn name(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

fn default_block() -> usize {
    250
}

impl VariancePoint {
    pub fn arch(&self) -> Arch {
        super::dataset_arch(self.dataset, self.width, self.depth, self.slope, self.norm)
    }

    fn check(&self) -> Result<()> {
        check::at_least("width", self.width as u64, 1)?;
        check::network_slope(self.slope)?;
        check::at_least("networks", self.networks as u64, 1)?;
        check::at_least("block", self.block as u64, 1)?;
        let blocks = self.networks.div_ceil(self.block);
        if blocks > MAX_BLOCKS {
            bail!(
                "`networks` {} in blocks of {} makes {blocks} work units, more than the {MAX_BLOCKS} a sweep point may have: raise `block` or lower `networks`",
                self.networks,
                self.block
            );
        }
        if self.norm == Norm::Batch {
            bail!(
                "`norm: batch` has no meaning for untrained networks here (it needs batch statistics from training); use none or layer"
            );
        }
        self.init.check_arch(&self.arch())
    }

    /// Names the family of networks: everything that shapes a network, not how many are drawn.
    pub fn family_key(&self) -> Result<Key> {
        super::network_key(
            "variance-networks",
            self.dataset,
            &self.init,
            &self.arch(),
            self.normalization,
        )
    }
}

impl PointKey for VariancePoint {
    fn key(&self) -> Result<Key> {
        Ok(Key::new("variance")
            .key("family", &self.family_key()?)
            .uint("networks", self.networks as u64)
            .uint("block", self.block as u64)
            .flag("all_units", self.all_units)
            .flag("kurtosis", self.kurtosis)
            .text("split", self.split.name()))
    }
}

/// Per network (member), per Linear layer, per neuron: the statistics of one block.
pub struct BlockStats {
    /// Global index of the first network.
    pub first: usize,
    pub networks: usize,
    pub layers: usize,
    pub neurons: usize,
    pub count: i64,
    /// `[layer][member][neuron]` flattened.
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    pub kurtosis: Vec<f64>,
    pub restarts: Vec<usize>,
}

/// Rows of inputs per forward chunk.
pub const CHUNK: i64 = 2048;

/// The most work units (blocks) one sweep point may have: every unit is listed
/// in memory, and in the run directory's shard names, before work starts.
const MAX_BLOCKS: usize = 100_000;

/// Bytes a result row takes on its way to Parquet (the columnar table, then the
/// data frame built from it): about 20 columns of 8–16 bytes, twice, plus strings.
const ROW_BYTES: f64 = 1024.0;

/// Moments of unit 0 of every Linear layer through the fused kernel, when the
/// network qualifies (no normalisation, width ≤ 16, depth ≥ 1); `[L, K, 1]` order.
pub fn unit0_moments_fused(net: &Ensemble, x: &Tensor) -> Option<crate::stats::Moments> {
    use crate::kernels::fused::{FusedWeights, Unit0Moments, unit0_moments};
    let arch = net.arch;
    if arch.norm != Norm::None || arch.depth == 0 || arch.width > 16 {
        return None;
    }
    let _guard = tch::no_grad_guard();
    let k = net.members;
    let w = arch.width as i64;
    let hidden = net.flat_layers(1..arch.depth);
    let flat = |t: &Tensor| Vec::<f32>::try_from(t.contiguous().reshape([-1])).expect("f32 tensor");
    let last = (
        flat(&net.weights[arch.depth].narrow(1, 0, 1)),
        flat(&net.biases[arch.depth].narrow(1, 0, 1)),
    );
    let weights = FusedWeights::new(arch.width, 1, arch.slope, &hidden, &last);
    let w0 = net.weights[0].reshape([k as i64 * w, -1]);
    let b0 = net.biases[0].reshape([k as i64 * w, 1]);
    let layers = arch.depth + 1;
    let mut acc = Unit0Moments::new(k, layers);
    let n = x.size()[0];
    let mut start = 0;
    while start < n {
        let len = (2 * CHUNK).min(n - start);
        let h0 = b0.addmm(&w0, &x.narrow(0, start, len).tr()).contiguous(); // [K·W, n]
        let chunk = unit0_moments(crate::kernels::tensor_slice(&h0), &weights, k, len as usize)?;
        acc.merge(&chunk);
        start += len;
    }
    let mut mean = vec![0.0; layers * k];
    let mut var = vec![0.0; layers * k];
    for j in 0..k {
        for l in 0..layers {
            let i = j * layers + l;
            mean[l * k + j] = acc.mean[i];
            var[l * k + j] = acc.m2[i] / (acc.count[i] as f64 - 1.0);
        }
    }
    Some(crate::stats::Moments {
        count: n,
        mean,
        var_unbiased: var,
        kurtosis: Vec::new(),
    })
}

/// Runs `x` through an ensemble in chunks, accumulating per-layer moments of unit 0
/// (or every unit of width `neurons`). Returns `[L, K, neurons]` moments.
pub fn layer_moments(
    net: &Ensemble,
    x: &Tensor,
    all_units: bool,
    kurtosis: bool,
) -> crate::stats::Moments {
    if !all_units
        && !kurtosis
        && let Some(m) = unit0_moments_fused(net, x)
    {
        return m;
    }
    layer_moments_tch(net, x, all_units, kurtosis)
}

/// As [`layer_moments`], entirely with libtorch ops (any width, normalisation, every
/// unit, kurtosis).
pub fn layer_moments_tch(
    net: &Ensemble,
    x: &Tensor,
    all_units: bool,
    kurtosis: bool,
) -> crate::stats::Moments {
    let _guard = tch::no_grad_guard();
    let k = net.members as i64;
    let layers = net.weights.len();
    let neurons = if all_units {
        net.arch.width.max(net.arch.classes) as i64
    } else {
        1
    };
    let mut acc: Vec<StreamingMoments> = (0..layers)
        .map(|_| StreamingMoments::new(&[k, neurons], kurtosis))
        .collect();
    let n = x.size()[0];
    let mut start = 0;
    while start < n {
        let len = CHUNK.min(n - start);
        let chunk = x.narrow(0, start, len);
        let _logits = net.forward_shared(&chunk, &mut |l, h| {
            // h: [K, out, n]
            let sel = if all_units {
                let out = h.size()[1];
                if out < neurons {
                    // pad narrower layers (the logits) with NaN-free zeros; trimmed when reported
                    Tensor::cat(
                        &[
                            h.shallow_clone(),
                            h.zeros_like().narrow(1, 0, neurons - out),
                        ],
                        1,
                    )
                } else {
                    h.shallow_clone()
                }
            } else {
                h.narrow(1, 0, 1)
            };
            acc[l].add(&sel);
        });
        start += len;
    }
    let parts: Vec<crate::stats::Moments> = acc.iter().map(|a| a.finish()).collect();
    crate::stats::Moments {
        count: parts[0].count,
        mean: parts.iter().flat_map(|m| m.mean.clone()).collect(),
        var_unbiased: parts.iter().flat_map(|m| m.var_unbiased.clone()).collect(),
        kurtosis: parts.iter().flat_map(|m| m.kurtosis.clone()).collect(),
    }
}

/// Bytes one member needs in the forward pass (weights plus a few activations)
/// and to be initialised; in f64, so that an absurd shape saturates rather than
/// overflows before `prepare` refuses it.
fn bytes_per_member(p: &VariancePoint) -> f64 {
    let arch = p.arch();
    let params = arch.parameters_per_member() as f64 * 4.0;
    let acts = 6.0 * CHUNK as f64 * arch.width.max(10) as f64 * 4.0;
    params + acts + p.init.init_bytes_per_member(&arch)
}

/// Bytes of one block's statistics ([`BlockStats`]) and of its result rows.
fn bytes_per_block(p: &VariancePoint) -> f64 {
    let neurons = if p.all_units {
        p.width.max(10) as f64
    } else {
        1.0
    };
    let values = (p.depth as f64 + 1.0) * p.block.min(p.networks) as f64 * neurons;
    let stats = if p.kurtosis { 3.0 } else { 2.0 };
    values * (8.0 * stats + ROW_BYTES)
}

/// The keys that make one member smaller, for the memory message.
fn smaller_member(init: &Initializer) -> &'static str {
    match init {
        Initializer::MetaInit(_) | Initializer::Lsuv(_) => {
            "width, depth or the initialiser's `batch`"
        }
        _ => "width or depth",
    }
}

/// Section 5's prediction per layer for an iid initialiser: the theoretical
/// variance σ_l² (σ₀² = Var(w)·E‖x‖², then ×Var(w)·fan_in·(1 + a²)/2 per layer, which
/// He keeps constant), the kurtosis κ_l (Proposition 3 from the dataset's κ₀, c₀) and
/// the quantiles of the empirical variance S² = σ_l² · Gamma(k, 1/k) over `samples` inputs.
pub struct Prediction {
    pub variance: Vec<f64>,
    pub kurtosis: Vec<f64>,
    /// `[layer][q50, q90, q99, q999]`, in the units of `emp_var`.
    pub quantiles: Vec<[f64; 4]>,
}

pub fn predict(p: &VariancePoint, input: InputMoments, samples: u64) -> Option<Prediction> {
    let kw = p.init.weight_kurtosis()?;
    let arch = p.arch();
    let moments = crate::theory::kurtosis_recursion(&crate::theory::RecursionInput {
        widths: vec![p.width; p.depth],
        slope: p.slope,
        kappa_w: kw,
        kappa0: input.kappa0,
        c0: input.c0,
    })
    .ok()?;
    let mut variance = Vec::with_capacity(moments.len());
    for (l, (fan_out, fan_in)) in arch.layer_dims().into_iter().enumerate() {
        let var_w = p.init.weight_variance(fan_in, fan_out, p.slope)?;
        variance.push(if l == 0 {
            var_w * input.mean_sq_norm
        } else {
            var_w * fan_in as f64 * (1.0 + p.slope * p.slope) / 2.0 * variance[l - 1]
        });
    }
    let quantiles = moments
        .iter()
        .zip(&variance)
        .map(|(m, v)| {
            let law = crate::theory::VarianceRatioLaw::new(m.kurtosis, samples.max(2));
            crate::theory::VARIANCE_QUANTILES.map(|(q, _)| v * law.quantile(q))
        })
        .collect();
    Some(Prediction {
        variance,
        kurtosis: moments.iter().map(|m| m.kurtosis).collect(),
        quantiles,
    })
}

fn units(p: &VariancePoint) -> Vec<UnitSpec> {
    let base = unit_key(p);
    let n = p.dataset.features() as f64;
    let per_net = (n * p.width as f64 + (p.depth as f64) * p.width as f64 * p.width as f64 + 1.0)
        * 1e-6
        * if matches!(p.init, Initializer::MetaInit(_)) {
            20.0
        } else {
            1.0
        };
    (0..p.networks.div_ceil(p.block))
        .map(|b| {
            let first = b * p.block;
            let count = p.block.min(p.networks - first);
            UnitSpec {
                id: base
                    .clone()
                    .uint("first", first as u64)
                    .uint("end", (first + count) as u64)
                    .id(),
                label: format!(
                    "{} w{} d{} {} networks {first}..{}",
                    p.init.name(),
                    p.width,
                    p.depth,
                    p.dataset,
                    first + count
                ),
                cost: per_net * count as f64,
            }
        })
        .collect()
}

fn block_stats(
    p: &VariancePoint,
    data: &Dataset,
    first: usize,
    count: usize,
    ctx: &Context,
) -> Result<BlockStats> {
    let arch = p.arch();
    let x = match p.split {
        Split::Train => &data.train_x,
        Split::Test => &data.test_x,
    };
    let ensemble =
        ((ctx.memory_budget as f64 / bytes_per_member(p).max(1.0)) as usize).clamp(1, count);
    let neurons = if p.all_units {
        arch.width.max(arch.classes)
    } else {
        1
    };
    let layers = arch.depth + 1;
    let mut out = BlockStats {
        first,
        networks: count,
        layers,
        neurons,
        count: 0,
        mean: vec![0.0; layers * count * neurons],
        var: vec![0.0; layers * count * neurons],
        kurtosis: if p.kurtosis {
            vec![0.0; layers * count * neurons]
        } else {
            Vec::new()
        },
        restarts: vec![0; count],
    };
    let family = p.family_key()?;
    let mut done = 0;
    while done < count {
        let k = ensemble.min(count - done);
        let mut streams = member_streams(ctx.seed, &family, first + done, k);
        let (net, report) = initialize(&p.init, &arch, &mut streams, Some(&data.train_x))?;
        let m = layer_moments(&net, x, p.all_units, p.kurtosis);
        out.count = m.count;
        for l in 0..layers {
            for j in 0..k {
                for u in 0..neurons {
                    let src = (l * k + j) * neurons + u;
                    let dst = (l * count + done + j) * neurons + u;
                    out.mean[dst] = m.mean[src];
                    out.var[dst] = m.var_unbiased[src];
                    if p.kurtosis {
                        out.kurtosis[dst] = m.kurtosis[src];
                    }
                }
            }
        }
        for j in 0..k {
            out.restarts[done + j] = report.restarts[j];
        }
        done += k;
    }
    Ok(out)
}

/// The columns of a variance table (`emp_kurtosis` only with `kurtosis: true`).
pub const COLUMNS: &[&str] = columns! {
    WORK_UNIT, DATASET, INIT, WIDTH, DEPTH, SLOPE, NORM, SEED, NETWORK, LAYER, NEURON, SAMPLES,
    EMP_MEAN, EMP_VAR, EMP_KURTOSIS, RESTARTS, THEORY_VARIANCE, THEORY_KURTOSIS,
    THEORY_VAR_Q[0], THEORY_VAR_Q[1], THEORY_VAR_Q[2], THEORY_VAR_Q[3],
};

impl Point for VariancePoint {
    const KIND: super::Kind = super::Kind::Variance;
    type State = InputCache;

    fn validate(&self) -> Result<()> {
        self.check()
    }
    fn state(_: &[Self]) -> InputCache {
        InputCache::default()
    }
    fn jobs(sweep: &Sweep<Self>) -> Vec<Job> {
        (sweep.points.iter().enumerate())
            .map(|(index, p)| Job {
                index,
                units: units(p),
            })
            .collect()
    }
    fn prepare(sweep: &Sweep<Self>, ctx: &mut Context) -> Result<serde_json::Value> {
        // Shapes that cannot fit even one network, or one block's statistics, are
        // refused before any dataset is loaded or unit runs.
        for p in &sweep.points {
            let what = one_network(&p.init, p.width, p.depth, p.dataset);
            ctx.check_fits(&what, bytes_per_member(p), smaller_member(&p.init))?;
            let what = format!(
                "a block of {} networks' statistics ({} layers{})",
                p.block.min(p.networks),
                p.depth + 1,
                if p.all_units { ", every unit" } else { "" }
            );
            ctx.check_fits(&what, bytes_per_block(p), "block or depth")?;
        }
        let described =
            ctx.describe_datasets(sweep.points.iter().map(|p| (p.dataset, p.normalization)))?;
        for p in &sweep.points {
            if let Some(kw) = p.init.weight_kurtosis() {
                sweep.state.fill(ctx, p.dataset, p.normalization, kw)?;
            }
        }
        Ok(described)
    }
    fn run_job(sweep: &Sweep<Self>, todo: Todo) -> Result<()> {
        let p = sweep.point_of(todo.job);
        let ctx = todo.ctx;
        let data = ctx.dataset(p.dataset, p.normalization)?;
        for &u in todo.pending {
            let unit = &todo.job.units[u];
            let first = u * p.block;
            let count = p.block.min(p.networks - first);
            let stats = block_stats(p, &data, first, count, ctx)?;
            let prediction = p.init.weight_kurtosis().and_then(|kw| {
                let input = sweep.state.get(p.dataset, p.normalization, kw)?;
                predict(p, input, stats.count as u64)
            });
            (todo.sink)(
                rows(p, &stats, prediction.as_ref(), &unit.id, ctx.seed),
                std::slice::from_ref(unit),
            )?;
        }
        Ok(())
    }
}

/// The tidy rows of one block.
pub fn rows(
    p: &VariancePoint,
    s: &BlockStats,
    prediction: Option<&Prediction>,
    work_unit: &str,
    seed: u64,
) -> Table {
    let mut t = Table::new();
    let init = p.init.name();
    let dataset = p.dataset.to_string();
    for j in 0..s.networks {
        for l in 0..s.layers {
            let out_width = if l == s.layers - 1 { 10 } else { p.width };
            for u in 0..s.neurons.min(if p.all_units { out_width } else { 1 }) {
                let i = (l * s.networks + j) * s.neurons + u;
                let mut row: Vec<(&str, Cell)> = vec![
                    (col::WORK_UNIT, work_unit.into()),
                    (col::DATASET, dataset.as_str().into()),
                    (col::INIT, init.into()),
                    (col::WIDTH, p.width.into()),
                    (col::DEPTH, p.depth.into()),
                    (col::SLOPE, p.slope.into()),
                    (col::NORM, p.norm.name().into()),
                    (col::SEED, seed.into()),
                    (col::NETWORK, (s.first + j).into()),
                    (col::LAYER, l.into()),
                    (col::NEURON, u.into()),
                    (col::SAMPLES, s.count.into()),
                    (col::EMP_MEAN, s.mean[i].into()),
                    (col::EMP_VAR, s.var[i].into()),
                ];
                if p.kurtosis {
                    row.push((col::EMP_KURTOSIS, s.kurtosis[i].into()));
                }
                row.push((col::RESTARTS, s.restarts[j].into()));
                let theory = |v: Option<f64>| v.map(Cell::Float).unwrap_or(Cell::NullFloat);
                row.push((
                    col::THEORY_VARIANCE,
                    theory(prediction.map(|x| x.variance[l])),
                ));
                row.push((
                    col::THEORY_KURTOSIS,
                    theory(prediction.map(|x| x.kurtosis[l])),
                ));
                for (q, name) in col::THEORY_VAR_Q.iter().enumerate() {
                    row.push((name, theory(prediction.map(|x| x.quantiles[l][q]))));
                }
                t.push(row);
            }
        }
    }
    t
}
