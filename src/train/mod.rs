//! Training ensembles with Adam, exactly as if each member were trained alone:
//! the loss is the sum of the members' mean cross-entropies (so each member gets
//! its own gradient), every member sees its own shuffling of the training set,
//! and Adam is elementwise. All parameters live in one flat buffer so that the
//! optimiser is one fused pass over memory (not a few ops per parameter tensor),
//! with a learning rate per member.

use crate::data::Dataset;
use crate::kernels::adam::{AdamConfig, AdamStep, Segment, adam_step};
use crate::kernels::{fused, narrow, tensor_slice, tensor_slice_mut, wide::per_member};
use crate::net::{Ensemble, Pass};
use crate::seed::Stream;
use anyhow::{Result, bail};
use rand::seq::SliceRandom;
use tch::{Kind, Tensor};

pub mod wide;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub steps: usize,
    pub batch_size: usize,
    /// Learning rate of each member.
    pub lrs: Vec<f64>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Steps after which to evaluate on the whole test set (the last step always is).
    pub eval_at: Vec<usize>,
    /// Use libtorch's autograd even where the hand-written narrow kernel applies
    /// (for checking one against the other).
    pub force_autograd: bool,
}

impl TrainOptions {
    pub fn adam(steps: usize, batch_size: usize, lrs: Vec<f64>) -> Self {
        TrainOptions {
            steps,
            batch_size,
            lrs,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            eval_at: Vec::new(),
            force_autograd: false,
        }
    }

    /// Adam's hyper-parameters.
    pub fn adam_config(&self) -> AdamConfig {
        AdamConfig {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
        }
    }
}

/// Test-set loss and accuracy of one member after a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub step: usize,
    pub test_loss: f64,
    pub test_acc: f64,
}

#[derive(Debug, Clone, Default)]
pub struct MemberResult {
    /// Training loss of every step's batch.
    pub train_loss: Vec<f32>,
    pub evals: Vec<Evaluation>,
    /// The first step whose loss was NaN or infinite, if any.
    pub diverged_at: Option<usize>,
}

/// Each member's own order of the training set, reshuffled every epoch.
pub struct Shuffler {
    streams: Vec<Stream>,
    orders: Vec<Vec<i64>>,
    positions: Vec<usize>,
    n: usize,
}

impl Shuffler {
    pub fn new(streams: Vec<Stream>, n: usize) -> Self {
        let k = streams.len();
        Shuffler {
            streams,
            orders: vec![Vec::new(); k],
            positions: vec![usize::MAX; k],
            n,
        }
    }

    /// The next batch's indices for every member, `[K·B]` (an epoch's last partial
    /// batch is dropped, as with `drop_last`).
    pub fn next(&mut self, batch: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.streams.len() * batch);
        for k in 0..self.streams.len() {
            if self.positions[k] == usize::MAX || self.positions[k] + batch > self.n {
                let mut order: Vec<i64> = (0..self.n as i64).collect();
                order.shuffle(&mut self.streams[k]);
                self.orders[k] = order;
                self.positions[k] = 0;
            }
            let p = self.positions[k];
            out.extend_from_slice(&self.orders[k][p..p + batch]);
            self.positions[k] += batch;
        }
        out
    }
}

/// (start, len, member) runs of the flat parameter buffer of `net` (see `Ensemble::to_flat`).
pub fn member_segments(net: &Ensemble) -> Vec<Segment> {
    let k = net.members;
    let mut out = Vec::new();
    let mut offset = 0;
    for t in net.parameters() {
        let per = t.numel() / k;
        for member in 0..k {
            out.push((offset + member * per, per, member));
        }
        offset += per * k;
    }
    out
}

/// An ensemble's parameters in one flat buffer (`Ensemble::to_flat`'s layout),
/// with a gradient buffer of that layout and Adam's moments.
struct FlatAdam {
    flat: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    segments: Vec<Segment>,
}

impl FlatAdam {
    fn new(net: &Ensemble) -> FlatAdam {
        let flat = net.to_flat();
        FlatAdam {
            grad: flat.zeros_like(),
            m: flat.zeros_like(),
            v: flat.zeros_like(),
            segments: member_segments(net),
            flat,
        }
    }

