//! The theory figures. `kind: kurtosis_mc`: the kurtosis measured per layer in
//! simulated networks, with its 95% band, against the Proposition 3 recursion,
//! a panel per (initialiser, slope). `kind: theory`: the recursion's kurtosis
//! and the Section 5 prediction of the 0.9 quantile of S²/σ² over depth, a line
//! per width and a panel per setting of the other swept parameters.

use super::axis::{Axis, span};
use super::canvas::{
    Chart, Figure, Frame, LegendEntry, Panels, Pen, Stroke, Swatch, band, color, hline, line, save,
};
use super::columns::{
    distinct, floats, floats_or_null, has, init_label, init_rank, ints, number, strings,
};
use super::{ExperimentResults, Run};
use crate::experiment::columns as col;
use anyhow::Result;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The columns read for `kind: kurtosis_mc`.
pub const SIMULATION_COLUMNS: &[&str] = &[
    col::INIT,
    col::SLOPE,
    col::WIDTH,
    col::DEPTH,
    col::NETWORKS,
    col::SAMPLES,
    col::LAYER,
    col::KURTOSIS,
    col::KURTOSIS_LO,
    col::KURTOSIS_HI,
    col::THEORY_KURTOSIS,
];

/// The columns read for `kind: theory`: the curves and the swept parameters.
pub const THEORY_COLUMNS: &[&str] = &[
    col::WORK_UNIT,
    col::LAYER,
    col::WIDTH,
    col::KURTOSIS,
    col::LOG10_VAR_Q[1],
    col::THRESHOLD,
    col::KAPPA_W,
    col::SLOPE,
    col::KAPPA0,
    col::C0,
    col::DEPTH,
    col::N,
    col::SIGMA2,
];

/// What tells the panels of the simulation figure apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SimKey {
    init_rank: usize,
    init: String,
    slope: String,
    width: i64,
    depth: i64,
    networks: i64,
    samples: i64,
    experiment: String,
}

/// Per layer: (layer, measured, low, high, predicted).
type SimCurve = Vec<(f64, f64, f64, f64, f64)>;

