// A small JSON value type for the example plugins: parse, inspect, modify, serialize.
// It works on UTF-8 bytes in linear memory (the form the host passes input in and expects
// output in), so there is no UTF-16 round trip of the whole payload: strings are decoded one
// value at a time and output is encoded straight into the buffer handed back to the host.
// Numbers keep their original text, so values a plugin does not touch come back unchanged
// (no float round-trip). Objects keep member order.

export const enum Kind {
  Null = 0,
  Bool = 1,
  Num = 2,
  Str = 3,
  Arr = 4,
  Obj = 5,
}

export class JSONValue {
  kind: Kind = Kind.Null;
  flag: bool = false;
  // Number text for Num, the decoded string for Str.
  text: string = "";
  // Members of Arr / Obj; filled in by `resolve` for a value that is still unparsed.
  private _items: Array<JSONValue> | null = null;
  private _keys: Array<string> | null = null;
  private _values: Array<JSONValue> | null = null;
  // A container not looked into yet: its validated JSON text is bytes [rawStart, rawEnd) of
  // `raw` (shared by every value parsed from one input). Serializing it copies those bytes.
  private raw: ArrayBuffer | null = null;
  private rawStart: usize = 0;
  private rawEnd: usize = 0;

  static null(): JSONValue {
    return new JSONValue();
  }

  static bool(b: bool): JSONValue {
    const v = new JSONValue();
    v.kind = Kind.Bool;
    v.flag = b;
    return v;
  }

  static num(text: string): JSONValue {
    const v = new JSONValue();
    v.kind = Kind.Num;
    v.text = text;
    return v;
  }

  static str(s: string): JSONValue {
    const v = new JSONValue();
    v.kind = Kind.Str;
    v.text = s;
    return v;
  }

  static arr(): JSONValue {
    const v = new JSONValue();
    v.kind = Kind.Arr;
    v._items = new Array<JSONValue>();
    return v;
  }

  static obj(): JSONValue {
    const v = new JSONValue();
    v.kind = Kind.Obj;
    v._keys = new Array<string>();
    v._values = new Array<JSONValue>();
    return v;
  }

  /** A container whose (validated) text is `buf[start..end)`, parsed on first use. */
  static lazy(kind: Kind, buf: ArrayBuffer, start: usize, end: usize): JSONValue {
    const v = new JSONValue();
    v.kind = kind;
    v.raw = buf;
    v.rawStart = start;
    v.rawEnd = end;
    return v;
  }

  get isNull(): bool {
    return this.kind == Kind.Null;
  }
  get isObj(): bool {
    return this.kind == Kind.Obj;
  }
  get isArr(): bool {
    return this.kind == Kind.Arr;
  }
  get isStr(): bool {
    return this.kind == Kind.Str;
  }

  /** Array items (parses a lazy array). */
  get items(): Array<JSONValue> {
    this.resolve();
    return this._items!;
  }

  /** Object member names, in order (parses a lazy object). */
  get keys(): Array<string> {
    this.resolve();
    return this._keys!;
  }

  /** Object member values, parallel to `keys`. */
  get values(): Array<JSONValue> {
    this.resolve();
    return this._values!;
  }

  /** Number of array items or object members. */
  get length(): i32 {
    if (this.kind == Kind.Arr) return this.items.length;
    if (this.kind == Kind.Obj) return this.keys.length;
    return 0;
  }

  /** Object member, or null when absent or when this is not an object. */
  get(key: string): JSONValue | null {
    if (this.kind != Kind.Obj) return null;
    const keys = this.keys;
    for (let i = keys.length - 1; i >= 0; i--) {
      if (keys[i] == key) return this._values![i];
    }
    return null;
  }

  /** A member that is a string, or null. */
  getString(key: string): string | null {
    const v = this.get(key);
    if (v == null || v.kind != Kind.Str) return null;
    return v.text;
  }

  /** A member that is a boolean; `fallback` when absent or not a boolean. */
  getBool(key: string, fallback: bool): bool {
    const v = this.get(key);
    if (v == null || v.kind != Kind.Bool) return fallback;
    return v.flag;
  }

