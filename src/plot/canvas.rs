//! Drawing plumbing shared by every figure: the embedded font, a frame (title,
//! subtitle, legend strip, grid of panels, notes), panels with labelled axes,
//! markers, colours, and saving one figure as PNG and SVG.

use super::axis::Axis;
use crate::results::write_text;
use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::element::{DashedPathElement, DottedPathElement, ErrorBarOrientV};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The font family every text uses; SVG viewers without DejaVu Sans fall back to
/// their sans-serif, PNGs always use the embedded copy.
pub const FONT: &str = "DejaVu Sans, sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the embedded DejaVu Sans with plotters (once per process).
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!(
            "the embedded font DejaVuSans.ttf could not be loaded"
        ))
    }
}

/// Turns a plotters error (generic over the backend) into anyhow.
pub fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e}")
}

/// A figure: its frame (texts, captions, shared axes) and what its panels show.
pub struct Figure<P> {
    pub frame: Frame,
    pub panels: P,
}

/// What the panels of a figure show; drawing the frame around them is the
/// same for every figure.
pub trait Panels {
    /// Draws panel `i` on its chart, whose axes and caption are drawn already.
    fn draw<DB: DrawingBackend>(&self, i: usize, chart: &mut Chart<DB>, pen: Pen) -> Result<()>;
}

impl<P: Panels> Figure<P> {
    /// Size in pixels (PNG) or user units (SVG) at the pen's scale.
    fn size(&self, pen: Pen) -> (u32, u32) {
        self.frame.size(pen)
    }

    /// Draws the frame, then every panel, on any backend at any scale.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, pen: Pen) -> Result<()> {
        let areas = self.frame.draw(root, pen)?;
        for (i, (area, caption)) in areas.iter().zip(&self.frame.captions).enumerate() {
            let mut chart = panel(area, caption, &self.frame, pen)?;
            self.panels.draw(i, &mut chart, pen)?;
        }
        Ok(())
    }
}

/// PNGs are 1.5 times the SVG's size, drawn at twice that and averaged down
/// (2 x 2 pixels into one), which smooths lines and text.
pub const PNG_PEN: Pen = Pen { s: 1.5 };
pub const SVG_PEN: Pen = Pen { s: 1.0 };
const SUPERSAMPLE: u32 = 2;

/// Writes `dir/<stem>.png` and `dir/<stem>.svg`, each atomically, and returns
/// them; writes nothing for `None` (a figure with nothing to draw).
pub fn save(figure: Option<Figure<impl Panels>>, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    let Some(figure) = figure else {
        return Ok(Vec::new());
    };
    register_font()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let png = dir.join(format!("{stem}.png"));
    let partial = dir.join(format!(".{stem}.part.png"));
    let drawn = (|| -> Result<()> {
        let big_pen = Pen {
            s: PNG_PEN.s * SUPERSAMPLE as f64,
        };
        let (w, h) = figure.size(big_pen);
        let (w, h) = (w / SUPERSAMPLE, h / SUPERSAMPLE);
        let (big_w, big_h) = (w * SUPERSAMPLE, h * SUPERSAMPLE);
        let mut big = vec![0u8; big_w as usize * big_h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut big, (big_w, big_h)).into_drawing_area();
            figure.draw(&root, big_pen)?;
            root.present().map_err(plot_err)?;
        }
        let small = downsample(&big, (big_w, big_h), SUPERSAMPLE);
        let mut backend = BitMapBackend::new(&partial, (w, h));
        backend
            .blit_bitmap((0, 0), (w, h), &small)
            .map_err(plot_err)?;
        backend.present().map_err(plot_err)?;
        Ok(())
    })();
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("drawing {}", png.display())));
    }
    std::fs::rename(&partial, &png)
        .with_context(|| format!("cannot move {} to {}", partial.display(), png.display()))?;

    let svg = dir.join(format!("{stem}.svg"));
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, figure.size(SVG_PEN)).into_drawing_area();
        figure
            .draw(&root, SVG_PEN)
            .with_context(|| format!("drawing {}", svg.display()))?;
        root.present().map_err(plot_err)?;
    }
    write_text(&svg, &text)?;
    Ok(vec![png, svg])
}

