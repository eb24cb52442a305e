//! Fig. 2 from `kind: variance` results: quantiles over networks of the
//! empirical variance of output unit 0 after every Linear layer, one panel per
//! initialiser, log scale, with the Section 5 prediction where it exists.
//! Quantiles follow the authors' rule (SciPy's `mquantiles` defaults); networks
//! whose S² is NaN or infinite are counted per layer and reported, not dropped
//! silently.

use super::axis::Axis;
use super::canvas::{
    Chart, Figure, Frame, LegendEntry, Panels, Pen, Stroke, Swatch, hline, line, save,
};
use super::columns::{
    QuantileRule, RankedSample, distinct, floats, floats_or_null, init_label, init_rank, ints,
    number, strings, strings_or,
};
use super::{ExperimentResults, Run};
use crate::experiment::columns as col;
use anyhow::Result;
use plotters::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The quantiles drawn, with their legend names and colours.
const QUANTILES: [(f64, &str, RGBColor); 4] = [
    (0.5, "median", RGBColor(110, 110, 110)),
    (0.9, "0.9 quantile", RGBColor(0, 114, 178)),
    (0.99, "0.99 quantile", RGBColor(230, 159, 0)),
    (0.999, "0.999 quantile", RGBColor(213, 94, 0)),
];
/// The columns of the Section 5 prediction, in the order of `QUANTILES`.
const THEORY_COLUMNS: [&str; 4] = [
    col::THEORY_VAR_Q[0],
    col::THEORY_VAR_Q[1],
    col::THEORY_VAR_Q[2],
    col::THEORY_VAR_Q[3],
];
/// The columns read (optional ones may be absent).
pub const COLUMNS: &[&str] = &[
    col::INIT,
    col::DATASET,
    col::WIDTH,
    col::DEPTH,
    col::SLOPE,
    col::NORM,
    col::NETWORK,
    col::LAYER,
    col::NEURON,
    col::EMP_VAR,
    col::THEORY_VAR_Q[0],
    col::THEORY_VAR_Q[1],
    col::THEORY_VAR_Q[2],
    col::THEORY_VAR_Q[3],
];
/// Values at or below this are drawn at it (log axes cannot show 0).
const FLOOR: f64 = 1e-30;
/// The threshold of the summary and of the dotted reference line.
const THRESHOLD: f64 = 1e-3;
/// The paper's quantiles over networks are SciPy's `mquantiles` defaults, so
/// Fig. 2 and its summary use the same rule to be comparable with it.
const RULE: QuantileRule = QuantileRule::Authors;
/// How many runs of layers with NaN or infinite S² the summary line lists per
/// kind before "… at N more layers".
const SUMMARY_RUNS: usize = 12;
/// The same for a note on the figure, which gets one line per panel and must
/// stay about as wide as the page.
const FIGURE_RUNS: usize = 3;

/// What tells the panels apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PanelKey {
    init_rank: usize,
    init: String,
    experiment: String,
    dataset: String,
    width: i64,
    depth: i64,
    slope: String,
    norm: String,
}

/// One initialiser's (and setting's) networks.
#[derive(Default)]
struct Group {
    networks: BTreeSet<i64>,
    /// layer -> emp_var of output unit 0 of every network (NaN where missing).
    by_layer: BTreeMap<i64, Vec<f64>>,
    /// Networks whose emp_var is NaN (or missing) at some layer.
    nan_networks: BTreeSet<i64>,
    /// Networks whose emp_var is infinite at some layer.
    infinite_networks: BTreeSet<i64>,
    /// layer -> the Section 5 quantiles (`None` where not predicted).
    theory: BTreeMap<i64, [Option<f64>; 4]>,
}

/// The curves of one panel.
struct Curves {
    key: PanelKey,
    networks: usize,
    layers: Vec<f64>,
    /// `[quantile][layer]`, in emp_var units (not clipped).
    quantiles: [Vec<f64>; 4],
    /// `[quantile][layer]`.
    theory: [Vec<Option<f64>>; 4],
    nonfinite: NonFinite,
}

