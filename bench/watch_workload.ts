/**
 * The writes of `deno task bench:watch` (bench/watch.ts) and what a watcher learns from each event.
 * Everything here is pure: no I/O, no clock (times are handed in).
 *
 * - Keys are `<prefix>0000` … `<prefix>0999`, under a prefix of their own per cell.
 * - Each put's 256-byte value carries its sequence number (bytes 0-3, big-endian) and its key's
 *   index (bytes 4-7), then filler; so an event names the put it reports without any lookup.
 * - {@linkcode PutLog} records, per sequence number, the key, the send time and the
 *   acknowledgment time (NaN until acknowledged, and for a put that failed).
 * - {@linkcode KeyRing} hands out keys so that a key never has two puts in flight: a key is taken
 *   for a put and given back after its answer. So each key's writes apply in the order of their
 *   sequence numbers, and a watcher must see each key's sequence numbers increase. A key whose
 *   put failed is retired: that put's outcome is unknown (it may still apply later), and a later
 *   put of the same key could then apply before it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeValue, keyBytes, keyIndexOf, seqOf } from "./watch_workload.ts";
 *
 * const prefix = new TextEncoder().encode("watch/1/");
 * const value = encodeValue(42, 7, new Uint8Array(248));
 * assert.equal(value.length, 256);
 * assert.equal(seqOf(value, 7), 42);
 * assert.equal(keyIndexOf(prefix, keyBytes(prefix, 7)), 7);
 * ```
 *
 * @module
 */
import { assert } from "@tinykv/assert";

/** Bytes per value. */
export const VALUE_BYTES = 256;
/** Keys written under each cell's prefix. */
export const KEYS = 1000;
/** Decimal digits of a key's index after the prefix. */
export const KEY_DIGITS = 4;
/** The sequence number and the key index at the start of each value. */
const VALUE_HEADER_BYTES = 8;
/** Bytes of filler after the header. */
export const FILLER_BYTES = VALUE_BYTES - VALUE_HEADER_BYTES;
const DIGIT_ZERO = 0x30;

/** The key of index `index` under `prefix`: the prefix, then the index in 4 decimal digits. */
export function keyBytes(prefix: Uint8Array, index: number): Uint8Array {
  assert(
    Number.isSafeInteger(index) && index >= 0 && index < 10 ** KEY_DIGITS,
    () => `Key index ${index} does not fit in ${KEY_DIGITS} digits`,
  );
  const key = new Uint8Array(prefix.length + KEY_DIGITS);
  key.set(prefix);
  let rest = index;
  for (let i = key.length - 1; i >= prefix.length; i--) {
    key[i] = DIGIT_ZERO + (rest % 10);
    rest = Math.floor(rest / 10);
  }
  return key;
}

/** The index of `key` if it is one of {@linkcode keyBytes}' keys under `prefix`; -1 otherwise. */
export function keyIndexOf(prefix: Uint8Array, key: Uint8Array): number {
  if (key.length !== prefix.length + KEY_DIGITS) return -1;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return -1;
  let index = 0;
  for (let i = prefix.length; i < key.length; i++) {
    const digit = key[i] - DIGIT_ZERO;
    if (digit < 0 || digit > 9) return -1;
    index = index * 10 + digit;
  }
  return index;
}

/** A value of {@linkcode VALUE_BYTES}: `seq`, `keyIndex`, then `filler`. */
export function encodeValue(seq: number, keyIndex: number, filler: Uint8Array): Uint8Array {
  assert(
    filler.length === FILLER_BYTES,
    () => `Filler is ${filler.length} bytes, not ${FILLER_BYTES}`,
  );
  const value = new Uint8Array(VALUE_BYTES);
  const view = new DataView(value.buffer);
  view.setUint32(0, seq);
  view.setUint32(4, keyIndex);
  value.set(filler, VALUE_HEADER_BYTES);
  return value;
}

/**
 * The sequence number a value of {@linkcode encodeValue} carries, when it has the right size and
 * names `keyIndex` (the index of the event's key) as its key; -1 otherwise.
 */
