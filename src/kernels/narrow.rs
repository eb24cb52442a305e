//! Hand-written forward and backward passes for training narrow networks (width
//! ≤ 16, no normalisation), the shape of the paper's Fig. 3 at width 10. libtorch
//! runs each `[B, 10] × [10, 10]` layer of each member as its own tiny GEMM and its
//! autograd adds a node per op; here each member's hidden layers and its loss run
//! in one pass of vectorised loops over the batch (activations feature-major,
//! `[W][B]`), and the gradients land directly in the flat gradient buffer.
//! The first layer (input → width) stays a libtorch batched GEMM.
//!
//! For a member with first-layer output z₀ (pre-activation), hidden layers
//! z_l = W_l φ(z_{l−1}) + b_l and logits = W_f φ(z_{d−1}) + b_f, the loss is the mean
//! cross-entropy over the batch; backward is the usual chain rule with
//! φ'(z) = 1 for z > 0 and the slope a otherwise.

use super::simd::{Avx2Fma, Kernel, Simd, dispatch};
use rayon::prelude::*;

/// Where one member's parameters and gradients live (slices of the flat buffers).
pub struct MemberSlices<'a> {
    /// Hidden layers l = 1..d−1: `[W][W]` row-major (out, in) and `[W]`.
    pub hidden_w: Vec<&'a [f32]>,
    pub hidden_b: Vec<&'a [f32]>,
    /// Last layer `[C][W]` and `[C]`.
    pub last_w: &'a [f32],
    pub last_b: &'a [f32],
}

/// The gradient slices of one member, same layout as [`MemberSlices`].
pub struct MemberGrads<'a> {
    pub hidden_w: Vec<&'a mut [f32]>,
    pub hidden_b: Vec<&'a mut [f32]>,
    pub last_w: &'a mut [f32],
    pub last_b: &'a mut [f32],
}

/// The shape of one member's step: `width` units per hidden layer, `classes`
/// logits, `batch` samples, and the leaky ReLU's `slope`.
#[derive(Clone, Copy, Debug)]
pub struct StepShape {
    pub width: usize,
    pub classes: usize,
    pub batch: usize,
    pub slope: f32,
}

/// One member's step: `z0: [W][B]` first-layer outputs, `labels: [B]`; writes the
/// parameter gradients and `dz0: [W][B]`; returns the mean loss.
struct MemberStep<'a, 'p, 'g> {
    shape: StepShape,
    z0: &'a [f32],
    labels: &'a [i64],
    p: &'a MemberSlices<'p>,
    g: &'a mut MemberGrads<'g>,
    dz0: &'a mut [f32],
}

impl Kernel for MemberStep<'_, '_, '_> {
    type Output = f32;

    #[inline(always)]
    fn run<S: Simd>(self, _: S) -> f32 {
        member_step_body::<S>(self.shape, self.z0, self.labels, self.p, self.g, self.dz0)
    }
}

/// out[..] += s · x[..]
#[inline(always)]
fn axpy<S: Simd>(out: &mut [f32], s: f32, x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = S::madd(s, v, *o);
    }
}

#[inline(always)]
fn dot<S: Simd>(a: &[f32], b: &[f32]) -> f32 {
    // eight partial sums so that the loop vectorises
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] = S::madd(a[c * 8 + l], b[c * 8 + l], acc[l]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s = S::madd(a[i], b[i], s);
    }
    s
}

#[inline(always)]
fn activate(z: &[f32], slope: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(z) {
        *o = if v > 0.0 { v } else { slope * v };
    }
}

