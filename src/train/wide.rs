//! Training of networks without normalisation through explicit forward and
//! backward passes. libtorch's batched GEMMs write into buffers allocated once per
//! run (the weight and bias gradients straight into the flat buffer that Adam
//! reads); the activation, its derivative and the loss are plain loops. Through
//! autograd a wide network paid more for its fresh tensors every step (page
//! faults on each new buffer) and for packing the gradients into one buffer than
//! for its GEMMs.

use super::{
    AdamStep, Evaluation, FlatAdam, MemberResult, Record, Shuffler, TrainOptions, slice_mut,
};
use crate::blas::{self, Op, gemm};
use crate::data::Dataset;
use crate::net::{Ensemble, Norm};
use crate::seed::Stream;
use anyhow::{Result, ensure};
use rayon::prelude::*;
use tch::{Kind, Tensor};

/// Whether [`train`] handles `net` (no normalisation layers).
pub fn applies(net: &Ensemble) -> bool {
    net.arch.norm == Norm::None
}

/// Leaky ReLU in place: h ← h if h > 0, else slope·h.
fn activate(h: &mut [f32], slope: f32) {
    // Branch-free, so that it compiles to vector blends.
    for v in h {
        *v = if *v > 0.0 { *v } else { *v * slope };
    }
}

/// The activation's backward pass in place, from its output `h` (leaky ReLU with a
/// slope ≥ 0 keeps the sign): g ← g if h > 0, else slope·g.
fn activate_backward(g: &mut [f32], h: &[f32], slope: f32) {
    for (g, &h) in g.iter_mut().zip(h) {
        *g = if h > 0.0 { *g } else { *g * slope };
    }
}

/// A row of logits' maximum and Σ exp(z − max) in f64: its log-sum-exp is
/// max + ln Σ, and its cross-entropy against class y is ln Σ + max − z_y.
fn log_sum_exp(row: &[f32]) -> (f32, f64) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (max, row.iter().map(|&z| ((z - max) as f64).exp()).sum())
}

/// Each member's mean cross-entropy of `logits: [K, B, C]` against `labels: [K·B]`;
/// replaces the logits by the loss's gradient with respect to them, (softmax − onehot)/B.
fn cross_entropy_backward(logits: &mut [f32], labels: &[i64], k: usize, b: usize) -> Vec<f32> {
    let c = logits.len() / (k * b);
    let mut losses = vec![0f32; k];
    for (member, loss) in losses.iter_mut().enumerate() {
        let mut total = 0f64;
        for s in 0..b {
            let row = &mut logits[(member * b + s) * c..(member * b + s + 1) * c];
            let y = labels[member * b + s] as usize;
            let (max, sum) = log_sum_exp(row);
            total += sum.ln() + (max - row[y]) as f64;
            for (j, z) in row.iter_mut().enumerate() {
                let p = (((*z - max) as f64).exp() / sum) as f32;
                *z = (p - if j == y { 1.0 } else { 0.0 }) / b as f32;
            }
        }
        *loss = (total / b as f64) as f32;
    }
    losses
}

/// Checks that an `_out` op wrote into `out`'s own storage (a shape mismatch would
/// have made libtorch reallocate it, away from the flat buffers).
fn into(out: &Tensor, result: Tensor) {
    assert_eq!(
        out.data_ptr(),
        result.data_ptr(),
        "an _out op reallocated its output"
    );
}

/// An f32 view of a contiguous CPU tensor.
///
/// # Safety
/// As [`slice_mut`]: contiguous f32 on the CPU, and nothing else touches it meanwhile.
unsafe fn view(t: &Tensor) -> &[f32] {
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, t.numel()) }
}

/// Trains `net` (no normalisation, any width and depth) as [`super::train`] does:
/// member by member on rayon's threads through single-threaded MKL GEMMs where
/// libtorch carries MKL, else through libtorch's batched GEMMs.
pub fn train(
    net: &Ensemble,
    data: &Dataset,
    shuffle: Vec<Stream>,
    opts: &TrainOptions,
) -> Result<Vec<MemberResult>> {
    if blas::available() {
        train_members(net, data, shuffle, opts)
    } else {
        train_batched(net, data, shuffle, opts)
    }
}

