//! The system allocator's settings for libtorch's tensors.

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
