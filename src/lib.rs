//! initlab: a research harness for how weight initialisation shapes deep ReLU
//! networks. Theory in pure f64 ([`theory`]); datasets ([`data`]); ensembles of
//! networks as stacks of tensors ([`net`], [`init`], [`train`]); experiments as
//! resumable sweeps writing Parquet ([`experiment`], [`results`], [`rundir`]).

pub mod cli;
pub mod cmd;
pub mod config;
pub mod data;
pub mod experiment;
pub mod init;
pub mod net;
pub mod progress;
pub mod results;
pub mod rundir;
pub mod seed;
pub mod stats;
pub mod theory;
pub mod train;
