/**
 * Byte-string order: the order of keys everywhere in TinyKV (LMDB's, scans', the gateway's merge).
 *
 * @module
 */

/** Compares byte strings as unsigned bytes, shorter first on a common prefix: <0, 0 or >0. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}
