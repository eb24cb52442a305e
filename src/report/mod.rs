//! The reproduction report: for each of the paper's six claims, what the paper
//! says (quoted as an external reference), what this run measured (computed from
//! the run directories' Parquet results, never typed in), the figure, and a
//! verdict by a rule written in the claim's module and in docs/report.md.
//! `initlab reproduce` writes it as REPORT.md beside the run directories;
//! `initlab report DIR...` rewrites it from existing ones.

mod inputs;
mod kurtosis;
mod stats;
mod training;
mod variance;

use crate::experiment::Kind;
use crate::plot::{ExperimentResults, Run};
use crate::rundir::{Layout, RESOLVED_CONFIG_FILE};
use anyhow::{Context as _, Result, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The report's file name in its output folder.
pub const REPORT_FILE: &str = "REPORT.md";

/// How a claim fared on this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Holds,
    HoldsInPart,
    DoesNotHoldAtThisScale,
    NotRun,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::HoldsInPart => "holds in part",
            Verdict::DoesNotHoldAtThisScale => "does not hold at this scale",
            Verdict::NotRun => "not run",
        }
    }
}

/// What the paper claims, as the report quotes it.
pub struct Quote {
    pub number: usize,
    /// A few words for the verdict table.
    pub title: &'static str,
    /// Where the paper makes it.
    pub source: &'static str,
    /// The paper's statement, quoted.
    pub statement: &'static str,
}

/// One claim of the paper, checked.
pub struct Claim {
    pub quote: &'static Quote,
    pub verdict: Verdict,
    /// One sentence on why.
    pub why: String,
    /// The key numbers in a few words, for the verdict table.
    pub headline: String,
    /// Markdown: the measurements (tables and sentences).
    pub measured: Vec<String>,
    /// Figures that show it (paths as given by the run directories).
    pub figures: Vec<PathBuf>,
}

impl Quote {
    /// The claim as this run judged it: `judged` is the verdict and why by the
    /// rule of the claim's module.
    fn checked(
        &'static self,
        judged: (Verdict, String),
        headline: String,
        measured: Vec<String>,
        figures: Vec<PathBuf>,
    ) -> Claim {
        Claim {
            quote: self,
            verdict: judged.0,
            why: judged.1,
            headline,
            measured,
            figures,
        }
    }

    /// The claim when no run directory given has `missing`.
    fn not_run(&'static self, missing: &str) -> Claim {
        let why = format!("no run directory given has {missing}");
        self.checked(
            (Verdict::NotRun, why),
            String::new(),
            Vec::new(),
            Vec::new(),
        )
    }
}

/// The whole report.
pub struct Report {
    pub claims: Vec<Claim>,
    /// What the paper does not say but this run shows.
    pub observations: Vec<String>,
    /// The weight-kurtosis continuum study, if it ran (Markdown lines).
    pub beyond: Vec<String>,
    pub beyond_figures: Vec<PathBuf>,
    pub runs: Vec<PathBuf>,
    /// The input normalisations the runs used.
    pub normalizations: Vec<String>,
}

/// The columns the report reads, per experiment kind.
fn columns_read(kind: Kind) -> Option<&'static [&'static str]> {
    match kind {
        Kind::Train => Some(training::COLUMNS),
        Kind::Variance => Some(variance::COLUMNS),
        Kind::KurtosisMc => Some(kurtosis::COLUMNS),
        Kind::InputStats => Some(inputs::COLUMNS),
        Kind::Theory => None,
    }
}

/// The run directories' results, loaded once for every claim.
pub(crate) struct Runs {
    pub runs: Vec<Run>,
}

impl Runs {
    /// Figure `stem` (a `plot::figure` name) of every run that drew it.
    pub fn figures(&self, stem: &str) -> Vec<PathBuf> {
        self.runs
            .iter()
            .map(|run| Layout::new(&run.dir).figures().join(format!("{stem}.png")))
            .filter(|path| path.is_file())
            .collect()
    }

