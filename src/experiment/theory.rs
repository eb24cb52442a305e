//! `kind: theory`: the paper's theory for a network (Proposition 3's kurtosis
//! recursion, Lemma 4's eigenvalue, Section 5's empirical-variance law), one row
//! per layer, for every point of a sweep over its parameters.

use super::{Context, Experiment, Job, PointKey, Sink, UnitSpec, typed_points, unit_key};
use crate::config::ExperimentConfig;
use crate::results::{Cell, Table};
use crate::seed::Key;
use crate::theory::{RecursionInput, TheoryParams, VARIANCE_QUANTILES, theory_table};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// One network's theory parameters, as written in YAML (and built from CLI flags).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TheoryPoint {
    /// Constant width (with `depth`), or use `widths`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// A width profile: entry l is the fan-in of the step into layer l.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widths: Option<Vec<usize>>,
    #[serde(default)]
    pub slope: f64,
    #[serde(default = "default_kappa_w")]
    pub kappa_w: f64,
    #[serde(default = "default_kappa0")]
    pub kappa0: f64,
    #[serde(default)]
    pub c0: f64,
    #[serde(default = "default_sigma2")]
    pub sigma2: f64,
    #[serde(default = "default_n")]
    pub n: u64,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

fn default_kappa_w() -> f64 {
    3.0
}
fn default_kappa0() -> f64 {
    3.0
}
fn default_sigma2() -> f64 {
    1.0
}
fn default_n() -> u64 {
    50_000
}
fn default_threshold() -> f64 {
    1e-3
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
                ("work_unit", unit.into()),
                ("depth", depth.into()),
                ("slope", self.slope.into()),
                ("kappa_w", self.kappa_w.into()),
                ("kappa0", self.kappa0.into()),
                ("c0", self.c0.into()),
                ("sigma2", self.sigma2.into()),
                ("n", self.n.into()),
                ("threshold", self.threshold.into()),
                ("layer", row.layer.into()),
                ("width", row.width.into()),
                ("kurtosis", row.kurtosis.into()),
                ("cov_sq", row.cov_sq.into()),
                ("cov_sq_raw", row.cov_sq_raw.into()),
                ("variance", self.sigma2.into()),
                ("lambda_max", row.lambda_max.into()),
                ("df", row.df.into()),
            ];
            for (i, (_, suffix)) in VARIANCE_QUANTILES.iter().enumerate() {
                cells.push((QUANTILE_COLUMNS[i], row.var_quantiles[i].into()));
                cells.push((LOG_QUANTILE_COLUMNS[i], row.log10_var_quantiles[i].into()));
                debug_assert!(QUANTILE_COLUMNS[i].ends_with(suffix));
            }
            cells.push(("p_var_below", row.p_var_below.into()));
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

/// Column names of the predicted quantiles of S_n²/σ² and of their log10.
pub const QUANTILE_COLUMNS: [&str; 4] = ["var_q50", "var_q90", "var_q99", "var_q999"];
pub const LOG_QUANTILE_COLUMNS: [&str; 4] = [
    "log10_var_q50",
    "log10_var_q90",
    "log10_var_q99",
    "log10_var_q999",
];

pub struct TheoryExperiment {
    name: String,
    points: Vec<TheoryPoint>,
}

impl TheoryExperiment {
    pub fn from_config(exp: &ExperimentConfig) -> Result<Self> {
        let points = typed_points(exp, &["widths"], |p: &TheoryPoint| p.params().map(|_| ()))?;
        Ok(TheoryExperiment {
            name: exp.name.clone(),
            points,
        })
    }

    fn unit(&self, i: usize) -> UnitSpec {
        let p = &self.points[i];
        let depth = p.profile().map(|w| w.len()).unwrap_or(0);
        UnitSpec {
            id: unit_key(p).id(),
            label: format!("depth {depth}, slope {}, kappa_w {}", p.slope, p.kappa_w),
            cost: 1e-6 * (depth as f64 + 1.0),
        }
    }
}

impl Experiment for TheoryExperiment {
    fn kind(&self) -> &'static str {
        "theory"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn resolved(&self) -> serde_yaml::Value {
        super::resolved_points(&self.points)
    }
    fn jobs(&self) -> Vec<Job> {
        super::one_job_per_point(self.points.len(), |i| self.unit(i))
    }
    fn prepare(&self, _ctx: &mut Context) -> Result<serde_json::Value> {
        Ok(serde_json::json!({ "points": self.points.len() }))
    }
    fn run_job(
        &self,
        job: &Job,
        pending: &[usize],
        _ctx: &mut Context,
        sink: &mut Sink,
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let unit = &job.units[0];
        let table = self.points[job.index].rows(&unit.id)?;
        sink(table, std::slice::from_ref(unit))
    }
}