    /// Adam's step number `step` with the gradient in `self.grad`.
    fn apply(&mut self, step: usize, opts: &TrainOptions) {
        let adam = AdamStep::new(step, opts.adam_config());
        adam_step(
            (tensor_slice_mut(&mut self.flat), tensor_slice(&self.grad)),
            (tensor_slice_mut(&mut self.m), tensor_slice_mut(&mut self.v)),
            &self.segments,
            &opts.lrs,
            adam,
        );
    }
}

/// Per-member test loss and accuracy over the whole test set.
pub fn evaluate(net: &Ensemble, x: &Tensor, y: &Tensor) -> (Vec<f64>, Vec<f64>) {
    if let Some(r) = evaluate_fused(net, x, y) {
        return r;
    }
    if wide::applies(net) {
        return wide::evaluate(net, x, y);
    }
    evaluate_tch(net, x, y)
}

/// [`evaluate`] through the fused narrow-network kernel, where it applies.
pub fn evaluate_fused(net: &Ensemble, x: &Tensor, y: &Tensor) -> Option<(Vec<f64>, Vec<f64>)> {
    let a = net.arch;
    if a.norm != crate::net::Norm::None || a.depth == 0 || a.width > 16 {
        return None;
    }
    let _guard = tch::no_grad_guard();
    let k = net.members;
    let layers = net.flat_layers(1..a.depth + 1);
    let (hidden, last) = layers.split_at(a.depth - 1);
    let weights = fused::FusedWeights::new(a.width, a.classes, a.slope, hidden, &last[0]);
    let w0 = net.weights[0].reshape([(k * a.width) as i64, -1]);
    let b0 = net.biases[0].reshape([(k * a.width) as i64, 1]);
    let labels = Vec::<i64>::try_from(y).ok()?;
    let n = x.size()[0];
    let (mut loss, mut correct) = (vec![0f64; k], vec![0u64; k]);
    let mut start = 0;
    while start < n {
        let len = 4096.min(n - start);
        let h0 = b0.addmm(&w0, &x.narrow(0, start, len).tr()).contiguous(); // [K·W, n]
        let part = fused::evaluate(
            tensor_slice(&h0),
            &weights,
            &labels[start as usize..(start + len) as usize],
            k,
            len as usize,
        )?;
        for (j, (l, c)) in part.into_iter().enumerate() {
            loss[j] += l;
            correct[j] += c;
        }
        start += len;
    }
    Some((
        loss.iter().map(|l| l / n as f64).collect(),
        correct.iter().map(|&c| c as f64 / n as f64).collect(),
    ))
}

/// [`evaluate`] with libtorch ops (any network).
pub fn evaluate_tch(net: &Ensemble, x: &Tensor, y: &Tensor) -> (Vec<f64>, Vec<f64>) {
    let _guard = tch::no_grad_guard();
    let k = net.members as i64;
    let n = x.size()[0];
    let mut loss = Tensor::zeros([k], (Kind::Double, tch::Device::Cpu));
    let mut correct = Tensor::zeros([k], (Kind::Double, tch::Device::Cpu));
    let chunk = 4096;
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let logits = net.forward_shared(&x.narrow(0, start, len), &mut |_, _| {}); // [K, C, n]
        let target = y.narrow(0, start, len); // [n]
        let logp = logits.log_softmax(1, Kind::Float);
        let picked = logp.gather(
            1,
            &target.view([1, 1, len]).expand([k, 1, len], false),
            false,
        ); // [K, 1, n]
        loss -= picked.sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double);
        let hits = logits.argmax(1, false).eq_tensor(&target.view([1, len])); // [K, n]
        correct += hits.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        start += len;
    }
    let loss = Vec::<f64>::try_from(loss / n as f64).expect("f64");
    let acc = Vec::<f64>::try_from(correct / n as f64).expect("f64");
    (loss, acc)
}

