//! `kind: kurtosis_mc` (beyond the paper): simulate the setting of Proposition 3
//! and measure what it predicts. Inputs are He random vectors (iid standard
//! normal, so κ₀ = 3 and c₀ = 0) of the network's width; y⁽⁰⁾ = x and
//! y⁽ˡ⁾ = W⁽ˡ⁾ φ_a(y⁽ˡ⁻¹⁾) for l = 1..depth, W⁽ˡ⁾ square. Per layer, pooled over
//! inputs and networks: the variance σ², the kurtosis κ_l = E[y⁴]/E[y²]² and
//! c_l/σ⁴ = (E[y_i² y_j²] − E[y²]²)/E[y²]² (pairs of distinct units), each with a
//! delta-method standard error over networks (networks are independent; the
//! inputs of one network are not independent of each other through its weights)
//! and a 95% normal interval, beside the recursion's prediction.

use super::columns::{self as col, columns};
use super::context::one_network;
use super::{Context, Job, Point, PointKey, Sweep, Todo, one_job_per_point};
use crate::config::check;
use crate::init::dist::WeightDist;
use crate::init::{Initializer, initialize, member_streams, schemes::draw_stack};
use crate::net::{Arch, Norm};
use crate::results::{Cell, Table};
use crate::seed::Key;
use crate::theory::{RecursionInput, kurtosis_recursion};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KurtosisPoint {
    #[serde(default = "default_init")]
    pub init: Initializer,
    pub width: usize,
    pub depth: usize,
    #[serde(default)]
    pub slope: f64,
    pub networks: usize,
    /// Inputs per network.
    #[serde(default = "default_samples")]
    pub samples: usize,
}

fn default_init() -> Initializer {
    Initializer::He(WeightDist::Normal)
}
fn default_samples() -> usize {
    1024
}

impl KurtosisPoint {
    fn check(&self) -> Result<()> {
        if self.width < 2 {
            bail!("`width` must be at least 2 (c_l needs two distinct units)");
        }
        check::at_least("depth", self.depth as u64, 1)?;
        if self.networks < 2 {
            bail!("`networks` must be at least 2 (the standard errors are over networks)");
        }
        check::at_least("samples", self.samples as u64, 1)?;
        check::network_slope(self.slope)?;
        if self.init.needs_data() {
            bail!(
                "`init: {}` needs a dataset; kurtosis_mc uses Gaussian inputs",
                self.init.name()
            );
        }
        self.init.check_arch(&self.arch())
    }

    /// Bytes one member needs: its Gaussian inputs and a few activations of
    /// them (`[S, width]` each), its weights, and what initialising it takes.
    fn bytes_per_member(&self) -> f64 {
        let (s, w, d) = (self.samples as f64, self.width as f64, self.depth as f64);
        4.0 * (8.0 * s * w + d * w * w) + self.init.init_bytes_per_member(&self.arch())
    }

    /// Bytes of the per-network moments kept for the whole point (three f64 per
    /// layer and network).
    fn bytes_of_moments(&self) -> f64 {
        24.0 * (self.depth as f64 + 1.0) * self.networks as f64
    }

    fn arch(&self) -> Arch {
        // depth square layers, all of fan-in `width`
        Arch {
            input: self.width,
            width: self.width,
            depth: self.depth - 1,
            classes: self.width,
            slope: self.slope,
            norm: Norm::None,
        }
    }

    /// Names the networks and inputs drawn: what shapes them, not how many.
    pub fn family_key(&self) -> Result<Key> {
        self.init
            .write_key(Key::new("kurtosis_mc-networks"))?
            .uint("width", self.width as u64)
            .uint("depth", self.depth as u64)
            .float("slope", self.slope)
    }
}

impl PointKey for KurtosisPoint {
    fn key(&self) -> Result<Key> {
        Ok(Key::new("kurtosis_mc")
            .key("family", &self.family_key()?)
            .uint("networks", self.networks as u64)
            .uint("samples", self.samples as u64))
    }
}

/// Per layer 0..=depth and per network: (E[y²], E[y⁴], E[y_i²y_j²]) over its inputs.
pub struct PooledMoments {
    pub layers: usize,
    pub networks: usize,
    /// `[layer][network]` flattened.
    pub m2: Vec<f64>,
    pub m4: Vec<f64>,
    pub m22: Vec<f64>,
}

