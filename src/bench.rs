//! `initlab bench`: throughput against the machine's own matmul peak, measured in
//! one run, so that ratios (not absolute seconds) say how close initlab comes to
//! what the hardware allows. Sections: raw matmul/bmm rates, the Fig. 2 forward
//! pass with statistics (and where its time goes), the same networks one at a
//! time, MetaInit, and ensemble training.

use crate::data::{DataSource, Dataset, DatasetName, Normalization};
use crate::experiment::variance::layer_moments;
use crate::init::dist::WeightDist;
use crate::init::{Initializer, MetaInitParams, initialize, member_streams};
use crate::net::{Arch, Ensemble, Norm};
use crate::seed::Key;
use anyhow::Result;
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
    let arch = Arch {
        input: d,
        width: 10,
        depth: 100,
        classes: 10,
        slope: 0.0,
        norm: Norm::None,
    };
    let first_flop = 2.0 * n * d as f64 * 10.0;
    let hidden_flop = 2.0 * n * (99.0 * 100.0 + 10.0);
    let flop = first_flop + hidden_flop;
    println!(
        "Fig. 2 statistics on {} ({} x {}), width 10, depth 100, ensembles of {ensemble}:",
        data.name, n, d
    );
    let run = |count: usize, fused: bool| -> Result<f64> {
        let start = Instant::now();
        let mut done = 0;
        while done < count {
            let k = ensemble.min(count - done);
            let net = he_networks(&arch, "bench", done, k)?;
            if fused {
                let _ = layer_moments(&net, x, false, false);
            } else {
                let _ = crate::experiment::variance::layer_moments_tch(&net, x, false, false);
            }
            done += k;
        }
        Ok(start.elapsed().as_secs_f64() / count as f64)
    };
    let per = run(networks, true)?;
    println!(
        "  initlab: {networks} networks in {:.1} s: {:.1} networks/s, {:.1} GFLOP/s; 1,000 networks in {:.1} s",
        per * networks as f64,
        1.0 / per,
        flop / per / 1e9,
        1000.0 * per
    );
    let part = ensemble.min(networks);
    let per_bmm = run(part, false)?;
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
    let arch = Arch {
        input: data.features(),
        width: 10,
        depth: 100,
        classes: 10,
        slope: 0.0,
        norm: Norm::None,
    };
    let start = Instant::now();
    for i in 0..networks {
        let net = he_networks(&arch, "bench", i, 1)?;
        let _ = crate::experiment::variance::layer_moments_tch(&net, &data.train_x, false, false);
    }
    let per = start.elapsed().as_secs_f64() / networks as f64;
    println!("  one network at a time through libtorch (K = 1): {per:.2} s per network");
    Ok(per)
}

/// MetaInit seconds per step for an ensemble of k (a few steps timed, the He
/// start and the final quotient included).
pub fn metainit_step(
    features: usize,
    width: usize,
    depth: usize,
    k: usize,
    steps: usize,
) -> Result<f64> {
    Ok(metainit_total(features, width, depth, k, steps)? / (steps + 1) as f64)
}

/// Seconds for MetaInit of `steps` steps on an ensemble of k, set-up included.
fn metainit_total(
    features: usize,
    width: usize,
    depth: usize,
    k: usize,
    steps: usize,
) -> Result<f64> {
    let arch = Arch {
        input: features,
        width,
        depth,
        classes: 10,
        slope: 0.0,
        norm: Norm::None,
    };
    let mut streams = member_streams(1, &Key::new("bench-metainit"), 0, k);
    let p = MetaInitParams {
        steps,
        max_restarts: 0,
        ..Default::default()
    };
    let start = Instant::now();
    let _ = initialize(&Initializer::MetaInit(p), &arch, &mut streams, None)?;
    Ok(start.elapsed().as_secs_f64())
}