/// [`train`] through libtorch's batched GEMMs, all members at once, each GEMM
/// threaded by libtorch.
pub fn train_batched(
    net: &Ensemble,
    data: &Dataset,
    shuffle: Vec<Stream>,
    opts: &TrainOptions,
) -> Result<Vec<MemberResult>> {
    let _guard = tch::no_grad_guard();
    let k = net.members;
    let arch = net.arch;
    let dims = arch.layer_dims(); // (out, in) of every Linear layer
    let depth = arch.depth;
    let slope = arch.slope as f32;
    let b = opts.batch_size;
    let (ki, bi) = (k as i64, b as i64);
    let adam = FlatAdam::new(net);
    // The parameters and their gradients as ensembles of views into the flat buffers.
    let params = net.view_flat(&adam.flat);
    let grads = net.view_flat(&adam.grad);
    let biases: Vec<Tensor> = params.biases.iter().map(|b| b.unsqueeze(1)).collect(); // [K, 1, out]
    let opts_f = (Kind::Float, tch::Device::Cpu);
    let x_buf = Tensor::empty([ki * bi, arch.input as i64], opts_f);
    let x = x_buf.view([ki, bi, arch.input as i64]);
    // Every hidden layer's output after the activation, kept for the backward pass.
    let acts: Vec<Tensor> = dims[..depth]
        .iter()
        .map(|&(out, _)| Tensor::empty([ki, bi, out as i64], opts_f))
        .collect();
    let logits = Tensor::empty([ki, bi, arch.classes as i64], opts_f);
    let back = [0, 1].map(|_| Tensor::empty([ki, bi, arch.width as i64], opts_f));

    let mut shuffler = Shuffler::new(shuffle, data.train_len());
    let mut record = Record::new(k, opts, &params, data);
    for step in 1..=opts.steps {
        let idx = Tensor::from_slice(&shuffler.next(b));
        into(&x_buf, data.train_x.index_select_out(&x_buf, 0, &idx));
        let labels = Vec::<i64>::try_from(data.train_y.index_select(0, &idx))?;
        // Forward: z_l = h_{l−1} W_lᵀ + b_l, h_l = φ(z_l) in place.
        for l in 0..=depth {
            let input = if l == 0 { &x } else { &acts[l - 1] };
            let out = if l == depth { &logits } else { &acts[l] };
            into(
                out,
                biases[l].baddbmm_out(out, input, &params.weights[l].transpose(1, 2)),
            );
            if l < depth {
                // SAFETY: acts[l] is a contiguous f32 CPU tensor that nothing else uses now.
                activate(unsafe { slice_mut(out) }, slope);
            }
        }
        // SAFETY: as above, for the logits buffer.
        let losses = cross_entropy_backward(unsafe { slice_mut(&logits) }, &labels, k, b);
        record.losses(step, &losses);
        // Backward: dW_l = g_lᵀ h_{l−1}, db_l = Σ_batch g_l, g_{l−1} = φ'·(g_l W_l).
        let mut g = &logits;
        for l in (0..=depth).rev() {
            let input = if l == 0 { &x } else { &acts[l - 1] };
            let (gw, gb) = (&grads.weights[l], &grads.biases[l]);
            into(gw, g.transpose(1, 2).bmm_out(gw, input));
            into(
                gb,
                g.sum_intlist_out(gb, [1i64].as_slice(), false, Kind::Float),
            );
            if l > 0 {
                let next = &back[l % 2];
                into(next, g.bmm_out(next, &params.weights[l]));
                // SAFETY: next and acts[l − 1] are distinct contiguous f32 CPU tensors.
                unsafe { activate_backward(slice_mut(next), view(&acts[l - 1]), slope) };
                g = next;
            }
        }
        adam.apply(step, opts);
        record.evaluate_if_due(step, &params, data);
    }
    Ok(record.results)
}

/// Splits a flat buffer of `k` members' parameters (`Ensemble::to_flat`'s order:
/// per layer `[K, out, in]`, then `[K, out]`) into each member's disjoint
/// (weights, bias) slices, layer by layer: `[member][layer]`.
#[allow(clippy::type_complexity)]
fn per_member<'a>(
    mut flat: &'a mut [f32],
    dims: &[(usize, usize)],
    k: usize,
) -> Vec<Vec<(&'a mut [f32], &'a mut [f32])>> {
    let mut members: Vec<Vec<(&mut [f32], &mut [f32])>> = (0..k).map(|_| Vec::new()).collect();
    for &(out, inp) in dims {
        let (w, rest) = std::mem::take(&mut flat).split_at_mut(k * out * inp);
        let (b, rest) = rest.split_at_mut(k * out);
        flat = rest;
        for (layers, (w, b)) in members
            .iter_mut()
            .zip(w.chunks_exact_mut(out * inp).zip(b.chunks_exact_mut(out)))
        {
            layers.push((w, b));
        }
    }
    members
}

