//! `initlab run CONFIG`: run or resume a config's sweep into its run directory.

use crate::cli::RunArgs;
use crate::config::Config;
use crate::experiment::context::available_memory;
use crate::experiment::sweep::{self, RunOptions, Shard};
use anyhow::{Result, bail};

pub fn run(args: RunArgs, threads: usize) -> Result<()> {
    let config = Config::load(&args.config)?;
    let shard = match &args.shard {
        Some(s) => Some(Shard::parse(s)?),
        None => Shard::from_slurm_env()?,
    };
    let memory_budget = match args.memory_gb {
        Some(g) if !(g > 0.0) => bail!("--memory-gb must be positive, got {g}"),
        Some(g) => (g * (1u64 << 30) as f64) as u64,
        None => (available_memory() as f64 * 0.6) as u64,
    };
    let opts = RunOptions {
        out: args.out,
        data_dir: args.data_dir,
        threads,
        shard,
        memory_budget,
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
