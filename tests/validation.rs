//! Bad input is refused before any work: every hyper-parameter that can be NaN,
//! infinite or out of range, a leaky-ReLU slope the networks do not support, and
//! a network too large for the memory budget each get one message naming the key
//! (or the sizes), a non-zero exit, and no run directory, whatever ran before it
//! in the config.

mod common;
use common::*;
use std::path::Path;

/// A study whose first experiment is fine (the theory, instant) and whose second
/// is `bad` (an experiment's keys, indented as in a list item). Had anything run
/// before the refusal, the first experiment's results would keep the run
/// directory in place.
fn after_a_fine_experiment(bad: &str) -> String {
    format!(
        "name: study\nseed: 1\nexperiments:\n  - name: fine\n    kind: theory\n    width: 4\n    depth: 3\n  - name: bad\n{bad}"
    )
}

/// Runs `text` as a config into a fresh `--out` and checks the refusal: non-zero
/// exit, one error line containing `expected`, and no run directory left.
fn assert_refused(dir: &Path, case: &str, text: &str, extra: &[&str], expected: &str) {
    assert_refused_with(dir, case, text, extra, &[expected]);
}

/// As [`assert_refused`], with several fragments that must all be in the message.
fn assert_refused_with(dir: &Path, case: &str, text: &str, extra: &[&str], expected: &[&str]) {
    let cfg = write(dir, &format!("{case}.yaml"), text);
    let out = dir.join(format!("{case}-out"));
    let mut args = vec!["run", s(&cfg), "--out", s(&out)];
    args.extend_from_slice(extra);
    let result = run(&args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "{case}: should have been refused, but ran:\n{stderr}"
    );
    for fragment in expected {
        assert!(
            stderr.contains(fragment),
            "{case}: expected `{fragment}` in:\n{stderr}"
        );
    }
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "{case}: one clear error line, got:\n{stderr}"
    );
    assert!(
        !out.exists(),
        "{case}: no run directory may be left (a unit ran or the refusal came late)"
    );
}

/// A variance experiment on synthetic data with extra keys.
fn variance(extra: &str) -> String {
    format!(
        "    kind: variance\n    dataset: synthetic-tiny\n    width: 4\n    depth: 2\n    networks: 3\n{extra}"
    )
}

/// A train experiment on synthetic data with extra keys.
fn train(extra: &str) -> String {
    format!(
        "    kind: train\n    dataset: synthetic-tiny\n    depth: 2\n    steps: 2\n    batch_size: 8\n{extra}"
    )
}

#[test]
fn negative_and_non_finite_slopes_are_refused_for_networks_and_0_2_trains() {
    let dir = tempfile::tempdir().unwrap();
    // Width 32 and 200 train on the wide path, whose derivative (from the output's
    // sign) would be wrong for a negative slope; width 10 on the narrow kernel.
    let cases: [(&str, String, &str); 10] = [
        (
            "train_width_32_slope_minus_0_1",
            train("    init: he_normal\n    width: 32\n    slope: -0.1\n"),
            "`slope` (the leaky ReLU's negative slope) must be a finite number in [0, 1] for networks, got -0.1",
        ),
        (
            "train_width_200_slope_minus_0_1",
            train("    init: he_normal\n    width: 200\n    slope: -0.1\n"),
            "must be a finite number in [0, 1] for networks, got -0.1",
        ),
        (
            "train_width_10_slope_minus_0_5",
            train("    init: he_normal\n    width: 10\n    slope: -0.5\n"),
            "`slope`",
        ),
        (
            "train_slope_nan",
            train("    init: he_normal\n    width: 32\n    slope: .nan\n"),
            "`slope` (the leaky ReLU's negative slope) must be a finite number in [0, 1] for networks, got NaN",
        ),
        (
            "train_slope_inf",
            train("    init: he_normal\n    width: 32\n    slope: .inf\n"),
            "got inf",
        ),
        (
            "train_slope_above_1",
            train("    init: he_normal\n    width: 32\n    slope: 1.5\n"),
            "`slope`",
        ),
        (
            "variance_width_32_slope_minus_0_1",
            variance("    init: he_normal\n    slope: -0.1\n").replace("width: 4", "width: 32"),
            "`slope`",
        ),
        (
            "variance_slope_minus_inf",
            variance("    init: he_normal\n    slope: -.inf\n"),
            "got -inf",
        ),
        (
            "kurtosis_mc_slope_minus_0_3",
            "    kind: kurtosis_mc\n    width: 6\n    depth: 3\n    networks: 4\n    samples: 8\n    slope: -0.3\n".to_string(),
            "`slope`",
        ),
        (
            "kurtosis_mc_slope_nan",
            "    kind: kurtosis_mc\n    width: 6\n    depth: 3\n    networks: 4\n    samples: 8\n    slope: .nan\n".to_string(),
            "got NaN",
        ),
    ];
    for (case, bad, expected) in &cases {
        assert_refused(
            dir.path(),
            case,
            &after_a_fine_experiment(bad),
            &[],
            expected,
        );
    }

    // A slope in [0, 1] still trains, on the wide path too.
    let cfg = write(
        dir.path(),
        "ok.yaml",
        "name: ok\nseed: 3\nkind: train\ndataset: synthetic-tiny\ninit: he_normal\nwidth: [32, 200]\ndepth: 2\nslope: 0.2\nsteps: 3\nbatch_size: 8\n",
    );
    let out = dir.path().join("ok-out");
    ok(&["run", s(&cfg), "--out", s(&out)]);
    let df = results(&out, &["width"]);
    assert_eq!(i64_column(&df, "width"), vec![32, 200]);
    assert_eq!(f64_column(&df, "slope"), vec![0.2, 0.2]);
    for loss in f64_column(&df, "test_loss") {
        assert!(loss.is_finite(), "test loss {loss}");
    }
}

