//! The experiment kinds as resumable sweeps: every kind runs from YAML; the same
//! config gives the same results whatever the ensemble size or sharding; a sweep
//! killed with SIGKILL and rerun finishes with the results of an uninterrupted run.

mod common;
use common::*;
use std::path::Path;

const VARIANCE: &str = "name: v\nseed: 4\nkind: variance\ndataset: synthetic-tiny\ninit: [he_normal, orthogonal, zero_star]\nwidth: 6\ndepth: [3, 8]\nnetworks: 30\nblock: 10\n";
const TRAIN: &str = "name: t\nseed: 4\nkind: train\ndataset: synthetic-tiny\ninit: [he_normal, zero, gsm]\nwidth: 4\ndepth: [1, 3]\nlr: [1.0e-3, 1.0e-2]\nrepeats: 2\nsteps: 12\nbatch_size: 8\neval_steps: [6]\n";
const KURTOSIS: &str = "name: k\nseed: 4\nkind: kurtosis_mc\nwidth: 6\ndepth: 5\nslope: [0.0, 0.3]\nnetworks: 40\nsamples: 32\n";
const STATS: &str = "name: s\nseed: 4\nkind: input_stats\ndataset: synthetic-tiny\nsamples: 200000\nweights: [normal, uniform]\n";

fn run_config(dir: &Path, name: &str, text: &str, extra: &[&str]) -> std::path::PathBuf {
    let cfg = write(dir, &format!("{name}.yaml"), text);
    let out = dir.join(name);
    let mut args = vec!["run", s(&cfg), "--out", s(&out)];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

#[test]
fn every_kind_runs_from_yaml_with_tidy_columns() {
    let dir = tempfile::tempdir().unwrap();
    let v = results(
        &run_config(dir.path(), "v", VARIANCE, &[]),
        &["init", "depth", "network", "layer"],
    );
    assert_eq!(v.height(), 3 * 30 * (4 + 9));
    for c in [
        "init",
        "width",
        "depth",
        "layer",
        "network",
        "seed",
        "emp_var",
        "emp_mean",
        "work_unit",
    ] {
        assert!(v.column(c).is_ok(), "variance lacks {c}");
    }
    let t = results(
        &run_config(dir.path(), "t", TRAIN, &[]),
        &["init", "depth", "lr", "repeat"],
    );
    assert_eq!(t.height(), 3 * 2 * 2 * 2);
    for c in [
        "init",
        "width",
        "depth",
        "lr",
        "repeat",
        "test_acc",
        "test_loss",
        "diverged",
        "theory_kurtosis",
        "train_loss",
        "eval_acc",
    ] {
        assert!(t.column(c).is_ok(), "train lacks {c}");
    }
    // the theoretical kurtosis is stored beside He runs only
    let inits = str_column(&t, "init");
    let theory = t.column("theory_kurtosis").unwrap().f64().unwrap().clone();
    for (i, init) in inits.iter().enumerate() {
        assert_eq!(theory.get(i).is_some(), init == "he_normal", "{init}");
    }
    let k = results(
        &run_config(dir.path(), "k", KURTOSIS, &[]),
        &["slope", "layer"],
    );
    assert_eq!(k.height(), 2 * 6);
    let st = results(&run_config(dir.path(), "s", STATS, &[]), &["weights"]);
    assert_eq!(st.height(), 2);
    // one config can hold a whole study
    let study = format!(
        "name: study\nseed: 2\nexperiments:\n  - kind: theory\n    width: 4\n    depth: 3\n  - kind: kurtosis_mc\n    width: 4\n    depth: 2\n    networks: 10\n    samples: 8\n"
    );
    let out = run_config(dir.path(), "study", &study, &[]);
    assert!(out.join("results/1-theory").is_dir() && out.join("results/2-kurtosis_mc").is_dir());
}

#[test]
fn results_do_not_depend_on_ensemble_size_or_sharding() {
    let dir = tempfile::tempdir().unwrap();
    // The last element: a memory budget (GiB) that holds one member of the
    // config's largest shape but not two of its smallest, so ensembles of one.
    for (name, text, keys, value, one_member) in [
        (
            "v",
            VARIANCE,
            vec!["init", "depth", "network", "layer"],
            "emp_var",
            "0.0006",
        ),
        (
            "t",
            TRAIN,
            vec!["init", "depth", "lr", "repeat"],
            "test_loss",
            "0.00001",
        ),
    ] {
        // (timings aside)
        let strip = |df: polars::prelude::DataFrame| {
            if df.column("seconds").is_ok() {
                df.drop("seconds").unwrap()
            } else {
                df
            }
        };
        let reference = strip(results(
            &run_config(dir.path(), &format!("{name}-a"), text, &[]),
            &keys,
        ));
        let same = strip(results(
            &run_config(dir.path(), &format!("{name}-b"), text, &[]),
            &keys,
        ));
        assert!(
            reference.equals_missing(&same),
            "{name}: the same config gave different results"
        );
        // a budget of one member forces one-network ensembles
        let small = results(
            &run_config(
                dir.path(),
                &format!("{name}-c"),
                text,
                &["--memory-gb", one_member],
            ),
            &keys,
        );
        let (a, b) = (f64_column(&reference, value), f64_column(&small, value));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-4 * x.abs().max(1e-12),
                "{name}: {value} {x} vs {y} with another ensemble size"
            );
        }
        // three shards into one directory make up the whole sweep, each unit once
        let cfg = write(dir.path(), &format!("{name}.yaml"), text);
        let out = dir.path().join(format!("{name}-shards"));
        for i in 1..=3 {
            let e = run(&[
                "run",
                s(&cfg),
                "--out",
                s(&out),
                "--shard",
                &format!("{i}/3"),
            ]);
            assert!(e.status.success());
            assert!(String::from_utf8_lossy(&e.stderr).contains(&format!("shard {i}/3")));
        }
        let sharded = results(&out, &keys);
        assert_eq!(sharded.height(), reference.height());
        let (a, b) = (f64_column(&reference, value), f64_column(&sharded, value));
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-4 * x.abs().max(1e-12),
                "{name}: sharded {x} vs {y}"
            );
        }
    }
    let e = fails(&["run", s(&dir.path().join("v.yaml")), "--shard", "4/3"]);
    assert!(e.contains("--shard"), "{e}");
}

