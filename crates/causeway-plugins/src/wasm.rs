//! The WebAssembly plugin adapter: turns a module speaking Bifrost's JSON plugin ABI (run by
//! `causeway-wasm-host`) into a `Plugin`. It builds each hook's input JSON from the request,
//! response or chunk, calls the guest inline (bounded by the per-call time limit) and applies
//! the guest's output. The payload shapes are documented for plugin authors in docs/plugins.md.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD as BASE64};
use bytes::Bytes;
use causeway_core::{
    ChunkStream, ErrorClass, GatewayError, LlmRequest, LlmResponse, RawObject, RequestContext,
    RequestType, RouteInfo,
};
use causeway_wasm_host::{
    Hook, LogLine, LogSink, ModuleSource, WasmError, WasmHost, WasmLimits, WasmPlugin,
};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::chain::PluginHealth;
use crate::plugin::{
    BoxFuture, ChunkOutcome, HookSet, HttpPreOutcome, HttpRequest, HttpResponse, Plugin,
    PluginFailure, PreLlmOutcome,
};
use crate::registry::{LoadError, ModuleLoader};

/// Config key holding per-plugin limit overrides; removed before the guest's `init` sees the config.
pub const LIMITS_KEY: &str = "_limits";

/// Context key the host fills with the request id; read-only for guests (Bifrost's guests read it).
const REQUEST_ID_KEY: &str = "request_id";

/// Upper bounds for `_limits` overrides: 4 GiB is all a 32-bit memory can address, and a
/// minute-long hook call would hold a request (and a pooled instance) far past any client timeout.
const MAX_MEMORY_MB: u64 = 4096;
const MAX_CALL_TIMEOUT_MS: u64 = 60_000;

/// Decodes guest base64 with or without padding: guest libraries differ, and padding carries
/// no information.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How much of a malformed output is quoted in the failure message: enough to recognise it.
const OUTPUT_EXCERPT_BYTES: usize = 200;

/// Creates the process's `WasmHost` and returns the loader the registry calls for custom
/// plugins: `(path, config, health)` → a running plugin. Guest log lines go to `health.log`
/// as `[level] message`.
pub fn module_loader(limits: WasmLimits) -> Result<ModuleLoader, String> {
    // The runtime (and its epoch ticker thread) starts with the first custom plugin, so a
    // gateway without one pays nothing for it.
    let host: Arc<std::sync::OnceLock<WasmHost>> = Arc::new(std::sync::OnceLock::new());
    Ok(Arc::new(
        move |path: &Path, config: &Value, health: Arc<PluginHealth>| {
            let host = match host.get() {
                Some(h) => h,
                None => {
                    let h = WasmHost::new().map_err(|e| {
                        LoadError::Failed(format!(
                            "cannot start the WebAssembly plugin runtime: {e}"
                        ))
                    })?;
                    host.get_or_init(|| h)
                }
            };
            let adapter = WasmPluginAdapter::load(host, path, config, &limits, health)?;
            Ok(Arc::new(adapter) as Arc<dyn Plugin>)
        },
    ))
}

/// A loaded WebAssembly module as a `Plugin`.
pub struct WasmPluginAdapter {
    plugin: Arc<WasmPlugin>,
    hooks: HookSet,
}

impl fmt::Debug for WasmPluginAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmPluginAdapter")
            .field("plugin", &self.plugin)
            .field("hooks", &self.hooks)
            .finish()
    }
}

impl WasmPluginAdapter {
    /// Compiles and starts the module at `path` with `config` (minus `_limits`, which overrides
    /// `limits` for this plugin). Blocks for the compile; the registry runs it off the runtime.
    pub fn load(
        host: &WasmHost,
        path: &Path,
        config: &Value,
        limits: &WasmLimits,
        health: Arc<PluginHealth>,
    ) -> Result<Self, LoadError> {
        let (limits, guest_config) = split_limits(config, limits)?;
        let config_json = serde_json::to_vec(&guest_config)
            .map_err(|e| LoadError::InvalidConfig(format!("config cannot be encoded: {e}")))?;
        let sink: LogSink = Arc::new(move |line: LogLine| {
            health.log(format!("[{}] {}", line.level, line.message));
        });
        let plugin = host
            .load(
                ModuleSource::Path(path.to_path_buf()),
                &config_json,
                limits,
                sink,
            )
            .map_err(|e| load_error(path, e))?;
        Ok(Self::from_plugin(plugin))
    }

    /// Wraps an already loaded module.
    pub fn from_plugin(plugin: WasmPlugin) -> Self {
        let mut hooks = HookSet::default();
        for hook in plugin.hooks() {
            match hook {
                Hook::HttpPre => hooks.http_pre = true,
                Hook::HttpPost => hooks.http_post = true,
                Hook::HttpStreamChunk => hooks.stream_chunk = true,
                Hook::PreLlm => hooks.pre_llm = true,
                Hook::PostLlm => hooks.post_llm = true,
            }
        }
        WasmPluginAdapter {
            plugin: Arc::new(plugin),
            hooks,
        }
    }

    /// The limits this plugin runs with (after `_limits` overrides).
    pub fn limits(&self) -> &WasmLimits {
        self.plugin.limits()
    }

    fn call(&self, hook: Hook, input: &[u8]) -> Result<Vec<u8>, PluginFailure> {
        self.plugin
            .call(hook, input)
            .map_err(|e| PluginFailure(e.to_string()))
    }

    fn run_http_pre(
        &self,
        ctx: &mut RequestContext,
        req: &mut HttpRequest,
    ) -> Result<HttpPreOutcome, PluginFailure> {
        let input = encode(
            &HttpPreInput {
                context: GuestContext::of(ctx),
                request: HttpRequestJson {
                    req,
                    with_body: true,
                },
            },
            req.body.len() * 4 / 3 + 512,
        )?;
        let output = self.call(Hook::HttpPre, &input)?;
        let out: HttpPreOutput = decode(Hook::HttpPre, &output)?;
        guest_error(out.error.as_deref())?;
        let has_response = required(Hook::HttpPre, out.has_response, "has_response")?;
        // Validate everything before touching the request or context, so a malformed output
        // leaves the request exactly as it was.
        let response = match (has_response, out.response) {
            (true, Some(resp)) => Some(resp.into_response(Hook::HttpPre)?),
            (true, None) => {
                return Err(malformed(
                    Hook::HttpPre,
                    "has_response is true but response is null",
                ));
            }
            (false, _) => None,
        };
        let replacement = match out.request {
            Some(r) if response.is_none() => Some(r.into_parts(Hook::HttpPre)?),
            _ => None,
        };
        apply_context(ctx, out.context);
        if let Some(resp) = response {
            return Ok(HttpPreOutcome::Respond(resp));
        }
        if let Some(parts) = replacement {
            parts.apply(req);
        }
        Ok(HttpPreOutcome::Continue)
    }

