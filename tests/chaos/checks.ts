/**
 * Pure checkers for the histories of the fault (chaos) test: an append workload and a scan
 * workload, each checked against the final state read after the cluster healed.
 *
 * Times are milliseconds of one monotonic clock (`performance.now()` of the test runner):
 * `invoke` is taken before the request is sent and `complete` after the answer arrives, so
 * an operation took effect, if at all, somewhere inside `[invoke, complete]`. "A before B"
 * always means `a.complete < b.invoke` strictly; equal times count as concurrent.
 *
 * **Append workload.** Each key holds an append-only list of unique tokens. Because the
 * list only grows, every linearizable read is a prefix of one sequence, the final list.
 * {@linkcode checkAppends} checks: no phantom token, none read before its append was invoked,
 * no duplicate, no token of a `failed` append; every read is a prefix of the final list and
 * holds every `ok` append that completed before it was invoked; a read that follows another
 * is at least as long; every `ok` token is in the final list (`unknown` ones at most once);
 * and appends ordered in real time are in that order in the final list.
 *
 * **Scan workload.** Writers insert unique keys (each written at most once) under a prefix;
 * scanners concatenate the pages of a scan. {@linkcode checkScans} checks that keys are
 * strictly ascending and unique and under the prefix, that each entry was written (invoked
 * before the scan completed) with that value, that no `failed` write shows, and that a scan
 * holds every key that was visible before it was invoked: an `ok` write that completed
 * before, or a key an earlier scan returned (inserts are never undone). The final scans
 * must hold every such key.
 *
 * **Soundness.** Each rule follows from linearizability of an insert-only store plus the
 * outcome contract (`failed` was certainly not applied, `ok` was applied once, `unknown` at
 * most once), so every problem reported is a real anomaly, never an artifact of concurrency.
 * The checks are not complete: a history can pass and still not be linearizable. Every
 * check is O(n log n) in the size of the history plus the entries read.
 *
 * Each violation is one problem; {@linkcode PROBLEMS_LISTED_MAX} of them are listed, taken
 * in turn from each rule so that a flood of one kind does not hide the others, and
 * `problemCount` counts all. A history that breaks the workload's own contract (a token
 * used twice, `invoke > complete`) is a bug of the test and throws `AssertionError`.
 *
 * @example A lost acknowledged append
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkAppends } from "./checks.ts";
 *
 * const report = checkAppends({
 *   appends: [{ client: "c1", key: "k", token: "t1", invoke: 1, complete: 2, outcome: "ok" }],
 *   reads: [],
 *   finals: new Map([["k", []]]),
 * });
 * assert.equal(report.problemCount, 1);
 * ```
 *
 * @module
 */

import { AssertionError } from "@tinykv/lincheck";

/** How a write ended: `failed` was certainly not applied, `unknown` may or may not have been. */
export type Outcome = "ok" | "failed" | "unknown";

/** One append of `token` to the list at `key`. Tokens are unique and hold no `;`. */
export interface AppendOp {
  readonly client: string;
  readonly key: string;
  readonly token: string;
  readonly invoke: number;
  readonly complete: number;
  readonly outcome: Outcome;
}

/** One successful read of the whole list at `key`, already parsed into tokens. */
export interface ListRead {
  readonly client: string;
  readonly key: string;
  readonly invoke: number;
  readonly complete: number;
  readonly tokens: readonly string[];
}

/** The number of operations of each outcome. */
export interface OutcomeCounts {
  readonly ok: number;
  readonly failed: number;
  readonly unknown: number;
}

/** The verdict of {@linkcode checkAppends}: the history is clean when `problemCount` is 0. */
export interface AppendReport {
  /** Distinct keys seen in appends, reads and finals. */
  readonly keys: number;
  readonly appends: OutcomeCounts;
  readonly reads: number;
  /** At most {@linkcode PROBLEMS_LISTED_MAX} problem messages. */
  readonly problems: string[];
  /** All problems found, listed or not. */
  readonly problemCount: number;
}

