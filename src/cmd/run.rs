//! `initlab run CONFIG`: run or resume a config's sweep into its run directory.

use crate::cli::RunArgs;
use crate::config::Config;
use crate::experiment::context::available_memory;
use crate::experiment::sweep::{self, RunOptions, Shard};
use anyhow::{Result, bail};

pub fn run(args: RunArgs, threads: usize) -> Result<()> {
    let config = Config::load(&args.config)?;
    let shard = match args.shard.as_deref() {
        Some("slurm") => Some(Shard::from_slurm_env()?.ok_or_else(|| {
            anyhow::anyhow!(
                "--shard slurm takes the part from SLURM_ARRAY_TASK_ID, which is not set: run it inside a SLURM array task, or pass --shard i/N"
            )
        })?),
        Some(s) => Some(Shard::parse(s)?),
        None => {
            if std::env::var_os("SLURM_ARRAY_TASK_ID").is_some() {
                eprintln!(
                    "note: running the whole sweep although this is a SLURM array task; pass --shard slurm to run only this task's part"
                );
            }
            None
        }
    };
    let memory_budget = memory_budget(args.memory.memory_gb)?;
    let opts = RunOptions {
        out: args.out,
        data_dir: args.data_dir,
        threads,
        shard,
        memory_budget,
        allow_data_change: args.allow_data_change,
    };
    let summary = sweep::run(&config, &opts)?;
    let shard_note = match shard {
        Some(s) => format!(
            " (shard {s}; {} units belong to other shards)",
            summary.units_other_shards
        ),
        None => String::new(),
    };
    eprintln!(
        "{}: {} units run, {} already done, of {}{shard_note}; {:.1}s. Results in {}",
        config.name,
        summary.units_run,
        summary.units_skipped,
        summary.units_total,
        summary.wall_time_s,
        summary.out.display()
    );
    Ok(())
}

/// The memory for ensembles in bytes: `--memory-gb`, or 60% of what is available now.
pub fn memory_budget(memory_gb: Option<f64>) -> Result<u64> {
    Ok(match memory_gb {
        Some(g) if !(g > 0.0 && g.is_finite()) => {
            bail!("--memory-gb must be a positive number of GiB, got {g}")
        }
        Some(g) => (g * (1u64 << 30) as f64) as u64,
        None => (available_memory() as f64 * 0.6) as u64,
    })
}
