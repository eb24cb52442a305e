//! The sbatch script `initlab slurm` writes, without a cluster: hostile file
//! names run the right paths and execute nothing (the script is run under bash
//! with a stub and with the real binary), values sbatch would misread are
//! refused, the binary is replaced atomically, and the dry run's shard plan
//! matches what the tasks really run.

mod common;
use common::*;
use initlab::cmd::slurm::{logged_unit_seconds, sbatch_quote, shard_plan, shell_quote};
use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A theory sweep of 16 one-unit jobs of unequal cost (depths 1 to 60), each a
/// few milliseconds. Its name is given, since the file names below are not names.
const TINY: &str = "name: hostile\nseed: 1\nkind: theory\nwidth: [2, 10]\ndepth: [1, 5, 20, 60]\nkappa_w: [1.0, 3.0]\nn: 1000\n";

/// Two kinds, for plans whose timings cover only one of them.
const TWO_KINDS: &str = "name: twokinds\nseed: 3\nexperiments:\n  - name: th\n    kind: theory\n    width: 4\n    depth: [2, 8]\n  - name: var\n    kind: variance\n    dataset: synthetic-tiny\n    init: [he_normal, gsm]\n    width: 4\n    depth: [2, 6]\n    networks: 24\n    block: 8\n";

const HOSTILE: &str = "$(touch PWNED)";

