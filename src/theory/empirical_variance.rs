//! Section 5: the distribution of the empirical variance S_n² of n outputs of a
//! layer whose kurtosis is κ. With Var[S_n²] = (κ − (n−3)/(n−1)) σ⁴ / n, the ratio
//! S_n²/σ² is approximately Gamma(k = DF_n/2, θ = 2/DF_n), DF_n = 2n/(κ − (n−3)/(n−1)).
//! As κ grows the shape k goes to 0 and the mass piles up at 0: the variance vanishes.
//!
//! Quantiles are computed in log space so that they stay meaningful when they are
//! far below f64's smallest positive number (deep networks reach such values).

use statrs::function::gamma::{gamma_lr, ln_gamma};

/// The gamma approximation of S_n²/σ² for a layer of kurtosis `kappa` and sample size `n`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VarianceRatioLaw {
    /// Degrees of freedom DF_n.
    pub df: f64,
    /// Shape k = DF_n / 2; the scale is θ = 1/k, so the mean is 1.
    pub shape: f64,
}

impl VarianceRatioLaw {
    pub fn new(kappa: f64, n: u64) -> Self {
        let n = n as f64;
        let excess = kappa - (n - 3.0) / (n - 1.0);
        let df = 2.0 * n / excess;
        Self {
            df,
            shape: df / 2.0,
        }
    }

    /// ln of the p-quantile of S_n²/σ²; −∞ only if the quantile is exactly 0.
    pub fn ln_quantile(&self, p: f64) -> f64 {
        let k = self.shape;
        // Gamma(k, 1/k) = Gamma(k, 1) / k: solve for the standard gamma, then rescale.
        ln_standard_gamma_quantile(p, k) - k.ln()
    }

    /// The p-quantile of S_n²/σ² (0 when it underflows f64).
    pub fn quantile(&self, p: f64) -> f64 {
        self.ln_quantile(p).exp()
    }

    /// P(S_n²/σ² < t).
    pub fn prob_below(&self, t: f64) -> f64 {
        let k = self.shape;
        if !k.is_finite() {
            return if t > 1.0 { 1.0 } else { 0.0 };
        }
        ln_lower_regularized(k, (t * k).ln()).exp()
    }
}

/// ln P(k, x) for the regularised lower incomplete gamma function, with x given as ln x
/// so that x may be far below f64's range. For small x the series
/// P(k, x) = x^k e^{-x} Σ_j x^j / Γ(k + j + 1) is summed in log space; otherwise
/// statrs's implementation is used.
fn ln_lower_regularized(k: f64, ln_x: f64) -> f64 {
    if ln_x < 0.0 {
        let x = ln_x.exp();
        // Σ_j x^j Γ(k+1)/Γ(k+j+1), each term the previous times x/(k+j).
        let mut term = 1.0;
        let mut sum = 1.0;
        let mut j = 1.0;
        while term > 1e-17 * sum {
            term *= x / (k + j);
            sum += term;
            j += 1.0;
        }
        k * ln_x - x - ln_gamma(k + 1.0) + sum.ln()
    } else {
        gamma_lr(k, ln_x.exp()).ln()
    }
}