/** One insert of `key` with `value`. Each key is written at most once. */
export interface ScanWrite {
  readonly client: string;
  readonly key: string;
  readonly value: string;
  readonly invoke: number;
  readonly complete: number;
  readonly outcome: Outcome;
}

/** One paged scan of `prefix` that completed every page, its pages concatenated. */
export interface ScanRead {
  readonly client: string;
  readonly prefix: string;
  readonly invoke: number;
  readonly complete: number;
  readonly entries: ReadonlyArray<readonly [key: string, value: string]>;
}

/** The verdict of {@linkcode checkScans}: the history is clean when `problemCount` is 0. */
export interface ScanReport {
  /** Distinct prefixes seen in scans and finals. */
  readonly prefixes: number;
  readonly writes: OutcomeCounts;
  readonly scans: number;
  /** At most {@linkcode PROBLEMS_LISTED_MAX} problem messages. */
  readonly problems: string[];
  /** All problems found, listed or not. */
  readonly problemCount: number;
}

/** How many problem messages a report lists; the rest are only counted. */
export const PROBLEMS_LISTED_MAX = 50;

/** The tokens of a list value, or why the value is malformed. */
export type ParseTokensResult =
  | { readonly kind: "ok"; readonly tokens: string[] }
  | { readonly kind: "malformed"; readonly problem: string };

/**
 * Splits a list value into its tokens: `"a;b;"` gives `["a", "b"]` and `""` gives `[]`. A
 * value that does not end in `;`, or holds an empty token, is malformed: appends of whole
 * tokens can never produce it.
 */
export function parseTokens(value: string): ParseTokensResult {
  if (value === "") return { kind: "ok", tokens: [] };
  if (!value.endsWith(";")) {
    return { kind: "malformed", problem: `Value does not end in ";": ${quote(value)}` };
  }
  const tokens = value.slice(0, -1).split(";");
  const empty = tokens.indexOf("");
  if (empty >= 0) {
    return {
      kind: "malformed",
      problem: `Value holds an empty token at position ${empty}: ${quote(value)}`,
    };
  }
  return { kind: "ok", tokens };
}

// ---------------------------------------------------------------------------------------
// Append workload.

/**
 * Checks an append history against the rules in the module doc. `finals` must hold the
 * final list of every key appended to; reads must be successful ones.
 */
export function checkAppends(input: {
  readonly appends: readonly AppendOp[];
  readonly reads: readonly ListRead[];
  readonly finals: ReadonlyMap<string, readonly string[]>;
}): AppendReport {
  const log = new ProblemLog();
  const appendsByKey = groupBy(input.appends, (a) => a.key);
  const readsByKey = groupBy(input.reads, (r) => r.key);
  const keys = [...new Set([...appendsByKey.keys(), ...readsByKey.keys(), ...input.finals.keys()])]
    .sort();
  for (const key of keys) {
    checkAppendKey({
      key,
      appends: appendsByKey.get(key) ?? [],
      reads: readsByKey.get(key) ?? [],
      final: input.finals.get(key),
    }, log);
  }
  return {
    keys: keys.length,
    appends: countOutcomes(input.appends),
    reads: input.reads.length,
    problems: log.listed(),
    problemCount: log.count,
  };
}

interface AppendKeyHistory {
  readonly key: string;
  readonly appends: readonly AppendOp[];
  readonly reads: readonly ListRead[];
  readonly final: readonly string[] | undefined;
}

function checkAppendKey(history: AppendKeyHistory, log: ProblemLog): void {
  const { key, appends, reads, final } = history;
  const byToken = indexAppends(key, appends);
  for (const read of reads) {
    checkTimes(read.invoke, read.complete, `a read by client ${quote(read.client)}`);
    checkReadTokens(key, read, byToken, log);
  }
  checkStaleReads(key, reads, appends, log);
  checkMonotoneReads(key, reads, log);
  if (final === undefined) {
    if (appends.length > 0) {
      log.add(
        "missingFinal",
        `Key ${quote(key)} has no final read: ${appends.length} appends were made to it`,
      );
    }
    return;
  }
  for (const read of reads) checkReadIsPrefix(key, read, final, log);
  checkFinalList(key, final, byToken, log);
  checkFinalOrder(key, final, byToken, log);
}

