//! `initlab bench`: throughput against the machine's own matmul peak, measured in
//! one run, so that ratios (not absolute seconds) say how close initlab comes to
//! what the hardware allows. Sections: raw matmul/bmm rates, the Fig. 2 forward
//! pass with statistics (and where its time goes), the same networks one at a
//! time, MetaInit, and ensemble training.

use crate::data::{DataSource, Dataset, DatasetName, Normalization};
use crate::experiment::variance::{layer_moments, layer_moments_tch};
use crate::init::dist::WeightDist;
use crate::init::{Initializer, MetaInitParams, initialize, member_streams};
use crate::net::{Arch, Ensemble, Norm};
use crate::seed::Key;
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Kind, Tensor};

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f(); // warm up
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed().as_secs_f64() / reps as f64
}

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, tch::Device::Cpu))
}

/// GFLOP/s of the machine's matmul and bmm at the shapes that matter.
pub struct Peaks {
    pub square: f64,
    pub first_layer: f64,
    pub hidden_bmm: f64,
}

pub fn peaks(samples: i64, features: i64) -> Peaks {
    let _g = tch::no_grad_guard();
    let a = randn(&[2048, 2048]);
    let b = randn(&[2048, 2048]);
    let t = time(3, || {
        let _ = a.matmul(&b);
    });
    let square = 2.0 * 2048f64.powi(3) / t / 1e9;
    let x = randn(&[samples, features]);
    let w = randn(&[features, 2500]);
    let t = time(2, || {
        let _ = x.matmul(&w);
    });
    let first_layer = 2.0 * (samples * features * 2500) as f64 / t / 1e9;
    let wb = randn(&[250, 10, 10]);
    let hb = randn(&[250, 10, 2048]);
    let t = time(20, || {
        let _ = wb.bmm(&hb);
    });
    let hidden_bmm = 2.0 * (250 * 10 * 10 * 2048) as f64 / t / 1e9;
    println!(
        "machine matmul rates (libtorch, {} threads):",
        tch::get_num_threads()
    );
    println!("  2048^3 sgemm                          {square:8.1} GFLOP/s");
    println!("  [{samples}, {features}] x [{features}, 2500] matmul    {first_layer:8.1} GFLOP/s");
    println!("  bmm [250, 10, 10] x [250, 10, 2048]     {hidden_bmm:8.1} GFLOP/s");
    Peaks {
        square,
        first_layer,
        hidden_bmm,
    }
}

