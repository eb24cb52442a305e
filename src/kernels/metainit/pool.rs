//! Weight-sized buffers of MetaInit's step, reused across steps on each thread:
//! fresh from the allocator, a wide first layer's would be new pages every step.

/// A vector in parameter space: per layer a matrix and a bias. Its matrices come
/// from, and go back to, this thread's [`POOL`].
pub(super) struct ParamVec {
    pub(super) w: Vec<Vec<f32>>,
    pub(super) b: Vec<Vec<f32>>,
}

impl ParamVec {
    /// A vector whose matrices hold whatever their buffers held (zeros where fresh):
    /// for one that is written whole before it is read (by the quotient's adjoints,
    /// or by its first lane group's outer products).
    pub(super) fn scratch(dims: &[usize]) -> ParamVec {
        ParamVec {
            w: (0..dims.len() - 1)
                .map(|l| pooled(dims[l + 1] * dims[l]))
                .collect(),
            b: (0..dims.len() - 1)
                .map(|l| vec![0.0; dims[l + 1]])
                .collect(),
        }
    }
}

impl Drop for ParamVec {
    fn drop(&mut self) {
        POOL.with_borrow_mut(|pool| {
            for w in self.w.drain(..) {
                if w.len() >= POOL_MIN && pool.held + w.len() <= POOL_MAX {
                    pool.held += w.len();
                    pool.free.entry(w.len()).or_default().push(w);
                }
            }
        });
    }
}

/// Matrices of at least this many floats are kept for reuse when a [`ParamVec`]
/// is dropped. A step makes and drops about five vectors the size of the network;
/// fresh from the allocator, a wide first layer's matrix (2.4 MB at 3,072 × 200)
/// would come straight from the OS each time, and zeroing its pages would cost a
/// large share of a step.
const POOL_MIN: usize = 4096;
/// At most this many floats (1 GB) are held per thread.
const POOL_MAX: usize = 1 << 28;

/// Weight-sized buffers kept for reuse on one thread, by length.
#[derive(Default)]
struct Pool {
    free: std::collections::HashMap<usize, Vec<Vec<f32>>>,
    held: usize,
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> = std::cell::RefCell::new(Pool::default());
}

/// `n` floats in a buffer from this thread's pool when it holds one of that length
/// (holding what it held), else fresh zeros.
fn pooled(n: usize) -> Vec<f32> {
    let reused = POOL.with_borrow_mut(|pool| {
        let v = pool.free.get_mut(&n)?.pop()?;
        pool.held -= n;
        Some(v)
    });
    reused.unwrap_or_else(|| vec![0.0; n])
}

/// Frees the buffers that this thread and every thread of the current rayon pool
/// keep for the step's weight-sized vectors: called when a MetaInit run ends, so
/// that they do not outlive it. The pool's threads free theirs when they next look
/// for work (a thread busy elsewhere is not waited for); a buffer in use is never
/// in a pool.
pub fn release_buffers() {
    fn clear() {
        POOL.with_borrow_mut(|pool| *pool = Pool::default());
    }
    rayon::spawn_broadcast(|_| clear());
    clear();
}
