//! The in-flight request-body budget: a bound, in bytes, on the request
//! bodies the API holds in memory at once.
//!
//! The in-flight request limit ([`crate::http::concurrency`]) bounds how
//! many requests run, not how large they are: 1,024 requests of the
//! maximum JSON size would be 27 GB. So every buffered body also reserves
//! its bytes here before it is read — its `Content-Length` up front, or,
//! for a chunked body, a reservation that grows as the bytes arrive, up to
//! the route's size limit — and keeps the reservation until its request is
//! answered, which covers what is parsed from it (at most about the body's
//! size again: see [`crate::intake::json_tensor`]).
//!
//! A request that finds the budget spent waits for it, first come first
//! served, for at most `--request-timeout-secs` since it arrived; then it
//! is answered `503 overloaded` with `Retry-After`, like the in-flight
//! limit, and its body is drained so the client reads the answer. A body
//! larger than the whole budget could never be admitted and is answered
//! `413` at once.
//!
//! [`hold`] is the middleware that gives every request its (empty)
//! [`BodyCharge`]; [`crate::http::body::read_body`] and the multipart
//! readers grow it. The budget is counted in KiB permits of a semaphore.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use inferq_runtime::metrics::metrics;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::http::error::ApiError;

/// Budget without a configured size or a container memory limit: about
/// nine JSON bodies of the default maximum size.
pub const DEFAULT_BUDGET: u64 = 256 << 20;
/// Smallest budget derived from a memory limit.
const MIN_DERIVED_BUDGET: u64 = 64 << 20;
/// Bytes per semaphore permit.
const UNIT: u64 = 1024;
/// A chunked body's first reservation.
const FIRST_STEP: u64 = 256 * 1024;

/// The budget in bytes: `configured_mib` if non-zero, else a quarter of the
/// container's memory limit (at least 64 MiB) — a body and what is parsed
/// from it take up to about twice its size, so bodies stay within half the
/// limit — else [`DEFAULT_BUDGET`].
pub fn budget_bytes(configured_mib: u64) -> u64 {
    if configured_mib > 0 {
        return configured_mib.saturating_mul(1 << 20);
    }
    match inferq_runtime::cgroup::memory_limit() {
        Some(limit) => (limit / 4).max(MIN_DERIVED_BUDGET),
        None => DEFAULT_BUDGET,
    }
}

/// The process's body budget; cheap to clone.
#[derive(Clone)]
pub struct BodyBudget(Arc<Shared>);

struct Shared {
    permits: Arc<Semaphore>,
    units: u32,
    wait: Duration,
}

impl BodyBudget {
    /// A budget of `bytes` (rounded down to whole KiB, at least one); a
    /// request waits at most `wait` for it.
    pub fn new(bytes: u64, wait: Duration) -> Self {
        let units = (bytes / UNIT).clamp(1, u32::MAX as u64) as u32;
        metrics()
            .body_budget_limit
            .set((units as u64 * UNIT) as i64);
        BodyBudget(Arc::new(Shared {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
            wait,
        }))
    }

