/**
 * What `deno task bench:watch` checks about the events one watcher received, and the delivery
 * latencies it reports. Everything here is pure.
 *
 * A {@linkcode WatcherLog} takes each event as it arrives and keeps, per sequence number, how
 * often it came, when it came first and under which key. {@linkcode checkDeliveries} then holds
 * the log against the writer's {@linkcode PutLog} and counts four kinds of fault:
 *
 * - **missing**: a put of the measured window that was acknowledged and never delivered;
 * - **duplicated**: every delivery of a put after its first (any put, warmup included);
 * - **out of order**: a first delivery whose sequence number is below one already delivered for
 *   the same key (the writer keeps one put per key in flight, so each key's sequence numbers
 *   increase in the order its writes apply);
 * - **unexpected**: an event that names no put the writer sent: not one of the cell's keys, a
 *   value of the wrong size or naming another key, an unknown sequence number, or the key of
 *   another put.
 *
 * {@linkcode deliveryLatencies} measures, for each acknowledged put of the window a watcher got,
 * the time from the put's acknowledgment to the event's first arrival. An event can beat the
 * acknowledgment (the watch and the answer travel separate paths): such a latency counts as 0 in
 * the quantiles and is counted in `beforeAck`, so it is neither hidden nor made negative. The time
 * from the put's send to the event's arrival is measured too: it stays informative when most
 * events beat their acknowledgment.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkDeliveries, WatcherLog } from "./watch_check.ts";
 * import { encodeValue, keyBytes, PutLog } from "./watch_workload.ts";
 *
 * const prefix = new TextEncoder().encode("w/");
 * const puts = new PutLog();
 * const seq = puts.add(3, 0);
 * puts.ack(seq, 1);
 * const log = new WatcherLog(prefix, 10);
 * log.record(keyBytes(prefix, 3), encodeValue(seq, 3, new Uint8Array(248)), 2);
 * const check = checkDeliveries(puts, log, { fromSeq: 0, toSeq: puts.count });
 * assert.equal(check.delivered, 1);
 * assert.equal(check.missing, 0);
 * ```
 *
 * @module
 */
import { quantileOfSorted } from "./compare_stats.ts";
import { keyIndexOf, type PutLog, seqOf } from "./watch_workload.ts";

/** Deliveries of one sequence number are counted up to this (a byte per sequence number). */
const DELIVERIES_COUNTED_MAX = 255;

/** The events one watcher received, folded as they arrive. */
export class WatcherLog {
  readonly #prefix: Uint8Array;
  /** Per key index, the highest sequence number delivered so far (-1: none). */
  readonly #lastSeq: Int32Array;
  #deliveries = new Uint8Array(1 << 12);
  #firstArrivalMs = new Float64Array(1 << 12);
  #keyOfSeq = new Uint16Array(1 << 12);
  #events = 0;
  #outOfOrder = 0;
  #undecodable = 0;
  #highestSeq = -1;

  /** A log for events of keys 0 to `keys` - 1 under `prefix`. */
  constructor(prefix: Uint8Array, keys: number) {
    this.#prefix = prefix;
    this.#lastSeq = new Int32Array(keys).fill(-1);
  }