/// The steps after which to evaluate: the requested ones within the run, and the
/// last, in order.
fn eval_schedule(opts: &TrainOptions) -> Vec<usize> {
    let mut eval_at: Vec<usize> = opts
        .eval_at
        .iter()
        .copied()
        .filter(|&s| s <= opts.steps)
        .collect();
    eval_at.push(opts.steps);
    eval_at.sort_unstable();
    eval_at.dedup();
    eval_at
}

impl MemberResult {
    /// Appends the training loss of `step`; the first non-finite one marks divergence.
    fn push_loss(&mut self, step: usize, loss: f32) {
        self.train_loss.push(loss);
        if self.diverged_at.is_none() && !loss.is_finite() {
            self.diverged_at = Some(step);
        }
    }
}

/// Each member's training curve and test-set evaluations as a run goes on.
struct Record {
    results: Vec<MemberResult>,
    /// The steps after which to evaluate: the requested ones within the run, and the last.
    eval_at: Vec<usize>,
}

impl Record {
    /// A record for `k` members, with the evaluation before training when asked for.
    fn new(k: usize, opts: &TrainOptions, net: &Ensemble, data: &Dataset) -> Record {
        let mut record = Record {
            results: vec![MemberResult::default(); k],
            eval_at: eval_schedule(opts),
        };
        record.evaluate_if_due(0, net, data);
        record
    }

    /// Each member's training loss of `step`; the first non-finite one marks divergence.
    fn losses(&mut self, step: usize, losses: &[f32]) {
        for (r, &loss) in self.results.iter_mut().zip(losses) {
            r.push_loss(step, loss);
        }
    }

    /// Each member's test loss and accuracy after `step`, if `step` is in the schedule.
    fn evaluate_if_due(&mut self, step: usize, net: &Ensemble, data: &Dataset) {
        if self.eval_at.binary_search(&step).is_err() {
            return;
        }
        let (loss, acc) = evaluate(net, &data.test_x, &data.test_y);
        for (j, r) in self.results.iter_mut().enumerate() {
            r.evals.push(Evaluation {
                step,
                test_loss: loss[j],
                test_acc: acc[j],
            });
        }
    }
}

/// What a training run needs: the ensemble it starts from (left as it is), the
/// data, each member's shuffling stream and the options.
pub struct Job<'a> {
    pub net: &'a Ensemble,
    pub data: &'a Dataset,
    pub shuffle: Vec<Stream>,
    pub opts: &'a TrainOptions,
}

/// Trains a copy of `net` (its parameters are copied into the flat buffer) and
/// returns each member's curve and evaluations.
pub fn train(
    net: &Ensemble,
    data: &Dataset,
    shuffle: Vec<Stream>,
    opts: &TrainOptions,
) -> Result<Vec<MemberResult>> {
    let k = net.members;
    if opts.lrs.len() != k || shuffle.len() != k {
        bail!("one learning rate and one shuffling stream per member");
    }
    if opts.batch_size == 0 || opts.batch_size > data.train_len() {
        bail!(
            "batch_size must be between 1 and the training set size ({})",
            data.train_len()
        );
    }
    let job = Job {
        net,
        data,
        shuffle,
        opts,
    };
    if narrow_path(net) && !opts.force_autograd {
        return train_narrow(job);
    }
    if wide::applies(net) && !opts.force_autograd {
        return wide::train(job);
    }
    train_autograd(job)
}