    fn run_http_post(
        &self,
        ctx: &mut RequestContext,
        req: &HttpRequest,
        resp: &mut HttpResponse,
    ) -> Result<(), PluginFailure> {
        let input = encode(
            &HttpPostInput {
                context: GuestContext::of(ctx),
                request: HttpRequestJson {
                    req,
                    with_body: true,
                },
                response: HttpResponseJson(resp),
            },
            (req.body.len() + resp.body.len()) * 4 / 3 + 512,
        )?;
        let output = self.call(Hook::HttpPost, &input)?;
        let out: HttpPostOutput = decode(Hook::HttpPost, &output)?;
        guest_error(out.error.as_deref())?;
        let replacement = match out.response {
            Some(r) => Some(r.into_parts(Hook::HttpPost)?),
            None => None,
        };
        apply_context(ctx, out.context);
        if let Some(parts) = replacement {
            parts.apply(resp);
        }
        Ok(())
    }

    fn run_pre_llm(
        &self,
        ctx: &mut RequestContext,
        req: &mut LlmRequest,
    ) -> Result<PreLlmOutcome, PluginFailure> {
        let input = encode(
            &PreInput {
                context: GuestContext::of(ctx),
                request: LlmRequestJson(req),
            },
            body_size(&req.body) + 512,
        )?;
        let output = self.call(Hook::PreLlm, &input)?;
        let out: PreOutput<'_> = decode(Hook::PreLlm, &output)?;
        guest_error(out.error.as_deref())?;
        let has_short_circuit = required(Hook::PreLlm, out.has_short_circuit, "has_short_circuit")?;
        if has_short_circuit {
            let Some(short_circuit) = out.short_circuit else {
                return Err(malformed(
                    Hook::PreLlm,
                    "has_short_circuit is true but short_circuit is null",
                ));
            };
            let result = short_circuit_result(short_circuit, ctx, req)?;
            apply_context(ctx, out.context);
            return Ok(PreLlmOutcome::ShortCircuit(result));
        }
        let rewrite = match out.request {
            Some(r) => Some(r.into_rewrite(req)?),
            None => None,
        };
        apply_context(ctx, out.context);
        if let Some(rewrite) = rewrite {
            rewrite.apply(req);
        }
        Ok(PreLlmOutcome::Continue)
    }

    fn run_post_llm(
        &self,
        ctx: &mut RequestContext,
        result: &mut Result<LlmResponse, GatewayError>,
    ) -> Result<(), PluginFailure> {
        let (response, error) = match &*result {
            // Streams are seen chunk by chunk through http_stream_chunk_hook.
            Ok(LlmResponse::Stream { .. }) => return Ok(()),
            Ok(LlmResponse::Complete { body, .. }) => {
                let Ok(raw) = serde_json::from_slice::<&RawValue>(body) else {
                    // Providers always answer JSON; a body that is not cannot be shown to the guest.
                    tracing::debug!("response body is not JSON; post_hook skipped");
                    return Ok(());
                };
                (
                    Some(ResponseJson {
                        key: response_key(raw),
                        body: raw,
                    }),
                    None,
                )
            }
            Err(err) => (None, Some(err.to_envelope(Some(&ctx.request_id)))),
        };
        let input = encode(
            &PostInput {
                context: GuestContext::of(ctx),
                has_error: error.is_some(),
                response,
                error: error.as_ref(),
            },
            match &*result {
                Ok(LlmResponse::Complete { body, .. }) => body.len() + 512,
                _ => 1024,
            },
        )?;
        let output = self.call(Hook::PostLlm, &input)?;
        let out: PostOutput<'_> = decode(Hook::PostLlm, &output)?;
        guest_error(out.hook_error.as_deref())?;
        let has_error = required(Hook::PostLlm, out.has_error, "has_error")?;
        let replacement = if has_error {
            match out.error {
                Some(Value::Object(envelope)) if !envelope.is_empty() => {
                    let original = result.as_ref().err();
                    let err = error_from_json(&envelope, original)
                        .map_err(|e| malformed(Hook::PostLlm, &format!("error: {e}")))?;
                    Some(Err(err))
                }
                // `has_error` with no error object: nothing to replace the result with.
                _ => None,
            }
        } else {
            out.response.and_then(ResponseOutput::body).map(Ok)
        };
        apply_context(ctx, out.context);
        match replacement {
            None => {}
            Some(Err(err)) => *result = Err(err),
            Some(Ok(raw)) => match result {
                Ok(LlmResponse::Complete { body, .. }) => {
                    // A pass-through guest returns the body it was given; keep ours then.
                    if body.as_ref() != raw.get().as_bytes() {
                        *body = Bytes::copy_from_slice(raw.get().as_bytes());
                    }
                }
                Ok(LlmResponse::Stream { .. }) => {}
                Err(err) => {
                    let extra = &err.details().extra;
                    let route = RouteInfo {
                        provider: extra.provider.clone().unwrap_or_default(),
                        model: extra.model_requested.clone().unwrap_or_default(),
                        ..RouteInfo::default()
                    };
                    *result = Ok(LlmResponse::Complete {
                        body: Bytes::copy_from_slice(raw.get().as_bytes()),
                        route,
                    });
                }
            },
        }
        Ok(())
    }

    fn run_stream_chunk(
        &self,
        ctx: &mut RequestContext,
        chunk: Bytes,
    ) -> Result<ChunkOutcome, PluginFailure> {
        let raw: &RawValue = serde_json::from_slice(&chunk).map_err(|e| {
            PluginFailure(format!(
                "stream chunk is not JSON ({e}); not passed to the plugin"
            ))
        })?;
        let input = encode(
            &ChunkInput {
                context: GuestContext::of(ctx),
                request: ChunkRequestJson(ctx),
                chunk: raw,
            },
            chunk.len() + 1024,
        )?;
        let output = self.call(Hook::HttpStreamChunk, &input)?;
        let out: ChunkOutput<'_> = decode(Hook::HttpStreamChunk, &output)?;
        let ends_stream = out.error.as_deref().is_some_and(|e| !e.is_empty());
        // An output that ends the stream need not carry the flags.
        if !ends_stream && out.has_chunk.is_none() && out.skip.is_none() {
            return Err(malformed(
                Hook::HttpStreamChunk,
                "missing field `has_chunk` (and `skip`)",
            ));
        }
        let outcome = match out.error.as_deref() {
            Some(message) if !message.is_empty() => ChunkOutcome::End(
                GatewayError::new(500, ErrorClass::Other, message.to_owned())
                    .with_type("plugin_error"),
            ),
            _ if out.skip == Some(true) => ChunkOutcome::Skip,
            _ if out.has_chunk == Some(true) => match out.chunk {
                Some(new) if new.get().as_bytes() == chunk.as_ref() => ChunkOutcome::Send(chunk),
                Some(new) => ChunkOutcome::Send(Bytes::copy_from_slice(new.get().as_bytes())),
                None => {
                    return Err(malformed(
                        Hook::HttpStreamChunk,
                        "has_chunk is true but chunk is null",
                    ));
                }
            },
            _ => ChunkOutcome::Send(chunk),
        };
        apply_context(ctx, out.context);
        Ok(outcome)
    }
}