  /** Sets (or replaces) an object member; ignored when this is not an object. */
  set(key: string, value: JSONValue): void {
    if (this.kind != Kind.Obj) return;
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] == key) {
        this._values![i] = value;
        return;
      }
    }
    keys.push(key);
    this._values!.push(value);
  }

  /** Array item, or null when out of range or when this is not an array. */
  at(index: i32): JSONValue | null {
    if (this.kind != Kind.Arr) return null;
    const items = this.items;
    if (index < 0 || index >= items.length) return null;
    return items[index];
  }

  push(value: JSONValue): void {
    if (this.kind == Kind.Arr) this.items.push(value);
  }

  /** Compact JSON as UTF-8 in a fresh unmanaged buffer (see `Utf8Buffer`). */
  serialize(): Utf8Buffer {
    const out = new Utf8Buffer(this.raw != null ? this.rawEnd - this.rawStart + 64 : 256);
    write(this, out);
    return out;
  }

  /** Compact JSON text. */
  stringify(): string {
    const out = this.serialize();
    const s = String.UTF8.decodeUnsafe(out.ptr, out.len);
    out.release();
    return s;
  }

  /** Parses one level of a lazy container: members become values, nested containers lazy. */
  private resolve(): void {
    const buf = this.raw;
    if (buf == null) return;
    this.raw = null;
    const base = changetype<usize>(buf);
    const p = new Parser(base + this.rawStart, base + this.rawEnd, buf);
    if (this.kind == Kind.Obj) {
      this._keys = new Array<string>();
      this._values = new Array<JSONValue>();
      p.members(this);
    } else {
      this._items = new Array<JSONValue>();
      p.items(this);
    }
  }

  /** Bytes of a lazy container, or 0 when it has been parsed (or is not a container). */
  rawBytes(): usize {
    return this.raw != null ? this.rawEnd - this.rawStart : 0;
  }

  /** Copies a lazy container's text into `out`; false when the value is not lazy. */
  copyRaw(out: Utf8Buffer): bool {
    const buf = this.raw;
    if (buf == null) return false;
    const n = this.rawEnd - this.rawStart;
    out.reserve(n);
    memory.copy(out.ptr + out.len, changetype<usize>(buf) + this.rawStart, n);
    out.len += n;
    return true;
  }
}

/**
 * A growable UTF-8 byte buffer in unmanaged memory (`heap.alloc`): the garbage collector never
 * moves or frees it, so its address can be handed to the host, which frees it with `free`.
 */
export class Utf8Buffer {
  ptr: usize;
  len: usize = 0;
  cap: usize;

  constructor(capacity: usize) {
    this.cap = capacity;
    this.ptr = heap.alloc(capacity);
  }

  reserve(extra: usize): void {
    const need = this.len + extra;
    if (need <= this.cap) return;
    let cap = this.cap << 1;
    if (cap < need) cap = need;
    this.ptr = heap.realloc(this.ptr, cap);
    this.cap = cap;
  }

  byte(b: u8): void {
    this.reserve(1);
    store<u8>(this.ptr + this.len, b);
    this.len++;
  }

  /** Appends a string's UTF-8 encoding, unescaped. */
  raw(s: string): void {
    this.rawRange(s, 0, s.length);
  }

  rawRange(s: string, from: i32, to: i32): void {
    if (to <= from) return;
    // At most 3 UTF-8 bytes per UTF-16 unit (a surrogate pair is 4 bytes for 2 units).
    this.reserve(<usize>(to - from) * 3);
    const src = changetype<usize>(s) + (<usize>from << 1);
    this.len += String.UTF8.encodeUnsafe(src, to - from, this.ptr + this.len);
  }

  release(): void {
    heap.free(this.ptr);
    this.ptr = 0;
    this.len = 0;
    this.cap = 0;
  }
}

