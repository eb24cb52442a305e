//! Axes on plotters' linear coordinate. Linear axes keep plotters' own ticks
//! and labels (whole numbers only where the values are counts). Logarithmic
//! axes are ticked here, as plotters' log axis cannot span 1e-300 to 1e+50 nor
//! label 10⁻³⁰: their data are log10 values and their ticks read 10⁻³⁰ … 10⁵.

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::coord::types::{RangedCoordf64, RangedCoordi64};
use std::ops::Range;

/// A 1-D axis over `lo..hi` (in log10 units on a log axis), with its ticks.
#[derive(Clone)]
pub struct Axis {
    /// Where values go: linearly from `lo` to `hi` (log10 values on a log axis).
    range: RangedCoordf64,
    ticks: Ticks,
}

#[derive(Clone)]
enum Ticks {
    /// plotters' own ticks and labels.
    Plotters,
    /// plotters' ticks for the whole numbers in the range (layers, depths).
    Whole,
    /// Powers of ten, and 2 and 5 times them on a short axis.
    Log {
        major: Vec<f64>,
        minor: Vec<f64>,
        /// Labels as plain numbers (0.2, 1, 5) rather than powers of ten.
        plain: bool,
    },
}

impl Axis {
    fn new(lo: f64, hi: f64, ticks: Ticks) -> Axis {
        let (lo, hi) = ordered(lo, hi, 1.0);
        Axis {
            range: (lo..hi).into(),
            ticks,
        }
    }

    /// A linear axis covering `lo..hi` exactly.
    pub fn linear(lo: f64, hi: f64) -> Axis {
        Axis::new(lo, hi, Ticks::Plotters)
    }

    /// A linear axis for whole numbers (layers, depths): ticks at whole numbers.
    pub fn integers(lo: f64, hi: f64) -> Axis {
        Axis::new(lo, hi, Ticks::Whole)
    }

    /// A linear axis for whole numbers with a margin of `pad` of the span.
    pub fn integers_padded(min: f64, max: f64, pad: f64) -> Axis {
        let (min, max) = ordered(min, max, 1.0);
        let margin = (max - min) * pad;
        Axis::integers(min - margin, max + margin)
    }

    /// A logarithmic axis for data whose log10 values span `lo..hi`: widened to
    /// whole decades (at least one), ticks at powers of ten (every k-th decade
    /// when there are many), and at 2 and 5 times them when there are few.
    pub fn log10(lo: f64, hi: f64) -> Axis {
        let (lo, hi) = ordered(lo, hi, 1.0);
        let (lo, hi) = (lo.floor(), hi.ceil().max(lo.floor() + 1.0));
        let decades = hi - lo;
        let (major, minor) = if decades <= 2.0 {
            let mut ticks = Vec::new();
            let mut exponent = lo;
            while exponent <= hi {
                for m in [1.0f64, 2.0, 5.0] {
                    let t = exponent + m.log10();
                    if t <= hi + 1e-9 {
                        ticks.push(t);
                    }
                }
                exponent += 1.0;
            }
            let minor = (lo as i64..hi as i64)
                .flat_map(|e| (1..10).map(move |m| e as f64 + (m as f64).log10()))
                .collect();
            (ticks, minor)
        } else {
            let step = nice_step(decades / 7.0).max(1.0);
            let ticks = multiples(lo, hi, step);
            let minor = if step <= 1.0 {
                (lo as i64..hi as i64)
                    .flat_map(|e| (2..10).map(move |m| e as f64 + (m as f64).log10()))
                    .collect()
            } else {
                multiples(lo, hi, nice_step(step / 4.0).max(1.0))
            };
            (ticks, minor)
        };
        let plain = decades <= 2.0 && lo >= -3.0 && hi <= 4.0;
        Axis::new(
            lo,
            hi,
            Ticks::Log {
                major,
                minor,
                plain,
            },
        )
    }

    #[cfg(test)]
    pub(crate) fn bounds(&self) -> (f64, f64) {
        let range = self.range.range();
        (range.start, range.end)
    }
}