impl Plugin for WasmPluginAdapter {
    fn name(&self) -> &str {
        self.plugin.name()
    }

    fn hooks(&self) -> HookSet {
        self.hooks
    }

    fn http_pre<'a>(
        &'a self,
        ctx: &'a mut RequestContext,
        req: &'a mut HttpRequest,
    ) -> BoxFuture<'a, Result<HttpPreOutcome, PluginFailure>> {
        Box::pin(async move { self.run_http_pre(ctx, req) })
    }

    fn http_post<'a>(
        &'a self,
        ctx: &'a mut RequestContext,
        req: &'a HttpRequest,
        resp: &'a mut HttpResponse,
    ) -> BoxFuture<'a, Result<(), PluginFailure>> {
        Box::pin(async move { self.run_http_post(ctx, req, resp) })
    }

    fn pre_llm<'a>(
        &'a self,
        ctx: &'a mut RequestContext,
        req: &'a mut LlmRequest,
    ) -> BoxFuture<'a, Result<PreLlmOutcome, PluginFailure>> {
        Box::pin(async move { self.run_pre_llm(ctx, req) })
    }

    fn post_llm<'a>(
        &'a self,
        ctx: &'a mut RequestContext,
        result: &'a mut Result<LlmResponse, GatewayError>,
    ) -> BoxFuture<'a, Result<(), PluginFailure>> {
        Box::pin(async move { self.run_post_llm(ctx, result) })
    }

    fn stream_chunk(
        &self,
        ctx: &mut RequestContext,
        chunk: Bytes,
    ) -> Result<ChunkOutcome, PluginFailure> {
        self.run_stream_chunk(ctx, chunk)
    }

    fn cleanup(&self) -> BoxFuture<'_, Result<(), PluginFailure>> {
        let plugin = Arc::clone(&self.plugin);
        Box::pin(async move {
            // Cleanup waits for calls in flight and runs the guest's `cleanup` on every instance
            // (each bounded by the init timeout): blocking work, kept off the async workers.
            let result = match tokio::runtime::Handle::try_current() {
                Ok(handle) => handle
                    .spawn_blocking(move || plugin.cleanup())
                    .await
                    .unwrap_or_else(|e| Err(WasmError::Cleanup(format!("cleanup panicked: {e}")))),
                Err(_) => plugin.cleanup(),
            };
            result.map_err(|e| PluginFailure(e.to_string()))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Loading: limits and error mapping.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitOverrides {
    memory_mb: Option<u64>,
    call_timeout_ms: Option<u64>,
}

/// The limits for this plugin and the config its `init` receives (without `_limits`).
fn split_limits(config: &Value, base: &WasmLimits) -> Result<(WasmLimits, Value), LoadError> {
    let mut limits = base.clone();
    let mut guest = match config {
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        _ => {
            return Err(LoadError::InvalidConfig(
                "config must be a JSON object".to_owned(),
            ));
        }
    };
    let Some(overrides) = guest.remove(LIMITS_KEY) else {
        return Ok((limits, Value::Object(guest)));
    };
    let overrides: LimitOverrides = serde_json::from_value(overrides).map_err(|e| {
        LoadError::InvalidConfig(format!(
            "{LIMITS_KEY}: {e} (expected {{\"memory_mb\": 1..={MAX_MEMORY_MB}, \"call_timeout_ms\": 1..={MAX_CALL_TIMEOUT_MS}}})"
        ))
    })?;
    if let Some(mb) = overrides.memory_mb {
        if !(1..=MAX_MEMORY_MB).contains(&mb) {
            return Err(LoadError::InvalidConfig(format!(
                "{LIMITS_KEY}.memory_mb: {mb} is out of range (1..={MAX_MEMORY_MB})"
            )));
        }
        limits.memory_bytes = usize::try_from(mb * 1024 * 1024).unwrap_or(usize::MAX);
    }
    if let Some(ms) = overrides.call_timeout_ms {
        if !(1..=MAX_CALL_TIMEOUT_MS).contains(&ms) {
            return Err(LoadError::InvalidConfig(format!(
                "{LIMITS_KEY}.call_timeout_ms: {ms} is out of range (1..={MAX_CALL_TIMEOUT_MS})"
            )));
        }
        limits.call_timeout = Duration::from_millis(ms);
    }
    Ok((limits, Value::Object(guest)))
}

/// A load failure in words for the operator: which file, what is wrong, and the HTTP class
/// (a module that can never work is 400; one that failed to start is 500).
fn load_error(path: &Path, err: WasmError) -> LoadError {
    let shown = path.display().to_string();
    match err {
        WasmError::Load(message) => {
            let message = if let Some(rest) = message.strip_prefix("module ") {
                // "module does not export `malloc` ..." / "module imports `x.y`, which ..."
                format!("module {shown} {rest}")
            } else if message.starts_with(&shown) {
                let hint = if message.contains("no \\0asm header") {
                    " (the file is neither a WebAssembly binary nor valid WAT text)"
                } else {
                    ""
                };
                format!("cannot load plugin module {message}{hint}")
            } else {
                format!("cannot load plugin module {shown}: {message}")
            };
            LoadError::InvalidModule(message)
        }
        WasmError::Init(message) => {
            let hint = if message.starts_with("init returned") {
                " (the plugin refused its config; its log lines say why)"
            } else {
                ""
            };
            LoadError::Failed(format!(
                "plugin module {shown} failed to initialise: {message}{hint}"
            ))
        }
        other => LoadError::Failed(format!(
            "plugin module {shown} failed while starting: {other}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared encoding and decoding helpers.

fn encode<T: Serialize>(value: &T, capacity: usize) -> Result<Vec<u8>, PluginFailure> {
    let mut out = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut out, value)
        .map_err(|e| PluginFailure(format!("cannot encode the hook input: {e}")))?;
    Ok(out)
}

fn decode<'a, T: Deserialize<'a>>(hook: Hook, output: &'a [u8]) -> Result<T, PluginFailure> {
    let excerpt = || {
        let end = output.len().min(OUTPUT_EXCERPT_BYTES).min(
            output
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(usize::MAX),
        );
        let text = String::from_utf8_lossy(output.get(..end).unwrap_or_default());
        let ellipsis = if end < output.len() { "…" } else { "" };
        format!("(output: {text}{ellipsis})")
    };
    // serde would also read a struct from a JSON array (by position); the ABI says object.
    let first = output.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b == b'[') {
        return Err(malformed(
            hook,
            &format!("the output is not a JSON object {}", excerpt()),
        ));
    }
    serde_json::from_slice(output).map_err(|e| malformed(hook, &format!("{e} {}", excerpt())))
}

fn malformed(hook: Hook, detail: &str) -> PluginFailure {
    PluginFailure(format!("malformed output from {hook}: {detail}"))
}

fn required(hook: Hook, value: Option<bool>, field: &str) -> Result<bool, PluginFailure> {
    value.ok_or_else(|| malformed(hook, &format!("missing field `{field}`")))
}

/// A non-empty `error` / `hook_error` string is the guest saying the hook failed.
fn guest_error(error: Option<&str>) -> Result<(), PluginFailure> {
    match error {
        Some(message) if !message.is_empty() => Err(PluginFailure(format!(
            "plugin reported an error: {message}"
        ))),
        _ => Ok(()),
    }
}

/// Merges the guest's returned context into the request's values: members set or replace
/// values, `null` removes one, absent members stay. `request_id` is the host's and is ignored.
fn apply_context(ctx: &mut RequestContext, returned: Option<Map<String, Value>>) {
    let Some(returned) = returned else { return };
    for (key, value) in returned {
        if key == REQUEST_ID_KEY {
            continue;
        }
        if value.is_null() {
            ctx.values.remove(&key);
        } else {
            ctx.values.insert(key, value);
        }
    }
}

/// Deserializes a JSON object whose values may be strings, numbers, booleans, arrays of those
/// (repeated names) or null (dropped) into name/value pairs, keeping order.
fn pairs_from(map: Map<String, Value>, what: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        match value {
            Value::Null => {}
            Value::Array(items) => {
                for item in items {
                    out.push((name.clone(), scalar_text(item, what, &name)?));
                }
            }
            other => {
                let text = scalar_text(other, what, &name)?;
                out.push((name, text));
            }
        }
    }
    Ok(out)
}

fn scalar_text(value: Value, what: &str, name: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("{what} `{name}` must be a string")),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The `context` object.

/// `ctx.values` plus the request id (first, unless a plugin stored its own).
struct GuestContext<'a> {
    values: &'a Map<String, Value>,
    request_id: &'a str,
}

impl<'a> GuestContext<'a> {
    fn of(ctx: &'a RequestContext) -> Self {
        GuestContext {
            values: &ctx.values,
            request_id: &ctx.request_id,
        }
    }
}

impl Serialize for GuestContext<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.values.contains_key(REQUEST_ID_KEY) {
            map.serialize_entry(REQUEST_ID_KEY, self.request_id)?;
        }
        for (key, value) in self.values {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP hooks.

/// Name/value pairs as a JSON object; repeated names are joined with ", " (how HTTP combines
/// repeated header fields), matching names case-insensitively when `fold_case`.
struct PairsJson<'a> {
    pairs: &'a [(String, String)],
    fold_case: bool,
}

impl Serialize for PairsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let same = |a: &str, b: &str| {
            if self.fold_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let mut map = serializer.serialize_map(None)?;
        for (i, (name, value)) in self.pairs.iter().enumerate() {
            let earlier = self.pairs.get(..i).unwrap_or_default();
            if earlier.iter().any(|(n, _)| same(n, name)) {
                continue;
            }
            let later = self.pairs.get(i + 1..).unwrap_or_default();
            if later.iter().any(|(n, _)| same(n, name)) {
                let joined: Vec<&str> = self
                    .pairs
                    .iter()
                    .filter(|(n, _)| same(n, name))
                    .map(|(_, v)| v.as_str())
                    .collect();
                map.serialize_entry(name, &joined.join(", "))?;
            } else {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

struct Base64Json<'a>(&'a [u8]);

impl Serialize for Base64Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(self.0))
    }
}

struct HttpRequestJson<'a> {
    req: &'a HttpRequest,
    with_body: bool,
}

