// The guest side of the plugin ABI shared by the examples: the buffer exports the host needs
// (`malloc`, `free`), reading input and returning output as packed `ptr << 32 | len`, logging
// through the host's `env.log_level`, and building the JSON outputs of each hook.

import { JSONValue, Utf8Buffer, parseError, parseUtf8 } from "./json";

// Host import: one log line at a level (0 debug, 1 info, 2 warn, 3 error).
@external("env", "log_level")
declare function hostLog(level: i32, ptr: usize, len: u32): void;

/** The host asks for a buffer to write input into. Unmanaged memory: the GC never moves or frees it. */
export function malloc(size: u32): u32 {
  return <u32>heap.alloc(<usize>(size == 0 ? 1 : size));
}

/** The host returns an input buffer, or an output buffer it has copied. */
export function free(ptr: u32): void {
  if (ptr != 0) heap.free(<usize>ptr);
}

/** Decodes the UTF-8 input the host wrote at `ptr`. The host frees that buffer after the call. */
export function readInput(ptr: u32, len: u32): string {
  if (len == 0) return "";
  return String.UTF8.decodeUnsafe(<usize>ptr, <usize>len);
}

/** Copies `s` as UTF-8 into a fresh buffer and packs its address and length for the host. */
export function writeOutput(s: string): u64 {
  const len = String.UTF8.byteLength(s);
  const ptr = heap.alloc(<usize>(len == 0 ? 1 : len));
  String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, ptr);
  return (<u64>ptr << 32) | <u64>len;
}

export function log(level: i32, message: string): void {
  const bytes = String.UTF8.encode(message);
  hostLog(level, changetype<usize>(bytes), <u32>bytes.byteLength);
}

/** Hands a serialized buffer to the host, which frees it with `free` once it has copied it. */
export function packBuffer(out: Utf8Buffer): u64 {
  return (<u64>out.ptr << 32) | <u64>out.len;
}

/**
 * Serializes a hook output for the host, then collects garbage. The examples are built with
 * AssemblyScript's `minimal` runtime, whose collector runs only when asked: once per hook,
 * here, is far cheaper than the `incremental` runtime's work on every allocation, and the
 * output buffer is unmanaged memory the collector does not touch.
 */
export function writeJSON(value: JSONValue): u64 {
  const out = value.serialize();
  __collect();
  return packBuffer(out);
}

/** Parses a hook's input; null (and an error message in `inputError`) when it is not an object. */
export let inputError: string = "";

export function parseInput(ptr: u32, len: u32): JSONValue | null {
  const v = parseUtf8(<usize>ptr, <usize>len);
  if (v == null) {
    inputError = "cannot parse input: " + parseError;
    return null;
  }
  if (!v.isObj) {
    inputError = "input is not a JSON object";
    return null;
  }
  return v;
}

/** The input's `context`, or an empty object. */
export function contextOf(input: JSONValue): JSONValue {
  const ctx = input.get("context");
  if (ctx != null && ctx.isObj) return ctx;
  return JSONValue.obj();
}

/** `http_pre_hook` output. `request` null leaves the request unchanged. */
export function httpPreOutput(context: JSONValue, request: JSONValue | null): u64 {
  const out = JSONValue.obj();
  out.set("context", context);
  out.set("request", request == null ? JSONValue.null() : request);
  out.set("response", JSONValue.null());
  out.set("has_response", JSONValue.bool(false));
  out.set("error", JSONValue.str(""));
  return writeJSON(out);
}

/** `pre_hook` output: continue, with an optionally rewritten request. */
export function preOutput(context: JSONValue, request: JSONValue | null): u64 {
  const out = JSONValue.obj();
  out.set("context", context);
  out.set("request", request == null ? JSONValue.null() : request);
  out.set("short_circuit", JSONValue.null());
  out.set("has_short_circuit", JSONValue.bool(false));
  out.set("error", JSONValue.str(""));
  return writeJSON(out);
}

/** `pre_hook` output that answers instead of the provider. */
export function shortCircuitOutput(context: JSONValue, shortCircuit: JSONValue): u64 {
  const out = JSONValue.obj();
  out.set("context", context);
  out.set("request", JSONValue.null());
  out.set("short_circuit", shortCircuit);
  out.set("has_short_circuit", JSONValue.bool(true));
  out.set("error", JSONValue.str(""));
  return writeJSON(out);
}

/** Output of any hook that failed: only `error` matters to the host (`hook_error` for post_hook). */
export function errorOutput(field: string, message: string): u64 {
  const out = JSONValue.obj();
  out.set("context", JSONValue.obj());
  out.set(field, JSONValue.str(message));
  return writeJSON(out);
}
