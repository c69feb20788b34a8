//! Governance at run time: the live snapshot of virtual keys, teams and customers, the usage
//! counters and pricing, and the `governance` built-in plugin that authorizes every LLM
//! attempt (PreLLM) and settles its budget reservation with the real usage afterwards
//! (PostLLM, or when a stream ends or the client goes away).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use causeway_core::{GatewayError, LlmRequest, LlmResponse, RequestContext, Usage, UsageCell};
use causeway_governance::{
    AccessRequest, CountersSnapshot, Customer, Estimate, GovernanceSnapshot, MemoryCounters,
    Pricing, Reservation, Team, UsageCounters, VirtualKey, VkLookup, authorize, estimate_from_body,
};
use causeway_plugins::{BoxFuture, HookSet, Plugin, PluginFailure, PreLlmOutcome};
use causeway_store::ConfigStore;
use futures_util::StreamExt;

pub const VK_KIND: &str = "virtual_key";
/// Request value set when the caller's virtual key disables content logging; the
/// observation drops request/response content when it sees it.
pub const DISABLE_CONTENT_LOGGING: &str = "disable_content_logging";
pub const TEAM_KIND: &str = "team";
pub const CUSTOMER_KIND: &str = "customer";

/// How often usage counters are written to the config store (also at shutdown).
pub const PERSIST_EVERY: Duration = Duration::from_secs(15);

pub struct Governance {
    pub snapshot: ArcSwap<GovernanceSnapshot>,
    pub counters: Arc<dyn UsageCounters>,
    pub pricing: Arc<Pricing>,
}

/// The virtual key a caller presented, as the auth layer found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VkRef {
    Value(String),
    Id(String),
}