#[inline(always)]
fn member_step_body<S: Simd>(
    shape: StepShape,
    z0: &[f32],
    labels: &[i64],
    p: &MemberSlices,
    g: &mut MemberGrads,
    dz0: &mut [f32],
) -> f32 {
    let StepShape {
        width: w,
        classes: c,
        batch: b,
        slope,
    } = shape;
    let hidden = p.hidden_w.len();
    // Pre-activations of every layer but the last, feature-major [l][W][B].
    let mut z = vec![0f32; (hidden + 1) * w * b];
    z[..w * b].copy_from_slice(z0);
    let mut a = vec![0f32; w * b];
    for l in 0..hidden {
        let (prev, rest) = z.split_at_mut((l + 1) * w * b);
        activate(&prev[l * w * b..], slope, &mut a);
        let next = &mut rest[..w * b];
        let (wl, bl) = (p.hidden_w[l], p.hidden_b[l]);
        for j in 0..w {
            let row = &mut next[j * b..(j + 1) * b];
            row.fill(bl[j]);
            for i in 0..w {
                axpy::<S>(row, wl[j * w + i], &a[i * b..(i + 1) * b]);
            }
        }
    }
    // Logits [C][B] and the loss.
    activate(&z[hidden * w * b..], slope, &mut a);
    let mut logits = vec![0f32; c * b];
    for k in 0..c {
        let row = &mut logits[k * b..(k + 1) * b];
        row.fill(p.last_b[k]);
        for i in 0..w {
            axpy::<S>(row, p.last_w[k * w + i], &a[i * b..(i + 1) * b]);
        }
    }
    let mut loss = 0f64;
    let mut dlogits = vec![0f32; c * b];
    for s in 0..b {
        let mut max = f32::NEG_INFINITY;
        for k in 0..c {
            max = max.max(logits[k * b + s]);
        }
        let mut sum = 0f32;
        for k in 0..c {
            sum += (logits[k * b + s] - max).exp();
        }
        let lse = max + sum.ln();
        let y = labels[s] as usize;
        loss += (lse - logits[y * b + s]) as f64;
        for k in 0..c {
            let softmax = (logits[k * b + s] - lse).exp();
            dlogits[k * b + s] = (softmax - if k == y { 1.0 } else { 0.0 }) / b as f32;
        }
    }
    // Last layer: gradients, then back to its input.
    let mut dz = vec![0f32; w * b];
    for k in 0..c {
        let d = &dlogits[k * b..(k + 1) * b];
        g.last_b[k] = d.iter().sum();
        for i in 0..w {
            g.last_w[k * w + i] = dot::<S>(d, &a[i * b..(i + 1) * b]);
            axpy::<S>(&mut dz[i * b..(i + 1) * b], p.last_w[k * w + i], d);
        }
    }
    let derivative = |dz: &mut [f32], z: &[f32]| {
        for (d, &v) in dz.iter_mut().zip(z) {
            if v <= 0.0 {
                *d *= slope;
            }
        }
    };
    derivative(&mut dz, &z[hidden * w * b..(hidden + 1) * w * b]);
    // Hidden layers, last to first: dz is the gradient of z_{l+1}.
    let mut da = vec![0f32; w * b];
    for l in (0..hidden).rev() {
        activate(&z[l * w * b..(l + 1) * w * b], slope, &mut a);
        let wl = p.hidden_w[l];
        da.fill(0.0);
        for j in 0..w {
            let d = &dz[j * b..(j + 1) * b];
            g.hidden_b[l][j] = d.iter().sum();
            for i in 0..w {
                g.hidden_w[l][j * w + i] = dot::<S>(d, &a[i * b..(i + 1) * b]);
                axpy::<S>(&mut da[i * b..(i + 1) * b], wl[j * w + i], d);
            }
        }
        derivative(&mut da, &z[l * w * b..(l + 1) * w * b]);
        std::mem::swap(&mut dz, &mut da);
    }
    dz0.copy_from_slice(&dz);
    (loss / b as f64) as f32
}