/// The Fig. 2 forward pass: `networks` width-10, depth-100 He networks over the
/// dataset's training inputs with per-layer statistics of unit 0, through the fused
/// kernel; the same through libtorch's bmm + ReLU path (the vectorised approach a
/// careful PyTorch script takes) on a part of them; and where the time goes.
pub fn fig2(data: &Dataset, networks: usize, ensemble: usize, peaks: &Peaks) -> Result<f64> {
    let x = &data.train_x;
    let n = data.train_len() as f64;
    let d = data.features();
    let arch = relu_arch(data.name, 10, 100);
    let first_flop = 2.0 * n * d as f64 * 10.0;
    let hidden_flop = 2.0 * n * (99.0 * 100.0 + 10.0);
    let flop = first_flop + hidden_flop;
    println!(
        "Fig. 2 statistics on {} ({} x {}), width 10, depth 100, ensembles of {ensemble}:",
        data.name, n, d
    );
    let run =
        |count: usize, moments: MomentsFn| per_network(&arch, x, "bench", count, ensemble, moments);
    let per = run(networks, layer_moments)?;
    println!(
        "  initlab: {networks} networks in {:.1} s: {:.1} networks/s, {:.1} GFLOP/s; 1,000 networks in {:.1} s",
        per * networks as f64,
        1.0 / per,
        flop / per / 1e9,
        1000.0 * per
    );
    let part = ensemble.min(networks);
    let per_bmm = run(part, layer_moments_tch)?;
    println!(
        "  libtorch bmm + ReLU path ({part} networks): {:.3} s per network, {:.1} GFLOP/s; 1,000 networks in {:.1} s -> initlab is {:.2}x its throughput",
        per_bmm,
        flop / per_bmm / 1e9,
        1000.0 * per_bmm,
        per_bmm / per
    );
    let bound = first_flop / peaks.first_layer / 1e9 + hidden_flop / peaks.hidden_bmm / 1e9;
    println!(
        "  at this machine's matmul and bmm rates the arithmetic alone needs {bound:.3} s per network; initlab takes {per:.3} s ({:.2}x that)",
        bound / per
    );

    // Where the time goes, on one ensemble and one chunk of inputs.
    let _g = tch::no_grad_guard();
    let k = ensemble.min(networks) as i64;
    let net = he_networks(&arch, "bench", 0, k as usize)?;
    let chunk = x.narrow(
        0,
        0,
        (2 * crate::experiment::variance::CHUNK).min(x.size()[0]),
    );
    let nc = chunk.size()[0];
    let w0 = net.weights[0].reshape([k * 10, d as i64]);
    let b0 = net.biases[0].reshape([k * 10, 1]);
    let t_first = time(3, || {
        let _ = b0.addmm(&w0, &chunk.tr());
    });
    let t_all = time(3, || {
        let _ = crate::experiment::variance::unit0_moments_fused(&net, &chunk);
    });
    println!(
        "  one ensemble of {k} on {nc} inputs: first layer (libtorch GEMM) {:.0}%, hidden layers with their statistics (fused kernel) {:.0}%",
        100.0 * t_first / t_all,
        100.0 * (t_all - t_first) / t_all
    );
    Ok(1.0 / per)
}

/// The same networks one at a time (K = 1) through libtorch, per network.
pub fn one_at_a_time(data: &Dataset, networks: usize) -> Result<f64> {
    let arch = relu_arch(data.name, 10, 100);
    let per = per_network(
        &arch,
        &data.train_x,
        "bench",
        networks,
        1,
        layer_moments_tch,
    )?;
    println!("  one network at a time through libtorch (K = 1): {per:.2} s per network");
    Ok(per)
}

/// How the Fig. 2 statistics are computed: [`layer_moments`] (the fused kernel
/// where it applies) or [`layer_moments_tch`] (libtorch alone).
type MomentsFn = fn(&Ensemble, &Tensor, bool, bool) -> crate::stats::Moments;

/// Seconds per network of the Fig. 2 statistics (unit 0 of every layer) over `x`,
/// for members `0..count` of the He family `label`, drawn and run in ensembles of
/// `ensemble`; drawing the networks is timed too.
fn per_network(
    arch: &Arch,
    x: &Tensor,
    label: &str,
    count: usize,
    ensemble: usize,
    moments: MomentsFn,
) -> Result<f64> {
    let start = Instant::now();
    let mut done = 0;
    while done < count {
        let k = ensemble.min(count - done);
        let net = he_networks(arch, label, done, k)?;
        let _ = moments(&net, x, false, false);
        done += k;
    }
    Ok(start.elapsed().as_secs_f64() / count as f64)
}

/// MetaInit seconds per step for an ensemble of k (a few steps timed, the He
/// start and the final quotient included).
pub fn metainit_step(arch: &Arch, k: usize, steps: usize) -> Result<f64> {
    Ok(metainit_total(arch, k, steps)? / (steps + 1) as f64)
}

/// Seconds for MetaInit of `steps` steps on an ensemble of k, set-up included.
fn metainit_total(arch: &Arch, k: usize, steps: usize) -> Result<f64> {
    let mut streams = member_streams(1, &Key::new("bench-metainit"), 0, k);
    let p = MetaInitParams {
        steps,
        max_restarts: 0,
        ..Default::default()
    };
    let start = Instant::now();
    let _ = initialize(&Initializer::MetaInit(p), arch, &mut streams, None)?;
    Ok(start.elapsed().as_secs_f64())
}

