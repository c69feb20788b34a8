// The guest side of the plugin ABI shared by the examples: the buffer exports the host needs
// (`malloc`, `free`), reading input and returning output as packed `ptr << 32 | len`, logging
// through the host's `env.log_level`, and building the JSON outputs of each hook.

import { JSONValue, ObjectWriter, Utf8Buffer, parseError, parseUtf8 } from "./json";

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
  // Packed before collecting: the collector frees the `Utf8Buffer` object (not its memory).
  const packed = packBuffer(value.serialize());
  __collect();
  return packed;
}

/** Like `writeJSON`, for an output written member by member, as the builders below do. */
export function writeObject(writer: ObjectWriter): u64 {
  const packed = packBuffer(writer.finish());
  __collect();
  return packed;
}

/**
 * The expected size of a hook output carrying these values, so that its buffer is allocated
 * once: what they serialize as, plus room for the output's fixed members.
 */
function outputSize(a: JSONValue | null, b: JSONValue | null = null, c: JSONValue | null = null): usize {
  let n: usize = 128;
  if (a != null) n += a.sizeHint();
  if (b != null) n += b.sizeHint();
  if (c != null) n += c.sizeHint();
  return n;
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
  const out = new ObjectWriter(outputSize(context, request));
  out.value("context", context);
  out.value("request", request);
  out.value("response", null);
  out.bool("has_response", false);
  out.str("error", "");
  return writeObject(out);
}

/** `pre_hook` output: continue, with an optionally rewritten request. */
export function preOutput(context: JSONValue, request: JSONValue | null): u64 {
  const out = new ObjectWriter(outputSize(context, request));
  out.value("context", context);
  out.value("request", request);
  out.value("short_circuit", null);
  out.bool("has_short_circuit", false);
  out.str("error", "");
  return writeObject(out);
}

/** `pre_hook` output that answers instead of the provider. */
export function shortCircuitOutput(context: JSONValue, shortCircuit: JSONValue): u64 {
  const out = new ObjectWriter(outputSize(context, shortCircuit));
  out.value("context", context);
  out.value("request", null);
  out.value("short_circuit", shortCircuit);
  out.bool("has_short_circuit", true);
  out.str("error", "");
  return writeObject(out);
}

/** `post_hook` output: the response (or error) as the plugin leaves it. */
export function postOutput(
  context: JSONValue,
  response: JSONValue | null,
  error: JSONValue | null,
  hasError: bool,
): u64 {
  const out = new ObjectWriter(outputSize(context, response, error));
  out.value("context", context);
  out.value("response", response);
  out.value("error", error);
  out.bool("has_error", hasError);
  out.str("hook_error", "");
  return writeObject(out);
}

/** Output of any hook that failed: only `error` matters to the host (`hook_error` for post_hook). */
export function errorOutput(field: string, message: string): u64 {
  const out = new ObjectWriter(outputSize(null) + <usize>message.length);
  out.value("context", JSONValue.obj());
  out.str(field, message);
  return writeObject(out);
}
