//! `initlab slurm CONFIG --tasks N`: hands a sweep to SLURM as an array job, one
//! task per shard, all writing into one run directory on a shared filesystem.
//! The run directory gets the sbatch script, a copy of the exact binary, per-task
//! logs, and afterwards `initlab merge` joins the shards.

use crate::cli::SlurmArgs;
use crate::config::Config;
use crate::experiment::sweep::default_out;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The sbatch script of an array job of `tasks` shards of `config` into `out`.
pub fn script(args: &SlurmArgs, binary: &Path, config: &Path, out: &Path, name: &str) -> String {
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!("#SBATCH --job-name=initlab-{name}\n"));
    s.push_str(&format!("#SBATCH --array=0-{}\n", args.tasks - 1));
    s.push_str(&format!(
        "#SBATCH --output={}/slurm/logs/task-%a.out\n",
        out.display()
    ));
    s.push_str(&format!(
        "#SBATCH --error={}/slurm/logs/task-%a.err\n",
        out.display()
    ));
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", args.cpus_per_task));
    if let Some(m) = &args.mem {
        s.push_str(&format!("#SBATCH --mem={m}\n"));
    }
    if let Some(t) = &args.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(p) = &args.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    s.push_str(&format!(
        "# Made by initlab {} (commit {}) from {}.\n\
         # Each array task runs shard (SLURM_ARRAY_TASK_ID + 1) of {}; to rerun a failed or\n\
         # preempted task i alone: sbatch --array=i {}/slurm/array.sbatch (it resumes).\n\
         # When all tasks are done: initlab merge {}\n",
        env!("CARGO_PKG_VERSION"),
        crate::rundir::GIT_COMMIT,
        config.display(),
        args.tasks,
        out.display(),
        out.display()
    ));
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!(
        "exec {} --threads \"${{SLURM_CPUS_PER_TASK:-{}}}\" run {} --out {} --shard \"$((SLURM_ARRAY_TASK_ID + 1))/{}\"\n",
        binary.display(),
        args.cpus_per_task,
        config.display(),
        out.display(),
        args.tasks
    ));
    s
}

pub fn run(args: SlurmArgs) -> Result<()> {
    if args.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    if args.cpus_per_task == 0 {
        bail!("--cpus-per-task must be at least 1");
    }
    let config = Config::load(&args.config)?;
    // Validate everything before anything is written or submitted.
    let experiments = crate::experiment::build(&config)?;
    let resolved = crate::experiment::resolved_text(&config, &experiments)?;
    let out = args.out.clone().unwrap_or_else(|| default_out(&config));
    std::fs::create_dir_all(out.join("slurm/logs"))
        .with_context(|| format!("cannot create {}: choose a writable --out", out.display()))?;
    let out = out.canonicalize()?;
    // The run directory exists (with its config) before any task starts.
    let resolved_path = out.join("config.resolved.yaml");
    if resolved_path.exists() {
        if std::fs::read_to_string(&resolved_path)? != resolved {
            bail!(
                "run directory {} was made by a different config: use another --out",
                out.display()
            );
        }
    } else {
        crate::results::write_text(&out.join("config.yaml"), &config.source_text)?;
        crate::results::write_text(&resolved_path, &resolved)?;
    }
    std::fs::create_dir_all(out.join("results"))?;
    // The exact binary this script was made with, copied next to it.
    let binary = out.join("slurm/initlab");
    let me = std::env::current_exe().context("locating the initlab binary")?;
    if me.canonicalize().ok() != binary.canonicalize().ok() {
        std::fs::copy(&me, &binary)
            .with_context(|| format!("copying {} to {}", me.display(), binary.display()))?;
    }
    // The config as given, under its own file name (a config without `name:` is
    // named after its file), so that every task resolves it exactly as here.
    let file_name = args
        .config
        .file_name()
        .context("the config path has no file name")?;
    let config_copy = out.join("slurm").join(file_name);
    std::fs::copy(&args.config, &config_copy)
        .with_context(|| format!("copying {}", args.config.display()))?;
    let text = script(&args, &binary, &config_copy, &out, &config.name);
    let script_path = out.join("slurm/array.sbatch");
    crate::results::write_text(&script_path, &text)?;
    if args.dry_run {
        print!("{text}");
        eprintln!(
            "dry run: nothing submitted; the script is {}",
            script_path.display()
        );
        return Ok(());
    }
    let output = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(&script_path)
        .output()
        .context(
            "cannot run sbatch: is SLURM installed here? (use --dry-run to only write the script)",
        )?;
    if !output.status.success() {
        bail!(
            "sbatch refused the job: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let job = String::from_utf8_lossy(&output.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    println!("{job}");
    eprintln!(
        "submitted array job {job}: {} tasks of {}.\n  follow it:   squeue -j {job}\n  task logs:   {}/slurm/logs/task-<i>.out|.err\n  rerun task i: sbatch --array=i {}\n  when done:   initlab merge {}",
        args.tasks,
        config.name,
        out.display(),
        script_path.display(),
        out.display()
    );
    Ok(())
}

/// Paths a test or caller may want.
pub fn script_path(out: &Path) -> PathBuf {
    out.join("slurm/array.sbatch")
}