impl Serialize for HttpRequestJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("method", &self.req.method)?;
        map.serialize_entry("path", &self.req.path)?;
        map.serialize_entry(
            "headers",
            &PairsJson {
                pairs: &self.req.headers,
                fold_case: true,
            },
        )?;
        map.serialize_entry(
            "query",
            &PairsJson {
                pairs: &self.req.query,
                fold_case: false,
            },
        )?;
        if self.with_body {
            map.serialize_entry("body", &Base64Json(&self.req.body))?;
        }
        map.end()
    }
}

struct HttpResponseJson<'a>(&'a HttpResponse);

impl Serialize for HttpResponseJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("status_code", &self.0.status)?;
        map.serialize_entry(
            "headers",
            &PairsJson {
                pairs: &self.0.headers,
                fold_case: true,
            },
        )?;
        map.serialize_entry("body", &Base64Json(&self.0.body))?;
        map.end()
    }
}

/// The request object of `http_stream_chunk_hook`. The chunk hook does not receive the HTTP
/// request, so it carries the caller's headers only; method, path and query are empty.
struct ChunkRequestJson<'a>(&'a RequestContext);

impl Serialize for ChunkRequestJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("method", "")?;
        map.serialize_entry("path", "")?;
        map.serialize_entry("headers", &HeaderMapJson(self.0))?;
        map.serialize_entry("query", &Map::new())?;
        map.end()
    }
}

/// The caller's headers (`ctx.headers`) as a JSON object, repeated fields joined with ", ".
struct HeaderMapJson<'a>(&'a RequestContext);

impl Serialize for HeaderMapJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let headers = &self.0.headers;
        let mut map = serializer.serialize_map(Some(headers.keys_len()))?;
        for name in headers.keys() {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            map.serialize_entry(name.as_str(), &values.join(", "))?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct HttpPreInput<'a> {
    context: GuestContext<'a>,
    request: HttpRequestJson<'a>,
}

