//! Bad input is refused before any work: every hyper-parameter that can be NaN,
//! infinite or out of range, a leaky-ReLU slope the networks do not support, and
//! a network too large for the memory budget each get one message naming the key
//! (or the sizes), a non-zero exit, and no run directory, whatever ran before it
//! in the config.

mod common;
use common::*;

/// A study whose first experiment is fine (the theory, instant) and whose second
/// is `bad` (an experiment's keys, one a line). Had anything run before the
/// refusal, the first experiment's results would keep the run directory in place.
fn after_a_fine_experiment(bad: &str) -> String {
    let indented: String = bad.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "name: study\nseed: 1\nexperiments:\n  - name: fine\n    kind: theory\n    width: 4\n    depth: 3\n  - name: bad\n{indented}"
    )
}

/// The experiment a bad one is built on, all on synthetic data.
#[derive(Clone, Copy)]
enum Base {
    Variance,
    Train,
    KurtosisMc,
    /// No keys but those given.
    Nothing,
}

/// The keys of `base` with `keys` (one `key: value` a line): a key the base has
/// takes the given value in its place, the others follow.
fn experiment(base: Base, keys: &str) -> String {
    let base = match base {
        Base::Variance => {
            "kind: variance\ndataset: synthetic-tiny\nwidth: 4\ndepth: 2\nnetworks: 3"
        }
        Base::Train => "kind: train\ndataset: synthetic-tiny\ndepth: 2\nsteps: 2\nbatch_size: 8",
        Base::KurtosisMc => "kind: kurtosis_mc\nwidth: 6\ndepth: 3\nnetworks: 4\nsamples: 8",
        Base::Nothing => "",
    };
    let key = |line: &str| line.split(':').next().unwrap_or_default().to_string();
    let given = |line: &str| keys.lines().find(|k| key(k) == key(line));
    let added = keys
        .lines()
        .filter(|k| !base.lines().any(|l| key(l) == key(k)));
    base.lines()
        .map(|l| given(l).unwrap_or(l))
        .chain(added)
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A refusal: the case's name, its bad experiment and what the message must say.
type Refusal = (&'static str, Base, &'static str, &'static str);

/// Each case as the second experiment of a study must be refused; they run in a
/// fresh folder, returned for further cases.
fn assert_each_refused(cases: &[Refusal]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for &(case, base, keys, expected) in cases {
        let bad = after_a_fine_experiment(&experiment(base, keys));
        assert_refused(dir.path(), case, &bad, &[], &[expected]);
    }
    dir
}

// Width 32 and 200 train on the wide path, whose derivative (from the output's
// sign) would be wrong for a negative slope; width 10 on the narrow kernel.
const BAD_SLOPES: [Refusal; 10] = [
    (
        "train_width_32_slope_minus_0_1",
        Base::Train,
        "init: he_normal\nwidth: 32\nslope: -0.1",
        "`slope` (the leaky ReLU's negative slope) must be a finite number in [0, 1] for networks, got -0.1",
    ),
    (
        "train_width_200_slope_minus_0_1",
        Base::Train,
        "init: he_normal\nwidth: 200\nslope: -0.1",
        "must be a finite number in [0, 1] for networks, got -0.1",
    ),
    (
        "train_width_10_slope_minus_0_5",
        Base::Train,
        "init: he_normal\nwidth: 10\nslope: -0.5",
        "`slope`",
    ),
    (
        "train_slope_nan",
        Base::Train,
        "init: he_normal\nwidth: 32\nslope: .nan",
        "`slope` (the leaky ReLU's negative slope) must be a finite number in [0, 1] for networks, got NaN",
    ),
    (
        "train_slope_inf",
        Base::Train,
        "init: he_normal\nwidth: 32\nslope: .inf",
        "got inf",
    ),
    (
        "train_slope_above_1",
        Base::Train,
        "init: he_normal\nwidth: 32\nslope: 1.5",
        "`slope`",
    ),
    (
        "variance_width_32_slope_minus_0_1",
        Base::Variance,
        "init: he_normal\nslope: -0.1\nwidth: 32",
        "`slope`",
    ),
    (
        "variance_slope_minus_inf",
        Base::Variance,
        "init: he_normal\nslope: -.inf",
        "got -inf",
    ),
    (
        "kurtosis_mc_slope_minus_0_3",
        Base::KurtosisMc,
        "slope: -0.3",
        "`slope`",
    ),
    (
        "kurtosis_mc_slope_nan",
        Base::KurtosisMc,
        "slope: .nan",
        "got NaN",
    ),
];

/// Training with slope 0.2, narrow and wide.
const SLOPE_0_2: &str = "name: ok\nseed: 3\nkind: train\ndataset: synthetic-tiny\ninit: he_normal\nwidth: [32, 200]\ndepth: 2\nslope: 0.2\nsteps: 3\nbatch_size: 8\n";

#[test]
fn negative_and_non_finite_slopes_are_refused_for_networks_and_0_2_trains() {
    let dir = assert_each_refused(&BAD_SLOPES);

    // A slope in [0, 1] still trains, on the wide path too.
    let out = run_config(dir.path(), "ok", SLOPE_0_2, &[]);
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
    assert_each_refused(&[(
        "theory_slope_minus_2",
        Base::Nothing,
        "kind: theory\nwidth: 4\ndepth: 3\nslope: -2",
        "`slope` must be a finite number in [-1, 1], got -2",
    )]);
}

const BAD_HYPER_PARAMETERS: [Refusal; 31] = [
    (
        "orthogonal_gain_nan",
        Base::Variance,
        "init: {name: orthogonal, gain: .nan}",
        "initialiser `orthogonal`: `gain` must be a finite number > 0, got NaN",
    ),
    (
        "orthogonal_gain_inf",
        Base::Variance,
        "init: {name: orthogonal, gain: .inf}",
        "`gain` must be a finite number > 0, got inf",
    ),
    (
        "orthogonal_gain_negative",
        Base::Train,
        "width: 4\ninit: {orthogonal: {gain: -1.0}}",
        "`gain` must be a finite number > 0, got -1",
    ),
    (
        "metainit_lr_nan",
        Base::Variance,
        "init: {name: metainit, lr: .nan}",
        "initialiser `metainit`: `lr` must be a finite number > 0, got NaN",
    ),
    (
        "metainit_lr_zero",
        Base::Train,
        "width: 4\ninit: {name: metainit, lr: 0}",
        "`lr` must be a finite number > 0, got 0",
    ),
    (
        "metainit_momentum_1",
        Base::Variance,
        "init: {name: metainit, momentum: 1.0}",
        "`momentum` must be a finite number in [0, 1), got 1",
    ),
    (
        "metainit_momentum_nan",
        Base::Variance,
        "init: {name: metainit, momentum: .nan}",
        "`momentum` must be a finite number in [0, 1), got NaN",
    ),
    (
        "metainit_eps_zero",
        Base::Variance,
        "init: {name: metainit, eps: 0.0}",
        "`eps` must be a finite number > 0, got 0",
    ),
    (
        "metainit_eps_inf",
        Base::Variance,
        "init: {name: metainit, eps: .inf}",
        "`eps` must be a finite number > 0, got inf",
    ),
    (
        "metainit_batch_zero",
        Base::Variance,
        "init: {name: metainit, batch: 0, steps: 2}",
        "initialiser `metainit`: `batch` must be at least 1, got 0",
    ),
    (
        "metainit_steps_zero",
        Base::Variance,
        "init: {name: metainit, steps: 0}",
        "`steps` must be at least 1, got 0",
    ),
    (
        "metainit_with_layer_norm",
        Base::Variance,
        "init: {name: metainit, steps: 2}\nnorm: layer",
        "metainit is defined here for networks without normalisation layers: use `norm: none` (got `norm: layer`)",
    ),
    (
        "metainit_with_batch_norm_in_train",
        Base::Train,
        "width: 4\ninit: {name: metainit, steps: 2}\nnorm: batch",
        "use `norm: none` (got `norm: batch`)",
    ),
    (
        "metainit_max_restarts_huge",
        Base::Variance,
        "init: {name: metainit, max_restarts: 1000000000}",
        "`max_restarts` must be at most 1000",
    ),
    (
        "lsuv_batch_1",
        Base::Variance,
        "init: {name: lsuv, batch: 1}",
        "initialiser `lsuv`: `batch` must be at least 2, got 1",
    ),
    (
        "lsuv_tolerance_nan",
        Base::Variance,
        "init: {name: lsuv, tolerance: .nan}",
        "`tolerance` must be a finite number > 0, got NaN",
    ),
    (
        "lsuv_max_iterations_zero",
        Base::Variance,
        "init: {name: lsuv, max_iterations: 0}",
        "`max_iterations` must be at least 1, got 0",
    ),
    (
        "lsuv_with_layer_norm_in_train",
        Base::Train,
        "width: 4\ninit: lsuv\nnorm: layer",
        "lsuv is defined here for networks without normalisation layers",
    ),
    (
        "he_gennorm_without_beta",
        Base::Train,
        "width: 4\ninit: [he_normal, he_gennorm]",
        "initialiser `he_gennorm` needs `beta` (the shape: 2 normal, 1 Laplace, larger towards uniform): write it as `{name: he_gennorm, beta: 1.0}`",
    ),
    (
        "he_gennorm_beta_too_small",
        Base::Variance,
        "init: {name: he_gennorm, beta: 0.01}",
        "initialiser `he_gennorm`: `beta` must be a finite number in [0.1, 100], got 0.01 (below 0.1",
    ),
    (
        "he_gennorm_beta_nan",
        Base::KurtosisMc,
        "init: {name: he_gennorm, beta: .nan}",
        "`beta` must be a finite number in [0.1, 100], got NaN",
    ),
    (
        "he_sparse_without_p",
        Base::Variance,
        "init: {he_sparse: {}}",
        "initialiser `he_sparse` needs `p` (the probability that a weight is kept): write it as `{name: he_sparse, p: 0.5}`",
    ),
    (
        "he_sparse_p_zero",
        Base::Train,
        "width: 4\ninit: {name: he_sparse, p: 0}",
        "initialiser `he_sparse`: `p` must be a finite number in (0, 1], got 0",
    ),
    (
        "he_sparse_p_above_1",
        Base::Variance,
        "init: {name: he_sparse, p: 1.5}",
        "`p` must be a finite number in (0, 1], got 1.5",
    ),
    (
        "train_steps_zero",
        Base::Train,
        "width: 4\ninit: he_normal\nsteps: 0",
        "`steps` must be at least 1, got 0",
    ),
    (
        "train_lr_inf",
        Base::Train,
        "width: 4\ninit: he_normal\nlr: .inf",
        "`lr` must be a finite number > 0, got inf",
    ),
    (
        "train_repeats_huge",
        Base::Train,
        "width: 4\ninit: he_normal\nrepeats: 1000000000",
        "`repeats` must be at most 100000",
    ),
    (
        "variance_networks_in_too_many_blocks",
        Base::Variance,
        "init: he_normal\nblock: 1\nnetworks: 1000000000000",
        "makes 1000000000000 work units, more than the 100000",
    ),
    (
        "kurtosis_mc_gsm_odd_width",
        Base::KurtosisMc,
        "init: gsm\nwidth: 5",
        "gsm needs even sizes",
    ),
    (
        "theory_depth_beyond_any_table",
        Base::Nothing,
        "kind: theory\nwidth: 4\ndepth: 10000000000000",
        "`depth` must be at most 1000000 (the table has a row per layer), got 10000000000000",
    ),
    (
        "input_stats_samples_huge",
        Base::Nothing,
        "kind: input_stats\ndataset: synthetic-tiny\nsamples: 1000000000000000000",
        "`samples` must be at most 100000000000",
    ),
];

#[test]
fn bad_hyper_parameters_are_refused_by_name_before_any_unit() {
    let dir = assert_each_refused(&BAD_HYPER_PARAMETERS);
    // (networks: 0 too, so that code which expands a sweep before counting it
    // fails fast rather than building 101,000 points)
    let list =
        |range: std::ops::Range<usize>| range.map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
    let sweep = format!(
        "kind: variance\ndataset: synthetic-tiny\ninit: he_normal\nnetworks: 0\nwidth: [{}]\ndepth: [{}]\n",
        list(1..102),
        list(0..1000)
    );
    assert_refused(
        dir.path(),
        "sweep_of_too_many_points",
        &after_a_fine_experiment(&sweep),
        &[],
        &["the sweep's lists multiply out to 101000 points, more than the 100000"],
    );
    // The same refusals when the bad experiment is the config's only one.
    for &(case, base, keys, expected) in &BAD_HYPER_PARAMETERS[..3] {
        let single = format!("name: single\n{}", experiment(base, keys));
        assert_refused(
            dir.path(),
            &format!("{case}_alone"),
            &single,
            &[],
            &[expected],
        );
    }
}

/// The memory budget (GiB) as `run` takes it: the tiny variance network needs
/// about half a MiB, 0.0001 GiB is less.
const TINY_BUDGET: &[&str] = &["--memory-gb", "0.0001"];
const ONE_GIB: &[&str] = &["--memory-gb", "1"];

/// A network too large for a budget: the case, its experiment, the budget, and
/// what the message must say.
type BeyondBudget = (
    &'static str,
    Base,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const BEYOND_BUDGET: [BeyondBudget; 5] = [
    (
        "variance_member_beyond_a_tiny_budget",
        Base::Variance,
        "init: he_normal",
        TINY_BUDGET,
        &[
            "one network of `he_normal` width 4 depth 2 on synthetic-tiny needs about 481.6 KiB (493176 bytes)",
            "more than the memory budget of 104.9 KiB (107374 bytes)",
            "--memory-gb",
        ],
    ),
    (
        "train_width_a_million",
        Base::Train,
        "init: he_normal\nwidth: 1000000\ndepth: 3",
        ONE_GIB,
        &[
            "one network of `he_normal` width 1000000 depth 3 on synthetic-tiny (batch_size 8) needs about 36.4 TiB (40001348003296 bytes)",
            "memory budget of 1.0 GiB (1073741824 bytes)",
            "smaller width, depth or batch_size",
        ],
    ),
    (
        "metainit_batch_beyond_the_budget",
        Base::Variance,
        "init: {name: metainit, batch: 100000000000, steps: 1}",
        ONE_GIB,
        &[
            "one network of `metainit` width 4 depth 2 on synthetic-tiny needs about 244.5 TiB (268800000496488 bytes)",
            "memory budget of 1.0 GiB",
            "smaller width, depth or the initialiser's `batch`",
        ],
    ),
    (
        "kurtosis_mc_samples_beyond_the_budget",
        Base::KurtosisMc,
        "width: 8\ndepth: 2\nsamples: 1000000000000",
        ONE_GIB,
        &[
            "one network of `he_normal` width 8 depth 2 on 1000000000000 samples needs about 232.8 TiB (256000000001664 bytes)",
            "memory budget of 1.0 GiB",
        ],
    ),
    (
        "variance_block_beyond_the_budget",
        Base::Variance,
        "init: he_normal\nblock: 1000000000000\nnetworks: 1000000000000",
        ONE_GIB,
        &[
            "a block of 1000000000000 networks' statistics (3 layers) needs about 2.8 PiB (3120000000000000 bytes)",
            "memory budget of 1.0 GiB",
            "smaller block or depth",
        ],
    ),
];

#[test]
fn a_network_beyond_the_memory_budget_is_refused_before_any_unit() {
    let dir = tempfile::tempdir().unwrap();
    for (case, base, keys, budget, expected) in BEYOND_BUDGET {
        let bad = after_a_fine_experiment(&experiment(base, keys));
        assert_refused(dir.path(), case, &bad, budget, expected);
    }
    // A budget that holds one member still runs (ensembles of one).
    let text = format!(
        "name: fits\nseed: 1\n{}",
        experiment(Base::Variance, "init: he_normal")
    );
    let out = run_config(dir.path(), "fits", &text, &["--memory-gb", "0.0006"]);
    assert_eq!(results(&out, &["network", "layer"]).height(), 3 * 3);
}
