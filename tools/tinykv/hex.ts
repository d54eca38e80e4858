/**
 * Hex text of bytes for the CLI's `--hex`: two lowercase digits per byte out, pairs of digits of
 * either case in. Table-driven loops, so a value of tens of MiB costs milliseconds, not an array
 * of a string per byte.
 *
 * @module
 */

const DIGITS = "0123456789abcdef";
const BYTE_HEX: readonly string[] = Array.from(
  { length: 256 },
  (_, b) => DIGITS[b >> 4] + DIGITS[b & 15],
);
/** The value of each hex digit by its character code; -1 for every other character. */
const DIGIT_VALUE = Int8Array.from({ length: 128 }, (_, c) => {
  const digit = parseInt(String.fromCharCode(c), 16);
  return Number.isNaN(digit) ? -1 : digit;
});
/** Bytes per string piece in {@linkcode hexOf}, to keep intermediate strings short. */
const HEX_PIECE_BYTES = 8192;

/** `bytes` as lowercase hex, two digits per byte. */
export function hexOf(bytes: Uint8Array): string {
  const pieces: string[] = [];
  for (let start = 0; start < bytes.length; start += HEX_PIECE_BYTES) {
    let piece = "";
    const end = Math.min(bytes.length, start + HEX_PIECE_BYTES);
    for (let i = start; i < end; i++) piece += BYTE_HEX[bytes[i]];
    pieces.push(piece);
  }
  return pieces.join("");
}

/** The bytes of `text`, pairs of hex digits of either case; undefined when it is not that. */
export function bytesOfHex(text: string): Uint8Array | undefined {
  if (text.length % 2 !== 0) return undefined;
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) {
    const high = DIGIT_VALUE[text.charCodeAt(2 * i)] ?? -1;
    const low = DIGIT_VALUE[text.charCodeAt(2 * i + 1)] ?? -1;
    if (high < 0 || low < 0) return undefined;
    bytes[i] = (high << 4) | low;
  }
  return bytes;
}
