//! `kind: theory`: the paper's theory for a network (Proposition 3's kurtosis
//! recursion, Lemma 4's eigenvalue, Section 5's empirical-variance law), one row
//! per layer, for every point of a sweep over its parameters.

use super::columns::{self as col, columns};
use super::{Context, Job, Point, PointKey, Sweep, Todo, one_job_per_point};
use crate::results::{Cell, Table};
use crate::seed::Key;
use crate::theory::{RecursionInput, TheoryParams, VARIANCE_QUANTILES, theory_table};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// One network's theory parameters, as written in YAML (and built from CLI flags).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TheoryPoint {
    /// Constant width (with `depth`), or use `widths`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// A width profile: entry l is the fan-in of the step into layer l.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub widths: Option<Vec<usize>>,
    pub slope: f64,
    pub kappa_w: f64,
    pub kappa0: f64,
    pub c0: f64,
    pub sigma2: f64,
    pub n: u64,
    pub threshold: f64,
}

/// The defaults: a He-normal network (κ_w = 3) on Gaussian inputs (κ₀ = 3,
/// c₀ = 0) of unit variance, the paper's n and threshold.
impl Default for TheoryPoint {
    fn default() -> Self {
        TheoryPoint {
            width: None,
            depth: None,
            widths: None,
            slope: 0.0,
            kappa_w: 3.0,
            kappa0: 3.0,
            c0: 0.0,
            sigma2: 1.0,
            n: 50_000,
            threshold: 1e-3,
        }
    }
}

impl TheoryPoint {
    /// The width profile this point describes, or an error naming the keys.
    pub fn profile(&self) -> Result<Vec<usize>> {
        match (&self.widths, self.width, self.depth) {
            (Some(_), Some(_), _) => {
                bail!("give either `width` (with `depth`) or `widths`, not both")
            }
            (Some(ws), None, depth) => {
                if let Some(d) = depth
                    && d != ws.len()
                {
                    bail!(
                        "`depth` is {d} but `widths` lists {} widths; drop `depth` or make them agree",
                        ws.len()
                    );
                }
                crate::config::check::at_most(
                    "widths",
                    ws.len() as u64,
                    MAX_DEPTH as u64,
                    "the table has a row per layer",
                )?;
                if let Some(i) = ws.iter().position(|&w| w == 0) {
                    bail!(
                        "`widths` entry {} is 0: every width must be at least 1",
                        i + 1
                    );
                }
                Ok(ws.clone())
            }
            (None, Some(w), Some(d)) => {
                if w == 0 {
                    bail!("`width` must be at least 1, got 0");
                }
                // Checked before the profile is built: it holds one entry per layer.
                crate::config::check::at_most(
                    "depth",
                    d as u64,
                    MAX_DEPTH as u64,
                    "the table has a row per layer",
                )?;
                Ok(vec![w; d])
            }
            (None, Some(_), None) => bail!("missing `depth` (the number of layers)"),
            (None, None, _) => {
                bail!("missing `width` (with `depth`) or `widths` (a width profile)")
            }
        }
    }

    pub fn params(&self) -> Result<TheoryParams> {
        // The recursion's moments depend on the slope only through a² and a⁴
        // (E[φ_a(z)²] = (1 + a²)/2 · E[z²] and E[φ_a(z)⁴] = (1 + a⁴)/2 · E[z⁴] for a
        // symmetric z, whatever the sign of a), so a negative slope is exact here;
        // the paper's theory is stated for |a| <= 1.
        crate::config::check::within("slope", self.slope, -1.0, 1.0)?;
        let widths = self.profile()?;
        let p = TheoryParams {
            recursion: RecursionInput {
                widths,
                slope: self.slope,
                kappa_w: self.kappa_w,
                kappa0: self.kappa0,
                c0: self.c0,
            },
            input_width: self
                .width
                .or_else(|| self.widths.as_ref().and_then(|w| w.first().copied()))
                .unwrap_or(0),
            sigma2: self.sigma2,
            n: self.n,
            threshold: self.threshold,
        };
        p.validate()?;
        Ok(p)
    }