function indexAppends(key: string, appends: readonly AppendOp[]): Map<string, AppendOp> {
  const byToken = new Map<string, AppendOp>();
  for (const append of appends) {
    checkTimes(append.invoke, append.complete, describeAppend(append));
    assert(
      append.token !== "" && !append.token.includes(";"),
      `Cannot check key ${quote(key)}: token ${quote(append.token)} is empty or holds ";"`,
    );
    const other = byToken.get(append.token);
    assert(
      other === undefined,
      `Cannot check key ${quote(key)}: token ${quote(append.token)} is appended twice: ` +
        `${other === undefined ? "" : describeAppend(other)} and ${describeAppend(append)}`,
    );
    byToken.set(append.token, append);
  }
  return byToken;
}

// Phantom, failed, future and duplicate tokens of one read.
function checkReadTokens(
  key: string,
  read: ListRead,
  byToken: ReadonlyMap<string, AppendOp>,
  log: ProblemLog,
): void {
  const subject = `Key ${quote(key)}: ${describeRead(read)}`;
  const seen = new Map<string, number>();
  read.tokens.forEach((token, position) => {
    const first = seen.get(token);
    if (first !== undefined) {
      log.add(
        "duplicate",
        `${subject} holds token ${quote(token)} twice, at positions ${first} and ${position}`,
      );
      return;
    }
    seen.set(token, position);
    const append = byToken.get(token);
    if (append === undefined) {
      log.add("phantom", `${subject} holds phantom token ${quote(token)}: nothing appended it`);
    } else if (append.outcome === "failed") {
      log.add(
        "failedVisible",
        `${subject} holds token ${quote(token)} of ${describeAppend(append)}`,
      );
    } else if (append.invoke > read.complete) {
      log.add(
        "future",
        `${subject} holds token ${quote(token)} before it was appended: ${describeAppend(append)}`,
      );
    }
  });
}

function checkReadIsPrefix(
  key: string,
  read: ListRead,
  final: readonly string[],
  log: ProblemLog,
): void {
  const subject = `Key ${quote(key)}: ${describeRead(read)} is not a prefix of the final list`;
  for (let i = 0; i < read.tokens.length; i++) {
    if (i >= final.length) {
      log.add(
        "notPrefix",
        `${subject}: it holds ${read.tokens.length} tokens, the final list ${final.length}`,
      );
      return;
    }
    if (read.tokens[i] !== final[i]) {
      log.add(
        "notPrefix",
        `${subject}: position ${i} holds ${quote(read.tokens[i])} where the final list holds ` +
          quote(final[i]),
      );
      return;
    }
  }
}

// An `ok` append that completed before a read was invoked must be in the read. Counting
// first keeps a clean read O(its length + log appends); only a stale one enumerates.
function checkStaleReads(
  key: string,
  reads: readonly ListRead[],
  appends: readonly AppendOp[],
  log: ProblemLog,
): void {
  const acked = appends.filter((a) => a.outcome === "ok").sort((a, b) => a.complete - b.complete);
  const completes = acked.map((a) => a.complete);
  const ackedTokens = new Map(acked.map((a) => [a.token, a]));
  for (const read of reads) {
    const required = countBelow(completes, read.invoke);
    const tokens = new Set(read.tokens);
    let present = 0;
    for (const token of tokens) {
      const append = ackedTokens.get(token);
      if (append !== undefined && append.complete < read.invoke) present++;
    }
    if (present === required) continue;
    for (const append of acked.slice(0, required)) {
      if (tokens.has(append.token)) continue;
      log.add(
        "staleRead",
        `Key ${quote(key)}: ${describeRead(read)} misses token ${quote(append.token)}: ` +
          `${describeAppend(append)} completed before the read was invoked`,
      );
    }
  }
}

