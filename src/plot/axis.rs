//! Axes with ticks chosen here rather than by plotters: linear axes with "nice"
//! steps, and logarithmic axes whose data are given as log10 values (so that
//! 1e-300 and 1e+50 fit on one axis) and whose ticks read 10⁻³⁰ … 10⁵.

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use std::ops::Range;

/// A 1-D axis over `lo..hi` (in log10 units when `log`), with its ticks.
#[derive(Debug, Clone)]
pub struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    minor: Vec<f64>,
    log: bool,
    /// Decimals of linear tick labels.
    decimals: usize,
    /// Log ticks as plain numbers (0.2, 1, 5) rather than powers of ten.
    plain: bool,
}

impl Axis {
    /// A linear axis covering `lo..hi` exactly, ticks at a 1-2-5 step.
    pub fn linear(lo: f64, hi: f64) -> Axis {
        Axis::stepped(lo, hi, 0.0)
    }

    /// A linear axis for whole numbers (layers, depths): ticks at whole steps.
    pub fn integers(lo: f64, hi: f64) -> Axis {
        Axis::stepped(lo, hi, 1.0)
    }

    /// A linear axis for whole numbers with a margin of `pad` of the span.
    pub fn integers_padded(min: f64, max: f64, pad: f64) -> Axis {
        let (min, max) = ordered(min, max, 1.0);
        let margin = (max - min) * pad;
        Axis::integers(min - margin, max + margin)
    }

    fn stepped(lo: f64, hi: f64, min_step: f64) -> Axis {
        let (lo, hi) = ordered(lo, hi, 1.0);
        let step = nice_step((hi - lo) / 6.0).max(min_step);
        let ticks = multiples(lo, hi, step);
        let minor_step = if step / 2.0 >= min_step {
            step / 2.0
        } else {
            step
        };
        let minor = multiples(lo, hi, minor_step);
        let decimals = if step >= 1.0 {
            0
        } else {
            (-step.log10().floor()) as usize
        };
        Axis {
            lo,
            hi,
            ticks,
            minor,
            log: false,
            decimals,
            plain: true,
        }
    }

    /// A logarithmic axis for data whose log10 values span `lo..hi`: widened to
    /// whole decades (at least one), ticks at powers of ten (every k-th decade
    /// when there are many), and at 2 and 5 times them when there are few.
    pub fn log10(lo: f64, hi: f64) -> Axis {
        let (lo, hi) = ordered(lo, hi, 1.0);
        let (lo, hi) = (lo.floor(), hi.ceil().max(lo.floor() + 1.0));
        let decades = hi - lo;
        let (ticks, minor) = if decades <= 2.0 {
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
            let minor_step = if step <= 1.0 {
                1.0
            } else {
                nice_step(step / 4.0).max(1.0)
            };
            let minor = if step <= 1.0 {
                (lo as i64..hi as i64)
                    .flat_map(|e| (2..10).map(move |m| e as f64 + (m as f64).log10()))
                    .collect()
            } else {
                multiples(lo, hi, minor_step)
            };
            (ticks, minor)
        };
        Axis {
            lo,
            hi,
            ticks,
            minor,
            log: true,
            decimals: 0,
            plain: decades <= 2.0 && lo >= -3.0 && hi <= 4.0,
        }
    }

    #[cfg(test)]
    pub(crate) fn bounds(&self) -> (f64, f64) {
        (self.lo, self.hi)
    }

    fn label(&self, v: f64) -> String {
        if self.log {
            if !self.plain && (v - v.round()).abs() < 1e-9 {
                format!("10{}", superscript(v.round() as i64))
            } else {
                let value = 10f64.powf(v);
                let digits = (-(value.log10().floor()) as i64).max(0) as usize;
                format!("{value:.digits$}")
            }
        } else {
            let text = format!("{:.*}", self.decimals, v);
            if text.starts_with('-') && text.trim_start_matches(['-', '0', '.']).is_empty() {
                text[1..].to_string()
            } else {
                text.replace('-', "−")
            }
        }
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let fraction = (value - self.lo) / (self.hi - self.lo);
        let pixels = (limit.1 - limit.0) as f64;
        limit.0 + (fraction * pixels).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, value: &f64) -> String {
        self.label(*value)
    }
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

    #[test]
    fn linear_ticks_are_round() {
        let a = Axis::linear(0.0, 100.0);
        assert_eq!(a.ticks, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(a.label(40.0), "40");
        let b = Axis::linear(0.0, 1.0);
        assert_eq!(b.label(0.2), "0.2");
    }

    #[test]
    fn integer_ticks_are_whole() {
        let a = Axis::integers(0.0, 3.0);
        assert_eq!(a.ticks, [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(a.minor, [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(a.label(2.0), "2");
    }

    #[test]
    fn log_ticks_are_powers_of_ten() {
        let a = Axis::log10(-30.0, 2.3);
        assert_eq!(a.bounds(), (-30.0, 3.0));
        assert!(a.ticks.iter().all(|t| t.fract() == 0.0));
        assert!(a.ticks.len() <= 8, "{:?}", a.ticks);
        assert_eq!(a.label(-30.0), "10⁻³⁰");
        assert_eq!(a.label(0.0), "10⁰");
        let few = Axis::log10(0.0, 0.004);
        assert_eq!(few.bounds(), (0.0, 1.0));
        assert_eq!(few.label(2f64.log10()), "2");
        assert_eq!(few.label(0.0), "1");
        assert_eq!(Axis::log10(-1.0, 0.0).label(-1.0 + 2f64.log10()), "0.2");
    }

    #[test]
    fn degenerate_ranges_are_widened() {
        let a = Axis::linear(5.0, 5.0);
        assert!(a.bounds().0 < 5.0 && a.bounds().1 > 5.0);
        let b = Axis::linear(f64::NAN, f64::NAN);
        assert!(b.bounds().0 < b.bounds().1);
    }
}
