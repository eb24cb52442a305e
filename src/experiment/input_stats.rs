//! `kind: input_stats` and `initlab input-stats`: the kurtosis κ₀ and the
//! covariance of squares c₀ (÷σ⁴) of the He random vector z = W x of Proposition 2,
//! for x drawn from a dataset's (normalised) training inputs and W iid symmetric.
//!
//! The Monte Carlo estimate, as the paper forms it, from `samples` draws of z
//! entries: samples come in independent blocks, each a fresh matrix of R weight
//! rows times C inputs drawn uniformly from the training set (fresh Gaussian
//! inputs for the synthetic datasets), Z = W Xᵀ. Every entry of Z is a draw of
//! z_i; pairs of rows (2r, 2r+1) in one column are draws of (z_i, z_j), i ≠ j, with
//! the same x. With m₂, m₄, m₂₂ the means of z², z⁴ and z_i²z_j²:
//! κ₀ = m₄/m₂² and c₀ = (m₂₂ − m₂²)/m₂². Standard errors by the delta method over
//! the block means (blocks are independent; entries within a block are not).
//!
//! Conditioning on x gives the exact value too (the Rao–Blackwell form, averaged
//! over the whole training set): E[z⁴|x] ∝ 3‖x‖⁴ + (κ_w − 3)Σx_k⁴ and
//! E[z_i²z_j²|x] ∝ ‖x‖⁴, reported as `kappa0_exact` and `c0_exact`.

use super::columns::{self as col, columns};
use super::{Context, Job, Point, PointKey, Sweep, Todo, one_job_per_point, unit_key};
use crate::data::{Dataset, DatasetName, Normalization, synthetic};
use crate::init::dist::WeightDist;
use crate::results::{Cell, Table};
use crate::seed::Key;
use anyhow::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, btree_map::Entry};
use std::sync::Mutex;
use tch::{Kind, Tensor};

/// Weight rows and inputs per block (R × C samples).
const ROWS: usize = 64;
const INPUTS: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputStatsPoint {
    pub dataset: DatasetName,
    #[serde(default = "default_samples")]
    pub samples: u64,
    #[serde(default)]
    pub weights: WeightDist,
    #[serde(default)]
    pub normalization: Normalization,
}

fn default_samples() -> u64 {
    10_000_000
}

impl PointKey for InputStatsPoint {
    fn key(&self) -> Result<Key> {
        Ok(Key::new("input_stats")
            .text("dataset", &self.dataset.to_string())
            .uint("samples", self.samples)
            .text("weights", self.weights.name())
            .text("normalization", self.normalization.name()))
    }
}

/// The most draws an estimate may take: 1.5 million blocks of 64 × 1024 draws,
/// hours of matrix products, whose block means alone take 36 MB.
pub const MAX_SAMPLES: u64 = 100_000_000_000;

/// Checks a number of draws: at least 1, at most [`MAX_SAMPLES`].
pub fn check_samples(samples: u64) -> Result<()> {
    crate::config::check::at_least("samples", samples, 1)?;
    crate::config::check::at_most(
        "samples",
        samples,
        MAX_SAMPLES,
        "the estimate keeps one mean per 65,536 draws",
    )
}

/// The estimate with its standard errors.
#[derive(Debug, Clone, PartialEq)]
pub struct InputStats {
    pub samples: u64,
    pub blocks: usize,
    pub sigma2: f64,
    pub kappa0: f64,
    pub kappa0_se: f64,
    pub c0: f64,
    pub c0_se: f64,
    pub kappa0_exact: f64,
    pub c0_exact: f64,
}