    /// Every experiment of `kind`, with the run it belongs to.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (&Run, &ExperimentResults)> {
        self.runs.iter().flat_map(move |run| {
            run.by_kind
                .get(&kind)
                .into_iter()
                .flatten()
                .map(move |e| (run, e))
        })
    }
}

/// The verdict of a claim made of parts (named, each holding or not): holds if
/// all do, in part if at least half do, otherwise not at this scale; with the
/// why (the parts that fail) and the headline (how many hold).
fn parts_verdict<'a>(parts: impl Iterator<Item = (&'a str, bool)>) -> (Verdict, String, String) {
    let parts: Vec<(&str, bool)> = parts.collect();
    let held = parts.iter().filter(|p| p.1).count();
    let headline = format!("{held} of {} parts hold", parts.len());
    if held == parts.len() {
        return (
            Verdict::Holds,
            format!("all {} parts hold", parts.len()),
            headline,
        );
    }
    let failed: Vec<&str> = parts.iter().filter(|p| !p.1).map(|p| p.0).collect();
    let verdict = if 2 * held >= parts.len() {
        Verdict::HoldsInPart
    } else {
        Verdict::DoesNotHoldAtThisScale
    };
    (
        verdict,
        format!("{headline}; these do not: {}", failed.join("; ")),
        headline,
    )
}

/// The run directories named by `dirs`: each is a run directory, or a folder
/// whose sub-folders are (as `initlab reproduce --out` writes them).
pub fn run_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for dir in dirs {
        if Layout::new(dir).is_run_dir() {
            found.push(dir.clone());
            continue;
        }
        if !dir.is_dir() {
            bail!(
                "{} is not a directory: pass run directories, or the folder `initlab reproduce` wrote",
                dir.display()
            );
        }
        let mut inner: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| Layout::new(p).is_run_dir())
            .collect();
        if inner.is_empty() {
            bail!(
                "{} is neither a run directory nor a folder of run directories (none has {}): pass what `initlab run` or `initlab reproduce` wrote",
                dir.display(),
                RESOLVED_CONFIG_FILE
            );
        }
        inner.sort();
        found.extend(inner);
    }
    Ok(found)
}

/// Builds the report from run directories (see [`run_dirs`]); directories
/// without results yet are skipped with a note.
pub fn build(dirs: &[PathBuf]) -> Result<Report> {
    let mut runs = Vec::new();
    let mut paths = Vec::new();
    for dir in run_dirs(dirs)? {
        let loaded = Run::load_columns(&dir, columns_read)
            .with_context(|| format!("reading {} for the report", dir.display()))?;
        match loaded {
            Some(run) => {
                paths.push(dir);
                runs.push(run);
            }
            None => eprintln!(
                "note: {} has no results yet; the report leaves it out",
                dir.display()
            ),
        }
    }
    let runs = Runs { runs };
    let mut observations = Vec::new();
    let claims = vec![
        kurtosis::claim(&runs)?,
        variance::gamma_law_claim(&runs)?,
        training::kurtosis_claim(&runs)?,
        variance::fig2_claim(&runs, &mut observations)?,
        training::depth_claim(&runs, &mut observations)?,
        inputs::claim(&runs)?,
    ];
    let mut normalizations: Vec<String> = runs
        .runs
        .iter()
        .flat_map(|r| r.by_kind.values().flatten())
        .flat_map(|e| e.normalizations.iter().cloned())
        .collect();
    normalizations.sort();
    normalizations.dedup();
    let (beyond, beyond_figures) = training::continuum(&runs)?;
    Ok(Report {
        claims,
        observations,
        beyond,
        beyond_figures,
        runs: paths,
        normalizations,
    })
}

impl Report {
    /// One line per claim: number, title, verdict, key numbers.
    pub fn verdict_lines(&self) -> Vec<String> {
        let width = |f: fn(&Claim) -> usize| self.claims.iter().map(f).max().unwrap_or(0);
        let (title, verdict) = (
            width(|c| c.quote.title.chars().count()),
            width(|c| c.verdict.label().len()),
        );
        self.claims
            .iter()
            .map(|c| {
                let line = format!(
                    "{}. {:<title$}  {:<verdict$}  {}",
                    c.quote.number,
                    c.quote.title,
                    c.verdict.label(),
                    c.headline
                );
                line.trim_end().to_string()
            })
            .collect()
    }