/// One member's buffers for a training step: its batch, every hidden layer's
/// output after the activation, the logits, the backward pass's two gradients with
/// respect to a layer's output, and one layer's weight and bias gradients.
struct MemberWork {
    x: Vec<f32>,         // [B, in]
    y: Vec<i64>,         // [B]
    acts: Vec<Vec<f32>>, // per hidden layer [B, width]
    logits: Vec<f32>,    // [B, C]
    grad: Vec<f32>,      // [B, width]
    next: Vec<f32>,      // [B, width]
    grad_w: Vec<f32>,    // the largest [out, in]
    grad_b: Vec<f32>,    // the largest [out]
}

impl MemberWork {
    fn new(dims: &[(usize, usize)], b: usize) -> MemberWork {
        let depth = dims.len() - 1;
        let width = dims[..depth].first().map_or(0, |&(out, _)| out);
        MemberWork {
            x: vec![0.0; b * dims[0].1],
            y: vec![0; b],
            acts: dims[..depth]
                .iter()
                .map(|&(out, _)| vec![0.0; b * out])
                .collect(),
            logits: vec![0.0; b * dims[depth].0],
            grad: vec![0.0; b * width],
            next: vec![0.0; b * width],
            grad_w: vec![0.0; dims.iter().map(|&(o, i)| o * i).max().unwrap_or(0)],
            grad_b: vec![0.0; dims.iter().map(|&(o, _)| o).max().unwrap_or(0)],
        }
    }
}

/// `out[B, o] ← input[B, i] · Wᵀ + bias`, W `[o, i]` row-major.
fn linear(input: &[f32], w: &[f32], bias: &[f32], out: &mut [f32], b: usize, i: usize) {
    let o = bias.len();
    for row in out.chunks_exact_mut(o) {
        row.copy_from_slice(bias);
    }
    gemm(Op::Plain, input, Op::Trans, w, out, b, o, i, 1.0);
}

/// One member's parameters and Adam moments, layer by layer.
struct MemberParams<'a> {
    params: Vec<(&'a mut [f32], &'a mut [f32])>,
    m: Vec<(&'a mut [f32], &'a mut [f32])>,
    v: Vec<(&'a mut [f32], &'a mut [f32])>,
}

/// One member's whole training step: gathers its batch `idx`, runs forward and
/// backward through single-threaded GEMMs, and updates each layer with Adam as
/// soon as the layer's gradients are known and the layer's weights have served the
/// backward pass (while both are still in cache). Returns the batch's mean loss.
#[allow(clippy::too_many_arguments)]
fn member_step(
    work: &mut MemberWork,
    net: &mut MemberParams,
    dims: &[(usize, usize)],
    (train_x, train_y): (&[f32], &[i64]),
    idx: &[i64],
    slope: f32,
    (adam, lr): (&AdamStep, f64),
) -> f32 {
    let depth = dims.len() - 1;
    let (b, features) = (idx.len(), dims[0].1);
    for (s, &i) in idx.iter().enumerate() {
        let i = i as usize;
        work.x[s * features..(s + 1) * features]
            .copy_from_slice(&train_x[i * features..(i + 1) * features]);
        work.y[s] = train_y[i];
    }
    // Forward: z_l = h_{l−1} W_lᵀ + b_l, h_l = φ(z_l) in place.
    for l in 0..=depth {
        let (_, inp) = dims[l];
        let (input, out) = match l {
            0 if depth == 0 => (&work.x[..], &mut work.logits[..]),
            0 => (&work.x[..], &mut work.acts[0][..]),
            _ if l == depth => (&work.acts[l - 1][..], &mut work.logits[..]),
            _ => {
                let (before, after) = work.acts.split_at_mut(l);
                (&before[l - 1][..], &mut after[0][..])
            }
        };
        let (w, bias) = &net.params[l];
        linear(input, w, bias, out, b, inp);
        if l < depth {
            activate(out, slope);
        }
    }
    let loss = cross_entropy_backward(&mut work.logits, &work.y, 1, b)[0];
    // Backward: dW_l = g_lᵀ h_{l−1}, db_l = Σ_batch g_l, g_{l−1} = φ'·(g_l W_l).
    for l in (0..=depth).rev() {
        let (out, inp) = dims[l];
        let input = if l == 0 {
            &work.x[..]
        } else {
            &work.acts[l - 1][..]
        };
        let g = if l == depth {
            &work.logits[..]
        } else {
            &work.grad[..]
        };
        let (gw, gb) = (&mut work.grad_w[..out * inp], &mut work.grad_b[..out]);
        gemm(Op::Trans, g, Op::Plain, input, gw, out, inp, b, 0.0);
        gb.fill(0.0);
        for row in g.chunks_exact(out) {
            for (acc, &v) in gb.iter_mut().zip(row) {
                *acc += v;
            }
        }
        let (w, bias) = &mut net.params[l];
        if l > 0 {
            gemm(Op::Plain, g, Op::Plain, w, &mut work.next, b, inp, out, 0.0);
            activate_backward(&mut work.next, &work.acts[l - 1], slope);
            std::mem::swap(&mut work.grad, &mut work.next);
        }
        let ((mw, mb), (vw, vb)) = (&mut net.m[l], &mut net.v[l]);
        adam.update(w, gw, mw, vw, lr);
        adam.update(bias, gb, mb, vb, lr);
    }
    loss
}