fn collect_simulation(experiments: &[ExperimentResults]) -> Result<BTreeMap<SimKey, SimCurve>> {
    let mut panels: BTreeMap<SimKey, SimCurve> = BTreeMap::new();
    for experiment in experiments {
        let df = &experiment.table;
        let init = strings(df, col::INIT)?;
        let slope = floats_or_null(df, col::SLOPE)?;
        let width = ints(df, col::WIDTH)?;
        let depth = ints(df, col::DEPTH)?;
        let networks = ints(df, col::NETWORKS)?;
        let samples = ints(df, col::SAMPLES)?;
        let layer = ints(df, col::LAYER)?;
        let kurtosis = floats(df, col::KURTOSIS)?;
        let lo = floats_or_null(df, col::KURTOSIS_LO)?;
        let hi = floats_or_null(df, col::KURTOSIS_HI)?;
        let theory = floats_or_null(df, col::THEORY_KURTOSIS)?;
        for row in 0..df.height() {
            let key = SimKey {
                init_rank: init_rank(init[row]),
                init: init[row].to_string(),
                slope: slope[row].map(number).unwrap_or_default(),
                width: width[row],
                depth: depth[row],
                networks: networks[row],
                samples: samples[row],
                experiment: experiment.name.clone(),
            };
            let nan = f64::NAN;
            panels.entry(key).or_default().push((
                layer[row] as f64,
                kurtosis[row].unwrap_or(nan),
                lo[row].unwrap_or(nan),
                hi[row].unwrap_or(nan),
                theory[row].unwrap_or(nan),
            ));
        }
    }
    for curve in panels.values_mut() {
        curve.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(panels)
}

pub fn plot_simulation(
    run: &Run,
    experiments: &[ExperimentResults],
    out: &Path,
) -> Result<Vec<PathBuf>> {
    save(
        Simulation::new(&run.name, collect_simulation(experiments)?),
        out,
        super::figure::KURTOSIS_MC,
    )
}

const MEASURED: RGBColor = RGBColor(0, 114, 178);
const PREDICTED: RGBColor = RGBColor(0, 0, 0);

/// What the simulation figure's panels show: one curve per panel.
struct Simulation {
    curves: Vec<SimCurve>,
}

impl Panels for Simulation {
    fn draw<DB: DrawingBackend>(&self, i: usize, chart: &mut Chart<DB>, pen: Pen) -> Result<()> {
        let curve = &self.curves[i];
        let at = |value: fn(&(f64, f64, f64, f64, f64)) -> f64| -> Vec<(f64, f64)> {
            curve
                .iter()
                .map(|p| (p.0, log_kurtosis(value(p))))
                .collect()
        };
        band(chart, &at(|p| p.2), &at(|p| p.3), MEASURED)?;
        let measured = pen.stroke(MEASURED, 2.0);
        line(chart, &at(|p| p.1), measured, Stroke::Solid, pen)?;
        let predicted = pen.stroke(PREDICTED, 1.6);
        line(chart, &at(|p| p.4), predicted, Stroke::Dashed, pen)
    }
}

/// log10 of a kurtosis, at least 0 (a kurtosis is at least 1).
fn log_kurtosis(v: f64) -> f64 {
    if v.is_nan() || v == f64::INFINITY {
        f64::NAN
    } else {
        v.max(1.0).log10()
    }
}

impl Simulation {
    /// The figure for the simulated panels, if any.
    fn new(run_name: &str, panels: BTreeMap<SimKey, SimCurve>) -> Option<Figure<Simulation>> {
        if panels.is_empty() {
            return None;
        }
        let keys: Vec<&SimKey> = panels.keys().collect();
        let slope_varies = distinct(keys.iter().map(|k| &k.slope)) > 1;
        let width_varies = distinct(keys.iter().map(|k| k.width)) > 1;
        let depth_varies = distinct(keys.iter().map(|k| k.depth)) > 1;
        let size_varies =
            distinct(keys.iter().map(|k| format!("{}x{}", k.networks, k.samples))) > 1;
        let experiment_needed = distinct(keys.iter().map(|k| {
            format!(
                "{}|{}|{}|{}|{}|{}",
                k.init, k.slope, k.width, k.depth, k.networks, k.samples
            )
        })) < keys.len();
        let captions = keys
            .iter()
            .map(|k| {
                let mut parts = vec![init_label(&k.init)];
                if slope_varies || k.slope != "0" {
                    parts.push(format!("slope {}", k.slope));
                }
                if width_varies {
                    parts.push(format!("width {}", k.width));
                }
                if depth_varies {
                    parts.push(format!("depth {}", k.depth));
                }
                if size_varies {
                    parts.push(format!("{} networks × {} inputs", k.networks, k.samples));
                }
                if experiment_needed {
                    parts.push(format!("[{}]", k.experiment));
                }
                parts.join(", ")
            })
            .collect();
        let first = keys[0];
        let mut setting = Vec::new();
        if !width_varies {
            setting.push(format!("width {}", first.width));
        }
        if !depth_varies {
            setting.push(format!("depth {}", first.depth));
        }
        if !size_varies {
            setting.push(format!(
                "{} networks × {} inputs per setting",
                first.networks, first.samples
            ));
        }
        let title =
            "Kurtosis of a unit's output over depth: simulation against Proposition 3".to_string();
        let subtitle = vec![format!("Run {run_name}: {}", setting.join(", "))];
        let legend = vec![
            LegendEntry::new("measured kurtosis", Swatch::solid(MEASURED)),
            LegendEntry::new("95% interval", Swatch::Band(MEASURED)),
            LegendEntry::new("Proposition 3", Swatch::dashed(PREDICTED)),
        ];
        let curves: Vec<SimCurve> = panels.into_values().collect();
        let values = curves
            .iter()
            .flatten()
            .flat_map(|&(_, k, lo, hi, t)| [k, lo, hi, t]);
        let clipped = curves.iter().flatten().any(|&(_, _, lo, _, _)| lo < 1.0);
        let (lo, hi) = span(values.map(log_kurtosis).filter(|v| v.is_finite()));
        let max_layer = curves.iter().flatten().map(|p| p.0).fold(0.0, f64::max);
        let frame = Frame {
            title,
            subtitle,
            legend,
            notes: clipped
                .then(|| {
                    "Interval ends below 1 are drawn at 1 (a kurtosis is never below 1)."
                        .to_string()
                })
                .into_iter()
                .collect(),
            captions,
            x: Axis::integers(0.0, max_layer.max(1.0)),
            y: Axis::log10(lo.min(0.0), hi),
            x_desc: "layer",
            y_desc: "kurtosis κ",
            columns: 3,
            panel: (430, 330),
        };
        Some(Figure {
            frame,
            panels: Simulation { curves },
        })
    }
}

/// The swept parameters of `kind: theory`, in the order they are preferred as
/// the line variable: (column, label prefix).
const THEORY_PARAMETERS: [(&str, &str); 8] = [
    (col::WIDTH, "width "),
    (col::KAPPA_W, "κ_w = "),
    (col::SLOPE, "slope "),
    (col::KAPPA0, "κ₀ = "),
    (col::C0, "c₀ = "),
    (col::DEPTH, "depth "),
    (col::N, "n = "),
    (col::SIGMA2, "σ² = "),
];

/// One sweep point of `kind: theory`: its parameters and curves.
struct TheoryUnit {
    /// Parameter values as text, in the order of `THEORY_PARAMETERS`.
    params: Vec<String>,
    /// Numeric value of the width (for ordering); NaN for a width profile.
    width: f64,
    layers: Vec<f64>,
    log10_kurtosis: Vec<f64>,
    log10_q90: Vec<f64>,
    threshold: Option<f64>,
}

fn collect_theory(experiments: &[ExperimentResults]) -> Result<Vec<TheoryUnit>> {
    let mut units: BTreeMap<(String, String), Vec<(usize, usize)>> = BTreeMap::new();
    for (e, experiment) in experiments.iter().enumerate() {
        let unit = strings(&experiment.table, col::WORK_UNIT)?;
        for (row, u) in unit.into_iter().enumerate() {
            units
                .entry((experiment.name.clone(), u.to_string()))
                .or_default()
                .push((e, row));
        }
    }
    // Pull every column once per experiment.
    struct Columns {
        layer: Vec<i64>,
        width: Vec<i64>,
        kurtosis: Vec<Option<f64>>,
        log10_q90: Vec<Option<f64>>,
        threshold: Vec<Option<f64>>,
        params: Vec<Vec<String>>,
    }
    let columns: Vec<Columns> = experiments
        .iter()
        .map(|experiment| {
            let df = &experiment.table;
            let params = THEORY_PARAMETERS
                .iter()
                .map(|(name, _)| {
                    Ok(if has(df, name) {
                        floats(df, name)?
                            .into_iter()
                            .map(|v| v.map(number).unwrap_or_default())
                            .collect()
                    } else {
                        vec![String::new(); df.height()]
                    })
                })
                .collect::<Result<Vec<Vec<String>>>>()?;
            Ok(Columns {
                layer: ints(df, col::LAYER)?,
                width: ints(df, col::WIDTH)?,
                kurtosis: floats(df, col::KURTOSIS)?,
                log10_q90: floats_or_null(df, col::LOG10_VAR_Q[1])?,
                threshold: floats_or_null(df, col::THRESHOLD)?,
                params,
            })
        })
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for rows in units.into_values() {
        let mut rows: Vec<(i64, usize, usize)> = rows
            .into_iter()
            .map(|(e, r)| (columns[e].layer[r], e, r))
            .collect();
        rows.sort();
        let (_, e0, r0) = rows[0];
        let c0 = &columns[e0];
        let mut params: Vec<String> = c0.params.iter().map(|p| p[r0].clone()).collect();
        // A width profile: the width differs between layers (row 0 repeats layer 1's).
        let widths: Vec<i64> = rows.iter().map(|&(_, e, r)| columns[e].width[r]).collect();
        let constant = widths.iter().all(|&w| w == widths[0]);
        let width = if constant {
            widths[0] as f64
        } else {
            let profile: Vec<String> = widths.iter().skip(1).map(|w| w.to_string()).collect();
            let mut text = profile.join(",");
            if text.chars().count() > 24 {
                text = format!("{}…", text.chars().take(23).collect::<String>());
            }
            params[0] = format!("profile {text}");
            f64::NAN
        };
        out.push(TheoryUnit {
            params,
            width,
            layers: rows.iter().map(|&(l, _, _)| l as f64).collect(),
            log10_kurtosis: rows
                .iter()
                .map(|&(_, e, r)| columns[e].kurtosis[r].map(log_kurtosis).unwrap_or(f64::NAN))
                .collect(),
            log10_q90: rows
                .iter()
                .map(|&(_, e, r)| columns[e].log10_q90[r].unwrap_or(f64::NAN))
                .collect(),
            threshold: c0.threshold[r0],
        });
    }
    Ok(out)
}

pub fn plot_theory(
    run: &Run,
    experiments: &[ExperimentResults],
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let units = collect_theory(experiments)?;
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let layout = TheoryLayout::new(&run.name, units);
    let mut written = Vec::new();
    for (quantity, stem) in [
        (Quantity::Kurtosis, super::figure::THEORY_KURTOSIS),
        (Quantity::VarianceQ90, super::figure::THEORY_VARIANCE_Q90),
    ] {
        written.extend(save(Some(TheoryFigure::new(&layout, quantity)), out, stem)?);
    }
    Ok(written)
}

/// The lowest log10 drawn on the quantile figure.
const LOG_FLOOR: f64 = -30.0;

/// Panels and lines of the theory figures.
struct TheoryLayout {
    run_name: String,
    /// Parameters shared by every unit, as "label value".
    shared: Vec<String>,
    captions: Vec<String>,
    /// Per panel: (legend index, unit).
    panels: Vec<Vec<(usize, TheoryUnit)>>,
    legend: Vec<(String, RGBColor)>,
    threshold: Option<f64>,
}

impl TheoryLayout {
    fn new(run_name: &str, units: Vec<TheoryUnit>) -> TheoryLayout {
        let varying: Vec<usize> = (0..THEORY_PARAMETERS.len())
            .filter(|&i| distinct(units.iter().map(|u| &u.params[i])) > 1)
            .collect();
        let line_param = varying.first().copied();
        let panel_params: Vec<usize> = varying.iter().skip(1).copied().collect();
        let label = |i: usize, value: &str| -> String {
            if value.starts_with("profile") {
                return value.replace("profile", "widths");
            }
            let mut text = format!("{}{value}", THEORY_PARAMETERS[i].1);
            if i == 1 {
                match value {
                    "1" => text.push_str(" (Bernoulli)"),
                    "1.8" => text.push_str(" (uniform)"),
                    "3" => text.push_str(" (normal)"),
                    _ => {}
                }
            }
            text
        };
        let shared = (0..THEORY_PARAMETERS.len())
            .filter(|i| !varying.contains(i) && !units[0].params[*i].is_empty())
            .map(|i| label(i, &units[0].params[i]))
            .collect();

        // Line values, ordered numerically where they are numbers.
        let mut line_values: Vec<String> = match line_param {
            Some(i) => units.iter().map(|u| u.params[i].clone()).collect(),
            None => vec![String::new()],
        };
        line_values.sort_by(|a, b| {
            let (x, y) = (a.parse::<f64>(), b.parse::<f64>());
            match (x, y) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => a.cmp(b),
            }
        });
        line_values.dedup();
        let legend = line_values
            .iter()
            .enumerate()
            .map(|(k, v)| {
                let text = match line_param {
                    Some(i) => label(i, v),
                    None => "recursion".to_string(),
                };
                (text, color(k))
            })
            .collect();

        let mut panels: BTreeMap<Vec<String>, Vec<(usize, TheoryUnit)>> = BTreeMap::new();
        let threshold = units.iter().find_map(|u| u.threshold);
        for unit in units {
            let key: Vec<String> = panel_params
                .iter()
                .map(|&i| unit.params[i].clone())
                .collect();
            let index = match line_param {
                Some(i) => line_values
                    .iter()
                    .position(|v| *v == unit.params[i])
                    .unwrap_or(0),
                None => 0,
            };
            panels.entry(key).or_default().push((index, unit));
        }
        let mut captions = Vec::new();
        let mut grouped = Vec::new();
        for (key, mut members) in panels {
            members.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.width.total_cmp(&b.1.width)));
            let caption = panel_params
                .iter()
                .zip(&key)
                .map(|(&i, v)| label(i, v))
                .collect::<Vec<_>>()
                .join(", ");
            captions.push(caption);
            grouped.push(members);
        }
        TheoryLayout {
            run_name: run_name.to_string(),
            shared,
            captions,
            panels: grouped,
            legend,
            threshold,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quantity {
    Kurtosis,
    VarianceQ90,
}

/// What a theory figure's panels show: one quantity of the layout's units.
struct TheoryFigure<'a> {
    layout: &'a TheoryLayout,
    quantity: Quantity,
}

