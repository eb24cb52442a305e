//! `initlab slurm CONFIG --tasks N`: hands a sweep to SLURM as an array job, one
//! task per shard, all writing into one run directory on a shared filesystem.
//! The run directory gets the sbatch script, a copy of the exact binary, per-task
//! logs, and afterwards `initlab merge` joins the shards. Everything the script
//! interpolates is quoted or refused, and `--dry-run` prints the shard plan.

use crate::cli::SlurmArgs;
use crate::config::Config;
use crate::experiment::sweep::{default_out, jobs_by_shard};
use crate::experiment::{Experiment, Job};
use crate::rundir::{Entry, Layout, SLURM_OWN_NAMES};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// `s` as one bash word that expands to exactly `s`: single quotes, with each
/// `'` written as `'\''` (close, escaped quote, reopen), since nothing else is
/// special between single quotes.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// `value` as one argument of an `#SBATCH` line. sbatch splits these lines at
/// blanks, honours quotes, drops backslashes before any character (inside quotes
/// too) and, in older releases, ends the line at a `#` even inside quotes; so a
/// plain value stays as it is and any other is double-quoted with `\`, `"` and
/// `#` escaped. Newlines cannot be expressed, and a `%` is left for sbatch to
/// expand: user values holding either are refused earlier ([`check_sbatch_text`]),
/// so only the script's own log patterns (`task-%a.out`) carry a `%`.
pub fn sbatch_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.,:/+=@%".contains(c));
    if plain {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Why `text` cannot go into an `#SBATCH` line, if it cannot: a newline (or any
/// control character) would end the directive and start another; sbatch expands
/// `%` patterns (`%a`, `%j`, ...) in these lines.
fn sbatch_hazard(text: &str) -> Option<&'static str> {
    text.chars().find_map(|c| match c {
        '\n' | '\r' => Some("a newline"),
        '%' => Some("`%`"),
        c if c.is_control() => Some("a control character"),
        _ => None,
    })
}

/// Refuses a value of `option` that sbatch would misread in an `#SBATCH` line,
/// saying what to pass instead (`example`).
pub fn check_sbatch_text(option: &str, value: &str, example: &str) -> Result<()> {
    if value.trim().is_empty() {
        bail!("{option} is empty: give a value (e.g. {option} {example}) or leave the option out");
    }
    if let Some(what) = sbatch_hazard(value) {
        bail!(
            "{option} {value:?} contains {what}, which cannot go into an #SBATCH line (a newline would start a new directive, and sbatch expands % patterns): give the plain value, e.g. {option} {example}"
        );
    }
    Ok(())
}

/// Refuses `--partition`, `--time` and `--mem` values sbatch would misread.
fn check_sbatch_options(args: &SlurmArgs) -> Result<()> {
    for (option, value, example) in [
        ("--partition", &args.partition, "gpu"),
        ("--time", &args.time, "02:00:00"),
        ("--mem", &args.mem, "8G"),
    ] {
        if let Some(v) = value {
            check_sbatch_text(option, v, example)?;
        }
    }
    Ok(())
}

/// Refuses a run directory whose absolute path cannot be written into the
/// `#SBATCH --output` lines, or is not UTF-8 (it would be written wrongly).
fn check_out_path(out: &Path) -> Result<()> {
    let Some(text) = out.to_str() else {
        bail!(
            "the run directory {} is not valid UTF-8, so the sbatch script cannot name it: choose --out DIR with a UTF-8 path",
            out.display()
        );
    };
    if let Some(what) = sbatch_hazard(text) {
        bail!(
            "--out: the run directory's path {text:?} contains {what}, which cannot go into the script's #SBATCH --output lines (a newline would start a new directive; sbatch reads % as a pattern such as %a): choose --out DIR whose absolute path has no newline and no %"
        );
    }
    Ok(())
}

/// One line of a shell comment, whatever `text` holds: control characters are
/// written escaped, so that a newline in a path cannot end the comment and turn
/// the rest into a command.
fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Path as text for the script; the callers have refused non-UTF-8 paths.
fn path_text(path: &Path) -> Result<&str> {
    path.to_str().with_context(|| {
        format!(
            "{} is not valid UTF-8, so the sbatch script cannot name it: rename it",
            path.display()
        )
    })
}

/// The sbatch script of an array job of `tasks` shards of `config` into `out`.
/// It checks again what [`run`] refuses up front, so that no caller can write a
/// directive sbatch would misread.
pub fn script(
    args: &SlurmArgs,
    binary: &Path,
    config: &Path,
    out: &Path,
    name: &str,
) -> Result<String> {
    check_sbatch_options(args)?;
    check_out_path(out)?;
    check_sbatch_text("the config's name", name, "name: my-sweep")?;
    let out_text = path_text(out)?;
    let layout = Layout::new(out);
    let logs = |ext: &str| -> Result<String> {
        Ok(sbatch_quote(path_text(&layout.slurm_task_log("%a", ext))?))
    };
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!(
        "#SBATCH --job-name={}\n",
        sbatch_quote(&format!("initlab-{name}"))
    ));
    s.push_str(&format!("#SBATCH --array=0-{}\n", args.tasks - 1));
    s.push_str(&format!("#SBATCH --output={}\n", logs("out")?));
    s.push_str(&format!("#SBATCH --error={}\n", logs("err")?));
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", args.cpus_per_task));
    for (option, value) in [
        ("mem", &args.mem),
        ("time", &args.time),
        ("partition", &args.partition),
    ] {
        if let Some(v) = value {
            s.push_str(&format!("#SBATCH --{option}={}\n", sbatch_quote(v)));
        }
    }
    let script_path = shell_quote(path_text(&layout.slurm_script())?);
    s.push_str(&format!(
        "# Made by initlab {} (commit {}) from {}.\n\
         # Each array task runs shard (SLURM_ARRAY_TASK_ID + 1) of {}, asked for explicitly\n\
         # with --shard. To rerun a failed or preempted task i alone (it resumes):\n\
         #   sbatch --array=i {}\n\
         # When all tasks are done: initlab merge {}\n",
        env!("CARGO_PKG_VERSION"),
        comment_text(crate::rundir::GIT_COMMIT),
        comment_text(&args.config.display().to_string()),
        args.tasks,
        script_path,
        shell_quote(out_text)
    ));
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!(
        "exec {} --threads \"${{SLURM_CPUS_PER_TASK:-{}}}\" run {} --out {} --shard \"$((SLURM_ARRAY_TASK_ID + 1))/{}\"\n",
        shell_quote(path_text(binary)?),
        args.cpus_per_task,
        shell_quote(path_text(config)?),
        shell_quote(out_text),
        args.tasks
    ));
    Ok(s)
}