/// A contiguous f32 CPU tensor's elements, checked.
fn f32_view(t: &Tensor) -> Result<&[f32]> {
    ensure!(
        t.kind() == Kind::Float && t.device() == tch::Device::Cpu && t.is_contiguous(),
        "expected a contiguous f32 CPU tensor"
    );
    // SAFETY: checked above; the slice borrows the tensor, whose storage it reads.
    Ok(unsafe { view(t) })
}

/// [`train`] member by member: each rayon task trains one member through all its
/// steps (batch, forward, loss, backward and Adam update, with single-threaded MKL
/// GEMMs) and evaluates it when due, so the two cores work on different members,
/// nothing waits on a threaded GEMM, no gradient buffer of the whole ensemble is
/// written and read back, and a member's weights and moments stay in the
/// last-level cache from one step to the next where they fit. Members are
/// independent, so this is the same arithmetic as stepping them all together.
pub fn train_members(
    net: &Ensemble,
    data: &Dataset,
    shuffle: Vec<Stream>,
    opts: &TrainOptions,
) -> Result<Vec<MemberResult>> {
    let _guard = tch::no_grad_guard();
    let k = net.members;
    let dims = net.arch.layer_dims(); // (out, in) of every Linear layer
    let slope = net.arch.slope as f32;
    let b = opts.batch_size;
    let train_x = f32_view(&data.train_x)?;
    let train_y = Vec::<i64>::try_from(&data.train_y)?;
    let test_x = f32_view(&data.test_x)?;
    let test_y = Vec::<i64>::try_from(&data.test_y)?;
    let eval_at = super::eval_schedule(opts);
    let train_len = data.train_len();
    let mut flat = Vec::<f32>::try_from(net.to_flat())?;
    let (mut m, mut v) = (vec![0f32; flat.len()], vec![0f32; flat.len()]);
    let members: Vec<MemberParams> = per_member(&mut flat, &dims, k)
        .into_iter()
        .zip(
            per_member(&mut m, &dims, k)
                .into_iter()
                .zip(per_member(&mut v, &dims, k)),
        )
        .map(|(params, (m, v))| MemberParams { params, m, v })
        .collect();
    let results = members
        .into_par_iter()
        .zip(shuffle)
        .enumerate()
        .map(|(j, (mut member, stream))| {
            let mut work = MemberWork::new(&dims, b);
            let mut shuffler = Shuffler::new(vec![stream], train_len);
            let mut result = MemberResult::default();
            let evaluate = |step: usize, member: &MemberParams, result: &mut MemberResult| {
                if eval_at.binary_search(&step).is_ok() {
                    let (loss, acc) = evaluate_member(
                        &member.params,
                        &dims,
                        slope,
                        (test_x, &test_y),
                        MEMBER_CHUNK,
                    );
                    result.evals.push(Evaluation {
                        step,
                        test_loss: loss,
                        test_acc: acc,
                    });
                }
            };
            evaluate(0, &member, &mut result);
            for step in 1..=opts.steps {
                let idx = shuffler.next(b); // [B]
                let adam = AdamStep::new(step, opts);
                let loss = member_step(
                    &mut work,
                    &mut member,
                    &dims,
                    (train_x, &train_y),
                    &idx,
                    slope,
                    (&adam, opts.lrs[j]),
                );
                result.push_loss(step, loss);
                evaluate(step, &member, &mut result);
            }
            result
        })
        .collect();
    Ok(results)
}

