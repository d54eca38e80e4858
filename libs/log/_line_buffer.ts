// One half of the double buffer: a fixed, preallocated byte array holding whole UTF-8 JSON lines,
// with the UTC day of each run of lines so that the writer can split a batch across date files.

import { assert } from "./_assert.ts";

const encoder = new TextEncoder();

/** A run of consecutive lines of one UTC day inside a {@linkcode LineBuffer}. */
export interface DaySegment {
  /** The UTC day of every line in the segment, `YYYY-MM-DD`. */
  day: string;
  /** The segment's bytes: whole lines, each ending in `\n`. A view into the buffer. */
  bytes: Uint8Array;
  /** How many lines the segment holds. */
  lines: number;
}

/**
 * A fixed-capacity buffer of encoded lines. It never grows: `tryAppend` refuses a line that
 * does not fit, which is what bounds the logger's memory.
 */
export class LineBuffer {
  readonly #bytes: Uint8Array;
  #usedBytes = 0;
  #lines = 0;
  // Parallel arrays, one entry per day segment; almost always of length 1.
  readonly #days: string[] = [];
  readonly #dayByteEnds: number[] = [];
  readonly #dayLineEnds: number[] = [];

  /** Allocates the buffer once, `capacityBytes` long. */
  constructor(capacityBytes: number) {
    assert(Number.isSafeInteger(capacityBytes) && capacityBytes > 0, "capacity must be positive");
    this.#bytes = new Uint8Array(capacityBytes);
  }

  /** Bytes of lines held. */
  get usedBytes(): number {
    return this.#usedBytes;
  }

  /** Lines held. */
  get lines(): number {
    return this.#lines;
  }

  /** Bytes still free. */
  get freeBytes(): number {
    return this.#bytes.length - this.#usedBytes;
  }

  /**
   * Encodes `line` (which must end in `\n`) at the end of the buffer. Returns false, leaving the
   * buffer's content unchanged, when the line does not fit.
   */
  tryAppend(day: string, line: string): boolean {
    const result = encoder.encodeInto(line, this.#bytes.subarray(this.#usedBytes));
    if (result.read < line.length) return false;
    const last = this.#days.length - 1;
    if (last < 0 || this.#days[last] !== day) {
      this.#days.push(day);
      this.#dayByteEnds.push(0);
      this.#dayLineEnds.push(0);
    }
    this.#usedBytes += result.written;
    this.#lines += 1;
    const segment = this.#days.length - 1;
    this.#dayByteEnds[segment] = this.#usedBytes;
    this.#dayLineEnds[segment] = this.#lines;
    return true;
  }

  /** The content as day segments, in order. The views are valid until the next `clear`. */
  segments(): DaySegment[] {
    const segments: DaySegment[] = [];
    let byteStart = 0;
    let lineStart = 0;
    for (let i = 0; i < this.#days.length; i++) {
      const byteEnd = this.#dayByteEnds[i];
      const lineEnd = this.#dayLineEnds[i];
      segments.push({
        day: this.#days[i],
        bytes: this.#bytes.subarray(byteStart, byteEnd),
        lines: lineEnd - lineStart,
      });
      byteStart = byteEnd;
      lineStart = lineEnd;
    }
    // Invariant: the segments cover the used bytes exactly.
    assert(byteStart === this.#usedBytes && lineStart === this.#lines, "segments cover the buffer");
    return segments;
  }

  /** Empties the buffer; its memory is reused. */
  clear(): void {
    this.#usedBytes = 0;
    this.#lines = 0;
    this.#days.length = 0;
    this.#dayByteEnds.length = 0;
    this.#dayLineEnds.length = 0;
  }
}

/** The UTF-8 length of `text` in bytes, without encoding it. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i += 1;
      } else {
        bytes += 3; // A lone surrogate becomes U+FFFD, 3 bytes.
      }
    } else bytes += 3;
  }
  return bytes;
}
