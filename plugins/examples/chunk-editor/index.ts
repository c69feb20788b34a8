// chunk-editor: http_stream_chunk_hook edits streamed chat completion chunks.
// It rewrites `choices[0].delta.content` of every chunk: uppercases it ("mode": "uppercase",
// the default) or replaces every occurrence of a word ("mode": "replace", "find": "...",
// "replace": "..."). With "drop_empty": true it drops chunks that carry nothing for the client:
// no content, role, tool calls or refusal in the delta, no finish_reason and no usage.
// Config (optional): {"mode": "uppercase" | "replace", "find": "...", "replace": "...", "drop_empty": false}

import { JSONValue, parseUtf8 } from "../lib/json";
import { contextOf, errorOutput, inputError, log, parseInput, writeJSON, writeOutput } from "../lib/abi";

export { malloc, free } from "../lib/abi";

let replaceMode = false;
let find = "";
let replacement = "";
let dropEmpty = false;
let name: u64 = 0;

export function get_name(): u64 {
  if (name == 0) name = writeOutput("chunk-editor");
  return name;
}

export function init(ptr: u32, len: u32): i32 {
  if (len == 0) return 0;
  const config = parseUtf8(<usize>ptr, <usize>len);
  if (config == null || !config.isObj) {
    log(3, "chunk-editor: config is not a JSON object");
    return 1;
  }
  const mode = config.getString("mode");
  if (mode == null || mode == "uppercase") {
    replaceMode = false;
  } else if (mode == "replace") {
    const f = config.getString("find");
    const r = config.getString("replace");
    if (f == null || f.length == 0 || r == null) {
      log(3, "chunk-editor: mode \"replace\" needs a non-empty \"find\" and a \"replace\" string");
      return 2;
    }
    replaceMode = true;
    find = f;
    replacement = r;
  } else {
    log(3, "chunk-editor: unknown mode \"" + mode + "\" (use \"uppercase\" or \"replace\")");
    return 3;
  }
  dropEmpty = config.getBool("drop_empty", false);
  return 0;
}

function isEmpty(v: JSONValue | null): bool {
  if (v == null || v.isNull) return true;
  if (v.isStr) return v.text.length == 0;
  if (v.isArr || v.isObj) return v.length == 0;
  return false;
}

/** Whether the chunk has nothing a client would show or need. */
function carriesNothing(chunk: JSONValue, choice: JSONValue | null): bool {
  if (!isEmpty(chunk.get("usage"))) return false;
  if (choice == null) return isEmpty(chunk.get("choices"));
  if (!isEmpty(choice.get("finish_reason"))) return false;
  const delta = choice.get("delta");
  if (delta == null || !delta.isObj) return true;
  return isEmpty(delta.get("content")) && isEmpty(delta.get("role")) &&
    isEmpty(delta.get("tool_calls")) && isEmpty(delta.get("refusal"));
}

function output(context: JSONValue, chunk: JSONValue | null): u64 {
  const out = JSONValue.obj();
  out.set("context", context);
  out.set("chunk", chunk == null ? JSONValue.null() : chunk);
  out.set("has_chunk", JSONValue.bool(chunk != null));
  out.set("skip", JSONValue.bool(chunk == null));
  out.set("error", JSONValue.str(""));
  return writeJSON(out);
}

export function http_stream_chunk_hook(ptr: u32, len: u32): u64 {
  const input = parseInput(ptr, len);
  if (input == null) return errorOutput("error", inputError);
  const chunk = input.get("chunk");
  if (chunk == null || !chunk.isObj) return errorOutput("error", "input has no chunk object");
  const context = contextOf(input);

  const choices = chunk.get("choices");
  const choice = choices != null ? choices.at(0) : null;
  if (dropEmpty && carriesNothing(chunk, choice)) return output(context, null);

  const delta = choice != null ? choice.get("delta") : null;
  const content = delta != null ? delta.get("content") : null;
  if (content != null && content.isStr) {
    content.text = replaceMode ? content.text.replaceAll(find, replacement) : content.text.toUpperCase();
  }
  return output(context, chunk);
}

export function cleanup(): i32 {
  return 0;
}
