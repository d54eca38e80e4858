/**
 * Encoding of log lines as JSON text: the line layout, field values of any type (bigint,
 * bytes, errors, cycles, throwing getters) and the timestamp cache. Encoding never throws.
 *
 * @module
 */

/** A log level, from least to most severe. */
export type Level = "debug" | "info" | "warn" | "error";

/** Rank of each level; a logger writes lines whose rank is at least its level's rank. */
export const LEVEL_RANK: Readonly<Record<Level, number>> = Object.freeze({
  debug: 10,
  info: 20,
  warn: 30,
  error: 40,
});

/** Structured fields of a line: any values; each is encoded by {@linkcode encodeValue}. */
export type Fields = Readonly<Record<string, unknown>>;

/** Byte arrays up to this length are written in full as hex; longer ones are cut to it. */
export const BYTES_HEX_MAX = 32;
/** Nesting depth of objects and arrays written in a field value; deeper ones become a tag. */
export const FIELD_DEPTH_MAX = 4;
/** Items of an array (or keys of an object) written in a field value; the rest are counted. */
export const FIELD_ITEMS_MAX = 64;
/** Keys written by every line, which fields may not reuse. */
export const RESERVED_KEYS: ReadonlySet<string> = new Set(["ts", "level", "msg"]);

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * Encodes `value` as JSON text, or returns `undefined` for a value to leave out (`undefined`).
 *
 * - bigint: a decimal string (`"123"`), so that no precision is lost in JSON readers;
 * - `Uint8Array` and other binary views, `ArrayBuffer`: lowercase hex; beyond
 *   {@linkcode BYTES_HEX_MAX} bytes, the first ones then `…(N bytes)`;
 * - `Error`: `{name, message, stack, code?, cause?}`;
 * - non-finite numbers, symbols, functions: a descriptive string;
 * - `Date`: its ISO string; `Map`: an object; `Set`: an array;
 * - cycles: `"[Circular]"`; deeper than {@linkcode FIELD_DEPTH_MAX}: `"[Object]"`/`"[Array]"`;
 * - a getter or `toJSON` that throws: `"[Unserializable: <message>]"`.
 */
export function encodeValue(value: unknown): string | undefined {
  try {
    return encodeAny(value, 0, []);
  } catch (error) {
    return unserializable(error);
  }
}

/**
 * Encodes `fields` as `,"key":value` pairs to append inside a JSON object. A key that is
 * reserved (`ts`, `level`, `msg`) or in `takenKeys` is written with a `_` suffix, so that a
 * line never holds one key twice.
 */
export function encodeFields(fields: Fields | undefined, takenKeys: ReadonlySet<string>): string {
  if (fields === undefined || fields === null) return "";
  let out = "";
  let keys: string[];
  try {
    keys = Object.keys(fields);
  } catch (error) {
    return `,"fields":${unserializable(error)}`;
  }
  for (const key of keys) {
    let text: string | undefined;
    try {
      text = encodeAny(fields[key], 0, []);
    } catch (error) {
      text = unserializable(error);
    }
    if (text === undefined) continue;
    const name = RESERVED_KEYS.has(key) || takenKeys.has(key) ? key + "_" : key;
    out += keyPrefix(name) + text;
  }
  return out;
}

/** Distinct field keys whose encoded `,"key":` prefix is cached. */
export const KEY_CACHE_MAX = 1024;
const keyCache = new Map<string, string>();

/** Returns `,"key":`, cached: the same few keys recur on every line. */
function keyPrefix(key: string): string {
  let prefix = keyCache.get(key);
  if (prefix === undefined) {
    prefix = "," + JSON.stringify(key) + ":";
    if (keyCache.size < KEY_CACHE_MAX) keyCache.set(key, prefix);
  }
  return prefix;
}

function unserializable(error: unknown): string {
  let message: string;
  try {
    message = error instanceof Error ? error.message : String(error);
  } catch {
    message = "unknown error";
  }
  return JSON.stringify(`[Unserializable: ${message}]`);
}

function encodeAny(value: unknown, depth: number, ancestors: object[]): string | undefined {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "number":
      return Number.isFinite(value) ? String(value) : JSON.stringify(String(value));
    case "boolean":
      return value ? "true" : "false";
    case "bigint":
      return JSON.stringify(value.toString());
    case "undefined":
      return undefined;
    case "symbol":
      return JSON.stringify(value.toString());
    case "function":
      return JSON.stringify(`[function ${value.name || "anonymous"}]`);
    case "object":
      return value === null ? "null" : encodeObject(value, depth, ancestors);
  }
}

function encodeObject(value: object, depth: number, ancestors: object[]): string {
  if (ArrayBuffer.isView(value)) {
    return encodeBytes(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  }
  if (value instanceof ArrayBuffer) return encodeBytes(new Uint8Array(value));
  if (value instanceof Date) {
    return Number.isNaN(value.getTime()) ? '"Invalid Date"' : JSON.stringify(value.toISOString());
  }
  if (ancestors.includes(value)) return '"[Circular]"';
  if (depth >= FIELD_DEPTH_MAX) return Array.isArray(value) ? '"[Array]"' : '"[Object]"';
  ancestors.push(value);
  try {
    if (value instanceof Error) return encodeError(value, depth, ancestors);
    if (Array.isArray(value)) return encodeList(value, depth, ancestors);
    if (value instanceof Set) return encodeList([...value], depth, ancestors);
    if (value instanceof Map) return encodeEntries([...value], depth, ancestors);
    const toJson = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJson === "function") {
      return encodeAny(toJson.call(value), depth + 1, ancestors) ?? "null";
    }
    return encodeRecord(value as Record<string, unknown>, depth, ancestors);
  } finally {
    ancestors.pop();
  }
}