impl Quantity {
    /// The drawn values of a unit: log10 of the quantity, at least the floor.
    fn values(self, unit: &TheoryUnit) -> Vec<f64> {
        match self {
            Quantity::Kurtosis => unit.log10_kurtosis.clone(),
            Quantity::VarianceQ90 => unit
                .log10_q90
                .iter()
                .map(|&v| if v.is_nan() { v } else { v.max(LOG_FLOOR) })
                .collect(),
        }
    }

    fn texts(self, l: &TheoryLayout) -> (String, Vec<String>, Vec<LegendEntry>, Vec<String>) {
        let shared = if l.shared.is_empty() {
            String::new()
        } else {
            format!(": {}", l.shared.join(", "))
        };
        let mut legend: Vec<LegendEntry> = l
            .legend
            .iter()
            .map(|(text, c)| LegendEntry::new(text.clone(), Swatch::solid(*c)))
            .collect();
        let mut notes = Vec::new();
        let (title, subtitle) = match self {
            Quantity::Kurtosis => (
                "Kurtosis κ of a unit's output over depth (Proposition 3 recursion)".to_string(),
                format!("Run {}{shared}", l.run_name),
            ),
            Quantity::VarianceQ90 => {
                if let Some(t) = l.threshold {
                    legend.push(LegendEntry::new(
                        format!("threshold {}", number(t)),
                        Swatch::Dotted(RGBColor(0, 0, 0)),
                    ));
                }
                let smallest = l
                    .panels
                    .iter()
                    .flatten()
                    .flat_map(|(_, u)| u.log10_q90.iter().copied())
                    .filter(|v| !v.is_nan())
                    .fold(f64::INFINITY, f64::min);
                if smallest < LOG_FLOOR {
                    notes.push(format!(
                        "Quantiles below 10⁻³⁰ (the smallest is 10^({})) are drawn at 10⁻³⁰, the bottom of the axis.",
                        number(smallest)
                    ));
                }
                (
                    "Predicted 0.9 quantile of S²/σ², the empirical variance over the true one (Section 5)"
                        .to_string(),
                    format!("Run {}{shared}", l.run_name),
                )
            }
        };
        (title, vec![subtitle], legend, notes)
    }

