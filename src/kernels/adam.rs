//! Adam's update as one fused pass over flat buffers, with a learning rate per
//! member, as PyTorch's Adam computes it.

use super::simd::{Avx2Fma, Kernel, Simd, dispatch};
use rayon::prelude::*;

/// Adam's constants for step number `step` (from 1): β₁, β₂, ε and the bias
/// corrections, and the instruction set the update runs on.
#[derive(Clone, Copy)]
pub struct AdamStep {
    b1: f32,
    b2: f32,
    eps: f32,
    bc1: f64,
    bc2_sqrt: f32,
    simd: Option<Avx2Fma>,
}

/// Adam's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl AdamStep {
    pub fn new(step: usize, config: AdamConfig) -> AdamStep {
        AdamStep::on(Avx2Fma::detect(), step, config)
    }

    /// [`AdamStep::new`] whose updates run the AVX2 twin where `simd` holds the
    /// token, else the scalar one.
    fn on(simd: Option<Avx2Fma>, step: usize, config: AdamConfig) -> AdamStep {
        let AdamConfig { beta1, beta2, eps } = config;
        AdamStep {
            b1: beta1 as f32,
            b2: beta2 as f32,
            eps: eps as f32,
            bc1: 1.0 - beta1.powi(step as i32),
            bc2_sqrt: (1.0 - beta2.powi(step as i32)).sqrt() as f32,
            simd,
        }
    }

    /// One run of parameters `p` with its gradient `g` and moments `m`, `v`, at
    /// learning rate `lr`: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
    /// p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε), as PyTorch's Adam.
    ///
    /// Compiled twice, for the baseline CPU and for AVX2 (chosen at run time): the
    /// same operations in the same order (no multiply-adds, so nothing for FMA to
    /// fuse), so the same numbers, eight floats at a time instead of four.
    #[inline]
    pub fn update(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], lr: f64) {
        let n = p.len();
        assert!(
            g.len() == n && m.len() == n && v.len() == n,
            "Adam's buffers differ in length"
        );
        dispatch(
            self.simd,
            Update {
                adam: self,
                p,
                g,
                m,
                v,
                lr,
            },
        );
    }
}

/// [`AdamStep::update`]'s arguments, as a kernel with a scalar and an AVX2 twin.
struct Update<'a> {
    adam: &'a AdamStep,
    p: &'a mut [f32],
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    lr: f64,
}

impl Kernel for Update<'_> {
    type Output = ();

    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        let Update {
            adam,
            p,
            g,
            m,
            v,
            lr,
        } = self;
        let (b1, b2, eps, bc2_sqrt) = (adam.b1, adam.b2, adam.eps, adam.bc2_sqrt);
        let step_size = (lr / adam.bc1) as f32;
        for i in 0..p.len() {
            let gi = g[i];
            let mi = b1 * m[i] + (1.0 - b1) * gi;
            let vi = b2 * v[i] + (1.0 - b2) * gi * gi;
            m[i] = mi;
            v[i] = vi;
            p[i] -= step_size * mi / (vi.sqrt() / bc2_sqrt + eps);
        }
    }
}

/// (start, len, member): a contiguous run of one member's elements in a flat buffer.
pub type Segment = (usize, usize, usize);

/// One segment's parameters, gradient, moments and learning rate.
type Piece<'a> = (&'a mut [f32], &'a [f32], &'a mut [f32], &'a mut [f32], f64);

/// One Adam step on flat buffers, member by member (each contiguous run of one
/// member's elements gets that member's learning rate); see [`AdamStep::update`].
pub fn adam_step(
    (param, grad): (&mut [f32], &[f32]),
    (m, v): (&mut [f32], &mut [f32]),
    segments: &[Segment],
    lrs: &[f64],
    adam: AdamStep,
) {
    // Split every buffer at segment boundaries so that rayon can own disjoint pieces.
    let mut pieces: Vec<Piece> = Vec::with_capacity(segments.len());
    let (mut p_rest, mut g_rest, mut m_rest, mut v_rest) = (param, grad, m, v);
    let mut consumed = 0;
    for &(start, len, member) in segments {
        debug_assert_eq!(start, consumed, "segments must tile the buffer in order");
        let (p, pr) = p_rest.split_at_mut(len);
        let (g, gr) = g_rest.split_at(len);
        let (mm, mr) = m_rest.split_at_mut(len);
        let (vv, vr) = v_rest.split_at_mut(len);
        pieces.push((p, g, mm, vv, lrs[member]));
        p_rest = pr;
        g_rest = gr;
        m_rest = mr;
        v_rest = vr;
        consumed += len;
    }
    pieces
        .into_par_iter()
        .with_min_len(8)
        .for_each(|(p, g, m, v, lr)| adam.update(p, g, m, v, lr));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::avx2_for_test;
    use crate::kernels::test_values;

    #[test]
    fn the_avx2_update_gives_the_scalar_numbers() {
        let Some(avx2) = avx2_for_test() else { return };
        let config = AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        // A length that leaves a tail beyond the last vector of eight.
        let n = 8 * 25 + 3;
        let g = test_values(n, 1, 1.0);
        let run = |simd: Option<Avx2Fma>| {
            let (mut p, mut m, mut v) = (test_values(n, 2, 1.0), vec![0f32; n], vec![0f32; n]);
            for step in 1..=3 {
                AdamStep::on(simd, step, config).update(&mut p, &g, &mut m, &mut v, 1e-2);
            }
            [p, m, v].map(|x| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        };
        // No multiply-adds to fuse: the same operations in the same order.
        assert_eq!(run(Some(avx2)), run(None));
    }
}
