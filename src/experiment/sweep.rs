//! The sweep runner: opens the run directory, skips units already done, splits
//! the jobs into shards balanced by cost when asked, runs the rest with a progress
//! bar, and writes each batch of finished units as its own Parquet shard.

use super::{Context, Experiment, Job, Todo, UnitSpec, build, resolved_text};
use crate::config::Config;
use crate::results::{Table, write_parquet};
use crate::rundir::RunDir;
use anyhow::{Context as _, Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// One of N disjoint parts of a sweep, 1-based as written (`--shard 2/3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// More parts than any cluster runs for one sweep: a larger count is a typo,
/// refused before anything is allocated for it.
pub const MAX_SHARDS: usize = 100_000;

impl Shard {
    pub fn parse(text: &str) -> Result<Shard> {
        let err = || {
            anyhow::anyhow!(
                "--shard must look like i/N with 1 <= i <= N <= {MAX_SHARDS} (e.g. 2/3 is the second of three parts; \
                 `--shard slurm` takes the part from a SLURM array task), got `{text}`"
            )
        };
        let (i, n) = text.split_once('/').ok_or_else(err)?;
        let index: usize = i.trim().parse().map_err(|_| err())?;
        let count: usize = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index == 0 || index > count || count > MAX_SHARDS {
            return Err(err());
        }
        Ok(Shard { index, count })
    }

    /// The shard of a SLURM array task, from SLURM_ARRAY_TASK_ID and
    /// SLURM_ARRAY_TASK_COUNT (or SLURM_ARRAY_TASK_MIN/MAX), when present. Used
    /// only for `--shard slurm`: a run that merely happens to execute inside an
    /// array job must run its whole sweep, not 1/N of it.
    pub fn from_slurm_env() -> Result<Option<Shard>> {
        let var = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let Some(id) = var("SLURM_ARRAY_TASK_ID") else {
            return Ok(None);
        };
        let min = var("SLURM_ARRAY_TASK_MIN").unwrap_or(0);
        let count = match (var("SLURM_ARRAY_TASK_COUNT"), var("SLURM_ARRAY_TASK_MAX")) {
            (Some(c), _) => c,
            (None, Some(max)) => max + 1 - min,
            (None, None) => bail!(
                "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is; pass --shard i/N"
            ),
        };
        if id < min || id - min >= count {
            bail!("SLURM_ARRAY_TASK_ID {id} is outside the array (min {min}, count {count})");
        }
        if count > MAX_SHARDS {
            bail!(
                "the SLURM array has {count} tasks, more than the {MAX_SHARDS} parts a sweep can be split into"
            );
        }
        Ok(Some(Shard {
            index: id - min + 1,
            count,
        }))
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Assigns jobs to `count` shards, heaviest first to the least-loaded shard
/// (deterministic: ties go to the earlier job and the lower shard).
pub fn assign_shards(costs: &[f64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| {
        costs[b]
            .partial_cmp(&costs[a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    let mut load = vec![0.0f64; count];
    let mut out = vec![0usize; costs.len()];
    for j in order {
        let (best, _) = load
            .iter()
            .enumerate()
            .fold((0usize, f64::INFINITY), |acc, (i, &l)| {
                if l < acc.1 { (i, l) } else { acc }
            });
        out[j] = best;
        load[best] += costs[j];
    }
    out
}

/// Every job of every experiment in run order, as (experiment index, job, the
/// 0-based shard of `count` that runs it). `run --shard` and the dry run's shard
/// plan both use it, so the plan is what runs.
pub fn jobs_by_shard(
    experiments: &[Box<dyn Experiment>],
    count: usize,
) -> Vec<(usize, Job, usize)> {
    let mut all: Vec<(usize, Job)> = Vec::new();
    for (e, exp) in experiments.iter().enumerate() {
        all.extend(exp.jobs().into_iter().map(|j| (e, j)));
    }
    let costs: Vec<f64> = all.iter().map(|(_, j)| j.cost()).collect();
    let owners = assign_shards(&costs, count.max(1));
    all.into_iter()
        .zip(owners)
        .map(|((e, j), owner)| (e, j, owner))
        .collect()
}

pub struct RunOptions {
    pub out: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub threads: usize,
    pub shard: Option<Shard>,
    pub memory_budget: u64,
    /// Resume even if the dataset files' bytes differ from those recorded.
    pub allow_data_change: bool,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub out: PathBuf,
    pub units_total: usize,
    pub units_run: usize,
    pub units_skipped: usize,
    pub units_other_shards: usize,
    pub wall_time_s: f64,
}

/// The default run directory of a config.
pub fn default_out(config: &Config) -> PathBuf {
    PathBuf::from("outputs").join(&config.name)
}

/// Runs (or resumes) every experiment of a config.
pub fn run(config: &Config, opts: &RunOptions) -> Result<RunSummary> {
    let experiments = build(config)?;
    let resolved = resolved_text(config, &experiments)?;
    let out = opts.out.clone().unwrap_or_else(|| default_out(config));
    let mut dir = RunDir::open(
        &out,
        &config.name,
        config.seed,
        &config.source_text,
        &resolved,
        opts.threads as i64,
        opts.shard.map(|s| s.to_string()),
    )?;
    let data_dir = opts.data_dir.clone().or_else(|| config.data_dir.clone());
    let mut ctx = Context::new(config.seed, data_dir, opts.threads, opts.memory_budget);
    match run_in(&experiments, &mut dir, &mut ctx, opts) {
        Ok(summary) => {
            dir.finish("complete")?;
            Ok(summary)
        }
        Err(e) => {
            let _ = dir.finish(&format!("failed: {e:#}"));
            dir.discard_if_empty();
            Err(e)
        }
    }
}

fn run_in(
    experiments: &[Box<dyn Experiment>],
    dir: &mut RunDir,
    ctx: &mut Context,
    opts: &RunOptions,
) -> Result<RunSummary> {
    let started = Instant::now();
    // Everything an experiment needs is loaded before any unit runs.
    for exp in experiments {
        let inputs = exp
            .prepare(ctx)
            .with_context(|| format!("experiment `{}`", exp.name()))?;
        let units: usize = exp.jobs().iter().map(|j| j.units.len()).sum();
        dir.record_inputs(
            exp.name(),
            exp.kind().name(),
            units,
            inputs,
            opts.allow_data_change,
        )?;
    }
    dir.save_metadata()?;

    // All jobs of all experiments, then this shard's part of them.
    let all = jobs_by_shard(experiments, opts.shard.map_or(1, |s| s.count));
    let units_total: usize = all.iter().map(|(_, j, _)| j.units.len()).sum();
    let mine: Vec<(usize, Job)> = all
        .into_iter()
        .filter(|(_, _, owner)| opts.shard.is_none_or(|s| *owner == s.index - 1))
        .map(|(e, j, _)| (e, j))
        .collect();
    let units_mine: usize = mine.iter().map(|(_, j)| j.units.len()).sum();

    // What is already done: each experiment's shards read once.
    let mut done = Vec::with_capacity(experiments.len());
    for exp in experiments {
        done.push(dir.finished_units(exp.name())?);
    }
    let mut work: Vec<(usize, Job, Vec<usize>)> = Vec::new();
    let mut skipped = 0;
    for (e, job) in mine {
        let done = &done[e];
        let pending: Vec<usize> = (0..job.units.len())
            .filter(|&u| !done.contains(&job.units[u].id))
            .collect();
        skipped += job.units.len() - pending.len();
        if !pending.is_empty() {
            work.push((e, job, pending));
        }
    }
    let total_cost: f64 = work
        .iter()
        .map(|(_, j, p)| p.iter().map(|&u| j.units[u].cost).sum::<f64>())
        .sum();
    let scale = if total_cost > 0.0 {
        1e6 / total_cost
    } else {
        0.0
    };
    let pending_units: usize = work.iter().map(|(_, _, p)| p.len()).sum();
    let bar = crate::progress::work_bar(1_000_000, &format!("{pending_units} units"));
    if skipped > 0 {
        dir.log_line(&format!(
            "resuming: {skipped} units already done, {pending_units} to run"
        ))?;
    }
    let mut run = 0usize;
    for (e, job, pending) in &work {
        let exp = &experiments[*e];
        let results = dir.results_dir(exp.name());
        std::fs::create_dir_all(&results)
            .with_context(|| format!("cannot create {}", results.display()))?;
        let mut last = Instant::now();
        let mut sink = |table: Table, units: &[UnitSpec]| -> Result<()> {
            write_shard(&results, exp.as_ref(), table, units)?;
            let secs = last.elapsed().as_secs_f64();
            last = Instant::now();
            for u in units {
                dir.log_line(&format!(
                    "{} {} unit {} done ({}) in {:.2}s",
                    exp.kind(),
                    exp.name(),
                    u.id,
                    u.label,
                    secs / units.len() as f64
                ))?;
                bar.inc((u.cost * scale) as u64);
            }
            run += units.len();
            dir.record_progress(run, skipped);
            bar.set_message(format!("{run}/{pending_units} units"));
            Ok(())
        };
        exp.run_job(Todo {
            job,
            pending,
            ctx,
            sink: &mut sink,
        })
        .with_context(|| format!("experiment `{}` ({})", exp.name(), exp.kind()))?;
    }
    bar.finish_and_clear();
    dir.record_progress(run, skipped);
    Ok(RunSummary {
        out: dir.root.clone(),
        units_total,
        units_run: run,
        units_skipped: skipped,
        units_other_shards: units_total - units_mine,
        wall_time_s: started.elapsed().as_secs_f64(),
    })
}

/// Writes the rows of finished units as one shard, named by the units it holds.
fn write_shard(
    results: &std::path::Path,
    exp: &dyn Experiment,
    table: Table,
    units: &[UnitSpec],
) -> Result<()> {
    let mut df = table.to_dataframe()?;
    if df.column("work_unit").is_err() {
        bail!(
            "internal error: {} rows lack a `work_unit` column",
            exp.kind()
        );
    }
    // Named by the units it holds, so that a rewrite of the same units replaces it.
    let key = units.iter().fold(
        crate::seed::Key::new("results-shard").uint("units", units.len() as u64),
        |key, u| key.text("unit", &u.id),
    );
    let name = format!("{}-{}.parquet", exp.kind(), key.id());
    let meta = BTreeMap::from([
        (
            "initlab_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (
            "git_commit".to_string(),
            crate::rundir::GIT_COMMIT.to_string(),
        ),
        ("experiment".to_string(), exp.name().to_string()),
        ("kind".to_string(), exp.kind().to_string()),
    ]);
    write_parquet(&results.join(name), &mut df, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parsing() {
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
        for bad in ["0/3", "4/3", "1/0", "x", "1-3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_are_disjoint_complete_and_balanced() {
        let costs: Vec<f64> = (0..40).map(|i| 1.0 + (i % 7) as f64 * 10.0).collect();
        let owner = assign_shards(&costs, 3);
        let mut load = [0.0; 3];
        for (c, o) in costs.iter().zip(&owner) {
            load[*o] += c;
        }
        let total: f64 = costs.iter().sum();
        assert!((load.iter().sum::<f64>() - total).abs() < 1e-9);
        let max = load.iter().cloned().fold(0.0, f64::max);
        assert!(max <= total / 3.0 + 61.0, "{load:?}");
        assert_eq!(owner, assign_shards(&costs, 3));
    }
}
