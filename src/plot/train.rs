//! Figs. 1 and 3 from `kind: train` results. Fig. 3: mean test accuracy against
//! depth with min-max bars over repetitions, a line per initialiser, a panel per
//! width. Fig. 1: test accuracy of He-initialised networks against the
//! theoretical output kurtosis (log scale), a marker per weight distribution.
//! The kurtosis continuum is Fig. 1 for laws whose kurtosis κ_w is a
//! hyper-parameter (`he_gennorm`, `he_sparse`): a colour per κ_w on a sequential
//! scale, a marker per law.

use super::axis::{Axis, span};
use super::canvas::{
    Chart, Figure, Frame, LegendEntry, Marker, Panels, Pen, Stroke, Swatch, bars, color, line,
    marker, markers, save, sequential,
};
use super::columns::{
    bools_or_false, distinct, floats, floats_or_null, init_label, init_rank, int_set, ints,
    ints_or, kurtosis_is_a_hyper_parameter, number, strings, strings_or,
};
use super::{ExperimentResults, Run};
use crate::experiment::columns as col;
use anyhow::Result;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The columns read (optional ones may be absent).
pub const COLUMNS: &[&str] = &[
    col::DATASET,
    col::INIT,
    col::WIDTH,
    col::DEPTH,
    col::LR,
    col::NORM,
    col::SLOPE,
    col::STEPS,
    col::BATCH_SIZE,
    col::TEST_ACC,
    col::DIVERGED,
    col::KAPPA_W,
    col::THEORY_KURTOSIS,
];

/// One trained network.
#[derive(Debug, Clone)]
struct Trained {
    experiment: String,
    dataset: String,
    init: String,
    width: i64,
    depth: i64,
    lr: String,
    norm: String,
    slope: String,
    steps: i64,
    batch_size: i64,
    test_acc: f64,
    diverged: bool,
    kappa_w: Option<f64>,
    theory_kurtosis: Option<f64>,
}

impl Trained {
    /// The initialiser as a line of Fig. 3 or a summary names it: with its κ_w
    /// where that is a hyper-parameter, so that runs of different κ_w stay apart.
    fn series_name(&self) -> String {
        match self.kappa_w {
            Some(kw) if kurtosis_is_a_hyper_parameter(&self.init) => {
                format!("{} (κ_w = {})", self.init, number(kw))
            }
            _ => self.init.clone(),
        }
    }
}

fn collect(experiments: &[ExperimentResults]) -> Result<Vec<Trained>> {
    let mut out = Vec::new();
    for experiment in experiments {
        let df = &experiment.table;
        let dataset = strings_or(df, col::DATASET, "?")?;
        let init = strings(df, col::INIT)?;
        let width = ints(df, col::WIDTH)?;
        let depth = ints(df, col::DEPTH)?;
        let lr = floats_or_null(df, col::LR)?;
        let norm = strings_or(df, col::NORM, "none")?;
        let slope = floats_or_null(df, col::SLOPE)?;
        let steps = ints_or(df, col::STEPS, 0)?;
        let batch_size = ints_or(df, col::BATCH_SIZE, 0)?;
        let test_acc = floats(df, col::TEST_ACC)?;
        let diverged = bools_or_false(df, col::DIVERGED)?;
        let kappa_w = floats_or_null(df, col::KAPPA_W)?;
        let theory_kurtosis = floats_or_null(df, col::THEORY_KURTOSIS)?;
        for row in 0..df.height() {
            out.push(Trained {
                experiment: experiment.name.clone(),
                dataset: dataset[row].to_string(),
                init: init[row].to_string(),
                width: width[row],
                depth: depth[row],
                lr: lr[row].map(number).unwrap_or_default(),
                norm: norm[row].to_string(),
                slope: slope[row].map(number).unwrap_or_default(),
                steps: steps[row],
                batch_size: batch_size[row],
                test_acc: test_acc[row].unwrap_or(f64::NAN),
                diverged: diverged[row],
                kappa_w: kappa_w[row],
                theory_kurtosis: theory_kurtosis[row],
            });
        }
    }
    Ok(out)
}

/// A panel of Fig. 3: everything but the initialiser, the depth and the repetition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DepthPanelKey {
    dataset: String,
    width: i64,
    lr: String,
    norm: String,
    slope: String,
    steps: i64,
    batch_size: i64,
}

