//! The name of every column of initlab's results tables, spelled once. Each
//! kind lists the columns it writes (`COLUMNS` next to its writer, reached
//! through [`super::Kind::columns`]); the figures, the report and the tests
//! read columns by these names.

pub const WORK_UNIT: &str = "work_unit";
pub const DATASET: &str = "dataset";
pub const INIT: &str = "init";
pub const WIDTH: &str = "width";
pub const DEPTH: &str = "depth";
pub const SLOPE: &str = "slope";
pub const NORM: &str = "norm";
pub const SEED: &str = "seed";
pub const LAYER: &str = "layer";
pub const SAMPLES: &str = "samples";
pub const NETWORKS: &str = "networks";
pub const NETWORK: &str = "network";
pub const NEURON: &str = "neuron";
pub const KAPPA_W: &str = "kappa_w";
pub const KAPPA0: &str = "kappa0";
pub const C0: &str = "c0";
pub const SIGMA2: &str = "sigma2";
pub const N: &str = "n";
pub const THRESHOLD: &str = "threshold";
pub const KURTOSIS: &str = "kurtosis";
pub const COV_SQ: &str = "cov_sq";
pub const COV_SQ_RAW: &str = "cov_sq_raw";
pub const VARIANCE: &str = "variance";
pub const LAMBDA_MAX: &str = "lambda_max";
pub const DF: &str = "df";
pub const P_VAR_BELOW: &str = "p_var_below";
pub const WEIGHTS: &str = "weights";
pub const NORMALIZATION: &str = "normalization";
pub const BLOCKS: &str = "blocks";
pub const KAPPA0_SE: &str = "kappa0_se";
pub const C0_SE: &str = "c0_se";
pub const KAPPA0_EXACT: &str = "kappa0_exact";
pub const C0_EXACT: &str = "c0_exact";
pub const VARIANCE_SE: &str = "variance_se";
pub const KURTOSIS_SE: &str = "kurtosis_se";
pub const KURTOSIS_LO: &str = "kurtosis_lo";
pub const KURTOSIS_HI: &str = "kurtosis_hi";
pub const COV_SQ_SE: &str = "cov_sq_se";
pub const COV_SQ_LO: &str = "cov_sq_lo";
pub const COV_SQ_HI: &str = "cov_sq_hi";
pub const THEORY_COV_SQ: &str = "theory_cov_sq";
pub const EMP_MEAN: &str = "emp_mean";
pub const EMP_VAR: &str = "emp_var";
pub const EMP_KURTOSIS: &str = "emp_kurtosis";
pub const THEORY_VARIANCE: &str = "theory_variance";
pub const THEORY_KURTOSIS: &str = "theory_kurtosis";
pub const RESTARTS: &str = "restarts";
pub const LR: &str = "lr";
pub const REPEAT: &str = "repeat";
pub const STEPS: &str = "steps";
pub const BATCH_SIZE: &str = "batch_size";
pub const TEST_ACC: &str = "test_acc";
pub const TEST_LOSS: &str = "test_loss";
pub const TRAIN_LOSS_FINAL: &str = "train_loss_final";
pub const DIVERGED: &str = "diverged";
pub const DIVERGED_STEP: &str = "diverged_step";
pub const SECONDS: &str = "seconds";
pub const TRAIN_LOSS: &str = "train_loss";
pub const EVAL_STEP: &str = "eval_step";
pub const EVAL_ACC: &str = "eval_acc";
pub const EVAL_LOSS: &str = "eval_loss";

/// `kind: theory`'s predicted quantiles of S_n²/σ² and their log10, one per [`crate::theory::VARIANCE_QUANTILES`].
pub const VAR_Q: [&str; 4] = ["var_q50", "var_q90", "var_q99", "var_q999"];
pub const LOG10_VAR_Q: [&str; 4] = [
    "log10_var_q50",
    "log10_var_q90",
    "log10_var_q99",
    "log10_var_q999",
];
/// `kind: variance`'s predicted quantiles of the empirical variance, one per [`crate::theory::VARIANCE_QUANTILES`].
pub const THEORY_VAR_Q: [&str; 4] = [
    "theory_var_q50",
    "theory_var_q90",
    "theory_var_q99",
    "theory_var_q999",
];

/// A kind's list of columns, by their constants' names in this module
/// (`columns! { WORK_UNIT, DEPTH, VAR_Q[0] }`).
macro_rules! columns {
    { $($name:ident $([$i:literal])?),* $(,)? } => {
        &[$($crate::experiment::columns::$name $([$i])?),*]
    };
}
pub(crate) use columns;
