//! A fused forward pass for the statistics of narrow networks (width ≤ 16), the
//! shape of the paper's Fig. 2. libtorch runs a `[K, 10, n] × [K, 10, 10]` layer
//! as K tiny GEMMs plus a separate ReLU pass over memory, far below the machine's
//! arithmetic rate; here each member's samples go through every hidden layer in
//! registers, eight at a time, and only the statistic leaves the core: per Linear
//! layer, the mean and sum of squared deviations of output unit 0.
//!
//! The first layer (input → width) stays a libtorch GEMM, which is efficient.
//! The same kernel evaluates narrow networks on the test set ([`evaluate`]).

use super::simd::{Avx2Fma, Kernel, Simd, dispatch};
use rayon::prelude::*;

/// Samples per SIMD block (one AVX2 register of f32).
const LANES: usize = 8;

/// `Some($run::<W, _>(args))` with the network's `$width` as the constant W, for
/// the widths the kernels handle (1 to 16); `None` for wider networks.
macro_rules! by_width {
    ($width:expr, $run:ident $args:tt) => {
        by_width!(@ $width, $run $args, 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    };
    (@ $width:expr, $run:ident $args:tt, $($w:literal)*) => {
        match $width {
            $($w => Some($run::<$w, _> $args),)*
            _ => None,
        }
    };
}

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

/// The weights a member needs after the first layer, all contiguous f32: hidden
/// layers `[K, W, W]` with biases `[K, W]`, and the first `classes` rows of the
/// last layer `[K, C, W]` with their biases `[K, C]` (evaluation reads every
/// class; the moments of unit 0 read row 0 alone, C = 1).
pub struct FusedWeights<'a> {
    pub width: usize,
    pub classes: usize,
    pub slope: f32,
    pub hidden_w: Vec<&'a [f32]>,
    pub hidden_b: Vec<&'a [f32]>,
    pub last_w: &'a [f32],
    pub last_b: &'a [f32],
}

impl<'a> FusedWeights<'a> {
    /// Borrows `(weights, biases)` pairs as `Ensemble::flat_layers` gives them.
    pub fn new(
        width: usize,
        classes: usize,
        slope: f64,
        hidden: &'a [(Vec<f32>, Vec<f32>)],
        last: &'a (Vec<f32>, Vec<f32>),
    ) -> Self {
        FusedWeights {
            width,
            classes,
            slope: slope as f32,
            hidden_w: hidden.iter().map(|(w, _)| w.as_slice()).collect(),
            hidden_b: hidden.iter().map(|(_, b)| b.as_slice()).collect(),
            last_w: &last.0,
            last_b: &last.1,
        }
    }
}

/// Moments of unit 0 of every Linear layer for a chunk of `n` samples whose first
/// layer outputs (pre-activation, bias included) are `h0: [K, W, n]`, from
/// weights whose last layer is its row 0 (`classes` 1). Returns `None` for widths
/// this kernel does not handle.
pub fn unit0_moments(
    h0: &[f32],
    weights: &FusedWeights,
    members: usize,
    n: usize,
) -> Option<Unit0Moments> {
    assert_eq!(
        weights.classes, 1,
        "unit 0's moments take row 0 of the last layer"
    );
    unit0_moments_on(Avx2Fma::detect(), h0, weights, members, n)
}

/// [`unit0_moments`] on the AVX2 twin where `simd` holds the token, else the scalar one.
fn unit0_moments_on(
    simd: Option<Avx2Fma>,
    h0: &[f32],
    weights: &FusedWeights,
    members: usize,
    n: usize,
) -> Option<Unit0Moments> {
    let per_member = by_width!(weights.width, each_member(simd, h0, weights, members, n))?;
    let layers = weights.hidden_w.len() + 2;
    let mut out = Unit0Moments::new(members, layers);
    for (k, (mean, m2)) in per_member.into_iter().enumerate() {
        for l in 0..layers {
            out.count[k * layers + l] = n as u64;
            out.mean[k * layers + l] = mean[l];
            out.m2[k * layers + l] = m2[l];
        }
    }
    Some(out)
}

/// What a fused kernel makes of one member's samples, once their first-layer
/// outputs are known: [`FusedWeights`] gives the moments of unit 0, an
/// [`Evaluation`] the loss and correct predictions.
trait MemberPass: Sync {
    type Output: Send;

    /// Member k's result over its first-layer outputs `h0: [W, n]`.
    fn member<const W: usize, S: Simd>(&self, h0: &[f32], k: usize, n: usize) -> Self::Output;
}

/// `pass` on every member of the `[K, W, n]` first-layer outputs `h0`, members on
/// rayon's threads.
fn each_member<const W: usize, P: MemberPass>(
    simd: Option<Avx2Fma>,
    h0: &[f32],
    pass: &P,
    members: usize,
    n: usize,
) -> Vec<P::Output> {
    assert_eq!(h0.len(), members * W * n, "h0 must be [K, W, n]");
    (0..members)
        .into_par_iter()
        .map(|k| {
            let h0 = &h0[k * W * n..(k + 1) * W * n];
            dispatch(simd, OneMember::<W, _> { h0, pass, k, n })
        })
        .collect()
}

