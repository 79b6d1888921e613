//! A per-process memory budget for decoded pixels: a counting semaphore in
//! bytes, shared by the inference threads.
//!
//! The header of an image (width × height, pixel type) is known before its
//! pixels are decoded, so what the decode is about to allocate is known
//! too. Every decode asks the budget for those bytes first and gives them
//! back when its [`Permit`] is dropped (the [`super::Decoded`] image holds
//! it, so the bytes are held until preprocessing has read the image). Two
//! 40-megapixel images arriving at once then decode one after the other
//! instead of both at the same time, and the worker's peak memory follows
//! the budget rather than the number of inference threads.
//!
//! Two properties keep it from ever hanging a worker:
//! - a request larger than the whole budget is clamped to the budget: it
//!   waits until nothing else is held and then runs alone;
//! - a thread holds at most one permit at a time (a permit is taken for one
//!   image and dropped before the next image's is asked for), so every
//!   holder finishes without waiting on the budget again.
//!
//! Waiters are served in arrival order (a ticket queue), so a large image
//! is not starved by a stream of small ones. It is a plain `Mutex` +
//! `Condvar`: the inference threads are std threads, never the async
//! runtime.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The shared budget; clone the `Arc` into each inference thread.
#[derive(Debug)]
pub struct MemoryBudget {
    capacity: u64,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes held by live permits.
    in_use: u64,
    /// Next ticket to hand out, and the ticket allowed to take bytes next.
    next_ticket: u64,
    serving: u64,
}

/// Bytes held from a [`MemoryBudget`]; given back on drop.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl MemoryBudget {
    /// A budget of `capacity` bytes (at least 1).
    pub fn new(capacity: u64) -> Arc<Self> {
        Arc::new(MemoryBudget {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        })
    }

    /// The budget's size in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes currently held.
    pub fn in_use(&self) -> u64 {
        self.lock().in_use
    }

    /// Takes `bytes` (clamped to the capacity), waiting in arrival order
    /// until they fit.
    pub fn acquire(self: &Arc<Self>, bytes: u64) -> Permit {
        let bytes = bytes.min(self.capacity);
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        while state.serving != ticket || state.in_use + bytes > self.capacity {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.serving += 1;
        state.in_use += bytes;
        drop(state);
        // The next ticket may fit beside this one.
        self.changed.notify_all();
        Permit {
            budget: Arc::clone(self),
            bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two counters updated together: still consistent after
        // a panic elsewhere.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Permit {
    /// Bytes this permit holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        state.in_use -= self.bytes;
        drop(state);
        self.budget.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn requests_queue_until_bytes_are_released() {
        let budget = MemoryBudget::new(100);
        let a = budget.acquire(60);
        assert_eq!(budget.in_use(), 60);
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.acquire(60).bytes())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "60 + 60 > 100 must wait");
        drop(a);
        assert_eq!(waiter.join().unwrap(), 60);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_request_above_the_capacity_runs_alone_instead_of_deadlocking() {
        let budget = MemoryBudget::new(100);
        let small = budget.acquire(10);
        let big = {
            let budget = budget.clone();
            std::thread::spawn(move || {
                let p = budget.acquire(1_000);
                let held = budget.in_use();
                drop(p);
                held
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!big.is_finished());
        drop(small);
        assert_eq!(big.join().unwrap(), 100, "clamped to the whole budget");
    }

    #[test]
    fn many_threads_never_exceed_the_capacity() {
        let budget = MemoryBudget::new(1_000);
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    for j in 0..200u64 {
                        let p = budget.acquire(100 + (i * 37 + j * 11) % 500);
                        assert!(budget.in_use() <= 1_000);
                        drop(p);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(budget.in_use(), 0);
    }
}
