/**
 * The fault test's clients: concurrent workers that talk to the cluster only through the
 * gateways (with {@linkcode TinyKvClient}, which fails over between them) and record every
 * operation with its invoke and completion time on one monotonic clock.
 *
 * - **register**: get, put, delete and compare-and-swap on a few keys at a time; the keys rotate
 *   every `rotateMs`, so no key's history outgrows what the linearizability search handles.
 * - **append**: unique tokens appended to a few keys (rotating too), and reads of whole keys.
 * - **scan**: insert-only writes of unique keys under a prefix, and paged scans of that prefix.
 *
 * A call that fails without any chance of having applied is `failed`; one that may have applied
 * (the client says `outcomeUnknown`) is `unknown`, and the worker then continues under a new
 * history client id, as a crashed Jepsen process would.
 *
 * @module
 */
import { type Bytes, text, TinyKvClient, TinyKvError } from "@tinykv/client";
import type { ClientSecurity } from "@tinykv/rpc";
import type { Operation, RegisterInput, RegisterOutput } from "@tinykv/lincheck";
import { SimRandom } from "../sim/random.ts";
import type { AppendOp, Outcome, ScanRead, ScanWrite } from "./checks.ts";

/** A successful read of an append key, before its value is split into tokens. */
export interface ValueRead {
  readonly client: string;
  readonly key: string;
  readonly invoke: number;
  readonly complete: number;
  readonly value: string;
}

/** How long one call may take, retries included. */
export const CALL_DEADLINE_MS = 4000;
const SCAN_PAGE_SIZE = 25;

/** What the workers recorded. */
export class History {
  readonly register: Operation<RegisterInput, RegisterOutput>[] = [];
  /** Register operations that certainly failed (not part of the checked history). */
  registerFailed = 0;
  registerUnknown = 0;
  readonly appends: AppendOp[] = [];
  readonly reads: ValueRead[] = [];
  readonly scanWrites: ScanWrite[] = [];
  readonly scans: ScanRead[] = [];
  /** Operations that completed with an answer, by workload. */
  readonly completed = { register: 0, append: 0, scan: 0 };
  /** Every call's invoke time, how long it took and whether it succeeded, for availability. */
  readonly calls: Array<{ invoke: number; ms: number; ok: boolean }> = [];
  /** Errors other than the client's typed ones (a bug in the test or the client). */
  readonly unexpected: string[] = [];
}

/** How many workers of each kind, and how often keys rotate. */
export interface WorkloadOptions {
  readonly endpoints: readonly string[];
  /** TLS and the client's token. */
  readonly security?: ClientSecurity;
  readonly seed: number;
  readonly registerWorkers: number;
  readonly appendWorkers: number;
  readonly scanWriters: number;
  readonly scanReaders: number;
  readonly rotateMs: number;
  /** The clock every time is read from (ms, monotonic). */
  readonly now: () => number;
}

type Attempt<T> = { kind: "ok"; value: T } | { kind: Outcome & ("failed" | "unknown") };

/** Runs the workers until {@linkcode stop}. */
export class Workloads {
  readonly history = new History();
  readonly #options: WorkloadOptions;
  readonly #clients: TinyKvClient[] = [];
  readonly #workers: Promise<void>[] = [];
  #stopped = false;

  constructor(options: WorkloadOptions) {
    this.#options = options;
  }

