/**
 * The hash that places a key on the ring: FNV-1a (32-bit) over the key's bytes, or over its
 * hash tag when it has one.
 *
 * @module
 */

/** FNV-1a 32-bit offset basis. */
const FNV_OFFSET_BASIS_32 = 0x811c9dc5;
/** FNV-1a 32-bit prime. */
const FNV_PRIME_32 = 0x01000193;

const BRACE_OPEN = 0x7b; // "{"
const BRACE_CLOSE = 0x7d; // "}"

/**
 * Returns the FNV-1a 32-bit hash of `bytes` as an unsigned integer in `[0, 2^32)`.
 *
 * @example Hash a string's UTF-8 bytes
 * ```ts
 * import assert from "node:assert/strict";
 * import { fnv1a32 } from "./key_hash.ts";
 *
 * const hash = fnv1a32(new TextEncoder().encode("foobar"));
 * assert(hash === 0xbf9cf968);
 * ```
 */
export function fnv1a32(bytes: Uint8Array): number {
  let hash = FNV_OFFSET_BASIS_32;
  for (let i = 0; i < bytes.length; i++) {
    hash ^= bytes[i];
    // Math.imul keeps the 32-bit product exact, where `*` would lose the low bits to rounding.
    hash = Math.imul(hash, FNV_PRIME_32);
  }
  return hash >>> 0;
}

/**
 * Returns the hash tag of `key`, or `undefined` when the key has none.
 *
 * The rule is Redis Cluster's: take the FIRST `{` in the key and the first `}` after it; if
 * there is at least one byte between them, those bytes are the tag. Otherwise (no `{`, no `}`
 * after it, or `{}`), the key has no tag and is hashed whole. The result is a view into `key`,
 * not a copy. Matching works on bytes: `{` and `}` are ASCII, and no byte of a multi-byte UTF-8
 * sequence can equal them.
 *
 * @example Keys that share a tag share a shard
 * ```ts
 * import assert from "node:assert/strict";
 * import { hashTag } from "./key_hash.ts";
 *
 * const bytes = (s: string) => new TextEncoder().encode(s);
 * const tag = hashTag(bytes("{user42}:cart"));
 * assert(new TextDecoder().decode(tag) === "user42");
 * assert(hashTag(bytes("{}user42")) === undefined);
 * ```
 */
export function hashTag(key: Uint8Array): Uint8Array | undefined {
  const open = key.indexOf(BRACE_OPEN);
  if (open === -1) return undefined;
  const close = key.indexOf(BRACE_CLOSE, open + 1);
  if (close === -1 || close === open + 1) return undefined;
  return key.subarray(open + 1, close);
}

/**
 * Returns the position of `key` on the hash ring: FNV-1a 32-bit over its hash tag if it has
 * one (see {@linkcode hashTag}), else over the whole key.
 *
 * @example `{user42}:name` and `{user42}:cart` hash alike
 * ```ts
 * import assert from "node:assert/strict";
 * import { keyHash } from "./key_hash.ts";
 *
 * const bytes = (s: string) => new TextEncoder().encode(s);
 * assert(keyHash(bytes("{user42}:name")) === keyHash(bytes("{user42}:cart")));
 * ```
 */
export function keyHash(key: Uint8Array): number {
  return fnv1a32(hashTag(key) ?? key);
}