/// Estimates κ₀ and c₀ from `samples` draws; `seed` fixes the weights and inputs drawn.
pub fn estimate(
    data: &Dataset,
    weights: WeightDist,
    samples: u64,
    seed: u64,
) -> Result<InputStats> {
    check_samples(samples)?;
    let per_block = (ROWS * INPUTS) as u64;
    let blocks = samples.div_ceil(per_block).max(2) as usize;
    let d = data.features();
    let n = data.train_len() as i64;
    let synthetic_shape = match data.name {
        DatasetName::Synthetic(s) => Some(s),
        _ => None,
    };
    let label = format!("{}/{}", data.name, weights.name());
    // Equal blocks: `columns` inputs each, so that blocks × ROWS × columns >= samples.
    let columns = (samples.div_ceil((blocks * ROWS) as u64) as usize).max(1);
    let mut block_means: Vec<[f64; 3]> = Vec::with_capacity(blocks);
    let _guard = tch::no_grad_guard();
    for b in 0..blocks {
        let mut rng = crate::seed::stream(seed, &["input_stats", &label, &b.to_string()]);
        let mut w = vec![0f32; ROWS * d];
        weights.fill(&mut rng, &mut w);
        let w = Tensor::from_slice(&w).view([ROWS as i64, d as i64]);
        let x = match synthetic_shape {
            Some(_) => Tensor::from_slice(&synthetic::gaussian_rows(
                &format!("input_stats/{seed}/{b}"),
                columns,
                d,
            ))
            .view([columns as i64, d as i64]),
            None => {
                let idx: Vec<i64> = (0..columns).map(|_| rng.random_range(0..n)).collect();
                data.train_x.index_select(0, &Tensor::from_slice(&idx))
            }
        };
        // [ROWS, columns] entries of z, scaled by 1/√d (the scale cancels in κ₀ and c₀)
        let z = w.matmul(&x.tr()).to_kind(Kind::Double) / (d as f64).sqrt();
        let z2 = z.square();
        let m2 = z2.mean(Kind::Double).double_value(&[]);
        let m4 = z2.square().mean(Kind::Double).double_value(&[]);
        let pairs = z2.view([(ROWS / 2) as i64, 2, columns as i64]);
        let m22 = (pairs.select(1, 0) * pairs.select(1, 1))
            .mean(Kind::Double)
            .double_value(&[]);
        block_means.push([m2, m4, m22]);
    }
    let bcount = block_means.len() as f64;
    let mean = |k: usize| block_means.iter().map(|m| m[k]).sum::<f64>() / bcount;
    let (m2, m4, m22) = (mean(0), mean(1), mean(2));
    let kappa0 = m4 / (m2 * m2);
    let c0 = (m22 - m2 * m2) / (m2 * m2);
    // Delta method over the independent blocks: SE² = gᵀ Σ g / B.
    let centre = [m2, m4, m22];
    let se = |grad: [f64; 3]| -> f64 {
        let ss: f64 = block_means
            .iter()
            .map(|m| {
                (0..3)
                    .map(|k| grad[k] * (m[k] - centre[k]))
                    .sum::<f64>()
                    .powi(2)
            })
            .sum();
        (ss / (bcount - 1.0) / bcount).sqrt()
    };
    let kappa0_se = se([-2.0 * m4 / m2.powi(3), 1.0 / (m2 * m2), 0.0]);
    let c0_se = se([-2.0 * m22 / m2.powi(3), 0.0, 1.0 / (m2 * m2)]);
    let (kappa0_exact, c0_exact) = exact(data, weights);
    Ok(InputStats {
        samples: (blocks * ROWS * columns) as u64,
        blocks: block_means.len(),
        sigma2: m2,
        kappa0,
        kappa0_se,
        c0,
        c0_se,
        kappa0_exact,
        c0_exact,
    })
}

/// κ₀ and c₀ exactly, conditioning on x and averaging over the training set (for the
/// synthetic datasets: the Gaussian-input formulas 3(1 + 2/D) + 3(κ_w − 3)/D and 2/D).
pub fn exact(data: &Dataset, weights: WeightDist) -> (f64, f64) {
    exact_for_kurtosis(data, weights.kurtosis())
}

/// Input statistics the theory columns need: κ₀, c₀ and E‖x‖².
#[derive(Debug, Clone, Copy)]
pub struct InputMoments {
    pub kappa0: f64,
    pub c0: f64,
    pub mean_sq_norm: f64,
}

/// The [`InputMoments`] of each (dataset, normalisation, weight kurtosis) an
/// experiment uses, computed once while it prepares and read by its units.
#[derive(Default)]
pub struct InputCache(Mutex<BTreeMap<(String, u64), InputMoments>>);

impl InputCache {
    fn key(dataset: DatasetName, normalization: Normalization, kw: f64) -> (String, u64) {
        (format!("{dataset}|{normalization:?}"), kw.to_bits())
    }

    /// Computes the moments for weights of kurtosis `kw` on the dataset, if not yet known.
    pub fn fill(
        &self,
        ctx: &mut Context,
        dataset: DatasetName,
        normalization: Normalization,
        kw: f64,
    ) -> Result<()> {
        let mut known = self.0.lock().expect("not poisoned");
        if let Entry::Vacant(e) = known.entry(Self::key(dataset, normalization, kw)) {
            let data = ctx.dataset(dataset, normalization)?;
            let (kappa0, c0) = exact_for_kurtosis(&data, kw);
            let mean_sq_norm = tch::no_grad(|| {
                data.train_x
                    .square()
                    .sum_dim_intlist([1i64].as_slice(), false, tch::Kind::Double)
                    .mean(tch::Kind::Double)
                    .double_value(&[])
            });
            e.insert(InputMoments {
                kappa0,
                c0,
                mean_sq_norm,
            });
        }
        Ok(())
    }

