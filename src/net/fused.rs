//! A fused forward pass for the statistics of narrow networks (width ≤ 16), the
//! shape of the paper's Fig. 2. libtorch runs a `[K, 10, n] × [K, 10, 10]` layer
//! as K tiny GEMMs plus a separate ReLU pass over memory, far below the machine's
//! arithmetic rate; here each member's samples go through every hidden layer in
//! registers, eight at a time, and only the statistic leaves the core: per Linear
//! layer, the mean and sum of squared deviations of output unit 0.
//!
//! The first layer (input → width) stays a libtorch GEMM, which is efficient.

use rayon::prelude::*;

/// Samples per SIMD block (one AVX2 register of f32).
const LANES: usize = 8;

/// Per member and Linear layer: count, mean and sum of squared deviations (M2)
/// of output unit 0, `[member][layer]` flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit0Moments {
    pub layers: usize,
    pub count: Vec<u64>,
    pub mean: Vec<f64>,
    pub m2: Vec<f64>,
}

impl Unit0Moments {
    pub fn new(members: usize, layers: usize) -> Self {
        Unit0Moments {
            layers,
            count: vec![0; members * layers],
            mean: vec![0.0; members * layers],
            m2: vec![0.0; members * layers],
        }
    }

    /// Merges the moments of more samples (Chan et al.'s pairwise update).
    pub fn merge(&mut self, other: &Unit0Moments) {
        for i in 0..self.mean.len() {
            let (na, nb) = (self.count[i] as f64, other.count[i] as f64);
            if nb == 0.0 {
                continue;
            }
            let n = na + nb;
            let delta = other.mean[i] - self.mean[i];
            self.mean[i] += delta * nb / n;
            self.m2[i] += other.m2[i] + delta * delta * na * nb / n;
            self.count[i] += other.count[i];
        }
    }
}

/// The weights a member needs after the first layer, all contiguous f32:
/// hidden layers `[K, W, W]` with biases `[K, W]`, and row 0 of the last layer `[K, W]`
/// with its bias `[K]`.
pub struct NarrowWeights<'a> {
    pub width: usize,
    pub slope: f32,
    pub hidden_w: Vec<&'a [f32]>,
    pub hidden_b: Vec<&'a [f32]>,
    pub last_w0: &'a [f32],
    pub last_b0: &'a [f32],
}

