/**
 * Test payloads: deterministic pseudo-random bytes, the same for the same arguments and never all
 * one byte, so a test that loses, shifts or truncates data notices.
 *
 * @module
 */

import { mulberry32 } from "@tinykv/raft";

/** `length` pseudo-random bytes from `seed` (the Raft core's mulberry32, four bytes per draw). */
export function patternBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  const random = mulberry32(seed);
  for (let i = 0; i < length; i += 4) {
    // Exact: mulberry32 returns a 32-bit word divided by 2^32.
    const word = random() * 2 ** 32;
    for (let byte = 0; byte < 4 && i + byte < length; byte++) {
      out[i + byte] = (word >>> (8 * byte)) & 255;
    }
  }
  return out;
}