/// Samples per chunk of [`evaluate`]: a `[K, chunk, width]` activation buffer of
/// about 24 MB (1,000 samples at K = 30 and width 200): smaller chunks pay
/// per-chunk overhead, larger ones gain nothing and leave the caches, and
/// libtorch's own path allocates a fresh `[K, width, 4096]` tensor per layer.
fn eval_chunk(k: usize, width: usize) -> usize {
    (24_000_000 / (4 * k * width.max(1))).clamp(64, 4096)
}

/// Each member's summed cross-entropy and count of correct argmax predictions over
/// the `b` samples of `logits: [K, b, C]` (ties go to the first class, as
/// libtorch's `argmax`).
fn loss_and_hits(logits: &[f32], labels: &[i64], k: usize, b: usize) -> Vec<(f64, u64)> {
    let c = logits.len() / (k * b);
    (0..k)
        .map(|member| {
            let (mut loss, mut hits) = (0f64, 0u64);
            for (s, &y) in labels.iter().enumerate() {
                let row = &logits[(member * b + s) * c..(member * b + s + 1) * c];
                let (max, sum) = log_sum_exp(row);
                loss += sum.ln() + (max - row[y as usize]) as f64;
                // The first maximum; class 0 for a row of NaNs, as before.
                let best = row.iter().position(|&z| z == max).unwrap_or(0);
                hits += u64::from(best == y as usize);
            }
            (loss, hits)
        })
        .collect()
}

/// Per-member test loss and accuracy of `net` (no normalisation) over `x: [n, in]`
/// and `y: [n]`, as [`super::evaluate_tch`] computes them: chunks of samples run
/// through buffers allocated once, each member's batched GEMMs write in place, and
/// the activation is applied in place.
pub fn evaluate(net: &Ensemble, x: &Tensor, y: &Tensor) -> (Vec<f64>, Vec<f64>) {
    if blas::available() && x.is_contiguous() && x.kind() == Kind::Float {
        return evaluate_members(net, x, y, MEMBER_CHUNK);
    }
    evaluate_in_chunks(net, x, y, eval_chunk(net.members, net.arch.width))
}

/// Samples per chunk of [`evaluate_members`]: a member's `[chunk, width]`
/// activations stay in L2.
const MEMBER_CHUNK: usize = 512;

/// [`evaluate`] member by member on rayon's threads (see [`evaluate_member`]).
fn evaluate_members(net: &Ensemble, x: &Tensor, y: &Tensor, chunk: usize) -> (Vec<f64>, Vec<f64>) {
    let _guard = tch::no_grad_guard();
    let k = net.members;
    let dims = net.arch.layer_dims();
    let slope = net.arch.slope as f32;
    let labels = Vec::<i64>::try_from(y).expect("i64 labels");
    let x = f32_view(x).expect("contiguous f32 inputs");
    let mut flat = Vec::<f32>::try_from(net.to_flat()).expect("f32 parameters");
    per_member(&mut flat, &dims, k)
        .into_par_iter()
        .map(|params| evaluate_member(&params, &dims, slope, (x, &labels), chunk))
        .unzip()
}

