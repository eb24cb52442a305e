//! Figures from a run directory: reads its resolved config and Parquet results,
//! draws the paper's Figs. 1-3 and the theory checks as PNG and SVG into
//! `<run dir>/figures/`, and sums up the headline numbers as text lines.
//!
//! What is drawn follows each experiment's `kind`: a `train` experiment of
//! He-scaled initialisers alone gives Fig. 1 (accuracy against the theoretical
//! output kurtosis), any other gives Fig. 3 (accuracy against depth), so a run
//! directory holds only its own figures; `variance` gives Fig. 2; `kurtosis_mc` the
//! simulated kurtosis against Proposition 3; `theory` the kurtosis recursion and
//! the predicted 0.9 quantile of the empirical variance.

mod axis;
mod canvas;
pub(crate) mod columns;
mod kurtosis;
mod train;
mod variance;

use crate::experiment::Kind;
use crate::rundir::{Entry, Layout, RESOLVED_CONFIG_FILE};
use anyhow::{Context, Result, bail};
use polars::prelude::{DataFrame, ParquetReader, SerReader};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

/// File stems (without `.png`/`.svg`) of the figures, used by the drawing code
/// and by the reproduction report that links them.
pub mod figure {
    pub const FIG1: &str = "fig1-accuracy-vs-kurtosis";
    pub const FIG2: &str = "fig2-empirical-variance";
    pub const FIG3: &str = "fig3-accuracy-vs-depth";
    pub const KURTOSIS_CONTINUUM: &str = "kurtosis-continuum-accuracy-vs-kurtosis";
    pub const KURTOSIS_MC: &str = "kurtosis-mc-vs-theory";
    pub const THEORY_KURTOSIS: &str = "theory-kurtosis";
    pub const THEORY_VARIANCE_Q90: &str = "theory-variance-q90";
}

/// Draws every figure that applies to the run directory `dir` into
/// `dir/figures/` (each as `.png` and `.svg`) and returns the files written.
pub fn plot_run_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    draw(&Run::load(dir)?, dir)
}

/// Human-readable headline numbers of a run directory: for `variance` runs, per
/// initialiser, the first layer at which the 0.9 quantile of the empirical
/// variance falls below 1e-3; for `train` runs with several depths, per (width,
/// initialiser), the depth with the best mean test accuracy.
pub fn summary(dir: &Path) -> Result<Vec<String>> {
    summarise(&Run::load(dir)?, dir)
}

/// [`plot_run_dir`] and [`summary`] together, reading the results once.
pub fn plot_and_summarise(dir: &Path) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let run = Run::load(dir)?;
    Ok((draw(&run, dir)?, summarise(&run, dir)?))
}

fn draw(run: &Run, dir: &Path) -> Result<Vec<PathBuf>> {
    let out = Layout::new(dir).figures();
    let mut written = Vec::new();
    for (kind, experiments) in &run.by_kind {
        let files = match kind {
            Kind::Train => train::plot(run, experiments, &out),
            Kind::Variance => variance::plot(run, experiments, &out),
            Kind::KurtosisMc => kurtosis::plot_simulation(run, experiments, &out),
            Kind::Theory => kurtosis::plot_theory(run, experiments, &out),
            Kind::InputStats => Ok(Vec::new()),
        }
        .with_context(|| format!("drawing the `{kind}` results of {}", dir.display()))?;
        written.extend(files);
    }
    Ok(written)
}

fn summarise(run: &Run, dir: &Path) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for (kind, experiments) in &run.by_kind {
        let more = match kind {
            Kind::Train => train::summary(experiments),
            Kind::Variance => variance::summary(experiments),
            Kind::KurtosisMc | Kind::Theory | Kind::InputStats => Ok(Vec::new()),
        }
        .with_context(|| format!("summing up the `{kind}` results of {}", dir.display()))?;
        lines.extend(more);
    }
    Ok(lines)
}

/// The columns the figures and summaries of a kind read (`None`: nothing is
/// drawn for it); columns a shard lacks are left out.
fn columns_drawn(kind: Kind) -> Option<&'static [&'static str]> {
    match kind {
        Kind::Train => Some(train::COLUMNS),
        Kind::Variance => Some(variance::COLUMNS),
        Kind::KurtosisMc => Some(kurtosis::SIMULATION_COLUMNS),
        Kind::Theory => Some(kurtosis::THEORY_COLUMNS),
        Kind::InputStats => None,
    }
}