    /// The report as Markdown; figure paths are written relative to `folder`,
    /// the folder the report is written to.
    pub fn markdown(&self, folder: &Path) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Reproduction report\n");
        let _ = writeln!(
            md,
            "Checks the claims of \"The Vanishing Empirical Variance in Randomly Initialized Deep ReLU Networks\" against this run. \
             Quotations are the paper's words (external reference); every number below is computed by initlab {} (commit {}) from the Parquet results of:\n",
            env!("CARGO_PKG_VERSION"),
            crate::rundir::GIT_COMMIT
        );
        for run in &self.runs {
            let _ = writeln!(md, "- `{}`", relative(run, folder).display());
        }
        let norm = if self.normalizations.is_empty() {
            "none (no dataset was read)".to_string()
        } else {
            self.normalizations.join(", ")
        };
        let _ = writeln!(
            md,
            "\nInput normalisation: {norm}. Quantiles over networks: {}. How each verdict is decided: docs/report.md.\n",
            crate::plot::columns::QuantileRule::Authors.describe()
        );
        let _ = writeln!(
            md,
            "## Verdicts\n\n| # | claim | verdict | key numbers |\n|---|---|---|---|"
        );
        for c in &self.claims {
            let _ = writeln!(
                md,
                "| {} | {} | **{}** | {} |",
                c.quote.number,
                c.quote.title,
                c.verdict.label(),
                c.headline
            );
        }
        for c in &self.claims {
            let q = c.quote;
            let _ = writeln!(md, "\n## {}. {} ({})\n", q.number, q.title, q.source);
            let _ = writeln!(md, "> {}\n", q.statement);
            let _ = writeln!(md, "**Verdict: {}.** {}\n", c.verdict.label(), c.why);
            for line in &c.measured {
                let _ = writeln!(md, "{line}");
            }
            embed_figures(&mut md, &c.figures, folder);
        }
        if !self.beyond.is_empty() {
            let _ = writeln!(
                md,
                "\n## Beyond the paper: weight kurtosis as a continuous axis\n"
            );
            let _ = writeln!(
                md,
                "He-scaled weights whose kurtosis κ_w is set continuously (`he_gennorm`, `he_sparse`; docs/initialisers-kurtosis.md). If the output kurtosis of Proposition 3 is what decides trainability, accuracy falls with it whatever the law, and laws of equal κ_w train alike.\n"
            );
            for line in &self.beyond {
                let _ = writeln!(md, "{line}");
            }
            embed_figures(&mut md, &self.beyond_figures, folder);
        }
        if !self.observations.is_empty() {
            let _ = writeln!(md, "\n## Also seen in this run (not in the paper)\n");
            for o in &self.observations {
                let _ = writeln!(md, "- {o}");
            }
        }
        md
    }

    /// Writes `folder/REPORT.md` (whole or not at all) and returns its path.
    pub fn write(&self, folder: &Path) -> Result<PathBuf> {
        let path = folder.join(REPORT_FILE);
        let text = self.markdown(folder);
        crate::results::write_atomic(&path, |f| {
            use std::io::Write as _;
            f.write_all(text.as_bytes())?;
            Ok(())
        })
        .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// Markdown images of `figures`, their paths relative to `folder`.
fn embed_figures(md: &mut String, figures: &[PathBuf], folder: &Path) {
    for f in figures {
        let rel = relative(f, folder);
        let _ = writeln!(md, "\n![{}]({})", rel.display(), rel.display());
    }
}

/// `path` relative to `folder` when it lies inside it, else as given.
fn relative(path: &Path, folder: &Path) -> PathBuf {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs(path)
        .strip_prefix(abs(folder))
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

/// A number for the report: 4 significant digits, scientific when far from 1.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}
