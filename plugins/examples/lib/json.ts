// A small JSON value type for the example plugins: parse, inspect, modify, serialize.
// It works on UTF-8 bytes in linear memory (the form the host passes input in and expects
// output in), so there is no UTF-16 round trip of the whole payload: strings are decoded one
// value at a time and output is encoded straight into the buffer handed back to the host.
// Values a plugin does not change come back byte for byte as they arrived (numbers keep their
// text, strings their escapes, untouched containers their whole text). Objects keep member order.
//
// Where a hook's time goes, for plugin authors who extend this: the input is read once in full,
// to validate it (the loops under "validation", eight bytes at a step inside strings), and each
// allocation is paid twice, by `new` and by the collector that frees it after the hook. So
// values are taken apart only when looked into, strings and member names are decoded only when
// read as strings, and hook outputs are written with `ObjectWriter` rather than built as values.

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
  // Number text for Num, the string for Str; decoded from the input on first use.
  private _text: string | null = null;
  // Members of Arr / Obj; for parsed containers filled in by `resolve` on first use. The
  // names of a parsed object's members stay in the input (see `nameStart`) until something
  // needs them as strings; `_keys` is null until then.
  private _items: Array<JSONValue> | null = null;
  private _keys: Array<string> | null = null;
  private _values: Array<JSONValue> | null = null;
  // For a parsed value: the input it came from (see `parseUtf8`) and its JSON text there,
  // bytes [start, end). While `verbatim`, that text is what serializing the value produces,
  // and it is copied. Containers also have their number in the input's container table.
  private src: ArrayBuffer | null = null;
  private start: u32 = 0;
  private end: u32 = 0;
  private verbatim: bool = false;
  private container: u32 = 0;
  // For a member of a parsed object: its name's text in `src`, quotes excluded.
  private nameStart: u32 = 0;
  private nameEnd: u32 = 0;

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
    v._text = text;
    return v;
  }

  static str(s: string): JSONValue {
    const v = new JSONValue();
    v.kind = Kind.Str;
    v._text = s;
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

  /**
   * The untouched value whose validated text starts at `at` in the parsed input `src`;
   * `limit` (the end of the text, or the enclosing container's closing bracket) bounds the
   * search for the end of a string or number, and `container` is the value's number if it is
   * an array or object. For `parseUtf8` and `resolve`, not for plugin code.
   */
  static parsed(src: ArrayBuffer, at: usize, limit: usize, container: u32): JSONValue {
    const base = changetype<usize>(src);
    const v = new JSONValue();
    v.src = src;
    v.verbatim = true;
    const c = load<u8>(at);
    let end: usize;
    if (c == 0x7b || c == 0x5b) {
      v.kind = c == 0x7b ? Kind.Obj : Kind.Arr;
      v.container = container;
      end = base + containerEnd(src, container);
    } else if (c == 0x22) {
      v.kind = Kind.Str;
      end = stringEnd(at + 1, limit) + 1;
    } else if (c == 0x74 || c == 0x66) {
      // Booleans and null are written from `kind` and `flag` (public fields a plugin may
      // change), not copied.
      v.kind = Kind.Bool;
      v.flag = c == 0x74;
      v.verbatim = false;
      end = at + (v.flag ? 4 : 5);
    } else if (c == 0x6e) {
      v.verbatim = false;
      end = at + 4;
    } else {
      v.kind = Kind.Num;
      end = numberEnd(at, limit);
    }
    v.start = <u32>(at - base);
    v.end = <u32>(end - base);
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

  /** Number text for Num, the string for Str, "" for other kinds. */
  get text(): string {
    let text = this._text;
    if (text != null) return text;
    text = "";
    const src = this.src;
    if (src != null) {
      const base = changetype<usize>(src);
      if (this.kind == Kind.Str) {
        text = decodeString(base + this.start + 1, base + this.end - 1);
      } else if (this.kind == Kind.Num) {
        text = String.UTF8.decodeUnsafe(base + this.start, this.end - this.start);
      }
    }
    this._text = text;
    return text;
  }

  /** Replaces a string's (or a number's) text. */
  set text(s: string) {
    this._text = s;
    if (this.kind == Kind.Str || this.kind == Kind.Num) this.verbatim = false;
  }

  /** Array items (takes an untouched array apart). */
  get items(): Array<JSONValue> {
    this.resolve();
    return this._items!;
  }

  /** Object member names, in order (takes an untouched object apart). */
  get keys(): Array<string> {
    return this.ownKeys();
  }

  /** Object member values, parallel to `keys`. */
  get values(): Array<JSONValue> {
    // Whoever gets the array may replace values, and a parsed object's member names are
    // found through its values: decode the names first.
    this.ownKeys();
    return this._values!;
  }

  /** Number of array items or object members. */
  get length(): i32 {
    if (this.kind != Kind.Arr && this.kind != Kind.Obj) return 0;
    this.resolve();
    return this.kind == Kind.Arr ? this._items!.length : this._values!.length;
  }

  /** Object member, or null when absent or when this is not an object. */
  get(key: string): JSONValue | null {
    const i = this.indexOf(key);
    return i < 0 ? null : this._values![i];
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
    const i = this.indexOf(key);
    // Both cases change the members, so the names are decoded first (see `values`).
    const keys = this.ownKeys();
    if (i >= 0) {
      this._values![i] = value;
    } else {
      keys.push(key);
      this._values!.push(value);
    }
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
    const out = new Utf8Buffer(this.sizeHint() + 16);
    this.writeTo(out);
    return out;
  }

  /** Compact JSON text. */
  stringify(): string {
    const out = this.serialize();
    const s = String.UTF8.decodeUnsafe(out.ptr, out.len);
    out.release();
    return s;
  }

  /** Appends this value's compact JSON to `out`. */
  writeTo(out: Utf8Buffer): void {
    if (this.copyRaw(out)) return;
    switch (this.kind) {
      case Kind.Null:
        out.raw("null");
        break;
      case Kind.Bool:
        out.raw(this.flag ? "true" : "false");
        break;
      case Kind.Num:
        out.raw(this.text);
        break;
      case Kind.Str:
        writeString(this.text, out);
        break;
      case Kind.Arr: {
        out.byte(0x5b);
        const items = this._items!;
        for (let i = 0; i < items.length; i++) {
          if (i > 0) out.byte(0x2c);
          items[i].writeTo(out);
        }
        out.byte(0x5d);
        break;
      }
      case Kind.Obj: {
        out.byte(0x7b);
        const keys = this._keys;
        const values = this._values!;
        for (let i = 0; i < values.length; i++) {
          if (i > 0) out.byte(0x2c);
          const value = values[i];
          if (keys != null) {
            writeString(keys[i], out);
          } else {
            // The name as it came, quotes included.
            const from = changetype<usize>(value.src) + value.nameStart - 1;
            out.bytes(from, value.nameEnd - value.nameStart + 2);
          }
          out.byte(0x3a);
          value.writeTo(out);
        }
        out.byte(0x7d);
        break;
      }
    }
  }

  /**
   * About how many bytes serializing this value takes, to size an output buffer once instead
   * of growing it: exact for untouched input, which is most of a typical hook output.
   */
  sizeHint(): usize {
    if (this.verbatim) return this.end - this.start;
    switch (this.kind) {
      case Kind.Num:
      case Kind.Str:
        return <usize>this.text.length + 2;
      case Kind.Arr: {
        const items = this._items!;
        let n: usize = 2;
        for (let i = 0; i < items.length; i++) n += items[i].sizeHint() + 1;
        return n;
      }
      case Kind.Obj: {
        const keys = this._keys;
        const values = this._values!;
        let n: usize = 2;
        for (let i = 0; i < values.length; i++) {
          const name = keys != null ? <usize>keys[i].length : values[i].nameEnd - values[i].nameStart;
          n += name + 4 + values[i].sizeHint();
        }
        return n;
      }
    }
    return 5;
  }

  /** Bytes of untouched parsed text this value serializes as, or 0 when it has changed. */
  rawBytes(): usize {
    return this.verbatim ? this.end - this.start : 0;
  }

  /** Copies an untouched value's text into `out`; false when there is none to copy. */
  copyRaw(out: Utf8Buffer): bool {
    if (!this.verbatim) return false;
    out.bytes(changetype<usize>(this.src) + this.start, this.end - this.start);
    return true;
  }

  /** Takes an untouched container apart, one level: its members become untouched values. */
  private resolve(): void {
    if (!this.verbatim || (this.kind != Kind.Obj && this.kind != Kind.Arr)) return;
    // From here on the members serialize this value, whatever a plugin does to them.
    this.verbatim = false;
    const src = this.src!;
    const base = changetype<usize>(src);
    const isObj = this.kind == Kind.Obj;
    const values = new Array<JSONValue>();
    // The text is valid, so only the positions of members need finding. Containers nested in
    // this one are numbered after it, in order: the first member that is one has our number
    // + 1, and the table tells where each ends and which number the next one has.
    let next = this.container + 1;
    const limit = base + this.end - 1; // the closing bracket
    let pos = skipSpace(base + this.start + 1, limit);
    while (pos < limit) {
      let nameStart: usize = 0;
      let nameEnd: usize = 0;
      if (isObj) {
        nameStart = pos + 1;
        nameEnd = stringEnd(nameStart, limit);
        pos = skipSpace(skipSpace(nameEnd + 1, limit) + 1, limit); // past the ':'
      }
      const v = JSONValue.parsed(src, pos, limit, next);
      if (v.kind == Kind.Obj || v.kind == Kind.Arr) next = containerAfter(src, next);
      if (isObj) {
        v.nameStart = <u32>(nameStart - base);
        v.nameEnd = <u32>(nameEnd - base);
      }
      values.push(v);
      pos = skipSpace(base + v.end, limit);
      if (pos < limit && load<u8>(pos) == 0x2c) pos = skipSpace(pos + 1, limit);
    }
    if (isObj) this._values = values;
    else this._items = values;
  }

  /** The index of member `key` (the last one if repeated), or -1. */
  private indexOf(key: string): i32 {
    if (this.kind != Kind.Obj) return -1;
    this.resolve();
    const keys = this._keys;
    const values = this._values!;
    for (let i = values.length - 1; i >= 0; i--) {
      if (keys != null ? keys[i] == key : values[i].nameIs(key)) return i;
    }
    return -1;
  }

  /** An object's member names as strings, decoding those still in the input. */
  private ownKeys(): Array<string> {
    this.resolve();
    let keys = this._keys;
    if (keys == null) {
      const values = this._values!;
      keys = new Array<string>(values.length);
      for (let i = 0; i < values.length; i++) keys[i] = values[i].name();
      this._keys = keys;
    }
    return keys;
  }

  /** This member's name, decoded from the input. */
  private name(): string {
    const base = changetype<usize>(this.src);
    return decodeString(base + this.nameStart, base + this.nameEnd);
  }

  /** Whether this member's name is `key`; plain ASCII names are compared without decoding. */
  private nameIs(key: string): bool {
    const base = changetype<usize>(this.src);
    const end = base + this.nameEnd;
    let p = base + this.nameStart;
    const n = key.length;
    // Each UTF-16 unit of a name takes at least one byte of its text.
    if (end - p < <usize>n) return false;
    for (let i = 0; i < n; i++) {
      const b = <u32>load<u8>(p);
      const c = <u32>load<u16>(changetype<usize>(key) + (<usize>i << 1));
      // An escape or a non-ASCII character on either side: compare the decoded name.
      if (b >= 0x80 || b == 0x5c || c >= 0x80) return this.name() == key;
      if (b != c) return false;
      p++;
    }
    return p == end;
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

  // @ts-ignore: decorator
  @inline
  reserve(extra: usize): void {
    if (this.len + extra > this.cap) this.grow(this.len + extra);
  }

  private grow(need: usize): void {
    let cap = this.cap << 1;
    if (cap < need) cap = need;
    this.ptr = heap.realloc(this.ptr, cap);
    this.cap = cap;
  }

  // @ts-ignore: decorator
  @inline
  byte(b: u8): void {
    this.reserve(1);
    store<u8>(this.ptr + this.len, b);
    this.len++;
  }

  /** Appends `n` bytes from memory at `from`. */
  bytes(from: usize, n: usize): void {
    this.reserve(n);
    memory.copy(this.ptr + this.len, from, n);
    this.len += n;
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

/**
 * Writes a JSON object member by member straight into its buffer. Hook outputs are a few fixed
 * members around values from the input; writing them this way builds no values that would
 * only be garbage once serialized.
 */
export class ObjectWriter extends Utf8Buffer {
  private members: i32 = 0;

  /** `capacity`: the expected size in bytes (the buffer grows if it is too small). */
  constructor(capacity: usize) {
    super(capacity + 2);
    this.byte(0x7b);
  }

  private key(name: string): void {
    if (this.members++ > 0) this.byte(0x2c);
    writeString(name, this);
    this.byte(0x3a);
  }

  /** A member holding `value`; null writes JSON `null`. */
  value(name: string, value: JSONValue | null): void {
    this.key(name);
    if (value == null) this.raw("null");
    else value.writeTo(this);
  }

  str(name: string, s: string): void {
    this.key(name);
    writeString(s, this);
  }

  bool(name: string, b: bool): void {
    this.key(name);
    this.raw(b ? "true" : "false");
  }

  /** Closes the object; the buffer now holds its JSON text. */
  finish(): Utf8Buffer {
    this.byte(0x7d);
    return this;
  }
}

const HEX = "0123456789abcdef";

/** Quotes a string, escaping what JSON requires (quote, backslash, control characters). */
export function writeString(s: string, out: Utf8Buffer): void {
  const n = s.length;
  const units = changetype<usize>(s);
  // Plain ASCII, the common case, is stored through a local cursor into room reserved for one
  // byte per remaining unit; escapes and other characters go through `out`, which makes its
  // own room, and then room is reserved again.
  out.reserve(<usize>n + 2);
  let at = out.ptr + out.len;
  store<u8>(at++, 0x22);
  for (let i = 0; i < n; i++) {
    const c = <u32>load<u16>(units + (<usize>i << 1));
    if (c >= 0x20 && c < 0x80 && c != 0x22 && c != 0x5c) {
      store<u8>(at++, <u8>c);
      continue;
    }
    out.len = at - out.ptr;
    if (c >= 0x80) {
      // A run of non-ASCII characters, encoded in one go (surrogate pairs stay together).
      let j = i + 1;
      while (j < n && load<u16>(units + (<usize>j << 1)) >= 0x80) j++;
      out.rawRange(s, i, j);
      i = j - 1;
    } else {
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
    out.reserve(<usize>(n - i));
    at = out.ptr + out.len;
  }
  store<u8>(at++, 0x22);
  out.len = at - out.ptr;
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
 *
 * That copy is one buffer: first a table with two u32 entries per container (array or object)
 * in the order they open, the offset just past its closing bracket and the number of the first
 * container after it (its own + 1 + the number of containers nested in it), then the text.
 * Offsets count from the start of the buffer. Validation fills the table in, so taking a
 * container apart later finds where each nested container ends by looking it up instead of
 * scanning its text again.
 */
export function parseUtf8(ptr: usize, len: usize): JSONValue | null {
  textStart = ptr;
  textEnd = ptr + len;
  tableLength = 0;
  let result: JSONValue | null = null;
  const start = skipSpace(ptr, textEnd);
  const end = skipValue(start, 0);
  const after: usize = end == 0 ? 0 : skipSpace(end, textEnd);
  if (end == 0) {
    parseError = failure + " at offset " + (failureAt - ptr).toString();
  } else if (after != textEnd) {
    parseError = "unexpected text after the value at offset " + (after - ptr).toString();
  } else {
    result = copyParsed(ptr, len, start, end);
  }
  // An input with a great many containers should not keep its large table alive.
  if (table.length > 4096) table = new StaticArray<u32>(64);
  return result;
}

/** The parsed input for validated text (see `parseUtf8`) and its value, from `start` to `end`. */
function copyParsed(ptr: usize, len: usize, start: usize, end: usize): JSONValue {
  const tableBytes = <usize>tableLength << 2;
  const buf = new ArrayBuffer(<i32>(tableBytes + len));
  const base = changetype<usize>(buf);
  // Validation recorded offsets into the text; in the buffer, the text comes after the table.
  const entries = changetype<usize>(table);
  for (let i: usize = 0; i < tableBytes; i += 8) {
    store<u32>(base + i, load<u32>(entries + i) + <u32>tableBytes);
    store<u32>(base + i + 4, load<u32>(entries + i + 4));
  }
  const text = base + tableBytes;
  memory.copy(text, ptr, len);
  return JSONValue.parsed(buf, text + (start - ptr), text + (end - ptr), 0);
}

/** Where container `n` of a parsed input ends (see `parseUtf8`). */
// @ts-ignore: decorator
@inline
function containerEnd(src: ArrayBuffer, n: u32): u32 {
  return load<u32>(changetype<usize>(src) + (<usize>n << 3));
}

/** The number of the first container after container `n` and those nested in it. */
// @ts-ignore: decorator
@inline
function containerAfter(src: ArrayBuffer, n: u32): u32 {
  return load<u32>(changetype<usize>(src) + (<usize>n << 3) + 4);
}

// ---- validation ----
// Checks that the text is one JSON value, without building anything, and numbers its
// containers on the way (see `parseUtf8`). Done once per input. A guest runs one call at a time,
// so the state of the validation in progress is kept in module globals, and the functions pass
// the position along as a value (0 once the text is known to be invalid): the loops keep it in
// a register instead of loading and storing an object field for every byte.

// Deep enough for any real payload, shallow enough that hostile input cannot exhaust the
// guest stack (which would trap instead of reporting an error).
const MAX_DEPTH = 128;

/** The text being validated; the container table holds offsets from its start. */
let textStart: usize = 0;
let textEnd: usize = 0;
/** Why, and where, the text is invalid. */
let failure: string = "";
let failureAt: usize = 0;
/** The container table of the text being validated (`tableLength` entries in use); it is
 * copied into the parsed input's buffer, so this one serves every input. */
let table = new StaticArray<u32>(64);
let tableLength: i32 = 0;

/** Records why the text is invalid; returns 0, the position that means "invalid". */
function fail(message: string, at: usize): usize {
  failure = message;
  failureAt = at;
  return 0;
}

/** The end of the value at `pos`, or 0. */
function skipValue(pos: usize, depth: i32): usize {
  if (depth > MAX_DEPTH) return fail("nesting too deep", pos);
  if (pos >= textEnd) return fail("unexpected end of input", pos);
  const c = load<u8>(pos);
  if (c == 0x22) return skipString(pos);
  if (c == 0x7b) return skipObject(pos, depth);
  if (c == 0x5b) return skipArray(pos, depth);
  if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return skipNumber(pos);
  if (isWordAt(pos, "true")) return pos + 4;
  if (isWordAt(pos, "false")) return pos + 5;
  if (isWordAt(pos, "null")) return pos + 4;
  return fail("unexpected character", pos);
}

function isWordAt(pos: usize, word: string): bool {
  const n = <usize>word.length;
  if (pos + n > textEnd) return false;
  for (let i: usize = 0; i < n; i++) {
    if (<i32>load<u8>(pos + i) != word.charCodeAt(<i32>i)) return false;
  }
  return true;
}

function skipNumber(pos: usize): usize {
  if (load<u8>(pos) == 0x2d) pos++;
  let digits = 0;
  while (pos < textEnd) {
    const c = load<u8>(pos);
    if (c >= 0x30 && c <= 0x39) {
      digits++;
      pos++;
    } else if (c == 0x2e || c == 0x65 || c == 0x45 || c == 0x2b || c == 0x2d) {
      pos++;
    } else break;
  }
  return digits > 0 ? pos : fail("invalid number", pos);
}

/** The end of the string whose opening quote is at `pos`, or 0. */
function skipString(pos: usize): usize {
  const end = textEnd;
  pos++;
  while (true) {
    pos = plainEnd(pos, end);
    if (pos >= end) break;
    const c = load<u8>(pos);
    if (c == 0x22) return pos + 1;
    if (c != 0x5c) return fail("control character in string", pos);
    if (pos + 1 >= end) break;
    const e = load<u8>(pos + 1);
    if (e == 0x75) {
      if (pos + 6 > end || hex4(pos + 2) < 0) return fail("invalid \\u escape", pos);
      pos += 6;
      continue;
    }
    if (e != 0x22 && e != 0x5c && e != 0x2f && e != 0x6e && e != 0x72 && e != 0x74 && e != 0x62 && e != 0x66) {
      return fail("invalid escape", pos);
    }
    pos += 2;
  }
  return fail("unterminated string", pos);
}

function skipArray(pos: usize, depth: i32): usize {
  const slot = openContainer();
  pos = skipSpace(pos + 1, textEnd);
  if (pos < textEnd && load<u8>(pos) == 0x5d) return closeContainer(slot, pos + 1);
  while (true) {
    pos = skipValue(skipSpace(pos, textEnd), depth + 1);
    if (pos == 0) return 0;
    pos = skipSpace(pos, textEnd);
    if (pos >= textEnd) return fail("unterminated array", pos);
    const c = load<u8>(pos++);
    if (c == 0x5d) return closeContainer(slot, pos);
    if (c != 0x2c) return fail("expected ',' or ']'", pos);
  }
  return 0;
}

function skipObject(pos: usize, depth: i32): usize {
  const slot = openContainer();
  pos = skipSpace(pos + 1, textEnd);
  if (pos < textEnd && load<u8>(pos) == 0x7d) return closeContainer(slot, pos + 1);
  while (true) {
    pos = skipSpace(pos, textEnd);
    if (pos >= textEnd || load<u8>(pos) != 0x22) return fail("expected a member name", pos);
    pos = skipString(pos);
    if (pos == 0) return 0;
    pos = skipSpace(pos, textEnd);
    if (pos >= textEnd || load<u8>(pos) != 0x3a) return fail("expected ':'", pos);
    pos = skipValue(skipSpace(pos + 1, textEnd), depth + 1);
    if (pos == 0) return 0;
    pos = skipSpace(pos, textEnd);
    if (pos >= textEnd) return fail("unterminated object", pos);
    const c = load<u8>(pos++);
    if (c == 0x7d) return closeContainer(slot, pos);
    if (c != 0x2c) return fail("expected ',' or '}'", pos);
  }
  return 0;
}

/** Numbers the container that opens here; `closeContainer` records where it ends. */
function openContainer(): i32 {
  const slot = tableLength;
  if (slot + 2 > table.length) {
    const bigger = new StaticArray<u32>(table.length << 1);
    memory.copy(changetype<usize>(bigger), changetype<usize>(table), <usize>slot << 2);
    table = bigger;
  }
  tableLength = slot + 2;
  return slot;
}

function closeContainer(slot: i32, end: usize): usize {
  table[slot] = <u32>(end - textStart);
  table[slot + 1] = <u32>(tableLength >> 1);
  return end;
}

// ---- scanning ----

/** The first position from `pos` that is not JSON white space. */
// @ts-ignore: decorator
@inline
function skipSpace(pos: usize, end: usize): usize {
  // One test on the usual path: compact JSON, what hosts send, has no white space, and
  // every white space byte is <= 0x20.
  return pos < end && load<u8>(pos) <= 0x20 ? skipSpaceRun(pos, end) : pos;
}

function skipSpaceRun(pos: usize, end: usize): usize {
  while (pos < end) {
    const c = load<u8>(pos);
    if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
    pos++;
  }
  return pos;
}

// Inside strings, which are most of a payload's bytes, eight bytes are tested at once. For a
// u64 x, `(x - n * 0x0101..01) & ~x & 0x8080..80` has the top bit of a byte set where that byte
// of x is less than n (n <= 0x80; n = 1 finds zero bytes, and x ^ (c * 0x0101..01) has a zero
// byte where x has a c). See "Determine if a word has a byte less than n" in Sean Anderson's
// Bit Twiddling Hacks.
const ONES: u64 = 0x0101010101010101;
const HIGH_BITS: u64 = 0x8080808080808080;

/**
 * Bit 8k + 7 is set when byte k of `w` (k = 0 is the lowest, the first in memory) is a quote, a
 * backslash or a control character. Bits above the first such byte may be set falsely (the
 * subtractions borrow), never below it: the lowest set bit marks the first one exactly.
 */
// @ts-ignore: decorator
@inline
function specialBytes(w: u64): u64 {
  const quote = w ^ (ONES * 0x22);
  const backslash = w ^ (ONES * 0x5c);
  const found = ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash) | ((w - ONES * 0x20) & ~w);
  return found & HIGH_BITS;
}

/**
 * The first position from `pos` holding a quote, a backslash or a control character, or `end`:
 * the end of a run of string text that needs no closer look.
 */
// @ts-ignore: decorator
@inline
function plainEnd(pos: usize, end: usize): usize {
  while (pos + 8 <= end) {
    const found = specialBytes(load<u64>(pos));
    if (found != 0) return pos + <usize>(ctz(found) >> 3);
    pos += 8;
  }
  while (pos < end) {
    const c = load<u8>(pos);
    if (c == 0x22 || c == 0x5c || c < 0x20) break;
    pos++;
  }
  return pos;
}

/** The closing quote of the validated string whose text starts at `pos`. */
function stringEnd(pos: usize, end: usize): usize {
  while (true) {
    pos = plainEnd(pos, end);
    if (pos >= end || load<u8>(pos) == 0x22) return pos;
    pos += 2; // an escape; the rest of a \u escape is hex digits, plain text
  }
  return pos;
}

/** The end of the validated number at `pos`. */
function numberEnd(pos: usize, end: usize): usize {
  while (pos < end) {
    const c = load<u8>(pos);
    if ((c < 0x30 || c > 0x39) && c != 0x2d && c != 0x2b && c != 0x2e && c != 0x65 && c != 0x45) break;
    pos++;
  }
  return pos;
}

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

/** The string whose validated, still escaped UTF-8 text is [start, end) (quotes excluded). */
function decodeString(start: usize, end: usize): string {
  let p = plainEnd(start, end);
  if (p == end) return String.UTF8.decodeUnsafe(start, end - start);
  const parts = new Array<string>();
  let run = start;
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