/// A line of Fig. 3.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    init_rank: usize,
    /// κ_w's bits where it is a hyper-parameter (0 otherwise): for κ_w > 0 they
    /// order as the numbers do, so such lines come in the order of κ_w.
    kappa_w_order: u64,
    init: String,
    experiment: String,
}

/// Accuracy over repetitions at one depth.
#[derive(Debug, Clone)]
struct Point {
    depth: i64,
    mean: f64,
    min: f64,
    max: f64,
    repetitions: usize,
}

type DepthPanels = BTreeMap<DepthPanelKey, BTreeMap<SeriesKey, Vec<Point>>>;

/// Groups runs into panels and lines; keeps only panels with several depths.
fn depth_panels(runs: &[Trained]) -> DepthPanels {
    let mut raw: BTreeMap<DepthPanelKey, BTreeMap<SeriesKey, BTreeMap<i64, Vec<f64>>>> =
        BTreeMap::new();
    for r in runs {
        let panel = DepthPanelKey {
            dataset: r.dataset.clone(),
            width: r.width,
            lr: r.lr.clone(),
            norm: r.norm.clone(),
            slope: r.slope.clone(),
            steps: r.steps,
            batch_size: r.batch_size,
        };
        let series = SeriesKey {
            init_rank: init_rank(&r.init),
            kappa_w_order: match r.kappa_w {
                Some(kw) if kurtosis_is_a_hyper_parameter(&r.init) => kw.to_bits(),
                _ => 0,
            },
            init: r.series_name(),
            experiment: r.experiment.clone(),
        };
        raw.entry(panel)
            .or_default()
            .entry(series)
            .or_default()
            .entry(r.depth)
            .or_default()
            .push(r.test_acc);
    }
    raw.into_iter()
        .filter(|(_, series)| {
            distinct(series.values().flat_map(|depths| depths.keys().copied())) > 1
        })
        .map(|(key, series)| {
            let series = series
                .into_iter()
                .map(|(s, depths)| {
                    let points = depths
                        .into_iter()
                        .filter_map(|(depth, accs)| {
                            let finite: Vec<f64> =
                                accs.into_iter().filter(|a| a.is_finite()).collect();
                            if finite.is_empty() {
                                return None;
                            }
                            let n = finite.len();
                            Some(Point {
                                depth,
                                mean: finite.iter().sum::<f64>() / n as f64,
                                min: finite.iter().copied().fold(f64::INFINITY, f64::min),
                                max: finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                                repetitions: n,
                            })
                        })
                        .collect();
                    (s, points)
                })
                .collect();
            (key, series)
        })
        .collect()
}

/// Per (width, initialiser) of runs with several depths: the best mean accuracy.
pub fn summary(experiments: &[ExperimentResults]) -> Result<Vec<String>> {
    let runs = collect(experiments)?;
    let panels = depth_panels(&runs);
    let mut lines = Vec::new();
    for (key, series) in &panels {
        for (s, points) in series {
            let Some(best) = points.iter().max_by(|a, b| a.mean.total_cmp(&b.mean)) else {
                continue;
            };
            let mut setting = vec![key.dataset.clone(), format!("width {}", key.width)];
            if !key.lr.is_empty() {
                setting.push(format!("lr {}", key.lr));
            }
            if key.norm != "none" {
                setting.push(format!("{} norm", key.norm));
            }
            lines.push(format!(
                "{}: {} ({}): best mean test accuracy {:.4} at depth {} ({} repetition{}; depths {})",
                s.experiment,
                s.init,
                setting.join(", "),
                best.mean,
                best.depth,
                best.repetitions,
                if best.repetitions == 1 { "" } else { "s" },
                int_set(points.iter().map(|p| p.depth)),
            ));
        }
    }
    Ok(lines)
}