impl VkRef {
    pub fn lookup(&self) -> VkLookup<'_> {
        match self {
            VkRef::Value(v) => VkLookup::ByValue(v),
            VkRef::Id(id) => VkLookup::ById(id),
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Governance {
    pub fn new(pricing: Pricing) -> Self {
        Governance {
            snapshot: ArcSwap::from_pointee(GovernanceSnapshot::empty()),
            counters: Arc::new(MemoryCounters::new()),
            pricing: Arc::new(pricing),
        }
    }

    /// Rebuilds the snapshot from the store (after every governance write).
    pub async fn reload(&self, store: &ConfigStore) -> Result<(), GatewayError> {
        let vks: Vec<VirtualKey> = store
            .list_entities(VK_KIND)
            .await
            .map_err(crate::state::store_error)?;
        let teams: Vec<Team> = store
            .list_entities(TEAM_KIND)
            .await
            .map_err(crate::state::store_error)?;
        let customers: Vec<Customer> = store
            .list_entities(CUSTOMER_KIND)
            .await
            .map_err(crate::state::store_error)?;
        self.snapshot
            .store(Arc::new(GovernanceSnapshot::new(vks, teams, customers)));
        Ok(())
    }

    /// Restores counters saved by a previous run, so a restart keeps usage.
    pub async fn restore_usage(&self, store: &ConfigStore) {
        match store.load_usage_snapshot().await {
            Ok(Some(json)) => match serde_json::from_str::<CountersSnapshot>(&json) {
                Ok(snap) => self.counters.restore(snap),
                Err(e) => {
                    tracing::warn!(error = %e, "saved usage counters are unreadable; starting from zero")
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading saved usage counters failed"),
        }
    }

    pub async fn persist_usage(&self, store: &ConfigStore) {
        let snap = self.counters.snapshot();
        match serde_json::to_string(&snap) {
            Ok(json) => {
                if let Err(e) = store.save_usage_snapshot(&json).await {
                    tracing::warn!(error = %e, "saving usage counters failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "encoding usage counters failed"),
        }
    }

    fn cost(&self, provider: &str, model: &str, usage: &Usage) -> f64 {
        self.pricing.cost(provider, model, usage).unwrap_or(0.0)
    }
}

/// A granted attempt waiting to be settled, kept in the request's extensions (which need
/// `Clone`; the reservation itself is single-owner, hence the shared slot).
#[derive(Clone)]
struct PendingSlot(Arc<std::sync::Mutex<Option<PendingGrant>>>);

impl PendingSlot {
    fn new(g: PendingGrant) -> Self {
        PendingSlot(Arc::new(std::sync::Mutex::new(Some(g))))
    }

    fn take(&self) -> Option<PendingGrant> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

struct PendingGrant {
    reservation: Reservation,
    provider: String,
    model: String,
    estimate: Estimate,
}

/// The `governance` built-in.
pub struct GovernancePlugin {
    gov: Arc<Governance>,
}

impl GovernancePlugin {
    pub fn new(gov: Arc<Governance>) -> Self {
        GovernancePlugin { gov }
    }
}

impl Plugin for GovernancePlugin {
    fn name(&self) -> &str {
        "governance"
    }

    fn hooks(&self) -> HookSet {
        HookSet {
            pre_llm: true,
            post_llm: true,
            ..HookSet::default()
        }
    }

    fn pre_llm<'a>(
        &'a self,
        ctx: &'a mut RequestContext,
        req: &'a mut LlmRequest,
    ) -> BoxFuture<'a, Result<PreLlmOutcome, PluginFailure>> {
        Box::pin(async move {
            // A previous attempt of this request (a fallback) that was not settled yet.
            if let Some(old) = ctx
                .extensions
                .remove::<PendingSlot>()
                .and_then(|s| s.take())
            {
                old.reservation.settle(None);
            }
            let Some(vk) = ctx.extensions.get::<VkRef>().cloned() else {
                return Ok(PreLlmOutcome::Continue);
            };
            let estimate = estimate_from_body(&req.body);
            let snapshot = self.gov.snapshot.load();
            let decision = authorize(
                &snapshot,
                &self.gov.counters,
                &self.gov.pricing,
                &AccessRequest {
                    vk: vk.lookup(),
                    provider: &req.provider,
                    model: &req.model,
                    estimate,
                    now_ms: now_ms(),
                },
            );
            match decision {
                Ok(grant) => {
                    ctx.key_filter = grant.allowed_key_ids.clone();
                    if grant.disable_content_logging {
                        ctx.values.insert(
                            DISABLE_CONTENT_LOGGING.into(),
                            serde_json::Value::Bool(true),
                        );
                    }
                    ctx.values.insert(
                        "virtual_key_id".into(),
                        serde_json::Value::String(grant.vk_id.clone()),
                    );
                    for (k, v) in [
                        ("team_id", &grant.team_id),
                        ("customer_id", &grant.customer_id),
                    ] {
                        if let Some(v) = v {
                            ctx.values
                                .insert(k.into(), serde_json::Value::String(v.clone()));
                        }
                    }
                    ctx.extensions.insert(PendingSlot::new(PendingGrant {
                        reservation: grant.reservation,
                        provider: req.provider.clone(),
                        model: req.model.clone(),
                        estimate,
                    }));
                    Ok(PreLlmOutcome::Continue)
                }
                Err(e) => Ok(PreLlmOutcome::ShortCircuit(Err(e))),
            }
        })
    }

    fn post_llm<'a>(
        &'a self,
        ctx: &'a mut RequestContext,
        result: &'a mut Result<LlmResponse, GatewayError>,
    ) -> BoxFuture<'a, Result<(), PluginFailure>> {
        Box::pin(async move {
            let Some(pending) = ctx
                .extensions
                .remove::<PendingSlot>()
                .and_then(|s| s.take())
            else {
                return Ok(());
            };
            match result {
                Ok(LlmResponse::Complete { body, route }) => {
                    let usage = Usage::from_openai_body(body);
                    let actual = usage.map(|u| {
                        let cost = self.gov.cost(&route.provider, &route.model, &u);
                        (u, cost)
                    });
                    pending.reservation.settle(actual);
                }
                Ok(LlmResponse::Stream { chunks, .. }) => {
                    let inner = std::mem::replace(chunks, Box::pin(futures_util::stream::empty()));
                    *chunks = settle_when_stream_ends(
                        inner,
                        SettleOnEnd {
                            pending: Some(pending),
                            gov: self.gov.clone(),
                            usage: ctx.stream_usage.clone(),
                            chunks_seen: 0,
                        },
                    );
                }
                Err(_) => pending.reservation.settle(None),
            }
            Ok(())
        })
    }
}

/// Settles a streamed call once: with the usage the engine recorded if the stream ended
/// normally, or with the best estimate (prompt + chunks seen) if the client left early.
struct SettleOnEnd {
    pending: Option<PendingGrant>,
    gov: Arc<Governance>,
    usage: UsageCell,
    chunks_seen: u64,
}

impl SettleOnEnd {
    fn settle(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let recorded = self.usage.lock().ok().and_then(|u| *u);
        let usage = recorded.unwrap_or(Usage {
            // Cut short: the provider bills the prompt and what it generated so far
            // (about one token per chunk for chat streams).
            prompt_tokens: p.estimate.prompt_tokens,
            completion_tokens: self.chunks_seen,
            total_tokens: p.estimate.prompt_tokens + self.chunks_seen,
            cached_tokens: 0,
        });
        let cost = self.gov.cost(&p.provider, &p.model, &usage);
        p.reservation.settle(Some((usage, cost)));
    }
}

impl Drop for SettleOnEnd {
    fn drop(&mut self) {
        self.settle();
    }
}

fn settle_when_stream_ends(
    inner: causeway_core::ChunkStream,
    guard: SettleOnEnd,
) -> causeway_core::ChunkStream {
    let s = futures_util::stream::unfold((inner, guard), |(mut inner, mut guard)| async move {
        match inner.next().await {
            Some(item) => {
                if item.is_ok() {
                    guard.chunks_seen += 1;
                }
                Some((item, (inner, guard)))
            }
            None => {
                guard.settle();
                None
            }
        }
    });
    Box::pin(s) as causeway_core::ChunkStream
}