/// One array task's part of a sweep, as the shards are assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPlan {
    /// The array index (`SLURM_ARRAY_TASK_ID`); it runs shard `task + 1`.
    pub task: usize,
    pub jobs: usize,
    pub units: usize,
    /// Sum of its units' costs, in the cost model's relative units.
    pub cost: f64,
    /// Estimated seconds, when every kind in the sweep has timed units.
    pub seconds: Option<f64>,
}

/// Seconds per unit of cost of one experiment kind, measured on this sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct KindRate {
    pub kind: String,
    pub seconds_per_cost: f64,
    pub units_timed: usize,
}

/// How a sweep splits into array tasks, and how long each should take.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardPlan {
    pub tasks: Vec<TaskPlan>,
    pub total_units: usize,
    pub total_cost: f64,
    /// Per kind, from this sweep's units timed in a log (empty when none).
    pub rates: Vec<KindRate>,
    /// Kinds with work but no timed unit; while any, estimates are relative.
    pub untimed_kinds: Vec<String>,
}

impl ShardPlan {
    /// Whether the estimates are seconds (otherwise relative cost).
    pub fn in_seconds(&self) -> bool {
        self.tasks.iter().all(|t| t.seconds.is_some())
    }

    /// A task's estimate: seconds when measured, otherwise its relative cost.
    pub fn estimate(&self, task: &TaskPlan) -> f64 {
        task.seconds.unwrap_or(task.cost)
    }

    /// The task that finishes last (the first of equals).
    pub fn slowest(&self) -> &TaskPlan {
        let mut slowest = &self.tasks[0];
        for t in &self.tasks[1..] {
            if self.estimate(t) > self.estimate(slowest) {
                slowest = t;
            }
        }
        slowest
    }

