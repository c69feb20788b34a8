// header-rewrite: shows both request hooks.
// - http_pre_hook adds the header `x-causeway-example: header-rewrite` to the HTTP request.
// - pre_hook appends a system message (default "Answer briefly.") to a chat request's messages
//   and sets `params.temperature` (default 0).
// Config (all optional): {"header_value": "...", "system_message": "...", "temperature": 0}
// ("system_message": "" or "temperature": null turns that rewrite off).

import { JSONValue, parseUtf8 } from "../lib/json";
import { contextOf, errorOutput, httpPreOutput, inputError, log, parseInput, preOutput, writeOutput } from "../lib/abi";

export { malloc, free } from "../lib/abi";

let headerValue = "header-rewrite";
let systemMessage = "Answer briefly.";
// Kept as JSON number text so it is passed on exactly as configured.
let temperature: JSONValue | null = JSONValue.num("0");
let name: u64 = 0;

export function get_name(): u64 {
  // The host reads the name once and does not free it, so one buffer serves every call.
  if (name == 0) name = writeOutput("header-rewrite");
  return name;
}

export function init(ptr: u32, len: u32): i32 {
  if (len == 0) return 0;
  const config = parseUtf8(<usize>ptr, <usize>len);
  if (config == null || !config.isObj) {
    log(3, "header-rewrite: config is not a JSON object");
    return 1;
  }
  const header = config.getString("header_value");
  if (header != null) headerValue = header;
  const message = config.getString("system_message");
  if (message != null) systemMessage = message;
  const temp = config.get("temperature");
  if (temp != null) temperature = temp.isNull ? null : temp;
  log(1, "header-rewrite ready: header value '" + headerValue + "'");
  return 0;
}

export function http_pre_hook(ptr: u32, len: u32): u64 {
  const input = parseInput(ptr, len);
  if (input == null) return errorOutput("error", inputError);
  const request = input.get("request");
  if (request == null || !request.isObj) return errorOutput("error", "input has no request object");
  let headers = request.get("headers");
  if (headers == null || !headers.isObj) {
    headers = JSONValue.obj();
    request.set("headers", headers);
  }
  headers.set("x-causeway-example", JSONValue.str(headerValue));
  const context = contextOf(input);
  context.set("header-rewrite:http_pre", JSONValue.bool(true));
  return httpPreOutput(context, request);
}

export function pre_hook(ptr: u32, len: u32): u64 {
  const input = parseInput(ptr, len);
  if (input == null) return errorOutput("error", inputError);
  const request = input.get("request");
  if (request == null || !request.isObj) return errorOutput("error", "input has no request object");
  const context = contextOf(input);

  // Only chat requests carry a message list; text completions and embeddings pass unchanged.
  const messages = request.get("input");
  if (messages != null && messages.isArr && systemMessage.length > 0) {
    const message = JSONValue.obj();
    message.set("role", JSONValue.str("system"));
    message.set("content", JSONValue.str(systemMessage));
    messages.push(message);
  }
  if (temperature != null && request.getString("request_type") != "embedding") {
    let params = request.get("params");
    if (params == null || !params.isObj) {
      params = JSONValue.obj();
      request.set("params", params);
    }
    params.set("temperature", temperature!);
  }
  context.set("header-rewrite:pre", JSONValue.bool(true));
  return preOutput(context, request);
}

export function cleanup(): i32 {
  return 0;
}