pub fn plot(run: &Run, experiments: &[ExperimentResults], out: &Path) -> Result<Vec<PathBuf>> {
    // An experiment of He-scaled initialisers alone, each with a theoretical
    // output kurtosis, is a Fig. 1 sweep, or a kurtosis-continuum one where some
    // initialiser's κ_w is a hyper-parameter (Fig. 1's colour per initialiser
    // would lump its κ_w values together); any other initialiser makes it a
    // Fig. 3 one. One figure per sweep keeps each run directory to its own figure.
    let (mut kurtosis_runs, mut continuum_runs, mut depth_runs) =
        (Vec::new(), Vec::new(), Vec::new());
    for experiment in experiments {
        let runs = collect(std::slice::from_ref(experiment))?;
        if !runs.iter().all(has_theory_kurtosis) {
            depth_runs.extend(runs);
        } else if runs.iter().any(|r| kurtosis_is_a_hyper_parameter(&r.init)) {
            continuum_runs.extend(runs);
        } else {
            kurtosis_runs.extend(runs);
        }
    }
    let mut written = save(
        Fig3::new(&run.name, &depth_runs, depth_panels(&depth_runs)),
        out,
        super::figure::FIG3,
    )?;
    written.extend(save(
        Fig1::new(&run.name, &kurtosis_runs, Colouring::ByInit),
        out,
        super::figure::FIG1,
    )?);
    written.extend(save(
        Fig1::new(&run.name, &continuum_runs, Colouring::ByWeightKurtosis),
        out,
        super::figure::KURTOSIS_CONTINUUM,
    )?);
    Ok(written)
}

/// Whether a run is He-initialised with a finite theoretical output kurtosis.
fn has_theory_kurtosis(run: &Trained) -> bool {
    run.init.starts_with("he_")
        && run
            .theory_kurtosis
            .is_some_and(|k| k.is_finite() && k > 0.0)
}

/// The distinct initialiser names, in legend order.
fn init_order(inits: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = inits.into_iter().collect();
    super::columns::sort_inits(&mut names);
    names.dedup();
    names
}

/// Colour and marker of every initialiser of a figure, by legend position.
fn init_styles(order: &[String]) -> BTreeMap<String, (RGBColor, Marker)> {
    order
        .iter()
        .enumerate()
        .map(|(i, name)| (name.clone(), (color(i), marker(i))))
        .collect()
}

/// Where a figure names the width of its networks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WidthNamed {
    /// In the setting line, when all runs share it (Fig. 1).
    InSetting,
    /// In every panel's caption (Fig. 3), so never in the setting line.
    InCaptions,
}

/// "fashion-mnist, 500 steps, lr 1e-4, batch 90" for the settings shared by all runs.
fn shared_setting(runs: &[&Trained], width_named: WidthNamed) -> (Vec<String>, SettingVaries) {
    let varies = SettingVaries {
        dataset: distinct(runs.iter().map(|r| &r.dataset)) > 1,
        width: distinct(runs.iter().map(|r| r.width)) > 1,
        lr: distinct(runs.iter().map(|r| &r.lr)) > 1,
        norm: distinct(runs.iter().map(|r| &r.norm)) > 1,
        slope: distinct(runs.iter().map(|r| &r.slope)) > 1,
        steps: distinct(runs.iter().map(|r| r.steps)) > 1,
        batch: distinct(runs.iter().map(|r| r.batch_size)) > 1,
    };
    let first = runs[0];
    let mut parts = Vec::new();
    if !varies.dataset {
        parts.push(first.dataset.clone());
    }
    if width_named == WidthNamed::InSetting && !varies.width {
        parts.push(format!("width {}", first.width));
    }
    if !varies.steps && first.steps > 0 {
        parts.push(format!("{} Adam steps", first.steps));
    }
    if !varies.lr && !first.lr.is_empty() {
        parts.push(format!("lr {}", first.lr));
    }
    if !varies.batch && first.batch_size > 0 {
        parts.push(format!("batch {}", first.batch_size));
    }
    if !varies.slope && !first.slope.is_empty() && first.slope != "0" {
        parts.push(format!("leaky ReLU slope {}", first.slope));
    }
    if !varies.norm && first.norm != "none" {
        parts.push(format!("{} norm", first.norm));
    }
    (parts, varies)
}

struct SettingVaries {
    dataset: bool,
    width: bool,
    lr: bool,
    norm: bool,
    slope: bool,
    steps: bool,
    batch: bool,
}

