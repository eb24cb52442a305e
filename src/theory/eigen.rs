//! Lemma 4 and Theorem 1: the largest eigenvalue of each step matrix A^(l), which
//! is > 1 for every width, slope and weight kurtosis, and therefore the rate at
//! which the kurtosis of a constant-width network grows per layer.

use super::kurtosis::step_matrix;

/// The largest eigenvalue of A^(l) for a step with fan-in `width`.
///
/// A^(l) is block triangular: its eigenvalues are 1 and those of the upper-left
/// 2×2 block A₋, whose largest is (tr + √(tr² − 4 det)) / 2 (Lemma 4). That block's
/// eigenvalue is at least 1 for every admissible input, so it is the answer.
pub fn lambda_max(width: usize, slope: f64, kappa_w: f64) -> f64 {
    let a = step_matrix(width, slope, kappa_w);
    let trace = a[0][0] + a[1][1];
    let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
    let disc = (trace * trace - 4.0 * det).max(0.0);
    let block = if trace >= 0.0 {
        (trace + disc.sqrt()) / 2.0
    } else {
        // not reached for admissible inputs (the trace is positive); kept exact anyway
        (trace - disc.sqrt()) / 2.0
    };
    block.max(1.0)
}

/// Layers needed to multiply the kurtosis by 10 at the asymptotic rate λ_max,
/// ln 10 / ln λ_max (infinite when λ_max = 1, i.e. no growth).
pub fn layers_per_decade(lambda: f64) -> f64 {
    if lambda <= 1.0 {
        f64::INFINITY
    } else {
        std::f64::consts::LN_10 / lambda.ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::kurtosis::{RecursionInput, kurtosis_recursion};

    #[test]
    fn lemma4_by_hand() {
        // ReLU, width 2, κ_w = 3: A₋ = [[3, 1.5], [1, 0.5]]; tr 3.5, det 0 → λ = 3.5.
        assert!((lambda_max(2, 0.0, 3.0) - 3.5).abs() < 1e-12);
        // Linear (a = 1), width 11, κ_w = 1: tr = 1, det = −20/121 → λ = (1 + √(1 + 80/121)) / 2.
        let expected = (1.0 + (1.0f64 + 80.0 / 121.0).sqrt()) / 2.0;
        assert!((lambda_max(11, 1.0, 1.0) - expected).abs() < 1e-12);
    }

    #[test]
    fn lemma4_largest_eigenvalue_exceeds_one_on_a_grid() {
        for width in [2usize, 3, 5, 10, 50, 200, 1000, 100_000] {
            for slope in [-1.5, -1.0, -0.3, 0.0, 0.01, 0.3, 1.0, 2.0] {
                for kappa_w in [1.0, 1.5, 1.8, 3.0, 4.5, 9.0] {
                    let l = lambda_max(width, slope, kappa_w);
                    assert!(
                        l > 1.0,
                        "λ_max = {l} for width {width}, slope {slope}, κ_w {kappa_w}"
                    );
                }
            }
        }
    }

    #[test]
    fn kurtosis_ratio_converges_to_lambda_max() {
        for (width, slope, kappa_w) in [(10, 0.0, 3.0), (4, 0.3, 1.0), (50, 0.0, 1.8)] {
            let input = RecursionInput {
                widths: vec![width; 400],
                slope,
                kappa_w,
                kappa0: 3.0,
                c0: 0.0,
            };
            let out = kurtosis_recursion(&input).unwrap();
            let ratio = out[400].kurtosis / out[399].kurtosis;
            let lambda = lambda_max(width, slope, kappa_w);
            assert!(
                (ratio - lambda).abs() < 1e-9 * lambda,
                "ratio {ratio} vs λ {lambda}"
            );
        }
    }

    #[test]
    fn decade_length() {
        assert!((layers_per_decade(10.0) - 1.0).abs() < 1e-12);
        assert!(layers_per_decade(1.0).is_infinite());
    }
}
