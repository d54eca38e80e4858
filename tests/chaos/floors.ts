/**
 * The floors a fault-test run must reach: a run that barely sent traffic, left one workload
 * nearly idle, applied few faults or never got a legal request at the limits through proves
 * nothing, so it fails however clean its histories are.
 *
 * Each floor is a rate per minute of faults, rounded down. They sit far below what a healthy run
 * does. Measured on the 2-core test machine, shared with other work (seed 1, 3 min of faults,
 * 184 s): register 11,650 operations on 35 keys; append 6,539 appends and 2,212 reads on 28 keys;
 * scan 4,289 writes and 232 scans of 7 prefixes; 24,922 operations, 4,352 keys and 33 faults in
 * all. So the per-workload floors are about a tenth of that (keys, which rotate every 30 s
 * whatever the traffic, about a third), and the legal boundary probes (one check every 5 s, the
 * three kinds in turn) must succeed at least once a minute, each kind at least once in 3 minutes.
 *
 * @example Floors of a 3-minute run
 * ```ts
 * import assert from "node:assert/strict";
 * import { evaluateFloors, type RunCounts } from "./floors.ts";
 *
 * const idle: RunCounts = {
 *   operations: 0, keys: 0, faults: 0,
 *   register: { operations: 0, keys: 0 },
 *   append: { appends: 0, reads: 0, keys: 0 },
 *   scan: { writes: 0, scans: 0, prefixes: 0 },
 *   boundary: { "put-get": 0, "append-to-limit": 0, "cas": 0 },
 * };
 * assert.ok(evaluateFloors(idle, 3).problems.length > 0);
 * ```
 *
 * @module
 */
import type { BoundaryKind } from "./boundary.ts";

/** What a run achieved: the numbers its floors are checked against. */
export interface RunCounts {
  /** Completed operations of every workload. */
  readonly operations: number;
  /** Distinct keys the workloads used. */
  readonly keys: number;
  /** Faults applied (not skipped). */
  readonly faults: number;
  /** Completed register operations and the keys they used. */
  readonly register: { readonly operations: number; readonly keys: number };
  /** Acknowledged appends, successful reads, and the keys they used. */
  readonly append: { readonly appends: number; readonly reads: number; readonly keys: number };
  /** Acknowledged writes (each a new key), completed scans, and the prefixes scanned. */
  readonly scan: { readonly writes: number; readonly scans: number; readonly prefixes: number };
  /** Legal boundary checks that ended ok, by kind. */
  readonly boundary: Readonly<Record<BoundaryKind, number>>;
}

/** One floor: what it measures and how much of it a minute of faults must bring. */
export interface Floor {
  readonly what: string;
  readonly perMinute: number;
  readonly measure: (counts: RunCounts) => number;
}

/** Every floor (see the module documentation for where the numbers come from). */
export const FLOORS: readonly Floor[] = [
  { what: "completed operations", perMinute: 1500, measure: (c) => c.operations },
  { what: "keys", perMinute: 40, measure: (c) => c.keys },
  { what: "faults applied", perMinute: 4, measure: (c) => c.faults },
  { what: "register operations", perMinute: 300, measure: (c) => c.register.operations },
  { what: "register keys", perMinute: 3, measure: (c) => c.register.keys },
  { what: "acknowledged appends", perMinute: 200, measure: (c) => c.append.appends },
  { what: "append reads", perMinute: 60, measure: (c) => c.append.reads },
  { what: "append keys", perMinute: 3, measure: (c) => c.append.keys },
  { what: "acknowledged scan writes", perMinute: 150, measure: (c) => c.scan.writes },
  { what: "scans", perMinute: 8, measure: (c) => c.scan.scans },
  { what: "scanned prefixes", perMinute: 1, measure: (c) => c.scan.prefixes },
  {
    what: "legal boundary probes ok",
    perMinute: 1,
    measure: (c) => c.boundary["put-get"] + c.boundary["append-to-limit"] + c.boundary.cas,
  },
  { what: "1 MiB put-get probes ok", perMinute: 1 / 3, measure: (c) => c.boundary["put-get"] },
  {
    what: "append-to-the-limit probes ok",
    perMinute: 1 / 3,
    measure: (c) => c.boundary["append-to-limit"],
  },
  { what: "1 MiB compare-and-swap probes ok", perMinute: 1 / 3, measure: (c) => c.boundary.cas },
];

/** A floor's outcome in one run. */
export interface FloorResult {
  readonly what: string;
  readonly seen: number;
  readonly floor: number;
}

/**
 * Checks `counts` of a run with `minutes` of faults against `floors` (default
 * {@linkcode FLOORS}): every result, and a problem for each floor not reached.
 */
export function evaluateFloors(
  counts: RunCounts,
  minutes: number,
  floors: readonly Floor[] = FLOORS,
): { results: FloorResult[]; problems: string[] } {
  const results = floors.map((floor) => ({
    what: floor.what,
    seen: floor.measure(counts),
    // A small epsilon keeps 1/3 per minute over 3 minutes at 1, not 0.
    floor: Math.floor(floor.perMinute * minutes + 1e-9),
  }));
  const problems = results.filter((r) => r.seen < r.floor).map((r) =>
    `only ${r.seen} ${r.what} (floor ${r.floor} for ${minutes.toFixed(1)} min of faults)`
  );
  return { results, problems };
}
