//! Progress bars with ETA for anything slow; invisible when stderr is not a
//! terminal (CI, logs) or when INITLAB_PROGRESS=0.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

fn target() -> ProgressDrawTarget {
    let off = std::env::var("INITLAB_PROGRESS").is_ok_and(|v| v == "0");
    if off || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// Whether bars are drawn (otherwise callers may print plain summary lines).
pub fn visible() -> bool {
    !target().is_hidden()
}

/// A bar for a download of `total` bytes (unknown total: a spinner).
pub fn bytes_bar(total: Option<u64>, message: &str) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::with_draw_target(Some(t), target()).with_style(
            ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template"),
        ),
        None => ProgressBar::with_draw_target(None, target()),
    };
    bar.set_message(message.to_string());
    bar
}

/// A bar over work measured in cost units (position and length scaled to integers).
pub fn work_bar(total: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target()).with_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {bar:30} {percent}% eta {eta_precise}",
        )
        .expect("valid template"),
    );
    bar.set_message(message.to_string());
    bar
}

/// A bar over a count of steps.
pub fn count_bar(total: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target()).with_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed_precise}] eta {eta}")
            .expect("valid template"),
    );
    bar.set_message(message.to_string());
    bar
}