function write(v: JSONValue, out: Utf8Buffer): void {
  switch (v.kind) {
    case Kind.Null:
      out.raw("null");
      break;
    case Kind.Bool:
      out.raw(v.flag ? "true" : "false");
      break;
    case Kind.Num:
      out.raw(v.text);
      break;
    case Kind.Str:
      writeString(v.text, out);
      break;
    case Kind.Arr: {
      if (v.copyRaw(out)) break;
      out.byte(0x5b);
      const items = v.items;
      for (let i = 0; i < items.length; i++) {
        if (i > 0) out.byte(0x2c);
        write(items[i], out);
      }
      out.byte(0x5d);
      break;
    }
    case Kind.Obj: {
      if (v.copyRaw(out)) break;
      out.byte(0x7b);
      const keys = v.keys;
      const values = v.values;
      for (let i = 0; i < keys.length; i++) {
        if (i > 0) out.byte(0x2c);
        writeString(keys[i], out);
        out.byte(0x3a);
        write(values[i], out);
      }
      out.byte(0x7d);
      break;
    }
  }
}

const HEX = "0123456789abcdef";

/** Quotes a string, escaping what JSON requires (quote, backslash, control characters). */
export function writeString(s: string, out: Utf8Buffer): void {
  out.byte(0x22);
  let start = 0;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = <u32>load<u16>(changetype<usize>(s) + (<usize>i << 1));
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out.rawRange(s, start, i);
    start = i + 1;
    out.byte(0x5c);
    if (c == 0x22) out.byte(0x22);
    else if (c == 0x5c) out.byte(0x5c);
    else if (c == 0x0a) out.byte(0x6e);
    else if (c == 0x0d) out.byte(0x72);
    else if (c == 0x09) out.byte(0x74);
    else if (c == 0x08) out.byte(0x62);
    else if (c == 0x0c) out.byte(0x66);
    else out.raw("u00" + HEX.charAt(c >> 4) + HEX.charAt(c & 15));
  }
  out.rawRange(s, start, n);
  out.byte(0x22);
}

/** Why the last `parse` returned null. */
export let parseError: string = "";

/** Parses JSON text; null (with `parseError` set) when it is not valid JSON. */
export function parse(text: string): JSONValue | null {
  const bytes = String.UTF8.encode(text);
  return parseUtf8(changetype<usize>(bytes), <usize>bytes.byteLength);
}

/**
 * Parses UTF-8 JSON at `ptr` (e.g. the host's input buffer); null (with `parseError` set) when
 * it is not valid JSON. The whole text is validated now, but containers are only taken apart
 * when looked into, so a plugin pays for the parts it reads or changes; the rest is copied
 * back verbatim on output. The result keeps its own copy of the bytes: the buffer at `ptr`
 * may be freed afterwards.
 */
export function parseUtf8(ptr: usize, len: usize): JSONValue | null {
  const buf = new ArrayBuffer(<i32>len);
  const base = changetype<usize>(buf);
  memory.copy(base, ptr, len);
  const p = new Parser(base, base + len, buf);
  p.skipSpace();
  const start = p.pos;
  if (!p.skip(0)) {
    parseError = p.error + " at offset " + (p.pos - base).toString();
    return null;
  }
  const end = p.pos;
  p.skipSpace();
  if (p.pos != p.end) {
    parseError = "unexpected text after the value at offset " + (p.pos - base).toString();
    return null;
  }
  p.pos = start;
  return p.valueAt(end);
}

// Deep enough for any real payload, shallow enough that hostile input cannot exhaust the
// guest stack (which would trap instead of reporting an error).
const MAX_DEPTH = 128;

/** The value of four hex digits at `at`, or -1. */
function hex4(at: usize): i32 {
  let code = 0;
  for (let i: usize = 0; i < 4; i++) {
    const c = <i32>load<u8>(at + i);
    let d = -1;
    if (c >= 0x30 && c <= 0x39) d = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
    else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
    if (d < 0) return -1;
    code = (code << 4) | d;
  }
  return code;
}

/**
 * Two jobs over bytes [pos, end) of `buf`: `skip` validates one value without building
 * anything (done once per input), and `members` / `items` / `valueAt` build one level of
 * already validated text.
 */
class Parser {
  error: string = "";

  constructor(
    public pos: usize,
    public end: usize,
    public buf: ArrayBuffer,
  ) {}

  fail(message: string): bool {
    if (this.error.length == 0) this.error = message;
    return false;
  }

  peek(): i32 {
    return this.pos < this.end ? <i32>load<u8>(this.pos) : -1;
  }

