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

/// Per member: the gradient quotient of a batch, `[K]`, differentiable in the parameters.
pub fn gradient_quotient(net: &Ensemble, x: &Tensor, y: &Tensor, eps: f64) -> Tensor {
    let params: Vec<&Tensor> = net.parameters();
    let logits = net.forward_batched(x, false);
    let loss = Ensemble::cross_entropy(&logits, y).sum(Kind::Float);
    let grads = Tensor::run_backward(&[&loss], &params, true, true);
    let half_sq: Tensor = grads
        .iter()
        .map(|g| g.square().sum(Kind::Float))
        .fold(Tensor::from(0f32), |a, b| a + b)
        / 2.0;
    let hvp = Tensor::run_backward(&[&half_sq], &params, true, true);
    let k = net.members as i64;
    let mut total = Tensor::zeros([k], (Kind::Float, tch::Device::Cpu));
    let mut count = 0i64;
    for (g, hg) in grads.iter().zip(&hvp) {
        let sign = (g.ge(0.0).to_kind(Kind::Float) * 2.0 - 1.0).detach();
        let q = ((g - hg) / (g + sign * eps) - 1.0).abs();
        total = total
            + q.reshape([k, -1])
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        count += g.numel() as i64 / k;
    }
    total / count as f64
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
        let (tuned, failed, gq0, gq1) = run(p, arch, start, &mut sub);
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

/// One MetaInit run from `start`; returns the weights, which members failed, and
/// the gradient quotient at the start and at the end.
fn run(
    p: &MetaInitParams,
    arch: &Arch,
    start: Vec<Tensor>,
    streams: &mut [Stream],
) -> (Vec<Tensor>, Vec<bool>, Vec<f64>, Vec<f64>) {
    let k = streams.len();
    let weights: Vec<Tensor> = start
        .into_iter()
        .map(|w| w.set_requires_grad(true))
        .collect();
    let mut net =
        Ensemble::from_weights(*arch, weights.iter().map(|w| w.shallow_clone()).collect());
    net.biases = net
        .biases
        .into_iter()
        .map(|b| b.set_requires_grad(true))
        .collect();
    let mut momentum: Vec<Tensor> = weights
        .iter()
        .map(|_| Tensor::zeros([k as i64], (Kind::Float, tch::Device::Cpu)))
        .collect();
    let mut failed = vec![false; k];
    let mut gq_start = vec![f64::NAN; k];
    let quotient = |net: &Ensemble, streams: &mut [Stream]| -> Tensor {
        let (x, y) = random_batch(streams, p.batch, arch.input, arch.classes);
        gradient_quotient(net, &x, &y, p.eps)
    };
    for step in 0..p.steps {
        let gq = quotient(&net, streams);
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
        let grads = Tensor::run_backward(&[&objective], &weights, false, false);
        tch::no_grad(|| {
            for ((w, g), m) in weights.iter().zip(&grads).zip(momentum.iter_mut()) {
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
            for w in &weights {
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
    let gq_end = Vec::<f64>::try_from(quotient(&net, streams).detach().to_kind(Kind::Double))
        .unwrap_or_else(|_| vec![f64::NAN; k]);
    for i in 0..k {
        if !gq_end[i].is_finite() {
            failed[i] = true;
        }
    }
    net.biases.clear();
    let out = weights.iter().map(|w| w.detach().copy()).collect();
    (out, failed, gq_start, gq_end)
}