    /// The predicted makespan, in the unit of the estimates: the slowest task's
    /// estimate, since all tasks start together (queueing aside).
    pub fn makespan(&self) -> f64 {
        self.estimate(self.slowest())
    }

    /// The plan as printed: one line per task, the makespan, and what the
    /// estimates rest on. `config` and `out` appear in the advice on timings.
    pub fn render(&self, config: &Path, out: &Path) -> String {
        let n = self.tasks.len();
        let jobs: usize = self.tasks.iter().map(|t| t.jobs).sum();
        let mut s = format!(
            "shard plan: {} units in {jobs} jobs over {n} array tasks, jobs balanced by estimated cost\n",
            self.total_units
        );
        s.push_str(&format!(
            "  {:>5}  {:>9}  {:>6}  {:>7}  {:>10}  {}\n",
            "task", "shard", "jobs", "units", "cost", "est. time"
        ));
        let total_estimate: f64 = self.tasks.iter().map(|t| self.estimate(t)).sum();
        for t in &self.tasks {
            // Without timings, a task's time is its share of one machine's time.
            let time = match t.seconds {
                Some(secs) => duration_text(secs),
                None => format!(
                    "{:.1}% of one machine's time",
                    100.0 * fraction(t.cost, self.total_cost)
                ),
            };
            s.push_str(&format!(
                "  {:>5}  {:>9}  {:>6}  {:>7}  {:>10.3e}  {time}\n",
                t.task,
                format!("{}/{n}", t.task + 1),
                t.jobs,
                t.units,
                t.cost,
            ));
        }
        let slowest = self.slowest();
        let speedup = if self.makespan() > 0.0 {
            format!(
                ", {:.2}x faster than one task running everything",
                total_estimate / self.makespan()
            )
        } else {
            String::new()
        };
        let empty = self.tasks.iter().filter(|t| t.units == 0).count();
        if empty > 0 {
            s.push_str(&format!("  ({empty} tasks get no units)\n"));
        }
        match slowest.seconds {
            Some(secs) => s.push_str(&format!(
                "predicted makespan: {} (task {}, shard {}/{n}){speedup}\n",
                duration_text(secs),
                slowest.task,
                slowest.task + 1
            )),
            None => s.push_str(&format!(
                "predicted makespan: {:.1}% of the time one machine takes for the whole sweep (task {}, shard {}/{n}){speedup}\n",
                100.0 * fraction(slowest.cost, self.total_cost),
                slowest.task,
                slowest.task + 1
            )),
        }
        let log = shell_quote(&Layout::new(out).log().display().to_string());
        if self.in_seconds() {
            let rates: Vec<String> = self
                .rates
                .iter()
                .map(|r| {
                    format!(
                        "{} {:.3e} s per unit of cost from {} units",
                        r.kind, r.seconds_per_cost, r.units_timed
                    )
                })
                .collect();
            s.push_str(&format!(
                "estimates based on: this sweep's own units timed in {log} ({}), scaled by each unit's relative cost; they assume the threads those runs had and leave out start-up (libtorch, datasets) and queueing.\n",
                rates.join("; ")
            ));
        } else {
            let missing = if self.rates.is_empty() {
                format!("no unit of this sweep is timed in {log} yet")
            } else {
                format!(
                    "no unit of kind {} is timed in {log} yet",
                    self.untimed_kinds.join(", ")
                )
            };
            s.push_str(&format!(
                "estimates based on: the cost model's relative costs only (units of work, not seconds); {missing}. For seconds, time a part of this sweep first (e.g. initlab run {} --out {} --shard 1/{}, which the array then skips) and dry-run again: the log's timings calibrate each kind it ran.\n",
                shell_quote(&config.display().to_string()),
                shell_quote(&out.display().to_string()),
                (n * 10).min(jobs).max(1)
            ));
        }
        s
    }
}

fn fraction(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

/// Seconds as people read them: `0.4 s`, `42.0 s`, `1h 3m 12s`.
fn duration_text(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        humantime::format_duration(std::time::Duration::from_secs(secs.round() as u64)).to_string()
    }
}

