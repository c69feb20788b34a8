//! `/api/logs` (Bifrost compatible): search with filters and paging, one log, stats, the
//! writer's dropped count, and delete. Reads go to the log store directly; writes never
//! happen here (the `LogWriter` owns them), except deletes.
//!
//! Query parameters follow Bifrost's handler (`handlers/logging.go`): comma-separated
//! lists, `start_time`/`end_time`, ranges, `content_search`, `limit`/`offset`/`sort_by`/
//! `order`. Unlike Bifrost, a malformed value is a 400 naming the parameter instead of
//! being silently ignored: a typo must not widen a query, least of all a delete.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use causeway_core::GatewayError;
use causeway_logstore::{
    LogFilter, LogStore, LogStoreError, MAX_LIMIT, Order, Page, SortBy, now_ms,
};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, json};

use crate::body::{decode_json, read_limited};
use crate::error::{ApiError, json_response};

type ApiResult = Result<Response, ApiError>;

/// What the handlers need: the store, and the writer's dropped-entries counter.
#[derive(Clone)]
pub struct LogsApi {
    pub store: Arc<LogStore>,
    pub dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
}

/// The `/logs` routes (relative to `/api`), ready to merge into the management router.
/// With the logs store disabled (`None`) every route answers 503 `logs_store_disabled`.
pub fn router<S: Clone + Send + Sync + 'static>(api: Option<Arc<LogsApi>>) -> Router<S> {
    match api {
        Some(api) => Router::new()
            .route("/logs", get(list).delete(delete))
            .route("/logs/stats", get(stats))
            .route("/logs/dropped", get(dropped))
            .route("/logs/{id}", get(get_one))
            .with_state(api),
        None => Router::new()
            .route("/logs", get(disabled).delete(disabled))
            .route("/logs/stats", get(disabled))
            .route("/logs/dropped", get(disabled))
            .route("/logs/{id}", get(disabled)),
    }
}

async fn disabled() -> Response {
    crate::error::error_response(
        &GatewayError::new(
            503,
            causeway_core::ErrorClass::GatewayInternal,
            "request logs are disabled (logs_store.enabled: false in config.json)",
        )
        .with_type("logs_store_disabled"),
        None,
    )
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn params(q: Params) -> Result<Vec<(String, String)>, GatewayError> {
    q.map(|Query(v)| v)
        .map_err(|e| GatewayError::bad_request(format!("invalid query string: {}", e.body_text())))
}

fn bad(param: &str, msg: impl std::fmt::Display) -> GatewayError {
    GatewayError::bad_request(format!("invalid {param}: {msg}")).with_param(param)
}

fn list_param(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn f64_param(name: &str, v: &str) -> Result<f64, GatewayError> {
    match v.trim().parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(f),
        _ => Err(bad(name, format!("{v:?} is not a number"))),
    }
}

fn u64_param(name: &str, v: &str) -> Result<u64, GatewayError> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| bad(name, format!("{v:?} is not a non-negative integer")))
}

fn bool_param(name: &str, v: &str) -> Result<bool, GatewayError> {
    match v.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(bad(name, format!("{v:?} is not true or false"))),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses RFC 3339 (`2025-01-31T12:00:00Z`, `…T12:00:00.123+02:00`) to unix ms.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Milliseconds from the first three fraction digits; finer digits truncate.
        let frac = &s[start..i.min(start + 3)];
        ms = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    let secs =
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// `start_time`/`end_time`: RFC 3339 (what Bifrost's UI sends) or unix milliseconds.
fn time_param(name: &str, v: &str) -> Result<i64, GatewayError> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()) {
        return v
            .parse::<i64>()
            .map_err(|_| bad(name, format!("{v:?} is out of range")));
    }
    parse_rfc3339(v).ok_or_else(|| {
        bad(
            name,
            format!("{v:?} is neither RFC 3339 (2025-01-31T12:00:00Z) nor unix milliseconds"),
        )
    })
}

