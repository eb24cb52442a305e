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
use super::{InitReport, Initializer, schemes};
use crate::kernels::metainit as kernel;
use crate::net::{Arch, Ensemble};
use crate::seed::Stream;
use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Mutex;
use tch::{Kind, Tensor};

/// MetaInit's hyper-parameters; a config may leave out any of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaInitParams {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub momentum: f64,
    pub eps: f64,
    pub max_restarts: usize,
}

/// The most restarts a degenerate member may get (the authors restarted a few times).
const MAX_RESTARTS: usize = 1000;

impl MetaInitParams {
    /// Checks every hyper-parameter, naming the key: at least one step and one
    /// input per batch, a finite learning rate and ε > 0, a momentum in [0, 1),
    /// a bounded number of restarts.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::at_least("steps", self.steps as u64, 1)?;
        check::at_least("batch", self.batch as u64, 1)?;
        check::positive("lr", self.lr)?;
        check::within_open_above("momentum", self.momentum, 0.0, 1.0)?;
        check::positive("eps", self.eps)?;
        check::at_most(
            "max_restarts",
            self.max_restarts as u64,
            MAX_RESTARTS as u64,
            "each restart runs MetaInit again for the member",
        )?;
        Ok(())
    }
}

impl Default for MetaInitParams {
    fn default() -> Self {
        MetaInitParams {
            steps: 500,
            batch: 32,
            lr: 0.1,
            momentum: 0.9,
            eps: 1e-5,
            max_restarts: 5,
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
            total += term
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
    let (x, labels) = random_batch_vec(streams, batch, input, classes);
    let k = streams.len() as i64;
    (
        Tensor::from_slice(&x).view([k, batch as i64, input as i64]),
        Tensor::from_slice(&labels).view([k, batch as i64]),
    )
}

/// The same batch as plain vectors (member-major), drawn in parallel.
fn random_batch_vec(
    streams: &mut [Stream],
    batch: usize,
    input: usize,
    classes: usize,
) -> (Vec<f32>, Vec<i64>) {
    use rayon::prelude::*;
    let per = batch * input;
    let mut x = vec![0f32; streams.len() * per];
    let mut labels = vec![0i64; streams.len() * batch];
    x.par_chunks_mut(per.max(1))
        .zip(labels.par_chunks_mut(batch.max(1)))
        .zip(streams.par_iter_mut())
        .for_each(|((xs, ys), rng)| {
            member_batch(rng, classes, xs, ys);
            // The kernel reads the draws lane-major; the same batch, row-major here.
            if batch.is_multiple_of(kernel::LANES) {
                let rows = kernel::lanes_to_rows(xs, batch, input);
                xs.copy_from_slice(&rows);
            }
        });
    (x, labels)
}

/// One member's batch from its stream: iid standard-normal inputs `xs` (read
/// lane-major by the kernel, row-major `[B][in]` otherwise) and uniform labels
/// `ys`. A batch is up to 10⁵ normals per member and step, drawn from a xoshiro
/// generator seeded from the member's stream (refilling ChaCha would cost as much
/// as the sampling itself).
fn member_batch(rng: &mut Stream, classes: usize, xs: &mut [f32], ys: &mut [i64]) {
    let seed = member_labels(rng, classes, ys);
    let mut fast = Xoshiro256PlusPlus::seed_from_u64(seed);
    WeightDist::Normal.fill(&mut fast, xs);
}

/// What [`member_batch`] draws from the member's stream: the seed of the inputs'
/// generator (returned), then the labels. Alone, it moves the stream past a batch
/// whose inputs are not needed.
fn member_labels(rng: &mut Stream, classes: usize, ys: &mut [i64]) -> u64 {
    let seed = rng.random();
    for y in ys.iter_mut() {
        *y = rng.random_range(0..classes as i64);
    }
    seed
}

/// Σ v² in f64, in eight partial sums so that it vectorises.
fn sum_squares(w: &[f32]) -> f64 {
    let mut part = [0f64; 8];
    let mut blocks = w.chunks_exact(8);
    for block in &mut blocks {
        for (p, v) in part.iter_mut().zip(block) {
            *p += (*v as f64) * (*v as f64);
        }
    }
    let rest: f64 = blocks
        .remainder()
        .iter()
        .map(|v| (*v as f64) * (*v as f64))
        .sum();
    part.iter().sum::<f64>() + rest
}

/// Runs MetaInit on `streams.len()` members.
pub fn metainit(
    p: &MetaInitParams,
    arch: &Arch,
    streams: &mut [Stream],
) -> Result<(Ensemble, InitReport)> {
    // Configs are checked when read (`Initializer::check_params`); this guards
    // callers that build parameters in code.
    Initializer::MetaInit(*p).check_arch(arch)?;
    crate::config::check::at_least("batch", p.batch as u64, 1)?;
    let k = streams.len();
    if uses_kernel(p, arch) {
        let (tuned, report) = run_kernel(p, arch, streams);
        return Ok((Ensemble::from_weights(*arch, tuned), report));
    }
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
        let tuned = in_parallel(start, &mut sub, |start, streams| {
            run(p, arch, start, streams)
        });
        for (j, &i) in active.iter().enumerate() {
            streams[i] = sub[j].clone();
        }
        if weights.is_empty() {
            weights = tuned.weights;
        } else {
            let index = Tensor::from_slice(&active.iter().map(|&i| i as i64).collect::<Vec<_>>());
            for (w, t) in weights.iter_mut().zip(&tuned.weights) {
                let _ = w.index_copy_(0, &index, t);
            }
        }
        let mut again = Vec::new();
        for (j, &i) in active.iter().enumerate() {
            report.gq_start[i] = tuned.gq_start[j];
            report.gq_end[i] = tuned.gq_end[j];
            if tuned.failed[j] {
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

/// What one MetaInit attempt leaves: the weights and, per member, whether it
/// degenerated and its gradient quotient at the start and at the end.
struct Attempt {
    weights: Vec<Tensor>,
    failed: Vec<bool>,
    gq_start: Vec<f64>,
    gq_end: Vec<f64>,
}

impl Attempt {
    /// The attempts of consecutive parts of an ensemble as one.
    fn concat(parts: Vec<Attempt>) -> Attempt {
        let layers = parts[0].weights.len();
        let weights = (0..layers)
            .map(|l| {
                let stack: Vec<&Tensor> = parts.iter().map(|part| &part.weights[l]).collect();
                Tensor::cat(&stack, 0)
            })
            .collect();
        let mut all = Attempt {
            weights,
            failed: Vec::new(),
            gq_start: Vec::new(),
            gq_end: Vec::new(),
        };
        for part in parts {
            all.failed.extend(part.failed);
            all.gq_start.extend(part.gq_start);
            all.gq_end.extend(part.gq_end);
        }
        all
    }
}

/// Runs `attempt` (MetaInit's [`run`]) on parts of the ensemble in parallel OS
/// threads, one libtorch thread each: MetaInit's third-order graph is a long chain
/// of small ops, where libtorch's own intra-op threads spend their time waiting on
/// each other. Members are independent, so the split changes nothing in the results.
fn in_parallel(
    start: Vec<Tensor>,
    streams: &mut [Stream],
    attempt: impl Fn(Vec<Tensor>, &mut [Stream]) -> Attempt + Sync,
) -> Attempt {
    let k = streams.len();
    let threads = (tch::get_num_threads().max(1) as usize).min(k);
    if threads < 2 {
        return attempt(start, streams);
    }
    let previous = tch::get_num_threads();
    tch::set_num_threads(1);
    let base = k / threads;
    let extra = k % threads;
    let attempt = &attempt;
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
            handles.push(scope.spawn(move || tch::with_grad(|| attempt(chunk, mine))));
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("a MetaInit thread panicked"))
            .collect::<Vec<_>>()
    });
    tch::set_num_threads(previous);
    Attempt::concat(parts)
}

/// One MetaInit attempt from `start`.
fn run(p: &MetaInitParams, arch: &Arch, start: Vec<Tensor>, streams: &mut [Stream]) -> Attempt {
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
    Attempt {
        weights: params.weights(),
        failed,
        gq_start,
        gq_end,
    }
}

/// Whether the hand-written step ([`crate::kernels::metainit`]) runs MetaInit: batches in
/// whole lane groups, up to width 256. Narrow networks would otherwise pay libtorch's
/// per-op cost, and wide ones autograd's (docs/performance.md,
/// `initlab bench --only wide-metainit`).
pub fn uses_kernel(p: &MetaInitParams, arch: &Arch) -> bool {
    arch.width <= 256 && p.batch.is_multiple_of(kernel::LANES)
}

/// `[input, width, ..., classes]` of `arch`.
fn unit_dims(arch: &Arch) -> Vec<usize> {
    let layers = arch.layer_dims();
    std::iter::once(layers[0].1)
        .chain(layers.iter().map(|(out, _)| *out))
        .collect()
}

/// Per member: (GQ, ⟨∂GQ/∂W_l, W_l⟩ per layer) by the hand-written step, for a batch
/// of inputs `[K, B, in]` and labels `[K, B]` (zero biases, as MetaInit keeps them).
pub fn meta_gradient_kernel(
    net: &Ensemble,
    x: &Tensor,
    y: &Tensor,
    eps: f64,
) -> Vec<(f64, Vec<f64>)> {
    let k = net.members;
    let dims = unit_dims(&net.arch);
    let weights: Vec<Vec<f32>> = net
        .weights
        .iter()
        .map(|w| Vec::<f32>::try_from(w.flatten(0, -1)).expect("f32 weights"))
        .collect();
    let xs = Vec::<f32>::try_from(x.flatten(0, -1)).expect("f32 inputs");
    let ys = Vec::<i64>::try_from(y.flatten(0, -1)).expect("i64 labels");
    let batch = ys.len() / k;
    let zeros: Vec<Vec<f32>> = dims[1..].iter().map(|&n| vec![0.0; n]).collect();
    (0..k)
        .map(|i| {
            let member = kernel::Member {
                dims: &dims,
                w: (0..weights.len())
                    .map(|l| {
                        let per = dims[l] * dims[l + 1];
                        &weights[l][i * per..(i + 1) * per]
                    })
                    .collect(),
                b: zeros.iter().map(|b| b.as_slice()).collect(),
                slope: net.arch.slope as f32,
            };
            let per_x = batch * dims[0];
            kernel::step(
                &member,
                &xs[i * per_x..(i + 1) * per_x],
                &ys[i * batch..(i + 1) * batch],
                eps as f32,
                kernel::Want::MetaGradient,
            )
        })
        .collect()
}

/// The same by libtorch's autograd (third order through `run_backward`).
pub fn meta_gradient_autograd(
    net: &Ensemble,
    x: &Tensor,
    y: &Tensor,
    eps: f64,
) -> Vec<(f64, Vec<f64>)> {
    tch::with_grad(|| {
        let params = Params::new(&net.weights, net.arch.slope);
        let gq = params.gradient_quotient(x, y, eps);
        let grads = Tensor::run_backward(&[&gq.sum(Kind::Float)], &params.wt, false, false);
        let dots: Vec<Vec<f64>> = params
            .wt
            .iter()
            .zip(&grads)
            .map(|(w, g)| {
                Vec::<f64>::try_from((w.detach() * g).sum_dim_intlist(
                    [1i64, 2].as_slice(),
                    false,
                    Kind::Double,
                ))
                .expect("f64")
            })
            .collect();
        let gq = Vec::<f64>::try_from(gq.detach().to_kind(Kind::Double)).expect("f64");
        (0..net.members)
            .map(|i| (gq[i], dots.iter().map(|d| d[i]).collect()))
            .collect()
    })
}

/// One member's MetaInit in [`run_kernel`]: its weights (layer after layer), its
/// momenta (one per layer) and its stream, and how far it has gone.
struct Chain<'a> {
    index: usize,
    w: &'a mut [f32],
    m: &'a mut [f32],
    rng: &'a mut Stream,
    /// Steps taken in this attempt; `steps + 1` once the final quotient is known too.
    steps: usize,
    /// Attempts that degenerated; past `max_restarts` the member is given up.
    restarts: usize,
    /// Given up: its last attempt degenerated, and its weights are what that left.
    given_up: bool,
    gq_start: f64,
    gq_end: f64,
}

impl<'a> Chain<'a> {
    /// Member `index` before its first step, with its weights `w`, momenta `m` and stream.
    fn new(index: usize, w: &'a mut [f32], m: &'a mut [f32], rng: &'a mut Stream) -> Self {
        Chain {
            index,
            w,
            m,
            rng,
            steps: 0,
            restarts: 0,
            given_up: false,
            gq_start: f64::NAN,
            gq_end: f64::NAN,
        }
    }
}

/// The lock of a mutex whose holder cannot leave it inconsistent (a push or pop).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`run`] with the hand-written step, members stepped in turns on rayon's threads: the
/// same random batches, the same update, the same bookkeeping. A member that
/// degenerates restarts at once, in its turn, rather than after every member's
/// attempt has ended: its stream is first moved past the batches the rest of the
/// attempt would have drawn, so it restarts from the He start, and with the
/// batches, that a restart after the attempt would give. Returns the weights and,
/// per member, its restarts (`max_restarts + 1`: given up) and first and last
/// quotients of its last attempt.
fn run_kernel(
    p: &MetaInitParams,
    arch: &Arch,
    streams: &mut [Stream],
) -> (Vec<Tensor>, InitReport) {
    use rayon::prelude::*;
    let k = streams.len();
    let shared = KernelRun::new(p, arch);
    let (layers, stride) = (shared.per.len(), shared.stride());
    // Member-major weights: member i's layers one after another.
    let mut flat = vec![0f32; k * stride];
    flat.par_chunks_mut(stride)
        .zip(streams.par_iter_mut())
        .for_each(|(w, rng)| shared.he_start(rng, w));
    let mut momentum = vec![0f32; k * layers];
    let chains = flat
        .chunks_mut(stride)
        .zip(momentum.chunks_mut(layers))
        .zip(streams.iter_mut())
        .enumerate()
        .map(|(index, ((w, m), rng))| Chain::new(index, w, m, rng))
        .collect();
    let mut report = InitReport {
        restarts: vec![0; k],
        gq_start: vec![f64::NAN; k],
        gq_end: vec![f64::NAN; k],
    };
    for chain in shared.run_chains(chains) {
        report.restarts[chain.index] = chain.restarts;
        report.gq_start[chain.index] = chain.gq_start;
        report.gq_end[chain.index] = chain.gq_end;
    }
    kernel::release_buffers();
    (shared.layer_stacks(&flat, k), report)
}

/// What every member's steps in [`run_kernel`] share: the hyper-parameters, the
/// network's shape and the layout of a member's weights.
struct KernelRun<'a> {
    p: &'a MetaInitParams,
    arch: &'a Arch,
    /// `[input, width, ..., classes]`.
    dims: Vec<usize>,
    /// Weights per layer of one member.
    per: Vec<usize>,
    /// Every layer's biases, which MetaInit keeps at zero.
    zeros: Vec<Vec<f32>>,
}

