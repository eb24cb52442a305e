//! MetaInit (Dauphin & Schoenholz 2019), started from He normal, for a whole
//! ensemble at once. Each step draws, per member, a batch of standard-normal
//! inputs and uniform random labels from the member's own stream; with the
//! cross-entropy L, its gradient g and the Hessian-vector product Hg (the gradient
//! of Σ g²/2, second order through `run_backward` with `create_graph`), the gradient
//! quotient GQ = mean over the member's parameters of |(g − Hg)/(g + ε·sign(g)) − 1|
//! (sign(0) = +1). Only the norms of weight matrices move: for each, with n = ‖W‖ and
//! s = sign(⟨W, ∂GQ/∂W⟩/n), m ← μ m − lr s and W ← W (n + m)/n.
//!
//! Members are independent: the ensemble's objective is the sum of the members'
//! quotients, whose gradient with respect to member k's weights is member k's own.
//! A member that degenerates (NaN or infinity) is restarted from a fresh He start
//! drawn from its stream, as the authors did, up to `max_restarts` times; restarts
//! are counted in the report.

use super::dist::WeightDist;
use super::schemes::draw_stack;
use super::{InitReport, Initializer, schemes};
use crate::net::{Arch, Ensemble, Norm};
use crate::seed::Stream;
use anyhow::{Result, bail};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaInitParams {
    #[serde(default = "d_steps")]
    pub steps: usize,
    #[serde(default = "d_batch")]
    pub batch: usize,
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default = "d_momentum")]
    pub momentum: f64,
    #[serde(default = "d_eps")]
    pub eps: f64,
    #[serde(default = "d_restarts")]
    pub max_restarts: usize,
}

fn d_steps() -> usize {
    500
}
fn d_batch() -> usize {
    32
}
fn d_lr() -> f64 {
    0.1
}
fn d_momentum() -> f64 {
    0.9
}
fn d_eps() -> f64 {
    1e-5
}
fn d_restarts() -> usize {
    5
}

impl Default for MetaInitParams {
    fn default() -> Self {
        MetaInitParams {
            steps: d_steps(),
            batch: d_batch(),
            lr: d_lr(),
            momentum: d_momentum(),
            eps: d_eps(),
            max_restarts: d_restarts(),
        }
    }
}

/// What MetaInit differentiates: per layer Wᵀ `[K, in, out]` and b `[K, 1, out]`
/// as leaves, in the layout that makes each layer one `baddbmm` (fewer autograd
/// nodes: the third-order graph is long, and its cost is per node).
struct Params {
    wt: Vec<Tensor>,
    b: Vec<Tensor>,
    slope: f64,
}

impl Params {
    fn new(weights: &[Tensor], slope: f64) -> Params {
        let wt: Vec<Tensor> = weights
            .iter()
            .map(|w| {
                w.detach()
                    .transpose(1, 2)
                    .contiguous()
                    .set_requires_grad(true)
            })
            .collect();
        let b = wt
            .iter()
            .map(|w| {
                let s = w.size();
                Tensor::zeros([s[0], 1, s[2]], (Kind::Float, tch::Device::Cpu))
                    .set_requires_grad(true)
            })
            .collect();
        Params { wt, b, slope }
    }

    fn all(&self) -> Vec<&Tensor> {
        self.wt.iter().chain(self.b.iter()).collect()
    }

    /// Logits `[K, B, C]` of inputs `[K, B, in]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        let last = self.wt.len() - 1;
        for (l, (w, b)) in self.wt.iter().zip(&self.b).enumerate() {
            h = b.baddbmm(&h, w, 1.0, 1.0); // [K, B, out]
            if l < last {
                h = if self.slope == 0.0 {
                    h.relu()
                } else {
                    h.prelu(&Tensor::from_slice(&[self.slope as f32]))
                };
            }
        }
        h
    }

    /// Per member: the gradient quotient of a batch, `[K]`, differentiable in the parameters.
    fn gradient_quotient(&self, x: &Tensor, y: &Tensor, eps: f64) -> Tensor {
        let params = self.all();
        let k = x.size()[0];
        let loss = Ensemble::cross_entropy(&self.forward(x), y).sum(Kind::Float);
        assert!(
            loss.requires_grad(),
            "gradient_quotient needs gradients enabled"
        );
        // Per parameter tensor, no concatenation: the third-order backward of a
        // `cat` of 200 gradients is 200 zero-filled copies of the whole vector.
        let g = Tensor::run_backward(&[&loss], &params, true, true);
        let half_sq = g.iter().map(|t| t.square().sum(Kind::Float)).fold(
            Tensor::zeros([], (Kind::Float, tch::Device::Cpu)),
            |a, b| a + b,
        ) / 2.0;
        let hg = Tensor::run_backward(&[&half_sq], &params, true, true);
        let mut total = Tensor::zeros([k], (Kind::Float, tch::Device::Cpu));
        let mut count = 0i64;
        for (g, hg) in g.iter().zip(&hg) {
            let sign = (g.ge(0.0).to_kind(Kind::Float) * 2.0 - 1.0).detach();
            let term = ((g - hg) / (g + sign * eps) - 1.0).abs();
            count += term.numel() as i64 / k;
            total = total
                + term
                    .reshape([k, -1])
                    .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        }
        total / count as f64
    }

    fn weights(&self) -> Vec<Tensor> {
        self.wt
            .iter()
            .map(|w| w.detach().transpose(1, 2).contiguous())
            .collect()
    }
}