/// Averages `factor` x `factor` blocks of an RGB image `[h][w][3]`.
fn downsample(rgb: &[u8], (w, h): (u32, u32), factor: u32) -> Vec<u8> {
    let (w, h, f) = (w as usize, h as usize, factor as usize);
    let (small_w, small_h) = (w / f, h / f);
    let mut out = vec![0u8; small_w * small_h * 3];
    for y in 0..small_h {
        for x in 0..small_w {
            for c in 0..3 {
                let mut sum = 0u32;
                for dy in 0..f {
                    for dx in 0..f {
                        sum += rgb[((y * f + dy) * w + x * f + dx) * 3 + c] as u32;
                    }
                }
                let n = (f * f) as u32;
                out[(y * small_w + x) * 3 + c] = ((sum + n / 2) / n) as u8;
            }
        }
    }
    out
}

/// Sizes in pixels at scale 1; `s` scales every length and font together.
#[derive(Debug, Clone, Copy)]
pub struct Pen {
    pub s: f64,
}

impl Pen {
    pub fn px(&self, v: f64) -> i32 {
        (v * self.s).round() as i32
    }
    pub fn font(&self, size: f64) -> TextStyle<'static> {
        (FONT, size * self.s).into_font().color(&BLACK)
    }
    pub fn grey_font(&self, size: f64) -> TextStyle<'static> {
        (FONT, size * self.s)
            .into_font()
            .color(&RGBColor(80, 80, 80))
    }
    pub fn stroke(&self, color: RGBColor, width: f64) -> ShapeStyle {
        color.stroke_width(((width * self.s).round() as u32).max(1))
    }
}

/// Okabe-Ito colours (distinguishable with colour-blindness), yellow replaced.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(230, 159, 0),   // orange
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(0, 0, 0),       // black
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(153, 153, 51),  // olive
];

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Viridis (perceptually uniform, readable in grey and with colour-blindness),
/// at even steps from dark purple to green; its last, yellow quarter is left
/// out because it fades into a white page.
const SEQUENTIAL: [RGBColor; 5] = [
    RGBColor(68, 1, 84),
    RGBColor(65, 68, 135),
    RGBColor(42, 120, 142),
    RGBColor(34, 168, 132),
    RGBColor(122, 209, 81),
];

/// A colour on a sequential scale, `t` in [0, 1] (clamped) from dark to light.
pub fn sequential(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (SEQUENTIAL.len() - 1) as f64;
    let i = (x.floor() as usize).min(SEQUENTIAL.len() - 2);
    let f = x - i as f64;
    let (a, b) = (SEQUENTIAL[i], SEQUENTIAL[i + 1]);
    let mix = |u: u8, v: u8| (u as f64 + f * (v as f64 - u as f64)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Triangle,
    Square,
    Diamond,
    Cross,
    TriangleDown,
}

pub const MARKERS: [Marker; 6] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Diamond,
    Marker::Cross,
    Marker::TriangleDown,
];

pub fn marker(i: usize) -> Marker {
    MARKERS[i % MARKERS.len()]
}