/// `period=30m|24h|7d`: the last N minutes/hours/days, ending now.
fn period_param(v: &str) -> Result<i64, GatewayError> {
    let v = v.trim();
    let (n, unit) = v.split_at(v.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| bad("period", format!("{v:?} is not like 30m, 24h or 7d")))?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad("period", format!("{v:?} is not like 30m, 24h or 7d"))),
    };
    Ok(n.saturating_mul(unit_ms))
}

/// Parameters accepted besides filters: paging on GET, `all` on DELETE.
#[derive(Debug, Default)]
struct Parsed {
    filter: LogFilter,
    page: Page,
    all: bool,
}

/// Filter parameters, also used by DELETE (where anything else is refused).
const FILTER_PARAMS: &[&str] = &[
    "providers",
    "models",
    "status",
    "objects",
    "virtual_key_ids",
    "team_ids",
    "customer_ids",
    "selected_key_ids",
    "start_time",
    "end_time",
    "period",
    "min_latency",
    "max_latency",
    "min_tokens",
    "max_tokens",
    "min_cost",
    "max_cost",
    "content_search",
    "request_id",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum For {
    Search,
    Stats,
    Delete,
}

fn parse(pairs: &[(String, String)], purpose: For) -> Result<Parsed, GatewayError> {
    let mut p = Parsed::default();
    let f = &mut p.filter;
    for (k, v) in pairs {
        match k.as_str() {
            "providers" => f.providers = list_param(v),
            "models" => f.models = list_param(v),
            "status" => f.status = list_param(v),
            "objects" => f.objects = list_param(v),
            "virtual_key_ids" => f.virtual_key_ids = list_param(v),
            "team_ids" => f.team_ids = list_param(v),
            "customer_ids" => f.customer_ids = list_param(v),
            "selected_key_ids" => f.selected_key_ids = list_param(v),
            "start_time" if !v.trim().is_empty() => f.start_time = Some(time_param(k, v)?),
            "end_time" if !v.trim().is_empty() => f.end_time = Some(time_param(k, v)?),
            "period" if !v.trim().is_empty() => {
                let now = now_ms();
                f.start_time = Some(now.saturating_sub(period_param(v)?));
                f.end_time = Some(now);
            }
            "min_latency" if !v.trim().is_empty() => f.min_latency = Some(f64_param(k, v)?),
            "max_latency" if !v.trim().is_empty() => f.max_latency = Some(f64_param(k, v)?),
            "min_tokens" if !v.trim().is_empty() => f.min_tokens = Some(u64_param(k, v)?),
            "max_tokens" if !v.trim().is_empty() => f.max_tokens = Some(u64_param(k, v)?),
            "min_cost" if !v.trim().is_empty() => f.min_cost = Some(f64_param(k, v)?),
            "max_cost" if !v.trim().is_empty() => f.max_cost = Some(f64_param(k, v)?),
            "content_search" => f.content_search = Some(v.clone()).filter(|s| !s.trim().is_empty()),
            "request_id" => f.request_id = Some(v.trim().to_owned()).filter(|s| !s.is_empty()),
            "limit" if purpose == For::Search => {
                let n = u64_param(k, v)?;
                if n == 0 {
                    return Err(bad(k, "limit must be greater than 0"));
                }
                if n > u64::from(MAX_LIMIT) {
                    return Err(bad(k, format!("limit cannot exceed {MAX_LIMIT}")));
                }
                p.page.limit = n as u32;
            }
            "offset" if purpose == For::Search => {
                p.page.offset =
                    u32::try_from(u64_param(k, v)?).map_err(|_| bad(k, "offset is too large"))?;
            }
            "sort_by" if purpose == For::Search => {
                p.page.sort_by = SortBy::parse(v.trim()).ok_or_else(|| {
                    bad(k, format!("{v:?}; use timestamp, latency, tokens or cost"))
                })?;
            }
            "order" if purpose == For::Search => {
                p.page.order = Order::parse(v.trim())
                    .ok_or_else(|| bad(k, format!("{v:?}; use asc or desc")))?;
            }
            "cursor" if purpose == For::Search => {
                p.page.cursor = Some(v.clone()).filter(|s| !s.is_empty());
            }
            "all" if purpose == For::Delete => p.all = bool_param(k, v)?,
            // Empty numeric/time values mean "unset", as in Bifrost's UI.
            k if FILTER_PARAMS.contains(&k) => {}
            // A delete must not silently ignore a filter it does not understand: that
            // would delete more than asked. Searches tolerate Bifrost's other filters.
            other if purpose == For::Delete => {
                return Err(bad(
                    other,
                    "this filter is not supported for deletes; supported: ids (body), all, and the /api/logs filters",
                ));
            }
            _ => {}
        }
    }
    Ok(p)
}

fn store_err(e: LogStoreError) -> GatewayError {
    match e {
        LogStoreError::InvalidCursor(c) => {
            bad("cursor", format!("{c:?} is not a cursor this query issued"))
        }
        LogStoreError::EmptyFilter => GatewayError::bad_request(
            "refusing to delete every log: pass a filter (or ids in the body), or all=true",
        ),
        other => GatewayError::internal(format!("log store: {other}")),
    }
}

/// `GET /api/logs`: Bifrost's `{logs, pagination, stats, has_logs}`.
pub async fn list(State(api): State<Arc<LogsApi>>, q: Params) -> ApiResult {
    let p = parse(&params(q)?, For::Search)?;
    let res = api
        .store
        .query_with_stats(&p.filter, &p.page)
        .await
        .map_err(store_err)?;
    let mut pagination = Map::new();
    pagination.insert("limit".into(), json!(p.page.effective_limit()));
    pagination.insert("offset".into(), json!(p.page.offset));
    pagination.insert("sort_by".into(), json!(p.page.sort_by.as_str()));
    pagination.insert("order".into(), json!(p.page.order.as_str()));
    pagination.insert("total_count".into(), json!(res.page.total_count));
    if let Some(c) = &res.page.next_cursor {
        pagination.insert("next_cursor".into(), json!(c));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "logs": res.page.logs,
            "pagination": pagination,
            "stats": res.stats,
            "has_logs": res.has_logs,
        }),
    ))
}

