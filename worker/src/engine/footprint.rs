//! Memory figures of the engine: what each loaded model keeps resident,
//! and the per-job numbers that go into a job's timings.
//!
//! ONNX Runtime keeps a model's weights, its arena and its kernels' scratch
//! space in native memory. Its allocator statistics (`AllocatorGetStats`)
//! exist only in the C API, and the workspace forbids the `unsafe` a raw
//! call would need; the `ort` crate does not wrap them. So a model's
//! resident memory is measured from the outside: the process's RSS growth
//! while a thread loads and warms its session. Loads are serialised over
//! the process ([`measure_load`]) so that two threads loading at once do
//! not count each other's pages. A job running on another thread during a
//! hot reload can still blur one figure by its own (small, per-image)
//! allocations: the figure is an estimate, good to a few MB. Each load ends
//! with a heap trim (`inferq_heap`), so what the parse of the model file
//! freed is returned to the OS and not counted.
//!
//! The per-model gauge is the sum over the process's threads (each owns a
//! session of every model); [`ModelMemory`] holds the per-thread figures
//! for loaded models only, so it is as bounded as the set of models.

use std::collections::HashMap;
use std::sync::Mutex;

use inferq_runtime::procmem;

/// A job's memory figures, in bytes (see `inferq_core::job::Timings`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobMemory {
    pub rss_before: u64,
    pub rss_after: u64,
    pub decoded: u64,
    pub input_tensor: u64,
    pub model: u64,
}

/// One model load at a time per process, so its RSS growth is its own.
static LOADING: Mutex<()> = Mutex::new(());

/// Runs `load` alone in the process and returns its result with the RSS
/// growth it caused (0 where RSS cannot be read, or when it shrank).
pub(super) fn measure_load<T>(load: impl FnOnce() -> T) -> (T, u64) {
    let _alone = LOADING.lock().unwrap_or_else(|p| p.into_inner());
    let before = procmem::resident_bytes();
    let out = load();
    // The parse of the model file is freed by now; without a trim glibc
    // keeps it (tens of MB), and the figure below would count it too.
    inferq_heap::release_free_memory();
    let after = procmem::resident_bytes();
    let grown = match (before, after) {
        (Some(b), Some(a)) => a.saturating_sub(b),
        _ => 0,
    };
    (out, grown)
}

/// Per-thread resident bytes of each loaded model, published as the
/// `inferq_model_resident_memory_bytes` gauge.
#[derive(Debug, Default)]
pub(super) struct ModelMemory {
    /// (model name, version) -> thread index -> bytes.
    models: Mutex<HashMap<(String, u64), HashMap<usize, u64>>>,
}

impl ModelMemory {
    /// Records what `thread`'s session of `name:version` holds.
    pub(super) fn set(&self, name: &str, version: u64, thread: usize, bytes: u64) {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let threads = models.entry((name.to_owned(), version)).or_default();
        threads.insert(thread, bytes);
        publish(name, version, threads.values().sum());
    }

    /// Forgets `thread`'s session of `name:version` (dropped on reload).
    pub(super) fn remove(&self, name: &str, version: u64, thread: usize) {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let key = (name.to_owned(), version);
        let Some(threads) = models.get_mut(&key) else {
            return;
        };
        threads.remove(&thread);
        if threads.is_empty() {
            models.remove(&key);
            let _ = inferq_runtime::metrics::metrics()
                .model_resident
                .remove_label_values(&[name, &version.to_string()]);
        } else {
            publish(name, version, threads.values().sum());
        }
    }

    /// Bytes of every thread's session of `name:version`.
    #[cfg(test)]
    fn total(&self, name: &str, version: u64) -> u64 {
        let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        models
            .get(&(name.to_owned(), version))
            .map_or(0, |t| t.values().sum())
    }
}

fn publish(name: &str, version: u64, bytes: u64) {
    inferq_runtime::metrics::metrics()
        .model_resident
        .with_label_values(&[name, &version.to_string()])
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// The process's RSS now, 0 where it cannot be read.
pub(super) fn rss() -> u64 {
    procmem::resident_bytes().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_sums_its_threads_and_leaves_with_the_last() {
        let m = ModelMemory::default();
        m.set("fp-test", 3, 0, 10);
        m.set("fp-test", 3, 1, 15);
        m.set("fp-test", 3, 1, 20); // reloaded on thread 1
        assert_eq!(m.total("fp-test", 3), 30);
        let text = inferq_runtime::metrics::render();
        assert!(
            text.contains("inferq_model_resident_memory_bytes{model=\"fp-test\",version=\"3\"} 30"),
            "{text}"
        );
        m.remove("fp-test", 3, 0);
        assert_eq!(m.total("fp-test", 3), 20);
        m.remove("fp-test", 3, 1);
        assert_eq!(m.total("fp-test", 3), 0);
        let text = inferq_runtime::metrics::render();
        assert!(!text.contains("model=\"fp-test\""), "{text}");
    }

    #[test]
    fn a_load_that_allocates_is_measured() {
        let (block, grown) = measure_load(|| std::hint::black_box(vec![7u8; 24 << 20]));
        if procmem::resident_bytes().is_some() {
            assert!(grown >= 16 << 20, "{grown}");
        }
        drop(std::hint::black_box(block));
    }
}