/// MetaInit per member at ensemble size k, extrapolated to 500 steps: the steps
/// timed as the difference of a run of `steps` and one of none (the He start and
/// the final quotient, counted once).
pub fn metainit(features: usize, k: usize, steps: usize) -> Result<f64> {
    let fixed = metainit_total(features, 10, 100, k, 0)?;
    let per_step = ((metainit_total(features, 10, 100, k, steps)? - fixed) / steps as f64).max(0.0);
    let per_1000 = (per_step * 500.0 + fixed) * 1000.0 / k as f64;
    println!(
        "MetaInit, {features} inputs, width 10, depth 100, ensemble of {k}: {per_step:.3} s per step (+{fixed:.2} s start); 1,000 networks x 500 steps: {per_1000:.0} s"
    );
    Ok(per_1000)
}

/// Training: seconds per member for `steps` Adam steps in an ensemble of `k`.
pub fn training(data: &Dataset, width: usize, depth: usize, k: usize, steps: usize) -> Result<f64> {
    let arch = Arch {
        input: data.features(),
        width,
        depth,
        classes: 10,
        slope: 0.0,
        norm: Norm::None,
    };
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

/// Wall time of running a config (YAML text) into a temporary run directory.
fn timed_run(yaml: &str, data_dir: Option<std::path::PathBuf>) -> Result<f64> {
    let config = crate::config::Config::parse(yaml, "bench")?;
    let dir = tempfile_dir()?;
    let opts = crate::experiment::sweep::RunOptions {
        out: Some(dir.join("run")),
        data_dir,
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

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("initlab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The paper's experiments at the paper's scale, measured on parts of them and
/// extrapolated: synthetic inputs of CIFAR-10's shape (50,000 × 3,072) and
/// MNIST's (60,000 × 784), every experiment's own code path.
pub fn paper_scale(networks: usize) -> Result<()> {
    println!("The paper at the paper's scale on this machine (measured on parts, extrapolated):");
    // Fig. 2: random initialisers' networks, and MetaInit's optimisation.
    let cifar = Dataset::load(
        DatasetName::parse("synthetic-cifar")?,
        Normalization::Standard,
        &DataSource::new(None),
    )?;
    let arch = Arch {
        input: 3072,
        width: 10,
        depth: 100,
        classes: 10,
        slope: 0.0,
        norm: Norm::None,
    };
    let start = Instant::now();
    let mut done = 0;
    while done < networks {
        let k = 250.min(networks - done);
        let net = he_networks(&arch, "bench-paper", done, k)?;
        let _ = layer_moments(&net, &cifar.train_x, false, false);
        done += k;
    }
    let per_net = start.elapsed().as_secs_f64() / networks as f64;
    let meta_step = metainit_step(3072, 10, 100, 250, 6)? / 250.0;
    let fig2_random = 50_000.0 * per_net;
    let fig2_meta = 1000.0 * (per_net + 500.0 * meta_step);
    println!(
        "  Fig. 2: {networks} networks on 50,000 x 3,072 inputs: {per_net:.3} s per network -> 50,000 networks {:.0} min; MetaInit {:.4} s per network-step -> 1,000 networks {:.0} min; Fig. 2 in all {:.0} min",
        fig2_random / 60.0,
        meta_step,
        fig2_meta / 60.0,
        (fig2_random + fig2_meta) / 60.0
    );
    drop(cifar);

    // Figs. 1 and 3 at width 10: the paper's configs with 20 and with 40 of the 500
    // steps (and as many MetaInit steps); the difference is 20 steps' time, the rest
    // (loading, set-up, the final evaluation) happens once.
    let scale = |text: &str, steps: usize| {
        text.replace("steps: 500", &format!("steps: {steps}"))
            .replace("metainit", &format!("{{name: metainit, steps: {steps}}}"))
    };
    let extrapolated = |text: &str| -> Result<f64> {
        let t20 = timed_run(&scale(text, 20), None)?;
        let t40 = timed_run(&scale(text, 40), None)?;
        Ok(t20 + 24.0 * (t40 - t20).max(0.0))
    };
    let fig1 = |dataset: &str| {
        crate::scales::PAPER
            .iter()
            .find(|(f, _)| f.starts_with("fig1-mnist"))
            .map(|(_, t)| t.replace("dataset: mnist", &format!("dataset: {dataset}")))
            .expect("embedded")
    };
    let t1m = extrapolated(&fig1("synthetic"))?;
    let t1c = extrapolated(&fig1("synthetic-cifar"))?;
    println!(
        "  Fig. 1 (330 runs each): MNIST shape {:.0} min, CIFAR-10 shape {:.0} min",
        t1m / 60.0,
        t1c / 60.0
    );
    let fig3_10 = crate::scales::PAPER
        .iter()
        .find(|(f, _)| f.starts_with("fig3-width10"))
        .expect("embedded")
        .1;
    let t3a = extrapolated(&fig3_10.replace("dataset: cifar10", "dataset: synthetic-cifar"))?;
    println!(
        "  Fig. 3, width 10 (66 shapes x 30 runs): {:.0} min",
        t3a / 60.0
    );

    // Fig. 3 at width 200: seconds per Adam step of an ensemble of 30 at depths 10
    // and 100 (the difference of runs of 24 and 4 steps, so set-up and evaluation
    // cancel), and of the final evaluation on 10,000 test samples, linear in depth;
    // MetaInit's seconds per step at depth 50, proportional to depth. Each is the
    // median of three alternated runs, because timings drift between runs by more
    // than the differences this estimate needs.
    let cifar = Dataset::load(
        DatasetName::parse("synthetic-cifar")?,
        Normalization::Standard,
        &DataSource::new(None),
    )?;
    let (mut t10, mut t100, mut m) = (Vec::new(), Vec::new(), Vec::new());
    let (mut e10, mut e100) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        t10.push(wide_step(&cifar, 10)?);
        e10.push(wide_eval(&cifar, 10)?);
        t100.push(wide_step(&cifar, 100)?);
        e100.push(wide_eval(&cifar, 100)?);
        m.push(wide_metainit_step(3072)?);
    }
    let (s10, s100, m50) = (median(t10), median(t100), median(m));
    let (v10, v100) = (median(e10), median(e100));
    // A line through the timings at depths 10 and 100, evaluated at `d`.
    let line = |at10: f64, at100: f64, d: f64| {
        let per_layer = ((at100 - at10) / 90.0).max(0.0);
        (at10 - 10.0 * per_layer).max(0.0) + per_layer * d
    };
    let depths: Vec<f64> = (0..=10).map(|i| 50.0 * i as f64).collect();
    let train200: f64 = depths
        .iter()
        .map(|&d| 500.0 * line(s10, s100, d) + line(v10, v100, d))
        .sum();
    let meta200_all: f64 = depths
        .iter()
        .map(|d| 500.0 * m50 * (d.max(1.0) / 50.0))
        .sum();
    println!(
        "  Fig. 3, width 200 (medians of 3 runs): an Adam step of 30 runs takes {s10:.3} s at depth 10 and {s100:.3} s at depth 100, their evaluation on 10,000 test samples {v10:.1} and {v100:.1} s -> 11 depths x 30 runs x 500 steps and an evaluation {:.0} min; a MetaInit step for the 5 MetaInit runs takes {m50:.2} s at depth 50 -> {:.0} min (no MetaInit restarts counted: a degenerate member's retries, up to 5 of 500 steps each, come on top)",
        train200 / 60.0,
        meta200_all / 60.0
    );
    let total = fig2_random + fig2_meta + t1m + t1c + t3a + train200 + meta200_all;
    println!(
        "  the whole paper (Figs. 1, 2, 3): about {:.1} hours",
        total / 3600.0
    );
    Ok(())
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

/// Seconds per MetaInit step of 5 width-200, depth-50 networks: the difference of
/// runs of 25 steps and 5 steps, so that set-up and the first steps, which fill
/// the kernel's buffer pools, cancel (short runs overstate the steady step).
fn wide_metainit_step(features: usize) -> Result<f64> {
    Ok(
        (metainit_total(features, 200, 50, 5, 25)? - metainit_total(features, 200, 50, 5, 5)?)
            / 20.0,
    )
}

/// Seconds to evaluate an ensemble of 30 width-200 networks of `depth` on the
/// test set of `data`, as training does after its last step.
pub fn wide_eval(data: &Dataset, depth: usize) -> Result<f64> {
    let net = he_networks(&wide_arch(data, depth), "bench-w200", 0, 30)?;
    let start = Instant::now();
    let _ = crate::train::evaluate(&net, &data.test_x, &data.test_y);
    Ok(start.elapsed().as_secs_f64())
}

/// The width-200 networks of Fig. 3 at `depth`, on inputs of `data`'s shape.
fn wide_arch(data: &Dataset, depth: usize) -> Arch {
    Arch {
        input: data.features(),
        width: 200,
        depth,
        classes: 10,
        slope: 0.0,
        norm: Norm::None,
    }
}

/// Seconds per Adam step of an ensemble of 30 width-200 networks of `depth` on
/// `data` (the difference of runs of 24 and 4 steps, so set-up and evaluation
/// cancel, after an untimed run of 4 steps: without it the first run alone paid
/// for faulting in its 1.4 GB of weights and Adam moments at depth 100, which the
/// second got back from the allocator, and the difference charged that to the
/// steps).
pub fn wide_step(data: &Dataset, depth: usize) -> Result<f64> {
    let net = he_networks(&wide_arch(data, depth), "bench-w200", 0, 30)?;
    let time_steps = |steps: usize| -> Result<f64> {
        let opts = crate::train::TrainOptions::adam(steps, 90, vec![1e-5; 30]);
        let start = Instant::now();
        crate::train::train(
            &net,
            data,
            member_streams(1, &Key::new("bench-w200-shuffle"), 0, 30),
            &opts,
        )?;
        Ok(start.elapsed().as_secs_f64())
    };
    time_steps(4)?;
    Ok((time_steps(24)? - time_steps(4)?) / 20.0)
}

pub struct BenchOptions {
    pub dataset: String,
    pub networks: usize,
    pub ensemble: usize,
    pub sections: Vec<String>,
    pub data_dir: Option<std::path::PathBuf>,
}

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
    let name = DatasetName::parse(&opts.dataset)?;
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
    let data = Dataset::load(
        name,
        Normalization::Standard,
        &DataSource::new(opts.data_dir.clone()),
    )?;
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
            metainit(data.features(), k, 8)?;
        }
    }
    if want("train") {
        training(&data, 10, 100, 30, 500)?;
    }
    let named = |s: &str| opts.sections.iter().any(|x| x == s);
    if named("wide") {
        for depth in [50, 100] {
            let s = wide_step(&data, depth)?;
            let flop = 6.0 * 30.0 * 90.0 * 200.0 * 200.0 * depth as f64;
            println!(
                "training width 200, depth {depth}, ensemble of 30: {s:.3} s per Adam step (hidden layers {:.0} GFLOP/s)",
                flop / s / 1e9
            );
        }
        let s = wide_eval(&data, 100)?;
        let flop = 2.0 * 30.0 * data.test_len() as f64 * 200.0 * 200.0 * 100.0;
        println!(
            "evaluation of 30 width-200, depth-100 networks on {} test samples: {s:.1} s (hidden layers {:.0} GFLOP/s)",
            data.test_len(),
            flop / s / 1e9
        );
    }
    if named("wide") || named("wide-metainit") {
        let m50 = wide_metainit_step(data.features())?;
        println!("MetaInit width 200, depth 50, 5 networks: {m50:.3} s per step");
    }
    if want("data") {
        let start = Instant::now();
        let _ = Dataset::load(
            name,
            Normalization::Standard,
            &DataSource::new(opts.data_dir.clone()),
        )?;
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