#[derive(Serialize)]
struct HttpPostInput<'a> {
    context: GuestContext<'a>,
    request: HttpRequestJson<'a>,
    response: HttpResponseJson<'a>,
}

#[derive(Deserialize)]
struct HttpPreOutput {
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default)]
    request: Option<HttpMessageOutput>,
    #[serde(default)]
    response: Option<HttpMessageOutput>,
    #[serde(default)]
    has_response: Option<bool>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct HttpPostOutput {
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default)]
    error: Option<String>,
    /// Causeway extension: a response object replaces the fields it carries.
    #[serde(default)]
    response: Option<HttpMessageOutput>,
}

/// A request or response object returned by a guest; absent or null members leave the
/// corresponding part unchanged.
#[derive(Deserialize)]
struct HttpMessageOutput {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    query: Option<Map<String, Value>>,
    #[serde(default)]
    body: Option<String>,
}

/// A validated `HttpMessageOutput`, ready to apply.
struct HttpParts {
    method: Option<String>,
    path: Option<String>,
    status: Option<u16>,
    headers: Option<Vec<(String, String)>>,
    query: Option<Vec<(String, String)>>,
    body: Option<Bytes>,
}

impl HttpMessageOutput {
    fn into_parts(self, hook: Hook) -> Result<HttpParts, PluginFailure> {
        let bad = |e: String| malformed(hook, &e);
        let headers = self
            .headers
            .map(|h| pairs_from(h, "header"))
            .transpose()
            .map_err(bad)?;
        let query = self
            .query
            .map(|q| pairs_from(q, "query parameter"))
            .transpose()
            .map_err(bad)?;
        let body = self
            .body
            .map(|b| BASE64_LENIENT.decode(b.as_bytes()).map(Bytes::from))
            .transpose()
            .map_err(|e| malformed(hook, &format!("body is not valid base64: {e}")))?;
        if let Some(status) = self.status_code
            && !(100..=999).contains(&status)
        {
            return Err(malformed(
                hook,
                &format!("status_code {status} is not an HTTP status"),
            ));
        }
        Ok(HttpParts {
            method: self.method,
            path: self.path,
            status: self.status_code,
            headers,
            query,
            body,
        })
    }

    fn into_response(self, hook: Hook) -> Result<HttpResponse, PluginFailure> {
        let parts = self.into_parts(hook)?;
        Ok(HttpResponse {
            status: parts.status.unwrap_or(200),
            headers: parts.headers.unwrap_or_default(),
            body: parts.body.unwrap_or_default(),
        })
    }
}

trait ApplyParts<T> {
    fn apply(self, target: &mut T);
}

impl ApplyParts<HttpRequest> for HttpParts {
    fn apply(self, req: &mut HttpRequest) {
        // Method and path are applied so the chain can refuse the change (routing is done).
        if let Some(method) = self.method.filter(|m| !m.is_empty()) {
            req.method = method;
        }
        if let Some(path) = self.path.filter(|p| !p.is_empty()) {
            req.path = path;
        }
        if let Some(headers) = self.headers {
            req.headers = headers;
        }
        if let Some(query) = self.query {
            req.query = query;
        }
        if let Some(body) = self.body {
            req.body = body;
        }
    }
}

impl ApplyParts<HttpResponse> for HttpParts {
    fn apply(self, resp: &mut HttpResponse) {
        if let Some(status) = self.status {
            resp.status = status;
        }
        if let Some(headers) = self.headers {
            resp.headers = headers;
        }
        if let Some(body) = self.body {
            resp.body = body;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pre_hook.

/// The body field that becomes `input`: the caller-written content of each operation.
fn input_key(kind: RequestType) -> Option<&'static str> {
    match kind {
        RequestType::ChatCompletion => Some("messages"),
        RequestType::TextCompletion => Some("prompt"),
        RequestType::Embedding => Some("input"),
        RequestType::ListModels => None,
    }
}

/// Body fields a guest may not set through `params`: `model` and `fallbacks` never live in the
/// body, and `stream` is fixed once the request is decoded.
const RESERVED_PARAMS: [&str; 3] = ["model", "fallbacks", "stream"];

fn body_size(body: &RawObject) -> usize {
    body.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum()
}

#[derive(Serialize)]
struct PreInput<'a> {
    context: GuestContext<'a>,
    request: LlmRequestJson<'a>,
}

struct LlmRequestJson<'a>(&'a LlmRequest);

impl Serialize for LlmRequestJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let req = self.0;
        let key = input_key(req.request_type);
        let mut map = serializer.serialize_map(Some(6))?;
        map.serialize_entry("provider", &req.provider)?;
        map.serialize_entry("model", &req.model)?;
        match key.and_then(|k| req.body.get(k)) {
            Some(raw) => map.serialize_entry("input", raw)?,
            None => map.serialize_entry("input", &())?,
        }
        map.serialize_entry(
            "params",
            &ParamsJson {
                body: &req.body,
                skip: key,
            },
        )?;
        map.serialize_entry("request_type", req.request_type.as_str(false))?;
        map.serialize_entry("stream", &req.stream)?;
        map.end()
    }
}

/// Every body field except the one sent as `input`, raw (not re-encoded).
struct ParamsJson<'a> {
    body: &'a RawObject,
    skip: Option<&'static str>,
}

impl Serialize for ParamsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.body.iter() {
            if Some(key) != self.skip {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

#[derive(Deserialize)]
struct PreOutput<'a> {
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default, borrow)]
    request: Option<LlmRequestOutput<'a>>,
    #[serde(default, borrow)]
    short_circuit: Option<ShortCircuitOutput<'a>>,
    #[serde(default)]
    has_short_circuit: Option<bool>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct LlmRequestOutput<'a> {
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    params: Option<RawObject>,
}

/// A validated request rewrite.
struct LlmRewrite {
    provider: Option<String>,
    model: Option<String>,
    /// The new body, when `input` or `params` changed it.
    body: Option<RawObject>,
}

