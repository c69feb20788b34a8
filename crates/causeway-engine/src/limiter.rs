//! Per-provider concurrency: at most `concurrency` upstream calls in flight and a bounded
//! number waiting; past that, a request is dropped with 503 or waits, as configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use causeway_core::{ErrorClass, GatewayError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Limiter {
    semaphore: Arc<Semaphore>,
    waiting: AtomicUsize,
    pub concurrency: usize,
    pub buffer_size: usize,
}

/// Held for the whole upstream call, streams included; dropping it frees the slot.
pub type Slot = OwnedSemaphorePermit;

impl Limiter {
    pub fn new(concurrency: usize, buffer_size: usize) -> Self {
        Limiter {
            semaphore: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            concurrency,
            buffer_size,
        }
    }

    pub async fn acquire(&self, drop_excess: bool, provider: &str) -> Result<Slot, GatewayError> {
        if let Ok(slot) = self.semaphore.clone().try_acquire_owned() {
            return Ok(slot);
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = WaitGuard(&self.waiting);
        if queued >= self.buffer_size && drop_excess {
            return Err(GatewayError::new(
                503,
                ErrorClass::GatewayDropped,
                format!(
                    "request dropped: queue is full for provider {provider} (concurrency {}, buffer_size {})",
                    self.concurrency, self.buffer_size
                ),
            )
            .with_type("request_dropped")
            .with_retry_after(1));
        }
        self.semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| GatewayError::internal("provider queue closed"))
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> usize {
        self.concurrency
            .max(1)
            .saturating_sub(self.semaphore.available_permits())
    }
}

struct WaitGuard<'a>(&'a AtomicUsize);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drops_when_queue_full() {
        let l = Arc::new(Limiter::new(1, 0));
        let _a = l.acquire(true, "p").await.unwrap();
        let err = l.acquire(true, "p").await.unwrap_err();
        assert_eq!(err.status(), 503);
        assert_eq!(err.kind(), Some("request_dropped"));
        assert_eq!(l.waiting(), 0);
    }

    #[tokio::test]
    async fn waits_when_not_dropping() {
        let l = Arc::new(Limiter::new(1, 0));
        let a = l.acquire(false, "p").await.unwrap();
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.acquire(false, "p").await.map(|_| ()) });
        tokio::task::yield_now().await;
        drop(a);
        waiter.await.unwrap().unwrap();
    }
}