/// MetaInit per member at ensemble size k, extrapolated to 500 steps: the steps
/// timed as the difference of a run of `steps` and one of none (the He start and
/// the final quotient, counted once).
pub fn metainit(data: DatasetName, k: usize, steps: usize) -> Result<f64> {
    let arch = relu_arch(data, 10, 100);
    let features = arch.input;
    let fixed = metainit_total(&arch, k, 0)?;
    let per_step = ((metainit_total(&arch, k, steps)? - fixed) / steps as f64).max(0.0);
    let per_1000 = (per_step * 500.0 + fixed) * 1000.0 / k as f64;
    println!(
        "MetaInit, {features} inputs, width 10, depth 100, ensemble of {k}: {per_step:.3} s per step (+{fixed:.2} s start); 1,000 networks x 500 steps: {per_1000:.0} s"
    );
    Ok(per_1000)
}

/// Training: seconds per member for `steps` Adam steps in an ensemble of `k`.
pub fn training(data: &Dataset, width: usize, depth: usize, k: usize, steps: usize) -> Result<f64> {
    let arch = relu_arch(data.name, width, depth);
    let net = he_networks(&arch, "bench-train", 0, k)?;
    let shuffles = member_streams(1, &Key::new("bench-shuffle"), 0, k);
    let opts = crate::train::TrainOptions::adam(steps, 90, vec![1e-4; k]);
    let start = Instant::now();
    let _ = crate::train::train(&net, data, shuffles, &opts)?;
    let total = start.elapsed().as_secs_f64();
    let per_member_500 = total / k as f64 * 500.0 / steps as f64;
    println!(
        "training width {width}, depth {depth}, ensemble of {k}, {steps} steps: {total:.1} s; {per_member_500:.3} s per member per 500 steps"
    );
    Ok(per_member_500)
}

