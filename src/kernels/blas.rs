//! Single-threaded f32 GEMM on row-major slices, from the oneMKL that libtorch's
//! CPU library carries, looked up at run time. Networks of an ensemble run one per
//! rayon thread, each GEMM with MKL's threading turned off for its thread, so
//! that no GEMM waits on OpenMP's threads. Where the loaded libtorch
//! has no MKL, [`available`] is false and callers keep their libtorch path.

use std::ffi::{c_char, c_int};
use std::sync::OnceLock;

/// The Fortran `sgemm_`: column-major C ← α·op(A)·op(B) + β·C, every argument by pointer.
type Sgemm = unsafe extern "C" fn(
    transa: *const c_char,
    transb: *const c_char,
    m: *const c_int,
    n: *const c_int,
    k: *const c_int,
    alpha: *const f32,
    a: *const f32,
    lda: *const c_int,
    b: *const f32,
    ldb: *const c_int,
    beta: *const f32,
    c: *mut f32,
    ldc: *const c_int,
);
/// `MKL_Set_Num_Threads_Local` (the C entry; the lower-case names are Fortran
/// entries taking a pointer): the calling thread's MKL thread count (0 = the
/// global one); returns the previous one.
type SetThreadsLocal = unsafe extern "C" fn(c_int) -> c_int;

struct Mkl {
    sgemm: Sgemm,
    set_threads_local: SetThreadsLocal,
}

fn mkl() -> Option<&'static Mkl> {
    static MKL: OnceLock<Option<Mkl>> = OnceLock::new();
    MKL.get_or_init(|| {
        // Make sure libtorch (and with it MKL) is loaded before looking.
        tch::get_num_threads();
        // SAFETY: dlsym with RTLD_DEFAULT searches the libraries already loaded; the
        // names are NUL-terminated and the symbols, when present, are MKL's
        // functions of exactly these C signatures.
        unsafe {
            let sgemm = libc::dlsym(libc::RTLD_DEFAULT, c"sgemm_".as_ptr());
            let local = libc::dlsym(libc::RTLD_DEFAULT, c"MKL_Set_Num_Threads_Local".as_ptr());
            if sgemm.is_null() || local.is_null() || std::env::var_os("INITLAB_NO_MKL").is_some() {
                return None;
            }
            Some(Mkl {
                sgemm: std::mem::transmute::<*mut libc::c_void, Sgemm>(sgemm),
                set_threads_local: std::mem::transmute::<*mut libc::c_void, SetThreadsLocal>(local),
            })
        }
    })
    .as_ref()
}

/// Whether MKL's GEMM was found in the loaded libtorch (`INITLAB_NO_MKL` set in the
/// environment says no, to exercise the fallbacks).
pub fn available() -> bool {
    mkl().is_some()
}

/// A row-major operand: `rows × cols` as used in the product, stored either as is
/// (`Plain`, leading dimension `cols`) or transposed (`Trans`, stored `cols × rows`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Plain,
    Trans,
}

/// Row-major `c[m × n] ← op(a)[m × k] · op(b)[k × n] + beta · c`, where `a` is stored
/// `m × k` (or `k × m` under [`Op::Trans`]) and `b` `k × n` (or `n × k`), on the
/// calling thread alone.
///
/// # Panics
/// Where MKL is not [`available`], or a slice is shorter than its shape.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    op_a: Op,
    a: &[f32],
    op_b: Op,
    b: &[f32],
    c: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    beta: f32,
) {
    let lda = if op_a == Op::Plain { k } else { m };
    let ldb = if op_b == Op::Plain { n } else { k };
    gemm_strided((op_a, a, lda), (op_b, b, ldb), (c, n), m, n, k, beta);
}

