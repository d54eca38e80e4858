/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), table driven. Used for
 * the checksum every log entry carries.
 *
 * @module
 */

const TABLE: Uint32Array = buildTable();

function buildTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}

/** The initial state of an incremental CRC-32 computation. */
export const CRC32_INIT = 0xffffffff;

/** Feeds `bytes` into an incremental CRC-32 state (start from {@linkcode CRC32_INIT}). */
export function crc32Update(state: number, bytes: Uint8Array): number {
  let c = state;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** Feeds a 32-bit unsigned integer (little endian) into an incremental CRC-32 state. */
export function crc32UpdateUint32(state: number, value: number): number {
  let c = state;
  for (let shift = 0; shift < 32; shift += 8) {
    c = TABLE[(c ^ (value >>> shift)) & 0xff] ^ (c >>> 8);
  }
  return c >>> 0;
}

/** Finishes an incremental CRC-32 computation. */
export function crc32Finish(state: number): number {
  return (state ^ 0xffffffff) >>> 0;
}

/**
 * Computes the CRC-32 of `bytes`.
 *
 * @example Known value
 * ```ts
 * import { crc32 } from "./crc32.ts";
 * const value = crc32(new TextEncoder().encode("123456789"));
 * if (value !== 0xcbf43926) throw new Error("wrong crc");
 * ```
 */
export function crc32(bytes: Uint8Array): number {
  return crc32Finish(crc32Update(CRC32_INIT, bytes));
}