/// `GET /api/logs/{id}`: one log with its content.
pub async fn get_one(State(api): State<Arc<LogsApi>>, Path(id): Path<String>) -> ApiResult {
    match api.store.get(&id).await.map_err(store_err)? {
        Some(entry) => Ok(json_response(StatusCode::OK, &entry)),
        None => Err(GatewayError::not_found(format!("log not found: {id}")).into()),
    }
}

/// `GET /api/logs/stats`: aggregates over the same filters as the search.
pub async fn stats(State(api): State<Arc<LogsApi>>, q: Params) -> ApiResult {
    let p = parse(&params(q)?, For::Stats)?;
    let s = api.store.stats(&p.filter).await.map_err(store_err)?;
    Ok(json_response(StatusCode::OK, &s))
}

/// `GET /api/logs/dropped`: entries the writer dropped (queue full or store failing).
pub async fn dropped(State(api): State<Arc<LogsApi>>) -> ApiResult {
    Ok(json_response(
        StatusCode::OK,
        &json!({"dropped_requests": (api.dropped)()}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    #[serde(default)]
    ids: Vec<String>,
}

/// `DELETE /api/logs`: deletes what the query-string filters (and/or Bifrost's body
/// `{"ids": [...]}`) select. Without any filter it needs `all=true`.
pub async fn delete(State(api): State<Arc<LogsApi>>, q: Params, body: Body) -> ApiResult {
    let mut p = parse(&params(q)?, For::Delete)?;
    let bytes = read_limited(body, 4).await?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let b: DeleteBody = decode_json(&bytes)?;
        let ids: Vec<String> = b.ids.into_iter().filter(|s| !s.is_empty()).collect();
        p.filter.ids = ids;
    }
    let deleted = api
        .store
        .delete(&p.filter, p.all)
        .await
        .map_err(store_err)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Logs deleted successfully", "deleted": deleted}),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use causeway_logstore::LogEntry;
    use http::Request;
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    #[test]
    fn rfc3339_and_unix_ms() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56.789Z"),
            Some(1_709_210_096_789)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T14:34:56.7891+02:00"),
            Some(1_709_210_096_789)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T07:04:56-05:30"),
            Some(1_709_210_096_000)
        );
        for bad in [
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "2024-02-29T12:34:56",
            "2024-02-29T12:34:56.Z",
            "x024-02-29T12:34:56Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(
            time_param("start_time", "1709210096789").unwrap(),
            1_709_210_096_789
        );
        let e = time_param("end_time", "yesterday").unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(e.details().param.as_deref(), Some("end_time"));
    }

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn parses_bifrost_parameters() {
        let p = parse(
            &pairs("providers=openai,%20,anthropic&status=error&min_latency=1.5&max_tokens=10&limit=20&offset=40&sort_by=cost&order=asc&aliases=x&min_cost="),
            For::Search,
        )
        .unwrap();
        assert_eq!(p.filter.providers, ["openai", "%20", "anthropic"]);
        assert_eq!(p.filter.status, ["error"]);
        assert_eq!(p.filter.min_latency, Some(1.5));
        assert_eq!(p.filter.max_tokens, Some(10));
        assert_eq!(p.filter.min_cost, None);
        assert_eq!(
            (p.page.limit, p.page.offset, p.page.sort_by, p.page.order),
            (20, 40, SortBy::Cost, Order::Asc)
        );
        for (q, param) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("offset=-1", "offset"),
            ("sort_by=name", "sort_by"),
            ("order=up", "order"),
            ("min_latency=fast", "min_latency"),
            ("max_cost=NaN", "max_cost"),
            ("min_tokens=-3", "min_tokens"),
            ("period=yesterday", "period"),
        ] {
            let e = parse(&pairs(q), For::Search).unwrap_err();
            assert_eq!(e.status(), 400, "{q}");
            assert_eq!(e.details().param.as_deref(), Some(param), "{q}");
        }
        let e = parse(&pairs("user_ids=u1"), For::Delete).unwrap_err();
        assert_eq!(e.details().param.as_deref(), Some("user_ids"));
        assert!(parse(&pairs("all=true"), For::Delete).unwrap().all);
        let p = parse(&pairs("period=24h"), For::Stats).unwrap();
        assert_eq!(
            p.filter.end_time.unwrap() - p.filter.start_time.unwrap(),
            86_400_000
        );
    }

    fn entry(i: usize, provider: &str) -> LogEntry {
        LogEntry {
            id: format!("log-{i}"),
            timestamp: 1_700_000_000_000 + i as i64,
            object: "chat_completion".into(),
            route: "/v1/chat/completions".into(),
            provider: Some(provider.into()),
            status: if i.is_multiple_of(4) {
                "error"
            } else {
                "success"
            }
            .into(),
            status_code: 200,
            latency_ms: 10.0 * i as f64,
            total_tokens: i as u64,
            cost: Some(0.001 * i as f64),
            input: Some(format!("question number {i}")),
            ..Default::default()
        }
    }

    async fn app() -> (tempfile::TempDir, Router, Arc<LogStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            LogStore::open_sqlite(&dir.path().join("logs.db"))
                .await
                .unwrap(),
        );
        let data: Vec<LogEntry> = (0..30)
            .map(|i| {
                entry(
                    i,
                    if i.is_multiple_of(2) {
                        "openai"
                    } else {
                        "anthropic"
                    },
                )
            })
            .collect();
        store.insert_batch(&data).await.unwrap();
        let api = Arc::new(LogsApi {
            store: store.clone(),
            dropped: Arc::new(|| 7),
        });
        (dir, Router::new().nest("/api", router(Some(api))), store)
    }

    async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_owned()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn endpoints() {
        let (_d, app, store) = app().await;
        let (s, v) = call(
            &app,
            "GET",
            "/api/logs?providers=openai&limit=5&sort_by=latency&order=desc",
            "",
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["pagination"]["total_count"], 15);
        assert_eq!(v["pagination"]["limit"], 5);
        assert_eq!(v["pagination"]["sort_by"], "latency");
        assert_eq!(v["logs"].as_array().unwrap().len(), 5);
        assert_eq!(v["logs"][0]["id"], "log-28");
        assert_eq!(v["stats"]["total_requests"], 15);
        assert!(v["stats"]["average_latency"].is_number());
        assert_eq!(v["has_logs"], true);
        let cursor = v["pagination"]["next_cursor"].as_str().unwrap().to_owned();
        let (s, v) = call(
            &app,
            "GET",
            &format!(
                "/api/logs?providers=openai&limit=5&sort_by=latency&order=desc&cursor={cursor}"
            ),
            "",
        )
        .await;
        assert_eq!((s, v["logs"][0]["id"].clone()), (200, json!("log-18")));

        let (s, v) = call(
            &app,
            "GET",
            "/api/logs?start_time=2023-11-14T22:13:20.010Z&end_time=1700000000019",
            "",
        )
        .await;
        assert_eq!(
            (s, v["pagination"]["total_count"].clone()),
            (200, json!(10))
        );
        let (s, v) = call(&app, "GET", "/api/logs?content_search=question", "").await;
        assert_eq!(
            (s, v["pagination"]["total_count"].clone()),
            (200, json!(30))
        );

        let (s, v) = call(&app, "GET", "/api/logs?limit=abc", "").await;
        assert_eq!(s, 400);
        assert_eq!(v["error"]["param"], "limit");
        let (s, _) = call(&app, "GET", "/api/logs?cursor=bogus", "").await;
        assert_eq!(s, 400);

        let (s, v) = call(&app, "GET", "/api/logs/log-3", "").await;
        assert_eq!((s, v["input"].clone()), (200, json!("question number 3")));
        let (s, v) = call(&app, "GET", "/api/logs/nope", "").await;
        assert_eq!(s, 404);
        assert_eq!(v["status_code"], 404);

        let (s, v) = call(&app, "GET", "/api/logs/stats?status=error", "").await;
        assert_eq!(
            (s, v["total_requests"].clone(), v["success_rate"].clone()),
            (200, json!(8), json!(0.0))
        );
        let (s, v) = call(&app, "GET", "/api/logs/dropped", "").await;
        assert_eq!((s, v), (200, json!({"dropped_requests": 7})));

        let (s, v) = call(&app, "DELETE", "/api/logs", "").await;
        assert_eq!(s, 400, "{v}");
        let (s, _) = call(&app, "DELETE", "/api/logs?user_ids=u", "").await;
        assert_eq!(s, 400);
        let (s, v) = call(
            &app,
            "DELETE",
            "/api/logs",
            r#"{"ids":["log-1","log-2","missing"]}"#,
        )
        .await;
        assert_eq!((s, v["deleted"].clone()), (200, json!(2)));
        let (s, v) = call(&app, "DELETE", "/api/logs?providers=anthropic", "").await;
        assert_eq!((s, v["deleted"].clone()), (200, json!(14)));
        assert_eq!(store.count().await.unwrap(), 14);
        let (s, v) = call(&app, "DELETE", "/api/logs?all=true", "").await;
        assert_eq!(
            (s, v["deleted"].clone(), v["message"].clone()),
            (200, json!(14), json!("Logs deleted successfully"))
        );
        let (_, v) = call(&app, "GET", "/api/logs", "").await;
        assert_eq!(
            (v["has_logs"].clone(), v["logs"].clone()),
            (json!(false), json!([]))
        );
    }
}