export function seqOf(value: Uint8Array, keyIndex: number): number {
  if (value.length !== VALUE_BYTES) return -1;
  const view = new DataView(value.buffer, value.byteOffset, VALUE_HEADER_BYTES);
  return view.getUint32(4) === keyIndex ? view.getUint32(0) : -1;
}

/**
 * The end of the range of every key starting with `prefix` (etcd's `range_end` for a prefix):
 * the prefix with its last byte below 0xff incremented and what follows dropped.
 */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] < 0xff) {
      const end = prefix.slice(0, i + 1);
      end[i]++;
      return end;
    }
  }
  // Every byte is 0xff (or there is none): etcd's "\0", every key from the prefix on.
  return new Uint8Array([0]);
}

/** The writer's record of every put: its key, send time and acknowledgment time, by sequence. */
export class PutLog {
  #keys = new Uint16Array(1 << 12);
  #sentMs = new Float64Array(1 << 12);
  #ackedMs = new Float64Array(1 << 12);
  #count = 0;

  /** Records a put of key `keyIndex` sent at `sentMs`; returns its sequence number. */
  add(keyIndex: number, sentMs: number): number {
    if (this.#count === this.#keys.length) this.#grow();
    const seq = this.#count++;
    this.#keys[seq] = keyIndex;
    this.#sentMs[seq] = sentMs;
    this.#ackedMs[seq] = NaN;
    return seq;
  }

  /** Records that put `seq` was acknowledged at `ackedMs`. */
  ack(seq: number, ackedMs: number): void {
    assert(seq >= 0 && seq < this.#count, () => `Put ${seq} was never sent (${this.#count} were)`);
    assert(Number.isNaN(this.#ackedMs[seq]), () => `Put ${seq} was acknowledged twice`);
    this.#ackedMs[seq] = ackedMs;
  }

  /** Puts sent so far; their sequence numbers are 0 to count - 1. */
  get count(): number {
    return this.#count;
  }

  /** The key index of put `seq`. */
  keyOf(seq: number): number {
    return this.#keys[seq];
  }

  /** When put `seq` was sent. */
  sentMsOf(seq: number): number {
    return this.#sentMs[seq];
  }

  /** When put `seq` was acknowledged; NaN when it was not (yet, or it failed). */
  ackedMsOf(seq: number): number {
    return this.#ackedMs[seq];
  }

  #grow(): void {
    const size = this.#keys.length * 2;
    const keys = new Uint16Array(size);
    const sent = new Float64Array(size);
    const acked = new Float64Array(size);
    keys.set(this.#keys);
    sent.set(this.#sentMs);
    acked.set(this.#ackedMs);
    this.#keys = keys;
    this.#sentMs = sent;
    this.#ackedMs = acked;
  }
}

/**
 * The keys free for a put, first in first out: {@linkcode take} one for a put, then
 * {@linkcode release} it after a success or {@linkcode retire} it after a failure.
 */
export class KeyRing {
  readonly #free: number[];
  #head = 0;
  readonly #busy: Uint8Array;

  /** A ring of keys 0 to `keys` - 1, all free. */
  constructor(keys: number) {
    this.#free = Array.from({ length: keys }, (_, i) => i);
    this.#busy = new Uint8Array(keys);
  }

  /** The free key that waited longest, now busy; undefined when none is free. */
  take(): number | undefined {
    if (this.#head === this.#free.length) return undefined;
    const key = this.#free[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#free.length) {
      this.#free.splice(0, this.#head);
      this.#head = 0;
    }
    this.#busy[key] = 1;
    return key;
  }

  /** Gives a busy key back: free again. */
  release(key: number): void {
    assert(this.#busy[key] === 1, () => `Key ${key} was released but is not busy`);
    this.#busy[key] = 0;
    this.#free.push(key);
  }

  /** Takes a busy key out of use for good (its last put failed). */
  retire(key: number): void {
    assert(this.#busy[key] === 1, () => `Key ${key} was retired but is not busy`);
    this.#busy[key] = 2;
  }

  /** Keys free now. */
  get freeCount(): number {
    return this.#free.length - this.#head;
  }
}
