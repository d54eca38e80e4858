/**
 * The deployment test's steady write load and its verdicts. Workers append through the load
 * balancer, each to keys of its own, one write at a time at a fixed pace, and record every write
 * with its outcome. Afterwards {@linkcode judgeWrites} checks that every key holds every
 * acknowledged append (nothing lost) and {@linkcode availability} says how the cluster
 * served meanwhile. The judges are pure.
 *
 * @module
 */
import { type ClientSecurity, type RpcFailureKind } from "@tinykv/rpc";
import { text, TinyKvClient, TinyKvError } from "@tinykv/client";

/** One write and how it ended. */
export interface WriteRecord {
  readonly key: string;
  readonly value: string;
  /** Milliseconds on the run's clock. */
  readonly startMs: number;
  readonly endMs: number;
  /**
   * `ok`: acknowledged. `failed`: definitely not applied (the client said so). `unknown`: may or
   * may not have been applied (a timeout, a broken connection after sending).
   */
  readonly outcome: "ok" | "failed" | "unknown";
  /** The failure's kind, when not ok. */
  readonly code?: RpcFailureKind;
}

/** What the final reads found: a key's value, or undefined when absent. */
export type FinalReads = ReadonlyMap<string, string | undefined>;

/** The verdict on durability. */
export interface WritesVerdict {
  readonly keys: number;
  readonly acknowledged: number;
  /** Keys that hold every acknowledged write, in order, and nothing they should not. */
  readonly latest: number;
  /** Writes of unknown outcome found applied (allowed). */
  readonly unknownApplied: number;
  /** What is wrong: a lost or unexplained value per key. */
  readonly problems: readonly string[];
}

/** What separates the tokens the workers append to a key. */
export const TOKEN_SEPARATOR = "|";

/**
 * Checks each key's final value against its history of appends (each write appends
 * `TOKEN_SEPARATOR + value`, a value unique to the write), so that every acknowledged write is
 * checked, not only each key's last one: every acknowledged token is there exactly once and in
 * the order the writes were made (one write in flight per key at a time); a token of unknown
 * outcome may be there at most once, anywhere after its write started; a definitely failed
 * token, a repeated token or one nobody wrote is a problem.
 */
export function judgeWrites(history: readonly WriteRecord[], reads: FinalReads): WritesVerdict {
  const byKey = new Map<string, WriteRecord[]>();
  for (const record of history) {
    const list = byKey.get(record.key) ?? [];
    list.push(record);
    byKey.set(record.key, list);
  }
  let acknowledged = 0;
  let latest = 0;
  let unknownApplied = 0;
  const problems: string[] = [];
  for (const [key, records] of byKey) {
    const written = new Map(records.map((r) => [r.value, r]));
    acknowledged += records.filter((r) => r.outcome === "ok").length;
    if (!reads.has(key)) {
      problems.push(`key ${key}: not read back`);
      continue;
    }
    const tokens = (reads.get(key) ?? "").split(TOKEN_SEPARATOR).slice(1);
    const seen = new Set<string>();
    const before = problems.length;
    let lastAckedStart = -Infinity;
    for (const token of tokens) {
      const record = written.get(token);
      if (record === undefined) problems.push(`key ${key}: holds "${token}", which nobody wrote`);
      else if (seen.has(token)) problems.push(`key ${key}: holds "${token}" twice`);
      else if (record.outcome === "failed") {
        problems.push(`key ${key}: holds "${token}", a write that definitely failed`);
      } else if (record.outcome === "ok") {
        if (record.startMs < lastAckedStart) {
          problems.push(`key ${key}: acknowledged "${token}" is out of order`);
        }
        lastAckedStart = record.startMs;
      } else unknownApplied++;
      seen.add(token);
    }
    for (const record of records) {
      if (record.outcome === "ok" && !seen.has(record.value)) {
        problems.push(`key ${key}: acknowledged write "${record.value}" is lost`);
      }
    }
    if (problems.length === before) latest++;
  }
  return { keys: byKey.size, acknowledged, latest, unknownApplied, problems };
}

/** How the cluster served the load. */
export interface Availability {
  readonly attempts: number;
  readonly acknowledged: number;
  readonly failed: number;
  readonly unknown: number;
  /** Failures and unknowns by kind. */
  readonly codes: Readonly<Record<string, number>>;
  /** Acknowledged / attempts. */
  readonly ratio: number;
  /** The longest time in [fromMs, toMs] without an acknowledgement ending. */
  readonly longestGapMs: number;
  /** Where it began. */
  readonly longestGapAtMs: number;
  /** The slowest acknowledged write. */
  readonly slowestAckMs: number;
}