impl LlmRequestOutput<'_> {
    fn into_rewrite(self, req: &LlmRequest) -> Result<LlmRewrite, PluginFailure> {
        let key = input_key(req.request_type);
        let body = if self.input.is_none() && self.params.is_none() {
            None
        } else {
            let mut body = RawObject::new();
            match (key, self.input) {
                (Some(key), Some(input)) => body.set_raw(key, input.to_owned()),
                (Some(key), None) => {
                    if let Some(current) = req.body.get(key) {
                        body.set_raw(key, current.to_owned());
                    }
                }
                (None, _) => {}
            }
            match self.params {
                Some(params) => {
                    for (name, value) in params.iter() {
                        if Some(name) != key && !RESERVED_PARAMS.contains(&name) {
                            body.set_raw(name, value.to_owned());
                        }
                    }
                    if let Some(stream) = req.body.get("stream") {
                        body.set_raw("stream", stream.to_owned());
                    }
                }
                None => {
                    for (name, value) in req.body.iter() {
                        if Some(name) != key {
                            body.set_raw(name, value.to_owned());
                        }
                    }
                }
            }
            Some(body)
        };
        Ok(LlmRewrite {
            provider: self.provider.filter(|p| !p.is_empty()),
            model: self.model.filter(|m| !m.is_empty()),
            body,
        })
    }
}

impl LlmRewrite {
    fn apply(self, req: &mut LlmRequest) {
        if let Some(provider) = self.provider {
            req.provider = provider;
        }
        if let Some(model) = self.model {
            req.model = model;
        }
        if let Some(body) = self.body {
            req.body = body;
        }
    }
}

#[derive(Deserialize)]
struct ShortCircuitOutput<'a> {
    #[serde(default, borrow)]
    response: Option<ResponseOutput<'a>>,
    #[serde(default)]
    error: Option<Map<String, Value>>,
}

/// Bifrost's `BifrostResponse`: one member per operation.
#[derive(Deserialize)]
struct ResponseOutput<'a> {
    #[serde(default, borrow)]
    chat_response: Option<&'a RawValue>,
    #[serde(default, borrow)]
    text_completion_response: Option<&'a RawValue>,
    #[serde(default, borrow)]
    embedding_response: Option<&'a RawValue>,
}

impl<'a> ResponseOutput<'a> {
    fn body(self) -> Option<&'a RawValue> {
        self.chat_response
            .or(self.text_completion_response)
            .or(self.embedding_response)
    }
}

fn short_circuit_result(
    short_circuit: ShortCircuitOutput<'_>,
    ctx: &RequestContext,
    req: &LlmRequest,
) -> Result<Result<LlmResponse, GatewayError>, PluginFailure> {
    if let Some(raw) = short_circuit.response.and_then(ResponseOutput::body) {
        return short_circuit_response(raw, ctx, req).map(Ok);
    }
    if let Some(error) = short_circuit.error {
        let err = error_from_json(&error, None)
            .map_err(|e| malformed(Hook::PreLlm, &format!("short_circuit.error: {e}")))?;
        return Ok(Err(err));
    }
    Err(malformed(
        Hook::PreLlm,
        "short_circuit has neither a response (chat_response, text_completion_response, \
         embedding_response) nor an error",
    ))
}

/// The guest's completion as the response, with the members OpenAI clients require filled in
/// when the guest left them out; a stream when the caller asked for one.
fn short_circuit_response(
    raw: &RawValue,
    ctx: &RequestContext,
    req: &LlmRequest,
) -> Result<LlmResponse, PluginFailure> {
    let mut body: Map<String, Value> = serde_json::from_str(raw.get()).map_err(|e| {
        malformed(
            Hook::PreLlm,
            &format!("short_circuit.response must be an object: {e}"),
        )
    })?;
    let object = match req.request_type {
        RequestType::TextCompletion => "text_completion",
        RequestType::Embedding | RequestType::ListModels => "list",
        RequestType::ChatCompletion => "chat.completion",
    };
    let id_prefix = match req.request_type {
        RequestType::TextCompletion => "cmpl-plugin-",
        _ => "chatcmpl-plugin-",
    };
    if !body.get("id").is_some_and(Value::is_string) && req.request_type != RequestType::Embedding {
        body.insert(
            "id".into(),
            Value::String(format!("{id_prefix}{}", ctx.request_id)),
        );
    }
    body.entry("object")
        .or_insert_with(|| Value::String(object.to_owned()));
    if req.request_type != RequestType::Embedding {
        body.entry("created").or_insert_with(|| unix_now().into());
    }
    let model_missing = body
        .get("model")
        .is_none_or(|m| m.as_str().is_none_or(str::is_empty));
    if model_missing {
        body.insert("model".into(), Value::String(req.model.clone()));
    }
    let route = RouteInfo {
        provider: req.provider.clone(),
        model: req.model.clone(),
        ..RouteInfo::default()
    };
    if req.stream && req.request_type.supports_stream() {
        let chunks = completion_chunks(&body, req.request_type, req.wants_stream_usage())?;
        let stream: ChunkStream = Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok)));
        return Ok(LlmResponse::Stream {
            chunks: stream,
            route,
        });
    }
    let body = serde_json::to_vec(&body)
        .map_err(|e| PluginFailure(format!("cannot encode the short-circuit response: {e}")))?;
    Ok(LlmResponse::Complete {
        body: Bytes::from(body),
        route,
    })
}

/// A complete response as the OpenAI chunks a streaming caller expects: per choice a role
/// chunk, a content chunk and a finish chunk, then a usage chunk when the caller asked for it.
fn completion_chunks(
    body: &Map<String, Value>,
    kind: RequestType,
    with_usage: bool,
) -> Result<Vec<Bytes>, PluginFailure> {
    let id = body.get("id").cloned().unwrap_or(Value::Null);
    let created = body.get("created").cloned().unwrap_or(Value::Null);
    let model = body.get("model").cloned().unwrap_or(Value::Null);
    let chat = kind == RequestType::ChatCompletion;
    let object = if chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let chunk = |choices: Value| json!({"id": id, "object": object, "created": created, "model": model, "choices": choices});
    let empty = Vec::new();
    let choices = body
        .get("choices")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut out = Vec::with_capacity(choices.len() * 3 + 1);
    for (i, choice) in choices.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or_else(|| i.into());
        let finish = choice
            .get("finish_reason")
            .filter(|f| !f.is_null())
            .cloned()
            .unwrap_or_else(|| "stop".into());
        if chat {
            let message = choice.get("message");
            let role = message
                .and_then(|m| m.get("role"))
                .cloned()
                .unwrap_or_else(|| "assistant".into());
            out.push(chunk(json!([{"index": index, "delta": {"role": role, "content": ""}, "logprobs": null, "finish_reason": null}])));
            let mut delta = Map::new();
            if let Some(content) = message
                .and_then(|m| m.get("content"))
                .filter(|c| !c.is_null())
            {
                delta.insert("content".into(), content.clone());
            }
            if let Some(calls) = message
                .and_then(|m| m.get("tool_calls"))
                .and_then(Value::as_array)
            {
                let calls: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(n, call)| {
                        let mut call = call.clone();
                        if let Some(obj) = call.as_object_mut() {
                            obj.entry("index").or_insert_with(|| n.into());
                        }
                        call
                    })
                    .collect();
                delta.insert("tool_calls".into(), Value::Array(calls));
            }
            if !delta.is_empty() {
                out.push(chunk(json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}])));
            }
            out.push(chunk(
                json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": finish}]),
            ));
        } else {
            let text = choice.get("text").cloned().unwrap_or_else(|| "".into());
            out.push(chunk(
                json!([{"index": index, "text": text, "logprobs": null, "finish_reason": null}]),
            ));
            out.push(chunk(
                json!([{"index": index, "text": "", "logprobs": null, "finish_reason": finish}]),
            ));
        }
    }
    if with_usage {
        let usage = body.get("usage").cloned().unwrap_or_else(
            || json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}),
        );
        let mut last = chunk(json!([]));
        if let Some(obj) = last.as_object_mut() {
            obj.insert("usage".into(), usage);
        }
        out.push(last);
    }
    out.into_iter()
        .map(|value| {
            serde_json::to_vec(&value)
                .map(Bytes::from)
                .map_err(|e| PluginFailure(format!("cannot encode a stream chunk: {e}")))
        })
        .collect()
}