  skipSpace(): void {
    let pos = this.pos;
    const end = this.end;
    while (pos < end) {
      const c = load<u8>(pos);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      pos++;
    }
    this.pos = pos;
  }

  // ---- validation ----

  skip(depth: i32): bool {
    if (depth > MAX_DEPTH) return this.fail("nesting too deep");
    const c = this.peek();
    if (c < 0) return this.fail("unexpected end of input");
    if (c == 0x7b) return this.skipObject(depth);
    if (c == 0x5b) return this.skipArray(depth);
    if (c == 0x22) return this.skipString();
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.skipNumber();
    if (this.literal("true") || this.literal("false") || this.literal("null")) return true;
    return this.fail("unexpected character");
  }

  literal(word: string): bool {
    const n = <usize>word.length;
    if (this.pos + n > this.end) return false;
    for (let i: usize = 0; i < n; i++) {
      if (<i32>load<u8>(this.pos + i) != word.charCodeAt(<i32>i)) return false;
    }
    this.pos += n;
    return true;
  }

  skipNumber(): bool {
    if (load<u8>(this.pos) == 0x2d) this.pos++;
    let digits = 0;
    while (this.pos < this.end) {
      const c = load<u8>(this.pos);
      if (c >= 0x30 && c <= 0x39) {
        digits++;
        this.pos++;
      } else if (c == 0x2e || c == 0x65 || c == 0x45 || c == 0x2b || c == 0x2d) {
        this.pos++;
      } else break;
    }
    return digits > 0 ? true : this.fail("invalid number");
  }

  skipString(): bool {
    // Locals rather than fields in the loop: string bodies are most of a payload's bytes.
    let pos = this.pos + 1; // after the opening quote
    const end = this.end;
    while (pos < end) {
      const c = load<u8>(pos);
      if (c == 0x22) {
        this.pos = pos + 1;
        return true;
      }
      if (c == 0x5c) {
        if (pos + 1 >= end) break;
        const e = load<u8>(pos + 1);
        if (e == 0x75) {
          if (pos + 6 > end || hex4(pos + 2) < 0) {
            this.pos = pos;
            return this.fail("invalid \\u escape");
          }
          pos += 6;
          continue;
        }
        if (e != 0x22 && e != 0x5c && e != 0x2f && e != 0x6e && e != 0x72 && e != 0x74 && e != 0x62 && e != 0x66) {
          this.pos = pos;
          return this.fail("invalid escape");
        }
        pos += 2;
        continue;
      }
      if (c < 0x20) {
        this.pos = pos;
        return this.fail("control character in string");
      }
      pos++;
    }
    this.pos = pos;
    return this.fail("unterminated string");
  }

  skipArray(depth: i32): bool {
    this.pos++; // [
    this.skipSpace();
    if (this.peek() == 0x5d) {
      this.pos++;
      return true;
    }
    while (true) {
      this.skipSpace();
      if (!this.skip(depth + 1)) return false;
      this.skipSpace();
      const c = this.peek();
      if (c < 0) return this.fail("unterminated array");
      this.pos++;
      if (c == 0x5d) return true;
      if (c != 0x2c) return this.fail("expected ',' or ']'");
    }
    return false;
  }

  skipObject(depth: i32): bool {
    this.pos++; // {
    this.skipSpace();
    if (this.peek() == 0x7d) {
      this.pos++;
      return true;
    }
    while (true) {
      this.skipSpace();
      if (this.peek() != 0x22) return this.fail("expected a member name");
      if (!this.skipString()) return false;
      this.skipSpace();
      if (this.peek() != 0x3a) return this.fail("expected ':'");
      this.pos++;
      this.skipSpace();
      if (!this.skip(depth + 1)) return false;
      this.skipSpace();
      const c = this.peek();
      if (c < 0) return this.fail("unterminated object");
      this.pos++;
      if (c == 0x7d) return true;
      if (c != 0x2c) return this.fail("expected ',' or '}'");
    }
    return false;
  }

  // ---- building (validated text only) ----