impl Marker {
    /// The marker of half-size `r` centred at `at` (a data point on a chart, a
    /// pixel on a page): plotters' own shape where it has one, a polygon
    /// around the point where it has not (diamond, downward triangle).
    pub fn element<'a, DB: DrawingBackend + 'a, C: Clone + 'static>(
        self,
        at: C,
        r: i32,
        style: ShapeStyle,
    ) -> DynElement<'a, DB, C> {
        // Sizes that make the shapes look about as heavy as the circle.
        let size = |factor: f64| (r as f64 * factor).round() as i32;
        let around = |h: i32, corners: &[(f64, f64)]| {
            let points: Vec<(i32, i32)> = corners
                .iter()
                .map(|(dx, dy)| {
                    (
                        (dx * h as f64).round() as i32,
                        (dy * h as f64).round() as i32,
                    )
                })
                .collect();
            (EmptyElement::at(at.clone()) + Polygon::new(points, style)).into_dyn()
        };
        match self {
            Marker::Circle => Circle::new(at, r, style).into_dyn(),
            Marker::Triangle => TriangleMarker::new(at, size(1.4), style).into_dyn(),
            Marker::Square => {
                let h = size(0.9);
                (EmptyElement::at(at) + Rectangle::new([(-h, -h), (h, h)], style)).into_dyn()
            }
            Marker::Diamond => around(
                size(1.25),
                &[(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)],
            ),
            // Plotters' triangle upside down.
            Marker::TriangleDown => {
                let cos30 = 3f64.sqrt() / 2.0;
                around(size(1.4), &[(0.0, 1.0), (-cos30, -0.5), (cos30, -0.5)])
            }
            // A cross has no area: it is drawn with lines at least 2 pixels wide.
            Marker::Cross => {
                let line = ShapeStyle {
                    filled: false,
                    ..style
                };
                Cross::new(at, r, line.stroke_width(style.stroke_width.max(2))).into_dyn()
            }
        }
    }
}

/// How a legend entry is drawn.
#[derive(Debug, Clone)]
pub enum Swatch {
    /// A line, solid or dashed, optionally with a marker on it.
    Line {
        color: RGBColor,
        dashed: bool,
        marker: Option<Marker>,
    },
    /// A dotted reference line.
    Dotted(RGBColor),
    /// A marker alone.
    Point(Marker, RGBColor),
    /// A translucent band.
    Band(RGBColor),
    /// A vertical min-max bar with caps.
    Bar(RGBColor),
}

impl Swatch {
    /// A solid line without a marker.
    pub fn solid(color: RGBColor) -> Swatch {
        Swatch::Line {
            color,
            dashed: false,
            marker: None,
        }
    }