/// A guest-written error. Two shapes are accepted:
/// - Bifrost's `BifrostError` (what its Go/Rust SDK types serialize):
///   `{"error": {"message", "type", "code", "param"}, "status_code", "type", "allow_fallbacks",
///   "is_bifrost_error", ...}` — recognised by `error` being an object;
/// - the simple shape `{"message", "type", "code", "param", "status_code", "allow_fallbacks"}`.
///
/// Status defaults to 400 (or the original error's status when replacing one). When the
/// result equals `original` in status, message, type and code, the original is kept as is
/// (it carries routing details a guest cannot see).
fn error_from_json(
    error: &Map<String, Value>,
    original: Option<&GatewayError>,
) -> Result<GatewayError, String> {
    fn text(v: Option<&Value>) -> Option<String> {
        match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
    let (inner, top_type) = match error.get("error") {
        Some(Value::Object(inner)) => (inner, text(error.get("type"))),
        _ => (error, None),
    };
    let message =
        text(inner.get("message")).ok_or_else(|| "the error has no message".to_owned())?;
    let error_type = text(inner.get("type"));
    let code = text(inner.get("code"));
    let param = text(inner.get("param"));
    let status = match error
        .get("status_code")
        .or_else(|| inner.get("status_code"))
    {
        None | Some(Value::Null) => original.map_or(400, GatewayError::status),
        Some(v) => v
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (400..=599).contains(n))
            .ok_or_else(|| format!("status_code {v} is not an HTTP error status (400-599)"))?,
    };
    let allow_fallbacks = error
        .get("allow_fallbacks")
        .or_else(|| inner.get("allow_fallbacks"))
        .and_then(Value::as_bool);
    let gateway_fault = error.get("is_bifrost_error").and_then(Value::as_bool);

    if let Some(orig) = original {
        let d = orig.details();
        let same = d.status == status
            && d.message == message
            && (error_type.is_none() || d.error_type == error_type)
            && (code.is_none() || d.code == code)
            && allow_fallbacks.is_none_or(|a| a == d.allow_fallbacks);
        if same {
            return Ok(orig.clone());
        }
    }

    let class = match original {
        Some(orig) if orig.status() == status => orig.class(),
        _ => class_for_status(status),
    };
    let mut err = GatewayError::new(status, class, message);
    err = match (top_type, error_type) {
        (Some(top), Some(inner)) => err.with_type(top).with_error_type(inner),
        (Some(t), None) | (None, Some(t)) => err.with_type(t),
        (None, None) => err,
    };
    if let Some(code) = code {
        err = err.with_code(code);
    }
    if let Some(param) = param {
        err = err.with_param(param);
    }
    if allow_fallbacks == Some(false) {
        err = err.without_fallbacks();
    }
    err = err.with_gateway_fault(gateway_fault.unwrap_or(false));
    Ok(err)
}

/// A plugin's error is a decision about the caller's request, so 4xx classes are the caller
/// and policy ones; a 5xx from a plugin is neither provider nor gateway trouble.
fn class_for_status(status: u16) -> ErrorClass {
    match status {
        401 => ErrorClass::CallerUnauthenticated,
        402 => ErrorClass::PolicyBudgetExceeded,
        403 => ErrorClass::PolicyAccessDenied,
        404 => ErrorClass::CallerNotFound,
        429 => ErrorClass::PolicyRateLimited,
        400..=499 => ErrorClass::CallerInvalidRequest,
        _ => ErrorClass::Other,
    }
}

// ---------------------------------------------------------------------------------------------
// post_hook.

/// `{"<key>": <body>}`, Bifrost's `BifrostResponse` with one operation's member set.
struct ResponseJson<'a> {
    key: &'static str,
    body: &'a RawValue,
}

impl Serialize for ResponseJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.key, self.body)?;
        map.end()
    }
}

/// Which `BifrostResponse` member a body belongs in, from its OpenAI `object`.
fn response_key(body: &RawValue) -> &'static str {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        object: Option<String>,
    }
    match serde_json::from_str::<Probe>(body.get())
        .ok()
        .and_then(|p| p.object)
    {
        Some(o) if o == "text_completion" => "text_completion_response",
        Some(o) if o == "list" || o == "embedding" => "embedding_response",
        _ => "chat_response",
    }
}

#[derive(Serialize)]
struct PostInput<'a> {
    context: GuestContext<'a>,
    response: Option<ResponseJson<'a>>,
    error: Option<&'a Value>,
    has_error: bool,
}

#[derive(Deserialize)]
struct PostOutput<'a> {
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default, borrow)]
    response: Option<ResponseOutput<'a>>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    has_error: Option<bool>,
    #[serde(default)]
    hook_error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// http_stream_chunk_hook.

#[derive(Serialize)]
struct ChunkInput<'a> {
    context: GuestContext<'a>,
    request: ChunkRequestJson<'a>,
    chunk: &'a RawValue,
}