/** Availability of the writes that started in `[fromMs, toMs]`. */
export function availability(
  history: readonly WriteRecord[],
  fromMs: number,
  toMs: number,
): Availability {
  const within = history.filter((r) => r.startMs >= fromMs && r.startMs <= toMs);
  const acked = within.filter((r) => r.outcome === "ok");
  const codes: Record<string, number> = {};
  for (const r of within) {
    if (r.outcome !== "ok") codes[r.code ?? "?"] = (codes[r.code ?? "?"] ?? 0) + 1;
  }
  const ends = acked.map((r) => r.endMs).filter((t) => t >= fromMs && t <= toMs).sort((a, b) =>
    a - b
  );
  let longestGapMs = 0;
  let longestGapAtMs = fromMs;
  let previous = fromMs;
  for (const end of [...ends, toMs]) {
    if (end - previous > longestGapMs) {
      longestGapMs = end - previous;
      longestGapAtMs = previous;
    }
    previous = end;
  }
  return {
    attempts: within.length,
    acknowledged: acked.length,
    failed: within.filter((r) => r.outcome === "failed").length,
    unknown: within.filter((r) => r.outcome === "unknown").length,
    codes,
    ratio: within.length === 0 ? 0 : acked.length / within.length,
    longestGapMs,
    longestGapAtMs,
    slowestAckMs: Math.max(0, ...acked.map((r) => r.endMs - r.startMs)),
  };
}

/** Options of {@linkcode WriteLoad}. */
export interface WriteLoadOptions {
  /** The load balancer's address, `host:port`. */
  readonly endpoint: string;
  readonly security: ClientSecurity;
  readonly workers: number;
  readonly keysPerWorker: number;
  /** Each worker's pace: at most this many writes a second. */
  readonly writesPerSecond: number;
  /** The run's clock. */
  readonly now: () => number;
}

/** Workers writing through one endpoint until stopped; see the module doc. */
export class WriteLoad {
  readonly history: WriteRecord[] = [];
  readonly #options: WriteLoadOptions;
  readonly #clients: TinyKvClient[] = [];
  #running: Promise<void>[] = [];
  #stopped = false;

  constructor(options: WriteLoadOptions) {
    this.#options = options;
  }

  /** Every key the workers write. */
  get keys(): string[] {
    const { workers, keysPerWorker } = this.#options;
    return Array.from({ length: workers * keysPerWorker }, (_, i) => keyOf(i % workers, i));
  }

  start(): void {
    for (let w = 0; w < this.#options.workers; w++) {
      // One client (its own session and TCP connection through the balancer) per worker.
      const client = TinyKvClient.connect({
        endpoints: [this.#options.endpoint],
        security: this.#options.security,
        deadlineMs: 5000,
      });
      this.#clients.push(client);
      this.#running.push(this.#work(w, client));
    }
  }

  async #work(worker: number, client: TinyKvClient): Promise<void> {
    const { keysPerWorker, writesPerSecond, now, workers } = this.#options;
    const periodMs = 1000 / writesPerSecond;
    for (let seq = 0; !this.#stopped; seq++) {
      const key = keyOf(worker, worker + workers * (seq % keysPerWorker));
      const value = `w${worker}-s${seq}`;
      const startMs = now();
      try {
        await client.append(key, `${TOKEN_SEPARATOR}${value}`);
        this.history.push({ key, value, startMs, endMs: now(), outcome: "ok" });
      } catch (error) {
        if (!(error instanceof TinyKvError)) throw error;
        this.history.push({
          key,
          value,
          startMs,
          endMs: now(),
          outcome: error.outcomeUnknown ? "unknown" : "failed",
          code: error.code,
        });
      }
      const wait = startMs + periodMs - now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /** Stops the workers after their write in flight; closes the clients. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#running);
    this.#running = [];
    for (const client of this.#clients) client.close();
    this.#clients.length = 0;
  }
}

/** After this many failed final reads, {@linkcode readAll} stops. */
export const READ_FAILURES_MAX = 10;

/** Worker `w`'s key number `i` (hash-tag free, so the keys spread over the shards). */
function keyOf(w: number, i: number): string {
  return `deploy/w${w}/k${i}`;
}

/**
 * Reads every key through `endpoint` (linearizable reads), `parallel` at a time; a key whose read
 * fails after the client's retries is left out (the judge reports it). After
 * {@linkcode READ_FAILURES_MAX} failures it stops reading: the cluster does not serve.
 */
export async function readAll(
  keys: readonly string[],
  options: { endpoint: string; security: ClientSecurity; parallel: number },
): Promise<{ reads: Map<string, string | undefined>; failures: string[] }> {
  const client = TinyKvClient.connect({
    endpoints: [options.endpoint],
    security: options.security,
    deadlineMs: 10_000,
  });
  const reads = new Map<string, string | undefined>();
  const failures: string[] = [];
  const queue = [...keys];
  try {
    await Promise.all(Array.from({ length: options.parallel }, async () => {
      for (let key = queue.shift(); key !== undefined; key = queue.shift()) {
        if (failures.length >= READ_FAILURES_MAX) return;
        try {
          const got = await client.get(key);
          reads.set(key, got.found ? text(got.value) : undefined);
        } catch (error) {
          failures.push(`${key}: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    }));
  } finally {
    client.close();
  }
  return { reads, failures };
}
