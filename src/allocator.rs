//! The process's allocator settings. A conversion hands buffers of megabytes from thread
//! to thread (a chunk read on the splitter is freed on a typing thread, a batch typed there
//! is freed on the writer). With glibc's defaults such buffers are `mmap`ed one by one and
//! given back to the kernel when freed, so every chunk faults in and zeroes its pages
//! again: on two cores that cost a conversion about a fifth of its time in the kernel
//! (docs/benchmarks.md, "Allocator"). [`tune`] keeps them in the heap instead.

/// Allocations up to this size come from the heap rather than their own `mmap`.
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory the heap keeps at its top before giving it back to the kernel.
pub const TRIM_THRESHOLD: usize = 64 << 20;

/// Sets glibc's `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` (fixed values also turn off
/// glibc's own adjusting of them); true if both were taken. Elsewhere (another libc) it
/// does nothing and returns false. Call it first thing, before threads start.
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets parameters of the allocator; called before any other
        // thread exists, it races with no allocation.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_both_settings() {
        assert!(super::tune());
    }
}
