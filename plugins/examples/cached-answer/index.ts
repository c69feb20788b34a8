// cached-answer: pre_hook answers a known prompt without calling the provider.
// When the last user message of a chat request equals the configured prompt (after trimming
// surrounding whitespace), it short-circuits with a chat completion whose content is the
// configured answer; any other request continues unchanged.
// Config: {"prompt": "...", "answer": "..."} (both required).

import { JSONValue, parseUtf8 } from "../lib/json";
import { contextOf, errorOutput, inputError, log, parseInput, preOutput, shortCircuitOutput, writeOutput } from "../lib/abi";

export { malloc, free } from "../lib/abi";

let prompt = "";
let answer = "";
let hits: i64 = 0;
let name: u64 = 0;

export function get_name(): u64 {
  if (name == 0) name = writeOutput("cached-answer");
  return name;
}

export function init(ptr: u32, len: u32): i32 {
  let config: JSONValue | null = null;
  if (len > 0) config = parseUtf8(<usize>ptr, <usize>len);
  if (config == null || !config.isObj) {
    log(3, "cached-answer: config must be an object with \"prompt\" and \"answer\"");
    return 1;
  }
  const p = config.getString("prompt");
  const a = config.getString("answer");
  if (p == null || a == null || p.trim().length == 0) {
    log(3, "cached-answer: config needs non-empty string \"prompt\" and string \"answer\"");
    return 2;
  }
  prompt = p.trim();
  answer = a;
  return 0;
}

/** The text of a message's content: a string, or the text parts of a content array joined. */
function contentText(content: JSONValue | null): string | null {
  if (content == null) return null;
  if (content.isStr) return content.text;
  if (!content.isArr) return null;
  const parts = new Array<string>();
  for (let i = 0; i < content.length; i++) {
    const part = content.at(i)!;
    if (part.getString("type") == "text") {
      const text = part.getString("text");
      if (text != null) parts.push(text);
    }
  }
  return parts.join("");
}

function lastUserText(messages: JSONValue): string | null {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages.at(i)!;
    if (message.getString("role") == "user") return contentText(message.get("content"));
  }
  return null;
}

export function pre_hook(ptr: u32, len: u32): u64 {
  const input = parseInput(ptr, len);
  if (input == null) return errorOutput("error", inputError);
  const request = input.get("request");
  if (request == null || !request.isObj) return errorOutput("error", "input has no request object");
  const context = contextOf(input);

  const messages = request.get("input");
  const text = messages != null && messages.isArr ? lastUserText(messages) : null;
  if (text == null || text.trim() != prompt) {
    context.set("cached-answer", JSONValue.str("miss"));
    return preOutput(context, null);
  }

  hits++;
  const model = request.getString("model");
  const message = JSONValue.obj();
  message.set("role", JSONValue.str("assistant"));
  message.set("content", JSONValue.str(answer));
  const choice = JSONValue.obj();
  choice.set("index", JSONValue.num("0"));
  choice.set("message", message);
  choice.set("finish_reason", JSONValue.str("stop"));
  const choices = JSONValue.arr();
  choices.push(choice);
  const usage = JSONValue.obj();
  usage.set("prompt_tokens", JSONValue.num("0"));
  usage.set("completion_tokens", JSONValue.num("0"));
  usage.set("total_tokens", JSONValue.num("0"));

  const completion = JSONValue.obj();
  completion.set("id", JSONValue.str("chatcmpl-cached-" + hits.toString()));
  completion.set("object", JSONValue.str("chat.completion"));
  completion.set("model", JSONValue.str(model == null ? "" : model));
  completion.set("choices", choices);
  completion.set("usage", usage);

  const response = JSONValue.obj();
  response.set("chat_response", completion);
  const shortCircuit = JSONValue.obj();
  shortCircuit.set("response", response);
  context.set("cached-answer", JSONValue.str("hit"));
  return shortCircuitOutput(context, shortCircuit);
}

export function cleanup(): i32 {
  log(1, "cached-answer answered " + hits.toString() + " request(s) from its cache");
  return 0;
}
