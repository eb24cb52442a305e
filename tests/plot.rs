//! `initlab plot` end to end: a tiny run directory (variance, train, kurtosis_mc
//! and theory experiments on synthetic data, about a second) is drawn, and the
//! figures must exist as PNG and SVG, decode to a sensible picture, and the
//! summary must report what the results say; a non-run directory is refused.

mod common;
use common::{authors_quantile, run as run_initlab};
use initlab::results::read_all;
use std::collections::BTreeMap;
use std::path::Path;

const TINY_RUN: &str = "\
name: tiny
seed: 7
experiments:
  - name: var
    kind: variance
    dataset: synthetic-tiny
    init: [he_normal, glorot_normal]
    width: 4
    depth: 3
    networks: 20
  - name: acc
    kind: train
    dataset: synthetic-tiny
    init: [he_normal, he_uniform]
    width: 4
    depth: [0, 2]
    steps: 5
    batch_size: 16
    repeats: 2
  - name: deep
    kind: train
    dataset: synthetic-tiny
    init: glorot_normal
    width: 4
    depth: [0, 2]
    steps: 5
    batch_size: 16
    repeats: 1
  - name: kmc
    kind: kurtosis_mc
    width: 4
    depth: 3
    networks: 10
    samples: 16
  - name: th
    kind: theory
    width: [4, 8]
    depth: 5
";

/// Runs the tiny config into `dir/run` and returns that path.
fn tiny_run(dir: &Path) -> std::path::PathBuf {
    run_yaml(dir, "tiny", TINY_RUN)
}

/// Runs a config (YAML text) into `dir/<name>` and returns that path.
fn run_yaml(dir: &Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let config = common::write(dir, &format!("{name}.yaml"), yaml);
    let run = dir.join(name);
    common::ok(&[
        "--threads",
        "2",
        "run",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    run
}

/// Decodes a PNG: (width, height, RGB(A) bytes, bytes per pixel).
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let channels = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{}", path.display());
    (info.width, info.height, buf, channels)
}

/// The `width="..."` and `height="..."` of an SVG's root element.
fn svg_size(text: &str) -> (f64, f64) {
    let root = &text[text.find("<svg").expect("an <svg> element")..];
    let root = &root[..root.find('>').unwrap()];
    let attr = |name: &str| -> f64 {
        let start = root.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let end = start + root[start..].find('"').unwrap();
        root[start..end].parse().unwrap()
    };
    (attr("width"), attr("height"))
}

fn check_figure(figures: &Path, stem: &str, title: &str) {
    let png_path = figures.join(format!("{stem}.png"));
    let svg_path = figures.join(format!("{stem}.svg"));
    assert!(png_path.is_file(), "{} is missing", png_path.display());
    assert!(svg_path.is_file(), "{} is missing", svg_path.display());

    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let (svg_w, svg_h) = svg_size(&svg);
    assert!(svg.contains(title), "{stem}.svg lacks its title `{title}`");
    assert!(
        svg.contains("font-family=\"DejaVu Sans, sans-serif\""),
        "{stem}.svg font"
    );
    assert!(svg.matches("<polyline").count() + svg.matches("<path").count() >= 3);

    // The PNG is the SVG's picture at 1.5 times the size.
    let (w, h, pixels, channels) = decode_png(&png_path);
    assert!(
        (w as f64 - 1.5 * svg_w).abs() <= 2.0,
        "{stem}: PNG {w} vs SVG {svg_w}"
    );
    assert!(
        (h as f64 - 1.5 * svg_h).abs() <= 2.0,
        "{stem}: PNG {h} vs SVG {svg_h}"
    );
    assert!(
        w >= 1000 && h >= 600,
        "{stem}: {w}x{h} is too small to read"
    );

    let mut colours = std::collections::HashSet::new();
    let mut white = 0usize;
    for px in pixels.chunks(channels) {
        colours.insert(px[..3].to_vec());
        if px[..3] == [255, 255, 255] {
            white += 1;
        }
    }
    let total = (w * h) as usize;
    assert!(colours.len() > 20, "{stem}: only {} colours", colours.len());
    let inked = 1.0 - white as f64 / total as f64;
    assert!(
        (0.01..0.6).contains(&inked),
        "{stem}: {:.1}% of the pixels are not white",
        100.0 * inked
    );
}

/// The summary's line that starts with `prefix`.
fn line_starting<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no summary line starts with `{prefix}`: {lines:?}"))
}

