// passthrough: pre_hook and post_hook that parse their input and return it unchanged, plus a
// counter in the context. A starting point for a new plugin, and the guest the hook-overhead
// benchmark (crates/causeway-plugins/examples/wasm_hook_bench.rs) measures.

import { JSONValue } from "../lib/json";
import { contextOf, errorOutput, inputError, parseInput, postOutput, preOutput, writeOutput } from "../lib/abi";

export { malloc, free } from "../lib/abi";

let name: u64 = 0;

export function get_name(): u64 {
  if (name == 0) name = writeOutput("passthrough");
  return name;
}

export function init(ptr: u32, len: u32): i32 {
  return 0;
}

export function pre_hook(ptr: u32, len: u32): u64 {
  const input = parseInput(ptr, len);
  if (input == null) return errorOutput("error", inputError);
  const context = contextOf(input);
  context.set("passthrough", JSONValue.bool(true));
  // Returning the request as received; `null` would mean "unchanged" too, but a real plugin
  // that edits the request returns it, so the benchmark pays for the full round trip.
  return preOutput(context, input.get("request"));
}

export function post_hook(ptr: u32, len: u32): u64 {
  const input = parseInput(ptr, len);
  if (input == null) return errorOutput("hook_error", inputError);
  const hasError = input.getBool("has_error", false);
  return postOutput(contextOf(input), input.get("response"), input.get("error"), hasError);
}

export function cleanup(): i32 {
  return 0;
}
