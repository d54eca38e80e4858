/**
 * A VALUE of `-` on the `tinykv` command line: the value is all of stdin, read as raw bytes up to
 * a bound. Without `--hex` the bytes are the value exactly (no newline is trimmed, binary passes
 * byte for byte); with `--hex` stdin holds hex text, and whitespace in it (around it, or line
 * breaks as `xxd -p` writes) is ignored. Reading stdin needs no Deno permission.
 *
 * @module
 */
import { bytesOfHex } from "./hex.ts";

/**
 * The largest value `-` reads, in bytes: the largest `storage.value_bytes_max` a server accepts
 * (libs/config/schema.ts), so the server, not the CLI, refuses a value over its own limit.
 */
export const STDIN_VALUE_BYTES_MAX = 64 * 1024 * 1024;
/** Bytes of hex text `--hex` reads from stdin per byte of value: two digits and a separator. */
const HEX_TEXT_BYTES_PER_BYTE = 3;
/** The first read's buffer; it doubles as stdin proves longer, up to the bound. */
const READ_BUFFER_BYTES_MIN = 64 * 1024;

/** What stdin is read through (`Deno.stdin` has this shape). */
export interface ByteReader {
  /** Reads into `p`; resolves with the count of bytes read, or null at end of input. */
  read(p: Uint8Array): Promise<number | null>;
}

/** The result of {@linkcode readAllBounded}. */
export type BoundedRead =
  | { kind: "ok"; bytes: Uint8Array }
  /** The input has more than `bytesMax` bytes; reading stopped at `bytesMax + 1`. */
  | { kind: "tooLong"; bytesMax: number };

/**
 * Reads `reader` to its end, but never holds more than `bytesMax + 1` bytes: past `bytesMax` it
 * stops reading and answers `tooLong`. I/O errors of `reader` propagate.
 */
export async function readAllBounded(reader: ByteReader, bytesMax: number): Promise<BoundedRead> {
  if (!Number.isSafeInteger(bytesMax) || bytesMax < 0) {
    throw new RangeError(`Cannot read with bytesMax ${bytesMax}: expected a non-negative integer`);
  }
  let buffer = new Uint8Array(Math.min(READ_BUFFER_BYTES_MIN, bytesMax + 1));
  let length = 0;
  for (;;) {
    if (length === buffer.length) {
      // Invariant: buffer.length <= bytesMax + 1, so a full buffer over bytesMax is one byte over.
      if (length > bytesMax) return { kind: "tooLong", bytesMax };
      const grown = new Uint8Array(Math.min(2 * buffer.length, bytesMax + 1));
      grown.set(buffer);
      buffer = grown;
    }
    const count = await reader.read(buffer.subarray(length));
    if (count === null) return { kind: "ok", bytes: buffer.subarray(0, length) };
    length += count;
  }
}

/** Options of {@linkcode readStdinValue}. */
export interface ReadStdinValueOptions {
  /** Stdin holds hex text (`--hex`). */
  hex: boolean;
  /** The largest value, in bytes; default {@linkcode STDIN_VALUE_BYTES_MAX}. */
  valueBytesMax?: number;
}

/** The result of {@linkcode readStdinValue}; every kind but `ok` carries a message to print. */
export type StdinValue =
  | { kind: "ok"; value: Uint8Array }
  | { kind: "tooLong"; message: string }
  | { kind: "notHex"; message: string }
  /** Stdin could not be read (say it is a directory); `message` has the system's reason. */
  | { kind: "unreadable"; message: string };

/**
 * Reads the value of a `-` argument from `reader`. An I/O error becomes `unreadable`, not an
 * exception: it is a problem with the command's input, reported like a bad argument.
 *
 * @throws {RangeError} If `valueBytesMax` is not a non-negative safe integer.
 */
export async function readStdinValue(
  reader: ByteReader,
  options: ReadStdinValueOptions,
): Promise<StdinValue> {
  const valueBytesMax = options.valueBytesMax ?? STDIN_VALUE_BYTES_MAX;
  if (!Number.isSafeInteger(valueBytesMax) || valueBytesMax < 0) {
    throw new RangeError(
      `Cannot use valueBytesMax ${valueBytesMax}: expected a non-negative integer`,
    );
  }
  const bytesMax = options.hex ? HEX_TEXT_BYTES_PER_BYTE * valueBytesMax : valueBytesMax;
  let read: BoundedRead;
  try {
    read = await readAllBounded(reader, bytesMax);
  } catch (error) {
    // With bytesMax checked above, every error here is the reader's: an I/O error.
    if (!(error instanceof Error)) throw error;
    return { kind: "unreadable", message: `Cannot read stdin for "-": ${error.message}` };
  }
  const tooLong = (what: string): StdinValue => ({
    kind: "tooLong",
    message: `Cannot read stdin for "-": it has ${what} (a value read from stdin has at most ` +
      `${valueBytesMax} bytes, STDIN_VALUE_BYTES_MAX)`,
  });
  if (read.kind === "tooLong") {
    return tooLong(`more than ${bytesMax} bytes${options.hex ? " of hex text" : ""}`);
  }
  if (!options.hex) return { kind: "ok", value: read.bytes };
  return valueOfHexText(read.bytes, valueBytesMax, tooLong);
}

function valueOfHexText(
  text: Uint8Array,
  valueBytesMax: number,
  tooLong: (what: string) => StdinValue,
): StdinValue {
  // Hex digits and whitespace are ASCII, so Latin-1 maps each byte to one character and an
  // invalid byte stays an invalid character (UTF-8 could fold several into one).
  const digits = new TextDecoder("latin1").decode(text).replace(/[ \t\r\n\f\v]+/g, "");
  if (digits.length > 2 * valueBytesMax) {
    return tooLong(`more than ${2 * valueBytesMax} hex digits`);
  }
  const value = bytesOfHex(digits);
  if (value !== undefined) return { kind: "ok", value };
  const bad = digits.search(/[^0-9a-fA-F]/);
  const found = bad < 0
    ? `an odd count of digits (${digits.length})`
    : `${JSON.stringify(digits[bad])} after ${bad} digits`;
  return {
    kind: "notHex",
    message: 'Cannot read stdin for "-": it is not hex (--hex): expected pairs of hex digits ' +
      `and whitespace, found ${found}`,
  };
}