#[test]
fn plots_and_summarises_a_tiny_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path());

    let stdout = common::ok(&["plot", run.to_str().unwrap()]);

    let figures = run.join("figures");
    let expected = [
        ("fig1-accuracy-vs-kurtosis", "Fig. 1"),
        ("fig2-empirical-variance", "Fig. 2"),
        ("fig3-accuracy-vs-depth", "Fig. 3"),
        ("kurtosis-mc-vs-theory", "Proposition 3"),
        ("theory-kurtosis", "Kurtosis"),
        ("theory-variance-q90", "0.9 quantile"),
    ];
    for (stem, title) in expected {
        check_figure(&figures, stem, title);
        for ext in ["png", "svg"] {
            let path = figures.join(format!("{stem}.{ext}"));
            assert!(stdout.contains(&path.display().to_string()), "{stdout}");
        }
    }
    // Nothing else, and no temporary files, in figures/.
    let names: Vec<String> = std::fs::read_dir(&figures)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2 * expected.len(), "{names:?}");

    // The library's summary: one line per initialiser of the variance
    // experiment and per (width, initialiser) of the training one, with the
    // numbers the results hold.
    let lines = initlab::plot::summary(&run).unwrap();
    assert_eq!(lines.len(), 5, "{lines:?}");
    for line in &lines {
        assert!(
            stdout.contains(line.as_str()),
            "printed summary lacks {line}"
        );
    }
    let variance = read_all(&run.join("results/var")).unwrap();
    for init in ["he_normal", "glorot_normal"] {
        let line = line_starting(&lines, &format!("var: {init} ("));
        assert!(line.contains("width 4, depth 3, 20 networks"), "{line}");
        // The layer where the 0.9 quantile crosses 1e-3, or else its smallest
        // value to four digits, which tells the quantile rules apart on any data.
        let q90 = q90_by_layer(&variance, init);
        let expected = match q90.iter().find(|(_, q)| *q < 1e-3) {
            Some((layer, _)) => format!("first falls below 1e-3 at layer {layer}"),
            None => {
                let (layer, smallest) = q90
                    .iter()
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .expect("the variance experiment has layers");
                format!("never falls below 1e-3 (smallest {smallest:.3e}, at layer {layer})")
            }
        };
        assert!(line.contains(&expected), "{line} should say `{expected}`");
        // Non-finite S² is reported exactly when the results hold some.
        let nonfinite = count_nonfinite(&variance, init);
        assert_eq!(
            line.contains("S² NaN") || line.contains("S² infinite"),
            nonfinite > 0,
            "{line}: {nonfinite} non-finite values"
        );
    }
    let train = read_all(&run.join("results/acc")).unwrap();
    for init in ["he_normal", "he_uniform"] {
        let line = line_starting(&lines, &format!("acc: {init} ("));
        let (depth, accuracy) = best_mean_accuracy(&train, init);
        let expected =
            format!("best mean test accuracy {accuracy:.4} at depth {depth} (2 repetitions");
        assert!(line.contains(&expected), "{line} should say `{expected}`");
    }
}

/// Training sweeps (name, initialisers) and the one figure each draws.
const TRAINING_SWEEPS: [(&str, &str, &str); 4] = [
    (
        "kurt",
        "[he_normal, he_uniform]",
        "fig1-accuracy-vs-kurtosis",
    ),
    (
        "depth",
        "[he_normal, glorot_normal]",
        "fig3-accuracy-vs-depth",
    ),
    (
        "continuum",
        "[he_bernoulli, {name: he_gennorm, beta: 1}, {name: he_gennorm, beta: 0.5}, {name: he_sparse, p: 0.5}]",
        "kurtosis-continuum-accuracy-vs-kurtosis",
    ),
    (
        "knob-and-glorot",
        "[{name: he_sparse, p: 0.5}, glorot_normal]",
        "fig3-accuracy-vs-depth",
    ),
];

#[test]
fn each_training_sweep_draws_its_own_figure_only() {
    // A sweep of He-scaled initialisers is Fig. 1's, or the kurtosis continuum's
    // where a law's κ_w is a hyper-parameter; one with any other is Fig. 3's.
    let tmp = tempfile::tempdir().unwrap();
    let figures: std::collections::BTreeSet<&str> =
        TRAINING_SWEEPS.iter().map(|sweep| sweep.2).collect();
    assert_eq!(figures.len(), 3);
    for (name, inits, expected) in TRAINING_SWEEPS {
        let run = run_yaml(
            tmp.path(),
            name,
            &format!(
                "name: {name}\nseed: 1\nkind: train\ndataset: synthetic-tiny\ninit: {inits}\nwidth: 4\ndepth: [0, 2]\nsteps: 3\nbatch_size: 16\n"
            ),
        );
        common::ok(&["plot", run.to_str().unwrap()]);
        let dir = run.join("figures");
        for &stem in &figures {
            assert_eq!(
                dir.join(format!("{stem}.png")).exists(),
                stem == expected,
                "{name}: {stem} drawn (or missing)"
            );
        }
        if name == "continuum" {
            // a colour and legend entry per κ_w, ordered by κ_w: Bernoulli 1,
            // Laplace 6 and the sparse law's 3/p = 6 apart, Γ(10)Γ(2)/Γ(6)² = 25.2
            check_figure(&dir, expected, "Kurtosis continuum");
            let svg = std::fs::read_to_string(dir.join(format!("{expected}.svg"))).unwrap();
            let at = |label: &str| {
                svg.find(label)
                    .unwrap_or_else(|| panic!("continuum legend lacks `{label}`"))
            };
            let order = [
                at("κ_w = 1 (He Bernoulli)"),
                at("κ_w = 6 (He generalised normal)"),
                at("κ_w = 6 (He sparse)"),
                at("κ_w = 25.2 (He generalised normal)"),
            ];
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
            // the summary keeps the κ_w values of one initialiser apart
            let out = run_initlab(&["plot", run.to_str().unwrap()]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("he_gennorm (κ_w = 25.2)"), "{stdout}");
            assert!(stdout.contains("he_gennorm (κ_w = 6)"), "{stdout}");
        }
    }
}