/// Moments of unit 0 of every Linear layer for a chunk of `n` samples whose first
/// layer outputs (pre-activation, bias included) are `h0: [K, W, n]`. Returns `None`
/// for widths this kernel does not handle.
pub fn unit0_moments(
    h0: &[f32],
    weights: &NarrowWeights,
    members: usize,
    n: usize,
) -> Option<Unit0Moments> {
    macro_rules! dispatch {
        ($($w:literal)*) => {
            match weights.width {
                $($w => Some(run::<$w>(h0, weights, members, n)),)*
                _ => None,
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

fn run<const W: usize>(
    h0: &[f32],
    weights: &NarrowWeights,
    members: usize,
    n: usize,
) -> Unit0Moments {
    let layers = weights.hidden_w.len() + 2;
    assert_eq!(h0.len(), members * W * n, "h0 must be [K, W, n]");
    let per_member: Vec<(Vec<f64>, Vec<f64>)> = (0..members)
        .into_par_iter()
        .map(|k| member::<W>(&h0[k * W * n..(k + 1) * W * n], weights, k, n))
        .collect();
    let mut out = Unit0Moments::new(members, layers);
    for (k, (mean, m2)) in per_member.into_iter().enumerate() {
        for l in 0..layers {
            out.count[k * layers + l] = n as u64;
            out.mean[k * layers + l] = mean[l];
            out.m2[k * layers + l] = m2[l];
        }
    }
    out
}

/// One member over its n samples: per layer (mean, M2).
fn member<const W: usize>(
    h0: &[f32],
    weights: &NarrowWeights,
    k: usize,
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { member_avx2::<W>(h0, weights, k, n) };
        }
    }
    member_body::<W, false>(h0, weights, k, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn member_avx2<const W: usize>(
    h0: &[f32],
    weights: &NarrowWeights,
    k: usize,
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    member_body::<W, true>(h0, weights, k, n)
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// One hidden layer on a block of samples: h' = W φ(h) + b. The input unit is the
/// outer loop and the W accumulators stay in registers, so that the multiply-adds
/// form W independent chains (a row-at-a-time loop is one long dependent chain).
#[inline(always)]
fn layer<const W: usize, const FMA: bool>(
    h: &[[f32; LANES]; W],
    w: &[f32],
    b: &[f32],
    slope: f32,
) -> [[f32; LANES]; W] {
    let (w, b) = (&w[..W * W], &b[..W]);
    let mut acc = [[0f32; LANES]; W];
    for j in 0..W {
        acc[j] = [b[j]; LANES];
    }
    for i in 0..W {
        let mut a = [0f32; LANES];
        for lane in 0..LANES {
            let x = h[i][lane];
            a[lane] = if x > 0.0 { x } else { slope * x };
        }
        for j in 0..W {
            let wji = w[j * W + i];
            for lane in 0..LANES {
                acc[j][lane] = madd::<FMA>(wji, a[lane], acc[j][lane]);
            }
        }
    }
    acc
}

#[inline(always)]
fn member_body<const W: usize, const FMA: bool>(
    h0: &[f32],
    weights: &NarrowWeights,
    k: usize,
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    let hidden = weights.hidden_w.len();
    let layers = hidden + 2;
    let slope = weights.slope;
    let ws: Vec<&[f32]> = weights
        .hidden_w
        .iter()
        .map(|w| &w[k * W * W..(k + 1) * W * W])
        .collect();
    let bs: Vec<&[f32]> = weights
        .hidden_b
        .iter()
        .map(|b| &b[k * W..(k + 1) * W])
        .collect();
    let last_w = &weights.last_w0[k * W..(k + 1) * W];
    let last_b = weights.last_b0[k];
    // Chunk-local sums around the first sample's value of each layer (the shift keeps
    // the f64 sums exact enough when the mean dwarfs the spread).
    let mut shift = vec![0f32; layers];
    // Per layer and lane, in f64 (squares of tiny deviations would be subnormal in
    // f32, inexact and very slow; deep Glorot networks get there); lanes summed at
    // the end. Lanes past the end of the chunk contribute zeros.
    let mut s1 = vec![[0f64; LANES]; layers];
    let mut s2 = vec![[0f64; LANES]; layers];
    let mut record = |l: usize, v: &[f32; LANES], valid: usize, first: bool| {
        if first {
            shift[l] = v[0];
        }
        let (a, b) = (&mut s1[l], &mut s2[l]);
        for lane in 0..LANES {
            let d = if lane < valid {
                (v[lane] - shift[l]) as f64
            } else {
                0.0
            };
            a[lane] += d;
            b[lane] += d * d;
        }
    };
    let mut start = 0;
    while start < n {
        let valid = LANES.min(n - start);
        let mut h = [[0f32; LANES]; W];
        for (i, row) in h.iter_mut().enumerate() {
            let src = &h0[i * n + start..i * n + start + valid];
            row[..valid].copy_from_slice(src);
        }
        let first = start == 0;
        record(0, &h[0], valid, first);
        for l in 0..hidden {
            h = layer::<W, FMA>(&h, ws[l], bs[l], slope);
            record(l + 1, &h[0], valid, first);
        }
        // The last layer: only its unit 0 is needed.
        let mut acc = [last_b; LANES];
        for i in 0..W {
            for lane in 0..LANES {
                let x = h[i][lane];
                let a = if x > 0.0 { x } else { slope * x };
                acc[lane] = madd::<FMA>(last_w[i], a, acc[lane]);
            }
        }
        record(layers - 1, &acc, valid, first);
        start += valid;
    }
    let nf = n as f64;
    let s1: Vec<f64> = s1.iter().map(|lanes| lanes.iter().sum()).collect();
    let s2: Vec<f64> = s2.iter().map(|lanes| lanes.iter().sum()).collect();
    let mean = (0..layers).map(|l| shift[l] as f64 + s1[l] / nf).collect();
    let m2 = (0..layers)
        .map(|l| (s2[l] - s1[l] * s1[l] / nf).max(0.0))
        .collect();
    (mean, m2)
}

/// The weights evaluation needs: as [`NarrowWeights`] but the whole last layer
/// `[K, C, W]` with its bias `[K, C]`.
pub struct EvalWeights<'a> {
    pub width: usize,
    pub classes: usize,
    pub slope: f32,
    pub hidden_w: Vec<&'a [f32]>,
    pub hidden_b: Vec<&'a [f32]>,
    pub last_w: &'a [f32],
    pub last_b: &'a [f32],
}

/// Per member, over a chunk of `n` samples with first-layer outputs `h0: [K, W, n]`
/// and `labels: [n]`: the summed cross-entropy and the number of correct argmax
/// predictions. `None` for widths the kernel does not handle.
pub fn evaluate(
    h0: &[f32],
    weights: &EvalWeights,
    labels: &[i64],
    members: usize,
    n: usize,
) -> Option<Vec<(f64, u64)>> {
    macro_rules! dispatch {
        ($($w:literal)*) => {
            match weights.width {
                $($w => Some((0..members).into_par_iter().map(|k| eval_member::<$w>(&h0[k * $w * n..(k + 1) * $w * n], weights, labels, k, n)).collect()),)*
                _ => None,
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

fn eval_member<const W: usize>(
    h0: &[f32],
    weights: &EvalWeights,
    labels: &[i64],
    k: usize,
    n: usize,
) -> (f64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { eval_member_avx2::<W>(h0, weights, labels, k, n) };
        }
    }
    eval_member_body::<W, false>(h0, weights, labels, k, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn eval_member_avx2<const W: usize>(
    h0: &[f32],
    weights: &EvalWeights,
    labels: &[i64],
    k: usize,
    n: usize,
) -> (f64, u64) {
    eval_member_body::<W, true>(h0, weights, labels, k, n)
}

#[inline(always)]
fn eval_member_body<const W: usize, const FMA: bool>(
    h0: &[f32],
    weights: &EvalWeights,
    labels: &[i64],
    k: usize,
    n: usize,
) -> (f64, u64) {
    let hidden = weights.hidden_w.len();
    let c = weights.classes;
    let slope = weights.slope;
    let ws: Vec<&[f32]> = weights
        .hidden_w
        .iter()
        .map(|w| &w[k * W * W..(k + 1) * W * W])
        .collect();
    let bs: Vec<&[f32]> = weights
        .hidden_b
        .iter()
        .map(|b| &b[k * W..(k + 1) * W])
        .collect();
    let last_w = &weights.last_w[k * c * W..(k + 1) * c * W];
    let last_b = &weights.last_b[k * c..(k + 1) * c];
    let mut loss = 0f64;
    let mut correct = 0u64;
    let mut logits = vec![[0f32; LANES]; c];
    let mut start = 0;
    while start < n {
        let valid = LANES.min(n - start);
        let mut h = [[0f32; LANES]; W];
        for (i, row) in h.iter_mut().enumerate() {
            row[..valid].copy_from_slice(&h0[i * n + start..i * n + start + valid]);
        }
        for l in 0..hidden {
            h = layer::<W, FMA>(&h, ws[l], bs[l], slope);
        }
        let mut a = [[0f32; LANES]; W];
        for i in 0..W {
            for lane in 0..LANES {
                let x = h[i][lane];
                a[i][lane] = if x > 0.0 { x } else { slope * x };
            }
        }
        for (q, row) in logits.iter_mut().enumerate() {
            let mut acc = [last_b[q]; LANES];
            for i in 0..W {
                for lane in 0..LANES {
                    acc[lane] = madd::<FMA>(last_w[q * W + i], a[i][lane], acc[lane]);
                }
            }
            *row = acc;
        }
        for lane in 0..valid {
            let y = labels[start + lane] as usize;
            let (mut max, mut best) = (f32::NEG_INFINITY, 0);
            for (q, row) in logits.iter().enumerate() {
                if row[lane] > max {
                    max = row[lane];
                    best = q;
                }
            }
            let sum: f32 = logits.iter().map(|row| (row[lane] - max).exp()).sum();
            loss += (max + sum.ln() - logits[y][lane]) as f64;
            correct += u64::from(best == y);
        }
        start += valid;
    }
    (loss, correct)
}
