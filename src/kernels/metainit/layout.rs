//! MetaInit's batches between rows (`[batch][n]`, as libtorch holds them) and
//! lanes (per group of [`LANES`] samples, `[n][LANES]`, as the step reads them).

use super::LANES;

/// A row-major batch `[batch][n]` in the lane-major layout of [`super::step_lanes`], in
/// blocks of 16 features: 32 rows read side by side (one cache line each) while
/// each lane is written whole.
pub fn rows_to_lanes(x: &[f32], batch: usize, n: usize) -> Vec<f32> {
    by_group(x, batch, n, |rows, lanes| {
        let (lanes, _) = lanes.as_chunks_mut::<LANES>();
        for lo in (0..n).step_by(16) {
            let hi = (lo + 16).min(n);
            for k in 0..LANES {
                for (lane, v) in lanes[lo..hi].iter_mut().zip(&rows[k * n + lo..k * n + hi]) {
                    lane[k] = *v;
                }
            }
        }
    })
}

/// The inverse of [`rows_to_lanes`].
pub fn lanes_to_rows(x: &[f32], batch: usize, n: usize) -> Vec<f32> {
    by_group(x, batch, n, |lanes, rows| {
        let (lanes, _) = lanes.as_chunks::<LANES>();
        for (f, lane) in lanes.iter().enumerate() {
            for k in 0..LANES {
                rows[k * n + f] = lane[k];
            }
        }
    })
}

/// A layout conversion of `x`, a batch of `batch` samples of `n` features: `convert`
/// writes each group of [`LANES`] samples (`LANES · n` values) into its place in
/// the output.
fn by_group(x: &[f32], batch: usize, n: usize, convert: impl Fn(&[f32], &mut [f32])) -> Vec<f32> {
    assert!(
        batch.is_multiple_of(LANES),
        "batch must be a multiple of {LANES}"
    );
    assert_eq!(x.len(), batch * n, "batch and features disagree");
    let mut out = vec![0f32; x.len()];
    for (group, converted) in x
        .chunks_exact(LANES * n)
        .zip(out.chunks_exact_mut(LANES * n))
    {
        convert(group, converted);
    }
    out
}