/// The seconds each unit took, by unit id, from a run directory's `log.txt`
/// (lines `... unit ID done (LABEL) in 1.23s`; a unit run twice keeps its last).
pub fn logged_unit_seconds(log: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once(" unit ") else {
            continue;
        };
        let Some((id, rest)) = rest.split_once(" done (") else {
            continue;
        };
        // The label may hold parentheses; the time follows the last ") in ".
        let Some((_, time)) = rest.rsplit_once(") in ") else {
            continue;
        };
        let Some(Ok(secs)) = time.trim_end().strip_suffix('s').map(str::parse::<f64>) else {
            continue;
        };
        if secs.is_finite() && secs >= 0.0 {
            out.insert(id.to_string(), secs);
        }
    }
    out
}

/// The shard plan of `experiments` over `tasks` array tasks: the jobs in the
/// order the sweep runner lists them, assigned by the same cost balancing, so
/// task i gets exactly what `initlab run --shard i+1/tasks` runs. `unit_seconds`
/// (unit id to seconds, e.g. from [`logged_unit_seconds`]) calibrates each kind's
/// costs into seconds where this sweep's own units were timed.
pub fn shard_plan(
    experiments: &[Box<dyn Experiment>],
    tasks: usize,
    unit_seconds: &HashMap<String, f64>,
) -> Result<ShardPlan> {
    if tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    let (all, owners): (Vec<(&str, Job)>, Vec<usize>) = jobs_by_shard(experiments, tasks)
        .into_iter()
        .map(|(e, job, owner)| ((experiments[e].kind().name(), job), owner))
        .unzip();
    let mut plan: Vec<TaskPlan> = (0..tasks)
        .map(|task| TaskPlan {
            task,
            jobs: 0,
            units: 0,
            cost: 0.0,
            seconds: None,
        })
        .collect();
    // Per task and kind, the cost it holds; per kind, the timed units' cost and seconds.
    let mut task_kind_cost: Vec<BTreeMap<&str, f64>> = vec![BTreeMap::new(); tasks];
    let mut kind_cost: BTreeMap<&str, f64> = BTreeMap::new();
    let mut timed: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
    for ((kind, job), &owner) in all.iter().zip(&owners) {
        let t = &mut plan[owner];
        t.jobs += 1;
        t.units += job.units.len();
        t.cost += job.cost();
        *task_kind_cost[owner].entry(kind).or_default() += job.cost();
        *kind_cost.entry(kind).or_default() += job.cost();
        for unit in &job.units {
            if let Some(&secs) = unit_seconds.get(&unit.id) {
                let entry = timed.entry(kind).or_default();
                entry.0 += unit.cost;
                entry.1 += secs;
                entry.2 += 1;
            }
        }
    }
    let rates: Vec<KindRate> = timed
        .iter()
        .filter(|(_, (cost, _, _))| *cost > 0.0)
        .map(|(kind, &(cost, secs, count))| KindRate {
            kind: kind.to_string(),
            seconds_per_cost: secs / cost,
            units_timed: count,
        })
        .collect();
    let untimed_kinds: Vec<String> = kind_cost
        .iter()
        .filter(|(kind, cost)| **cost > 0.0 && !rates.iter().any(|r| r.kind == **kind))
        .map(|(kind, _)| kind.to_string())
        .collect();
    if untimed_kinds.is_empty() && !rates.is_empty() {
        for (t, costs) in plan.iter_mut().zip(&task_kind_cost) {
            t.seconds = Some(
                costs
                    .iter()
                    .map(|(kind, cost)| {
                        let rate = rates.iter().find(|r| r.kind == *kind);
                        cost * rate.map_or(0.0, |r| r.seconds_per_cost)
                    })
                    .sum(),
            );
        }
    }
    Ok(ShardPlan {
        tasks: plan,
        total_units: all.iter().map(|(_, j)| j.units.len()).sum(),
        total_cost: all.iter().map(|(_, j)| j.cost()).sum(),
        rates,
        untimed_kinds,
    })
}