/// The networks whose S² is not a finite number: NaN ones are left out of the
/// quantiles, infinite ones stay in and rank above every finite value. Either
/// means something broke (an overflow, a degenerate initialiser), so the
/// figure and the summary say where.
#[derive(Debug, Default, PartialEq)]
struct NonFinite {
    /// Per layer, in the order of `Curves::layers`: networks with NaN S².
    nan: Vec<usize>,
    /// Per layer: networks with infinite S².
    infinite: Vec<usize>,
    /// Distinct networks with NaN S² at one layer or more.
    nan_networks: usize,
    /// Distinct networks with infinite S² at one layer or more.
    infinite_networks: usize,
}

impl NonFinite {
    /// One clause per kind, e.g. "S² NaN in 2 networks (left out of the
    /// quantiles: 1 at layer 3, 2 at layer 4)"; `None` when every S² is finite.
    /// At most `max_runs` runs of layers are listed per kind.
    fn describe(&self, layers: &[f64], max_runs: usize) -> Option<String> {
        let kinds = [
            (
                "NaN",
                self.nan_networks,
                &self.nan,
                "left out of the quantiles",
            ),
            (
                "infinite",
                self.infinite_networks,
                &self.infinite,
                "ranked above every finite value",
            ),
        ];
        let parts: Vec<String> = kinds
            .into_iter()
            .filter(|&(_, networks, _, _)| networks > 0)
            .map(|(what, networks, per_layer_counts, fate)| {
                format!(
                    "S² {what} in {networks} network{} ({fate}: {})",
                    if networks == 1 { "" } else { "s" },
                    per_layer(per_layer_counts, layers, max_runs)
                )
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Per-layer counts as short text: "1 at layer 3, 2 at each of layers 4–9".
/// Neighbouring layers with the same count form one run, so a failure that
/// persists from some depth on stays one phrase; after `max_runs` runs the
/// rest is summed up as "… at N more layers".
fn per_layer(counts: &[usize], layers: &[f64], max_runs: usize) -> String {
    // (first index, last index, count) of each run of equal non-zero counts.
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        match runs.last_mut() {
            Some((_, last, c)) if *last + 1 == i && *c == count => *last = i,
            _ => runs.push((i, i, count)),
        }
    }
    let mut text: Vec<String> = runs
        .iter()
        .take(max_runs)
        .map(|&(first, last, count)| {
            if first == last {
                format!("{count} at layer {}", layers[first])
            } else {
                format!(
                    "{count} at each of layers {}–{}",
                    layers[first], layers[last]
                )
            }
        })
        .collect();
    if runs.len() > max_runs {
        let more: usize = runs[max_runs..].iter().map(|&(a, b, _)| b - a + 1).sum();
        text.push(format!(
            "… at {more} more layer{}",
            if more == 1 { "" } else { "s" }
        ));
    }
    text.join(", ")
}

fn collect(experiments: &[ExperimentResults]) -> Result<Vec<Curves>> {
    let mut groups: BTreeMap<PanelKey, Group> = BTreeMap::new();
    for experiment in experiments {
        let df = &experiment.table;
        let init = strings(df, col::INIT)?;
        let dataset = strings_or(df, col::DATASET, "?")?;
        let width = ints(df, col::WIDTH)?;
        let depth = ints(df, col::DEPTH)?;
        let slope = floats_or_null(df, col::SLOPE)?;
        let norm = strings_or(df, col::NORM, "none")?;
        let network = ints(df, col::NETWORK)?;
        let layer = ints(df, col::LAYER)?;
        let neuron = if super::columns::has(df, col::NEURON) {
            ints(df, col::NEURON)?
        } else {
            vec![0; df.height()]
        };
        let emp_var = floats(df, col::EMP_VAR)?;
        let theory: Vec<Vec<Option<f64>>> = THEORY_COLUMNS
            .iter()
            .map(|c| floats_or_null(df, c))
            .collect::<Result<_>>()?;
        // Rows come in blocks of one setting: build a key only when it changes.
        let mut current: Option<(PanelKey, Option<f64>)> = None;
        for row in 0..df.height() {
            if neuron[row] != 0 {
                continue;
            }
            let same = current.as_ref().is_some_and(|(k, s)| {
                k.init == init[row]
                    && k.dataset == dataset[row]
                    && k.width == width[row]
                    && k.depth == depth[row]
                    && *s == slope[row]
                    && k.norm == norm[row]
            });
            if !same {
                let key = PanelKey {
                    init_rank: init_rank(init[row]),
                    init: init[row].to_string(),
                    experiment: experiment.name.clone(),
                    dataset: dataset[row].to_string(),
                    width: width[row],
                    depth: depth[row],
                    slope: slope[row].map(number).unwrap_or_default(),
                    norm: norm[row].to_string(),
                };
                current = Some((key, slope[row]));
            }
            let (key, _) = current.as_ref().expect("a key was built");
            if !groups.contains_key(key) {
                groups.insert(key.clone(), Group::default());
            }
            let group = groups.get_mut(key).expect("inserted above");
            group.networks.insert(network[row]);
            let value = emp_var[row].unwrap_or(f64::NAN);
            if value.is_nan() {
                group.nan_networks.insert(network[row]);
            } else if value.is_infinite() {
                group.infinite_networks.insert(network[row]);
            }
            group.by_layer.entry(layer[row]).or_default().push(value);
            group.theory.entry(layer[row]).or_insert([
                theory[0][row],
                theory[1][row],
                theory[2][row],
                theory[3][row],
            ]);
        }
    }
    Ok(groups
        .into_iter()
        .map(|(key, group)| {
            let layers: Vec<f64> = group.by_layer.keys().map(|&l| l as f64).collect();
            let mut theory: [Vec<Option<f64>>; 4] = Default::default();
            for l in group.by_layer.keys() {
                let t = group.theory.get(l).copied().unwrap_or([None; 4]);
                for q in 0..4 {
                    theory[q].push(t[q]);
                }
            }
            let mut quantiles: [Vec<f64>; 4] = Default::default();
            let mut nonfinite = NonFinite {
                nan_networks: group.nan_networks.len(),
                infinite_networks: group.infinite_networks.len(),
                ..NonFinite::default()
            };
            for values in group.by_layer.into_values() {
                let sample = RankedSample::new(values);
                for (q, (p, _, _)) in QUANTILES.iter().enumerate() {
                    quantiles[q].push(sample.quantile(*p, RULE));
                }
                nonfinite.nan.push(sample.nan);
                nonfinite.infinite.push(sample.infinite);
            }
            Curves {
                key,
                networks: group.networks.len(),
                layers,
                quantiles,
                theory,
                nonfinite,
            }
        })
        .collect())
}

/// Per initialiser, the first layer at which the 0.9 quantile (the authors'
/// rule) falls below 1e-3, and the networks whose S² is NaN or infinite.
pub fn summary(experiments: &[ExperimentResults]) -> Result<Vec<String>> {
    let curves = collect(experiments)?;
    Ok(curves
        .iter()
        .map(|c| {
            let k = &c.key;
            let what = format!(
                "{}: {} ({}, width {}, depth {}, {} network{})",
                k.experiment,
                k.init,
                k.dataset,
                k.width,
                k.depth,
                c.networks,
                if c.networks == 1 { "" } else { "s" }
            );
            let q90 = &c.quantiles[1];
            let verdict = match q90.iter().position(|&v| v < THRESHOLD) {
                Some(i) => format!(
                    "{what}: the 0.9 quantile of emp_var first falls below 1e-3 at layer {}",
                    c.layers[i]
                ),
                None => {
                    let smallest = q90
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| !v.is_nan())
                        .min_by(|a, b| a.1.total_cmp(b.1));
                    match smallest {
                        Some((i, v)) => format!(
                            "{what}: the 0.9 quantile of emp_var never falls below 1e-3 (smallest {v:.3e}, at layer {})",
                            c.layers[i]
                        ),
                        None => format!("{what}: the 0.9 quantile of emp_var never falls below 1e-3"),
                    }
                }
            };
            match c.nonfinite.describe(&c.layers, SUMMARY_RUNS) {
                Some(nonfinite) => format!("{verdict}; {nonfinite}"),
                None => verdict,
            }
        })
        .collect())
}

pub fn plot(run: &Run, experiments: &[ExperimentResults], out: &Path) -> Result<Vec<PathBuf>> {
    save(
        Fig2::new(&run.name, collect(experiments)?),
        out,
        super::figure::FIG2,
    )
}

/// What Fig. 2's panels show: one initialiser's quantiles per panel.
struct Fig2 {
    curves: Vec<Curves>,
}

impl Panels for Fig2 {
    fn draw<DB: DrawingBackend>(&self, i: usize, chart: &mut Chart<DB>, pen: Pen) -> Result<()> {
        let c = &self.curves[i];
        hline(chart, THRESHOLD.log10(), RGBColor(0, 0, 0), pen)?;
        for (q, (_, _, color)) in QUANTILES.iter().enumerate() {
            let predicted: Vec<(f64, f64)> = c
                .layers
                .iter()
                .zip(&c.theory[q])
                .map(|(&l, t)| (l, t.map(log_clipped).unwrap_or(f64::NAN)))
                .collect();
            line(
                chart,
                &predicted,
                pen.stroke(*color, 1.6),
                Stroke::Dashed,
                pen,
            )?;
        }
        // Measured quantiles on top, the highest last.
        for (q, (_, _, color)) in QUANTILES.iter().enumerate() {
            let measured: Vec<(f64, f64)> = c
                .layers
                .iter()
                .zip(&c.quantiles[q])
                .map(|(&l, &v)| (l, log_clipped(v)))
                .collect();
            line(
                chart,
                &measured,
                pen.stroke(*color, 2.0),
                Stroke::Solid,
                pen,
            )?;
        }
        Ok(())
    }
}

/// log10 of a value for a log axis: at least the floor; infinite or NaN -> NaN.
fn log_clipped(v: f64) -> f64 {
    if v.is_nan() || v == f64::INFINITY {
        f64::NAN
    } else {
        v.max(FLOOR).log10()
    }
}

/// Which parts of the panels' setting differ between panels: those go into
/// each panel's caption, the rest into the figure's title.
struct Varying {
    dataset: bool,
    width: bool,
    depth: bool,
    slope: bool,
    norm: bool,
    /// The same initialiser in two experiments: name the experiment.
    init_repeats: bool,
}

impl Varying {
    /// What varies across the panels of `curves`.
    fn of(curves: &[Curves]) -> Varying {
        let keys: Vec<&PanelKey> = curves.iter().map(|c| &c.key).collect();
        let varies = |f: &dyn Fn(&PanelKey) -> String| distinct(keys.iter().map(|k| f(k))) > 1;
        Varying {
            dataset: varies(&|k| k.dataset.clone()),
            width: varies(&|k| k.width.to_string()),
            depth: varies(&|k| k.depth.to_string()),
            slope: varies(&|k| k.slope.clone()),
            norm: varies(&|k| k.norm.clone()),
            init_repeats: distinct(keys.iter().map(|k| {
                format!(
                    "{}|{}|{}|{}|{}|{}",
                    k.init, k.dataset, k.width, k.depth, k.slope, k.norm
                )
            })) < keys.len(),
        }
    }

    /// A panel's caption: its initialiser, what sets it apart, its network count.
    fn caption(&self, c: &Curves) -> String {
        let k = &c.key;
        let mut parts = vec![init_label(&k.init)];
        if self.init_repeats {
            parts.push(format!("[{}]", k.experiment));
        }
        if self.dataset {
            parts.push(k.dataset.clone());
        }
        if self.width {
            parts.push(format!("width {}", k.width));
        }
        if self.depth {
            parts.push(format!("depth {}", k.depth));
        }
        if self.slope {
            parts.push(format!("slope {}", k.slope));
        }
        if self.norm {
            parts.push(format!("norm {}", k.norm));
        }
        let n = c.networks;
        format!(
            "{} — {n} network{}",
            parts.join(", "),
            if n == 1 { "" } else { "s" }
        )
    }

    /// The figure's title, naming the setting every panel shares.
    fn title(&self, first: &PanelKey) -> String {
        let mut setting = Vec::new();
        if !self.dataset {
            setting.push(first.dataset.clone());
        }
        if !self.width {
            setting.push(format!("width {}", first.width));
        }
        if !self.depth {
            setting.push(format!("depth {}", first.depth));
        }
        if !self.slope && first.slope != "0" && !first.slope.is_empty() {
            setting.push(format!("leaky ReLU slope {}", first.slope));
        }
        if !self.norm && first.norm != "none" {
            setting.push(format!("{} norm", first.norm));
        }
        format!(
            "Fig. 2 — empirical variance of the output over depth ({})",
            setting.join(", ")
        )
    }
}

/// The range of log10 S² the figure draws, and what it could not draw as is.
struct Extent {
    lo: f64,
    hi: f64,
    /// Some value is at or below the floor, so drawn at it.
    clipped: bool,
    /// How many values are +∞ (not drawn).
    infinite: usize,
}

impl Extent {
    /// The extent of every quantile and prediction of `curves`, with the
    /// threshold line in view and clear of the bottom edge.
    fn of(curves: &[Curves]) -> Extent {
        let mut e = Extent {
            lo: THRESHOLD.log10() - 0.5,
            hi: THRESHOLD.log10(),
            clipped: false,
            infinite: 0,
        };
        for c in curves {
            let all = c
                .quantiles
                .iter()
                .flatten()
                .copied()
                .chain(c.theory.iter().flatten().flatten().copied());
            for v in all {
                if v == f64::INFINITY {
                    e.infinite += 1;
                }
                if v <= FLOOR {
                    e.clipped = true;
                }
                let y = log_clipped(v);
                if y.is_finite() {
                    e.lo = e.lo.min(y);
                    e.hi = e.hi.max(y);
                }
            }
        }
        e
    }
}

/// Fig. 2's legend: the quantiles, the prediction when any panel has one, the threshold.
fn fig2_legend(any_theory: bool) -> Vec<LegendEntry> {
    let mut legend: Vec<LegendEntry> = QUANTILES
        .iter()
        .map(|(_, name, color)| LegendEntry::new(*name, Swatch::solid(*color)))
        .collect();
    if any_theory {
        legend.push(LegendEntry::new(
            "Section 5 prediction (dashed, same colours)",
            Swatch::dashed(RGBColor(60, 60, 60)),
        ));
    }
    legend.push(LegendEntry::new(
        "S² = 10⁻³",
        Swatch::Dotted(RGBColor(0, 0, 0)),
    ));
    legend
}

/// Fig. 2's notes: what was clipped, not finite or not drawn, and which panels
/// lack a prediction.
fn fig2_notes(
    curves: &[Curves],
    captions: &[String],
    extent: &Extent,
    any_theory: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    if extent.clipped {
        notes.push(
            "Values at or below 10⁻³⁰ (exact zeros included) are drawn at 10⁻³⁰, the bottom of the axis."
                .to_string(),
        );
    }
    for (c, caption) in curves.iter().zip(captions) {
        if let Some(text) = c.nonfinite.describe(&c.layers, FIGURE_RUNS) {
            notes.push(format!("{caption}: {text}."));
        }
    }
    if extent.infinite > 0 {
        notes.push(format!(
            "{} quantile values are +∞ and not drawn (the curve breaks there).",
            extent.infinite
        ));
    }
    if any_theory
        && curves
            .iter()
            .any(|c| c.theory.iter().flatten().all(|t| t.is_none()))
    {
        notes.push(
            "Panels without dashed curves have no Section 5 prediction (it needs i.i.d. weights)."
                .to_string(),
        );
    }
    notes
}

impl Fig2 {
    /// Fig. 2 for the curves, if any.
    fn new(run_name: &str, curves: Vec<Curves>) -> Option<Figure<Fig2>> {
        if curves.is_empty() {
            return None;
        }
        let varying = Varying::of(&curves);
        let captions: Vec<String> = curves.iter().map(|c| varying.caption(c)).collect();
        let any_theory = curves
            .iter()
            .any(|c| c.theory.iter().flatten().any(|t| t.is_some()));
        let extent = Extent::of(&curves);
        let max_layer = curves
            .iter()
            .flat_map(|c| c.layers.iter().copied())
            .fold(0.0, f64::max);
        let frame = Frame {
            title: varying.title(&curves[0].key),
            subtitle: vec![
                format!(
                    "Run {run_name}: quantiles over random networks of S², the variance of output unit 0 over the whole dataset, after every Linear layer"
                ),
                format!("Quantiles: {}", RULE.describe()),
            ],
            legend: fig2_legend(any_theory),
            notes: fig2_notes(&curves, &captions, &extent, any_theory),
            captions,
            x: Axis::integers(0.0, max_layer.max(1.0)),
            y: Axis::log10(extent.lo, extent.hi + 0.3),
            x_desc: "layer (index of the Linear layer)",
            y_desc: "S² of output unit 0",
            columns: if curves.len() <= 6 { 3 } else { 4 },
            panel: (430, 330),
        };
        Some(Figure {
            frame,
            panels: Fig2 { curves },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Cell, Table};

    /// 10 networks of depth 4 whose emp_var is `base(l) * (network + 1)`.
    fn experiment(init: &str, base: impl Fn(i64) -> f64) -> ExperimentResults {
        experiment_with(init, |network, layer| base(layer) * (network + 1) as f64)
    }

    /// 10 networks of depth 4 whose emp_var is `value(network, layer)`.
    fn experiment_with(init: &str, value: impl Fn(i64, i64) -> f64) -> ExperimentResults {
        let mut t = Table::new();
        for network in 0..10i64 {
            for layer in 0..=4i64 {
                t.push(vec![
                    ("init", init.into()),
                    ("dataset", "synthetic-tiny".into()),
                    ("width", 4i64.into()),
                    ("depth", 4i64.into()),
                    ("slope", 0.0.into()),
                    ("norm", "none".into()),
                    ("network", network.into()),
                    ("layer", layer.into()),
                    ("neuron", 0i64.into()),
                    ("emp_var", value(network, layer).into()),
                    ("theory_var_q90", Cell::NullFloat),
                ]);
            }
        }
        ExperimentResults {
            name: "var".into(),
            table: t.to_dataframe().unwrap(),
            normalizations: Default::default(),
        }
    }

    #[test]
    fn summary_names_the_first_layer_below_the_threshold() {
        // q0.9 over networks 1..=10 times base, by the authors' rule: n = 10,
        // m = 0.4 + 0.2·0.9 = 0.58, aleph = 9 + 0.58 = 9.58, so 0.42·9 + 0.58·10
        // = 9.58 times base (the linear rule would give 9.1).
        let falling = experiment("he_normal", |l| 10f64.powi(-(l as i32)));
        let flat = experiment("zero_star", |_| 1.0);
        let lines = summary(&[falling, flat]).unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        // 9.58e-3 at layer 3 is above 1e-3, 9.58e-4 at layer 4 is below.
        assert!(
            lines[0].starts_with("var: he_normal (synthetic-tiny, width 4, depth 4, 10 networks)")
        );
        assert!(
            lines[0].ends_with("first falls below 1e-3 at layer 4"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("zero_star"));
        assert!(lines[1].contains("never falls below 1e-3"), "{}", lines[1]);
    }

    #[test]
    fn zeros_are_drawn_at_the_floor_and_said_so() {
        let dead = experiment("he_normal", |l| if l > 1 { 0.0 } else { 1.0 });
        let figure = Fig2::new("test", collect(&[dead]).unwrap()).unwrap();
        assert!(
            figure
                .frame
                .notes
                .iter()
                .any(|n| n.contains("drawn at 10⁻³⁰")),
            "{:?}",
            figure.frame.notes
        );
        assert_eq!(figure.frame.y.bounds().0, -30.0);
        assert!(log_clipped(0.0) == -30.0 && log_clipped(f64::INFINITY).is_nan());
    }

    #[test]
    fn summary_uses_the_authors_quantiles_not_numpys() {
        // At layer 2 base = 1.05e-4: the authors' q0.9 is 9.58 · 1.05e-4 =
        // 1.0059e-3, above the threshold, where the linear rule's 9.1 · 1.05e-4
        // = 9.555e-4 would already be below it. At layer 3, 9.58e-5 is below.
        let base = |l: i64| [1.0, 1.0, 1.05e-4, 1e-5, 1e-5][l as usize];
        let lines = summary(&[experiment("he_normal", base)]).unwrap();
        assert!(
            lines[0].ends_with("first falls below 1e-3 at layer 3"),
            "{}",
            lines[0]
        );
        let curves = collect(&[experiment("he_normal", base)]).unwrap();
        assert!((curves[0].quantiles[1][2] - 9.58 * 1.05e-4).abs() < 1e-15);
    }

    /// Network 0 has NaN S² at layers 3 and 4, network 1 at layer 4, network
    /// 9 infinite S² at layers 2 to 4; the others have S² = network + 1.
    fn broken() -> ExperimentResults {
        experiment_with("metainit", |network, layer| match (network, layer) {
            (0, 3..) | (1, 4) => f64::NAN,
            (9, 2..) => f64::INFINITY,
            _ => (network + 1) as f64,
        })
    }

    #[test]
    fn nan_and_infinite_networks_are_counted_per_layer() {
        let curves = collect(&[broken()]).unwrap();
        let c = &curves[0];
        assert_eq!(
            c.nonfinite,
            NonFinite {
                nan: vec![0, 0, 0, 1, 2],
                infinite: vec![0, 0, 1, 1, 1],
                nan_networks: 2,
                infinite_networks: 1,
            }
        );
        // Layer 0, S² = 1..=10: median at aleph = 5 + 0.5 = 5.5 -> 5.5.
        assert_eq!(c.quantiles[0][0], 5.5);
        // Layer 3 drops network 0 (NaN): [2, ..., 9, +∞], n = 9; the median's
        // aleph = 4.5 + 0.5 = 5 exactly, so x₅ = 6.
        assert_eq!(c.quantiles[0][3], 6.0);
        // Layer 4 drops networks 0 and 1: [3, ..., 9, +∞], n = 8. Median:
        // aleph = 4 + 0.5 = 4.5 -> 0.5·6 + 0.5·7 = 6.5. q0.9: aleph = 7.2 +
        // 0.58 = 7.78, k = 7 -> between 9 and +∞: +∞, the infinite network ranks last.
        assert_eq!(c.quantiles[0][4], 6.5);
        assert_eq!(c.quantiles[1][4], f64::INFINITY);

        let text = "S² NaN in 2 networks (left out of the quantiles: 1 at layer 3, 2 at layer 4); \
                    S² infinite in 1 network (ranked above every finite value: 1 at each of layers 2–4)";
        let lines = summary(&[broken()]).unwrap();
        assert!(lines[0].ends_with(&format!("; {text}")), "{}", lines[0]);
        let figure = Fig2::new("test", curves).unwrap();
        assert!(
            figure
                .frame
                .notes
                .contains(&format!("MetaInit — 10 networks: {text}.")),
            "{:?}",
            figure.frame.notes
        );
        // Nothing is said when every S² is finite.
        let fine = collect(&[experiment("he_normal", |_| 1.0)]).unwrap();
        assert_eq!(fine[0].nonfinite.describe(&fine[0].layers, 3), None);
        assert!(!summary(&[experiment("he_normal", |_| 1.0)]).unwrap()[0].contains("S² "));
    }

    #[test]
    fn per_layer_counts_merge_runs_and_stop_after_a_few() {
        let layers: Vec<f64> = (0..7).map(f64::from).collect();
        let counts = [1, 0, 2, 2, 2, 3, 1];
        assert_eq!(
            per_layer(&counts, &layers, 5),
            "1 at layer 0, 2 at each of layers 2–4, 3 at layer 5, 1 at layer 6"
        );
        // Two runs shown; the other two cover layers 5 and 6.
        assert_eq!(
            per_layer(&counts, &layers, 2),
            "1 at layer 0, 2 at each of layers 2–4, … at 2 more layers"
        );
    }

    #[test]
    fn the_figure_names_its_quantile_rule() {
        let figure = Fig2::new(
            "test",
            collect(&[experiment("he_normal", |_| 1.0)]).unwrap(),
        )
        .unwrap();
        assert!(
            figure.frame.subtitle.iter().any(|l| l
                == "Quantiles: SciPy mquantiles plotting positions, alphap = betap = 0.4, as in the authors' code"),
            "{:?}",
            figure.frame.subtitle
        );
    }
}