fn diverged_note(runs: &[&Trained]) -> Option<String> {
    let diverged = runs.iter().filter(|r| r.diverged).count();
    let missing = runs.iter().filter(|r| !r.test_acc.is_finite()).count();
    let mut parts = Vec::new();
    if diverged > 0 {
        parts.push(format!(
            "{diverged} of {} runs diverged (non-finite training loss); their final test accuracy is drawn as measured.",
            runs.len()
        ));
    }
    if missing > 0 {
        parts.push(format!(
            "{missing} runs without a finite test accuracy are left out."
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// What Fig. 3's panels show: a line per series, with its style and offset.
struct Fig3 {
    panels: Vec<Vec<(SeriesKey, Vec<Point>)>>,
    styles: BTreeMap<String, (RGBColor, Marker)>,
    /// x offset of each line, so that bars at one depth do not overlap.
    dodge: BTreeMap<SeriesKey, f64>,
}

/// The runs Fig. 3 draws: those in one of its panels.
fn runs_in_panels<'a>(runs: &'a [Trained], panels: &DepthPanels) -> Vec<&'a Trained> {
    runs.iter()
        .filter(|r| {
            panels.keys().any(|k| {
                k.dataset == r.dataset
                    && k.width == r.width
                    && k.lr == r.lr
                    && k.norm == r.norm
                    && k.slope == r.slope
                    && k.steps == r.steps
                    && k.batch_size == r.batch_size
            })
        })
        .collect()
}

/// How many repetitions each point of Fig. 3 averages, as a phrase.
fn repetitions_phrase(panels: &DepthPanels) -> String {
    let repetitions: Vec<usize> = panels
        .values()
        .flat_map(|s| s.values().flatten().map(|p| p.repetitions))
        .collect();
    let (rmin, rmax) = (
        repetitions.iter().copied().min().unwrap_or(0),
        repetitions.iter().copied().max().unwrap_or(0),
    );
    if rmin == rmax {
        format!("{rmin} repetition{}", if rmin == 1 { "" } else { "s" })
    } else {
        format!("{rmin}–{rmax} repetitions")
    }
}

/// Fig. 3's legend: one line per series (naming the experiment where an
/// initialiser appears in several), then the min–max bar.
fn fig3_legend(
    series_keys: &[SeriesKey],
    styles: &BTreeMap<String, (RGBColor, Marker)>,
) -> Vec<LegendEntry> {
    // The same initialiser in several experiments: name the experiment too.
    let named_experiments = distinct(series_keys.iter().map(|s| &s.init)) < series_keys.len();
    let label = |s: &SeriesKey| {
        if named_experiments {
            format!("{} [{}]", init_label(&s.init), s.experiment)
        } else {
            init_label(&s.init)
        }
    };
    let mut legend: Vec<LegendEntry> = series_keys
        .iter()
        .map(|s| {
            let (c, m) = styles[&s.init];
            let swatch = Swatch::Line {
                color: c,
                dashed: false,
                marker: Some(m),
            };
            LegendEntry::new(label(s), swatch)
        })
        .collect();
    legend.push(LegendEntry::new(
        "min–max over repetitions",
        Swatch::Bar(RGBColor(90, 90, 90)),
    ));
    legend
}

/// Fig. 3's depth axis, and each series' x offset so that bars at one depth
/// do not overlap.
fn depth_axis(panels: &DepthPanels, series_keys: &[SeriesKey]) -> (Axis, BTreeMap<SeriesKey, f64>) {
    let depths: Vec<i64> = panels
        .values()
        .flat_map(|s| s.values().flatten().map(|p| p.depth))
        .collect();
    let (dmin, dmax) = (
        *depths.iter().min().unwrap_or(&0) as f64,
        *depths.iter().max().unwrap_or(&1) as f64,
    );
    let span = (dmax - dmin).max(1.0);
    let x = Axis::integers_padded(dmin, dmax, 0.04);
    let spread = span * 0.008;
    let n = series_keys.len() as f64;
    let dodge = series_keys
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), (i as f64 - (n - 1.0) / 2.0) * spread))
        .collect();
    (x, dodge)
}

/// A Fig. 3 panel's caption: its width and whatever else varies between panels.
fn depth_panel_caption(k: &DepthPanelKey, varies: &SettingVaries) -> String {
    let mut parts = vec![format!("width {}", k.width)];
    if varies.dataset {
        parts.insert(0, k.dataset.clone());
    }
    let shown = [
        (varies.lr, format!("lr {}", k.lr)),
        (varies.steps, format!("{} steps", k.steps)),
        (varies.batch, format!("batch {}", k.batch_size)),
        (varies.slope, format!("slope {}", k.slope)),
        (varies.norm, format!("norm {}", k.norm)),
    ];
    parts.extend(
        shown
            .into_iter()
            .filter_map(|(varies, part)| varies.then_some(part)),
    );
    parts.join(", ")
}