/// Copies `from` to `to` so that a reader of `to` sees the old file or the whole
/// new one, never a partial one: the bytes go to a uniquely named temporary file
/// beside `to`, which gets `from`'s permissions (so an executable stays one)
/// before it is renamed into place. A task still running the old binary keeps
/// it, and replacing a binary that is being executed is no error ("text file busy").
pub fn copy_atomically(from: &Path, to: &Path) -> Result<()> {
    let permissions = std::fs::metadata(from)
        .with_context(|| format!("cannot read {}", from.display()))?
        .permissions();
    let mut source =
        std::fs::File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    crate::results::write_atomic(to, |file| {
        std::io::copy(&mut source, file)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        file.set_permissions(permissions).with_context(|| {
            format!("cannot set the permissions of a copy of {}", from.display())
        })?;
        Ok(())
    })
}

pub fn run(args: SlurmArgs) -> Result<()> {
    if args.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    if args.cpus_per_task == 0 {
        bail!("--cpus-per-task must be at least 1");
    }
    // What goes into #SBATCH lines is checked before anything is read or written.
    check_sbatch_options(&args)?;
    let config = Config::load(&args.config)?;
    // Validate everything before anything is written or submitted.
    let experiments = crate::experiment::build(&config)?;
    let resolved = crate::experiment::resolved_text(&config, &experiments)?;
    let jobs: usize = experiments.iter().map(|e| e.jobs().len()).sum();
    if args.tasks > jobs {
        bail!(
            "--tasks {} is more than the {jobs} jobs of this sweep, so some tasks would get nothing to do: use --tasks {jobs} or fewer",
            args.tasks
        );
    }
    let file_name = config_file_name(&args.config)?;
    let out = args.out.clone().unwrap_or_else(|| default_out(&config));
    let out_absolute = std::path::absolute(&out)
        .with_context(|| format!("cannot make {} absolute", out.display()))?;
    check_out_path(&out_absolute)?;
    let timings = match std::fs::read_to_string(Layout::new(&out_absolute).log()) {
        Ok(text) => logged_unit_seconds(&text),
        Err(_) => HashMap::new(),
    };
    let plan = shard_plan(&experiments, args.tasks, &timings)?;

    let out = make_run_dir(&out, &config, &resolved)?;
    let layout = Layout::new(&out);
    // The exact binary this script was made with, copied next to it.
    let binary = layout.slurm_binary();
    let me = std::env::current_exe().context("locating the initlab binary")?;
    if me.canonicalize().ok() != binary.canonicalize().ok() {
        copy_atomically(&me, &binary)?;
    }
    // The config text exactly as validated here, so every task resolves the same.
    let config_copy = layout.slurm_file(file_name);
    crate::results::write_text(&config_copy, &config.source_text)?;
    let text = script(&args, &binary, &config_copy, &out, &config.name)?;
    let script_path = layout.slurm_script();
    crate::results::write_text(&script_path, &text)?;
    let plan_text = plan.render(&args.config, &out);
    if args.dry_run {
        print!("{text}");
        eprint!("{plan_text}");
        eprintln!(
            "dry run: nothing submitted; the script is {}",
            script_path.display()
        );
        return Ok(());
    }
    submit(&args, &config.name, &out, &script_path, &plan_text)
}

/// The file name the config is copied under (a config without `name:` is
/// named after its file), which must be UTF-8 and not one of the `slurm/`
/// folder's own files.
fn config_file_name(config: &Path) -> Result<&std::ffi::OsStr> {
    let file_name = config
        .file_name()
        .context("the config path has no file name")?;
    let file_name_text = file_name.to_str().with_context(|| {
        format!(
            "the config's file name {} is not valid UTF-8, so the sbatch script cannot name it: rename the file",
            config.display()
        )
    })?;
    if SLURM_OWN_NAMES.contains(&file_name_text) {
        let slurm = Entry::Slurm.name();
        let (last, others) = SLURM_OWN_NAMES.split_last().expect("slurm/ holds files");
        bail!(
            "the config's file name `{file_name_text}` clashes with the run directory's own {slurm}/{file_name_text} ({slurm}/ holds {} and {last}): rename the config, e.g. to {file_name_text}.yaml",
            others.join(", ")
        );
    }
    Ok(file_name)
}