/// One member's mean test loss and accuracy over `x: [n, in]` and its labels, in
/// chunks of `chunk` samples through single-threaded MKL GEMMs and two activation
/// buffers of its own.
fn evaluate_member(
    params: &[(&mut [f32], &mut [f32])],
    dims: &[(usize, usize)],
    slope: f32,
    (x, labels): (&[f32], &[i64]),
    chunk: usize,
) -> (f64, f64) {
    let depth = dims.len() - 1;
    let (features, classes) = (dims[0].1, dims[depth].0);
    let width = dims[..depth].first().map_or(0, |&(out, _)| out);
    let n = labels.len();
    let chunk = chunk.clamp(1, n.max(1));
    let mut act = [0, 1].map(|_| vec![0f32; chunk * width]);
    let mut logits = vec![0f32; chunk * classes];
    let (mut loss, mut hits) = (0f64, 0u64);
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        for (l, ((w, bias), &(out, inp))) in params.iter().zip(dims).enumerate() {
            let [a0, a1] = &mut act;
            let (input, dst): (&[f32], &mut [f32]) = if l == 0 {
                (&x[start * features..(start + len) * features], a0)
            } else if l % 2 == 1 {
                (&a0[..], a1)
            } else {
                (&a1[..], a0)
            };
            let dst = if l == depth { &mut logits[..] } else { dst };
            let dst = &mut dst[..len * out];
            linear(&input[..len * inp], w, bias, dst, len, inp);
            if l < depth {
                activate(dst, slope);
            }
        }
        let (l, h) = loss_and_hits(
            &logits[..len * classes],
            &labels[start..start + len],
            1,
            len,
        )[0];
        loss += l;
        hits += h;
    }
    let n = n.max(1) as f64;
    (loss / n, hits as f64 / n)
}

