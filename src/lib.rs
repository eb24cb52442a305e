//! initlab: a research harness for how weight initialisation shapes deep ReLU
//! networks. Theory in pure f64 ([`theory`]); datasets ([`data`]); ensembles of
//! networks as stacks of tensors ([`net`], [`init`], [`train`]); experiments as
//! resumable sweeps writing Parquet ([`experiment`], [`results`], [`rundir`]).
//! The hand-written numerical kernels live in [`kernels`], the one module
//! allowed to leave safe Rust (Cargo.toml's `[lints]` forbids it elsewhere).

#[macro_use]
pub mod names;
pub mod bench;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod data;
pub mod experiment;
pub mod init;
pub mod kernels;
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

pub use kernels::tune_allocator;
