//! initlab: a research harness for how weight initialisation shapes deep ReLU
//! networks. Theory in pure f64 ([`theory`]); datasets ([`data`]); ensembles of
//! networks as stacks of tensors ([`net`], [`init`], [`train`]); experiments as
//! resumable sweeps writing Parquet ([`experiment`], [`results`], [`rundir`]).

pub mod bench;
pub mod blas;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod data;
pub mod experiment;
pub mod init;
pub mod merge;
pub mod net;
pub mod plot;
pub mod progress;
pub mod report;
pub mod results;
pub mod rundir;
pub mod scales;
pub mod seed;
pub mod stats;
pub mod theory;
pub mod train;

/// Keeps freed tensor memory in the process instead of returning it to the kernel
/// after every op: glibc otherwise serves each large tensor with a fresh mmap and
/// the zero-filling page faults can cost as much as the arithmetic.
pub fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