impl Fig3 {
    /// Fig. 3 for the panels with several depths, if any.
    fn new(run_name: &str, runs: &[Trained], panels: DepthPanels) -> Option<Figure<Fig3>> {
        if panels.is_empty() {
            return None;
        }
        let used = runs_in_panels(runs, &panels);
        let (setting, varies) = shared_setting(&used, WidthNamed::InCaptions);
        let reps = repetitions_phrase(&panels);
        let steps = used[0].steps;
        let title = if varies.steps || steps == 0 {
            "Fig. 3 — test accuracy against depth".to_string()
        } else {
            format!("Fig. 3 — test accuracy after {steps} training steps against depth")
        };
        let subtitle = vec![
            format!(
                "Run {run_name}: {}; {} runs",
                setting.join(", "),
                used.len()
            ),
            format!("Lines: mean over {reps} per depth; bars: minimum to maximum"),
        ];

        let series_keys: Vec<SeriesKey> = panels
            .values()
            .flat_map(|s| s.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let styles = init_styles(&init_order(series_keys.iter().map(|s| s.init.clone())));
        let (x, dodge) = depth_axis(&panels, &series_keys);
        let top = panels
            .values()
            .flat_map(|s| s.values().flatten().map(|p| p.max))
            .fold(0.0, f64::max);
        let frame = Frame {
            title,
            subtitle,
            legend: fig3_legend(&series_keys, &styles),
            notes: diverged_note(&used).into_iter().collect(),
            captions: panels
                .keys()
                .map(|k| depth_panel_caption(k, &varies))
                .collect(),
            x,
            y: Axis::linear(0.0, if top > 1.0 { top } else { 1.0 }),
            x_desc: "depth (hidden layers)",
            y_desc: "test accuracy",
            columns: 2,
            panel: (600, 400),
        };
        let panels = panels
            .into_values()
            .map(|s| s.into_iter().collect())
            .collect();
        Some(Figure {
            frame,
            panels: Fig3 {
                panels,
                styles,
                dodge,
            },
        })
    }
}

impl Panels for Fig3 {
    fn draw<DB: DrawingBackend>(&self, i: usize, chart: &mut Chart<DB>, pen: Pen) -> Result<()> {
        for (key, points) in &self.panels[i] {
            let (c, m) = self.styles[&key.init];
            let dx = self.dodge.get(key).copied().unwrap_or(0.0);
            let at = |p: &Point| (p.depth as f64 + dx, p.mean);
            let mean: Vec<(f64, f64)> = points.iter().map(at).collect();
            line(chart, &mean, pen.stroke(c, 2.0), Stroke::Solid, pen)?;
            let spread = points.iter().filter(|p| p.repetitions > 1);
            bars(
                chart,
                spread.map(|p| (at(p).0, p.min, p.mean, p.max)),
                c,
                pen,
            )?;
            markers(chart, mean, m, pen.px(4.5), c.filled())?;
        }
        Ok(())
    }
}

/// How Fig. 1 tells its points apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colouring {
    /// A colour and a marker per initialiser (the paper's three laws).
    ByInit,
    /// A colour per weight kurtosis κ_w on a sequential scale in log κ_w, a
    /// marker per initialiser: the kurtosis continuum.
    ByWeightKurtosis,
}

impl Colouring {
    /// The style a run is drawn with, as a key of [`Fig1::styles`].
    fn key(self, run: &Trained) -> String {
        match self {
            Colouring::ByInit => run.init.clone(),
            Colouring::ByWeightKurtosis => law_key(&run.init, run.kappa_w),
        }
    }