/// Simulates `networks` networks of `init` on `samples` Gaussian inputs each,
/// `ensemble` networks at a time.
pub fn simulate(p: &KurtosisPoint, seed: u64, ensemble: usize) -> Result<PooledMoments> {
    let _guard = tch::no_grad_guard();
    let arch = p.arch();
    let layers = p.depth + 1;
    let mut out = PooledMoments {
        layers,
        networks: p.networks,
        m2: vec![0.0; layers * p.networks],
        m4: vec![0.0; layers * p.networks],
        m22: vec![0.0; layers * p.networks],
    };
    let half = (p.width / 2) as i64;
    let family = p.family_key()?;
    let mut done = 0;
    while done < p.networks {
        let k = ensemble.min(p.networks - done);
        let mut streams = member_streams(seed, &family, done, k);
        let (net, _) = initialize(&p.init, &arch, &mut streams, None)?;
        let x = draw_stack(&mut streams, WeightDist::Normal, p.samples, p.width); // [K, S, w]
        let mut record = |l: usize, y: &Tensor| {
            let y2 = y.to_kind(Kind::Double).square(); // [K, S, w]
            let dims = [1i64, 2];
            let m2 = y2.mean_dim(dims.as_slice(), false, Kind::Double);
            let m4 = y2.square().mean_dim(dims.as_slice(), false, Kind::Double);
            let even = y2
                .narrow(2, 0, 2 * half)
                .view([k as i64, p.samples as i64, half, 2]);
            let m22 = (even.select(3, 0) * even.select(3, 1)).mean_dim(
                dims.as_slice(),
                false,
                Kind::Double,
            );
            for (target, t) in [(&mut out.m2, m2), (&mut out.m4, m4), (&mut out.m22, m22)] {
                let v = Vec::<f64>::try_from(t).expect("f64");
                target[l * p.networks + done..l * p.networks + done + k].copy_from_slice(&v);
            }
        };
        record(0, &x);
        let mut y = x;
        for (l, w) in net.weights.iter().enumerate() {
            let a = if p.slope == 0.0 {
                y.relu()
            } else {
                y.prelu(&Tensor::from_slice(&[p.slope as f32]))
            };
            y = a.bmm(&w.transpose(1, 2)); // [K, S, w]
            record(l + 1, &y);
        }
        done += k;
    }
    Ok(out)
}

/// A ratio-of-means estimate with its delta-method standard error over networks.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    pub value: f64,
    pub se: f64,
}

impl PooledMoments {
    /// σ², κ and c/σ⁴ of layer l.
    pub fn estimates(&self, l: usize) -> (Estimate, Estimate, Estimate) {
        let n = self.networks as f64;
        let slice = |v: &Vec<f64>| v[l * self.networks..(l + 1) * self.networks].to_vec();
        let (a, b, c) = (slice(&self.m2), slice(&self.m4), slice(&self.m22));
        let mean = |v: &[f64]| v.iter().sum::<f64>() / n;
        let (m2, m4, m22) = (mean(&a), mean(&b), mean(&c));
        let se = |grad: [f64; 3]| -> f64 {
            let ss: f64 = (0..self.networks)
                .map(|i| {
                    (grad[0] * (a[i] - m2) + grad[1] * (b[i] - m4) + grad[2] * (c[i] - m22)).powi(2)
                })
                .sum();
            (ss / (n - 1.0) / n).sqrt()
        };
        let var = Estimate {
            value: m2,
            se: se([1.0, 0.0, 0.0]),
        };
        let kurt = Estimate {
            value: m4 / (m2 * m2),
            se: se([-2.0 * m4 / m2.powi(3), 1.0 / (m2 * m2), 0.0]),
        };
        let cov = Estimate {
            value: m22 / (m2 * m2) - 1.0,
            se: se([-2.0 * m22 / m2.powi(3), 0.0, 1.0 / (m2 * m2)]),
        };
        (var, kurt, cov)
    }
}

/// The columns of a kurtosis_mc table.
pub const COLUMNS: &[&str] = columns! {
    WORK_UNIT, INIT, WIDTH, DEPTH, SLOPE, NETWORKS, SAMPLES, SEED, LAYER, VARIANCE, VARIANCE_SE,
    KURTOSIS, KURTOSIS_SE, KURTOSIS_LO, KURTOSIS_HI, COV_SQ, COV_SQ_SE, COV_SQ_LO, COV_SQ_HI,
    KAPPA_W, THEORY_KURTOSIS, THEORY_COV_SQ,
};