/// [`train`] through libtorch's autograd (any network, normalisation included).
fn train_autograd(job: Job) -> Result<Vec<MemberResult>> {
    let (net, data, opts) = (job.net, job.data, job.opts);
    let k = net.members;
    // All parameters in one flat buffer; each parameter a leaf living inside it.
    // Gradients come back from `run_backward` and are packed into one flat buffer,
    // so that Adam is one fused pass. Batch-norm statistics are private copies, so
    // the caller's ensemble is left as it was.
    let mut adam = FlatAdam::new(net);
    let work = net.leaves_in(&adam.flat);
    let params: Vec<Tensor> = work
        .parameters()
        .into_iter()
        .map(|t| t.shallow_clone())
        .collect();
    let mut shuffler = Shuffler::new(job.shuffle, data.train_len());
    let b = opts.batch_size as i64;
    let mut record = Record::new(k, opts, &work, data);
    for step in 1..=opts.steps {
        let idx = Tensor::from_slice(&shuffler.next(opts.batch_size));
        let x = data.train_x.index_select(0, &idx).view([k as i64, b, -1]); // [K, B, in]
        let y = data.train_y.index_select(0, &idx).view([k as i64, b]); // [K, B]
        let logits = work.forward_batched(&x, Pass::Training); // [K, B, C]
        let losses = Ensemble::cross_entropy(&logits, &y); // [K]
        let total = losses.sum(Kind::Float);
        let grads = Tensor::run_backward(&[&total], &params, false, false);
        let _ = Tensor::cat_out(
            &adam.grad,
            &grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(),
            0,
        ); // [P·K], flat's layout
        let values = Vec::<f32>::try_from(losses.detach())?;
        record.losses(step, &values);
        adam.apply(step, opts);
        record.evaluate_if_due(step, &work, data);
    }
    Ok(record.results)
}

/// Whether the hand-written narrow-network pass applies (see `kernels::narrow`).
pub fn narrow_path(net: &Ensemble) -> bool {
    let a = net.arch;
    a.norm == crate::net::Norm::None && a.depth >= 1 && a.width <= 16
}

/// Training of narrow networks: the first layer is a libtorch batched GEMM, the
/// rest (hidden layers, loss and their backward pass) the hand-written kernel,
/// whose gradients are written straight into the flat gradient buffer.
fn train_narrow(job: Job) -> Result<Vec<MemberResult>> {
    let _guard = tch::no_grad_guard();
    // The kernel runs on rayon's threads; libtorch's few small ops here run on the
    // calling thread, so that idle OpenMP workers do not spin against rayon's.
    let previous_threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let result = narrow_steps(job);
    tch::set_num_threads(previous_threads);
    result
}

/// [`train_narrow`]'s steps.
fn narrow_steps(job: Job) -> Result<Vec<MemberResult>> {
    let (net, data, opts) = (job.net, job.data, job.opts);
    let k = net.members;
    let arch = net.arch;
    let (w, input) = (arch.width, arch.input);
    let mut adam = FlatAdam::new(net);
    let eval_net = net.view_flat(&adam.flat);
    let mut shuffler = Shuffler::new(job.shuffle, data.train_len());
    let b = opts.batch_size;
    let mut record = Record::new(k, opts, &eval_net, data);
    let (ki, wi, bi) = (k as i64, w as i64, b as i64);
    let (w0, b0) = (&eval_net.weights[0], eval_net.biases[0].view([ki, wi, 1]));
    let first_w = ki * wi * input as i64; // the first layer's weights lead the flat buffer
    let mut dz0 = vec![0f32; k * w * b];
    for step in 1..=opts.steps {
        let idx = Tensor::from_slice(&shuffler.next(b));
        let x = data.train_x.index_select(0, &idx).view([ki, bi, -1]); // [K, B, in]
        let labels = Vec::<i64>::try_from(data.train_y.index_select(0, &idx))?;
        let z0 = b0.baddbmm(w0, &x.transpose(1, 2), 1.0, 1.0).contiguous(); // [K, W, B]
        let losses = narrow_step(net, &mut adam, (&z0, &labels), b, &mut dz0);
        // The first layer's gradients: dW₀ = dz₀ · x, db₀ = Σ_batch dz₀.
        let dz = Tensor::from_slice(&dz0).view([ki, wi, bi]);
        let dw0 = dz.bmm(&x); // [K, W, in]
        let db0 = dz.sum_dim_intlist([2i64].as_slice(), false, Kind::Float); // [K, W]
        let grad = &adam.grad;
        grad.narrow(0, 0, first_w).copy_(&dw0.reshape([-1]));
        grad.narrow(0, first_w, ki * wi).copy_(&db0.reshape([-1]));
        record.losses(step, &losses);
        adam.apply(step, opts);
        record.evaluate_if_due(step, &eval_net, data);
    }
    Ok(record.results)
}