    /// The moments [`InputCache::fill`] computed.
    pub fn get(
        &self,
        dataset: DatasetName,
        normalization: Normalization,
        kw: f64,
    ) -> Option<InputMoments> {
        let known = self.0.lock().expect("not poisoned");
        known.get(&Self::key(dataset, normalization, kw)).copied()
    }
}

/// As [`exact`], for weights of kurtosis `kw`.
pub fn exact_for_kurtosis(data: &Dataset, kw: f64) -> (f64, f64) {
    if let DatasetName::Synthetic(s) = data.name {
        let d = s.features as f64;
        return (3.0 * (1.0 + 2.0 / d) + 3.0 * (kw - 3.0) / d, 2.0 / d);
    }
    let _guard = tch::no_grad_guard();
    let x = data.train_x.to_kind(Kind::Double);
    let sq = x.square();
    let norm2 = sq.sum_dim_intlist([1i64].as_slice(), false, Kind::Double); // [N] ‖x‖²
    let sum4 = sq
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Double); // [N] Σ x_k⁴
    let e2 = norm2.mean(Kind::Double).double_value(&[]);
    let e4 = norm2.square().mean(Kind::Double).double_value(&[]);
    let es4 = sum4.mean(Kind::Double).double_value(&[]);
    (
        (3.0 * e4 + (kw - 3.0) * es4) / (e2 * e2),
        (e4 - e2 * e2) / (e2 * e2),
    )
}

impl InputStats {
    /// The row written by `--out` and by the experiment kind.
    pub fn row(
        &self,
        unit: &str,
        dataset: &str,
        weights: WeightDist,
        normalization: Normalization,
        seed: u64,
    ) -> Vec<(&'static str, Cell)> {
        vec![
            (col::WORK_UNIT, unit.into()),
            (col::DATASET, dataset.into()),
            (col::WEIGHTS, weights.name().into()),
            (col::KAPPA_W, weights.kurtosis().into()),
            (
                col::NORMALIZATION,
                format!("{normalization:?}").to_lowercase().into(),
            ),
            (col::SEED, seed.into()),
            (col::SAMPLES, self.samples.into()),
            (col::BLOCKS, self.blocks.into()),
            (col::SIGMA2, self.sigma2.into()),
            (col::KAPPA0, self.kappa0.into()),
            (col::KAPPA0_SE, self.kappa0_se.into()),
            (col::C0, self.c0.into()),
            (col::C0_SE, self.c0_se.into()),
            (col::KAPPA0_EXACT, self.kappa0_exact.into()),
            (col::C0_EXACT, self.c0_exact.into()),
        ]
    }
}

/// The columns of an input_stats table.
pub const COLUMNS: &[&str] = columns! {
    WORK_UNIT, DATASET, WEIGHTS, KAPPA_W, NORMALIZATION, SEED, SAMPLES, BLOCKS, SIGMA2, KAPPA0,
    KAPPA0_SE, C0, C0_SE, KAPPA0_EXACT, C0_EXACT,
};

impl Point for InputStatsPoint {
    const KIND: super::Kind = super::Kind::InputStats;
    type State = ();

    fn validate(&self) -> Result<()> {
        check_samples(self.samples)
    }
    fn state(_: &[Self]) {}
    fn jobs(sweep: &Sweep<Self>) -> Vec<Job> {
        one_job_per_point(&sweep.points, |p| {
            let label = format!(
                "{} {} weights, {} samples",
                p.dataset,
                p.weights.name(),
                p.samples
            );
            (label, p.samples as f64 * p.dataset.features() as f64 * 1e-9)
        })
    }
    fn prepare(sweep: &Sweep<Self>, ctx: &mut Context) -> Result<serde_json::Value> {
        ctx.describe_datasets(sweep.points.iter().map(|p| (p.dataset, p.normalization)))
    }
    fn run_job(sweep: &Sweep<Self>, mut todo: Todo) -> Result<()> {
        let p = sweep.point_of(todo.job);
        let data = todo.ctx.dataset(p.dataset, p.normalization)?;
        let seed = unit_key(p).seed(todo.ctx.seed);
        let stats = estimate(&data, p.weights, p.samples, seed)?;
        let mut table = Table::new();
        table.push(stats.row(
            &todo.unit().id,
            &p.dataset.to_string(),
            p.weights,
            p.normalization,
            todo.ctx.seed,
        ));
        todo.finish_unit(table)
    }
}