#[derive(Deserialize)]
struct ChunkOutput<'a> {
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default, borrow)]
    chunk: Option<&'a RawValue>,
    #[serde(default)]
    has_chunk: Option<bool>,
    #[serde(default)]
    skip: Option<bool>,
    #[serde(default)]
    error: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;

    use super::*;

    fn parse<T: DeserializeOwned>(text: &str) -> T {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn limits_are_overridden_and_stripped() {
        let config = json!({"a": 1, "_limits": {"memory_mb": 8, "call_timeout_ms": 250}});
        let (limits, guest) = split_limits(&config, &WasmLimits::default()).unwrap();
        assert_eq!(limits.memory_bytes, 8 * 1024 * 1024);
        assert_eq!(limits.call_timeout, Duration::from_millis(250));
        assert_eq!(guest, json!({"a": 1}));

        let (limits, guest) = split_limits(&Value::Null, &WasmLimits::default()).unwrap();
        assert_eq!(limits, WasmLimits::default());
        assert_eq!(guest, json!({}));

        for bad in [
            json!({"_limits": {"memory_mb": 0}}),
            json!({"_limits": {"call_timeout_ms": 600000}}),
            json!({"_limits": {"fuel": 1}}),
            json!({"_limits": 5}),
            json!([1]),
        ] {
            let err = split_limits(&bad, &WasmLimits::default()).unwrap_err();
            assert!(matches!(err, LoadError::InvalidConfig(_)), "{bad}: {err:?}");
        }
    }

    #[test]
    fn load_errors_name_the_file() {
        let path = Path::new("/p/x.wasm");
        let err = load_error(
            path,
            WasmError::Load(
                "module does not export `malloc` (required exports: memory, malloc, free, get_name, init)"
                    .into(),
            ),
        );
        assert_eq!(
            err,
            LoadError::InvalidModule(
                "module /p/x.wasm does not export `malloc` (required exports: memory, malloc, free, get_name, init)"
                    .into()
            )
        );
        let err = load_error(path, WasmError::Init("init returned 1".into()));
        assert!(
            matches!(&err, LoadError::Failed(m) if m.contains("/p/x.wasm") && m.contains("init returned 1"))
        );
        let err = load_error(path, WasmError::MemoryLimit);
        assert!(matches!(&err, LoadError::Failed(m) if m.contains("memory")));
    }

    #[test]
    fn pairs_join_repeated_names_and_accept_scalars() {
        let pairs = vec![
            ("Accept".to_owned(), "a".to_owned()),
            ("x".to_owned(), "1".to_owned()),
            ("accept".to_owned(), "b".to_owned()),
        ];
        let text = serde_json::to_string(&PairsJson {
            pairs: &pairs,
            fold_case: true,
        })
        .unwrap();
        assert_eq!(text, r#"{"Accept":"a, b","x":"1"}"#);

        let map: Map<String, Value> = parse(r#"{"a":"x","n":2,"b":true,"z":null,"m":["1","2"]}"#);
        let pairs = pairs_from(map, "header").unwrap();
        let flat: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            flat,
            [
                ("a", "x"),
                ("n", "2"),
                ("b", "true"),
                ("m", "1"),
                ("m", "2")
            ]
        );
        assert!(pairs_from(parse(r#"{"a":{}}"#), "header").is_err());
    }

    #[test]
    fn both_error_shapes_are_understood() {
        let simple: Map<String, Value> = parse(
            r#"{"message":"slow down","type":"rate_limit","code":"rl","status_code":429,"allow_fallbacks":false}"#,
        );
        let err = error_from_json(&simple, None).unwrap();
        assert_eq!(err.status(), 429);
        assert_eq!(err.message(), "slow down");
        assert_eq!(err.kind(), Some("rate_limit"));
        assert_eq!(err.details().code.as_deref(), Some("rl"));
        assert!(!err.details().allow_fallbacks);
        assert_eq!(err.class(), ErrorClass::PolicyRateLimited);

        let bifrost: Map<String, Value> = parse(
            r#"{"is_bifrost_error":false,"status_code":403,"error":{"message":"no","type":"blocked","code":"403"},"allow_fallbacks":true}"#,
        );
        let err = error_from_json(&bifrost, None).unwrap();
        assert_eq!(err.status(), 403);
        assert_eq!(err.message(), "no");
        assert_eq!(err.details().error_type.as_deref(), Some("blocked"));
        assert!(err.details().allow_fallbacks);

        let defaulted: Map<String, Value> = parse(r#"{"message":"bad"}"#);
        assert_eq!(error_from_json(&defaulted, None).unwrap().status(), 400);
        assert!(error_from_json(&parse(r#"{"type":"x"}"#), None).is_err());
        assert!(error_from_json(&parse(r#"{"message":"m","status_code":200}"#), None).is_err());
    }

    #[test]
    fn an_unchanged_error_keeps_the_original() {
        let original = GatewayError::new(502, ErrorClass::ProviderServerError, "upstream broke")
            .with_type("server_error")
            .with_request_info("chat_completion", "openai", "openai/gpt", "gpt");
        let envelope = original.to_envelope(Some("r1"));
        let Value::Object(map) = envelope else {
            panic!("envelope is an object")
        };
        let kept = error_from_json(&map, Some(&original)).unwrap();
        assert_eq!(kept.details().extra.provider.as_deref(), Some("openai"));
        assert_eq!(kept.class(), ErrorClass::ProviderServerError);
    }

    #[test]
    fn stream_chunks_from_a_completion() {
        let body: Map<String, Value> = parse(
            r#"{"id":"c1","object":"chat.completion","created":5,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        );
        let chunks = completion_chunks(&body, RequestType::ChatCompletion, true).unwrap();
        let values: Vec<Value> = chunks
            .iter()
            .map(|c| serde_json::from_slice(c).unwrap())
            .collect();
        assert_eq!(values.len(), 4);
        assert_eq!(values[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(values[1]["choices"][0]["delta"]["content"], "hi");
        assert_eq!(values[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(values[3]["usage"]["total_tokens"], 3);
        assert!(
            values
                .iter()
                .all(|v| v["object"] == "chat.completion.chunk" && v["id"] == "c1")
        );
        let without = completion_chunks(&body, RequestType::ChatCompletion, false).unwrap();
        assert_eq!(without.len(), 3);
    }

    #[test]
    fn context_merges_and_protects_the_request_id() {
        let mut ctx = RequestContext::new("r1", http::HeaderMap::new());
        ctx.values.insert("keep".into(), json!(1));
        ctx.values.insert("drop".into(), json!(2));
        let text = serde_json::to_string(&GuestContext::of(&ctx)).unwrap();
        assert_eq!(text, r#"{"request_id":"r1","keep":1,"drop":2}"#);
        apply_context(
            &mut ctx,
            Some(parse(r#"{"request_id":"x","drop":null,"new":"v"}"#)),
        );
        assert_eq!(
            Value::Object(ctx.values.clone()),
            json!({"keep": 1, "new": "v"})
        );
    }
}