/// Runs one member's step for every member in parallel. `z0` and `dz0` are
/// `[K, W, B]`, `labels` `[K, B]`; `params` and `grads` give each member's slices.
pub fn ensemble_step<'p, 'g>(
    shape: StepShape,
    z0: &[f32],
    labels: &[i64],
    params: &[MemberSlices<'p>],
    grads: Vec<MemberGrads<'g>>,
    dz0: &mut [f32],
) -> Vec<f32> {
    ensemble_step_on(Avx2Fma::detect(), shape, (z0, labels), params, grads, dz0)
}

/// [`ensemble_step`] on the AVX2 twin where `simd` holds the token, else the
/// scalar one.
fn ensemble_step_on<'p, 'g>(
    simd: Option<Avx2Fma>,
    shape: StepShape,
    (z0, labels): (&[f32], &[i64]),
    params: &[MemberSlices<'p>],
    grads: Vec<MemberGrads<'g>>,
    dz0: &mut [f32],
) -> Vec<f32> {
    let (per, batch) = (shape.width * shape.batch, shape.batch);
    assert_eq!(z0.len(), dz0.len(), "z0 and dz0 must be [K, W, B]");
    grads
        .into_par_iter()
        .zip(dz0.par_chunks_mut(per))
        .enumerate()
        .map(|(k, (mut g, dz0))| {
            let step = MemberStep {
                shape,
                z0: &z0[k * per..(k + 1) * per],
                labels: &labels[k * batch..(k + 1) * batch],
                p: &params[k],
                g: &mut g,
                dz0,
            };
            dispatch(simd, step)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::avx2_for_test;
    use crate::kernels::{assert_close, test_values};

    #[test]
    fn the_avx2_step_agrees_with_the_scalar_one() {
        let Some(avx2) = avx2_for_test() else { return };
        // A batch that is no multiple of eight; leaky ReLU.
        let shape = StepShape {
            width: 10,
            classes: 10,
            batch: 37,
            slope: 0.1,
        };
        let (members, hidden) = (3, 4);
        let (w, c, b) = (shape.width, shape.classes, shape.batch);
        let he = (6.0 / w as f32).sqrt();
        // Per member: hidden weights and biases, then the last layer's.
        let params: Vec<Vec<Vec<f32>>> = (0..members as u64)
            .map(|m| {
                let mut layers: Vec<Vec<f32>> = Vec::new();
                for l in 0..hidden as u64 {
                    layers.push(test_values(w * w, 10 * m + l, he));
                    layers.push(test_values(w, 500 + 10 * m + l, 0.1));
                }
                layers.push(test_values(c * w, 900 + m, he));
                layers.push(test_values(c, 950 + m, 0.1));
                layers
            })
            .collect();
        let slices: Vec<MemberSlices> = params
            .iter()
            .map(|p| MemberSlices {
                hidden_w: (0..hidden).map(|l| p[2 * l].as_slice()).collect(),
                hidden_b: (0..hidden).map(|l| p[2 * l + 1].as_slice()).collect(),
                last_w: &p[2 * hidden],
                last_b: &p[2 * hidden + 1],
            })
            .collect();
        let z0 = test_values(members * w * b, 7, 1.0);
        let labels: Vec<i64> = (0..(members * b) as i64)
            .map(|i| i * 3 % c as i64)
            .collect();
        let run = |simd| {
            let mut grads: Vec<Vec<Vec<f32>>> = params
                .iter()
                .map(|p| p.iter().map(|l| vec![0f32; l.len()]).collect())
                .collect();
            let views: Vec<MemberGrads> = grads
                .iter_mut()
                .map(|g| {
                    let (hidden_layers, last) = g.split_at_mut(2 * hidden);
                    let (last_w, last_b) = last.split_at_mut(1);
                    let mut pairs = hidden_layers.chunks_exact_mut(2);
                    let (hidden_w, hidden_b) = pairs
                        .by_ref()
                        .map(|pair| {
                            let (wl, bl) = pair.split_at_mut(1);
                            (wl[0].as_mut_slice(), bl[0].as_mut_slice())
                        })
                        .unzip();
                    MemberGrads {
                        hidden_w,
                        hidden_b,
                        last_w: &mut last_w[0],
                        last_b: &mut last_b[0],
                    }
                })
                .collect();
            let mut dz0 = vec![0f32; members * w * b];
            let losses = ensemble_step_on(simd, shape, (&z0, &labels), &slices, views, &mut dz0);
            let flat = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            let grads: Vec<f64> = grads.iter().flatten().flat_map(|l| flat(l)).collect();
            (flat(&losses), grads, flat(&dz0))
        };
        let (scalar, simd) = (run(None), run(Some(avx2)));
        // FMA rounds each multiply-add once instead of twice (about 6e-8 relative):
        // over five layers of width 10 and sums over 37 samples, below 1e-5 of the
        // values' scale; 1e-4 catches any real disagreement.
        let scale = |v: &[f64]| v.iter().fold(1f64, |s, x| s.max(x.abs()));
        assert_close("loss", &simd.0, &scalar.0, 1e-4, scale(&scalar.0));
        assert_close("gradients", &simd.1, &scalar.1, 1e-4, scale(&scalar.1));
        assert_close("dz0", &simd.2, &scalar.2, 1e-4, scale(&scalar.2));
    }
}