  /** Takes one event (a put of `key` to `value`) that arrived at `arrivalMs`. */
  record(key: Uint8Array, value: Uint8Array, arrivalMs: number): void {
    this.#events++;
    const keyIndex = keyIndexOf(this.#prefix, key);
    const seq = keyIndex < 0 || keyIndex >= this.#lastSeq.length ? -1 : seqOf(value, keyIndex);
    if (seq < 0) {
      this.#undecodable++;
      return;
    }
    while (seq >= this.#deliveries.length) this.#grow();
    const count = this.#deliveries[seq];
    if (count < DELIVERIES_COUNTED_MAX) this.#deliveries[seq] = count + 1;
    if (count > 0) return;
    this.#firstArrivalMs[seq] = arrivalMs;
    this.#keyOfSeq[seq] = keyIndex;
    if (seq > this.#highestSeq) this.#highestSeq = seq;
    if (seq < this.#lastSeq[keyIndex]) this.#outOfOrder++;
    else this.#lastSeq[keyIndex] = seq;
  }

  /** Takes one event that is not a put (a delete, say): the writer never deletes. */
  recordOther(): void {
    this.#events++;
    this.#undecodable++;
  }

  /** Every event received, whatever it was. */
  get events(): number {
    return this.#events;
  }

  /** Events that named no key and value of the cell. */
  get undecodable(): number {
    return this.#undecodable;
  }

  /** First deliveries below a sequence number already delivered for the same key. */
  get outOfOrder(): number {
    return this.#outOfOrder;
  }

  /** The highest sequence number delivered; -1 before any. */
  get highestSeq(): number {
    return this.#highestSeq;
  }

  /** How often `seq` was delivered (at most 255 is counted). */
  deliveriesOf(seq: number): number {
    return seq < this.#deliveries.length ? this.#deliveries[seq] : 0;
  }

  /** When `seq` first arrived (meaningless when it never did). */
  firstArrivalMsOf(seq: number): number {
    return this.#firstArrivalMs[seq];
  }

  /** The key index `seq` first arrived under (meaningless when it never did). */
  keyOfDelivered(seq: number): number {
    return this.#keyOfSeq[seq];
  }

  #grow(): void {
    const size = this.#deliveries.length * 2;
    const deliveries = new Uint8Array(size);
    const arrivals = new Float64Array(size);
    const keys = new Uint16Array(size);
    deliveries.set(this.#deliveries);
    arrivals.set(this.#firstArrivalMs);
    keys.set(this.#keyOfSeq);
    this.#deliveries = deliveries;
    this.#firstArrivalMs = arrivals;
    this.#keyOfSeq = keys;
  }
}

/** The puts of the measured window: sequence numbers `fromSeq` to `toSeq` - 1. */
export interface SeqRange {
  readonly fromSeq: number;
  readonly toSeq: number;
}

/** What one watcher (or, summed, every watcher) got against what it should have. */
export interface DeliveryCheck {
  /** Acknowledged puts of the window: each watcher should get each once. */
  readonly expected: number;
  /** Of those, the ones delivered (at least once). */
  readonly delivered: number;
  /** Acknowledged puts of the window never delivered. */
  readonly missing: number;
  /** Deliveries beyond a put's first, any put. */
  readonly duplicated: number;
  /** First deliveries below a sequence number already delivered for the same key. */
  readonly outOfOrder: number;
  /** Events that name no put the writer sent, or the wrong key for it. */
  readonly unexpected: number;
}

/** Counts what `log` got wrong against `puts`; missing ones only among the acknowledged of `window`. */
export function checkDeliveries(puts: PutLog, log: WatcherLog, window: SeqRange): DeliveryCheck {
  let expected = 0;
  let delivered = 0;
  let duplicated = 0;
  let unexpected = log.undecodable;
  for (let seq = 0; seq <= log.highestSeq; seq++) {
    const deliveries = log.deliveriesOf(seq);
    if (deliveries === 0) continue;
    if (seq >= puts.count || log.keyOfDelivered(seq) !== puts.keyOf(seq)) {
      unexpected += deliveries;
      continue;
    }
    duplicated += deliveries - 1;
  }
  for (let seq = window.fromSeq; seq < window.toSeq; seq++) {
    if (Number.isNaN(puts.ackedMsOf(seq))) continue;
    expected++;
    if (log.deliveriesOf(seq) > 0 && log.keyOfDelivered(seq) === puts.keyOf(seq)) delivered++;
  }
  return {
    expected,
    delivered,
    missing: expected - delivered,
    duplicated,
    outOfOrder: log.outOfOrder,
    unexpected,
  };
}

/**
 * The first acknowledged put of `window` that `log` has not got; `window.toSeq` when it got them
 * all. A delivery is never taken back, so a caller waiting for all of them can pass what this
 * returned as the next call's `fromSeq`.
 */
export function firstLacking(puts: PutLog, log: WatcherLog, window: SeqRange): number {
  for (let seq = window.fromSeq; seq < window.toSeq; seq++) {
    if (!Number.isNaN(puts.ackedMsOf(seq)) && log.deliveriesOf(seq) === 0) return seq;
  }
  return window.toSeq;
}

/** The sums of several checks (every watcher of a cell). */
export function sumChecks(checks: readonly DeliveryCheck[]): DeliveryCheck {
  const sum = (field: keyof DeliveryCheck) => checks.reduce((total, c) => total + c[field], 0);
  return {
    expected: sum("expected"),
    delivered: sum("delivered"),
    missing: sum("missing"),
    duplicated: sum("duplicated"),
    outOfOrder: sum("outOfOrder"),
    unexpected: sum("unexpected"),
  };
}

/** Whether a check found no fault of any kind. */
export function isClean(check: DeliveryCheck): boolean {
  return check.missing === 0 && check.duplicated === 0 && check.outOfOrder === 0 &&
    check.unexpected === 0;
}

/** The delivery latencies of one watcher (see {@linkcode deliveryLatencies}). */
export interface DeliveryLatencies {
  /** From each put's acknowledgment to its event's first arrival; negative ones as 0. */
  readonly sinceAckMs: number[];
  /** From each put's send to its event's first arrival. */
  readonly sinceSendMs: number[];
  /** Events that arrived before their put's acknowledgment (0 in `sinceAckMs`). */
  readonly beforeAck: number;
}

/**
 * For each acknowledged put of `window` that `log` got, milliseconds from its acknowledgment
 * and from its send to its first arrival; an event that beat the acknowledgment counts as 0 and
 * in `beforeAck`.
 */
export function deliveryLatencies(
  puts: PutLog,
  log: WatcherLog,
  window: SeqRange,
): DeliveryLatencies {
  const sinceAckMs: number[] = [];
  const sinceSendMs: number[] = [];
  let beforeAck = 0;
  for (let seq = window.fromSeq; seq < window.toSeq; seq++) {
    const ackedMs = puts.ackedMsOf(seq);
    if (Number.isNaN(ackedMs) || log.deliveriesOf(seq) === 0) continue;
    if (log.keyOfDelivered(seq) !== puts.keyOf(seq)) continue;
    const arrivalMs = log.firstArrivalMsOf(seq);
    if (arrivalMs < ackedMs) beforeAck++;
    sinceAckMs.push(Math.max(0, arrivalMs - ackedMs));
    sinceSendMs.push(arrivalMs - puts.sentMsOf(seq));
  }
  return { sinceAckMs, sinceSendMs, beforeAck };
}

/** Milliseconds from send to acknowledgment of each acknowledged put of `window`. */
export function putLatencies(puts: PutLog, window: SeqRange): number[] {
  const latenciesMs: number[] = [];
  for (let seq = window.fromSeq; seq < window.toSeq; seq++) {
    const ackedMs = puts.ackedMsOf(seq);
    if (!Number.isNaN(ackedMs)) latenciesMs.push(ackedMs - puts.sentMsOf(seq));
  }
  return latenciesMs;
}

/** The median, 99th percentile and maximum of some latencies. */
export interface LatencySummary {
  /** How many latencies. */
  readonly count: number;
  /** Nearest-rank median (NaN when there are none). */
  readonly p50Ms: number;
  /** Nearest-rank 99th percentile. */
  readonly p99Ms: number;
  /** The largest. */
  readonly maxMs: number;
}

/** Summarizes `latenciesMs` (any order; not changed). */
export function summarizeLatencies(latenciesMs: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(latenciesMs).sort();
  return {
    count: sorted.length,
    p50Ms: quantileOfSorted(sorted, 0.5),
    p99Ms: quantileOfSorted(sorted, 0.99),
    maxMs: sorted.length === 0 ? NaN : sorted[sorted.length - 1],
  };
}
