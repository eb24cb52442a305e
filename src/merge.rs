//! `initlab merge`: joins the shards of a sweep (one run directory after all its
//! shards ran, or several run directories of the same config made on different
//! machines) into one results table per experiment, checking that every work unit
//! of the config is present exactly once and saying what is missing or duplicated.

use crate::config::Config;
use crate::experiment::Experiment;
use crate::results::{read_parquet, write_parquet, write_text};
use crate::rundir::{Layout, Metadata, RESOLVED_CONFIG_FILE, key_version_problem};
use anyhow::{Context, Result, bail};
use polars::prelude::{BooleanChunked, DataFrame, NewChunkedArray, PlSmallStr};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// What a merge found, per experiment.
#[derive(Debug, Clone, Default)]
pub struct ExperimentReport {
    pub name: String,
    pub expected: usize,
    pub present: usize,
    /// Labels of the units no shard holds.
    pub missing: Vec<String>,
    /// Ids of units found in more than one shard (the first copy is kept).
    pub duplicated: Vec<String>,
    pub rows: usize,
}

#[derive(Debug, Clone, Default)]
pub struct MergeReport {
    pub out: PathBuf,
    pub experiments: Vec<ExperimentReport>,
}

impl MergeReport {
    pub fn complete(&self) -> bool {
        self.experiments.iter().all(|e| e.missing.is_empty())
    }

    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.experiments {
            out.push(format!(
                "{}: {}/{} units, {} rows{}{}",
                e.name,
                e.present,
                e.expected,
                e.rows,
                if e.missing.is_empty() {
                    String::new()
                } else {
                    format!(", {} MISSING", e.missing.len())
                },
                if e.duplicated.is_empty() {
                    String::new()
                } else {
                    format!(", {} duplicated (first copy kept)", e.duplicated.len())
                },
            ));
            for m in e.missing.iter().take(20) {
                out.push(format!("  missing: {m}"));
            }
            if e.missing.len() > 20 {
                out.push(format!("  ... and {} more missing", e.missing.len() - 20));
            }
            for d in e.duplicated.iter().take(10) {
                out.push(format!("  duplicated: {d}"));
            }
        }
        out
    }
}

fn read_resolved(dir: &Path) -> Result<String> {
    std::fs::read_to_string(Layout::new(dir).config_resolved()).with_context(|| {
        format!(
            "{} is not an initlab run directory (no {RESOLVED_CONFIG_FILE})",
            dir.display()
        )
    })
}

/// Merges `dirs` (all made by the same config) into `out` (default: the only dir, in place).
pub fn merge(dirs: &[PathBuf], out: Option<&Path>) -> Result<MergeReport> {
    let resolved = check_mergeable(dirs)?;
    let out = match out {
        Some(o) => o.to_path_buf(),
        None if dirs.len() == 1 => dirs[0].clone(),
        None => bail!("merging several run directories needs --out DIR for the merged one"),
    };
    let in_place = dirs
        .iter()
        .any(|d| d.canonicalize().ok() == out.canonicalize().ok());
    if !in_place {
        prepare_out(&dirs[0], &out, &resolved)?;
    }
    let experiments = configured_experiments(&dirs[0])?;
    let mut report = MergeReport {
        out: out.clone(),
        experiments: Vec::new(),
    };
    for exp in &experiments {
        report
            .experiments
            .push(merge_experiment(exp.as_ref(), dirs, &out, in_place)?);
    }
    merge_metadata(dirs, &out, in_place)?;
    Ok(report)
}

/// Checks that `dirs` are run directories of one config, whose unit ids this
/// build encodes the same way, and returns that config as resolved.
fn check_mergeable(dirs: &[PathBuf]) -> Result<String> {
    if dirs.is_empty() {
        bail!("give at least one run directory");
    }
    let resolved = read_resolved(&dirs[0])?;
    for d in &dirs[1..] {
        if read_resolved(d)? != resolved {
            bail!(
                "{} and {} were made by different configs: refusing to merge them (compare their {RESOLVED_CONFIG_FILE})",
                dirs[0].display(),
                d.display()
            );
        }
    }
    // The expected unit ids come from this build's encoding: shards made under
    // another would all look missing, and their units unknown.
    for d in dirs {
        if let Some(problem) = key_version_problem(d)? {
            bail!(
                "cannot merge {}: it {problem}. \
                 Rerun its sweep (or shards) with this initlab into a new --out directory, then merge those",
                d.display()
            );
        }
    }
    Ok(resolved)
}

/// Makes `out` a run directory of the config `first` was made by, refusing one
/// that already holds something else.
fn prepare_out(first: &Path, out: &Path, resolved: &str) -> Result<()> {
    if out.exists()
        && std::fs::read_dir(out)?.next().is_some()
        && read_resolved(out).ok().as_deref() != Some(resolved)
    {
        bail!(
            "--out {} exists and holds something else: choose a new directory",
            out.display()
        );
    }
    let (first, out) = (Layout::new(first), Layout::new(out));
    std::fs::create_dir_all(out.results())
        .with_context(|| format!("cannot create {}", out.root().display()))?;
    std::fs::copy(first.config(), out.config())
        .with_context(|| format!("copying {}", first.config().display()))?;
    write_text(&out.config_resolved(), resolved)
}

/// The experiments the config of run directory `dir` asks for, whose units a
/// merge expects.
fn configured_experiments(dir: &Path) -> Result<Vec<Box<dyn Experiment>>> {
    let path = Layout::new(dir).config();
    let source = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let config = Config::parse(&source, &name)?;
    crate::experiment::build(&config)
}