/// Creates the run directory `out` with its config before any task starts (or
/// checks that an existing one was made by the same config), returning its
/// canonical path.
fn make_run_dir(out: &Path, config: &Config, resolved: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(Layout::new(out).slurm_logs())
        .with_context(|| format!("cannot create {}: choose a writable --out", out.display()))?;
    let out = out
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", out.display()))?;
    // Symbolic links may lead somewhere the check before did not see.
    check_out_path(&out)?;
    let layout = Layout::new(&out);
    let resolved_path = layout.config_resolved();
    if resolved_path.exists() {
        if std::fs::read_to_string(&resolved_path)? != resolved {
            bail!(
                "run directory {} was made by a different config: use another --out",
                out.display()
            );
        }
    } else {
        crate::results::write_text(&layout.config(), &config.source_text)?;
        crate::results::write_text(&resolved_path, resolved)?;
    }
    std::fs::create_dir_all(layout.results())?;
    Ok(out)
}

/// Submits the array script with sbatch, printing the job id and how to
/// follow, rerun and merge it.
fn submit(
    args: &SlurmArgs,
    config_name: &str,
    out: &Path,
    script_path: &Path,
    plan_text: &str,
) -> Result<()> {
    let output = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(script_path)
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
    eprint!("{plan_text}");
    eprintln!(
        "submitted array job {job}: {} tasks of {config_name}.\n  follow it:   squeue -j {job}\n  task logs:   {}\n  rerun task i: sbatch --array=i {}\n  when done:   initlab merge {}",
        args.tasks,
        Layout::new(out).slurm_task_log("<i>", "out|.err").display(),
        shell_quote(&script_path.display().to_string()),
        shell_quote(&out.display().to_string())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_quotes(quote: fn(&str) -> String, cases: &[(&str, &str)]) {
        for (text, quoted) in cases {
            assert_eq!(quote(text), *quoted, "quoting {text:?}");
        }
    }

    #[test]
    fn shell_quote_wraps_and_escapes_single_quotes() {
        assert_quotes(
            shell_quote,
            &[
                ("plain", "'plain'"),
                ("", "''"),
                ("it's", "'it'\\''s'"),
                ("$(x) `y` \"z\"", "'$(x) `y` \"z\"'"),
            ],
        );
    }

    #[test]
    fn sbatch_quote_leaves_plain_values_and_quotes_the_rest() {
        assert_quotes(
            sbatch_quote,
            &[
                ("02:00:00", "02:00:00"),
                ("/runs/x/task-%a.out", "/runs/x/task-%a.out"),
                ("/a b/task-%a.out", "\"/a b/task-%a.out\""),
                ("a b", "\"a b\""),
                ("a\"b#c\\d", "\"a\\\"b\\#c\\\\d\""),
            ],
        );
    }

    #[test]
    fn sbatch_text_refuses_newlines_percent_and_empty() {
        for bad in ["a\nb", "a%b", "a\rb", "x\u{7}", "", "  "] {
            let e = check_sbatch_text("--mem", bad, "8G")
                .unwrap_err()
                .to_string();
            assert!(e.contains("--mem") && e.contains("8G"), "{e}");
        }
        check_sbatch_text("--mem", "8G", "8G").unwrap();
    }

    #[test]
    fn comments_stay_on_one_line() {
        assert_eq!(comment_text("a\nrm -rf b"), "a\\nrm -rf b");
    }

    #[test]
    fn log_lines_give_unit_seconds() {
        let log = "2026-01-01T00:00:00Z theory t unit ab12 done (depth 3 (x)) in 1.25s\n\
                   2026-01-01T00:00:01Z resuming: 3 units already done, 2 to run\n\
                   2026-01-01T00:00:02Z variance v unit cd34 done (he w4) in 0.00s\n\
                   2026-01-01T00:00:03Z theory t unit ab12 done (depth 3 (x)) in 2.50s\n\
                   garbage unit ef56 done (x) in NaNs\n";
        let secs = logged_unit_seconds(log);
        assert_eq!(secs.len(), 2);
        assert_eq!(secs["ab12"], 2.5);
        assert_eq!(secs["cd34"], 0.0);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(0.44), "0.4 s");
        assert_eq!(duration_text(3792.0), "1h 3m 12s");
    }
}
