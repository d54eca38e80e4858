/**
 * The size limits on keys and values (DESIGN.md, "Limits and bad input") and their checks.
 *
 * @module
 */

/** The fewest bytes a key may have: the empty key is not a key. */
export const KEY_BYTES_MIN = 1;
/** The most bytes a key may have (4 KiB). */
export const KEY_BYTES_MAX = 4096;
/** The default for the most bytes a value may have (1 MiB); a deployment may configure another. */
export const VALUE_BYTES_MAX = 1024 * 1024;

/**
 * The outcome of {@linkcode validateKey} and {@linkcode validateValue}. A rejection names the
 * limit it hit, so a gateway can answer `INVALID_ARGUMENT` with that message.
 */
export type SizeCheck =
  | { kind: "ok" }
  | { kind: "tooShort"; byteLength: number; limit: number; limitName: string; message: string }
  | { kind: "tooLong"; byteLength: number; limit: number; limitName: string; message: string };

/**
 * Checks that `key` has {@linkcode KEY_BYTES_MIN} to {@linkcode KEY_BYTES_MAX} bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { validateKey } from "./key_limits.ts";
 *
 * const result = validateKey(new Uint8Array(0));
 * assert(result.kind === "tooShort");
 * ```
 */
export function validateKey(key: Uint8Array): SizeCheck {
  const byteLength = key.byteLength;
  if (byteLength < KEY_BYTES_MIN) {
    return {
      kind: "tooShort",
      byteLength,
      limit: KEY_BYTES_MIN,
      limitName: "KEY_BYTES_MIN",
      message: `Key has ${byteLength} bytes: the minimum is ${KEY_BYTES_MIN} (KEY_BYTES_MIN)`,
    };
  }
  if (byteLength > KEY_BYTES_MAX) {
    return {
      kind: "tooLong",
      byteLength,
      limit: KEY_BYTES_MAX,
      limitName: "KEY_BYTES_MAX",
      message: `Key has ${byteLength} bytes: the maximum is ${KEY_BYTES_MAX} (KEY_BYTES_MAX)`,
    };
  }
  return { kind: "ok" };
}

/** Options for {@linkcode validateValue}. */
export interface ValidateValueOptions {
  /** The most bytes a value may have; defaults to {@linkcode VALUE_BYTES_MAX}. */
  valueBytesMax?: number;
}

/**
 * Checks that `value` has at most `valueBytesMax` bytes (default {@linkcode VALUE_BYTES_MAX}).
 * An empty value is allowed.
 *
 * @throws {RangeError} If `valueBytesMax` is not a non-negative safe integer.
 */
export function validateValue(value: Uint8Array, options: ValidateValueOptions = {}): SizeCheck {
  const limit = options.valueBytesMax ?? VALUE_BYTES_MAX;
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new RangeError(`Cannot use valueBytesMax ${limit}: expected a non-negative safe integer`);
  }
  const byteLength = value.byteLength;
  if (byteLength > limit) {
    return {
      kind: "tooLong",
      byteLength,
      limit,
      limitName: "valueBytesMax",
      message: `Value has ${byteLength} bytes: the maximum is ${limit} (valueBytesMax)`,
    };
  }
  return { kind: "ok" };
}
