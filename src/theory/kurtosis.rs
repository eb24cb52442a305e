//! Proposition 3 of the paper: how the kurtosis κ_l of a layer's outputs and the
//! covariance of squares c_l of two of its entries evolve through a He-initialised
//! leaky-ReLU network, as the linear recursion k^(l+1) = A^(l) k^(l), k = [κ, c, 1].
//!
//! Everything here is pure f64 and in units of σ⁴: `cov_sq` is c_l / σ⁴, which makes
//! the recursion independent of the variance σ² (Proposition 1 keeps σ² constant).

use thiserror::Error;

/// Why a theory input was rejected; the message names the parameter and the fix.
#[derive(Debug, Error, PartialEq)]
pub enum TheoryError {
    #[error("width must be at least 1 (got {0} at step {1}); every layer needs one unit")]
    Width(usize, usize),
    #[error(
        "kappa_w (the weights' kurtosis) must be finite and >= 1, got {0}: every distribution has kurtosis >= 1"
    )]
    KappaW(f64),
    #[error("kappa0 (the input kurtosis) must be finite and >= 1, got {0}")]
    Kappa0(f64),
    #[error("c0 (input covariance of squares / sigma^4) must be finite and >= -1, got {0}")]
    C0(f64),
    #[error("slope must be finite, got {0}")]
    Slope(f64),
    #[error("sigma2 (the input variance) must be finite and > 0, got {0}")]
    Sigma2(f64),
    #[error("n (the sample size of the empirical variance) must be at least 2, got {0}")]
    SampleSize(u64),
    #[error("threshold must be finite and > 0, got {0}")]
    Threshold(f64),
}

/// The statistics of one layer's outputs: kurtosis κ_l and covariance of squares c_l/σ⁴.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerMoments {
    pub kurtosis: f64,
    pub cov_sq: f64,
}

/// The two coefficients that depend on the slope a: 2(a⁴+1)/(a²+1)², the factor
/// of Lemma 1 that turns the kurtosis before the activation into E[φ_a⁴]/σ⁴ terms.
pub fn slope_factor(slope: f64) -> f64 {
    let a2 = slope * slope;
    2.0 * (a2 * a2 + 1.0) / ((a2 + 1.0) * (a2 + 1.0))
}

/// The matrix A^(l) of Proposition 3 in σ⁴ units, for a step whose fan-in is `width`
/// (the number of terms summed to form each entry of the next layer).
/// Rows: [κ_{l+1}, c_{l+1}/σ⁴, 1] = A · [κ_l, c_l/σ⁴, 1].
pub fn step_matrix(width: usize, slope: f64, kappa_w: f64) -> [[f64; 3]; 3] {
    let w = width as f64;
    let s = slope_factor(slope) / w;
    let keep = (w - 1.0) / w;
    [
        [s * kappa_w, 3.0 * keep, 3.0 * keep],
        [s, keep, -1.0 / w],
        [0.0, 0.0, 1.0],
    ]
}

/// One step of the recursion: the moments of layer l+1 from those of layer l.
pub fn step(prev: LayerMoments, width: usize, slope: f64, kappa_w: f64) -> LayerMoments {
    let a = step_matrix(width, slope, kappa_w);
    LayerMoments {
        kurtosis: a[0][0] * prev.kurtosis + a[0][1] * prev.cov_sq + a[0][2],
        cov_sq: a[1][0] * prev.kurtosis + a[1][1] * prev.cov_sq + a[1][2],
    }
}

/// Parameters of the recursion. `widths[l-1]` is the fan-in of the step that makes
/// layer l (l = 1..=depth), i.e. the width of layer l-1; for a constant-width
/// network every entry is the width.
#[derive(Debug, Clone, PartialEq)]
pub struct RecursionInput {
    pub widths: Vec<usize>,
    pub slope: f64,
    pub kappa_w: f64,
    pub kappa0: f64,
    pub c0: f64,
}