/// Every file named PWNED under `dir`, recursively.
fn pwned_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_name() == "PWNED" {
                found.push(path.clone());
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

fn assert_nothing_executed(root: &Path) {
    assert_eq!(pwned_under(root), Vec::<PathBuf>::new(), "a command ran");
    assert!(
        !std::env::temp_dir().join("PWNED").exists(),
        "a command ran in the temporary directory"
    );
}

/// A config and a run directory whose names hold spaces and `$(touch PWNED)`,
/// and a separate working directory for the commands.
struct Hostile {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    out: PathBuf,
    cwd: PathBuf,
}

fn hostile(config_text: &str) -> Hostile {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let config_dir = root.join(format!("configs {HOSTILE}"));
    std::fs::create_dir(&config_dir).unwrap();
    let config = write(
        &config_dir,
        &format!("my sweep {HOSTILE}.yaml"),
        config_text,
    );
    let out = root.join(format!("run dir {HOSTILE}"));
    let cwd = root.join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    Hostile {
        _dir: dir,
        root,
        config,
        out,
        cwd,
    }
}

impl Hostile {
    /// `initlab slurm CONFIG --out OUT --dry-run` in the working directory.
    fn dry_run(&self, extra: &[&str]) -> (String, String) {
        dry_run(&self.cwd, &self.config, &self.out, extra)
    }
}

/// `initlab slurm ... --dry-run` in `cwd`; returns (stdout, stderr).
fn dry_run(cwd: &Path, config: &Path, out: &Path, extra: &[&str]) -> (String, String) {
    let output = initlab()
        .current_dir(cwd)
        .args(["slurm", s(config), "--out", s(out), "--dry-run"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "initlab slurm failed:\n{stderr}");
    (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
}

/// Runs the array script under bash as array task `task`, in `cwd`.
fn run_script(script: &Path, cwd: &Path, task: usize, env: &[(&str, &Path)]) {
    let mut c = Command::new("bash");
    c.arg(script)
        .current_dir(cwd)
        .env("SLURM_ARRAY_TASK_ID", task.to_string())
        .env_remove("SLURM_CPUS_PER_TASK")
        .env("INITLAB_PROGRESS", "0");
    for (k, v) in env {
        c.env(k, v);
    }
    let output = c.output().unwrap();
    assert!(
        output.status.success(),
        "the script failed as task {task}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// sbatch's reading of the argument of an `#SBATCH` line, as its documentation and
/// source describe it: blanks split outside quotes, `'` and `"` quote, a backslash
/// takes the next character literally, an unquoted `#` ends the line.
fn sbatch_reads(arg: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in arg.chars() {
        if escaped {
            escaped = false;
            out.push(c);
        } else if c == '\\' {
            escaped = true;
        } else if Some(c) == quote {
            quote = None;
        } else if quote.is_none() && (c == '"' || c == '\'') {
            quote = Some(c);
        } else if quote.is_none() && (c == '#' || c.is_whitespace()) {
            break;
        } else {
            out.push(c);
        }
    }
    out
}

/// The `#SBATCH --key=value` directives of a script as sbatch reads them.
fn directives(script: &str) -> HashMap<String, String> {
    script
        .lines()
        .filter_map(|l| l.strip_prefix("#SBATCH --"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), sbatch_reads(v)))
        .collect()
}

/// The printed plan's rows: (task, shard, jobs, units).
fn plan_rows(stderr: &str) -> Vec<(usize, String, usize, usize)> {
    stderr
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let task = w.first()?.parse().ok()?;
            let shard = w.get(1).filter(|s| s.contains('/'))?.to_string();
            Some((
                task,
                shard,
                w.get(2)?.parse().ok()?,
                w.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

fn done_lines(out: &Path) -> usize {
    std::fs::read_to_string(out.join("log.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" done ("))
        .count()
}

#[test]
fn shell_quote_round_trips_hostile_strings_through_bash() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = [
        "",
        "plain",
        "it's",
        "''",
        "'\\''",
        "\"double\"",
        "$(touch PWNED)",
        "`touch PWNED`",
        "$HOME ${HOME} $0 $@",
        "a\nb",
        "\n\n",
        "back\\slash\\",
        "; touch PWNED & touch PWNED | cat > PWNED",
        "-n",
        "* ? [a] ~ # ! %a",
        "tab\tcarriage\rreturn",
        "unicode é ✓",
    ];
    for text in hostile {
        let quoted = shell_quote(text);
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {quoted}"))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{quoted}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), text, "{quoted}");
    }
    assert_nothing_executed(dir.path());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    #[test]
    fn shell_quote_round_trips_any_string(text in "[^\u{0}]{0,40}") {
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(&text)))
            .output()
            .unwrap();
        proptest::prop_assert_eq!(String::from_utf8_lossy(&output.stdout), text);
    }

    #[test]
    fn sbatch_quote_round_trips_through_sbatchs_reading(text in "[^\u{0}-\u{1f}%]{0,40}") {
        proptest::prop_assert_eq!(sbatch_reads(&sbatch_quote(&text)), text);
    }
}

#[test]
fn hostile_names_give_the_stub_the_right_paths_and_run_nothing() {
    let h = hostile(TINY);
    let (stdout, _) = h.dry_run(&[
        "--tasks",
        "3",
        "--cpus-per-task",
        "1",
        "--time",
        "0:10:00",
        "--mem",
        "1G",
        "--partition",
        "debug",
    ]);
    let out = h.out.canonicalize().unwrap();
    let script_path = out.join("slurm/array.sbatch");
    let script = std::fs::read_to_string(&script_path).unwrap();
    assert_eq!(stdout, script, "the dry run prints the script it wrote");
    // What sbatch reads from the directives.
    let d = directives(&script);
    assert_eq!(d["job-name"], "initlab-hostile");
    assert_eq!(d["array"], "0-2");
    assert_eq!(
        d["output"],
        format!("{}/slurm/logs/task-%a.out", out.display())
    );
    assert_eq!(
        d["error"],
        format!("{}/slurm/logs/task-%a.err", out.display())
    );
    assert_eq!(d["time"], "0:10:00");
    assert_eq!(d["mem"], "1G");
    assert_eq!(d["partition"], "debug");
    // The copied binary replaced by a stub that records its arguments, NUL-separated.
    let stub = out.join("slurm/initlab");
    std::fs::write(
        &stub,
        "#!/bin/bash\nprintf '%s\\0' \"$@\" > \"$STUB_ARGV\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let argv_file = h.root.join("argv");
    run_script(&script_path, &h.cwd, 1, &[("STUB_ARGV", &argv_file)]);
    let argv = std::fs::read(&argv_file).unwrap();
    let argv: Vec<String> = String::from_utf8(argv)
        .unwrap()
        .split_terminator('\0')
        .map(str::to_string)
        .collect();
    let config_copy = out.join(format!("slurm/my sweep {HOSTILE}.yaml"));
    assert_eq!(
        argv,
        vec![
            "--threads".to_string(),
            "1".into(),
            "run".into(),
            config_copy.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--shard".into(),
            "2/3".into(),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&config_copy).unwrap(),
        TINY,
        "the config copy is the config"
    );
    assert_nothing_executed(&h.root);
}

#[test]
fn hostile_names_run_every_shard_for_real_as_the_plan_says() {
    let h = hostile(TINY);
    let (_, stderr) = h.dry_run(&["--tasks", "3", "--cpus-per-task", "1"]);
    let rows = plan_rows(&stderr);
    assert_eq!(rows.len(), 3, "{stderr}");
    let out = h.out.canonicalize().unwrap();
    let script_path = out.join("slurm/array.sbatch");
    for (task, _, _, units) in &rows {
        let before = done_lines(&out);
        run_script(&script_path, &h.cwd, *task, &[]);
        assert_eq!(
            done_lines(&out) - before,
            *units,
            "task {task} ran the units the plan gave it\n{stderr}"
        );
    }
    let merged = ok(&["merge", s(&out)]);
    assert!(!merged.contains("MISSING"), "{merged}");
    assert_eq!(done_lines(&out), 16);
    assert_nothing_executed(&h.root);
}

/// The options whose values go into `#SBATCH` lines: each with the value the
/// message suggests and values sbatch would misread.
const SBATCH_VALUES: [(&str, &str, &[&str]); 3] = [
    (
        "--partition",
        "gpu",
        &["debug\n#SBATCH --wrap=touch PWNED", "gpu%a"],
    ),
    ("--time", "02:00:00", &["02:00:00\n#SBATCH --wrap=x", "%j"]),
    ("--mem", "8G", &["8G\n", "8%", ""]),
];

/// Runs `initlab slurm --dry-run` with `extra` into `out` and checks the refusal:
/// one message holding every one of `expected`, and `out` not created.
fn assert_misread_refused(
    root: &Path,
    config: &Path,
    extra: &[&str],
    out: &Path,
    expected: &[&str],
) {
    let mut args = vec!["slurm", s(config), "--out", s(out), "--dry-run"];
    if !extra.contains(&"--tasks") {
        args.extend(["--tasks", "2"]);
    }
    args.extend(extra);
    let output = initlab().current_dir(root).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{extra:?} {out:?} was accepted");
    for e in expected {
        assert!(
            stderr.contains(e),
            "{extra:?} {out:?}: `{e}` not in\n{stderr}"
        );
    }
    assert_eq!(stderr.trim().lines().count(), 1, "one message:\n{stderr}");
    assert!(!out.exists(), "{extra:?}: {} was created", out.display());
}

#[test]
fn values_sbatch_would_misread_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let config = write(root, "tiny.yaml", TINY);
    let run_dir = root.join("run");
    for (option, suggested, bad_values) in SBATCH_VALUES {
        for bad in bad_values {
            let what = if bad.is_empty() {
                format!("{option} is empty")
            } else if bad.contains('\n') {
                "a newline".to_string()
            } else {
                "`%`".to_string()
            };
            let suggestion = format!("{option} {suggested}");
            let expected = [option, what.as_str(), suggestion.as_str()];
            assert_misread_refused(root, &config, &[option, bad], &run_dir, &expected);
        }
    }
    for (name, what) in [
        ("out\n#SBATCH --wrap=touch PWNED", "a newline"),
        ("out-%a", "`%`"),
    ] {
        let expected = ["--out", what, "no newline and no %"];
        assert_misread_refused(root, &config, &[], &root.join(name), &expected);
    }
    assert_misread_refused(
        root,
        &config,
        &["--tasks", "17"],
        &run_dir,
        &["--tasks 17", "16 jobs", "use --tasks 16 or fewer"],
    );
    // A config named like the folder's own files would overwrite them.
    std::fs::create_dir(root.join("clash")).unwrap();
    let clash = write(&root.join("clash"), "initlab", TINY);
    let e = fails(&[
        "slurm",
        s(&clash),
        "--tasks",
        "2",
        "--out",
        s(&run_dir),
        "--dry-run",
    ]);
    assert_mentions(&e, &["clashes", "rename the config"]);
    assert!(!run_dir.exists());
    assert_nothing_executed(root);
}

#[test]
fn shard_plan_covers_the_sweep_and_its_makespan_is_the_slowest_task() {
    let config = initlab::config::Config::parse(TINY, "tiny").unwrap();
    let experiments = initlab::experiment::build(&config).unwrap();
    let units: Vec<_> = experiments
        .iter()
        .flat_map(|e| e.jobs())
        .flat_map(|j| j.units)
        .collect();
    for tasks in [1, 3, 5, 16] {
        let plan = shard_plan(&experiments, tasks, &HashMap::new()).unwrap();
        assert_eq!(plan.tasks.len(), tasks);
        assert_eq!(plan.tasks.iter().map(|t| t.units).sum::<usize>(), 16);
        assert_eq!(plan.total_units, 16);
        let cost: f64 = plan.tasks.iter().map(|t| t.cost).sum();
        assert!((cost - plan.total_cost).abs() <= 1e-12 * plan.total_cost);
        assert!(!plan.in_seconds());
        let largest = plan.tasks.iter().map(|t| t.cost).fold(0.0, f64::max);
        assert_eq!(plan.makespan(), largest);
        // Balanced: no task exceeds the ideal share by more than the largest job.
        let biggest_job = units.iter().map(|u| u.cost).fold(0.0, f64::max);
        assert!(largest <= plan.total_cost / tasks as f64 + biggest_job);
    }
    // Every unit timed at 1000 s per unit of cost: estimates in seconds.
    let timings: HashMap<String, f64> =
        units.iter().map(|u| (u.id.clone(), u.cost * 1e3)).collect();
    let plan = shard_plan(&experiments, 3, &timings).unwrap();
    assert!(plan.in_seconds());
    assert_eq!(plan.rates.len(), 1);
    assert!((plan.rates[0].seconds_per_cost - 1e3).abs() < 1e-9);
    for t in &plan.tasks {
        assert!((t.seconds.unwrap() - t.cost * 1e3).abs() <= 1e-9 * t.cost * 1e3);
    }
    let slowest = plan
        .tasks
        .iter()
        .filter_map(|t| t.seconds)
        .fold(0.0, f64::max);
    assert_eq!(plan.makespan(), slowest);
    assert_eq!(plan.slowest().seconds, Some(slowest));

    // Timings of one kind only: no seconds, and the plan says which kind is missing.
    let config = initlab::config::Config::parse(TWO_KINDS, "two").unwrap();
    let experiments = initlab::experiment::build(&config).unwrap();
    let theory_units: HashMap<String, f64> = experiments[0]
        .jobs()
        .into_iter()
        .flat_map(|j| j.units)
        .map(|u| (u.id, 0.5))
        .collect();
    let plan = shard_plan(&experiments, 2, &theory_units).unwrap();
    assert!(!plan.in_seconds());
    assert_eq!(plan.untimed_kinds, vec!["variance".to_string()]);
    let text = plan.render(Path::new("c.yaml"), Path::new("/runs/x"));
    assert!(text.contains("no unit of kind variance is timed"), "{text}");
    assert!(shard_plan(&experiments, 0, &HashMap::new()).is_err());
}

#[test]
fn the_dry_run_prints_every_task_of_the_plan_and_what_it_rests_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "tiny.yaml", TINY);
    let out = dir.path().join("run");
    let (_, stderr) = dry_run(dir.path(), &config, &out, &["--tasks", "5"]);
    let rows = plan_rows(&stderr);
    let experiments =
        initlab::experiment::build(&initlab::config::Config::load(&config).unwrap()).unwrap();
    let plan = shard_plan(&experiments, 5, &HashMap::new()).unwrap();
    assert_eq!(rows.len(), 5, "{stderr}");
    for (row, t) in rows.iter().zip(&plan.tasks) {
        assert_eq!(row, &(t.task, format!("{}/5", t.task + 1), t.jobs, t.units));
    }
    assert_eq!(rows.iter().map(|r| r.3).sum::<usize>(), 16);
    assert!(stderr.contains("predicted makespan: "), "{stderr}");
    assert!(
        stderr.contains("estimates based on: the cost model's relative costs only"),
        "{stderr}"
    );
    let out = out.canonicalize().unwrap();
    assert!(
        stderr.contains(&plan.render(&config, &out)),
        "the printed plan is the function's:\n{stderr}"
    );

    // Once part of the sweep has run, its log turns the estimates into seconds.
    ok(&["run", s(&config), "--out", s(&out)]);
    let log = std::fs::read_to_string(out.join("log.txt")).unwrap();
    let timings = logged_unit_seconds(&log);
    assert_eq!(timings.len(), 16, "every unit's time is read from the log");
    let (_, stderr) = dry_run(dir.path(), &config, &out, &["--tasks", "5"]);
    let plan = shard_plan(&experiments, 5, &timings).unwrap();
    assert!(plan.in_seconds());
    assert!(
        stderr.contains("estimates based on: this sweep's own units timed in"),
        "{stderr}"
    );
    assert!(stderr.contains(&plan.render(&config, &out)), "{stderr}");
}

#[test]
fn the_binary_is_replaced_by_a_rename_while_a_task_still_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "tiny.yaml", TINY);
    let out = dir.path().join("run");
    dry_run(dir.path(), &config, &out, &["--tasks", "2"]);
    let slurm_dir = out.join("slurm");
    let binary = slurm_dir.join("initlab");
    // A task still executing the old binary (here a long sleep in its place).
    std::fs::copy("/bin/sleep", &binary).unwrap();
    let old_inode = std::fs::metadata(&binary).unwrap().ino();
    let mut task = Command::new(&binary).arg("60").spawn().unwrap();
    let rerun = initlab()
        .current_dir(dir.path())
        .args([
            "slurm",
            s(&config),
            "--out",
            s(&out),
            "--tasks",
            "2",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let still_running = task.try_wait().unwrap().is_none();
    task.kill().unwrap();
    task.wait().unwrap();
    assert!(
        rerun.status.success(),
        "replacing a binary in use failed:\n{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert!(still_running, "the running task was disturbed");
    let meta = std::fs::metadata(&binary).unwrap();
    assert_ne!(
        meta.ino(),
        old_inode,
        "a new file, not the old one rewritten"
    );
    assert_eq!(meta.permissions().mode() & 0o111, 0o111, "executable");
    assert_eq!(
        std::fs::read(&binary).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_initlab")).unwrap()
    );
    let mut names: Vec<String> = std::fs::read_dir(&slurm_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["array.sbatch", "initlab", "logs", "tiny.yaml"],
        "no temporary file left"
    );
    // The copy runs.
    let version = Command::new(&binary).arg("--help").output().unwrap();
    assert!(version.status.success());
}
