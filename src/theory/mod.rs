//! The paper's theory as pure f64 maths, independent of libtorch: the kurtosis
//! recursion of Proposition 3, the eigenvalue argument of Lemma 4 / Theorem 1, and
//! the empirical-variance law of Section 5, gathered into one table per network.

pub mod eigen;
pub mod empirical_variance;
pub mod kurtosis;

pub use eigen::{lambda_max, layers_per_decade};
pub use empirical_variance::VarianceRatioLaw;
pub use kurtosis::{
    LayerMoments, RecursionInput, TheoryError, kurtosis_recursion, output_kurtosis,
};

/// The quantile levels of S_n²/σ² reported per layer, with their column suffixes.
pub const VARIANCE_QUANTILES: [(f64, &str); 4] =
    [(0.5, "q50"), (0.9, "q90"), (0.99, "q99"), (0.999, "q999")];

/// Everything the theory needs for one network.
#[derive(Debug, Clone, PartialEq)]
pub struct TheoryParams {
    pub recursion: RecursionInput,
    /// The width of layer 0 (the input vector), reported in its row.
    pub input_width: usize,
    /// Theoretical variance σ² of every layer (Proposition 1 keeps it constant).
    pub sigma2: f64,
    /// Sample size n of the empirical variance (Section 5).
    pub n: u64,
    /// Threshold t of P(S_n²/σ² < t).
    pub threshold: f64,
}

impl TheoryParams {
    pub fn validate(&self) -> Result<(), TheoryError> {
        self.recursion.validate()?;
        if !self.sigma2.is_finite() || self.sigma2 <= 0.0 {
            return Err(TheoryError::Sigma2(self.sigma2));
        }
        if self.n < 2 {
            return Err(TheoryError::SampleSize(self.n));
        }
        if !self.threshold.is_finite() || self.threshold <= 0.0 {
            return Err(TheoryError::Threshold(self.threshold));
        }
        Ok(())
    }
}

/// One row of the theory table: layer l of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct TheoryRow {
    pub layer: usize,
    /// The fan-in of the step into this layer (for layer 0: the input's width, w_1).
    pub width: usize,
    pub kurtosis: f64,
    /// c_l / σ⁴.
    pub cov_sq: f64,
    /// c_l itself, in units of the variance squared.
    pub cov_sq_raw: f64,
    /// Largest eigenvalue of the step matrix with this row's width (Lemma 4).
    pub lambda_max: f64,
    /// DF_n of Section 5.
    pub df: f64,
    /// Quantiles of S_n²/σ² in the order of [`VARIANCE_QUANTILES`], and their log10.
    pub var_quantiles: [f64; 4],
    pub log10_var_quantiles: [f64; 4],
    /// P(S_n²/σ² < threshold).
    pub p_var_below: f64,
}

/// The full table for layers 0..=depth.
pub fn theory_table(params: &TheoryParams) -> Result<Vec<TheoryRow>, TheoryError> {
    params.validate()?;
    let r = &params.recursion;
    let moments = kurtosis_recursion(r)?;
    let sigma4 = params.sigma2 * params.sigma2;
    Ok(moments
        .iter()
        .enumerate()
        .map(|(layer, m)| {
            let width = if layer == 0 {
                params.input_width
            } else {
                r.widths[layer - 1]
            };
            let law = VarianceRatioLaw::new(m.kurtosis, params.n);
            let ln_q = VARIANCE_QUANTILES.map(|(p, _)| law.ln_quantile(p));
            TheoryRow {
                layer,
                width,
                kurtosis: m.kurtosis,
                cov_sq: m.cov_sq,
                cov_sq_raw: m.cov_sq * sigma4,
                lambda_max: if width == 0 {
                    f64::NAN
                } else {
                    lambda_max(width, r.slope, r.kappa_w)
                },
                df: law.df,
                var_quantiles: ln_q.map(f64::exp),
                log10_var_quantiles: ln_q.map(|l| l / std::f64::consts::LN_10),
                p_var_below: law.prob_below(params.threshold),
            }
        })
        .collect())
}
