/**
 * Test payloads: deterministic pseudo-random bytes, the same for the same arguments and never all
 * one byte, so a test that loses, shifts or truncates data notices.
 *
 * @module
 */

/** `length` pseudo-random bytes from `seed` (xorshift32). */
export function patternBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (Math.imul(seed + 1, 2654435761) ^ 0x9e3779b9) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    out[i] = x & 255;
  }
  return out;
}
