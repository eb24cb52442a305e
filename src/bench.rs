//! `initlab bench`: throughput against the machine's own matmul peak, measured in
//! one run, so that ratios (not absolute seconds) say how close initlab comes to
//! what the hardware allows. Sections: raw matmul/bmm rates, the Fig. 2 forward
//! pass with statistics (and where its time goes), the same networks one at a
//! time, MetaInit, and ensemble training.

use crate::data::{DataSource, Dataset, DatasetName, Normalization};
use crate::experiment::variance::layer_moments;
use crate::init::dist::WeightDist;
use crate::init::{Initializer, MetaInitParams, initialize, member_streams};
use crate::net::{Arch, Norm};
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
/// dataset's training inputs, with per-layer statistics of unit 0.
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
    let hidden_flop = 2.0 * n * (99.0 * 100.0 + 100.0);
    let flop = first_flop + hidden_flop;
    println!(
        "Fig. 2 forward on {} ({} x {}), {networks} networks of width 10, depth 100, ensembles of {ensemble}:",
        data.name, n, d
    );
    let start = Instant::now();
    let mut init_s = 0.0;
    let mut done = 0;
    while done < networks {
        let k = ensemble.min(networks - done);
        let t0 = Instant::now();
        let mut streams = member_streams(1, "bench", done, k);
        let (net, _) = initialize(
            &Initializer::He(WeightDist::Normal),
            &arch,
            &mut streams,
            None,
        )?;
        init_s += t0.elapsed().as_secs_f64();
        let _ = layer_moments(&net, x, false, false);
        done += k;
    }
    let total = start.elapsed().as_secs_f64();
    let rate = networks as f64 / total;
    let achieved = flop * networks as f64 / total / 1e9;
    let ideal = (first_flop / peaks.first_layer + hidden_flop / peaks.hidden_bmm) / 1e9;
    println!("  {total:.1} s: {rate:.1} networks/s, {achieved:.1} GFLOP/s achieved");
    println!(
        "  the matmul and bmm rates above allow {:.2} s per network; initlab takes {:.2} s ({:.0}% of that bound)",
        ideal,
        1.0 / rate,
        100.0 * ideal * rate
    );
    println!(
        "  1,000 networks: {:.1} s (initialisation {:.1} s of the total)",
        1000.0 / rate,
        init_s * 1000.0 / networks as f64
    );

    // Where the time goes, on one ensemble.
    let _g = tch::no_grad_guard();
    let k = ensemble.min(networks) as i64;
    let mut streams = member_streams(1, "bench", 0, k as usize);
    let (net, _) = initialize(
        &Initializer::He(WeightDist::Normal),
        &arch,
        &mut streams,
        None,
    )?;
    let chunk = x.narrow(0, 0, crate::experiment::variance::CHUNK.min(x.size()[0]));
    let nc = chunk.size()[0];
    let w0 = net.weights[0].reshape([k * 10, d as i64]);
    let t_first = time(3, || {
        let _ = w0.matmul(&chunk.tr());
    });
    let h = randn(&[k, 10, nc]);
    let t_hidden = time(3, || {
        let mut a = h.shallow_clone();
        for l in 1..101 {
            a = net.biases[l]
                .unsqueeze(2)
                .baddbmm(&net.weights[l], &a.relu(), 1.0, 1.0);
        }
    });
    let t_stats = time(3, || {
        let mut m = crate::stats::StreamingMoments::new(&[k, 1], false);
        for _ in 0..101 {
            m.add(&h.narrow(1, 0, 1));
        }
    });
    let t_all = time(2, || {
        let _ = net.forward_shared(&chunk, &mut |_, _| {});
    });
    let sum = t_first + t_hidden + t_stats;
    println!(
        "  one ensemble of {k} on {nc} inputs: first layer {:.0}%, hidden layers {:.0}%, statistics {:.0}% (forward alone {:.3} s, parts {:.3} s)",
        100.0 * t_first / sum,
        100.0 * t_hidden / sum,
        100.0 * t_stats / sum,
        t_all,
        sum
    );
    Ok(rate)
}

/// The same networks one at a time (K = 1), for the per-network comparison.
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
        let mut streams = member_streams(1, "bench", i, 1);
        let (net, _) = initialize(
            &Initializer::He(WeightDist::Normal),
            &arch,
            &mut streams,
            None,
        )?;
        let _ = layer_moments(&net, &data.train_x, false, false);
    }
    let per = start.elapsed().as_secs_f64() / networks as f64;
    println!("one network at a time through tch (K = 1): {per:.2} s per network");
    Ok(per)
}

/// MetaInit per member at ensemble size k (a few steps, extrapolated to 500).
pub fn metainit(features: usize, k: usize, steps: usize) -> Result<f64> {
    let arch = Arch {
        input: features,
        width: 10,
        depth: 100,
        classes: 10,
        slope: 0.0,
        norm: Norm::None,
    };
    let mut streams = member_streams(1, "bench-metainit", 0, k);
    let p = MetaInitParams {
        steps,
        max_restarts: 0,
        ..Default::default()
    };
    let start = Instant::now();
    let _ = initialize(&Initializer::MetaInit(p), &arch, &mut streams, None)?;
    let per_step = start.elapsed().as_secs_f64() / (steps + 1) as f64;
    let per_1000 = per_step * 500.0 * 1000.0 / k as f64;
    println!(
        "MetaInit, {features} inputs, width 10, depth 100, ensemble of {k}: {per_step:.3} s per step; 1,000 networks x 500 steps: {:.0} s",
        per_1000
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
    let mut streams = member_streams(1, "bench-train", 0, k);
    let (net, _) = initialize(
        &Initializer::He(WeightDist::Normal),
        &arch,
        &mut streams,
        None,
    )?;
    let shuffles = member_streams(1, "bench-shuffle", 0, k);
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

pub struct BenchOptions {
    pub dataset: String,
    pub networks: usize,
    pub ensemble: usize,
    pub sections: Vec<String>,
    pub data_dir: Option<std::path::PathBuf>,
}

pub fn run(opts: &BenchOptions) -> Result<()> {
    let name = DatasetName::parse(&opts.dataset)?;
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
            println!("  ensemble speed-up per network: {:.1}x", per * rate);
        }
    }
    if want("metainit") {
        for k in [100, 250] {
            metainit(data.features(), k, 3)?;
        }
    }
    if want("train") {
        training(&data, 10, 100, 30, 500)?;
    }
    Ok(())
}