/// One member's [`MemberPass`] as a kernel of the scalar/AVX2 twins.
struct OneMember<'a, const W: usize, P> {
    h0: &'a [f32],
    pass: &'a P,
    k: usize,
    n: usize,
}

impl<const W: usize, P: MemberPass> Kernel for OneMember<'_, W, P> {
    type Output = P::Output;

    #[inline(always)]
    fn run<S: Simd>(self, _: S) -> P::Output {
        self.pass.member::<W, S>(self.h0, self.k, self.n)
    }
}

/// The leaky ReLU of slope `slope`.
#[inline(always)]
fn leaky(x: f32, slope: f32) -> f32 {
    if x > 0.0 { x } else { slope * x }
}

/// One hidden layer on a block of samples: h' = W φ(h) + b. The input unit is the
/// outer loop and the W accumulators stay in registers, so that the multiply-adds
/// form W independent chains (a row-at-a-time loop is one long dependent chain).
#[inline(always)]
fn layer<const W: usize, S: Simd>(
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
            a[lane] = leaky(h[i][lane], slope);
        }
        for j in 0..W {
            let wji = w[j * W + i];
            for lane in 0..LANES {
                acc[j][lane] = S::madd(wji, a[lane], acc[j][lane]);
            }
        }
    }
    acc
}

/// Member k's hidden layers: the `[W, W]` weights and `[W]` biases of each.
#[inline(always)]
fn member_hidden<'a, const W: usize>(
    hidden_w: &[&'a [f32]],
    hidden_b: &[&'a [f32]],
    k: usize,
) -> (Vec<&'a [f32]>, Vec<&'a [f32]>) {
    let ws = hidden_w
        .iter()
        .map(|w| &w[k * W * W..(k + 1) * W * W])
        .collect();
    let bs = hidden_b.iter().map(|b| &b[k * W..(k + 1) * W]).collect();
    (ws, bs)
}

/// Samples `start..start + valid` of a member's first-layer outputs `h0: [W, n]`
/// as one block, lanes past `valid` zero.
#[inline(always)]
fn load_block<const W: usize>(
    h0: &[f32],
    n: usize,
    start: usize,
    valid: usize,
) -> [[f32; LANES]; W] {
    let mut h = [[0f32; LANES]; W];
    for (i, row) in h.iter_mut().enumerate() {
        row[..valid].copy_from_slice(&h0[i * n + start..i * n + start + valid]);
    }
    h
}

impl MemberPass for FusedWeights<'_> {
    /// Per layer: the mean and M2 of unit 0.
    type Output = (Vec<f64>, Vec<f64>);

    #[inline(always)]
    fn member<const W: usize, S: Simd>(&self, h0: &[f32], k: usize, n: usize) -> Self::Output {
        unit0_member::<W, S>(h0, self, k, n)
    }
}

