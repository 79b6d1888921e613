//! Choosing and pinning the cores inference threads run on.
//!
//! One inference thread per core, each pinned, keeps ONNX Runtime's caches
//! warm and stops the OS from stacking two busy threads on one core. The
//! pool is sized from the CPUs this *process* may use (its affinity mask, as
//! set by a container runtime or the kubelet's static CPU manager), not from
//! the machine's core count. Pinning is best effort: where it fails (a
//! restricted sandbox, a core that disappeared) we log a warning and run
//! unpinned rather than refuse to start.

use core_affinity::CoreId;

/// Cores this process may run on, in id order.
pub fn allowed_cores() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort_unstable();
    if ids.is_empty() {
        // Affinity unknown on this platform: fall back to the CPU count.
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        ids = (0..n).collect();
    }
    ids
}

/// Whole CPUs the cgroup CPU quota allows (cgroup v2 `cpu.max` or v1
/// `cpu.cfs_quota_us`/`cpu.cfs_period_us`, rounded up); `None` without a
/// quota. A container limited to 2 CPUs on a 16-core host sees all 16 in
/// its affinity mask but can only keep 2 busy.
pub fn quota_cores() -> Option<usize> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    if let Some(max) = read("/sys/fs/cgroup/cpu.max") {
        return parse_cpu_max(&max);
    }
    let quota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")?;
    let period = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")?;
    parse_cpu_max(&format!("{} {}", quota.trim(), period.trim()))
}

/// `"<quota> <period>"` → ceil(quota / period); `max` or a negative quota
/// means none.
fn parse_cpu_max(text: &str) -> Option<usize> {
    let mut it = text.split_whitespace();
    let quota: i64 = it.next()?.parse().ok()?;
    let period: i64 = it.next().map_or(Some(100_000), |p| p.parse().ok())?;
    if quota <= 0 || period <= 0 {
        return None;
    }
    Some(((quota + period - 1) / period) as usize)
}

/// The core each of `threads` inference threads should run on.
///
/// `threads == 0` means one per allowed core; an explicit `cores` list
/// overrides the allowed set (ids outside it are dropped with a warning).
/// Thread `i` gets `cores[i % cores.len()]`.
pub fn plan(threads: usize, cores: &[usize], allowed: &[usize]) -> Vec<usize> {
    let mut pool: Vec<usize> = if cores.is_empty() {
        allowed.to_vec()
    } else {
        let (ok, bad): (Vec<usize>, Vec<usize>) = cores.iter().partition(|c| allowed.contains(c));
        if !bad.is_empty() {
            tracing::warn!(
                ?bad,
                ?allowed,
                "configured cores are not available to this process; ignoring them"
            );
        }
        ok
    };
    if pool.is_empty() {
        pool = allowed.to_vec();
    }
    if pool.is_empty() {
        pool.push(0);
    }
    let n = if threads == 0 { pool.len() } else { threads };
    (0..n).map(|i| pool[i % pool.len()]).collect()
}

/// Pins the calling thread; warns instead of failing.
pub fn pin_current(core: usize) -> bool {
    let ok = core_affinity::set_for_current(CoreId { id: core });
    if !ok {
        tracing::warn!(core, "could not pin inference thread; running unpinned");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_per_allowed_core_by_default() {
        assert_eq!(plan(0, &[], &[2, 3]), vec![2, 3]);
    }

    #[test]
    fn explicit_threads_wrap_around_cores() {
        assert_eq!(plan(3, &[], &[0, 1]), vec![0, 1, 0]);
        assert_eq!(plan(2, &[1], &[0, 1]), vec![1, 1]);
    }

    #[test]
    fn unavailable_cores_are_ignored() {
        assert_eq!(plan(0, &[7, 1], &[0, 1]), vec![1]);
        assert_eq!(plan(0, &[7], &[0, 1]), vec![0, 1]);
    }

    #[test]
    fn cpu_quota_rounds_up_and_max_is_none() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("200000 100000"), Some(2));
        assert_eq!(parse_cpu_max("150000 100000"), Some(2));
        assert_eq!(parse_cpu_max("-1 100000"), None);
    }

    #[test]
    fn allowed_is_never_empty() {
        assert!(!allowed_cores().is_empty());
    }
}
