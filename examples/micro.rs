use std::time::Instant;
use tch::{Kind, Tensor};
fn t<F: FnMut()>(n: usize, mut f: F) -> f64 { f(); let s = Instant::now(); for _ in 0..n { f(); } s.elapsed().as_secs_f64() / n as f64 * 1e6 }
fn main() {
    initlab::tune_allocator();
    let _g = tch::no_grad_guard();
    println!("mkl {} threads {}", tch::utils::has_mkl(), tch::get_num_threads());
    for k in [100i64, 250, 1000] {
        let h = Tensor::randn([k, 32, 10], (Kind::Float, tch::Device::Cpu));
        let w = Tensor::randn([k, 10, 10], (Kind::Float, tch::Device::Cpu));
        let b = Tensor::randn([k, 1, 10], (Kind::Float, tch::Device::Cpu));
        let a = t(200, || { let _ = h.bmm(&w); });
        let c = t(200, || { let _ = b.baddbmm(&h, &w, 1.0, 1.0); });
        let d = t(200, || { let _ = (h.unsqueeze(3) * w.unsqueeze(1)).sum_dim_intlist([2i64].as_slice(), false, Kind::Float); });
        let e = t(200, || { let _ = h.relu(); });
        let f = t(200, || { let _ = Tensor::einsum("kbi,kij->kbj", &[&h, &w], None::<i64>); });
        let hf = h.reshape([k*32, 10]);
        let wf = w.reshape([k*10, 10]);
        let g = t(200, || { let _ = hf.matmul(&w.select(0,0)); });
        println!("K={k}: bmm {a:.0}us baddbmm {c:.0}us bcast {d:.0}us relu {e:.0}us einsum {f:.0}us 2d-matmul-same-size {g:.0}us; bmm GFLOP/s {:.2}", (k*32*10*10*2) as f64 / a / 1e3);
        let _ = wf;
    }
    for k in [250i64] {
        let h = Tensor::randn([k, 10, 2048], (Kind::Float, tch::Device::Cpu));
        let w = Tensor::randn([k, 10, 10], (Kind::Float, tch::Device::Cpu));
        let a = t(50, || { let _ = w.bmm(&h); });
        let r = t(50, || { let _ = h.relu(); });
        println!("K={k} fig2 bmm {a:.0}us ({:.1} GFLOP/s) relu {r:.0}us", (k*10*10*2048*2) as f64 / a / 1e3);
    }
}
#[allow(dead_code)]
fn unused() {}
