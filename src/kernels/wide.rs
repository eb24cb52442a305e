//! The kernels of wide networks without normalisation, member by member: one
//! member's training step (batch, forward, loss, backward and Adam update through
//! single-threaded MKL GEMMs) and its evaluation on the test set, on buffers of
//! its own; and the loops that the batched libtorch path shares (activation, its
//! backward pass, the loss and its gradient). The orchestration, which member
//! runs where and when, is `train::wide`'s.

use super::adam::AdamStep;
use super::blas::{Op, gemm};

/// Leaky ReLU in place: h ← h if h > 0, else slope·h.
pub fn activate(h: &mut [f32], slope: f32) {
    // Branch-free, so that it compiles to vector blends.
    for v in h {
        *v = if *v > 0.0 { *v } else { *v * slope };
    }
}

/// The activation's backward pass in place, from its output `h` (leaky ReLU with a
/// slope ≥ 0 keeps the sign): g ← g if h > 0, else slope·g.
pub fn activate_backward(g: &mut [f32], h: &[f32], slope: f32) {
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
pub fn cross_entropy_backward(logits: &mut [f32], labels: &[i64], k: usize, b: usize) -> Vec<f32> {
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

/// Splits a flat buffer of `k` members' parameters (`Ensemble::to_flat`'s order:
/// per layer `[K, out, in]`, then `[K, out]`) into each member's disjoint
/// (weights, bias) slices, layer by layer: `[member][layer]`.
#[allow(clippy::type_complexity)]
pub fn per_member<'a>(
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
pub struct MemberWork {
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
    pub fn new(dims: &[(usize, usize)], b: usize) -> MemberWork {
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
pub fn linear(input: &[f32], w: &[f32], bias: &[f32], out: &mut [f32], b: usize, i: usize) {
    let o = bias.len();
    for row in out.chunks_exact_mut(o) {
        row.copy_from_slice(bias);
    }
    gemm(Op::Plain, input, Op::Trans, w, out, b, o, i, 1.0);
}

/// One member's parameters and Adam moments, layer by layer.
pub struct MemberParams<'a> {
    pub params: Vec<(&'a mut [f32], &'a mut [f32])>,
    pub m: Vec<(&'a mut [f32], &'a mut [f32])>,
    pub v: Vec<(&'a mut [f32], &'a mut [f32])>,
}

/// One member's whole training step: gathers its batch `idx`, runs forward and
/// backward through single-threaded GEMMs, and updates each layer with Adam as
/// soon as the layer's gradients are known and the layer's weights have served the
/// backward pass (while both are still in cache). Returns the batch's mean loss.
#[allow(clippy::too_many_arguments)]
pub fn member_step(
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

/// Each member's summed cross-entropy and count of correct argmax predictions over
/// the `b` samples of `logits: [K, b, C]` (ties go to the first class, as
/// libtorch's `argmax`).
pub fn loss_and_hits(logits: &[f32], labels: &[i64], k: usize, b: usize) -> Vec<(f64, u64)> {
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

/// One member's mean test loss and accuracy over `x: [n, in]` and its labels, in
/// chunks of `chunk` samples through single-threaded MKL GEMMs and two activation
/// buffers of its own.
pub fn evaluate_member(
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