  /** Starts every worker. */
  start(): void {
    const o = this.#options;
    const seeds = new SimRandom(o.seed);
    const spawn = (
      name: string,
      body: (client: TinyKvClient, random: SimRandom) => Promise<void>,
    ) => {
      const client = TinyKvClient.connect({
        endpoints: o.endpoints,
        deadlineMs: CALL_DEADLINE_MS,
        security: o.security,
      });
      this.#clients.push(client);
      const random = new SimRandom(seeds.seed());
      this.#workers.push(
        body(client, random).catch((error) => {
          this.history.unexpected.push(`${name}: ${error?.stack ?? error}`);
        }),
      );
    };
    for (let i = 0; i < o.registerWorkers; i++) {
      spawn(`register ${i}`, (c, r) => this.#register(`r${i}`, c, r));
    }
    for (let i = 0; i < o.appendWorkers; i++) {
      spawn(`append ${i}`, (c, r) => this.#append(`a${i}`, c, r));
    }
    for (let i = 0; i < o.scanWriters; i++) {
      spawn(`scan writer ${i}`, (c, r) => this.#scanWriter(`w${i}`, c, r));
    }
    for (let i = 0; i < o.scanReaders; i++) {
      spawn(`scanner ${i}`, (c) => this.#scanner(`s${i}`, c));
    }
  }

  /** Stops the workers after their current call and closes the clients. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#workers);
    for (const client of this.#clients) client.close();
  }

  /** The key generation now: keys rotate every `rotateMs`. */
  #generation(): number {
    return Math.floor(this.#options.now() / this.#options.rotateMs);
  }

  /** Runs `call`, classifying its failure; records availability. */
  async #attempt<T>(call: () => Promise<T>, invoke: number): Promise<Attempt<T>> {
    try {
      const value = await call();
      this.history.calls.push({ invoke, ms: this.#options.now() - invoke, ok: true });
      return { kind: "ok", value };
    } catch (error) {
      this.history.calls.push({ invoke, ms: this.#options.now() - invoke, ok: false });
      if (error instanceof TinyKvError) {
        return { kind: error.outcomeUnknown ? "unknown" : "failed" };
      }
      this.history.unexpected.push(`call failed with a non-client error: ${error}`);
      return { kind: "unknown" };
    }
  }

  async #register(name: string, client: TinyKvClient, random: SimRandom): Promise<void> {
    const h = this.history;
    const now = this.#options.now;
    let incarnation = 0;
    let counter = 0;
    const seen = new Map<string, string | null>();
    while (!this.#stopped) {
      const key = `r/${this.#generation()}/${random.int(5)}`;
      const roll = random.next();
      const fresh = `${name}-${counter++}`;
      let input: RegisterInput;
      let call: () => Promise<RegisterOutput>;
      if (roll < 0.4) {
        input = { kind: "get", key };
        call = async () => {
          const got = await client.get(key);
          return { kind: "get", value: got.found ? text(got.value) : null };
        };
      } else if (roll < 0.7) {
        input = { kind: "put", key, value: fresh };
        call = async () => (await client.put(key, fresh), { kind: "put" });
      } else if (roll < 0.75) {
        input = { kind: "delete", key };
        call = async () => (await client.delete(key), { kind: "delete" });
      } else {
        const expected = seen.get(key) ?? null;
        input = { kind: "cas", key, expected, next: fresh };
        call = async () => {
          const result = await client.compareAndSwap(
            key,
            expected === null ? { expectAbsent: true } : { expected },
            { value: fresh },
          );
          return { kind: "cas", succeeded: result.succeeded };
        };
      }
      const clientId = `${name}.${incarnation}`;
      const invokeTime = now();
      const outcome = await this.#attempt(call, invokeTime);
      if (outcome.kind === "ok") {
        h.completed.register++;
        const output = outcome.value;
        h.register.push({ clientId, input, output, invokeTime, returnTime: now() });
        if (output.kind === "get") seen.set(key, output.value);
        if (output.kind === "put" && input.kind === "put") seen.set(key, input.value);
        if (output.kind === "cas" && output.succeeded && input.kind === "cas") {
          seen.set(key, input.next);
        }
      } else if (outcome.kind === "unknown") {
        h.registerUnknown++;
        h.register.push({ clientId, input, output: undefined, invokeTime, returnTime: Infinity });
        incarnation++;
      } else {
        h.registerFailed++;
      }
    }
  }

  async #append(name: string, client: TinyKvClient, random: SimRandom): Promise<void> {
    const h = this.history;
    const now = this.#options.now;
    let incarnation = 0;
    let counter = 0;
    while (!this.#stopped) {
      const key = `a/${this.#generation()}/${random.int(4)}`;
      const clientId = `${name}.${incarnation}`;
      const invoke = now();
      if (random.chance(0.25)) {
        const outcome = await this.#attempt(() => client.get(key), invoke);
        if (outcome.kind === "ok") {
          h.completed.append++;
          const value = text(outcome.value.value);
          h.reads.push({ client: clientId, key, invoke, complete: now(), value });
        }
        continue;
      }
      const token = `${name}.${counter++}`;
      const outcome = await this.#attempt(() => client.append(key, `${token};`), invoke);
      const complete = now();
      if (outcome.kind === "ok") h.completed.append++;
      if (outcome.kind === "unknown") incarnation++;
      h.appends.push({
        client: clientId,
        key,
        token,
        invoke,
        complete,
        outcome: outcome.kind,
      });
    }
  }

  async #scanWriter(name: string, client: TinyKvClient, random: SimRandom): Promise<void> {
    const h = this.history;
    const now = this.#options.now;
    let incarnation = 0;
    let counter = 0;
    while (!this.#stopped) {
      const n = counter++;
      // Spread the keys over every shard: the suffix, not the prefix, drives the hash.
      const key = `${scanPrefix(this.#generation())}${name}-${n}-${random.int(1000)}`;
      const value = `v${n}`;
      const invoke = now();
      const outcome = await this.#attempt(() => client.put(key, value), invoke);
      const complete = now();
      if (outcome.kind === "ok") h.completed.scan++;
      if (outcome.kind === "unknown") incarnation++;
      h.scanWrites.push({
        client: `${name}.${incarnation}`,
        key,
        value,
        invoke,
        complete,
        outcome: outcome.kind,
      });
    }
  }

  async #scanner(name: string, client: TinyKvClient): Promise<void> {
    const h = this.history;
    const now = this.#options.now;
    while (!this.#stopped) {
      const prefix = scanPrefix(this.#generation());
      const invoke = now();
      const outcome = await this.#attempt(async () => {
        const entries: Array<[string, string]> = [];
        for await (
          const page of client.scanPages({
            start: prefix,
            end: prefixEnd(prefix),
            pageSize: SCAN_PAGE_SIZE,
          })
        ) {
          for (const kv of page.entries) entries.push([text(kv.key), text(kv.value)]);
        }
        return entries;
      }, invoke);
      if (outcome.kind === "ok") {
        h.completed.scan++;
        h.scans.push({ client: name, prefix, invoke, complete: now(), entries: outcome.value });
      }
    }
  }
}

/** The prefix the scan workload writes under in key generation `generation`. */
export function scanPrefix(generation: number): string {
  return `s/${generation}/`;
}

/** The first key after every key that starts with `prefix` (prefix is ASCII, non-empty). */
export function prefixEnd(prefix: string): Bytes {
  const last = prefix.charCodeAt(prefix.length - 1);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}