impl Point for KurtosisPoint {
    const KIND: super::Kind = super::Kind::KurtosisMc;
    type State = ();

    fn validate(&self) -> Result<()> {
        self.check()
    }
    fn state(_: &[Self]) {}
    fn jobs(sweep: &Sweep<Self>) -> Vec<Job> {
        one_job_per_point(&sweep.points, |p| {
            let label = format!(
                "{} w{} d{} slope {} ({} networks)",
                p.init.name(),
                p.width,
                p.depth,
                p.slope,
                p.networks
            );
            // in f64: the product of absurd sizes would overflow usize
            let (networks, samples) = (p.networks as f64, p.samples as f64);
            (
                label,
                2e-9 * networks * samples * p.depth as f64 * (p.width as f64).powi(2),
            )
        })
    }
    fn prepare(sweep: &Sweep<Self>, ctx: &mut Context) -> Result<serde_json::Value> {
        // What cannot fit even one network, or the moments of all of them, is
        // refused before any unit runs.
        for p in &sweep.points {
            let what = one_network(&p.init, p.width, p.depth, format!("{} samples", p.samples));
            ctx.check_fits(&what, p.bytes_per_member(), "width, depth or samples")?;
            let what = format!(
                "the moments of {} networks over {} layers",
                p.networks,
                p.depth + 1
            );
            ctx.check_fits(&what, p.bytes_of_moments(), "networks or depth")?;
        }
        Ok(serde_json::json!({ "inputs": "iid standard normal (kappa0 = 3, c0 = 0)" }))
    }
    fn run_job(sweep: &Sweep<Self>, mut todo: Todo) -> Result<()> {
        let p = sweep.point_of(todo.job);
        let ctx = &todo.ctx;
        let unit = todo.unit();
        let per_member = p.bytes_per_member().max(1.0);
        let ensemble = ((ctx.memory_budget as f64 / per_member) as usize).clamp(1, 1000);
        let moments = simulate(p, ctx.seed, ensemble)?;
        let kappa_w = p.init.weight_kurtosis();
        let theory = kappa_w.map(|kw| {
            kurtosis_recursion(&RecursionInput {
                widths: vec![p.width; p.depth],
                slope: p.slope,
                kappa_w: kw,
                kappa0: 3.0,
                c0: 0.0,
            })
            .expect("validated")
        });
        let mut table = Table::new();
        for l in 0..moments.layers {
            let (var, kurt, cov) = moments.estimates(l);
            let (tk, tc) = match &theory {
                Some(t) => (Cell::Float(t[l].kurtosis), Cell::Float(t[l].cov_sq)),
                None => (Cell::NullFloat, Cell::NullFloat),
            };
            table.push(vec![
                (col::WORK_UNIT, unit.id.as_str().into()),
                (col::INIT, p.init.name().into()),
                (col::WIDTH, p.width.into()),
                (col::DEPTH, p.depth.into()),
                (col::SLOPE, p.slope.into()),
                (col::NETWORKS, p.networks.into()),
                (col::SAMPLES, p.samples.into()),
                (col::SEED, ctx.seed.into()),
                (col::LAYER, l.into()),
                (col::VARIANCE, var.value.into()),
                (col::VARIANCE_SE, var.se.into()),
                (col::KURTOSIS, kurt.value.into()),
                (col::KURTOSIS_SE, kurt.se.into()),
                (col::KURTOSIS_LO, (kurt.value - 1.96 * kurt.se).into()),
                (col::KURTOSIS_HI, (kurt.value + 1.96 * kurt.se).into()),
                (col::COV_SQ, cov.value.into()),
                (col::COV_SQ_SE, cov.se.into()),
                (col::COV_SQ_LO, (cov.value - 1.96 * cov.se).into()),
                (col::COV_SQ_HI, (cov.value + 1.96 * cov.se).into()),
                (
                    col::KAPPA_W,
                    kappa_w.map(Cell::Float).unwrap_or(Cell::NullFloat),
                ),
                (col::THEORY_KURTOSIS, tk),
                (col::THEORY_COV_SQ, tc),
            ]);
        }
        todo.finish_unit(table)
    }
}
