//! Sizing the decode memory budget from the worker's memory limit.
//!
//! Decoded pixels are the one allocation that grows with the input: a
//! 40-megapixel upload costs 120–160 MB while decoding, whatever its file
//! size. The inference threads share one byte budget for them
//! (`inferq_vision::preprocess::MemoryBudget`), so concurrent large images
//! queue instead of multiplying. Its size is `--decode-memory-mib` when
//! set; otherwise a quarter of the container's memory limit (cgroup v2
//! `memory.max`, or v1 `memory.limit_in_bytes`), and without a limit a
//! fixed 256 MiB — the same as a quarter of the 1 GiB the Kubernetes
//! manifests give a worker. The rest of the limit is the sessions (about
//! 75 MB per thread for EfficientNet-Lite0), the runtime and the
//! preprocessing buffers.

/// Budget without a configured size or a memory limit.
pub const DEFAULT_DECODE_BUDGET: u64 = 256 << 20;
/// Smallest budget derived from a limit (a 12 MP photo still decodes
/// beside another image).
const MIN_DERIVED_BUDGET: u64 = 64 << 20;

/// The decode budget in bytes: `configured_mib` if non-zero, else derived
/// from the memory limit, else [`DEFAULT_DECODE_BUDGET`].
pub fn decode_budget_bytes(configured_mib: u64) -> u64 {
    if configured_mib > 0 {
        return configured_mib.saturating_mul(1 << 20);
    }
    match inferq_runtime::cgroup::memory_limit() {
        Some(limit) => (limit / 4).max(MIN_DERIVED_BUDGET),
        None => DEFAULT_DECODE_BUDGET,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_size_wins() {
        assert_eq!(decode_budget_bytes(100), 100 << 20);
    }
}
