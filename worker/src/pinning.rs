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
    fn allowed_is_never_empty() {
        assert!(!allowed_cores().is_empty());
    }
}