    /// Every style of the runs drawn and the legend naming them.
    fn styles(
        self,
        drawn: &[&Trained],
    ) -> (BTreeMap<String, (RGBColor, Marker)>, Vec<LegendEntry>) {
        let order = init_order(drawn.iter().map(|r| r.init.clone()));
        let init_marker = |init: &str| marker(order.iter().position(|n| n == init).unwrap_or(0));
        match self {
            Colouring::ByInit => {
                let styles = init_styles(&order);
                let legend = order
                    .iter()
                    .map(|name| {
                        let (c, m) = styles[name];
                        let kappas = drawn
                            .iter()
                            .filter(|r| &r.init == name)
                            .filter_map(|r| r.kappa_w)
                            .map(number)
                            .collect::<std::collections::BTreeSet<_>>();
                        let kappa = match kappas.len() {
                            1 => format!(" (κ_w = {})", kappas.first().expect("one")),
                            _ => String::new(),
                        };
                        LegendEntry::new(
                            format!("{}{kappa}", init_label(name)),
                            Swatch::Point(m, c),
                        )
                    })
                    .collect();
                (styles, legend)
            }
            Colouring::ByWeightKurtosis => {
                // (κ_w, init) in the order of κ_w (runs without one last), each once.
                let mut laws: Vec<(f64, String)> = drawn
                    .iter()
                    .map(|r| (r.kappa_w.unwrap_or(f64::NAN), r.init.clone()))
                    .collect();
                laws.sort_by(|a, b| {
                    a.0.total_cmp(&b.0)
                        .then_with(|| init_rank(&a.1).cmp(&init_rank(&b.1)))
                        .then_with(|| a.1.cmp(&b.1))
                });
                laws.dedup_by(|a, b| law_key(&a.1, Some(a.0)) == law_key(&b.1, Some(b.0)));
                let logs = laws.iter().map(|l| l.0.ln()).filter(|l| l.is_finite());
                let (lo, hi) = span(logs);
                let shade = |kw: f64| {
                    let t = if hi > lo {
                        (kw.ln() - lo) / (hi - lo)
                    } else {
                        0.5
                    };
                    sequential(t)
                };
                let mut styles = BTreeMap::new();
                let mut legend = Vec::new();
                for (kw, init) in &laws {
                    let (c, m) = (shade(*kw), init_marker(init));
                    let kw = Some(*kw).filter(|k| !k.is_nan());
                    styles.insert(law_key(init, kw), (c, m));
                    let kappa = kw.map(number).unwrap_or_else(|| "?".to_string());
                    legend.push(LegendEntry::new(
                        format!("κ_w = {kappa} ({})", init_label(init)),
                        Swatch::Point(m, c),
                    ));
                }
                (styles, legend)
            }
        }
    }
}

/// A weight law of the kurtosis continuum: its initialiser and κ_w as drawn
/// (κ_w values that print alike are one law).
fn law_key(init: &str, kappa_w: Option<f64>) -> String {
    let kappa = kappa_w.filter(|k| !k.is_nan()).map(number);
    format!("{init} {}", kappa.unwrap_or_default())
}

/// What Fig. 1's panels show: a marker per run.
struct Fig1 {
    /// Per panel: (style key, log10 kurtosis, accuracy).
    panels: Vec<Vec<(String, f64, f64)>>,
    styles: BTreeMap<String, (RGBColor, Marker)>,
}

impl Fig1 {
    /// Fig. 1 for the He-initialised runs that carry a theoretical kurtosis, if any.
    fn new(run_name: &str, runs: &[Trained], colouring: Colouring) -> Option<Figure<Fig1>> {
        let he: Vec<&Trained> = runs.iter().filter(|r| has_theory_kurtosis(r)).collect();
        if he.is_empty() {
            return None;
        }
        let drawn: Vec<&Trained> = he
            .iter()
            .copied()
            .filter(|r| r.test_acc.is_finite())
            .collect();
        if drawn.is_empty() {
            return None;
        }
        let (setting, varies) = shared_setting(&he, WidthNamed::InSetting);
        let steps = he[0].steps;
        let after = if varies.steps || steps == 0 {
            String::new()
        } else {
            format!(" after {steps} steps")
        };
        let title = match colouring {
            Colouring::ByInit => format!(
                "Fig. 1 — test accuracy{after} against the output kurtosis at initialisation"
            ),
            Colouring::ByWeightKurtosis => {
                format!("Kurtosis continuum — test accuracy{after} against the output kurtosis")
            }
        };
        let mut subtitle =
            vec![
            format!("Run {run_name}: He-initialised networks; {}", setting.join(", ")),
            "Kurtosis: Proposition 3 recursion with the dataset's κ₀ and c₀ and the weights' κ_w"
                .to_string(),
        ];
        if colouring == Colouring::ByWeightKurtosis {
            subtitle.push(
                "Colour: the weights' kurtosis κ_w, on a log scale from dark to light; marker: the weights' law".to_string(),
            );
        }
        // Panels: one per dataset (and per slope or norm where those vary).
        let mut grouped: BTreeMap<(String, String, String), Vec<&Trained>> = BTreeMap::new();
        for r in &drawn {
            grouped
                .entry((r.dataset.clone(), r.slope.clone(), r.norm.clone()))
                .or_default()
                .push(r);
        }
        let (styles, legend) = colouring.styles(&drawn);
        let captions = grouped
            .iter()
            .map(|(key, rs)| kurtosis_panel_caption(key, rs, &varies))
            .collect();
        let panels: Vec<Vec<(String, f64, f64)>> = grouped
            .into_values()
            .map(|rs| {
                rs.into_iter()
                    .map(|r| {
                        let k = r.theory_kurtosis.unwrap_or(f64::NAN);
                        (colouring.key(r), k.log10(), r.test_acc)
                    })
                    .collect()
            })
            .collect();
        let (lo, hi) = span(panels.iter().flatten().map(|p| p.1));
        let top = panels.iter().flatten().map(|p| p.2).fold(0.0, f64::max);
        let frame = Frame {
            title,
            subtitle,
            legend,
            notes: diverged_note(&he).into_iter().collect(),
            captions,
            x: Axis::log10(lo, hi),
            y: Axis::linear(0.0, if top > 1.0 { top } else { 1.0 }),
            x_desc: "theoretical output kurtosis κ (log scale)",
            y_desc: "test accuracy",
            columns: 2,
            panel: (600, 420),
        };
        Some(Figure {
            frame,
            panels: Fig1 { panels, styles },
        })
    }
}