  /** The value at `pos`, which ends at `end`; containers stay lazy. Moves `pos` to `end`. */
  valueAt(end: usize): JSONValue {
    const start = this.pos;
    const c = load<u8>(start);
    this.pos = end;
    const base = changetype<usize>(this.buf);
    if (c == 0x7b) return JSONValue.lazy(Kind.Obj, this.buf, start - base, end - base);
    if (c == 0x5b) return JSONValue.lazy(Kind.Arr, this.buf, start - base, end - base);
    if (c == 0x22) return JSONValue.str(decodeString(start + 1, end - 1));
    if (c == 0x74) return JSONValue.bool(true);
    if (c == 0x66) return JSONValue.bool(false);
    if (c == 0x6e) return JSONValue.null();
    return JSONValue.num(String.UTF8.decodeUnsafe(start, end - start));
  }

  /** The next value: its end is found by skipping it (the text is known to be valid). */
  next(): JSONValue {
    this.skipSpace();
    const start = this.pos;
    const end = skipValid(start, this.end);
    return this.valueAt(end);
  }

  members(into: JSONValue): void {
    const keys = into.keys;
    const values = into.values;
    this.pos++; // {
    this.skipSpace();
    while (this.peek() == 0x22) {
      const keyStart = this.pos;
      this.skipString();
      keys.push(decodeString(keyStart + 1, this.pos - 1));
      this.skipSpace();
      this.pos++; // :
      values.push(this.next());
      this.skipSpace();
      if (this.peek() == 0x2c) this.pos++;
      this.skipSpace();
    }
  }

  items(into: JSONValue): void {
    const items = into.items;
    this.pos++; // [
    this.skipSpace();
    while (this.peek() != 0x5d && this.pos < this.end) {
      items.push(this.next());
      this.skipSpace();
      if (this.peek() == 0x2c) this.pos++;
      this.skipSpace();
    }
  }
}

/**
 * The end of the validated value at `pos`: brackets are counted and strings stepped over,
 * nothing is checked again.
 */
function skipValid(pos: usize, end: usize): usize {
  let depth = 0;
  while (pos < end) {
    const c = load<u8>(pos);
    if (c == 0x22) {
      pos++;
      while (pos < end) {
        const d = load<u8>(pos);
        if (d == 0x22) break;
        pos += d == 0x5c ? 2 : 1;
      }
      pos++;
      if (depth == 0) return pos;
      continue;
    }
    if (c == 0x7b || c == 0x5b) {
      depth++;
    } else if (c == 0x7d || c == 0x5d) {
      // At depth 0 this closes the enclosing container, ending a number or literal.
      if (depth == 0) return pos;
      depth--;
      if (depth == 0) return pos + 1;
    } else if (depth == 0 && (c == 0x2c || c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09)) {
      // The end of a number or literal at the top level of this scan.
      return pos;
    }
    pos++;
  }
  return pos;
}

/** The string whose validated, still escaped UTF-8 text is [start, end) (quotes excluded). */
function decodeString(start: usize, end: usize): string {
  let escaped = false;
  for (let p = start; p < end; p++) {
    if (load<u8>(p) == 0x5c) {
      escaped = true;
      break;
    }
  }
  if (!escaped) return String.UTF8.decodeUnsafe(start, end - start);
  const parts = new Array<string>();
  let run = start;
  let p = start;
  while (p < end) {
    if (load<u8>(p) != 0x5c) {
      p++;
      continue;
    }
    if (p > run) parts.push(String.UTF8.decodeUnsafe(run, p - run));
    const e = load<u8>(p + 1);
    p += 2;
    if (e == 0x6e) parts.push("\n");
    else if (e == 0x72) parts.push("\r");
    else if (e == 0x74) parts.push("\t");
    else if (e == 0x62) parts.push("\b");
    else if (e == 0x66) parts.push("\f");
    else if (e == 0x75) {
      // Surrogate halves are kept as UTF-16 code units; a pair becomes one character.
      parts.push(String.fromCharCode(hex4(p)));
      p += 4;
    } else parts.push(String.fromCharCode(e)); // \" \\ \/
    run = p;
  }
  if (end > run) parts.push(String.UTF8.decodeUnsafe(run, end - run));
  return parts.join("");
}
