use initlab::init::*;
use initlab::net::*;
use std::time::Instant;
fn main() {
    initlab::tune_allocator();
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (input, depth, k, steps) = (args[0], args[1], args[2], args[3]);
    let arch = Arch { input, width: 10, depth, classes: 10, slope: 0.0, norm: Norm::None };
    let mut streams = member_streams(1, "x", 0, k);
    let p = MetaInitParams { steps, max_restarts: 0, ..Default::default() };
    let t = Instant::now();
    let (_, r) = initialize(&Initializer::MetaInit(p), &arch, &mut streams, None).unwrap();
    let s = t.elapsed().as_secs_f64() / (steps + 1) as f64;
    println!("input {input} depth {depth} K {k}: {:.3} s/step, {:.2} ms per member-step; gq {:.3} -> {:.3}", s, s / k as f64 * 1e3, r.gq_start[0], r.gq_end[0]);
}