/// Per member: the gradient quotient of `net` (its weights, zero biases) on a batch
/// of inputs `[K, B, in]` and labels `[K, B]`.
pub fn gradient_quotient(net: &Ensemble, x: &Tensor, y: &Tensor, eps: f64) -> Vec<f64> {
    tch::with_grad(|| {
        let params = Params::new(&net.weights, net.arch.slope);
        Vec::<f64>::try_from(
            params
                .gradient_quotient(x, y, eps)
                .detach()
                .to_kind(Kind::Double),
        )
        .expect("f64")
    })
}

/// A batch for every member from its stream: inputs `[K, B, in]`, labels `[K, B]`.
fn random_batch(
    streams: &mut [Stream],
    batch: usize,
    input: usize,
    classes: usize,
) -> (Tensor, Tensor) {
    let x = draw_stack(streams, WeightDist::Normal, batch, input);
    let labels: Vec<i64> = streams
        .iter_mut()
        .flat_map(|rng| {
            (0..batch)
                .map(|_| rng.random_range(0..classes as i64))
                .collect::<Vec<_>>()
        })
        .collect();
    (
        x,
        Tensor::from_slice(&labels).view([streams.len() as i64, batch as i64]),
    )
}

/// Runs MetaInit on `streams.len()` members.
pub fn metainit(
    p: &MetaInitParams,
    arch: &Arch,
    streams: &mut [Stream],
) -> Result<(Ensemble, InitReport)> {
    if arch.norm != Norm::None {
        bail!("metainit is defined here for networks without normalisation layers (norm: none)");
    }
    if p.batch == 0 {
        bail!("metainit `batch` must be at least 1");
    }
    let k = streams.len();
    let mut report = InitReport {
        restarts: vec![0; k],
        gq_start: vec![f64::NAN; k],
        gq_end: vec![f64::NAN; k],
    };
    let mut weights: Vec<Tensor> = Vec::new();
    let mut active: Vec<usize> = (0..k).collect();
    let mut attempt = 0;
    while !active.is_empty() {
        let mut sub: Vec<Stream> = active.iter().map(|&i| streams[i].clone()).collect();
        let start = schemes::weights(&Initializer::He(WeightDist::Normal), arch, &mut sub)?;
        let (tuned, failed, gq0, gq1) = run_parallel(p, arch, start, &mut sub);
        for (j, &i) in active.iter().enumerate() {
            streams[i] = sub[j].clone();
        }
        if weights.is_empty() {
            weights = tuned.iter().map(|t| t.shallow_clone()).collect();
        } else {
            let index = Tensor::from_slice(&active.iter().map(|&i| i as i64).collect::<Vec<_>>());
            for (w, t) in weights.iter_mut().zip(&tuned) {
                let _ = w.index_copy_(0, &index, t);
            }
        }
        let mut again = Vec::new();
        for (j, &i) in active.iter().enumerate() {
            report.gq_start[i] = gq0[j];
            report.gq_end[i] = gq1[j];
            if failed[j] {
                report.restarts[i] += 1;
                again.push(i);
            }
        }
        attempt += 1;
        if attempt > p.max_restarts {
            // Still degenerate after every retry: keep what the last attempt gave
            // (recorded as restarts = max_restarts + 1).
            break;
        }
        active = again;
    }
    Ok((Ensemble::from_weights(*arch, weights), report))
}