#[test]
fn the_theory_takes_slopes_from_minus_one_to_one() {
    // The recursion depends on the slope only through a² and a⁴, so negative
    // slopes are exact there; beyond |a| = 1 the paper says nothing.
    let table = ok(&["theory", "--width", "10", "--depth", "3", "--slope", "-1"]);
    assert_eq!(table.lines().count(), 1 + 4, "{table}");
    for (slope, expected) in [
        (
            "-1.5",
            "`slope` must be a finite number in [-1, 1], got -1.5",
        ),
        ("1.01", "got 1.01"),
        ("NaN", "got NaN"),
    ] {
        let e = fails(&["theory", "--width", "10", "--depth", "3", "--slope", slope]);
        assert!(e.contains(expected), "--slope {slope}: {e}");
    }
    // A depth whose table could not be held is refused before it is built.
    let e = fails(&["theory", "--width", "10", "--depth", "10000000000000"]);
    assert!(e.contains("`depth` must be at most 1000000"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    assert_refused(
        dir.path(),
        "theory_slope_minus_2",
        &after_a_fine_experiment("    kind: theory\n    width: 4\n    depth: 3\n    slope: -2\n"),
        &[],
        "`slope` must be a finite number in [-1, 1], got -2",
    );
}

#[test]
fn bad_hyper_parameters_are_refused_by_name_before_any_unit() {
    let dir = tempfile::tempdir().unwrap();
    let kurtosis =
        "    kind: kurtosis_mc\n    width: 6\n    depth: 3\n    networks: 4\n    samples: 8\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "orthogonal_gain_nan",
            variance("    init: {name: orthogonal, gain: .nan}\n"),
            "initialiser `orthogonal`: `gain` must be a finite number > 0, got NaN",
        ),
        (
            "orthogonal_gain_inf",
            variance("    init: {name: orthogonal, gain: .inf}\n"),
            "`gain` must be a finite number > 0, got inf",
        ),
        (
            "orthogonal_gain_negative",
            train("    width: 4\n    init: {orthogonal: {gain: -1.0}}\n"),
            "`gain` must be a finite number > 0, got -1",
        ),
        (
            "metainit_lr_nan",
            variance("    init: {name: metainit, lr: .nan}\n"),
            "initialiser `metainit`: `lr` must be a finite number > 0, got NaN",
        ),
        (
            "metainit_lr_zero",
            train("    width: 4\n    init: {name: metainit, lr: 0}\n"),
            "`lr` must be a finite number > 0, got 0",
        ),
        (
            "metainit_momentum_1",
            variance("    init: {name: metainit, momentum: 1.0}\n"),
            "`momentum` must be a finite number in [0, 1), got 1",
        ),
        (
            "metainit_momentum_nan",
            variance("    init: {name: metainit, momentum: .nan}\n"),
            "`momentum` must be a finite number in [0, 1), got NaN",
        ),
        (
            "metainit_eps_zero",
            variance("    init: {name: metainit, eps: 0.0}\n"),
            "`eps` must be a finite number > 0, got 0",
        ),
        (
            "metainit_eps_inf",
            variance("    init: {name: metainit, eps: .inf}\n"),
            "`eps` must be a finite number > 0, got inf",
        ),
        (
            "metainit_batch_zero",
            variance("    init: {name: metainit, batch: 0, steps: 2}\n"),
            "initialiser `metainit`: `batch` must be at least 1, got 0",
        ),
        (
            "metainit_steps_zero",
            variance("    init: {name: metainit, steps: 0}\n"),
            "`steps` must be at least 1, got 0",
        ),
        (
            "metainit_with_layer_norm",
            variance("    init: {name: metainit, steps: 2}\n    norm: layer\n"),
            "metainit is defined here for networks without normalisation layers: use `norm: none` (got `norm: layer`)",
        ),
        (
            "metainit_with_batch_norm_in_train",
            train("    width: 4\n    init: {name: metainit, steps: 2}\n    norm: batch\n"),
            "use `norm: none` (got `norm: batch`)",
        ),
        (
            "metainit_max_restarts_huge",
            variance("    init: {name: metainit, max_restarts: 1000000000}\n"),
            "`max_restarts` must be at most 1000",
        ),
        (
            "lsuv_batch_1",
            variance("    init: {name: lsuv, batch: 1}\n"),
            "initialiser `lsuv`: `batch` must be at least 2, got 1",
        ),
        (
            "lsuv_tolerance_nan",
            variance("    init: {name: lsuv, tolerance: .nan}\n"),
            "`tolerance` must be a finite number > 0, got NaN",
        ),
        (
            "lsuv_max_iterations_zero",
            variance("    init: {name: lsuv, max_iterations: 0}\n"),
            "`max_iterations` must be at least 1, got 0",
        ),
        (
            "lsuv_with_layer_norm_in_train",
            train("    width: 4\n    init: lsuv\n    norm: layer\n"),
            "lsuv is defined here for networks without normalisation layers",
        ),
        (
            "he_gennorm_without_beta",
            train("    width: 4\n    init: [he_normal, he_gennorm]\n"),
            "initialiser `he_gennorm` needs `beta` (the shape: 2 normal, 1 Laplace, larger towards uniform): write it as `{name: he_gennorm, beta: 1.0}`",
        ),
        (
            "he_gennorm_beta_too_small",
            variance("    init: {name: he_gennorm, beta: 0.01}\n"),
            "initialiser `he_gennorm`: `beta` must be a finite number in [0.1, 100], got 0.01 (below 0.1",
        ),
        (
            "he_gennorm_beta_nan",
            format!("{kurtosis}    init: {{name: he_gennorm, beta: .nan}}\n"),
            "`beta` must be a finite number in [0.1, 100], got NaN",
        ),
        (
            "he_sparse_without_p",
            variance("    init: {he_sparse: {}}\n"),
            "initialiser `he_sparse` needs `p` (the probability that a weight is kept): write it as `{name: he_sparse, p: 0.5}`",
        ),
        (
            "he_sparse_p_zero",
            train("    width: 4\n    init: {name: he_sparse, p: 0}\n"),
            "initialiser `he_sparse`: `p` must be a finite number in (0, 1], got 0",
        ),
        (
            "he_sparse_p_above_1",
            variance("    init: {name: he_sparse, p: 1.5}\n"),
            "`p` must be a finite number in (0, 1], got 1.5",
        ),
        (
            "train_steps_zero",
            train("    width: 4\n    init: he_normal\n").replace("steps: 2", "steps: 0"),
            "`steps` must be at least 1, got 0",
        ),
        (
            "train_lr_inf",
            train("    width: 4\n    init: he_normal\n    lr: .inf\n"),
            "`lr` must be a finite number > 0, got inf",
        ),
        (
            "train_repeats_huge",
            train("    width: 4\n    init: he_normal\n    repeats: 1000000000\n"),
            "`repeats` must be at most 100000",
        ),
        (
            "variance_networks_in_too_many_blocks",
            variance("    init: he_normal\n    block: 1\n")
                .replace("networks: 3", "networks: 1000000000000"),
            "makes 1000000000000 work units, more than the 100000",
        ),
        (
            "kurtosis_mc_gsm_odd_width",
            format!("{kurtosis}    init: gsm\n").replace("width: 6", "width: 5"),
            "gsm needs even sizes",
        ),
        (
            "theory_depth_beyond_any_table",
            "    kind: theory\n    width: 4\n    depth: 10000000000000\n".to_string(),
            "`depth` must be at most 1000000 (the table has a row per layer), got 10000000000000",
        ),
        (
            "input_stats_samples_huge",
            "    kind: input_stats\n    dataset: synthetic-tiny\n    samples: 1000000000000000000\n"
                .to_string(),
            "`samples` must be at most 100000000000",
        ),
        (
            // (networks: 0 too, so that code which expands a sweep before counting
            // it fails fast rather than building 101,000 points)
            "sweep_of_too_many_points",
            format!(
                "    kind: variance\n    dataset: synthetic-tiny\n    init: he_normal\n    networks: 0\n    width: [{}]\n    depth: [{}]\n",
                (1..=101).map(|w| w.to_string()).collect::<Vec<_>>().join(", "),
                (0..1000).map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
            "the sweep's lists multiply out to 101000 points, more than the 100000",
        ),
    ];
    assert!(cases.len() >= 25);
    for (case, bad, expected) in &cases {
        assert_refused(
            dir.path(),
            case,
            &after_a_fine_experiment(bad),
            &[],
            expected,
        );
    }
    // The same refusals when the bad experiment is the config's only one.
    for (case, bad, expected) in cases.iter().take(3) {
        let single = format!("name: single\n{}", bad.replace("\n    ", "\n").trim_start());
        assert_refused(dir.path(), &format!("{case}_alone"), &single, &[], expected);
    }
}

#[test]
fn a_network_beyond_the_memory_budget_is_refused_before_any_unit() {
    let dir = tempfile::tempdir().unwrap();
    // The tiny variance network needs about half a MiB; the budget is 0.0001 GiB.
    let tiny_budget = ["--memory-gb", "0.0001"];
    let cases: [(&str, String, &[&str], &[&str]); 5] = [
        (
            "variance_member_beyond_a_tiny_budget",
            variance("    init: he_normal\n"),
            &tiny_budget,
            &[
                "one network of `he_normal` width 4 depth 2 on synthetic-tiny needs about 481.6 KiB (493176 bytes)",
                "more than the memory budget of 104.9 KiB (107374 bytes)",
                "--memory-gb",
            ],
        ),
        (
            "train_width_a_million",
            train("    init: he_normal\n    width: 1000000\n").replace("depth: 2", "depth: 3"),
            &["--memory-gb", "1"],
            &[
                "one network of `he_normal` width 1000000 depth 3 on synthetic-tiny (batch_size 8) needs about 36.4 TiB (40001348003296 bytes)",
                "memory budget of 1.0 GiB (1073741824 bytes)",
                "smaller width, depth or batch_size",
            ],
        ),
        (
            "metainit_batch_beyond_the_budget",
            variance("    init: {name: metainit, batch: 100000000000, steps: 1}\n"),
            &["--memory-gb", "1"],
            &[
                "one network of `metainit` width 4 depth 2 on synthetic-tiny needs about 244.5 TiB (268800000496488 bytes)",
                "memory budget of 1.0 GiB",
                "smaller width, depth or the initialiser's `batch`",
            ],
        ),
        (
            "kurtosis_mc_samples_beyond_the_budget",
            "    kind: kurtosis_mc\n    width: 8\n    depth: 2\n    networks: 4\n    samples: 1000000000000\n"
                .to_string(),
            &["--memory-gb", "1"],
            &["one network of `he_normal` width 8 depth 2 on 1000000000000 samples needs about 232.8 TiB (256000000001664 bytes)", "memory budget of 1.0 GiB"],
        ),
        (
            "variance_block_beyond_the_budget",
            variance("    init: he_normal\n    block: 1000000000000\n")
                .replace("networks: 3", "networks: 1000000000000"),
            &["--memory-gb", "1"],
            &["a block of 1000000000000 networks' statistics (3 layers) needs about 2.8 PiB (3120000000000000 bytes)", "memory budget of 1.0 GiB", "smaller block or depth"],
        ),
    ];
    for (case, bad, extra, expected) in &cases {
        assert_refused_with(
            dir.path(),
            case,
            &after_a_fine_experiment(bad),
            extra,
            expected,
        );
    }
    // A budget that holds one member still runs (ensembles of one).
    let cfg = write(
        dir.path(),
        "fits.yaml",
        &format!(
            "name: fits\nseed: 1\n{}",
            variance("init: he_normal\n").replace("    ", "")
        ),
    );
    let out = dir.path().join("fits-out");
    ok(&["run", s(&cfg), "--out", s(&out), "--memory-gb", "0.0006"]);
    assert_eq!(results(&out, &["network", "layer"]).height(), 3 * 3);
}