/// The rows of one experiment's shards, each work unit's from the first shard
/// that holds it.
struct Shards {
    files: Vec<PathBuf>,
    taken: HashSet<String>,
    duplicated: Vec<String>,
    merged: Option<DataFrame>,
}

/// Reads every shard of one experiment in `dirs`, keeping the first copy of
/// each work unit and noting the later ones as duplicated.
fn read_shards(dirs: &[PathBuf], experiment: &str) -> Result<Shards> {
    let mut files: Vec<PathBuf> = Vec::new();
    for d in dirs {
        files.extend(Layout::new(d).shards(experiment)?);
    }
    let mut taken: HashSet<String> = HashSet::new();
    let mut duplicated = Vec::new();
    let mut merged: Option<DataFrame> = None;
    for f in &files {
        let df = read_parquet(f)?;
        let units = df
            .column("work_unit")
            .with_context(|| format!("{} has no work_unit column", f.display()))?
            .str()?
            .clone();
        let mut fresh: HashMap<String, bool> = HashMap::new();
        for u in units.iter().flatten() {
            if !fresh.contains_key(u) {
                let is_new = !taken.contains(u);
                if !is_new {
                    duplicated.push(u.to_string());
                }
                fresh.insert(u.to_string(), is_new);
            }
        }
        let mask: Vec<bool> = units.iter().map(|u| u.is_some_and(|u| fresh[u])).collect();
        taken.extend(fresh.into_iter().filter(|(_, new)| *new).map(|(u, _)| u));
        let kept = df.filter(&BooleanChunked::from_slice(PlSmallStr::from("mask"), &mask))?;
        merged = Some(match merged {
            None => kept,
            Some(mut m) => {
                m.vstack_mut_owned(kept).with_context(|| {
                    format!(
                        "{} has other columns than the shards before it",
                        f.display()
                    )
                })?;
                m
            }
        });
    }
    Ok(Shards {
        files,
        taken,
        duplicated,
        merged,
    })
}

/// Merges one experiment's shards into `out` and says which of its units are
/// present, missing or duplicated.
fn merge_experiment(
    exp: &dyn Experiment,
    dirs: &[PathBuf],
    out: &Path,
    in_place: bool,
) -> Result<ExperimentReport> {
    let expected: Vec<(String, String)> = exp
        .jobs()
        .into_iter()
        .flat_map(|j| j.units)
        .map(|u| (u.id, u.label))
        .collect();
    let shards = read_shards(dirs, exp.name())?;
    let expected_ids: HashSet<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|(id, _)| !shards.taken.contains(id))
        .map(|(id, label)| format!("{id} ({label})"))
        .collect();
    let present = shards
        .taken
        .iter()
        .filter(|u| expected_ids.contains(u.as_str()))
        .count();
    let target = Layout::new(out).results_of(exp.name());
    std::fs::create_dir_all(&target)?;
    let rows = match shards.merged {
        Some(mut df) => write_merged(exp, &target, &mut df, &shards.files, out, in_place)?,
        None => 0,
    };
    Ok(ExperimentReport {
        name: exp.name().to_string(),
        expected: expected.len(),
        present,
        missing,
        duplicated: shards.duplicated,
        rows,
    })
}

/// Writes one experiment's merged rows into `target`, removing the shards it
/// replaces when merging in place, and returns how many rows it wrote.
fn write_merged(
    exp: &dyn Experiment,
    target: &Path,
    df: &mut DataFrame,
    files: &[PathBuf],
    out: &Path,
    in_place: bool,
) -> Result<usize> {
    df.rechunk_mut();
    let rows = df.height();
    let meta = BTreeMap::from([
        (
            "initlab_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("merged_from".to_string(), files.len().to_string()),
        ("experiment".to_string(), exp.name().to_string()),
        ("kind".to_string(), exp.kind().to_string()),
    ]);
    let merged_path = target.join(format!("{}-merged.parquet", exp.kind()));
    write_parquet(&merged_path, df, &meta)?;
    if in_place {
        for f in files {
            if *f != merged_path && f.starts_with(out) {
                std::fs::remove_file(f)
                    .with_context(|| format!("removing merged shard {}", f.display()))?;
            }
        }
    }
    Ok(rows)
}

/// Writes one metadata file with every invocation of every shard of `dirs`,
/// removing the per-shard files it replaces when merging in place.
fn merge_metadata(dirs: &[PathBuf], out: &Path, in_place: bool) -> Result<()> {
    let mut all: Option<Metadata> = None;
    for d in dirs {
        for f in Layout::new(d).metadata_files() {
            let m: Metadata = serde_json::from_str(&std::fs::read_to_string(&f)?)
                .with_context(|| format!("{} is corrupt", f.display()))?;
            match &mut all {
                None => all = Some(m),
                Some(a) => {
                    a.invocations.extend(m.invocations);
                    for (k, v) in m.experiments {
                        a.experiments.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
    if let Some(mut m) = all {
        m.invocations
            .sort_by(|a, b| a.started_at.cmp(&b.started_at));
        let out = Layout::new(out);
        write_text(&out.metadata(), &(serde_json::to_string_pretty(&m)? + "\n"))?;
        if in_place {
            for f in out.metadata_files() {
                if f != out.metadata() {
                    let _ = std::fs::remove_file(f);
                }
            }
        }
    }
    Ok(())
}
