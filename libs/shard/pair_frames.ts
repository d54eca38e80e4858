/**
 * The framing of key-value pairs in a shard export (`NodeAdmin.ExportShard`) and in a backup's
 * shard files (`tinykv backup`): each pair is its key's length (4 bytes, big-endian), the key, its
 * value's length (4 bytes, big-endian) and the value. A shard file is exactly its pairs framed
 * this way, one after another, so the SHA-256 the kvnode computes while exporting is also the
 * file's digest: the check runs end to end, from the kvnode's read view to the restore.
 *
 * @module
 */

/** Bytes of one length prefix. */
export const FRAME_LENGTH_BYTES = 4;

/** The framing of one pair: key length, key, value length, value. */
export function framePair(key: Uint8Array, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 * FRAME_LENGTH_BYTES + key.length + value.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, key.length);
  out.set(key, FRAME_LENGTH_BYTES);
  view.setUint32(FRAME_LENGTH_BYTES + key.length, value.length);
  out.set(value, 2 * FRAME_LENGTH_BYTES + key.length);
  return out;
}

/** A pair read back from framed bytes. */
export interface FramedPair {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

/** Why framed bytes could not be read. */
export type FrameProblem =
  | { readonly kind: "tooLong"; readonly message: string }
  | { readonly kind: "truncated"; readonly message: string };

/**
 * Reads framed pairs from chunks of any size, in order. `push` returns the pairs completed by a
 * chunk (it keeps references to the chunks, so a caller must not reuse their buffers); `finish`
 * reports whether the bytes ended on a pair's boundary. Each byte is copied once, so a 64 MiB
 * value pushed in 1 MiB chunks costs 64 MiB of copying, not the sum of every prefix. A length over
 * `pieceBytesMax` is refused at once (a corrupt length never makes the reader wait for gigabytes).
 */
export class FrameReader {
  readonly #pieceBytesMax: number;
  /** Bytes pushed and not yet read, as the chunks they came in (never concatenated whole). */
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #key: Uint8Array | undefined;
  /** Pairs read so far. */
  pairs = 0;

  constructor(pieceBytesMax: number) {
    this.#pieceBytesMax = pieceBytesMax;
  }

  /** The pairs `chunk` completes, or the problem with the bytes. */
  push(chunk: Uint8Array): FramedPair[] | FrameProblem {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
    const out: FramedPair[] = [];
    while (this.#buffered >= FRAME_LENGTH_BYTES) {
      const length = new DataView(this.#peek(FRAME_LENGTH_BYTES).buffer).getUint32(0);
      if (length > this.#pieceBytesMax) {
        return {
          kind: "tooLong",
          message: `Pair ${this.pairs + 1} declares a ${
            this.#key === undefined ? "key" : "value"
          } of ${length} bytes: the most accepted is ${this.#pieceBytesMax}`,
        };
      }
      if (this.#buffered < FRAME_LENGTH_BYTES + length) break;
      this.#take(FRAME_LENGTH_BYTES);
      const piece = this.#take(length);
      if (this.#key === undefined) {
        this.#key = piece;
      } else {
        out.push({ key: this.#key, value: piece });
        this.#key = undefined;
        this.pairs++;
      }
    }
    return out;
  }

  /** Undefined when every byte pushed belonged to a whole pair, else the problem. */
  finish(): FrameProblem | undefined {
    if (this.#buffered === 0 && this.#key === undefined) return undefined;
    return {
      kind: "truncated",
      message: `The bytes end inside pair ${this.pairs + 1}: the data is truncated`,
    };
  }

  /** A copy of the first `n` buffered bytes (n <= buffered), leaving them buffered. */
  #peek(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let at = 0;
    for (const chunk of this.#chunks) {
      const part = chunk.subarray(0, n - at);
      out.set(part, at);
      at += part.length;
      if (at === n) break;
    }
    return out;
  }

  /** The first `n` buffered bytes (n <= buffered), removed: one copy, however many chunks. */
  #take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const chunk = this.#chunks[0];
      const part = chunk.subarray(0, n - at);
      out.set(part, at);
      at += part.length;
      if (part.length === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(part.length);
    }
    this.#buffered -= n;
    return out;
  }
}