/// Wall time of running a config (YAML text, of synthetic datasets) into a
/// temporary run directory.
fn timed_run(yaml: &str) -> Result<f64> {
    let config = crate::config::Config::parse(yaml, "bench")?;
    let dir = tempfile_dir()?;
    let opts = crate::experiment::sweep::RunOptions {
        out: Some(dir.join("run")),
        data_dir: None,
        threads: tch::get_num_threads().max(1) as usize,
        shard: None,
        memory_budget: (crate::experiment::context::available_memory() as f64 * 0.6) as u64,
        allow_data_change: false,
    };
    let start = Instant::now();
    crate::experiment::sweep::run(&config, &opts)?;
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(secs)
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("initlab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The paper's experiments at the paper's scale, measured on parts of them and
/// extrapolated: synthetic inputs of CIFAR-10's shape (50,000 × 3,072) and
/// MNIST's (60,000 × 784), every experiment's own code path, and the counts
/// (networks, runs, depths, steps) of the paper-scale configs.
pub fn paper_scale(networks: usize) -> Result<()> {
    let plan = PaperPlan::from_configs()?;
    println!("The paper at the paper's scale on this machine (measured on parts, extrapolated):");
    let fig2 = paper_fig2(&plan.fig2, networks)?;
    let narrow = paper_narrow(&plan)?;
    let wide = paper_wide(&plan.fig3_wide)?;
    println!(
        "  the whole paper (Figs. 1, 2, 3): about {:.1} hours",
        (fig2 + narrow + wide) / 3600.0
    );
    Ok(())
}

/// What the paper-scale configs (`crate::scales::PAPER`) ask for, which the
/// estimate multiplies its timings by.
struct PaperPlan {
    fig2: VariancePlan,
    /// Fig. 1 on MNIST (the estimate runs it on both datasets' shapes).
    fig1: TrainPlan,
    fig3_narrow: TrainPlan,
    fig3_wide: TrainPlan,
}

/// A variance config: how many networks of one shape.
struct VariancePlan {
    width: usize,
    depth: usize,
    /// Networks of the initialisers drawn at random (ZerO's included).
    random: usize,
    metainit: usize,
    /// MetaInit's settings (its steps), if it runs.
    metainit_params: Option<MetaInitParams>,
}

/// A training config: its depths and the runs at each, which train together.
struct TrainPlan {
    /// The config's text, for the estimates that run it.
    text: &'static str,
    depths: Vec<usize>,
    runs_per_depth: usize,
    metainit_per_depth: usize,
    metainit_params: Option<MetaInitParams>,
    /// Adam steps of every run.
    steps: usize,
}

impl PaperPlan {
    fn from_configs() -> Result<PaperPlan> {
        Ok(PaperPlan {
            fig2: VariancePlan::of("fig2-cifar10")?,
            fig1: TrainPlan::of("fig1-mnist")?,
            fig3_narrow: TrainPlan::of("fig3-width10")?,
            fig3_wide: TrainPlan::of("fig3-width200")?,
        })
    }
}

/// The text of the paper-scale config `stem` and its sweep points of type `T`.
fn paper_points<T: crate::experiment::Point>(stem: &str) -> Result<(&'static str, Vec<T>)> {
    let Some((_, text)) = crate::scales::PAPER
        .iter()
        .find(|(file, _)| file.trim_end_matches(".yaml") == stem)
    else {
        bail!("no paper-scale config {stem}");
    };
    let config = crate::config::Config::parse(text, stem)?;
    let mut points = Vec::new();
    for exp in &config.experiments {
        points.extend(crate::experiment::Sweep::<T>::from_config(exp)?.points);
    }
    Ok((text, points))
}

/// MetaInit's settings if `init` is MetaInit.
fn metainit_params(init: &Initializer) -> Option<MetaInitParams> {
    match init {
        Initializer::MetaInit(p) => Some(*p),
        _ => None,
    }
}

impl VariancePlan {
    fn of(stem: &str) -> Result<VariancePlan> {
        let (_, points) = paper_points::<crate::experiment::variance::VariancePoint>(stem)?;
        let Some(first) = points.first() else {
            bail!("{stem} has no sweep points");
        };
        let mut plan = VariancePlan {
            width: first.width,
            depth: first.depth,
            random: 0,
            metainit: 0,
            metainit_params: None,
        };
        for p in &points {
            if (p.width, p.depth) != (plan.width, plan.depth) {
                bail!("{stem}: the estimate times networks of one shape, the config has more");
            }
            match metainit_params(&p.init) {
                Some(m) => {
                    plan.metainit += p.networks;
                    plan.metainit_params = Some(m);
                }
                None => plan.random += p.networks,
            }
        }
        Ok(plan)
    }
}

impl TrainPlan {
    fn of(stem: &str) -> Result<TrainPlan> {
        let (text, points) = paper_points::<crate::experiment::train::TrainPoint>(stem)?;
        let Some(steps) = points.first().map(|p| p.steps) else {
            bail!("{stem} has no sweep points");
        };
        // (runs, MetaInit runs) per depth
        let mut by_depth: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        let mut metainit = None;
        for p in &points {
            if p.steps != steps {
                bail!("{stem}: the estimate scales one number of steps, the config has more");
            }
            let at = by_depth.entry(p.depth).or_default();
            at.0 += p.repeats;
            if let Some(m) = metainit_params(&p.init) {
                at.1 += p.repeats;
                metainit = Some(m);
            }
        }
        let (runs_per_depth, metainit_per_depth) = by_depth[&points[0].depth];
        if by_depth
            .values()
            .any(|&r| r != (runs_per_depth, metainit_per_depth))
        {
            bail!(
                "{stem}: the estimate times one depth's runs, the config has other runs at other depths"
            );
        }
        Ok(TrainPlan {
            text,
            depths: by_depth.into_keys().collect(),
            runs_per_depth,
            metainit_per_depth,
            metainit_params: metainit,
            steps,
        })
    }

    fn runs(&self) -> usize {
        self.depths.len() * self.runs_per_depth
    }

    /// MetaInit's steps (none without MetaInit).
    fn metainit_steps(&self) -> usize {
        self.metainit_params.map_or(0, |m| m.steps)
    }
}

/// The synthetic dataset of CIFAR-10's shape.
fn synthetic_cifar() -> Result<Dataset> {
    load(DatasetName::parse("synthetic-cifar")?, None)
}

fn load(name: DatasetName, data_dir: Option<PathBuf>) -> Result<Dataset> {
    Dataset::load(name, Normalization::Standard, &DataSource::new(data_dir))
}

/// `n` with its thousands separated by commas.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Fig. 2: the random initialisers' networks timed on `networks` of them, and
/// MetaInit's optimisation on an ensemble of 250; seconds in all.
fn paper_fig2(plan: &VariancePlan, networks: usize) -> Result<f64> {
    let cifar = synthetic_cifar()?;
    let (n, d) = (cifar.train_len(), cifar.features());
    let arch = relu_arch(cifar.name, plan.width, plan.depth);
    let per_net = per_network(
        &arch,
        &cifar.train_x,
        "bench-paper",
        networks,
        250,
        layer_moments,
    )?;
    let meta_step = metainit_step(&arch, 250, 6)? / 250.0;
    let meta_steps = plan.metainit_params.map_or(0, |m| m.steps) as f64;
    let random = plan.random as f64 * per_net;
    let meta = plan.metainit as f64 * (per_net + meta_steps * meta_step);
    println!(
        "  Fig. 2: {networks} networks on {} x {} inputs: {per_net:.3} s per network -> {} networks {:.0} min; MetaInit {:.4} s per network-step -> {} networks {:.0} min; Fig. 2 in all {:.0} min",
        thousands(n),
        thousands(d),
        thousands(plan.random),
        random / 60.0,
        meta_step,
        thousands(plan.metainit),
        meta / 60.0,
        (random + meta) / 60.0
    );
    Ok(random + meta)
}

/// Figs. 1 and 3 at width 10: the paper's configs with 20 and with 40 of their
/// steps (and as many MetaInit steps); the difference is 20 steps' time, the
/// rest (loading, set-up, the final evaluation) happens once. Seconds in all.
fn paper_narrow(plan: &PaperPlan) -> Result<f64> {
    let extrapolated = |sweep: &TrainPlan, dataset: (&str, &str)| -> Result<f64> {
        let text = sweep.text.replace(
            &format!("dataset: {}", dataset.0),
            &format!("dataset: {}", dataset.1),
        );
        let scaled = |steps: usize| {
            text.replace(
                &format!("steps: {}", sweep.steps),
                &format!("steps: {steps}"),
            )
            .replace("metainit", &format!("{{name: metainit, steps: {steps}}}"))
        };
        let t20 = timed_run(&scaled(20))?;
        let t40 = timed_run(&scaled(40))?;
        let rest = sweep.steps.saturating_sub(20) as f64 / 20.0;
        Ok(t20 + rest * (t40 - t20).max(0.0))
    };
    let t1m = extrapolated(&plan.fig1, ("mnist", "synthetic"))?;
    let t1c = extrapolated(&plan.fig1, ("mnist", "synthetic-cifar"))?;
    println!(
        "  Fig. 1 ({} runs each): MNIST shape {:.0} min, CIFAR-10 shape {:.0} min",
        plan.fig1.runs(),
        t1m / 60.0,
        t1c / 60.0
    );
    let fig3 = &plan.fig3_narrow;
    let t3 = extrapolated(fig3, ("cifar10", "synthetic-cifar"))?;
    println!(
        "  Fig. 3, width 10 ({} depths x {} runs): {:.0} min",
        fig3.depths.len(),
        fig3.runs_per_depth,
        t3 / 60.0
    );
    Ok(t1m + t1c + t3)
}

/// Fig. 3 at width 200: seconds per Adam step of one depth's ensemble at depths
/// 10 and 100 (the difference of runs of 24 and 4 steps, so set-up and
/// evaluation cancel), and of the final evaluation on the test samples, linear
/// in depth; MetaInit's seconds per step at depth 50, proportional to depth.
/// Seconds in all.
fn paper_wide(sweep: &TrainPlan) -> Result<f64> {
    let cifar = synthetic_cifar()?;
    let (k, mk) = (sweep.runs_per_depth, sweep.metainit_per_depth);
    let meta_step = || match mk {
        0 => Ok(0.0),
        _ => wide_metainit_step(cifar.name, mk),
    };
    let [s10, v10, s100, v100, m50] = alternated_medians([
        &|| wide_step(&cifar, 10, k),
        &|| wide_eval(&cifar, 10, k),
        &|| wide_step(&cifar, 100, k),
        &|| wide_eval(&cifar, 100, k),
        &meta_step,
    ])?;
    // A line through the timings at depths 10 and 100, evaluated at `d`.
    let line = |at10: f64, at100: f64, d: f64| {
        let per_layer = ((at100 - at10) / 90.0).max(0.0);
        (at10 - 10.0 * per_layer).max(0.0) + per_layer * d
    };
    let (steps, meta_steps) = (sweep.steps as f64, sweep.metainit_steps() as f64);
    let depths = sweep.depths.iter().map(|&d| d as f64);
    let train: f64 = depths
        .clone()
        .map(|d| steps * line(s10, s100, d) + line(v10, v100, d))
        .sum();
    let meta: f64 = depths.map(|d| meta_steps * m50 * (d.max(1.0) / 50.0)).sum();
    let restarts = sweep.metainit_params.map_or(0, |m| m.max_restarts);
    println!(
        "  Fig. 3, width 200 (medians of 3 runs): an Adam step of {k} runs takes {s10:.3} s at depth 10 and {s100:.3} s at depth 100, their evaluation on {} test samples {v10:.1} and {v100:.1} s -> {} depths x {k} runs x {} steps and an evaluation {:.0} min; a MetaInit step for the {mk} MetaInit runs takes {m50:.2} s at depth 50 -> {:.0} min (no MetaInit restarts counted: a degenerate member's retries, up to {restarts} of {} steps each, come on top)",
        thousands(cifar.test_len()),
        sweep.depths.len(),
        sweep.steps,
        train / 60.0,
        meta / 60.0,
        sweep.metainit_steps()
    );
    Ok(train + meta)
}

/// The median of three runs of each timing, the timings alternated: they drift
/// between runs by more than the differences the estimate needs.
fn alternated_medians<const N: usize>(timings: [&dyn Fn() -> Result<f64>; N]) -> Result<[f64; N]> {
    let mut runs = [(); N].map(|_| Vec::new());
    for _ in 0..3 {
        for (timing, seconds) in timings.iter().zip(&mut runs) {
            seconds.push(timing()?);
        }
    }
    Ok(runs.map(median))
}

/// The median of a few timings.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Members `first..first + k` of the He-normal family `label` of shape `arch`.
fn he_networks(arch: &Arch, label: &str, first: usize, k: usize) -> Result<Ensemble> {
    let mut streams = member_streams(1, &Key::new(label), first, k);
    let (net, _) = initialize(
        &Initializer::He(WeightDist::Normal),
        arch,
        &mut streams,
        None,
    )?;
    Ok(net)
}

/// A plain ReLU network on `data`'s inputs.
fn relu_arch(data: DatasetName, width: usize, depth: usize) -> Arch {
    crate::experiment::dataset_arch(data, width, depth, 0.0, Norm::None)
}

/// Seconds per MetaInit step of `k` width-200, depth-50 networks: the difference
/// of runs of 25 steps and 5 steps, so that set-up and the first steps, which
/// fill the kernel's buffer pools, cancel (short runs overstate the steady step).
fn wide_metainit_step(data: DatasetName, k: usize) -> Result<f64> {
    let arch = relu_arch(data, 200, 50);
    Ok((metainit_total(&arch, k, 25)? - metainit_total(&arch, k, 5)?) / 20.0)
}

/// Seconds to evaluate an ensemble of `k` width-200 networks of `depth` on the
/// test set of `data`, as training does after its last step.
fn wide_eval(data: &Dataset, depth: usize, k: usize) -> Result<f64> {
    let net = he_networks(&wide_arch(data, depth), "bench-w200", 0, k)?;
    let start = Instant::now();
    let _ = crate::train::evaluate(&net, &data.test_x, &data.test_y);
    Ok(start.elapsed().as_secs_f64())
}

/// The width-200 networks of Fig. 3 at `depth`, on inputs of `data`'s shape.
fn wide_arch(data: &Dataset, depth: usize) -> Arch {
    relu_arch(data.name, 200, depth)
}

/// Seconds per Adam step of an ensemble of `k` width-200 networks of `depth` on
/// `data` (the difference of runs of 24 and 4 steps, so set-up and evaluation
/// cancel, after an untimed run of 4 steps: without it the first run alone paid
/// for faulting in its weights and Adam moments, 1.4 GB for 30 networks at depth
/// 100, which the second got back from the allocator, and the difference charged
/// that to the steps).
fn wide_step(data: &Dataset, depth: usize, k: usize) -> Result<f64> {
    let net = he_networks(&wide_arch(data, depth), "bench-w200", 0, k)?;
    let time_steps = |steps: usize| -> Result<f64> {
        let opts = crate::train::TrainOptions::adam(steps, 90, vec![1e-5; k]);
        let start = Instant::now();
        crate::train::train(
            &net,
            data,
            member_streams(1, &Key::new("bench-w200-shuffle"), 0, k),
            &opts,
        )?;
        Ok(start.elapsed().as_secs_f64())
    };
    time_steps(4)?;
    Ok((time_steps(24)? - time_steps(4)?) / 20.0)
}

pub struct BenchOptions {
    pub dataset: DatasetName,
    pub networks: usize,
    pub ensemble: usize,
    pub sections: Vec<String>,
    pub data_dir: Option<PathBuf>,
}

/// The ensemble sizes the `wide` and `wide-metainit` sections time, fixed so
/// that their timings compare across runs and with docs/performance.md (the
/// paper estimate takes its own from the config).
const WIDE_RUNS: usize = 30;
const WIDE_METAINIT_RUNS: usize = 5;

/// The sections `--only` may name.
pub const SECTIONS: [&str; 8] = [
    "fig2",
    "single",
    "metainit",
    "train",
    "data",
    "wide",
    "wide-metainit",
    "paper",
];

pub fn run(opts: &BenchOptions) -> Result<()> {
    if let Some(bad) = opts
        .sections
        .iter()
        .find(|s| !SECTIONS.contains(&s.as_str()))
    {
        anyhow::bail!(
            "unknown benchmark section {bad:?}: --only takes a comma-separated list of {}",
            SECTIONS.join(", ")
        );
    }
    let name = opts.dataset;
    // `--only paper` makes its own synthetic inputs: no dataset to load for it alone.
    if opts.sections.is_empty() || opts.sections.iter().any(|s| s != "paper") {
        on_dataset(opts, name)?;
    }
    if opts.sections.iter().any(|s| s == "paper") {
        paper_scale(opts.networks)?;
    }
    Ok(())
}

/// The sections that run on `--dataset`.
fn on_dataset(opts: &BenchOptions, name: DatasetName) -> Result<()> {
    let data = load(name, opts.data_dir.clone())?;
    let want = |s: &str| opts.sections.is_empty() || opts.sections.iter().any(|x| x == s);
    if want("fig2") {
        let p = peaks(data.train_len() as i64, data.features() as i64);
        let rate = fig2(&data, opts.networks, opts.ensemble, &p)?;
        if want("single") {
            let per = one_at_a_time(&data, 3)?;
            println!(
                "  initlab is {:.0}x faster per network than one network at a time",
                per * rate
            );
        }
    }
    if want("metainit") {
        for k in [100, 250] {
            metainit(data.name, k, 8)?;
        }
    }
    if want("train") {
        training(&data, 10, 100, 30, 500)?;
    }
    let named = |s: &str| opts.sections.iter().any(|x| x == s);
    if named("wide") {
        let k = WIDE_RUNS;
        for depth in [50, 100] {
            let s = wide_step(&data, depth, k)?;
            let flop = 6.0 * k as f64 * 90.0 * 200.0 * 200.0 * depth as f64;
            println!(
                "training width 200, depth {depth}, ensemble of {k}: {s:.3} s per Adam step (hidden layers {:.0} GFLOP/s)",
                flop / s / 1e9
            );
        }
        let s = wide_eval(&data, 100, k)?;
        let flop = 2.0 * k as f64 * data.test_len() as f64 * 200.0 * 200.0 * 100.0;
        println!(
            "evaluation of {k} width-200, depth-100 networks on {} test samples: {s:.1} s (hidden layers {:.0} GFLOP/s)",
            data.test_len(),
            flop / s / 1e9
        );
    }
    if named("wide") || named("wide-metainit") {
        let k = WIDE_METAINIT_RUNS;
        let m50 = wide_metainit_step(data.name, k)?;
        println!("MetaInit width 200, depth 50, {k} networks: {m50:.3} s per step");
    }
    if want("data") {
        let start = Instant::now();
        let _ = load(name, opts.data_dir.clone())?;
        println!(
            "loading and normalising {} (train + test): {:.2} s",
            name,
            start.elapsed().as_secs_f64()
        );
        let start = Instant::now();
        let st =
            crate::experiment::input_stats::estimate(&data, WeightDist::Normal, 10_000_000, 1)?;
        println!(
            "input statistics from {} samples: {:.2} s (kappa0 {:.4} +- {:.4}, c0 {:.4} +- {:.4})",
            st.samples,
            start.elapsed().as_secs_f64(),
            st.kappa0,
            st.kappa0_se,
            st.c0,
            st.c0_se
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_plan_follows_the_configs() {
        let plan = PaperPlan::from_configs().unwrap();
        // Fig. 2: 10,000 networks of each of five initialisers, 1,000 MetaInit.
        assert_eq!((plan.fig2.width, plan.fig2.depth), (10, 100));
        assert_eq!((plan.fig2.random, plan.fig2.metainit), (50_000, 1_000));
        assert_eq!(plan.fig2.metainit_params.map(|m| m.steps), Some(500));
        // Fig. 1: three initialisers, 10 widths, 11 depths, one run each.
        assert_eq!(plan.fig1.runs(), 330);
        assert_eq!(plan.fig1.metainit_params, None);
        // Fig. 3: seven initialisers (ZerO* with them), five repetitions, 11 depths.
        for (sweep, deepest) in [(&plan.fig3_narrow, 100), (&plan.fig3_wide, 500)] {
            assert_eq!(sweep.depths.len(), 11);
            assert_eq!(sweep.depths.last(), Some(&deepest));
            assert_eq!((sweep.runs_per_depth, sweep.metainit_per_depth), (35, 5));
            assert_eq!((sweep.steps, sweep.metainit_steps()), (500, 500));
        }
    }

    #[test]
    fn thousands_are_separated() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (3_072, "3,072"),
            (50_000, "50,000"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), text);
        }
    }
}