    /// The whole budget, in bytes.
    pub fn capacity(&self) -> u64 {
        self.0.units as u64 * UNIT
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> u64 {
        (self.0.units as u64 - self.0.permits.available_permits() as u64) * UNIT
    }

    /// A new request's charge, holding nothing yet.
    pub fn charge(&self) -> BodyCharge {
        BodyCharge(Arc::new(Charge {
            budget: self.clone(),
            held: Mutex::new(None),
            deadline: Instant::now() + self.0.wait,
        }))
    }

    fn publish(&self) {
        metrics().body_budget_in_use.set(self.in_use() as i64);
    }
}

/// What one request has reserved; released when the last clone is dropped
/// (the request's extensions and [`hold`]'s copy, so when it is answered).
#[derive(Clone)]
pub struct BodyCharge(Arc<Charge>);

struct Charge {
    budget: BodyBudget,
    held: Mutex<Option<OwnedSemaphorePermit>>,
    /// Waiting for the budget ends here, however many times the request
    /// has to wait.
    deadline: Instant,
}

impl Drop for Charge {
    fn drop(&mut self) {
        let permit = match self.held.get_mut() {
            Ok(held) => held.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(permit);
        self.budget.publish();
    }
}

fn units(bytes: u64) -> u64 {
    bytes.div_ceil(UNIT)
}

impl BodyCharge {
    /// Bytes this request holds.
    pub fn held(&self) -> u64 {
        self.lock().as_ref().map_or(0, |p| p.num_permits() as u64) * UNIT
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.0.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Grows the reservation to at least `bytes`, waiting for the budget
    /// until the request's deadline: [`ApiError::BodyOverBudget`] when
    /// `bytes` exceeds the whole budget, [`ApiError::BodyBudgetSpent`]
    /// when the wait ran out.
    pub async fn reserve(&self, bytes: u64) -> Result<(), ApiError> {
        let budget = &self.0.budget;
        let held = units(self.held());
        let wanted = units(bytes);
        if wanted <= held {
            return Ok(());
        }
        let m = metrics();
        if wanted > budget.0.units as u64 {
            m.body_budget_waits.with_label_values(&["too_large"]).inc();
            return Err(ApiError::BodyOverBudget {
                needed: bytes,
                budget: budget.capacity(),
            });
        }
        let more = (wanted - held) as u32;
        let permits = budget.0.permits.clone();
        let permit = match permits.clone().try_acquire_many_owned(more) {
            Ok(p) => p,
            Err(_) => {
                let acquired =
                    tokio::time::timeout_at(self.0.deadline, permits.acquire_many_owned(more))
                        .await;
                match acquired {
                    Ok(Ok(p)) => {
                        m.body_budget_waits.with_label_values(&["admitted"]).inc();
                        p
                    }
                    _ => {
                        m.body_budget_waits.with_label_values(&["shed"]).inc();
                        return Err(ApiError::BodyBudgetSpent {
                            budget: budget.capacity(),
                        });
                    }
                }
            }
        };
        {
            let mut held = self.lock();
            match held.as_mut() {
                Some(h) => h.merge(permit),
                None => *held = Some(permit),
            }
        }
        budget.publish();
        Ok(())
    }

    /// Reserves what a body read by a third-party reader (multipart) may
    /// occupy: its `Content-Length`, or `limit` when it has none.
    pub async fn reserve_declared(
        &self,
        headers: &HeaderMap,
        limit: usize,
    ) -> Result<(), ApiError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        self.reserve(declared.unwrap_or(limit as u64).min(limit as u64))
            .await
    }
}

/// A chunked body's next reservation once it holds `reserved` and needs
/// `needed`: double, so the waits are few, within the route's `limit`.
pub fn next_step(reserved: u64, needed: u64, limit: u64) -> u64 {
    needed
        .max(reserved.saturating_mul(2))
        .max(FIRST_STEP)
        .min(limit.max(needed))
}

/// Middleware: gives the request its [`BodyCharge`] and keeps it until the
/// response is ready.
pub async fn hold(State(budget): State<BodyBudget>, mut req: Request, next: Next) -> Response {
    let charge = budget.charge();
    req.extensions_mut().insert(charge.clone());
    let resp = next.run(req).await;
    drop(charge);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[tokio::test]
    async fn reservations_are_released_when_the_request_ends() {
        let budget = BodyBudget::new(4 * MIB, Duration::from_secs(1));
        let a = budget.charge();
        a.reserve(MIB).await.unwrap();
        a.reserve(3 * MIB).await.unwrap(); // grows, does not add
        assert_eq!(budget.in_use(), 3 * MIB);
        a.reserve(MIB).await.unwrap(); // already covered
        assert_eq!(a.held(), 3 * MIB);
        let clone = a.clone();
        drop(a);
        assert_eq!(budget.in_use(), 3 * MIB, "a clone still holds it");
        drop(clone);
        assert_eq!(budget.in_use(), 0);
        // Partial KiB round up.
        let b = budget.charge();
        b.reserve(1).await.unwrap();
        assert_eq!(budget.in_use(), UNIT);
    }

    #[tokio::test]
    async fn a_body_larger_than_the_budget_is_refused_at_once() {
        let budget = BodyBudget::new(4 * MIB, Duration::from_secs(60));
        let err = budget.charge().reserve(4 * MIB + 1).await.unwrap_err();
        assert!(matches!(err, ApiError::BodyOverBudget { .. }), "{err}");
        budget.charge().reserve(4 * MIB).await.unwrap();
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn waits_end_at_the_deadline_and_resume_on_release() {
        let wait = Duration::from_millis(300);
        let budget = BodyBudget::new(4 * MIB, wait);
        let first = budget.charge();
        first.reserve(3 * MIB).await.unwrap();
        // Nothing is released: the wait ends at the request's deadline (the
        // outer timeout only keeps a regression from hanging the test).
        let started = Instant::now();
        let refused =
            tokio::time::timeout(Duration::from_secs(30), budget.charge().reserve(2 * MIB))
                .await
                .expect("the wait is bounded");
        let err = refused.unwrap_err();
        assert!(matches!(err, ApiError::BodyBudgetSpent { .. }), "{err}");
        assert!(started.elapsed() >= wait);
        assert_eq!(budget.in_use(), 3 * MIB, "a failed wait holds nothing");
        // A waiting request is admitted when another one ends.
        let budget = BodyBudget::new(4 * MIB, Duration::from_secs(30));
        let first = budget.charge();
        first.reserve(3 * MIB).await.unwrap();
        let second = budget.charge();
        let waiting =
            tokio::spawn(async move { second.reserve(2 * MIB).await.map(|_| second.held()) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        drop(first);
        assert_eq!(waiting.await.unwrap().unwrap(), 2 * MIB);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn chunked_reservations_double_within_the_limit() {
        assert_eq!(next_step(0, 10, 100 * MIB), FIRST_STEP);
        assert_eq!(
            next_step(FIRST_STEP, FIRST_STEP + 1, 100 * MIB),
            2 * FIRST_STEP
        );
        assert_eq!(next_step(64 * MIB, 64 * MIB + 1, 100 * MIB), 100 * MIB);
        assert_eq!(next_step(0, 5 * MIB, 2 * MIB), 5 * MIB);
    }

    #[test]
    fn a_configured_size_wins() {
        assert_eq!(budget_bytes(100), 100 * MIB);
    }
}