#[test]
fn a_killed_sweep_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    // Enough units that a kill lands half-way: 24 blocks of width-10 networks.
    let text = "name: kill\nseed: 9\nkind: variance\ndataset: synthetic-small\ninit: [he_normal, glorot_normal]\nwidth: 10\ndepth: 40\nnetworks: 240\nblock: 20\n";
    let cfg = write(dir.path(), "kill.yaml", text);
    let killed = dir.path().join("killed");
    let mut child = initlab()
        .args(["run", s(&cfg), "--out", s(&killed)])
        .spawn()
        .unwrap();
    // wait until a few shards are written, then SIGKILL
    let shards = |d: &Path| {
        initlab::results::parquet_files(&d.join("results"))
            .map(|f| f.len())
            .unwrap_or(0)
    };
    let start = std::time::Instant::now();
    while shards(&killed) < 3 {
        assert!(start.elapsed().as_secs() < 300, "no progress");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("finished before it could be killed ({status}); make the sweep longer");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = shards(&killed);
    assert!(partial < 24, "killed half-way, found {partial} shards");
    let rerun = run(&["run", s(&cfg), "--out", s(&killed)]);
    assert!(rerun.status.success());
    let err = String::from_utf8_lossy(&rerun.stderr);
    assert!(err.contains(&format!("{partial} already done")), "{err}");
    let keys = ["init", "network", "layer"];
    let resumed = results(&killed, &keys);
    let whole = results(&run_config(dir.path(), "whole", text, &[]), &keys);
    assert_eq!(resumed.height(), 2 * 240 * 41);
    assert!(
        resumed
            .drop("work_unit")
            .unwrap()
            .equals_missing(&whole.drop("work_unit").unwrap())
            || {
                let (a, b) = (
                    f64_column(&resumed, "emp_var"),
                    f64_column(&whole, "emp_var"),
                );
                a.iter()
                    .zip(&b)
                    .all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(1e-30))
            }
    );
    // no temporary file survives, and the log says a resume happened
    let names: Vec<String> = std::fs::read_dir(killed.join("results/kill"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.ends_with(".parquet") || n.ends_with(".part")),
        "{names:?}"
    );
    assert!(
        std::fs::read_to_string(killed.join("log.txt"))
            .unwrap()
            .contains("resuming")
    );
}