/// One initialiser's values of column `value`, grouped by the integer column `key`.
fn by_key(
    df: &polars::prelude::DataFrame,
    init: &str,
    key: &str,
    value: &str,
) -> BTreeMap<i64, Vec<f64>> {
    let inits = df.column("init").unwrap().str().unwrap();
    let keys = df.column(key).unwrap().i64().unwrap();
    let values = df.column(value).unwrap().f64().unwrap();
    let mut grouped: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for i in 0..df.height() {
        if inits.get(i) == Some(init) {
            grouped
                .entry(keys.get(i).unwrap())
                .or_default()
                .push(values.get(i).unwrap_or(f64::NAN));
        }
    }
    grouped
}

/// emp_var of one initialiser's rows, by layer.
fn emp_var_by_layer(df: &polars::prelude::DataFrame, init: &str) -> BTreeMap<i64, Vec<f64>> {
    by_key(df, init, "layer", "emp_var")
}

/// Rows of one initialiser whose emp_var is NaN, missing or infinite.
fn count_nonfinite(df: &polars::prelude::DataFrame, init: &str) -> usize {
    emp_var_by_layer(df, init)
        .values()
        .flatten()
        .filter(|v| !v.is_finite())
        .count()
}

/// (layer, 0.9 quantile of emp_var over networks by the authors' rule), with
/// NaN left out as the library does.
fn q90_by_layer(df: &polars::prelude::DataFrame, init: &str) -> Vec<(i64, f64)> {
    emp_var_by_layer(df, init)
        .into_iter()
        .map(|(layer, mut v)| {
            v.retain(|x| !x.is_nan());
            v.sort_by(f64::total_cmp);
            (layer, authors_quantile(&v, 0.9))
        })
        .collect()
}

#[test]
fn the_tests_quantile_follows_scipys_definition() {
    // Hand-worked: n = 20 (the tiny run's networks), p = 0.9: position
    // 18 + 0.58 = 18.58, so 0.42·x₁₈ + 0.58·x₁₉; for xᵢ = i that is 18.58
    // (numpy's linear rule: 1 + 19·0.9 = 18.1).
    let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
    assert!((authors_quantile(&twenty, 0.9) - 18.58).abs() < 1e-12);
    // n = 4, p = 0.9: position 3.6 + 0.58 = 4.18, clamped to 4: x₄.
    assert_eq!(authors_quantile(&[1.0, 2.0, 3.0, 4.0], 0.9), 4.0);
    // n = 4, p = 0.25: position 1 + 0.45 = 1.45: 0.55·1 + 0.45·2.
    assert!((authors_quantile(&[1.0, 2.0, 3.0, 4.0], 0.25) - 1.45).abs() < 1e-12);
    assert_eq!(authors_quantile(&[5.0], 0.9), 5.0);
}

/// (depth, mean accuracy) of the best depth of one initialiser.
fn best_mean_accuracy(df: &polars::prelude::DataFrame, init: &str) -> (i64, f64) {
    by_key(df, init, "depth", "test_acc")
        .into_iter()
        .map(|(d, v)| (d, v.iter().sum::<f64>() / v.len() as f64))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

#[test]
fn refuses_directories_that_are_not_runs() {
    let tmp = tempfile::tempdir().unwrap();

    // An empty directory.
    let out = run_initlab(&["plot", tmp.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is not an initlab run directory"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    assert!(initlab::plot::plot_run_dir(tmp.path()).is_err());
    assert!(!tmp.path().join("figures").exists(), "nothing is written");

    // A path that does not exist.
    let missing = tmp.path().join("nowhere");
    let out = run_initlab(&["plot", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));

    // A run directory without results yet.
    let run = tmp.path().join("fresh");
    std::fs::create_dir_all(run.join("results")).unwrap();
    std::fs::write(
        run.join("config.resolved.yaml"),
        "name: fresh\nseed: 1\nexperiments:\n- name: v\n  kind: variance\n  points: []\n",
    )
    .unwrap();
    let out = run_initlab(&["plot", run.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("has no results yet"), "{stderr}");
    assert!(initlab::plot::summary(&run).is_err());
}