function encodeBytes(bytes: Uint8Array): string {
  const shown = Math.min(bytes.length, BYTES_HEX_MAX);
  let hex = "";
  for (let i = 0; i < shown; i++) hex += HEX[bytes[i]];
  return bytes.length <= BYTES_HEX_MAX ? `"${hex}"` : `"${hex}…(${bytes.length} bytes)"`;
}

function encodeError(error: Error, depth: number, ancestors: object[]): string {
  let out = `{"name":${JSON.stringify(String(error.name))}` +
    `,"message":${JSON.stringify(String(error.message))}`;
  if (typeof error.stack === "string") out += `,"stack":${JSON.stringify(error.stack)}`;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" || typeof code === "number") {
    out += `,"code":${JSON.stringify(code)}`;
  }
  if ("cause" in error && error.cause !== undefined) {
    out += `,"cause":${encodeNested(error.cause, depth, ancestors) ?? "null"}`;
  }
  return out + "}";
}

function encodeList(items: readonly unknown[], depth: number, ancestors: object[]): string {
  const shown = Math.min(items.length, FIELD_ITEMS_MAX);
  const parts: string[] = [];
  for (let i = 0; i < shown; i++) parts.push(encodeNested(items[i], depth, ancestors) ?? "null");
  if (items.length > shown) parts.push(JSON.stringify(`…(${items.length} items)`));
  return `[${parts.join(",")}]`;
}

function encodeEntries(
  entries: readonly (readonly [unknown, unknown])[],
  depth: number,
  ancestors: object[],
): string {
  const shown = Math.min(entries.length, FIELD_ITEMS_MAX);
  const parts: string[] = [];
  for (let i = 0; i < shown; i++) {
    const [key, item] = entries[i];
    const text = encodeNested(item, depth, ancestors);
    if (text !== undefined) parts.push(`${JSON.stringify(String(key))}:${text}`);
  }
  if (entries.length > shown) parts.push(`"…":${JSON.stringify(`${entries.length} keys`)}`);
  return `{${parts.join(",")}}`;
}

function encodeRecord(
  record: Record<string, unknown>,
  depth: number,
  ancestors: object[],
): string {
  const keys = Object.keys(record);
  const shown = Math.min(keys.length, FIELD_ITEMS_MAX);
  const parts: string[] = [];
  for (let i = 0; i < shown; i++) {
    let text: string | undefined;
    try {
      text = encodeAny(record[keys[i]], depth + 1, ancestors);
    } catch (error) {
      text = unserializable(error);
    }
    if (text !== undefined) parts.push(`${JSON.stringify(keys[i])}:${text}`);
  }
  if (keys.length > shown) parts.push(`"…":${JSON.stringify(`${keys.length} keys`)}`);
  return `{${parts.join(",")}}`;
}

function encodeNested(value: unknown, depth: number, ancestors: object[]): string | undefined {
  try {
    return encodeAny(value, depth + 1, ancestors);
  } catch (error) {
    return unserializable(error);
  }
}

/**
 * Formats millisecond timestamps as ISO 8601 UTC strings, caching the part up to the second
 * so that most lines cost a string concatenation rather than a `Date`.
 */
export class TimestampFormatter {
  #second = Number.NaN;
  #prefix = "";
  #day = "";

  /** The UTC day (`YYYY-MM-DD`) of the last timestamp passed to `format`. */
  get day(): string {
    return this.#day;
  }

  /** Returns `ms` (milliseconds since the epoch) as `YYYY-MM-DDTHH:MM:SS.mmmZ`. */
  format(ms: number): string {
    const whole = Math.floor(ms);
    const second = Math.floor(whole / 1000);
    if (second !== this.#second) {
      const iso = new Date(second * 1000).toISOString();
      this.#prefix = iso.slice(0, iso.length - 4);
      this.#day = iso.slice(0, iso.length - 14);
      this.#second = second;
    }
    const milli = whole - second * 1000;
    return this.#prefix + (milli < 10 ? "00" : milli < 100 ? "0" : "") + milli + "Z";
  }
}

/** Builds one JSON line, ending in `\n`. `bound` and `fields` are `,"key":value` text. */
export function buildLine(
  ts: string,
  level: Level,
  msg: string,
  bound: string,
  fields: string,
): string {
  return `{"ts":"${ts}","level":"${level}","msg":${
    JSON.stringify(String(msg))
  }${bound}${fields}}\n`;
}

/** Builds the human-readable form of a line for a terminal: `HH:MM:SS.mmm LEVEL msg {fields}`. */
export function buildHumanLine(
  ts: string,
  level: Level,
  msg: string,
  bound: string,
  fields: string,
): string {
  const all = bound + fields;
  const rest = all.length === 0 ? "" : ` {${all.slice(1)}}`;
  return `${ts.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}${rest}\n`;
}