impl RecursionInput {
    pub fn validate(&self) -> Result<(), TheoryError> {
        if let Some((i, _)) = self.widths.iter().enumerate().find(|(_, w)| **w == 0) {
            return Err(TheoryError::Width(0, i + 1));
        }
        if !self.kappa_w.is_finite() || self.kappa_w < 1.0 {
            return Err(TheoryError::KappaW(self.kappa_w));
        }
        if !self.kappa0.is_finite() || self.kappa0 < 1.0 {
            return Err(TheoryError::Kappa0(self.kappa0));
        }
        if !self.c0.is_finite() || self.c0 < -1.0 {
            return Err(TheoryError::C0(self.c0));
        }
        if !self.slope.is_finite() {
            return Err(TheoryError::Slope(self.slope));
        }
        Ok(())
    }
}

/// κ_l and c_l/σ⁴ for l = 0..=depth; entry 0 is the input (κ_0, c_0).
pub fn kurtosis_recursion(input: &RecursionInput) -> Result<Vec<LayerMoments>, TheoryError> {
    input.validate()?;
    let mut out = Vec::with_capacity(input.widths.len() + 1);
    let mut current = LayerMoments {
        kurtosis: input.kappa0,
        cov_sq: input.c0,
    };
    out.push(current);
    for &w in &input.widths {
        current = step(current, w, input.slope, input.kappa_w);
        out.push(current);
    }
    Ok(out)
}