/// A Fig. 1 panel's caption: its dataset (slope, norm where they vary), and
/// how many runs of which widths and depths it holds.
fn kurtosis_panel_caption(
    (dataset, slope, norm): &(String, String, String),
    runs: &[&Trained],
    varies: &SettingVaries,
) -> String {
    let mut parts = vec![dataset.clone()];
    if varies.slope {
        parts.push(format!("slope {slope}"));
    }
    if varies.norm {
        parts.push(format!("norm {norm}"));
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let widths = distinct(runs.iter().map(|r| r.width));
    let depths = distinct(runs.iter().map(|r| r.depth));
    format!(
        "{} — {} run{} (width{} {}, depth{} {})",
        parts.join(", "),
        runs.len(),
        plural(runs.len()),
        plural(widths),
        int_set(runs.iter().map(|r| r.width)),
        plural(depths),
        int_set(runs.iter().map(|r| r.depth)),
    )
}

impl Panels for Fig1 {
    fn draw<DB: DrawingBackend>(&self, i: usize, chart: &mut Chart<DB>, pen: Pen) -> Result<()> {
        for (style, k, acc) in &self.panels[i] {
            let (c, m) = self.styles[style];
            markers(chart, [(*k, *acc)], m, pen.px(5.0), c.mix(0.75).filled())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Cell, Table};

    #[test]
    fn summary_picks_the_depth_with_the_best_mean() {
        let mut t = Table::new();
        // (init, depth, repeat, accuracy)
        let runs = [
            ("he_normal", 0, 0, 0.5),
            ("he_normal", 0, 1, 0.7),
            ("he_normal", 5, 0, 0.65),
            ("he_normal", 5, 1, 0.65),
            ("zero", 0, 0, 0.2),
            ("zero", 0, 1, 0.2),
            ("zero", 5, 0, 0.9),
            ("zero", 5, 1, 0.8),
        ];
        for (init, depth, repeat, acc) in runs {
            t.push(vec![
                ("dataset", "synthetic-tiny".into()),
                ("init", init.into()),
                ("width", 4i64.into()),
                ("depth", (depth as i64).into()),
                ("lr", 1e-4.into()),
                ("norm", "none".into()),
                ("repeat", (repeat as i64).into()),
                ("steps", 5i64.into()),
                ("test_acc", acc.into()),
                ("theory_kurtosis", Cell::NullFloat),
            ]);
        }
        let experiments = [ExperimentResults {
            name: "acc".into(),
            table: t.to_dataframe().unwrap(),
            normalizations: Default::default(),
        }];
        let lines = summary(&experiments).unwrap();
        assert_eq!(
            lines,
            [
                "acc: he_normal (synthetic-tiny, width 4, lr 1e-4): best mean test accuracy 0.6500 at depth 5 (2 repetitions; depths 0, 5)",
                "acc: zero (synthetic-tiny, width 4, lr 1e-4): best mean test accuracy 0.8500 at depth 5 (2 repetitions; depths 0, 5)",
            ]
        );
    }
}