// A read that starts after another one ended must be at least as long. Sweeping the reads
// by invoke time while folding in those that completed earlier makes this O(r log r).
function checkMonotoneReads(key: string, reads: readonly ListRead[], log: ProblemLog): void {
  const byInvoke = [...reads].sort((a, b) => a.invoke - b.invoke);
  const byComplete = [...reads].sort((a, b) => a.complete - b.complete);
  let longest: ListRead | undefined;
  let next = 0;
  for (const read of byInvoke) {
    while (next < byComplete.length && byComplete[next].complete < read.invoke) {
      const earlier = byComplete[next++];
      if (longest === undefined || earlier.tokens.length > longest.tokens.length) longest = earlier;
    }
    if (longest !== undefined && longest.tokens.length > read.tokens.length) {
      log.add(
        "shrinkingRead",
        `Key ${quote(key)}: ${describeRead(read)} is shorter than the earlier ` +
          `${describeRead(longest)}, which completed before it was invoked`,
      );
    }
  }
}

// Phantom, failed, duplicate and lost tokens of the final list.
function checkFinalList(
  key: string,
  final: readonly string[],
  byToken: ReadonlyMap<string, AppendOp>,
  log: ProblemLog,
): void {
  const subject = `Key ${quote(key)}: the final list (${final.length} tokens)`;
  const seen = new Map<string, number>();
  final.forEach((token, position) => {
    const first = seen.get(token);
    const append = byToken.get(token);
    if (first !== undefined) {
      const by = append === undefined ? "" : `; ${describeAppend(append)}`;
      log.add(
        "duplicate",
        `${subject} holds token ${quote(token)} twice, at positions ${first} and ${position}${by}`,
      );
      return;
    }
    seen.set(token, position);
    if (append === undefined) {
      log.add("phantom", `${subject} holds phantom token ${quote(token)}: nothing appended it`);
    } else if (append.outcome === "failed") {
      log.add(
        "failedVisible",
        `${subject} holds token ${quote(token)} of ${describeAppend(append)}`,
      );
    }
  });
  for (const append of byToken.values()) {
    if (append.outcome === "ok" && !seen.has(append.token)) {
      log.add(
        "lost",
        `${subject} misses token ${quote(append.token)} of ${describeAppend(append)}`,
      );
    }
  }
}

// If a completed before b was invoked, a's token must come first. Walking the list in order
// with the latest invoke time so far, a token is out of order when its append completed
// before some earlier-placed token's append was invoked.
function checkFinalOrder(
  key: string,
  final: readonly string[],
  byToken: ReadonlyMap<string, AppendOp>,
  log: ProblemLog,
): void {
  let latest: AppendOp | undefined;
  const seen = new Set<string>();
  for (const token of final) {
    const append = byToken.get(token);
    // Phantom, failed and duplicate tokens are reported by checkFinalList already.
    if (append === undefined || append.outcome === "failed" || seen.has(token)) continue;
    seen.add(token);
    // An `unknown` append may take effect long after its client gave up: no upper bound.
    const done = append.outcome === "ok" ? append.complete : Infinity;
    if (latest !== undefined && done < latest.invoke) {
      log.add(
        "realTimeOrder",
        `Key ${quote(key)}: the final list places token ${quote(latest.token)} before ` +
          `${quote(token)}, but ${describeAppend(append)} completed before ` +
          `${describeAppend(latest)} was invoked`,
      );
    }
    if (latest === undefined || append.invoke > latest.invoke) latest = append;
  }
}

// ---------------------------------------------------------------------------------------
// Scan workload.

/**
 * Checks a scan history against the rules in the module doc. `finals` maps each prefix to
 * the entries of a full scan of it made after the cluster healed; together the prefixes
 * must cover every key that was written `ok` or seen.
 */