/// The output kurtosis of a constant-width network after `depth` steps.
pub fn output_kurtosis(
    width: usize,
    depth: usize,
    slope: f64,
    kappa_w: f64,
    kappa0: f64,
    c0: f64,
) -> Result<f64, TheoryError> {
    let input = RecursionInput {
        widths: vec![width; depth],
        slope,
        kappa_w,
        kappa0,
        c0,
    };
    Ok(kurtosis_recursion(&input)?
        .last()
        .map(|m| m.kurtosis)
        .unwrap_or(kappa0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    /// A ReLU network of `widths` with Gaussian weights on Gaussian inputs.
    fn gaussian_relu(widths: Vec<usize>) -> RecursionInput {
        RecursionInput {
            widths,
            slope: 0.0,
            kappa_w: 3.0,
            kappa0: 3.0,
            c0: 0.0,
        }
    }

    #[test]
    fn depth_zero_returns_the_input() {
        let input = RecursionInput {
            kappa0: 3.28,
            c0: 0.1,
            ..gaussian_relu(vec![])
        };
        let out = kurtosis_recursion(&input).unwrap();
        assert_eq!(
            out,
            vec![LayerMoments {
                kurtosis: 3.28,
                cov_sq: 0.1
            }]
        );
    }

    #[test]
    fn one_relu_step_by_hand() {
        // Width 2, ReLU (a = 0), Gaussian weights (κ_w = 3), Gaussian input (κ = 3, c = 0):
        // slope factor 2, so κ_1 = (2·3/2)·3 + (3/2)·0 + 3/2 = 10.5 and
        // c_1 = (2/2)·3 + (1/2)·0 − 1/2 = 2.5.
        let out = step(
            LayerMoments {
                kurtosis: 3.0,
                cov_sq: 0.0,
            },
            2,
            0.0,
            3.0,
        );
        assert!(close(out.kurtosis, 10.5), "{out:?}");
        assert!(close(out.cov_sq, 2.5), "{out:?}");
        // A second step from there: κ_2 = 3·10.5 + 1.5·2.5 + 1.5 = 36.75, c_2 = 10.5 + 1.25 − 0.5 = 11.25.
        let out = step(out, 2, 0.0, 3.0);
        assert!(close(out.kurtosis, 36.75), "{out:?}");
        assert!(close(out.cov_sq, 11.25), "{out:?}");
    }

    #[test]
    fn width_one_linear_network_keeps_bernoulli_kurtosis() {
        // a = 1 is a linear network; with ±1 weights (κ_w = 1) and width 1, y = ±x keeps κ.
        let out = step(
            LayerMoments {
                kurtosis: 4.2,
                cov_sq: 0.3,
            },
            1,
            1.0,
            1.0,
        );
        assert!(close(out.kurtosis, 4.2), "{out:?}");
        // ReLU, width 1, Gaussian weights: E[y⁴] = κ_w E[W²]² E[φ⁴] = 3·4·κ/2 σ⁴ → κ' = 6κ.
        let out = step(
            LayerMoments {
                kurtosis: 2.0,
                cov_sq: 0.0,
            },
            1,
            0.0,
            3.0,
        );
        assert!(close(out.kurtosis, 12.0), "{out:?}");
    }

    #[test]
    fn leaky_slope_by_hand() {
        // a = 0.5: slope factor 2(1/16 + 1)/(1.25²) = 2.125/1.5625 = 1.36; width 4, κ_w = 1.8.
        let f = slope_factor(0.5);
        assert!(close(f, 1.36));
        let out = step(
            LayerMoments {
                kurtosis: 3.0,
                cov_sq: 0.5,
            },
            4,
            0.5,
            1.8,
        );
        let kappa = 1.36 / 4.0 * 1.8 * 3.0 + 0.75 * 3.0 * 0.5 + 0.75 * 3.0;
        let cov = 1.36 / 4.0 * 3.0 + 0.75 * 0.5 - 0.25;
        assert!(
            close(out.kurtosis, kappa) && close(out.cov_sq, cov),
            "{out:?}"
        );
    }

    #[test]
    fn profile_uses_each_width_in_order() {
        let input = gaussian_relu(vec![2, 5]);
        let out = kurtosis_recursion(&input).unwrap();
        let first = step(out[0], 2, 0.0, 3.0);
        let second = step(first, 5, 0.0, 3.0);
        assert_eq!(out[1], first);
        assert_eq!(out[2], second);
        // and the order matters
        let swapped = RecursionInput {
            widths: vec![5, 2],
            ..input
        };
        assert_ne!(kurtosis_recursion(&swapped).unwrap()[2], second);
    }

    #[test]
    fn rejects_bad_parameters() {
        let ok = gaussian_relu(vec![3, 3]);
        assert_eq!(
            kurtosis_recursion(&RecursionInput {
                widths: vec![3, 0],
                ..ok.clone()
            }),
            Err(TheoryError::Width(0, 2))
        );
        assert!(
            kurtosis_recursion(&RecursionInput {
                kappa_w: 0.5,
                ..ok.clone()
            })
            .is_err()
        );
        assert!(
            kurtosis_recursion(&RecursionInput {
                kappa0: f64::NAN,
                ..ok.clone()
            })
            .is_err()
        );
        assert!(
            kurtosis_recursion(&RecursionInput {
                c0: -2.0,
                ..ok.clone()
            })
            .is_err()
        );
        assert!(
            kurtosis_recursion(&RecursionInput {
                slope: f64::INFINITY,
                ..ok
            })
            .is_err()
        );
    }

    proptest! {
        // Kurtosis is E[y⁴]/E[y²]² >= 1 for any distribution, so the recursion must keep it there.
        #[test]
        fn kurtosis_stays_at_least_one(
            widths in proptest::collection::vec(1usize..64, 0..60),
            slope in -2.0f64..2.0,
            kappa_w in 1.0f64..10.0,
            kappa0 in 1.0f64..10.0,
            c0 in -0.5f64..2.0,
        ) {
            let out = kurtosis_recursion(&RecursionInput { widths, slope, kappa_w, kappa0, c0 }).unwrap();
            for m in &out[1..] {
                prop_assert!(m.kurtosis >= 1.0 - 1e-9, "{:?}", m);
                prop_assert!(m.cov_sq >= -1.0 - 1e-9, "{:?}", m);
            }
        }

        // Theorem 1: with widths bounded in [2, w_max] the kurtosis grows without bound.
        #[test]
        fn kurtosis_grows_without_bound_for_bounded_widths(
            pattern in proptest::collection::vec(2usize..12, 1..5),
            slope in -1.0f64..1.0,
            kappa_w in 1.0f64..5.0,
            kappa0 in 1.0f64..5.0,
        ) {
            let widths: Vec<usize> = pattern.iter().cycle().take(pattern.len() * 2000).copied().collect();
            let out = kurtosis_recursion(&RecursionInput { widths, slope, kappa_w, kappa0, c0: 0.0 }).unwrap();
            let last = out.last().unwrap().kurtosis;
            prop_assert!(last > 1e6 || last.is_infinite(), "kurtosis only reached {}", last);
        }
    }
}
