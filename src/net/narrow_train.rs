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

/// One member's step: `z0: [W][B]` first-layer outputs, `labels: [B]`; writes the
/// parameter gradients and `dz0: [W][B]`; returns the mean loss.
#[allow(clippy::too_many_arguments)]
pub fn member_step(
    width: usize,
    classes: usize,
    batch: usize,
    slope: f32,
    z0: &[f32],
    labels: &[i64],
    p: &MemberSlices,
    g: &mut MemberGrads,
    dz0: &mut [f32],
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe {
                member_step_avx2(width, classes, batch, slope, z0, labels, p, g, dz0)
            };
        }
    }
    member_step_body::<false>(width, classes, batch, slope, z0, labels, p, g, dz0)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn member_step_avx2(
    width: usize,
    classes: usize,
    batch: usize,
    slope: f32,
    z0: &[f32],
    labels: &[i64],
    p: &MemberSlices,
    g: &mut MemberGrads,
    dz0: &mut [f32],
) -> f32 {
    member_step_body::<true>(width, classes, batch, slope, z0, labels, p, g, dz0)
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// out[..] += s · x[..]
#[inline(always)]
fn axpy<const FMA: bool>(out: &mut [f32], s: f32, x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = madd::<FMA>(s, v, *o);
    }
}

#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    // eight partial sums so that the loop vectorises
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] = madd::<FMA>(a[c * 8 + l], b[c * 8 + l], acc[l]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s = madd::<FMA>(a[i], b[i], s);
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
#[allow(clippy::too_many_arguments)]
fn member_step_body<const FMA: bool>(
    w: usize,
    c: usize,
    b: usize,
    slope: f32,
    z0: &[f32],
    labels: &[i64],
    p: &MemberSlices,
    g: &mut MemberGrads,
    dz0: &mut [f32],
) -> f32 {
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
                axpy::<FMA>(row, wl[j * w + i], &a[i * b..(i + 1) * b]);
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
            axpy::<FMA>(row, p.last_w[k * w + i], &a[i * b..(i + 1) * b]);
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
            g.last_w[k * w + i] = dot::<FMA>(d, &a[i * b..(i + 1) * b]);
            axpy::<FMA>(&mut dz[i * b..(i + 1) * b], p.last_w[k * w + i], d);
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
                g.hidden_w[l][j * w + i] = dot::<FMA>(d, &a[i * b..(i + 1) * b]);
                axpy::<FMA>(&mut da[i * b..(i + 1) * b], wl[j * w + i], d);
            }
        }
        derivative(&mut da, &z[l * w * b..(l + 1) * w * b]);
        std::mem::swap(&mut dz, &mut da);
    }
    dz0.copy_from_slice(&dz);
    (loss / b as f64) as f32
}

/// Runs `member_step` for every member in parallel. `z0` and `dz0` are `[K, W, B]`,
/// `labels` `[K, B]`; `params(k)` and `grads` give each member's slices.
#[allow(clippy::too_many_arguments)]
pub fn ensemble_step<'a>(
    width: usize,
    classes: usize,
    batch: usize,
    slope: f32,
    z0: &[f32],
    labels: &[i64],
    params: &[MemberSlices<'a>],
    grads: Vec<MemberGrads<'a>>,
    dz0: &mut [f32],
) -> Vec<f32> {
    let per = width * batch;
    grads
        .into_par_iter()
        .zip(dz0.par_chunks_mut(per))
        .enumerate()
        .map(|(k, (mut g, d))| {
            member_step(
                width,
                classes,
                batch,
                slope,
                &z0[k * per..(k + 1) * per],
                &labels[k * batch..(k + 1) * batch],
                &params[k],
                &mut g,
                d,
            )
        })
        .collect()
}