export function checkScans(input: {
  readonly writes: readonly ScanWrite[];
  readonly scans: readonly ScanRead[];
  readonly finals: ReadonlyMap<string, ReadonlyArray<readonly [string, string]>>;
}): ScanReport {
  const log = new ProblemLog();
  const writes = indexWrites(input.writes);
  for (const scan of input.scans) {
    checkTimes(scan.invoke, scan.complete, `a scan by client ${quote(scan.client)}`);
    checkEntries(`Prefix ${quote(scan.prefix)}: ${describeScan(scan)}`, scan.prefix, scan.entries, {
      writes,
      log,
      scan,
    });
  }
  const visible = visibleKeys(input.writes, input.scans, writes);
  const required = new RequiredKeys(visible);
  for (const scan of input.scans) checkScanComplete(scan, required, log);
  const sortedFinals = [...input.finals].sort(([a], [b]) => compareKeys(a, b));
  for (const [prefix, entries] of sortedFinals) {
    checkEntries(`Prefix ${quote(prefix)}: the final scan`, prefix, entries, { writes, log });
    checkFinalComplete(prefix, entries, required, log);
  }
  checkFinalsCover(visible, [...input.finals.keys()], log);
  const prefixes = new Set([...input.scans.map((s) => s.prefix), ...input.finals.keys()]);
  return {
    prefixes: prefixes.size,
    writes: countOutcomes(input.writes),
    scans: input.scans.length,
    problems: log.listed(),
    problemCount: log.count,
  };
}

function indexWrites(writes: readonly ScanWrite[]): Map<string, ScanWrite> {
  const byKey = new Map<string, ScanWrite>();
  for (const write of writes) {
    checkTimes(write.invoke, write.complete, describeWrite(write));
    const other = byKey.get(write.key);
    assert(
      other === undefined,
      `Cannot check scans: key ${quote(write.key)} is written twice: ` +
        `${other === undefined ? "" : describeWrite(other)} and ${describeWrite(write)}`,
    );
    byKey.set(write.key, write);
  }
  return byKey;
}

interface EntryContext {
  readonly writes: ReadonlyMap<string, ScanWrite>;
  readonly log: ProblemLog;
  /** The scan that returned the entries, or none for a final scan (after every write). */
  readonly scan?: ScanRead;
}

// Keys are ASCII, so comparing JavaScript strings (UTF-16 code units) with `<` gives the
// same order as the store's UTF-8 byte order.
function checkEntries(
  subject: string,
  prefix: string,
  entries: ReadonlyArray<readonly [string, string]>,
  context: EntryContext,
): void {
  const { writes, log } = context;
  const seen = new Map<string, number>();
  entries.forEach(([key, value], position) => {
    const first = seen.get(key);
    if (first !== undefined) {
      log.add(
        "duplicate",
        `${subject} returns key ${quote(key)} twice, at positions ${first} and ${position}`,
      );
      return;
    }
    seen.set(key, position);
    if (position > 0 && compareKeys(entries[position - 1][0], key) > 0) {
      log.add(
        "scanOrder",
        `${subject} returns key ${quote(key)} at position ${position} after ` +
          `${quote(entries[position - 1][0])}: keys are not strictly ascending`,
      );
    }
    if (!key.startsWith(prefix)) {
      log.add("outsidePrefix", `${subject} returns key ${quote(key)}, which lacks the prefix`);
    }
    checkEntryWrite(`${subject} returns key ${quote(key)}`, value, writes.get(key), context);
  });
}

function checkEntryWrite(
  subject: string,
  value: string,
  write: ScanWrite | undefined,
  { log, scan }: EntryContext,
): void {
  if (write === undefined) {
    log.add("phantom", `${subject}, which nothing wrote`);
  } else if (write.outcome === "failed") {
    log.add("failedVisible", `${subject} of ${describeWrite(write)}`);
  } else if (scan !== undefined && write.invoke > scan.complete) {
    log.add("future", `${subject} before it was written: ${describeWrite(write)}`);
  } else if (write.value !== value) {
    log.add("wrongValue", `${subject} with value ${quote(value)}, but ${describeWrite(write)}`);
  }
}

