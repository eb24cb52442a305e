//! initlab's entry point: parse the command line, set the thread count, dispatch,
//! and turn an error into one message and a non-zero exit.

use clap::Parser;
use initlab::cli::Cli;

// Rust's own small buffers (MetaInit's kernel allocates many per step) come from
// mimalloc; libtorch's tensors still use the system allocator tuned below.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    initlab::tune_allocator();
    let cli = Cli::parse();
    if let Err(e) = initlab::cmd::dispatch(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