impl<'a> KernelRun<'a> {
    fn new(p: &'a MetaInitParams, arch: &'a Arch) -> Self {
        let dims = unit_dims(arch);
        let per = (0..dims.len() - 1).map(|l| dims[l] * dims[l + 1]).collect();
        let zeros = dims[1..].iter().map(|&n| vec![0.0; n]).collect();
        KernelRun {
            p,
            arch,
            dims,
            per,
            zeros,
        }
    }

    /// Weights of one member, all layers.
    fn stride(&self) -> usize {
        self.per.iter().sum()
    }

    /// A He start from the member's stream into its weights (each member's draws are
    /// its own, so drawing members apart gives what drawing them together gives).
    fn he_start(&self, rng: &mut Stream, w: &mut [f32]) {
        let fresh = schemes::weights(
            &Initializer::He(WeightDist::Normal),
            self.arch,
            std::slice::from_mut(rng),
        )
        .expect("a He start of a shape that MetaInit can tune");
        let mut rest = w;
        for t in &fresh {
            let values = Vec::<f32>::try_from(t.flatten(0, -1)).expect("f32 weights");
            let (w, tail) = rest.split_at_mut(values.len());
            w.copy_from_slice(&values);
            rest = tail;
        }
    }

    /// Steps every member to its end and returns them. Members step in turns, each
    /// by whichever thread is free, with no barrier between steps: with a barrier,
    /// an odd member out would run alone on one thread while the others idle, its
    /// products too small to split usefully.
    fn run_chains<'c>(&self, chains: VecDeque<Chain<'c>>) -> Vec<Chain<'c>> {
        let k = chains.len();
        let (p, arch) = (self.p, self.arch);
        let queue = Mutex::new(chains);
        let done = Mutex::new(Vec::with_capacity(k));
        let workers = rayon::current_num_threads().clamp(1, k.max(1));
        rayon::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|_| {
                    let (mut xs, mut ys) = (vec![0f32; p.batch * arch.input], vec![0i64; p.batch]);
                    // A worker ends when every member left is being stepped by another;
                    // its thread then takes halves of their split products.
                    loop {
                        // (The guard must not live through the step: a `while let` on
                        // the pop would hold it there.)
                        let next = lock(&queue).pop_front();
                        let Some(mut chain) = next else { break };
                        self.step(&mut chain, &mut xs, &mut ys);
                        if chain.steps > p.steps {
                            lock(&done).push(chain);
                        } else {
                            lock(&queue).push_back(chain);
                        }
                    }
                });
            }
        });
        done.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// One step of a member (or, after its last, the final quotient): its batch is
    /// drawn in the task that uses it, so that it is still in cache.
    fn step(&self, chain: &mut Chain, xs: &mut [f32], ys: &mut [i64]) {
        let (p, classes) = (self.p, self.arch.classes);
        let last = chain.steps == p.steps;
        chain.steps += 1;
        if chain.given_up && !last {
            // Its update is skipped: only the draws, for the stream's sake.
            member_labels(chain.rng, classes, ys);
            return;
        }
        member_batch(chain.rng, classes, xs, ys);
        let want = if last {
            kernel::Want::Quotient
        } else {
            kernel::Want::MetaGradient
        };
        let (gq, dots) = kernel::step_lanes(&self.member(chain.w), xs, ys, p.eps as f32, want);
        if last {
            chain.gq_end = gq;
        } else if chain.steps == 1 {
            chain.gq_start = gq;
        }
        if !gq.is_finite() && !chain.given_up {
            self.degenerate(chain, ys);
            return;
        }
        if last {
            return;
        }
        self.update_norms(chain, &dots);
        // A member whose weights are no longer finite has degenerated too.
        if chain.w.iter().any(|v| !v.is_finite()) {
            self.degenerate(chain, ys);
        }
    }

    /// The kernel's view of a member with weights `w` (its layers one after another).
    fn member<'w>(&'w self, w: &'w [f32]) -> kernel::Member<'w> {
        let mut layers = Vec::with_capacity(self.per.len());
        let mut rest = w;
        for n in &self.per {
            let (head, tail) = rest.split_at(*n);
            layers.push(head);
            rest = tail;
        }
        kernel::Member {
            dims: &self.dims,
            w: layers,
            b: self.zeros.iter().map(|b| b.as_slice()).collect(),
            slope: self.arch.slope as f32,
        }
    }

    /// MetaInit's update of each layer's norm from its meta-gradient's `dots`.
    fn update_norms(&self, chain: &mut Chain, dots: &[f64]) {
        let p = self.p;
        let mut rest = &mut *chain.w;
        for (l, m) in chain.m.iter_mut().enumerate() {
            let (w, tail) = rest.split_at_mut(self.per[l]);
            rest = tail;
            let norm = sum_squares(w).sqrt();
            let s = (dots[l] / norm).signum();
            let s = if dots[l] == 0.0 { 0.0 } else { s };
            *m = *m * p.momentum as f32 - (s * p.lr) as f32;
            let factor = ((norm + *m as f64) / norm) as f32;
            for v in w.iter_mut() {
                *v *= factor;
            }
        }
    }

    /// A degenerate member's next attempt, or its end.
    fn degenerate(&self, chain: &mut Chain, ys: &mut [i64]) {
        chain.restarts += 1;
        if chain.restarts > self.p.max_restarts {
            // Kept as it is; its remaining steps only draw.
            chain.given_up = true;
            return;
        }
        for _ in chain.steps..=self.p.steps {
            member_labels(chain.rng, self.arch.classes, ys);
        }
        self.he_start(chain.rng, chain.w);
        chain.m.fill(0.0);
        chain.steps = 0;
    }

    /// Per layer, the `[K, out, in]` stack of the `k` members' weights in `flat`
    /// (member-major, as [`run_kernel`] holds them).
    fn layer_stacks(&self, flat: &[f32], k: usize) -> Vec<Tensor> {
        let (dims, stride) = (&self.dims, self.stride());
        let mut offset = 0;
        self.per
            .iter()
            .enumerate()
            .map(|(l, &per)| {
                let mut values = Vec::with_capacity(k * per);
                for i in 0..k {
                    values.extend_from_slice(&flat[i * stride + offset..i * stride + offset + per]);
                }
                offset += per;
                Tensor::from_slice(&values).view([k as i64, dims[l + 1] as i64, dims[l] as i64])
            })
            .collect()
    }
}