/** A key that every scan invoked after `since` must return, and why. */
interface VisibleKey {
  readonly key: string;
  readonly since: number;
  readonly because: string;
}

// The earliest moment each key was surely in the store: an `ok` write completed, or a scan
// returned it. Inserts are never undone, so from then on every scan must return it. Keys of
// failed writes, phantoms and keys seen before their write was invoked are left out: they
// are reported by checkEntries, and counting them again would only repeat that.
function visibleKeys(
  writeList: readonly ScanWrite[],
  scans: readonly ScanRead[],
  writes: ReadonlyMap<string, ScanWrite>,
): VisibleKey[] {
  const visible = new Map<string, VisibleKey>();
  for (const write of writeList) {
    if (write.outcome !== "ok") continue;
    visible.set(write.key, {
      key: write.key,
      since: write.complete,
      because: `${describeWrite(write)} completed`,
    });
  }
  for (const scan of scans) {
    for (const [key] of scan.entries) {
      const write = writes.get(key);
      if (write === undefined || write.outcome === "failed" || write.invoke > scan.complete) {
        continue;
      }
      const known = visible.get(key);
      if (known !== undefined && known.since <= scan.complete) continue;
      visible.set(key, {
        key,
        since: scan.complete,
        because: `the ${describeScan(scan)} returned it`,
      });
    }
  }
  return [...visible.values()];
}

// The visible keys under each prefix, sorted by `since` so that a binary search counts the
// keys a scan must return.
class RequiredKeys {
  readonly #byKey: ReadonlyMap<string, VisibleKey>;
  readonly #byPrefix = new Map<string, { keys: VisibleKey[]; sinces: number[] }>();

  constructor(visible: readonly VisibleKey[]) {
    this.#byKey = new Map(visible.map((v) => [v.key, v]));
  }

  /** When `key` became visible, or `Infinity` if it never surely did. */
  since(key: string): number {
    return this.#byKey.get(key)?.since ?? Infinity;
  }

  /** The keys under `prefix`, earliest visible first. */
  under(prefix: string): { keys: VisibleKey[]; sinces: number[] } {
    let entry = this.#byPrefix.get(prefix);
    if (entry === undefined) {
      const keys = [...this.#byKey.values()].filter((v) => v.key.startsWith(prefix))
        .sort((a, b) => a.since - b.since || compareKeys(a.key, b.key));
      entry = { keys, sinces: keys.map((v) => v.since) };
      this.#byPrefix.set(prefix, entry);
    }
    return entry;
  }
}

// Counting first keeps a complete scan O(its length + log keys); only a stale one enumerates.
function checkScanComplete(scan: ScanRead, required: RequiredKeys, log: ProblemLog): void {
  const { keys, sinces } = required.under(scan.prefix);
  const count = countBelow(sinces, scan.invoke);
  const returned = new Set(scan.entries.map(([key]) => key));
  let present = 0;
  for (const key of returned) {
    if (key.startsWith(scan.prefix) && required.since(key) < scan.invoke) present++;
  }
  if (present === count) return;
  for (const visible of keys.slice(0, count)) {
    if (returned.has(visible.key)) continue;
    log.add(
      "staleRead",
      `Prefix ${quote(scan.prefix)}: ${describeScan(scan)} misses key ${quote(visible.key)}: ` +
        `${visible.because} before this scan was invoked`,
    );
  }
}

function checkFinalComplete(
  prefix: string,
  entries: ReadonlyArray<readonly [string, string]>,
  required: RequiredKeys,
  log: ProblemLog,
): void {
  const returned = new Set(entries.map(([key]) => key));
  for (const visible of required.under(prefix).keys) {
    if (returned.has(visible.key)) continue;
    log.add(
      "lost",
      `Prefix ${quote(prefix)}: the final scan misses key ${quote(visible.key)}: ` +
        visible.because,
    );
  }
}

function checkFinalsCover(
  visible: readonly VisibleKey[],
  prefixes: readonly string[],
  log: ProblemLog,
): void {
  for (const { key, because } of visible) {
    if (prefixes.some((prefix) => key.startsWith(prefix))) continue;
    log.add("missingFinal", `Key ${quote(key)}: no final scan covers it, yet ${because}`);
  }
}

// ---------------------------------------------------------------------------------------
// Shared helpers.

type Rule =
  | "missingFinal"
  | "phantom"
  | "future"
  | "failedVisible"
  | "duplicate"
  | "notPrefix"
  | "staleRead"
  | "shrinkingRead"
  | "lost"
  | "realTimeOrder"
  | "scanOrder"
  | "outsidePrefix"
  | "wrongValue";

// Counts every problem and keeps the first PROBLEMS_LISTED_MAX of each rule; the listing
// takes them from each rule in turn.
class ProblemLog {
  readonly #byRule = new Map<Rule, string[]>();
  #count = 0;