/// Reads the `wanted` columns of Parquet shards into one table (reading only
/// what is drawn keeps paper-scale runs, millions of rows, quick).
fn read_columns(files: &[PathBuf], wanted: &[&str]) -> Result<DataFrame> {
    let mut all: Option<DataFrame> = None;
    for path in files {
        let open = || File::open(path).with_context(|| format!("cannot open {}", path.display()));
        let schema = ParquetReader::new(open()?)
            .schema()
            .with_context(|| format!("cannot read the schema of {}", path.display()))?;
        let present: Vec<String> = wanted
            .iter()
            .filter(|c| schema.get(c).is_some())
            .map(|c| c.to_string())
            .collect();
        let frame = ParquetReader::new(open()?)
            .with_columns(Some(present))
            .finish()
            .with_context(|| format!("cannot read Parquet {}", path.display()))?;
        match all.as_mut() {
            None => all = Some(frame),
            Some(table) => {
                table.vstack_mut_owned(frame).with_context(|| {
                    format!(
                        "{} has other columns than the shards before it",
                        path.display()
                    )
                })?;
            }
        }
    }
    let mut table = all.context("no Parquet files")?;
    table.rechunk_mut();
    Ok(table)
}

/// One experiment of a run with its results table.
pub(crate) struct ExperimentResults {
    pub name: String,
    pub table: DataFrame,
    /// The input normalisations its points use (empty for kinds without data).
    pub normalizations: BTreeSet<String>,
}

/// A run directory's name and its results, grouped by experiment kind.
pub(crate) struct Run {
    pub name: String,
    pub dir: PathBuf,
    pub by_kind: BTreeMap<Kind, Vec<ExperimentResults>>,
}

#[derive(Deserialize)]
struct ResolvedConfig {
    name: Option<String>,
    #[serde(default)]
    experiments: Vec<ResolvedExperiment>,
}

#[derive(Deserialize)]
struct ResolvedExperiment {
    name: String,
    kind: Kind,
    #[serde(default)]
    points: Vec<ResolvedPoint>,
}

#[derive(Deserialize)]
struct ResolvedPoint {
    normalization: Option<String>,
}

impl Run {
    fn load(dir: &Path) -> Result<Run> {
        match Run::load_columns(dir, columns_drawn)? {
            Some(run) => Ok(run),
            None => bail!(
                "{} has no results yet (no Parquet files under {}/): run or resume it with `initlab run` first",
                dir.display(),
                Entry::Results.name()
            ),
        }
    }

    /// Loads the results of `dir`, reading for each kind the columns `wanted`
    /// names (kinds it maps to `None` are skipped); `None` when no experiment
    /// of its config has results yet.
    pub(crate) fn load_columns(
        dir: &Path,
        wanted: fn(Kind) -> Option<&'static [&'static str]>,
    ) -> Result<Option<Run>> {
        if !dir.is_dir() {
            bail!(
                "{} is not a directory: pass a run directory written by `initlab run`",
                dir.display()
            );
        }
        let layout = Layout::new(dir);
        let config_path = layout.config_resolved();
        if !config_path.is_file() {
            bail!(
                "{} is not an initlab run directory (it has no {RESOLVED_CONFIG_FILE}): pass a directory written by `initlab run`",
                dir.display()
            );
        }
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        let config: ResolvedConfig = serde_yaml::from_str(&text)
            .with_context(|| format!("cannot parse {}", config_path.display()))?;
        let name = config.name.unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".to_string())
        });
        let mut by_kind: BTreeMap<Kind, Vec<ExperimentResults>> = BTreeMap::new();
        let mut any_results = false;
        for experiment in config.experiments {
            let files = layout.shards(&experiment.name)?;
            if files.is_empty() {
                continue;
            }
            any_results = true;
            // Kinds without figures are not read at all.
            let Some(wanted) = wanted(experiment.kind) else {
                continue;
            };
            let table = read_columns(&files, wanted).with_context(|| {
                format!("reading the results of experiment `{}`", experiment.name)
            })?;
            if table.height() == 0 {
                continue;
            }
            by_kind
                .entry(experiment.kind)
                .or_default()
                .push(ExperimentResults {
                    name: experiment.name,
                    table,
                    normalizations: experiment
                        .points
                        .into_iter()
                        .filter_map(|p| p.normalization)
                        .collect(),
                });
        }
        Ok(any_results.then(|| Run {
            name,
            dir: dir.to_path_buf(),
            by_kind,
        }))
    }
}
