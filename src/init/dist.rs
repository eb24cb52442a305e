//! The zero-mean symmetric distributions that weights are drawn from, each scaled
//! to unit variance and known by its kurtosis: normal 3, uniform 1.8, Bernoulli 1,
//! and two families whose kurtosis is a continuous knob, the generalised normal
//! (any κ_w above 1.8) and the sparse Gaussian (any κ_w of 3 and above).

use rand::Rng;
use rand_distr::{Distribution, Gamma, StandardNormal};
use serde::{Deserialize, Serialize};
use statrs::function::gamma::ln_gamma;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WeightDist {
    #[default]
    Normal,
    /// Uniform on [−√3, √3].
    Uniform,
    /// Symmetric Bernoulli: ±1 with probability ½ each.
    Bernoulli,
    /// Generalised normal of shape β, density ∝ exp(−|x|^β) rescaled: β = 2 is
    /// the normal, β = 1 the Laplace, β → ∞ the uniform. Reached only through
    /// the `he_gennorm` initialiser, which checks β; `kind: input_stats` names
    /// its weights by word and so takes only the three laws above.
    #[serde(skip)]
    GenNormal { beta: f64 },
    /// A standard normal kept with probability p and 0 otherwise, kept values
    /// scaled by 1/√p. Reached only through `he_sparse`, which checks p.
    #[serde(skip)]
    Sparse { p: f64 },
}

/// κ_w of the generalised normal of shape β: Γ(5/β)Γ(1/β)/Γ(3/β)², in logs
/// so that small shapes (Γ(5/β) large) do not overflow.
pub fn gennorm_kurtosis(beta: f64) -> f64 {
    (ln_gamma(5.0 / beta) + ln_gamma(1.0 / beta) - 2.0 * ln_gamma(3.0 / beta)).exp()
}

/// The standard deviation of the generalised normal of shape β with density
/// ∝ exp(−|x|^β): √(Γ(3/β)/Γ(1/β)).
fn gennorm_std(beta: f64) -> f64 {
    (0.5 * (ln_gamma(3.0 / beta) - ln_gamma(1.0 / beta))).exp()
}

impl WeightDist {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "normal" | "gaussian" => WeightDist::Normal,
            "uniform" => WeightDist::Uniform,
            "bernoulli" | "rademacher" => WeightDist::Bernoulli,
            other => anyhow::bail!(
                "unknown weight distribution `{other}`; use normal, uniform or bernoulli"
            ),
        })
    }

    /// E[w⁴]/E[w²]².
    pub fn kurtosis(&self) -> f64 {
        match self {
            WeightDist::Normal => 3.0,
            WeightDist::Uniform => 1.8,
            WeightDist::Bernoulli => 1.0,
            WeightDist::GenNormal { beta } => gennorm_kurtosis(*beta),
            // E[w⁴] = 3/p with E[w²] = 1
            WeightDist::Sparse { p } => 3.0 / p,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            WeightDist::Normal => "normal",
            WeightDist::Uniform => "uniform",
            WeightDist::Bernoulli => "bernoulli",
            WeightDist::GenNormal { .. } => "gennorm",
            WeightDist::Sparse { .. } => "sparse",
        }
    }

    /// Fills `out` with iid unit-variance draws.
    pub fn fill<R: Rng>(&self, rng: &mut R, out: &mut [f32]) {
        match self {
            WeightDist::Normal => {
                for v in out.iter_mut() {
                    *v = StandardNormal.sample(rng);
                }
            }
            WeightDist::Uniform => {
                let half_width = 3f32.sqrt();
                for v in out.iter_mut() {
                    *v = rng.random_range(-half_width..half_width);
                }
            }
            WeightDist::Bernoulli => {
                // 64 signs per random word
                for chunk in out.chunks_mut(64) {
                    let bits: u64 = rng.random();
                    for (i, v) in chunk.iter_mut().enumerate() {
                        *v = if (bits >> i) & 1 == 1 { 1.0 } else { -1.0 };
                    }
                }
            }
            WeightDist::GenNormal { beta } => {
                // |X| = G^(1/β) with G ~ Gamma(1/β) has the law of U·H^(1/β) with
                // U ~ Uniform(0, 1) and H ~ Gamma(1 + 1/β) (Gamma(a) = Gamma(a+1)·U^(1/a)
                // in law). That form needs no Gamma draw of shape below 1, whose
                // power 1/β underflows to 0 for large β, and a uniform on (−1, 1)
                // carries the sign too.
                let gamma = Gamma::new(1.0 + 1.0 / beta, 1.0)
                    .expect("he_gennorm checks that beta is finite and > 0");
                let scale = 1.0 / gennorm_std(*beta);
                for v in out.iter_mut() {
                    let u: f64 = rng.random_range(-1.0..1.0);
                    let h: f64 = gamma.sample(rng);
                    *v = (u * h.powf(1.0 / beta) * scale) as f32;
                }
            }
            WeightDist::Sparse { p } => {
                let scale = 1.0 / p.sqrt();
                for v in out.iter_mut() {
                    let kept = rng.random::<f64>() < *p;
                    *v = if kept {
                        let z: f64 = StandardNormal.sample(rng);
                        (z * scale) as f32
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gennorm_kurtosis_has_its_closed_forms_and_limit() {
        // Γ(5/2)Γ(1/2)/Γ(3/2)² = (3/4 √π)(√π)/(√π/2)² = 3: the normal
        assert!((gennorm_kurtosis(2.0) - 3.0).abs() < 1e-12);
        // Γ(5)Γ(1)/Γ(3)² = 24/4 = 6: the Laplace
        assert!((gennorm_kurtosis(1.0) - 6.0).abs() < 1e-12);
        // Γ(5/4)Γ(1/4)/Γ(3/4)² with Γ(1/4) = 3.6256099082, Γ(3/4) = 1.2254167024
        // and Γ(5/4) = Γ(1/4)/4: 3.6256099082²/(4·1.2254167024²) = 2.1884396152
        assert!((gennorm_kurtosis(4.0) - 2.188_439_615_2).abs() < 1e-9);
        // decreasing in β towards the uniform's 1.8
        let mut last = f64::INFINITY;
        for beta in [0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 100.0, 1e4] {
            let k = gennorm_kurtosis(beta);
            assert!(k < last && k > 1.8, "β {beta}: {k}");
            last = k;
        }
        assert!((gennorm_kurtosis(1e4) - 1.8).abs() < 1e-3);
        // unit variance after scaling: the standard deviation of β = 2 is 1/√2
        assert!((gennorm_std(2.0) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
        assert!((gennorm_std(1.0) - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(WeightDist::Sparse { p: 0.25 }.kurtosis(), 12.0);
    }

    #[test]
    fn the_kurtosis_knobs_are_not_input_stats_weights() {
        // `kind: input_stats` names its weights by word; the knobs are reached
        // through their initialisers only, which check the hyper-parameter.
        for text in ["gen_normal", "{gen_normal: {beta: 1}}", "sparse"] {
            assert!(serde_yaml::from_str::<WeightDist>(text).is_err(), "{text}");
        }
        assert_eq!(
            serde_yaml::from_str::<WeightDist>("bernoulli").unwrap(),
            WeightDist::Bernoulli
        );
    }
}
