//! The memory limit of this process's container (cgroup v2 `memory.max`,
//! or v1 `memory.limit_in_bytes`).
//!
//! Budgets that must stay inside the container — the worker's decode
//! budget, the API's in-flight request-body budget — are sized from it when
//! not configured, so one setting (the pod's memory limit) scales them all.

use std::path::Path;

/// cgroup v1 reports "no limit" as a huge number.
const NO_LIMIT_ABOVE: u64 = 1 << 60;

/// This process's cgroup memory limit in bytes, if it has one.
pub fn memory_limit() -> Option<u64> {
    memory_limit_under(Path::new("/sys/fs/cgroup"))
}

/// [`memory_limit`] with the cgroup filesystem mounted at `root`.
pub fn memory_limit_under(root: &Path) -> Option<u64> {
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
    }

    #[test]
    fn a_v1_limit_is_found() {
        let dir = std::env::temp_dir().join(format!("inferq-cgrouptest-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("memory")).unwrap();
        std::fs::write(dir.join("memory/memory.limit_in_bytes"), "1073741824\n").unwrap();
        assert_eq!(memory_limit_under(&dir), Some(1 << 30));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