/// [`evaluate`] in chunks of `chunk` samples (the last one shorter).
fn evaluate_in_chunks(
    net: &Ensemble,
    x: &Tensor,
    y: &Tensor,
    chunk: usize,
) -> (Vec<f64>, Vec<f64>) {
    let _guard = tch::no_grad_guard();
    let (k, arch) = (net.members, net.arch);
    let (depth, slope) = (arch.depth, arch.slope as f32);
    let n = x.size()[0] as usize;
    let labels = Vec::<i64>::try_from(y).expect("i64 labels");
    let chunk = chunk.clamp(1, n.max(1));
    let opts_f = (Kind::Float, tch::Device::Cpu);
    let biases: Vec<Tensor> = net.biases.iter().map(|b| b.unsqueeze(1)).collect(); // [K, 1, out]
    let (mut loss, mut hits) = (vec![0f64; k], vec![0u64; k]);
    // Two activation buffers and the logits for `len` samples.
    let buffers = |len: usize| {
        let (ki, li) = (k as i64, len as i64);
        let act = [0, 1].map(|_| Tensor::empty([ki, li, arch.width as i64], opts_f));
        (act, Tensor::empty([ki, li, arch.classes as i64], opts_f))
    };
    let (mut act, mut logits) = buffers(chunk);
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        if len != chunk {
            // The last, shorter chunk.
            (act, logits) = buffers(len);
        }
        let logits = &logits;
        let xc = x.narrow(0, start as i64, len as i64); // [len, in], shared by all members
        for l in 0..=depth {
            let out = if l == depth { logits } else { &act[l % 2] };
            if l == 0 {
                // The input is the same for every member: one [len, in] x [in, out]
                // GEMM per member, straight into its slice of the buffer.
                for m in 0..k as i64 {
                    let dst = out.get(m);
                    into(
                        &dst,
                        net.biases[0]
                            .get(m)
                            .addmm_out(&dst, &xc, &net.weights[0].get(m).tr()),
                    );
                }
            } else {
                let input = &act[(l - 1) % 2];
                into(
                    out,
                    biases[l].baddbmm_out(out, input, &net.weights[l].transpose(1, 2)),
                );
            }
            if l < depth {
                // SAFETY: out is one of this function's contiguous f32 buffers, unused
                // by anything else now.
                activate(unsafe { slice_mut(out) }, slope);
            }
        }
        // SAFETY: the logits buffer is contiguous f32 and no op runs on it now.
        let part = loss_and_hits(unsafe { view(logits) }, &labels[start..start + len], k, len);
        for (m, (l, h)) in part.into_iter().enumerate() {
            loss[m] += l;
            hits[m] += h;
        }
        start += len;
    }
    let n = n.max(1) as f64;
    (
        loss.iter().map(|l| l / n).collect(),
        hits.iter().map(|&h| h as f64 / n).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::dist::WeightDist;
    use crate::init::{Initializer, initialize, member_streams};
    use crate::net::Arch;
    use crate::seed::Key;

    /// `k` He-normal networks of `arch`, the family `label`'s first members.
    fn he_networks(arch: &Arch, label: &str, k: usize) -> Ensemble {
        let mut streams = member_streams(5, &Key::new(label), 0, k);
        let (net, _) = initialize(
            &Initializer::He(WeightDist::Normal),
            arch,
            &mut streams,
            None,
        )
        .expect("He networks");
        net
    }

    #[test]
    fn chunked_evaluation_matches_libtorch_ops() {
        tch::manual_seed(3);
        let n = 1003;
        let x = Tensor::randn([n, 24], (Kind::Float, tch::Device::Cpu));
        let y = Tensor::randint(10, [n], (Kind::Int64, tch::Device::Cpu));
        for (depth, slope) in [(0, 0.0), (1, 0.0), (3, 0.2)] {
            let arch = Arch {
                input: 24,
                width: 20,
                depth,
                classes: 10,
                slope,
                norm: Norm::None,
            };
            let net = he_networks(&arch, "wide-eval", 3);
            let (tl, ta) = super::super::evaluate_tch(&net, &x, &y);
            // One chunk, chunks with a shorter last one, and chunks of 7 samples,
            // through batched libtorch GEMMs and member by member through MKL.
            let members = |chunk| blas::available().then(|| evaluate_members(&net, &x, &y, chunk));
            for (chunk, (wl, wa)) in [4096, 100, 7].into_iter().flat_map(|chunk| {
                std::iter::once(evaluate_in_chunks(&net, &x, &y, chunk))
                    .chain(members(chunk))
                    .map(move |r| (chunk, r))
            }) {
                for m in 0..3 {
                    // Both sum the same f32 products in different orders (relative
                    // error ~1e-6 for sums of at most 24 terms); the mean is in f64.
                    assert!(
                        (wl[m] - tl[m]).abs() <= 1e-5 * tl[m].abs().max(1.0),
                        "depth {depth}, chunk {chunk}, member {m}: loss {} vs {}",
                        wl[m],
                        tl[m]
                    );
                    // An argmax may flip only on a near-tie within that error.
                    assert!(
                        (wa[m] - ta[m]).abs() <= 1.0 / n as f64,
                        "depth {depth}, chunk {chunk}, member {m}: accuracy {} vs {}",
                        wa[m],
                        ta[m]
                    );
                }
            }
        }
    }

    #[test]
    fn member_by_member_training_matches_the_batched_path() {
        if !blas::available() {
            eprintln!("MKL not in this libtorch: only the batched path runs");
            return;
        }
        let data = Dataset::load(
            crate::data::DatasetName::parse("synthetic-tiny").expect("name"),
            crate::data::Normalization::Standard,
            &crate::data::DataSource::new(None),
        )
        .expect("synthetic data");
        for (width, depth, slope) in [(24, 3, 0.0), (20, 1, 0.2), (32, 0, 0.0)] {
            let arch = Arch {
                input: data.features(),
                width,
                depth,
                classes: 10,
                slope,
                norm: Norm::None,
            };
            let net = he_networks(&arch, "wide-train", 3);
            let mut opts = TrainOptions::adam(25, 16, vec![1e-2, 3e-3, 1e-3]);
            opts.eval_at = vec![10];
            let shuffle = || member_streams(5, &Key::new("wide-shuffle"), 0, 3);
            let members = train_members(&net, &data, shuffle(), &opts).expect("members");
            let batched = train_batched(&net, &data, shuffle(), &opts).expect("batched");
            for (m, (a, b)) in members.iter().zip(&batched).enumerate() {
                assert_eq!(a.train_loss.len(), 25);
                // The same f32 arithmetic summed in other orders (relative rounding
                // ~1e-6 per product sum), compounded over 25 Adam steps at rates up
                // to 1e-2.
                for (step, (p, q)) in a.train_loss.iter().zip(&b.train_loss).enumerate() {
                    assert!(
                        (p - q).abs() <= 2e-4 * q.abs().max(1.0),
                        "width {width}, depth {depth}, member {m}, step {step}: loss {p} vs {q}"
                    );
                }
                assert_eq!(a.evals.len(), 2);
                for (e, f) in a.evals.iter().zip(&b.evals) {
                    assert_eq!(e.step, f.step);
                    assert!(
                        (e.test_loss - f.test_loss).abs() <= 1e-3 * f.test_loss.max(1.0),
                        "width {width}, depth {depth}, member {m}: test loss {} vs {}",
                        e.test_loss,
                        f.test_loss
                    );
                }
            }
        }
    }
}