/// ln of the p-quantile of the standard Gamma(k, 1), by safeguarded Newton iteration on
/// ln P(k, e^u) − ln p in u = ln x, started from the small-x asymptote x ≈ (p Γ(k+1))^{1/k}.
fn ln_standard_gamma_quantile(p: f64, k: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "quantile level must lie in (0, 1)");
    let ln_p = p.ln();
    let f = |u: f64| ln_lower_regularized(k, u) - ln_p;
    // Bracket: f is increasing in u.
    let guess = (ln_p + ln_gamma(k + 1.0)) / k;
    let mut lo = guess.min(0.0) - 1.0;
    let mut hi = guess.max(0.0) + 1.0;
    while f(lo) > 0.0 {
        lo = 2.0 * lo - 1.0;
    }
    while f(hi) < 0.0 {
        hi = 2.0 * hi + 1.0;
    }
    let mut u = guess.clamp(lo, hi);
    for _ in 0..200 {
        let value = f(u);
        if value == 0.0 {
            return u;
        }
        if value < 0.0 {
            lo = u;
        } else {
            hi = u;
        }
        // d/du ln P(k, e^u) = x p(x) / P = exp(k u − e^u − lnΓ(k) − ln P)
        let ln_p_at = value + ln_p;
        let slope = (k * u - u.exp() - ln_gamma(k) - ln_p_at).exp();
        let newton = u - value / slope;
        let next = if newton.is_finite() && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - u).abs() <= 1e-15 * u.abs().max(1.0) {
            return next;
        }
        u = next;
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use statrs::distribution::{ContinuousCDF, Gamma};

    #[test]
    fn gaussian_outputs_give_chi_square() {
        // κ = 3: DF_n = 2n / (3 − (n−3)/(n−1)) = n − 1 exactly, the chi-square law of S_n².
        for n in [2u64, 10, 50_000] {
            let law = VarianceRatioLaw::new(3.0, n);
            assert!(
                (law.df - (n as f64 - 1.0)).abs() < 1e-9 * n as f64,
                "{law:?}"
            );
        }
    }

    #[test]
    fn quantiles_match_statrs_where_statrs_is_reliable() {
        for kappa in [1.5, 3.0, 10.0, 100.0, 1e4, 1e6] {
            for n in [50u64, 50_000] {
                let law = VarianceRatioLaw::new(kappa, n);
                let reference = Gamma::new(law.shape, law.shape).unwrap(); // shape, rate
                for p in [0.5, 0.9, 0.99, 0.999] {
                    let ours = law.quantile(p);
                    let theirs = reference.inverse_cdf(p);
                    // statrs brackets quantiles by halving from 1 a limited number of
                    // times, so it cannot return tiny ones: compare where it can.
                    if theirs < 1e-8 {
                        continue;
                    }
                    // statrs stops on a CDF tolerance: where the shape is small the
                    // CDF is flat in x, so compare quantiles loosely and CDFs tightly.
                    let tolerance = if law.shape >= 1.0 { 1e-8 } else { 1e-4 };
                    assert!(
                        (ours - theirs).abs() <= tolerance * theirs.abs(),
                        "κ {kappa}, n {n}, p {p}: ours {ours}, statrs {theirs}"
                    );
                    assert!(
                        (reference.cdf(ours) - p).abs() < 1e-10,
                        "κ {kappa}, n {n}, p {p}"
                    );
                }
                for t in [1e-3, 0.1, 1.0, 2.0] {
                    let ours = law.prob_below(t);
                    let theirs = reference.cdf(t);
                    assert!(
                        (ours - theirs).abs() < 1e-10,
                        "κ {kappa}, n {n}, t {t}: {ours} vs {theirs}"
                    );
                }
            }
        }
    }

    #[test]
    fn tiny_shapes_follow_the_small_x_asymptote() {
        // For k → 0, P(k, x) ≈ x^k / Γ(k+1), so ln q_p ≈ (ln p + lnΓ(k+1))/k − ln k.
        for kappa in [1e12, 1e30, 1e100] {
            let law = VarianceRatioLaw::new(kappa, 50_000);
            for p in [0.5f64, 0.9, 0.999] {
                let k = law.shape;
                let expected = (p.ln() + ln_gamma(k + 1.0)) / k - k.ln();
                let got = law.ln_quantile(p);
                assert!(
                    (got - expected).abs() <= 1e-9 * expected.abs(),
                    "κ {kappa}, p {p}: {got} vs {expected}"
                );
            }
            // almost all the mass is below any fixed threshold
            assert!(law.prob_below(1e-3) > 0.99);
        }
    }

    #[test]
    fn quantiles_are_ordered_and_the_median_shrinks_with_kurtosis() {
        // Upper quantiles first widen with κ (a wider law around mean 1), then
        // collapse; the median falls all along, and q90 ends far below 1e-3.
        let mut previous_median = f64::INFINITY;
        let mut last_q90 = 0.0;
        for kappa in [3.0, 30.0, 3e3, 3e5, 3e7, 3e9] {
            let law = VarianceRatioLaw::new(kappa, 50_000);
            let qs: Vec<f64> = [0.5, 0.9, 0.99, 0.999]
                .iter()
                .map(|&p| law.ln_quantile(p))
                .collect();
            assert!(qs.windows(2).all(|w| w[0] < w[1]), "{qs:?}");
            assert!(qs[0] < previous_median);
            previous_median = qs[0];
            last_q90 = qs[1];
        }
        assert!(
            last_q90 < (1e-3f64).ln(),
            "q90 at κ = 3e9: {}",
            last_q90.exp()
        );
    }
}
