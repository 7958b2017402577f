//! The process's allocator settings. A conversion hands buffers of megabytes from thread
//! to thread (a chunk read on the splitter is freed on a typing thread, a batch typed there
//! is freed on the writer). With glibc's defaults such buffers are `mmap`ed one by one and
//! given back to the kernel when freed, so every chunk faults in and zeroes its pages
//! again: on two cores that cost a conversion about a fifth of its time in the kernel
//! (docs/benchmarks.md, "Allocator"). [`tune`] keeps them in the heap instead.

/// Allocations up to this size come from the heap rather than their own `mmap`.
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory a heap keeps at its top before giving it back to the kernel: several
/// chunks' worth, and below the 64 MiB of a thread's heap in glibc, so a long-running
/// worker's heaps still shrink after a large file (16 and 64 MiB measured alike).
pub const TRIM_THRESHOLD: usize = 16 << 20;

/// Sets glibc's `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` (fixed values also turn off
/// glibc's own adjusting of them); true if both were taken. Elsewhere (another libc) it
/// does nothing and returns false. The binary calls it first thing; what it returns
/// changes nothing (the defaults are slower, not wrong).
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt sets parameters of the allocator under its lock; it may be called
        // at any time (first thing, so that every allocation after uses them).
        let (mmap, trim) = unsafe {
            (
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int),
                libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int),
            )
        };
        mmap == 1 && trim == 1
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
