//! The handle of a reserved request slot and budget estimate. It must be settled exactly
//! once; consuming it by value makes a second settle impossible, and dropping it unsettled
//! (an early return, a cancelled future) settles at zero so no budget stays held.

use std::fmt;
use std::sync::Arc;

use causeway_core::Usage;

use crate::counters::{ReservationId, UsageCounters};

struct Pending {
    id: ReservationId,
    counters: Arc<dyn UsageCounters>,
}

pub struct Reservation {
    pending: Option<Pending>,
    estimated_cost_usd: f64,
}

impl Reservation {
    /// A reservation that holds nothing (no limits or budgets applied to the request).
    pub fn none() -> Reservation {
        Reservation {
            pending: None,
            estimated_cost_usd: 0.0,
        }
    }

    pub(crate) fn held(
        id: ReservationId,
        counters: Arc<dyn UsageCounters>,
        estimated_cost_usd: f64,
    ) -> Reservation {
        Reservation {
            pending: Some(Pending { id, counters }),
            estimated_cost_usd,
        }
    }

    pub fn id(&self) -> Option<ReservationId> {
        self.pending.as_ref().map(|p| p.id)
    }

    /// What was reserved against each budget.
    pub fn estimated_cost_usd(&self) -> f64 {
        self.estimated_cost_usd
    }

    /// Releases the reservation and charges what the call used: `Some((usage, cost))` on
    /// success or partial output, `None` (zero) when nothing was billed. Tokens charged are
    /// `total_tokens`, or prompt + completion when the provider left the total at 0.
    pub fn settle(mut self, actual: Option<(Usage, f64)>) {
        if let Some(p) = self.pending.take() {
            let (cost, tokens) = actual.map_or((0.0, 0), |(u, cost)| {
                let tokens = if u.total_tokens > 0 {
                    u.total_tokens
                } else {
                    u.prompt_tokens.saturating_add(u.completion_tokens)
                };
                (cost, tokens)
            });
            p.counters.settle(p.id, cost, tokens);
        }
    }
}

/// Same as [`Reservation::settle`].
pub fn settle(reservation: Reservation, actual: Option<(Usage, f64)>) {
    reservation.settle(actual);
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            // Settling at zero undercharges a call the provider may still bill, but holding
            // the estimate forever would block the budget; callers that know the partial
            // usage should settle with it instead.
            tracing::debug!(reservation = %p.id, "reservation dropped unsettled; released at zero");
            p.counters.settle(p.id, 0.0, 0);
        }
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("id", &self.id())
            .field("estimated_cost_usd", &self.estimated_cost_usd)
            .finish()
    }
}