/// A tick label of a log axis at log10 value `v`.
fn log_label(v: f64, plain: bool) -> String {
    if !plain && (v - v.round()).abs() < 1e-9 {
        format!("10{}", superscript(v.round() as i64))
    } else {
        let value = 10f64.powf(v);
        let digits = (-(value.log10().floor()) as i64).max(0) as usize;
        format!("{value:.digits$}")
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.range.map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        match &self.ticks {
            Ticks::Plotters => self.range.key_points(hint),
            Ticks::Whole => {
                let Range { start, end } = self.range.range();
                RangedCoordi64::from(start.ceil() as i64..end.floor() as i64)
                    .key_points(hint)
                    .into_iter()
                    .map(|v| v as f64)
                    .collect()
            }
            Ticks::Log { major, minor, .. } => {
                if hint.weight().allow_light_points() {
                    minor.clone()
                } else {
                    major.clone()
                }
            }
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.range()
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, value: &f64) -> String {
        match &self.ticks {
            Ticks::Plotters => <RangedCoordf64 as ValueFormatter<f64>>::format(value),
            Ticks::Whole => {
                <RangedCoordi64 as ValueFormatter<i64>>::format(&(value.round() as i64))
            }
            Ticks::Log { plain, .. } => log_label(*value, *plain),
        }
    }
}

/// The smallest and the largest of `values` (NaN ignored), the range an axis
/// must show; (∞, −∞) when there are none.
pub fn span(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

/// An exponent in Unicode superscript digits: 10⁻³⁰.
pub fn superscript(exponent: i64) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let mut out = String::new();
    if exponent < 0 {
        out.push('⁻');
    }
    for c in exponent.unsigned_abs().to_string().chars() {
        out.push(DIGITS[c.to_digit(10).unwrap_or(0) as usize]);
    }
    out
}

/// `lo < hi`, both finite: an empty or degenerate range is widened by `width`.
fn ordered(lo: f64, hi: f64, width: f64) -> (f64, f64) {
    let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
        (true, true) => (lo.min(hi), lo.max(hi)),
        (true, false) => (lo, lo),
        (false, true) => (hi, hi),
        (false, false) => (0.0, 0.0),
    };
    if hi > lo {
        (lo, hi)
    } else {
        (lo - width / 2.0, hi + width / 2.0)
    }
}

/// The 1, 2 or 5 times a power of ten nearest above `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw.is_nan() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Multiples of `step` inside `lo..=hi`.
fn multiples(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::coord::ranged1d::{BoldPoints, LightPoints};

    /// The ticks the mesh asks for: at most 11 labelled (plotters' default)
    /// and twice as many light lines.
    fn ticks(a: &Axis) -> (Vec<f64>, Vec<f64>) {
        (
            a.key_points(BoldPoints(11)),
            a.key_points(LightPoints::new(11, 22)),
        )
    }

    #[test]
    fn linear_ticks_are_round() {
        let a = Axis::linear(0.0, 100.0);
        let tens: Vec<f64> = (0..=10).map(|k| k as f64 * 10.0).collect();
        assert_eq!(ticks(&a).0, tens);
        let b = Axis::linear(0.0, 1.0);
        let labels: Vec<String> = ticks(&b).0.iter().map(|v| b.format_ext(v)).collect();
        assert_eq!(labels[..3], ["0.0", "0.1", "0.2"]);
        assert_eq!(labels.last().map(String::as_str), Some("1.0"));
    }

    #[test]
    fn integer_ticks_are_whole() {
        let a = Axis::integers(0.0, 3.0);
        assert_eq!(
            ticks(&a),
            (vec![0.0, 1.0, 2.0, 3.0], vec![0.0, 1.0, 2.0, 3.0])
        );
        assert_eq!(a.format_ext(&2.0), "2");
        let padded = Axis::integers_padded(0.0, 100.0, 0.04);
        assert_eq!(padded.bounds(), (-4.0, 104.0));
        assert!(
            ticks(&padded)
                .0
                .iter()
                .all(|t| t.fract() == 0.0 && *t >= 0.0)
        );
    }

    #[test]
    fn log_ticks_are_powers_of_ten() {
        let a = Axis::log10(-30.0, 2.3);
        assert_eq!(a.bounds(), (-30.0, 3.0));
        let (major, _) = ticks(&a);
        assert!(major.iter().all(|t| t.fract() == 0.0));
        assert!(major.len() <= 8, "{major:?}");
        assert_eq!(a.format_ext(&-30.0), "10⁻³⁰");
        assert_eq!(a.format_ext(&0.0), "10⁰");
        let few = Axis::log10(0.0, 0.004);
        assert_eq!(few.bounds(), (0.0, 1.0));
        assert_eq!(few.format_ext(&2f64.log10()), "2");
        assert_eq!(few.format_ext(&0.0), "1");
        assert_eq!(
            Axis::log10(-1.0, 0.0).format_ext(&(-1.0 + 2f64.log10())),
            "0.2"
        );
    }

    #[test]
    fn degenerate_ranges_are_widened() {
        let a = Axis::linear(5.0, 5.0);
        assert!(a.bounds().0 < 5.0 && a.bounds().1 > 5.0);
        let b = Axis::linear(f64::NAN, f64::NAN);
        assert!(b.bounds().0 < b.bounds().1);
    }
}