/// One member over its n samples: per layer, the mean and M2 of unit 0.
#[inline(always)]
fn unit0_member<const W: usize, S: Simd>(
    h0: &[f32],
    weights: &FusedWeights,
    k: usize,
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    let hidden = weights.hidden_w.len();
    let layers = hidden + 2;
    let slope = weights.slope;
    let (ws, bs) = member_hidden::<W>(&weights.hidden_w, &weights.hidden_b, k);
    let last_w = &weights.last_w[k * W..(k + 1) * W];
    let last_b = weights.last_b[k];
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
        let mut h = load_block::<W>(h0, n, start, valid);
        let first = start == 0;
        record(0, &h[0], valid, first);
        for l in 0..hidden {
            h = layer::<W, S>(&h, ws[l], bs[l], slope);
            record(l + 1, &h[0], valid, first);
        }
        // The last layer: only its unit 0 is needed.
        let mut acc = [last_b; LANES];
        for i in 0..W {
            for lane in 0..LANES {
                acc[lane] = S::madd(last_w[i], leaky(h[i][lane], slope), acc[lane]);
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

/// Per member, over a chunk of `n` samples with first-layer outputs `h0: [K, W, n]`
/// and `labels: [n]`: the summed cross-entropy and the number of correct argmax
/// predictions. `None` for widths the kernel does not handle.
pub fn evaluate(
    h0: &[f32],
    weights: &FusedWeights,
    labels: &[i64],
    members: usize,
    n: usize,
) -> Option<Vec<(f64, u64)>> {
    evaluate_on(Avx2Fma::detect(), h0, weights, labels, members, n)
}

/// [`evaluate`] on the AVX2 twin where `simd` holds the token, else the scalar one.
fn evaluate_on(
    simd: Option<Avx2Fma>,
    h0: &[f32],
    weights: &FusedWeights,
    labels: &[i64],
    members: usize,
    n: usize,
) -> Option<Vec<(f64, u64)>> {
    let pass = Evaluation { weights, labels };
    by_width!(weights.width, each_member(simd, h0, &pass, members, n))
}

/// The test-set evaluation of a chunk of samples: the weights, and the `[n]`
/// labels of the samples.
struct Evaluation<'a, 'w> {
    weights: &'a FusedWeights<'w>,
    labels: &'a [i64],
}

impl MemberPass for Evaluation<'_, '_> {
    /// The summed loss and the number of correct predictions.
    type Output = (f64, u64);

    #[inline(always)]
    fn member<const W: usize, S: Simd>(&self, h0: &[f32], k: usize, n: usize) -> (f64, u64) {
        eval_member::<W, S>(h0, self.weights, self.labels, k, n)
    }
}

/// One member's summed loss and correct predictions over its n samples.
#[inline(always)]
fn eval_member<const W: usize, S: Simd>(
    h0: &[f32],
    weights: &FusedWeights,
    labels: &[i64],
    k: usize,
    n: usize,
) -> (f64, u64) {
    let hidden = weights.hidden_w.len();
    let c = weights.classes;
    let slope = weights.slope;
    let (ws, bs) = member_hidden::<W>(&weights.hidden_w, &weights.hidden_b, k);
    let last_w = &weights.last_w[k * c * W..(k + 1) * c * W];
    let last_b = &weights.last_b[k * c..(k + 1) * c];
    let mut loss = 0f64;
    let mut correct = 0u64;
    let mut logits = vec![[0f32; LANES]; c];
    let mut start = 0;
    while start < n {
        let valid = LANES.min(n - start);
        let mut h = load_block::<W>(h0, n, start, valid);
        for l in 0..hidden {
            h = layer::<W, S>(&h, ws[l], bs[l], slope);
        }
        let mut a = [[0f32; LANES]; W];
        for i in 0..W {
            for lane in 0..LANES {
                a[i][lane] = leaky(h[i][lane], slope);
            }
        }
        for (q, row) in logits.iter_mut().enumerate() {
            let mut acc = [last_b[q]; LANES];
            for i in 0..W {
                for lane in 0..LANES {
                    acc[lane] = S::madd(last_w[q * W + i], a[i][lane], acc[lane]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::avx2_for_test;
    use crate::kernels::{assert_close, test_values};

    /// `members` networks of width `w`, `hidden` hidden layers after the first and
    /// `classes` outputs, weights of variance about 2 / w (He), small biases:
    /// the hidden layers and the last one as `(weights, biases)`.
    type Layer = (Vec<f32>, Vec<f32>);
    fn net(members: usize, w: usize, hidden: usize, classes: usize) -> (Vec<Layer>, Layer) {
        let he = (6.0 / w as f32).sqrt();
        let layer = |l: u64, rows: usize| {
            (
                test_values(members * rows * w, l, he),
                test_values(members * rows, 100 + l, 0.1),
            )
        };
        let hidden = (0..hidden as u64).map(|l| layer(l, w)).collect();
        (hidden, layer(200, classes))
    }

    // The twins differ only where FMA rounds a multiply-add once instead of twice
    // (2⁻²⁴ relative, about 6e-8): over a few hidden layers of width 10 that stays
    // below 1e-5 of the values' scale, so 1e-4 leaves a margin and still catches
    // any real disagreement (an indexing slip is of order one).

    #[test]
    fn the_avx2_statistics_agree_with_the_scalar_ones() {
        let Some(avx2) = avx2_for_test() else { return };
        // n = 37 leaves a partial block of lanes.
        let (members, w, hidden, n) = (3, 10, 5, 37);
        let (hidden, last) = net(members, w, hidden, 1);
        let weights = FusedWeights::new(w, 1, 0.1, &hidden, &last);
        let h0 = test_values(members * w * n, 300, 1.0);
        let run = |simd| unit0_moments_on(simd, &h0, &weights, members, n).expect("width 10");
        let (scalar, simd) = (run(None), run(Some(avx2)));
        assert_eq!(simd.count, scalar.count);
        let scale = scalar
            .mean
            .iter()
            .chain(&scalar.m2)
            .fold(1f64, |s, v| s.max(v.abs()));
        assert_close("mean", &simd.mean, &scalar.mean, 1e-4, scale);
        assert_close("m2", &simd.m2, &scalar.m2, 1e-4, scale);
    }

    #[test]
    fn the_avx2_evaluation_agrees_with_the_scalar_one() {
        let Some(avx2) = avx2_for_test() else { return };
        let (members, w, hidden, classes, n) = (3, 7, 4, 10, 45);
        let (hidden, last) = net(members, w, hidden, classes);
        let weights = FusedWeights::new(w, classes, 0.0, &hidden, &last);
        let h0 = test_values(members * w * n, 301, 1.0);
        let labels: Vec<i64> = (0..n as i64).map(|i| i * 7 % classes as i64).collect();
        let run = |simd| evaluate_on(simd, &h0, &weights, &labels, members, n).expect("width 7");
        let (scalar, simd) = (run(None), run(Some(avx2)));
        let loss = |r: &[(f64, u64)]| r.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_close("loss", &loss(&simd), &loss(&scalar), 1e-4, n as f64);
        for (m, (a, b)) in simd.iter().zip(&scalar).enumerate() {
            // An argmax may flip only on a near-tie within that rounding.
            assert!(
                a.1.abs_diff(b.1) <= 1,
                "member {m}: {} vs {} correct",
                a.1,
                b.1
            );
        }
    }
}