  get count(): number {
    return this.#count;
  }

  add(rule: Rule, message: string): void {
    this.#count++;
    let messages = this.#byRule.get(rule);
    if (messages === undefined) {
      messages = [];
      this.#byRule.set(rule, messages);
    }
    if (messages.length < PROBLEMS_LISTED_MAX) messages.push(message);
  }

  listed(): string[] {
    const listed: string[] = [];
    const lists = [...this.#byRule.values()];
    for (let round = 0; listed.length < PROBLEMS_LISTED_MAX; round++) {
      const before = listed.length;
      for (const messages of lists) {
        if (round < messages.length && listed.length < PROBLEMS_LISTED_MAX) {
          listed.push(messages[round]);
        }
      }
      if (listed.length === before) break;
    }
    return listed;
  }
}

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

function checkTimes(invoke: number, complete: number, what: string): void {
  assert(
    Number.isFinite(invoke) && Number.isFinite(complete) && invoke <= complete,
    `Cannot check ${what}: its times are not finite with invoke <= complete`,
  );
}

function groupBy<T>(items: readonly T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, [item]);
    else group.push(item);
  }
  return groups;
}

function countOutcomes(ops: readonly { readonly outcome: Outcome }[]): OutcomeCounts {
  const counts = { ok: 0, failed: 0, unknown: 0 };
  for (const op of ops) counts[op.outcome]++;
  return counts;
}

// The number of values in `sorted` (ascending) that are strictly below `bound`.
function countBelow(sorted: readonly number[], bound: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle] < bound) low = middle + 1;
    else high = middle;
  }
  return low;
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function quote(value: string): string {
  return JSON.stringify(value);
}

function ms(time: number): string {
  return `${Number(time.toFixed(3))} ms`;
}

function interval(op: { readonly invoke: number; readonly complete: number }): string {
  return `invoked ${ms(op.invoke)}, completed ${ms(op.complete)}`;
}

function describeAppend(append: AppendOp): string {
  return `the append of ${quote(append.token)} by client ${quote(append.client)} ` +
    `[${interval(append)}, ${append.outcome}]`;
}

function describeRead(read: ListRead): string {
  return `read by client ${quote(read.client)} [${interval(read)}, ${read.tokens.length} tokens]`;
}

function describeWrite(write: ScanWrite): string {
  return `the write of ${quote(write.key)} = ${quote(write.value)} by client ` +
    `${quote(write.client)} [${interval(write)}, ${write.outcome}]`;
}

function describeScan(scan: ScanRead): string {
  return `scan of prefix ${quote(scan.prefix)} by client ${quote(scan.client)} ` +
    `[${interval(scan)}, ${scan.entries.length} entries]`;
}