/// [`gemm`] with the stored rows' lengths given (`lda`, `ldb`, `ldc`), for
/// operands that are blocks of wider matrices.
///
/// # Panics
/// Where MKL is not [`available`], or a slice is shorter than its shape.
pub fn gemm_strided(
    (op_a, a, lda): (Op, &[f32], usize),
    (op_b, b, ldb): (Op, &[f32], usize),
    (c, ldc): (&mut [f32], usize),
    m: usize,
    n: usize,
    k: usize,
    beta: f32,
) {
    let mkl = mkl().expect("MKL's sgemm is not available");
    if m == 0 || n == 0 {
        return;
    }
    // The stored rows and their lengths of each operand, checked against the slices.
    let stored = |op: Op, rows: usize, cols: usize| {
        if op == Op::Plain {
            (rows, cols)
        } else {
            (cols, rows)
        }
    };
    let fits = |len: usize, (rows, cols): (usize, usize), ld: usize| {
        ld >= cols.max(1) && (rows == 0 || len >= (rows - 1) * ld + cols)
    };
    assert!(
        fits(a.len(), stored(op_a, m, k), lda)
            && fits(b.len(), stored(op_b, k, n), ldb)
            && fits(c.len(), (m, n), ldc),
        "gemm operands shorter than their shapes"
    );
    // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a row-major
    // matrix read column-major is its transpose: so B comes first, each with its own
    // flag, and the leading dimensions are the stored rows' lengths.
    let flag = |op: Op| if op == Op::Plain { b'N' } else { b'T' } as c_char;
    let int = |v: usize| c_int::try_from(v).expect("GEMM dimension beyond i32");
    let (mi, ni, ki) = (int(m), int(n), int(k));
    let (lda, ldb, ldc) = (int(lda.max(1)), int(ldb.max(1)), int(ldc.max(1)));
    let alpha = 1f32;
    // SAFETY: the slices were checked against the shapes and strides above, so MKL
    // reads a and b and writes c within them; the thread-local setting takes any value.
    unsafe {
        let previous = (mkl.set_threads_local)(1);
        (mkl.sgemm)(
            &flag(op_b),
            &flag(op_a),
            &ni,
            &mi,
            &ki,
            &alpha,
            b.as_ptr(),
            &ldb,
            a.as_ptr(),
            &lda,
            &beta,
            c.as_mut_ptr(),
            &ldc,
        );
        (mkl.set_threads_local)(previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product by its definition, in f64.
    fn reference(
        op_a: Op,
        a: &[f32],
        op_b: Op,
        b: &[f32],
        m: usize,
        n: usize,
        k: usize,
    ) -> Vec<f64> {
        let at = |i: usize, p: usize| match op_a {
            Op::Plain => a[i * k + p],
            Op::Trans => a[p * m + i],
        } as f64;
        let bt = |p: usize, j: usize| match op_b {
            Op::Plain => b[p * n + j],
            Op::Trans => b[j * k + p],
        } as f64;
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn gemm_matches_the_definition_for_every_transposition() {
        if !available() {
            eprintln!("MKL not in this libtorch: nothing to check");
            return;
        }
        let (m, n, k) = (7, 5, 11);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 29 % 19) as f32 - 9.0) / 5.0)
            .collect();
        let c0: Vec<f32> = (0..m * n).map(|i| i as f32 / 3.0).collect();
        for op_a in [Op::Plain, Op::Trans] {
            for op_b in [Op::Plain, Op::Trans] {
                for beta in [0.0f32, 1.0] {
                    let mut c = c0.clone();
                    gemm(op_a, &a, op_b, &b, &mut c, m, n, k, beta);
                    let want = reference(op_a, &a, op_b, &b, m, n, k);
                    for i in 0..m * n {
                        let w = want[i] + beta as f64 * c0[i] as f64;
                        // k = 11 products of values below 2 in magnitude: f32 rounding
                        // stays far below 1e-4.
                        assert!(
                            (c[i] as f64 - w).abs() < 1e-4,
                            "{op_a:?} {op_b:?} beta {beta}: element {i} is {} not {w}",
                            c[i]
                        );
                    }
                }
            }
        }
    }
}