    /// The theory table of this point, with its parameters as columns.
    pub fn rows(&self, unit: &str) -> Result<Table> {
        let params = self.params()?;
        let depth = params.recursion.widths.len();
        let mut table = Table::new();
        for row in theory_table(&params)? {
            let mut cells: Vec<(&str, Cell)> = vec![
                (col::WORK_UNIT, unit.into()),
                (col::DEPTH, depth.into()),
                (col::SLOPE, self.slope.into()),
                (col::KAPPA_W, self.kappa_w.into()),
                (col::KAPPA0, self.kappa0.into()),
                (col::C0, self.c0.into()),
                (col::SIGMA2, self.sigma2.into()),
                (col::N, self.n.into()),
                (col::THRESHOLD, self.threshold.into()),
                (col::LAYER, row.layer.into()),
                (col::WIDTH, row.width.into()),
                (col::KURTOSIS, row.kurtosis.into()),
                (col::COV_SQ, row.cov_sq.into()),
                (col::COV_SQ_RAW, row.cov_sq_raw.into()),
                (col::VARIANCE, self.sigma2.into()),
                (col::LAMBDA_MAX, row.lambda_max.into()),
                (col::DF, row.df.into()),
            ];
            for (i, (_, suffix)) in VARIANCE_QUANTILES.iter().enumerate() {
                cells.push((col::VAR_Q[i], row.var_quantiles[i].into()));
                cells.push((col::LOG10_VAR_Q[i], row.log10_var_quantiles[i].into()));
                debug_assert!(col::VAR_Q[i].ends_with(suffix));
            }
            cells.push((col::P_VAR_BELOW, row.p_var_below.into()));
            table.push(cells);
        }
        Ok(table)
    }
}

impl PointKey for TheoryPoint {
    fn key(&self) -> Result<Key> {
        let widths: Option<Vec<u64>> = self
            .widths
            .as_ref()
            .map(|ws| ws.iter().map(|&w| w as u64).collect());
        Key::new("theory")
            .maybe_uint("width", self.width.map(|w| w as u64))
            .maybe_uint("depth", self.depth.map(|d| d as u64))
            .maybe_uints("widths", widths.as_deref())
            .float("slope", self.slope)?
            .float("kappa_w", self.kappa_w)?
            .float("kappa0", self.kappa0)?
            .float("c0", self.c0)?
            .float("sigma2", self.sigma2)?
            .uint("n", self.n)
            .float("threshold", self.threshold)
    }
}

/// The deepest network the theory tabulates (one row per layer; the paper's
/// deepest is 500).
pub const MAX_DEPTH: usize = 1_000_000;

/// The columns of a theory table.
pub const COLUMNS: &[&str] = columns! {
    WORK_UNIT, DEPTH, SLOPE, KAPPA_W, KAPPA0, C0, SIGMA2, N, THRESHOLD, LAYER, WIDTH, KURTOSIS,
    COV_SQ, COV_SQ_RAW, VARIANCE, LAMBDA_MAX, DF, VAR_Q[0], LOG10_VAR_Q[0], VAR_Q[1],
    LOG10_VAR_Q[1], VAR_Q[2], LOG10_VAR_Q[2], VAR_Q[3], LOG10_VAR_Q[3], P_VAR_BELOW,
};

impl Point for TheoryPoint {
    const KIND: super::Kind = super::Kind::Theory;
    const LIST_FIELDS: &'static [&'static str] = &["widths"];
    type State = ();

    fn validate(&self) -> Result<()> {
        self.params().map(|_| ())
    }
    fn state(_: &[Self]) {}
    fn jobs(sweep: &Sweep<Self>) -> Vec<Job> {
        one_job_per_point(&sweep.points, |p| {
            let depth = p.profile().map(|w| w.len()).unwrap_or(0);
            let label = format!("depth {depth}, slope {}, kappa_w {}", p.slope, p.kappa_w);
            (label, 1e-6 * (depth as f64 + 1.0))
        })
    }
    fn prepare(sweep: &Sweep<Self>, _ctx: &mut Context) -> Result<serde_json::Value> {
        Ok(serde_json::json!({ "points": sweep.points.len() }))
    }
    fn run_job(sweep: &Sweep<Self>, mut todo: Todo) -> Result<()> {
        let table = sweep.point_of(todo.job).rows(&todo.unit().id)?;
        todo.finish_unit(table)
    }
}