    fn axes(self, l: &TheoryLayout) -> (Axis, Axis) {
        let units = l.panels.iter().flatten().map(|(_, u)| u);
        let max_layer = units
            .clone()
            .flat_map(|u| u.layers.iter().copied())
            .fold(0.0, f64::max);
        let (mut lo, mut hi) = span(units.flat_map(|u| self.values(u)).filter(|v| v.is_finite()));
        if self == Quantity::VarianceQ90 {
            if let Some(t) = l.threshold.filter(|t| *t > 0.0) {
                lo = lo.min(t.log10() - 0.5);
                hi = hi.max(t.log10());
            }
            hi = hi.max(0.3);
        }
        (Axis::integers(0.0, max_layer.max(1.0)), Axis::log10(lo, hi))
    }
}

impl<'a> TheoryFigure<'a> {
    fn new(layout: &'a TheoryLayout, quantity: Quantity) -> Figure<TheoryFigure<'a>> {
        let (title, subtitle, legend, notes) = quantity.texts(layout);
        let (x, y) = quantity.axes(layout);
        Figure {
            frame: Frame {
                title,
                subtitle,
                legend,
                notes,
                captions: layout.captions.clone(),
                x,
                y,
                x_desc: "layer",
                y_desc: match quantity {
                    Quantity::Kurtosis => "kurtosis κ",
                    Quantity::VarianceQ90 => "0.9 quantile of S²/σ²",
                },
                columns: 3,
                panel: (430, 330),
            },
            panels: TheoryFigure { layout, quantity },
        }
    }
}

impl Panels for TheoryFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, i: usize, chart: &mut Chart<DB>, pen: Pen) -> Result<()> {
        let l = self.layout;
        if let (Quantity::VarianceQ90, Some(t)) = (self.quantity, l.threshold.filter(|t| *t > 0.0))
        {
            hline(chart, t.log10(), RGBColor(0, 0, 0), pen)?;
        }
        for (line_index, unit) in &l.panels[i] {
            let points: Vec<(f64, f64)> = unit
                .layers
                .iter()
                .copied()
                .zip(self.quantity.values(unit))
                .collect();
            let style = pen.stroke(l.legend[*line_index].1, 2.0);
            line(chart, &points, style, Stroke::Solid, pen)?;
        }
        Ok(())
    }
}
