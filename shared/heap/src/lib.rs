//! Gives the heap memory that loading a model leaves free back to the
//! operating system.
//!
//! Building an ONNX Runtime session parses the whole model file (tens of MB
//! of protobuf for a real network) into short-lived buffers, copies the
//! weights into tensors and frees the parse. glibc's allocator keeps what
//! was freed inside its arenas for reuse, and the freed blocks sit between
//! live ones, so the process never shrinks on its own: measured with
//! EfficientNet-Lite0, an idle worker held 103 MiB after loading instead of
//! 83 MiB (docs/performance.md, "Worker memory after a load"). Nothing
//! allocated per job is that large or that long-lived, so one trim after a
//! load (or after a reload dropped a session) returns the memory without
//! touching the per-job path.
//!
//! `malloc_trim(0)` walks every arena and releases the whole free pages in
//! it (`madvise(MADV_DONTNEED)`), not only the top of the main heap. It is
//! glibc-only; elsewhere [`release_free_memory`] does nothing.

/// Returns the allocator's free pages to the OS; `true` when any were
/// released. Takes a few milliseconds on a large heap, so call it after a
/// model load, never per job.
pub fn release_free_memory() -> bool {
    trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes a plain integer, touches only the
    // allocator's own bookkeeping under its own locks, and is documented
    // as safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large block that was touched and freed is handed back: the
    /// process's resident set shrinks by most of it. (Read from
    /// /proc/self/statm; glibc only.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_blocks_between_live_ones_are_released() {
        fn resident_pages() -> u64 {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            statm.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        // Many mid-size blocks (below the mmap threshold, so they live in
        // the heap), every other one kept: the freed half cannot be given
        // back by shrinking the heap's top.
        let every_other_kept = || -> Vec<Vec<u8>> {
            (0..400)
                .map(|i| vec![i as u8; 64 << 10])
                .collect::<Vec<_>>()
                .into_iter()
                .step_by(2)
                .collect()
        };
        let kept = every_other_kept();
        release_free_memory();
        let before = resident_pages();
        let kept_more = every_other_kept();
        let grown = resident_pages();
        assert!(release_free_memory(), "nothing was released");
        let after = resident_pages();
        let page = 4096;
        // The freed half of the second round is ~12.5 MiB.
        assert!(
            (grown - after) * page > 8 << 20,
            "released only {} KiB (before {before}, grown {grown}, after {after} pages)",
            (grown - after) * page / 1024
        );
        assert_eq!(kept.len() + kept_more.len(), 400);
    }

    #[test]
    fn trimming_an_idle_heap_is_harmless() {
        release_free_memory();
        release_free_memory();
        let v = vec![1u8; 1 << 20];
        assert_eq!(v.iter().map(|&b| b as u64).sum::<u64>(), 1 << 20);
    }
}
