//! Sweeps across machines: shards run by hand and merged, and (where a SLURM
//! cluster answers, as in CI where .ci/run starts one) an array job submitted with
//! `initlab slurm`, merged, and compared with a single-machine run.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const SWEEP: &str = "name: spread\nseed: 12\nexperiments:\n  - name: var\n    kind: variance\n    dataset: synthetic-tiny\n    init: [he_normal, gsm]\n    width: 4\n    depth: [2, 6]\n    networks: 24\n    block: 8\n  - name: fit\n    kind: train\n    dataset: synthetic-tiny\n    init: [he_normal, zero]\n    width: 4\n    depth: [1, 2, 4]\n    repeats: 2\n    steps: 10\n    batch_size: 8\n";

fn same_results(a: &Path, b: &Path) {
    for (exp, keys, value) in [
        ("var", vec!["init", "depth", "network", "layer"], "emp_var"),
        ("fit", vec!["init", "depth", "repeat"], "test_loss"),
    ] {
        let load = |d: &Path| {
            let df = initlab::results::read_all(&d.join("results").join(exp)).unwrap();
            df.sort(
                keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                Default::default(),
            )
            .unwrap()
        };
        assert_column_agrees(&load(a), &load(b), value, exp);
    }
}

#[test]
fn shards_by_hand_merge_into_the_single_machine_result() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "spread.yaml", SWEEP);
    let single = dir.path().join("single");
    ok(&["run", s(&cfg), "--out", s(&single)]);
    let parts: Vec<_> = (1..=3)
        .map(|i| dir.path().join(format!("part{i}")))
        .collect();
    for (i, p) in parts.iter().enumerate() {
        ok(&[
            "run",
            s(&cfg),
            "--out",
            s(p),
            "--shard",
            &format!("{}/3", i + 1),
        ]);
    }
    let merged = dir.path().join("merged");
    // two of three parts: the merge says what is missing and fails
    let out = run(&["merge", s(&parts[0]), s(&parts[1]), "--out", s(&merged)]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_mentions(&text, &["MISSING", "missing:"]);
    // all three: complete, equal to the single-machine run
    let text = ok(&[
        "merge",
        s(&parts[0]),
        s(&parts[1]),
        s(&parts[2]),
        "--out",
        s(&merged),
    ]);
    assert!(!text.contains("MISSING"), "{text}");
    same_results(&single, &merged);
    let meta = read_json(&merged.join("metadata.json"));
    assert_eq!(meta["invocations"].as_array().unwrap().len(), 3);
    // a part counted twice is reported as duplicated, not double-counted
    let dup = ok(&[
        "merge",
        s(&parts[0]),
        s(&parts[0]),
        s(&parts[1]),
        s(&parts[2]),
        "--out",
        s(&dir.path().join("dup")),
    ]);
    assert!(dup.contains("duplicated"), "{dup}");
    same_results(&single, &dir.path().join("dup"));
    // shards of another config are refused
    let other_cfg = write(
        dir.path(),
        "other.yaml",
        &SWEEP.replace("seed: 12", "seed: 13"),
    );
    let other = dir.path().join("other");
    ok(&["run", s(&other_cfg), "--out", s(&other), "--shard", "1/3"]);
    let e = fails(&[
        "merge",
        s(&parts[0]),
        s(&other),
        "--out",
        s(&dir.path().join("mixed")),
    ]);
    assert!(e.contains("different configs"), "{e}");
    assert!(!dir.path().join("mixed").exists());
}

fn slurm_available() -> bool {
    std::process::Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("idle"))
        .unwrap_or(false)
}

fn wait_for_job(job: &str) {
    let start = Instant::now();
    loop {
        let q = std::process::Command::new("squeue")
            .args(["-h", "-j", job])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "job {job} still queued after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn slurm_array_job_merges_into_the_single_machine_result() {
    if !present_or_skip(
        slurm_available(),
        "a SLURM cluster",
        ".ci/slurm-up.sh starts a one-node one",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "spread.yaml", SWEEP);
    let single = dir.path().join("single");
    ok(&["run", s(&cfg), "--out", s(&single)]);
    let out = dir.path().join("array");
    let job = ok(&[
        "slurm",
        s(&cfg),
        "--tasks",
        "3",
        "--cpus-per-task",
        "1",
        "--out",
        s(&out),
    ])
    .trim()
    .to_string();
    assert!(
        job.chars().all(|c| c.is_ascii_digit()) && !job.is_empty(),
        "job id: {job}"
    );
    wait_for_job(&job);
    for i in 0..3 {
        let log = out.join(format!("slurm/logs/task-{i}.err"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains(&format!("shard {}/3", i + 1)),
            "task {i} log: {text}"
        );
    }
    // a task resubmitted alone (after a failure or preemption) resumes its shard:
    // here everything is done, so it recomputes nothing
    let before = initlab::results::parquet_files(&out.join("results"))
        .unwrap()
        .len();
    assert_eq!(
        std::fs::read_to_string(out.join("log.txt"))
            .unwrap()
            .lines()
            .filter(|l| l.contains(" done "))
            .count(),
        24 / 8 * 4 + 12
    );
    let script = out.join("slurm/array.sbatch");
    let metas: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("metadata-shard-2-of-3")
        })
        .collect();
    assert_eq!(metas.len(), 1, "each task keeps its own metadata");
    let resub = std::process::Command::new("sbatch")
        .args(["--parsable", "--array=1", s(&script)])
        .output()
        .unwrap();
    assert!(resub.status.success());
    wait_for_job(String::from_utf8_lossy(&resub.stdout).trim());
    assert_eq!(
        initlab::results::parquet_files(&out.join("results"))
            .unwrap()
            .len(),
        before,
        "the rerun task resumed: nothing was recomputed"
    );
    let text = ok(&["merge", s(&out)]);
    assert!(!text.contains("MISSING"), "{text}");
    same_results(&single, &out);
}