/// The narrow kernel's part of a step: from the first layer's outputs `z0` `[K, W,
/// B]` and the `labels`, every later layer's gradients straight into the flat
/// gradient buffer, and `dz0`, the gradient of z0; returns each member's loss.
fn narrow_step(
    net: &Ensemble,
    adam: &mut FlatAdam,
    (z0, labels): (&Tensor, &[i64]),
    batch: usize,
    dz0: &mut [f32],
) -> Vec<f32> {
    let (k, arch) = (net.members, net.arch);
    let dims = arch.layer_dims();
    let depth = arch.depth;
    // Per member and layer, (weights, bias) of the parameters (read only) and of
    // their gradients, but for the first layer's, which libtorch computes from dz0.
    let param_layers = per_member(tensor_slice_mut(&mut adam.flat), &dims, k);
    let params: Vec<narrow::MemberSlices> = param_layers
        .iter()
        .map(|layers| narrow::MemberSlices {
            hidden_w: layers[1..depth].iter().map(|(w, _)| &**w).collect(),
            hidden_b: layers[1..depth].iter().map(|(_, b)| &**b).collect(),
            last_w: &*layers[depth].0,
            last_b: &*layers[depth].1,
        })
        .collect();
    let grads: Vec<narrow::MemberGrads> = per_member(tensor_slice_mut(&mut adam.grad), &dims, k)
        .into_iter()
        .map(|layers| {
            let mut later = layers.into_iter().skip(1);
            let (hidden_w, hidden_b) = later.by_ref().take(depth - 1).unzip();
            let (last_w, last_b) = later.next().expect("a last layer");
            narrow::MemberGrads {
                hidden_w,
                hidden_b,
                last_w,
                last_b,
            }
        })
        .collect();
    let shape = narrow::StepShape {
        width: arch.width,
        classes: arch.classes,
        batch,
        slope: arch.slope as f32,
    };
    narrow::ensemble_step(shape, tensor_slice(z0), labels, &params, grads, dz0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_adam_matches_the_textbook_update() {
        let opts = TrainOptions::adam(1, 1, vec![0.01, 0.1]);
        let mut p = vec![1.0f32, -2.0, 0.5, 3.0];
        let g = vec![0.3f32, -0.1, 2.0, 0.0];
        let mut m = vec![0.0f32; 4];
        let mut v = vec![0.0f32; 4];
        let segments = vec![(0, 2, 0), (2, 2, 1)];
        let mut expected = p.clone();
        let (mut em, mut ev) = (vec![0.0f64; 4], vec![0.0f64; 4]);
        for step in 1..=3 {
            let adam = AdamStep::new(step, opts.adam_config());
            adam_step((&mut p, &g), (&mut m, &mut v), &segments, &opts.lrs, adam);
            for i in 0..4 {
                let lr = if i < 2 { 0.01 } else { 0.1 };
                em[i] = 0.9 * em[i] + 0.1 * g[i] as f64;
                ev[i] = 0.999 * ev[i] + 0.001 * (g[i] as f64).powi(2);
                let mhat = em[i] / (1.0 - 0.9f64.powi(step as i32));
                let vhat = ev[i] / (1.0 - 0.999f64.powi(step as i32));
                expected[i] -= (lr * mhat / (vhat.sqrt() + 1e-8)) as f32;
            }
        }
        for i in 0..4 {
            assert!(
                (p[i] - expected[i]).abs() < 1e-5,
                "{i}: {} vs {}",
                p[i],
                expected[i]
            );
        }
        // a zero gradient leaves its parameter alone
        assert_eq!(p[3], 3.0);
    }

    #[test]
    fn shuffler_covers_an_epoch_without_repeats() {
        let streams = vec![
            crate::seed::stream(1, &["a"]),
            crate::seed::stream(1, &["b"]),
        ];
        let mut s = Shuffler::new(streams, 10);
        let a = s.next(5);
        let b = s.next(5);
        let mut first: Vec<i64> = a[..5].iter().chain(&b[..5]).copied().collect();
        first.sort();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        assert_ne!(a[..5], a[5..], "members shuffle independently");
    }
}