/// Runs [`run`] on parts of the ensemble in parallel OS threads, one libtorch
/// thread each: MetaInit's third-order graph is a long chain of small ops, where
/// libtorch's own intra-op threads spend their time waiting on each other.
/// Members are independent, so the split changes nothing in the results.
fn run_parallel(
    p: &MetaInitParams,
    arch: &Arch,
    start: Vec<Tensor>,
    streams: &mut [Stream],
) -> (Vec<Tensor>, Vec<bool>, Vec<f64>, Vec<f64>) {
    let k = streams.len();
    let threads = (tch::get_num_threads().max(1) as usize).min(k);
    if threads < 2 {
        return run(p, arch, start, streams);
    }
    let previous = tch::get_num_threads();
    tch::set_num_threads(1);
    let base = k / threads;
    let extra = k % threads;
    let parts = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        let mut rest: &mut [Stream] = streams;
        let mut lo = 0;
        for t in 0..threads {
            let len = base + usize::from(t < extra);
            let (mine, tail) = rest.split_at_mut(len);
            rest = tail;
            let chunk: Vec<Tensor> = start
                .iter()
                .map(|w| w.narrow(0, lo as i64, len as i64).copy())
                .collect();
            lo += len;
            handles.push(scope.spawn(move || tch::with_grad(|| run(p, arch, chunk, mine))));
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("a MetaInit thread panicked"))
            .collect::<Vec<_>>()
    });
    tch::set_num_threads(previous);
    let layers = parts[0].0.len();
    let weights = (0..layers)
        .map(|l| Tensor::cat(&parts.iter().map(|part| &part.0[l]).collect::<Vec<_>>(), 0))
        .collect();
    let mut failed = Vec::with_capacity(k);
    let mut gq0 = Vec::with_capacity(k);
    let mut gq1 = Vec::with_capacity(k);
    for part in parts {
        failed.extend(part.1);
        gq0.extend(part.2);
        gq1.extend(part.3);
    }
    (weights, failed, gq0, gq1)
}

/// One MetaInit run from `start`; returns the weights, which members failed, and
/// the gradient quotient at the start and at the end.
fn run(
    p: &MetaInitParams,
    arch: &Arch,
    start: Vec<Tensor>,
    streams: &mut [Stream],
) -> (Vec<Tensor>, Vec<bool>, Vec<f64>, Vec<f64>) {
    let k = streams.len();
    let params = Params::new(&start, arch.slope);
    drop(start);
    let mut momentum: Vec<Tensor> = params
        .wt
        .iter()
        .map(|_| Tensor::zeros([k as i64], (Kind::Float, tch::Device::Cpu)))
        .collect();
    let mut failed = vec![false; k];
    let mut gq_start = vec![f64::NAN; k];
    let quotient = |params: &Params, streams: &mut [Stream]| -> Tensor {
        let (x, y) = random_batch(streams, p.batch, arch.input, arch.classes);
        params.gradient_quotient(&x, &y, p.eps)
    };
    for step in 0..p.steps {
        let gq = quotient(&params, streams);
        let values = Vec::<f64>::try_from(gq.detach().to_kind(Kind::Double))
            .unwrap_or_else(|_| vec![f64::NAN; k]);
        if step == 0 {
            gq_start = values.clone();
        }
        let mut mask = vec![1f32; k];
        for i in 0..k {
            if !values[i].is_finite() {
                failed[i] = true;
            }
            if failed[i] {
                mask[i] = 0.0;
            }
        }
        let mask_t = Tensor::from_slice(&mask);
        let objective = gq
            .where_self(&mask_t.gt(0.0), &gq.zeros_like())
            .sum(Kind::Float);
        let grads = Tensor::run_backward(&[&objective], &params.wt, false, false);
        tch::no_grad(|| {
            for ((w, g), m) in params.wt.iter().zip(&grads).zip(momentum.iter_mut()) {
                let dims = [1i64, 2].as_slice();
                let norm = w.square().sum_dim_intlist(dims, false, Kind::Float).sqrt(); // [K]
                let dot = (w * g).sum_dim_intlist(dims, false, Kind::Float); // [K]
                let s = (dot / &norm).sign();
                *m = &*m * p.momentum - s * p.lr;
                let factor = ((&norm + &*m) / &norm).where_self(&mask_t.gt(0.0), &norm.ones_like());
                let _ = w.shallow_clone().g_mul_(&factor.view([k as i64, 1, 1]));
            }
        });
        // A member whose weights are no longer finite has degenerated too.
        let finite: Vec<bool> = tch::no_grad(|| {
            let mut ok = Tensor::ones([k as i64], (Kind::Bool, tch::Device::Cpu));
            for w in &params.wt {
                ok = ok.logical_and(&w.isfinite().reshape([k as i64, -1]).all_dim(1, false));
            }
            Vec::<bool>::try_from(ok).unwrap_or_else(|_| vec![false; k])
        });
        for i in 0..k {
            if !finite[i] {
                failed[i] = true;
            }
        }
    }
    let gq_end = Vec::<f64>::try_from(quotient(&params, streams).detach().to_kind(Kind::Double))
        .unwrap_or_else(|_| vec![f64::NAN; k]);
    for i in 0..k {
        if !gq_end[i].is_finite() {
            failed[i] = true;
        }
    }
    let out = params.weights();
    (out, failed, gq_start, gq_end)
}
