//! The one way from a tensor to a slice: after checking that the tensor is
//! defined, f32, on the CPU and contiguous, and that its element count is its
//! shape's, its storage becomes a `&[f32]` (or `&mut [f32]`) borrowed from it.
//!
//! The one rule the borrow cannot check: a tch `Tensor` is a handle, and others
//! (shallow clones, views, `_out` ops' `&Tensor` outputs) may share its storage.
//! No libtorch op may write that storage while a slice of it lives, nor read it
//! while a mutable one does. Callers take a slice, use it in a kernel, and drop
//! it before the next libtorch op on the same storage.

use tch::{Device, Kind, Tensor};

/// Why a tensor cannot be read as a slice of f32.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SliceError {
    #[error("expected an f32 tensor, found {0:?}")]
    Kind(Kind),
    #[error("expected a CPU tensor, found one on {0:?}")]
    Device(Device),
    #[error("expected a contiguous tensor (shape {0:?}); call .contiguous() first")]
    NotContiguous(Vec<i64>),
    #[error("expected {expected} elements for shape {shape:?}, the tensor has {numel}")]
    Length {
        shape: Vec<i64>,
        expected: usize,
        numel: usize,
    },
    #[error("the tensor is undefined")]
    Undefined,
}

/// The number of f32 elements `t` holds, once it passes every check.
fn checked_len(t: &Tensor) -> Result<usize, SliceError> {
    if !t.defined() {
        return Err(SliceError::Undefined);
    }
    if t.kind() != Kind::Float {
        return Err(SliceError::Kind(t.kind()));
    }
    if t.device() != Device::Cpu {
        return Err(SliceError::Device(t.device()));
    }
    let shape = t.size();
    if !t.is_contiguous() {
        return Err(SliceError::NotContiguous(shape));
    }
    let expected = shape.iter().map(|&d| d as usize).product::<usize>();
    let numel = t.numel();
    if numel != expected {
        return Err(SliceError::Length {
            shape,
            expected,
            numel,
        });
    }
    Ok(numel)
}

/// `t`'s elements, in storage order, where `t` is a defined, contiguous f32 CPU tensor.
pub fn try_tensor_slice(t: &Tensor) -> Result<&[f32], SliceError> {
    let len = checked_len(t)?;
    if len == 0 {
        // An empty tensor may have no storage: its pointer may be null.
        return Ok(&[]);
    }
    let ptr = t.data_ptr() as *const f32;
    assert!(ptr.is_aligned(), "f32 storage is not aligned");
    // SAFETY: checked above: `t` is a contiguous f32 CPU tensor of `len` elements
    // from `ptr` (its storage offset included), non-null and aligned; the slice
    // borrows `t`, so the handle, and with it the storage, outlives it; no write
    // to the storage meanwhile is the module's rule for callers.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// [`try_tensor_slice`], mutable. The borrow keeps this handle from being used
/// while the slice lives; other handles of the same storage are the module's rule.
pub fn try_tensor_slice_mut(t: &mut Tensor) -> Result<&mut [f32], SliceError> {
    let len = checked_len(t)?;
    if len == 0 {
        return Ok(&mut []);
    }
    let ptr = t.data_ptr() as *mut f32;
    assert!(ptr.is_aligned(), "f32 storage is not aligned");
    // SAFETY: as in `try_tensor_slice`; the `&mut` borrow makes this slice the only
    // use of the handle while it lives, and of other handles the module's rule.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// [`try_tensor_slice`], panicking with the reason where `t` does not qualify.
pub fn tensor_slice(t: &Tensor) -> &[f32] {
    try_tensor_slice(t).unwrap_or_else(|e| panic!("tensor_slice: {e}"))
}

/// [`try_tensor_slice_mut`], panicking with the reason where `t` does not qualify.
pub fn tensor_slice_mut(t: &mut Tensor) -> &mut [f32] {
    try_tensor_slice_mut(t).unwrap_or_else(|e| panic!("tensor_slice_mut: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contiguous_f32_cpu_tensor_reads_as_its_elements() {
        let t = Tensor::from_slice(&[1f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
        assert_eq!(tensor_slice(&t), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // A view at an offset starts at its own first element.
        assert_eq!(tensor_slice(&t.get(1)), &[4.0, 5.0, 6.0]);
        let mut m = t.copy();
        tensor_slice_mut(&mut m)[4] = 9.0;
        assert_eq!(Vec::<f32>::try_from(m.reshape([-1])).unwrap()[4], 9.0);
        let empty = Tensor::zeros([0, 3], (Kind::Float, Device::Cpu));
        assert!(tensor_slice(&empty).is_empty());
    }

    #[test]
    fn other_tensors_are_refused_with_the_reason() {
        let t = Tensor::from_slice(&[1f32, 2.0, 3.0, 4.0]).view([2, 2]);
        assert_eq!(
            try_tensor_slice(&t.tr()).unwrap_err(),
            SliceError::NotContiguous(vec![2, 2])
        );
        let d = t.to_kind(Kind::Double);
        assert_eq!(
            try_tensor_slice(&d).unwrap_err(),
            SliceError::Kind(Kind::Double)
        );
        let err = std::panic::catch_unwind(|| tensor_slice(&Tensor::from_slice(&[1i64])).len());
        assert!(err.is_err());
    }
}