    /// A dashed line without a marker.
    pub fn dashed(color: RGBColor) -> Swatch {
        Swatch::Line {
            color,
            dashed: true,
            marker: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LegendEntry {
    pub label: String,
    pub swatch: Swatch,
}

impl LegendEntry {
    pub fn new(label: impl Into<String>, swatch: Swatch) -> Self {
        LegendEntry {
            label: label.into(),
            swatch,
        }
    }
}

/// What a figure shows around its panels, and the axes its panels share.
pub struct Frame {
    pub title: String,
    pub subtitle: Vec<String>,
    /// One legend for all panels, above them.
    pub legend: Vec<LegendEntry>,
    pub notes: Vec<String>,
    /// One per panel: the panels' count.
    pub captions: Vec<String>,
    pub x: Axis,
    pub y: Axis,
    pub x_desc: &'static str,
    pub y_desc: &'static str,
    /// Panels per row at most.
    pub columns: usize,
    /// Size of one panel at scale 1.
    pub panel: (u32, u32),
}

const TITLE_H: f64 = 36.0;
const LINE_H: f64 = 22.0;
const LEGEND_H: f64 = 28.0;
const SWATCH_W: f64 = 34.0;
const ENTRY_GAP: f64 = 26.0;
const PAGE_W_MIN: f64 = 760.0;
/// Dashed lines: dash and gap, at scale 1.
const DASH: (f64, f64) = (7.0, 5.0);
/// Dotted lines: dot radius and spacing, at scale 1.
const DOT: (f64, f64) = (0.9, 4.5);

impl Frame {
    fn panels(&self) -> usize {
        self.captions.len()
    }

    fn grid(&self) -> (usize, usize) {
        let panels = self.panels();
        let cols = panels.clamp(1, self.columns.max(1));
        // Four panels read better as 2 x 2 than as 3 + 1.
        let cols = if panels == 4 && cols == 3 { 2 } else { cols };
        let rows = panels.div_ceil(cols).max(1);
        (rows, cols)
    }

    /// A lone panel gets more room than one of a grid.
    fn panel_size(&self) -> (f64, f64) {
        let (w, h) = (self.panel.0 as f64, self.panel.1 as f64);
        if self.panels() == 1 {
            (w.max(760.0), h.max(460.0))
        } else {
            (w, h)
        }
    }

    fn width(&self) -> f64 {
        let (_, cols) = self.grid();
        (cols as f64 * self.panel_size().0).max(PAGE_W_MIN)
    }

    /// Legend entries in rows that fit the page width (estimated text widths).
    fn legend_rows(&self, pen: Pen) -> Vec<Vec<usize>> {
        let limit = self.width() * pen.s - 2.0 * pen.px(16.0) as f64;
        let mut rows: Vec<Vec<usize>> = Vec::new();
        let mut used = f64::INFINITY;
        for (i, entry) in self.legend.iter().enumerate() {
            let w = entry_width(&entry.label, pen);
            if used + w > limit {
                rows.push(Vec::new());
                used = 0.0;
            }
            rows.last_mut().expect("a row was pushed").push(i);
            used += w;
        }
        rows
    }

    /// Pixel size at scale `pen.s`.
    fn size(&self, pen: Pen) -> (u32, u32) {
        let (rows, _) = self.grid();
        let head = TITLE_H
            + LINE_H * self.subtitle.len() as f64
            + LEGEND_H * self.legend_rows(Pen { s: 1.0 }).len() as f64
            + 8.0;
        let foot = LINE_H * self.notes.len() as f64 + 6.0;
        let h = head + rows as f64 * self.panel_size().1 + foot;
        (
            (self.width() * pen.s).round() as u32,
            (h * pen.s).round() as u32,
        )
    }

    /// Draws the title, subtitle, legend and notes; returns the panel areas.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        pen: Pen,
    ) -> Result<Vec<DrawingArea<DB, Shift>>> {
        root.fill(&WHITE).map_err(plot_err)?;
        let (w, h) = root.dim_in_pixel();
        let centre = w as i32 / 2;
        let mut y = pen.px(10.0);
        root.draw(&Text::new(
            self.title.clone(),
            (centre, y),
            pen.font(20.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(plot_err)?;
        y += pen.px(TITLE_H - 8.0);
        for line in &self.subtitle {
            root.draw(&Text::new(
                line.clone(),
                (centre, y),
                pen.grey_font(14.0).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(plot_err)?;
            y += pen.px(LINE_H);
        }
        for row in self.legend_rows(pen) {
            let total: f64 = row
                .iter()
                .map(|&i| entry_width(&self.legend[i].label, pen))
                .sum::<f64>()
                - pen.px(ENTRY_GAP) as f64;
            let mut x = centre - (total / 2.0).round() as i32;
            let mid = y + pen.px(LEGEND_H / 2.0);
            for &i in &row {
                let entry = &self.legend[i];
                draw_swatch(root, &entry.swatch, (x, mid), pen)?;
                let text_x = x + pen.px(SWATCH_W + 6.0);
                root.draw(&Text::new(
                    entry.label.clone(),
                    (text_x, mid),
                    pen.font(14.0).pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(plot_err)?;
                x += entry_width(&entry.label, pen).round() as i32;
            }
            y += pen.px(LEGEND_H);
        }
        y += pen.px(8.0);
        let foot = pen.px(LINE_H * self.notes.len() as f64 + 6.0);
        let mut note_y = h as i32 - foot + pen.px(4.0);
        for note in &self.notes {
            root.draw(&Text::new(
                note.clone(),
                (pen.px(14.0), note_y),
                pen.grey_font(13.0).pos(Pos::new(HPos::Left, VPos::Top)),
            ))
            .map_err(plot_err)?;
            note_y += pen.px(LINE_H);
        }
        let body = root.margin(y, foot, 0, 0);
        let (rows, cols) = self.grid();
        let (body_w, _) = body.dim_in_pixel();
        // Panels keep their width when the page is wider than the grid (a
        // minimum page width for the title and legend): centre the grid.
        let grid_w = (cols as f64 * self.panel_size().0 * pen.s).round() as u32;
        let side = body_w.saturating_sub(grid_w) / 2;
        let body = body.margin(0, 0, side, side);
        let mut areas = body.split_evenly((rows, cols));
        areas.truncate(self.panels());
        Ok(areas)
    }
}

fn entry_width(label: &str, pen: Pen) -> f64 {
    pen.px(SWATCH_W + 6.0) as f64 + text_width(label, 14.0, pen) + pen.px(ENTRY_GAP) as f64
}

/// Width of a text in the embedded font (estimated when the font is missing).
pub fn text_width(text: &str, size: f64, pen: Pen) -> f64 {
    match pen.font(size).font.box_size(text) {
        Ok((w, _)) => w as f64,
        // DejaVu Sans averages about 0.56 em per character.
        Err(_) => text.chars().count() as f64 * size * 0.56 * pen.s,
    }
}

/// A dashed line through `points` (data points on a chart, pixels on a page).
fn dashed_line<C: Clone>(
    points: Vec<C>,
    style: ShapeStyle,
    pen: Pen,
) -> DashedPathElement<std::vec::IntoIter<C>, i32> {
    DashedPathElement::new(points, pen.px(DASH.0), pen.px(DASH.1), style)
}

/// A dotted line through `points`, dots of `color` (data points on a chart,
/// pixels on a page).
fn dotted_line<C: Clone>(
    points: Vec<C>,
    color: RGBColor,
    pen: Pen,
) -> DottedPathElement<std::vec::IntoIter<C>, i32, Circle<(i32, i32), i32>> {
    let radius = pen.px(DOT.0).max(1);
    DottedPathElement::new(points, 0, pen.px(DOT.1), move |at| {
        Circle::new(at, radius, color.filled())
    })
}

/// A vertical bar from `lo` to `hi` at `x`, with caps, and plotters' ring at `mid`.
fn error_bar<X, Y>(
    x: X,
    (lo, mid, hi): (Y, Y, Y),
    color: RGBColor,
    pen: Pen,
) -> ErrorBar<X, Y, ErrorBarOrientV<X, Y>> {
    ErrorBar::new_vertical(
        x,
        lo,
        mid,
        hi,
        pen.stroke(color, 1.5),
        2 * pen.px(4.0) as u32,
    )
}

fn draw_swatch<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    swatch: &Swatch,
    (x, y): (i32, i32),
    pen: Pen,
) -> Result<()> {
    let x1 = x + pen.px(SWATCH_W);
    let mid = (x + x1) / 2;
    let across = vec![(x, y), (x1, y)];
    match swatch {
        Swatch::Line {
            color,
            dashed,
            marker,
        } => {
            let style = pen.stroke(*color, 2.0);
            if *dashed {
                root.draw(&dashed_line(across, style, pen))
            } else {
                root.draw(&PathElement::new(across, style))
            }
            .map_err(plot_err)?;
            if let Some(m) = marker {
                root.draw(&m.element((mid, y), pen.px(4.5), color.filled()))
                    .map_err(plot_err)?;
            }
        }
        Swatch::Dotted(color) => {
            root.draw(&dotted_line(across, *color, pen))
                .map_err(plot_err)?;
        }
        Swatch::Point(m, color) => {
            root.draw(&m.element((mid, y), pen.px(5.0), color.filled()))
                .map_err(plot_err)?;
        }
        Swatch::Band(color) => {
            root.draw(&Rectangle::new(
                [(x, y - pen.px(7.0)), (x1, y + pen.px(7.0))],
                color.mix(0.25).filled(),
            ))
            .map_err(plot_err)?;
        }
        Swatch::Bar(color) => {
            let span = (y + pen.px(9.0), y, y - pen.px(9.0));
            root.draw(&error_bar(mid, span, *color, pen))
                .map_err(plot_err)?;
        }
    }
    Ok(())
}

/// A panel's chart on custom axes.
pub type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<Axis, Axis>>;

/// Builds a panel of `frame`: caption, axes with their descriptions, grid lines.
fn panel<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    frame: &Frame,
    pen: Pen,
) -> Result<Chart<'a, DB>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, pen.font(16.0))
        .margin_top(pen.px(4.0))
        .margin_left(pen.px(8.0))
        .margin_right(pen.px(18.0))
        .margin_bottom(pen.px(6.0))
        .x_label_area_size(pen.px(46.0))
        .y_label_area_size(pen.px(72.0))
        .build_cartesian_2d(frame.x.clone(), frame.y.clone())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(frame.x_desc)
        .y_desc(frame.y_desc)
        .axis_desc_style(pen.font(14.0))
        .label_style(pen.font(12.5))
        .bold_line_style(pen.stroke(RGBColor(220, 220, 220), 1.0))
        .light_line_style(pen.stroke(RGBColor(242, 242, 242), 1.0))
        .axis_style(pen.stroke(RGBColor(90, 90, 90), 1.0))
        .set_all_tick_mark_size(pen.px(5.0))
        // A light grid line halfway between two ticks, where the step allows.
        .max_light_lines(2)
        .draw()
        .map_err(plot_err)?;
    Ok(chart)
}

/// How a line is stroked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    Dashed,
}

/// Draws a polyline through data points (breaking at non-finite values).
pub fn line<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    points: &[(f64, f64)],
    style: ShapeStyle,
    stroke: Stroke,
    pen: Pen,
) -> Result<()> {
    for run in finite_runs(points) {
        if run.len() < 2 {
            continue;
        }
        match stroke {
            Stroke::Dashed => chart.draw_series(std::iter::once(dashed_line(run, style, pen))),
            Stroke::Solid => chart.draw_series(LineSeries::new(run, style)),
        }
        .map_err(plot_err)?;
    }
    Ok(())
}

/// A dotted horizontal reference line at height `y`.
pub fn hline<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    y: f64,
    color: RGBColor,
    pen: Pen,
) -> Result<()> {
    let range = chart.x_range();
    let across = vec![(range.start, y), (range.end, y)];
    chart
        .draw_series(std::iter::once(dotted_line(across, color, pen)))
        .map(|_| ())
        .map_err(plot_err)
}

/// Markers of one kind, half-size `r`, at data points.
pub fn markers<DB: DrawingBackend>(
    chart: &Chart<'_, DB>,
    points: impl IntoIterator<Item = (f64, f64)>,
    kind: Marker,
    r: i32,
    style: ShapeStyle,
) -> Result<()> {
    // One by one on the plotting area: `draw_series` would need the markers
    // (of mixed shapes, so `DynElement`s) to be 'static, which they are not
    // on a backend that borrows its buffer.
    let area = chart.plotting_area();
    for p in points {
        area.draw(&kind.element(p, r, style)).map_err(plot_err)?;
    }
    Ok(())
}

/// Min-max bars: per `(x, min, mid, max)`, a bar from min to max with caps.
pub fn bars<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    bars: impl IntoIterator<Item = (f64, f64, f64, f64)>,
    color: RGBColor,
    pen: Pen,
) -> Result<()> {
    chart
        .draw_series(
            bars.into_iter()
                .map(|(x, lo, mid, hi)| error_bar(x, (lo, mid, hi), color, pen)),
        )
        .map(|_| ())
        .map_err(plot_err)
}

/// A translucent band between a lower and an upper curve.
pub fn band<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    lower: &[(f64, f64)],
    upper: &[(f64, f64)],
    color: RGBColor,
) -> Result<()> {
    let mut outline: Vec<(f64, f64)> = lower.to_vec();
    outline.extend(upper.iter().rev().copied());
    if outline.len() < 3
        || outline
            .iter()
            .any(|(x, y)| !x.is_finite() || !y.is_finite())
    {
        return Ok(());
    }
    chart
        .draw_series(std::iter::once(Polygon::new(
            outline,
            color.mix(0.22).filled(),
        )))
        .map(|_| ())
        .map_err(plot_err)
}

/// Splits a polyline at non-finite points.
fn finite_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() {
            runs.last_mut().expect("non-empty").push((x, y));
        } else if !runs.last().expect("non-empty").is_empty() {
            runs.push(Vec::new());
        }
    }
    runs
}
