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

#[test]
fn every_kind_runs_from_yaml_with_tidy_columns() {
    let dir = tempfile::tempdir().unwrap();
    let v = results(
        &run_config(dir.path(), "v", VARIANCE, &[]),
        &["init", "depth", "network", "layer"],
    );
    assert_eq!(v.height(), 3 * 30 * (4 + 9));
    assert_has_columns(
        &v,
        "variance",
        &[
            "init",
            "width",
            "depth",
            "layer",
            "network",
            "seed",
            "emp_var",
            "emp_mean",
            "work_unit",
        ],
    );
    let t = results(
        &run_config(dir.path(), "t", TRAIN, &[]),
        &["init", "depth", "lr", "repeat"],
    );
    assert_eq!(t.height(), 3 * 2 * 2 * 2);
    assert_has_columns(
        &t,
        "train",
        &[
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
        ],
    );
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
    let study = "name: study\nseed: 2\nexperiments:\n  - kind: theory\n    width: 4\n    depth: 3\n  - kind: kurtosis_mc\n    width: 4\n    depth: 2\n    networks: 10\n    samples: 8\n".to_string();
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
        assert_column_agrees(
            &reference,
            &small,
            value,
            &format!("{name} with ensembles of one"),
        );
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
        assert_column_agrees(&reference, &sharded, value, &format!("{name} in shards"));
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

/// The kurtosis knobs beside He's normal law, and their κ_w by the closed forms:
/// Laplace 6, a Gaussian kept with p = 1/4 is 3/p = 12.
const KNOBS: &str = "[he_normal, {name: he_gennorm, beta: 1}, {name: he_sparse, p: 0.25}]";

fn expected_kw(init: &str) -> f64 {
    match init {
        "he_normal" => 3.0,
        "he_gennorm" => 6.0,
        "he_sparse" => 12.0,
        other => panic!("unexpected init {other}"),
    }
}

fn recursion(
    width: usize,
    depth: usize,
    kappa_w: f64,
    kappa0: f64,
    c0: f64,
) -> Vec<initlab::theory::LayerMoments> {
    initlab::theory::kurtosis_recursion(&initlab::theory::RecursionInput {
        widths: vec![width; depth],
        slope: 0.0,
        kappa_w,
        kappa0,
        c0,
    })
    .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// Runs an experiment of the knobs (`keys`, one a line, without `init`) and
/// returns its results sorted by `by`.
fn run_knobs(dir: &Path, name: &str, keys: &str, by: &[&str]) -> polars::prelude::DataFrame {
    let text = format!("name: {name}\nseed: 2\n{keys}\ninit: {KNOBS}\n");
    results(&run_config(dir, name, &text, &[]), by)
}

/// Each knob's κ_w in the results' `kappa_w` column.
fn assert_kappa_w(df: &polars::prelude::DataFrame) {
    for (init, got) in str_column(df, "init").iter().zip(f64_column(df, "kappa_w")) {
        let kw = expected_kw(init);
        assert!(close(got, kw), "{init}: κ_w {got}, expected {kw}");
    }
}

#[test]
fn the_kurtosis_knobs_carry_their_kappa_w_into_the_training_and_variance_theory() {
    let dir = tempfile::tempdir().unwrap();
    // train: κ_w, and the output kurtosis from it and the input's κ₀, c₀
    let train = "kind: train\ndataset: synthetic-tiny\nwidth: 4\ndepth: 3\nsteps: 2\nbatch_size: 8";
    let t = run_knobs(dir.path(), "t", train, &["init"]);
    assert_kappa_w(&t);
    let inputs: std::collections::BTreeMap<String, (f64, f64)> = str_column(&t, "init")
        .into_iter()
        .zip(
            f64_column(&t, "kappa0")
                .into_iter()
                .zip(f64_column(&t, "c0")),
        )
        .collect();
    for (init, theory) in str_column(&t, "init")
        .iter()
        .zip(f64_column(&t, "theory_kurtosis"))
    {
        let (k0, c0) = inputs[init];
        assert!(
            close(
                theory,
                recursion(4, 3, expected_kw(init), k0, c0)[3].kurtosis
            ),
            "{init}: {theory}"
        );
    }
    // the input's κ₀ depends on κ_w (E[z⁴|x] ∝ 3‖x‖⁴ + (κ_w − 3)Σx⁴), so each law has its own
    assert!(inputs["he_gennorm"].0 > inputs["he_normal"].0);
    assert!(inputs["he_sparse"].0 > inputs["he_gennorm"].0);

    // variance: the kurtosis per layer as in training (same input), and the
    // variance quantiles from it
    let variance = "kind: variance\ndataset: synthetic-tiny\nwidth: 4\ndepth: 3\nnetworks: 3";
    let v = run_knobs(dir.path(), "v", variance, &["init", "network", "layer"]);
    let (v_inits, v_layers) = (str_column(&v, "init"), i64_column(&v, "layer"));
    let mut q90_last = std::collections::BTreeMap::new();
    for (i, init) in v_inits.iter().enumerate() {
        let (k0, c0) = inputs[init];
        let l = v_layers[i] as usize;
        let want = recursion(4, 3, expected_kw(init), k0, c0)[l].kurtosis;
        assert!(
            close(f64_column(&v, "theory_kurtosis")[i], want),
            "{init} layer {l}"
        );
        let q: Vec<f64> = [
            "theory_var_q50",
            "theory_var_q90",
            "theory_var_q99",
            "theory_var_q999",
        ]
        .iter()
        .map(|c| f64_column(&v, c)[i])
        .collect();
        assert!(
            q.iter().all(|x| x.is_finite()) && q.windows(2).all(|w| w[0] < w[1]),
            "{init}: {q:?}"
        );
        if l == 3 {
            q90_last.insert(init.clone(), q[1]);
        }
    }
    // a heavier-tailed law spreads the empirical variance more: its 0.9 quantile
    // at the output moves with κ_w (the variance itself is He's for all three)
    assert_ne!(q90_last["he_normal"], q90_last["he_gennorm"]);
    assert_ne!(q90_last["he_gennorm"], q90_last["he_sparse"]);
}

#[test]
fn the_kurtosis_knobs_carry_their_kappa_w_into_the_kurtosis_mc_theory() {
    // the recursion from Gaussian inputs (κ₀ = 3, c₀ = 0)
    let dir = tempfile::tempdir().unwrap();
    let kurtosis_mc = "kind: kurtosis_mc\nwidth: 5\ndepth: 3\nnetworks: 4\nsamples: 8";
    let k = run_knobs(dir.path(), "k", kurtosis_mc, &["init", "layer"]);
    assert_kappa_w(&k);
    let (k_inits, layers) = (str_column(&k, "init"), i64_column(&k, "layer"));
    assert_eq!(k_inits.len(), 3 * 4);
    for (i, init) in k_inits.iter().enumerate() {
        let want = recursion(5, 3, expected_kw(init), 3.0, 0.0)[layers[i] as usize];
        assert!(
            close(f64_column(&k, "theory_kurtosis")[i], want.kurtosis),
            "{init}"
        );
        assert!(
            close(f64_column(&k, "theory_cov_sq")[i], want.cov_sq),
            "{init}"
        );
    }
}
