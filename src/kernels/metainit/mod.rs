//! MetaInit's step written out by hand for one member of a (leaky-)ReLU MLP, so
//! that narrow networks do not pay libtorch's per-op cost on a third-order graph of
//! thousands of tiny batched products, and wide ones (up to 256 units) read each
//! weight matrix from memory in the order the hardware prefetches best.
//!
//! The network is piecewise linear (φ'' = 0 almost everywhere), so with the masks
//! D_l = φ'(z_l) fixed, only the softmax at the top is non-linear. With L the mean
//! cross-entropy of a batch, g = ∇L, H its Hessian and Hg the Hessian-vector product
//! (Pearlmutter's R-operator), the quotient GQ(g, Hg) has the adjoints
//! Ḡ = ∂GQ/∂g and H̄ = ∂GQ/∂(Hg), and since Hg depends on θ both through H and g,
//!
//!   ∇_θ GQ = H (Ḡ + H H̄) + ∇_θ (H̄ᵀ H(θ) g)|_{H̄, g fixed}.
//!
//! The first term is two Hessian-vector products; the second is the reverse pass of
//! a forward pass in hyper-dual numbers along H̄ and g (value, two first-order and
//! one mixed second-order part), whose mixed part at the loss is H̄ᵀ H g. MetaInit
//! needs only ⟨∂GQ/∂W_l, W_l⟩ per weight matrix, which this module returns.
//!
//! Activations are `[unit][sample]` with the batch in lanes of [`LANES`] samples;
//! the batch must be a multiple of it (the caller falls back to libtorch otherwise).
//!
//! By concern: [`step`] (the passes of one step and the quotient), `hvp` (the
//! Hessian-vector products and the third-order pass), `loops` (the products as
//! hand-written loops, and their split over two threads), `gemm` (the same
//! products through MKL, where wide), `simd` (the two loops written in AVX2
//! intrinsics), `pool` (weight-sized buffers reused across steps) and `layout`
//! (batches between rows and lanes).

mod gemm;
mod hvp;
mod layout;
mod loops;
mod pool;
mod simd;
mod step;

pub use layout::{lanes_to_rows, rows_to_lanes};
pub use pool::release_buffers;
pub use step::{Member, Want, step, step_lanes};

/// Samples per lane group: one group is four AVX registers, four independent FMA chains.
pub const LANES: usize = 32;
type Lane = [f32; LANES];
const ZERO: Lane = [0.0; LANES];
