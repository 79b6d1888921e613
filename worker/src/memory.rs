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

use std::path::Path;

/// Budget without a configured size or a memory limit.
pub const DEFAULT_DECODE_BUDGET: u64 = 256 << 20;
/// Smallest budget derived from a limit (a 12 MP photo still decodes
/// beside another image).
const MIN_DERIVED_BUDGET: u64 = 64 << 20;
/// cgroup v1 reports "no limit" as a huge number.
const NO_LIMIT_ABOVE: u64 = 1 << 60;

/// The decode budget in bytes: `configured_mib` if non-zero, else derived
/// from the memory limit, else [`DEFAULT_DECODE_BUDGET`].
pub fn decode_budget_bytes(configured_mib: u64) -> u64 {
    if configured_mib > 0 {
        return configured_mib.saturating_mul(1 << 20);
    }
    match memory_limit(Path::new("/sys/fs/cgroup")) {
        Some(limit) => (limit / 4).max(MIN_DERIVED_BUDGET),
        None => DEFAULT_DECODE_BUDGET,
    }
}

/// This process's cgroup memory limit, if it has one.
fn memory_limit(root: &Path) -> Option<u64> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    // The process's own cgroup, named in /proc/self/cgroup: "0::/path" (v2)
    // or "N:memory:/path" (v1). Inside a container both are usually "/".
    let cgroups = read(Path::new("/proc/self/cgroup")).unwrap_or_default();
    let own = |prefix: &str| {
        cgroups
            .lines()
            .find_map(|l| {
                l.split_once(prefix)
                    .map(|(_, p)| p.trim_start_matches('/').to_owned())
            })
            .unwrap_or_default()
    };
    let candidates = [
        root.join(own("0::")).join("memory.max"),
        root.join("memory.max"),
        root.join("memory")
            .join(own(":memory:"))
            .join("memory.limit_in_bytes"),
        root.join("memory/memory.limit_in_bytes"),
    ];
    candidates
        .iter()
        .filter_map(|p| read(p))
        .find_map(|s| parse_limit(&s))
}

/// A limit file's value; `None` for "max" or v1's "unlimited" number.
fn parse_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&v| v > 0 && v < NO_LIMIT_ABOVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_unlimited_is_none() {
        assert_eq!(parse_limit("1073741824\n"), Some(1 << 30));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712"), None);
        assert_eq!(decode_budget_bytes(100), 100 << 20);
    }

    #[test]
    fn a_cgroup_limit_gives_a_quarter() {
        let dir = std::env::temp_dir().join(format!("inferq-memtest-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("memory")).unwrap();
        std::fs::write(dir.join("memory/memory.limit_in_bytes"), "1073741824\n").unwrap();
        assert_eq!(memory_limit(&dir), Some(1 << 30));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
