/**
 * The KV state machine of one shard replica: applies committed commands (Put, Delete, Append,
 * CompareAndSwap) with exactly-once client sessions, serves reads (Get, Scan), hashes its data for
 * comparison across replicas, and serializes itself for snapshots.
 *
 * Everything here is deterministic: the same commands in the same order give the same data, the
 * same answers and the same hash on every replica. Time is the largest leader stamp applied so far
 * (`Command.stampMs`), never a local clock.
 *
 * @module
 */
import { createHash } from "node:crypto";
import {
  type AppendResponse,
  type ClientSession,
  type Command,
  type CompareAndSwapResponse,
  type DeleteResponse,
  type PutResponse,
  type ScanRequest,
  type ScanResponse,
  type SessionResult,
  type TxnCompare,
  TxnCompare_Result,
  TxnCompare_Target,
  TxnOp_Kind,
  type TxnOpResult,
  type TxnRequest,
  type TxnResponse,
} from "@tinykv/proto/tinykv/v1";
import { SessionTable } from "./session_table.ts";
import {
  checkLength,
  checkRequest,
  type HashRange,
  keyHash,
  rangeContains,
  SCAN_BYTES_MAX,
  validateKey,
} from "@tinykv/shard";
import { compareBytes, countPairs, type KvPair, type KvSpace } from "./kv_space.ts";
import {
  type PairSource,
  pieces,
  RecordParser,
  SLICE_BYTES_MAX,
  type SnapshotRecord,
  snapshotRecords,
} from "./snapshot_stream.ts";
import { unreachable } from "./_assert.ts";

/** Sessions idle longer than this (in replicated time) expire, unless the command says otherwise. */
export const SESSION_TTL_MS_DEFAULT = 10 * 60 * 1000;
/** Results one session may hold above its `ack_seq`; beyond it a mutation is refused. */
export const SESSION_RESULTS_MAX = 10_000;
/**
 * Bytes of results one session may hold above its `ack_seq` (a compare-and-swap that did not
 * match keeps the whole current value); at or beyond it a mutation is refused.
 */
export const SESSION_RESULT_BYTES_MAX = 64 * 1024 * 1024;
/** Client sessions one shard keeps (tombstones included); a new client beyond it is refused. */
export const SESSIONS_MAX = 100_000;
/**
 * The value bound of commands written before the leader stamped its own (`Command.value_bytes_max`
 * 0): such an Append past it left the value as it was, as it still does.
 */
export const LEGACY_VALUE_BYTES_MAX = 64 * 1024 * 1024;
/** How often, in replicated time, expired sessions are swept. */
export const SESSION_SWEEP_INTERVAL_MS = 60 * 1000;

export { SCAN_BYTES_MAX };

/** The answer to one mutation. */
export type MutationResult =
  | { readonly kind: "put"; readonly response: PutResponse }
  | { readonly kind: "delete"; readonly response: DeleteResponse }
  | { readonly kind: "append"; readonly response: AppendResponse }
  | { readonly kind: "compareAndSwap"; readonly response: CompareAndSwapResponse }
  | { readonly kind: "txn"; readonly response: TxnResponse };

/** What one mutation did: a result, or a refusal that changed nothing (remembered alike). */
type MutationOutcome = MutationResult | { readonly kind: "refused"; readonly message: string };

/** The outcome of applying one command. Every outcome is deterministic. */
export type ApplyResult =
  | { readonly kind: "ok"; readonly result: MutationResult; readonly duplicate: boolean }
  | { readonly kind: "sessionExpired"; readonly message: string }
  | { readonly kind: "invalid"; readonly message: string }
  | { readonly kind: "resourceExhausted"; readonly message: string };

/** Where a replica's state machine keeps its data, its sessions and its own small records. */
export interface StateMachineSpaces {
  readonly data: KvSpace;
  readonly sessions: KvSpace;
  readonly meta: KvSpace;
}

/** Options of a {@linkcode KvStateMachine}. */
export interface KvStateMachineOptions {
  /** The shard's FNV-1a hash range: keys outside it are refused. */
  readonly range: HashRange;
  /** Idle time after which a session expires, for commands that carry none. */
  readonly sessionTtlMs?: number;
  /** Bounds on client sessions (tests lower them; every replica must use the same). */
  readonly sessionResultBytesMax?: number;
  readonly sessionsMax?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const META_CLOCK = encoder.encode("clock");
const META_SWEPT = encoder.encode("swept");
const META_KEYS = encoder.encode("keys");
const META_BYTES = encoder.encode("bytes");
const META_SESSIONS = encoder.encode("sessions");
const EMPTY = new Uint8Array(0);

/** Pairs hashed between two pauses of {@linkcode hashSpacesInSlices} (or `SLICE_BYTES_MAX`). */
export const HASH_SLICE_PAIRS = 4096;

/**
 * Hashes `spaces` as {@linkcode StateMachine.dataHash} does (SHA-256 over the data, the sessions
 * and the meta space, each named, then its pairs in key order, every piece length-prefixed),
 * yielding after every {@linkcode HASH_SLICE_PAIRS} pairs; returns the hex digest.
 */
export function* hashSpaces(
  spaces: Readonly<Record<"data" | "sessions" | "meta", PairSource>>,
): Generator<void, string> {
  const hash = createHash("sha256");
  const length = new Uint8Array(4);
  const view = new DataView(length.buffer);
  const feed = (bytes: Uint8Array) => {
    view.setUint32(0, bytes.length);
    hash.update(length);
    hash.update(bytes);
  };
  let pairs = 0;
  let bytes = 0;
  for (const tag of ["data", "sessions", "meta"] as const) {
    feed(encoder.encode(tag));
    for (const { key, value } of spaces[tag].scan(EMPTY, undefined)) {
      feed(key);
      feed(value);
      bytes += key.length + value.length;
      if (++pairs === HASH_SLICE_PAIRS || bytes >= SLICE_BYTES_MAX) {
        pairs = 0;
        bytes = 0;
        yield;
      }
    }
  }
  return hash.digest("hex");
}

/**
 * {@linkcode hashSpaces} over a read view, pausing between slices (a timer turn each) so that a
 * hash of a large shard never holds the driver's loop: the caller opens the view between turns.
 */
export async function hashSpacesInSlices(
  spaces: Readonly<Record<"data" | "sessions" | "meta", PairSource>>,
): Promise<string> {
  const hashing = hashSpaces(spaces);
  let step = hashing.next();
  while (step.done !== true) {
    await new Promise((resolve) => setTimeout(resolve, 0));
    step = hashing.next();
  }
  return step.value;
}

/** The KV state machine of one replica. See the module docs. */
export class KvStateMachine {
  readonly #spaces: StateMachineSpaces;
  readonly #range: HashRange;
  readonly #sessionTtlMs: number;
  readonly #sessionResultBytesMax: number;
  readonly #sessionsMax: number;
  /**
   * The meta space's numbers as last read or set through this machine (`null`: absent). Every
   * change of them goes through {@linkcode #setNumber}, so this is the space as it will be after
   * the next {@linkcode flush} (the numbers in {@linkcode #dirtyNumbers} are ahead of it until
   * then), and an apply reads its clock and counters without a store lookup each. A failed write
   * transaction stops the node, so it never holds a number the store rolled back.
   */
  readonly #numbers = new Map<Uint8Array, number | null>();
  /** The numbers of {@linkcode #numbers} changed since the last {@linkcode flush}. */
  readonly #dirtyNumbers = new Set<Uint8Array>();
  /**
   * The session headers read or changed since the last {@linkcode flush}, by client id: a run of
   * applies from one client reads its header once and writes it once (see {@linkcode flush}).
   */
  readonly #sessions = new Map<string, HeldSession>();

  constructor(spaces: StateMachineSpaces, options: KvStateMachineOptions) {
    this.#spaces = spaces;
    this.#range = options.range;
    this.#sessionTtlMs = options.sessionTtlMs ?? SESSION_TTL_MS_DEFAULT;
    this.#sessionResultBytesMax = options.sessionResultBytesMax ?? SESSION_RESULT_BYTES_MAX;
    this.#sessionsMax = options.sessionsMax ?? SESSIONS_MAX;
  }

  /** The replicated clock: the largest command stamp applied so far. */
  get clockMs(): number {
    return this.#number(META_CLOCK) ?? 0;
  }

  /** A number of the meta space (one of the `META_` keys), or `undefined` when it has none. */
  #number(key: Uint8Array): number | undefined {
    let value = this.#numbers.get(key);
    if (value === undefined) {
      const stored = this.#spaces.meta.get(key);
      value = stored === undefined ? null : Number(decoder.decode(stored));
      this.#numbers.set(key, value);
    }
    return value ?? undefined;
  }

  #setNumber(key: Uint8Array, value: number): void {
    this.#numbers.set(key, value);
    this.#dirtyNumbers.add(key);
  }

  /**
   * Writes what the applies since the last flush kept in hand: the meta numbers they changed and
   * the session headers they rewrote, each once however many commands changed it. The caller
   * flushes after each run of applies, inside the same write transaction (the replica does, at the
   * end of its turn's applies), so the records commit with the data they describe. Reads through
   * the machine see the held values at once; {@linkcode dataHash}, {@linkcode records} and
   * {@linkcode serialize}, which read the spaces themselves, flush first.
   */
  flush(): void {
    for (const key of this.#dirtyNumbers) {
      this.#spaces.meta.put(key, encoder.encode(String(this.#numbers.get(key))));
    }
    this.#dirtyNumbers.clear();
    for (const held of this.#sessions.values()) {
      if (held.dirty && held.header !== undefined) held.table.putHeader(held.header);
    }
    this.#sessions.clear();
  }

  /** The client's records and header, as held since the last flush (read once per flush). */
  #session(clientId: string): HeldSession {
    let held = this.#sessions.get(clientId);
    if (held === undefined) {
      const table = new SessionTable(this.#spaces.sessions, clientId);
      held = { table, header: table.header(), dirty: false };
      this.#sessions.set(clientId, held);
    }
    return held;
  }

  /** Checks that `key` is a valid key of this shard; returns a message when it is not. */
  checkKey(key: Uint8Array): string | undefined {
    const size = validateKey(key);
    if (size.kind !== "ok") return size.message;
    const hash = keyHash(key);
    if (!rangeContains(this.#range, hash)) {
      return `Key hashes to ${hash}: outside this shard's range [${this.#range.lo}, ${this.#range.hi})`;
    }
    return undefined;
  }

  /**
   * Applies one committed command. Every limit is checked again here, with the value limit and
   * session TTL the leader stamped into the command, so every replica decides alike.
   */
  apply(command: Command): ApplyResult {
    const now = Math.max(this.clockMs, command.stampMs);
    const ttlMs = command.sessionTtlMs > 0 ? command.sessionTtlMs : this.#sessionTtlMs;
    this.#setNumber(META_CLOCK, now);
    this.#maybeSweep(now, ttlMs);
    const valueBytesMax = command.valueBytesMax > 0
      ? command.valueBytesMax
      : LEGACY_VALUE_BYTES_MAX;
    const op = commandOp(command);
    if (op === undefined) return { kind: "invalid", message: "Command has no operation" };
    const violation = checkRequest({ [op.kind]: op.request }, { valueBytesMax });
    if (violation !== undefined) return { kind: "invalid", message: violation.message };
    const keys = op.kind === "txn"
      ? [...op.request.compares, ...op.request.success, ...op.request.failure].map((e) => e.key)
      : [op.request.key];
    for (const key of keys) {
      const keyProblem = this.checkKey(key);
      if (keyProblem !== undefined) return { kind: "invalid", message: keyProblem };
    }
    const limits = { valueBytesMax, legacy: command.valueBytesMax === 0 };
    const { clientId, seq, ackSeq } = op.request;
    if (clientId === "") return answerOf(this.#mutate(op, limits), false);
    return this.#applyInSession(op, limits, { clientId, seq, ackSeq, now, ttlMs });
  }

  #applyInSession(
    op: Operation,
    limits: Limits,
    request: { clientId: string; seq: number; ackSeq: number; now: number; ttlMs: number },
  ): ApplyResult {
    const { clientId, seq, ackSeq, now, ttlMs } = request;
    const held = this.#session(clientId);
    const sessions = held.table;
    const found = held.header;
    const putHeader = (header: ClientSession) => {
      held.header = header;
      held.dirty = true;
    };
    let session: ClientSession = {
      lastActiveMs: now,
      ackSeq: 0,
      resultCount: 0,
      expired: false,
      resultBytes: 0,
    };
    if (found !== undefined) {
      if (found.expired && found.lastActiveMs + ttlMs >= now) {
        return expired(clientId, "expired");
      }
      if (!found.expired && found.lastActiveMs + ttlMs < now) {
        held.header = sessions.expire(now);
        held.dirty = false;
        return expired(clientId, `was idle for more than ${ttlMs} ms`);
      }
      // A tombstone older than a TTL is forgotten: the client id starts a new session.
      if (!found.expired) session = found;
    } else {
      const count = this.#sessionCount();
      if (count >= this.#sessionsMax) {
        return {
          kind: "resourceExhausted",
          message: `Shard has ${count} client sessions: the limit is ${this.#sessionsMax} ` +
            `(SESSIONS_MAX); client "${clientId}" cannot start one until idle sessions expire`,
        };
      }
      this.#setNumber(META_SESSIONS, count + 1);
    }
    if (seq <= session.ackSeq) {
      return {
        kind: "invalid",
        message: `Request of client "${clientId}" has seq ${seq}: the client acknowledged every ` +
          `seq up to ${session.ackSeq} already`,
      };
    }
    const previous = sessions.result(seq);
    if (previous !== undefined) return answerOf(resultFromSession(previous), true);
    const newAck = Math.max(session.ackSeq, ackSeq);
    const forgotten = sessions.forgetUpTo(session.ackSeq, newAck);
    const kept = {
      ...session,
      ackSeq: newAck,
      resultCount: session.resultCount - forgotten.count,
      resultBytes: session.resultBytes - forgotten.bytes,
    };
    const full = this.#sessionFull(clientId, kept);
    if (full !== undefined) {
      putHeader(kept);
      return { kind: "resourceExhausted", message: full };
    }
    const outcome = this.#mutate(op, limits);
    const stored = sessions.putResult(resultToSession(seq, outcome));
    putHeader({
      lastActiveMs: now,
      ackSeq: newAck,
      resultCount: kept.resultCount + 1,
      expired: false,
      resultBytes: kept.resultBytes + stored,
    });
    return answerOf(outcome, false);
  }

  /** Why a session may not hold another result, if it may not. */
  #sessionFull(clientId: string, session: ClientSession): string | undefined {
    if (session.resultCount >= SESSION_RESULTS_MAX) {
      return `Client "${clientId}" has ${session.resultCount} unacknowledged results: ` +
        `the limit is ${SESSION_RESULTS_MAX} (SESSION_RESULTS_MAX; advance ack_seq)`;
    }
    if (session.resultBytes >= this.#sessionResultBytesMax) {
      return `Client "${clientId}" holds ${session.resultBytes} bytes of unacknowledged ` +
        `results: the limit is ${this.#sessionResultBytesMax} (SESSION_RESULT_BYTES_MAX; ` +
        "advance ack_seq)";
    }
    return undefined;
  }

  /** Client sessions held, tombstones included (counted once for data kept before the counter). */
  #sessionCount(): number {
    const counted = this.#number(META_SESSIONS);
    if (counted !== undefined) return counted;
    // Every header held unwritten is in the space already, or is a new client's, which set the
    // counter: so this scan, taken only while there is none, counts every session.
    let count = 0;
    for (const _ of SessionTable.headers(this.#spaces.sessions)) count++;
    return count;
  }

  #mutate(op: Operation, limits: Limits): MutationOutcome {
    this.#ensureCounters();
    switch (op.kind) {
      case "put":
        this.#setData(op.request.key, op.request.value);
        return { kind: "put", response: {} };
      case "delete":
        return { kind: "delete", response: { deleted: this.#deleteData(op.request.key) } };
      case "append":
        return this.#append(op.request.key, op.request.value, limits);
      case "compareAndSwap":
        return this.#compareAndSwap(op);
      case "txn":
        return this.#txn(op.request, limits);
      default: {
        const never: never = op;
        return unreachable(never, "operation");
      }
    }
  }

  /**
   * Runs a Txn: the branch its compares choose, each operation seeing the ones before it. What the
   * branch returns is worked out first, on an overlay of its own writes, so a branch whose values
   * would pass the bound is refused with nothing changed; then its writes apply in order.
   */
  #txn(request: TxnRequest, limits: Limits): MutationOutcome {
    const succeeded = request.compares.every((compare) => this.#holds(compare));
    const ops = succeeded ? request.success : request.failure;
    const overlay = new Map<string, Uint8Array | null>();
    const read = (key: Uint8Array): Uint8Array | undefined => {
      const written = overlay.get(hexOf(key));
      return written === undefined ? this.#spaces.data.get(key) : written ?? undefined;
    };
    const results: TxnOpResult[] = [];
    let bytes = 0;
    for (const op of ops) {
      const current = read(op.key);
      const found = current !== undefined;
      const returned = op.kind === TxnOp_Kind.GET || op.prev ? current ?? EMPTY : EMPTY;
      results.push({ found, value: returned });
      bytes += returned.length;
      if (op.kind === TxnOp_Kind.PUT) overlay.set(hexOf(op.key), op.value);
      if (op.kind === TxnOp_Kind.DELETE) overlay.set(hexOf(op.key), null);
    }
    const max = 2 * limits.valueBytesMax;
    if (bytes > max) {
      return {
        kind: "refused",
        message: `Txn would return ${bytes} bytes of values: the maximum is ${max} ` +
          "(2 × storage.value_bytes_max); nothing changed",
      };
    }
    for (const op of ops) {
      if (op.kind === TxnOp_Kind.PUT) this.#setData(op.key, op.value);
      if (op.kind === TxnOp_Kind.DELETE) this.#deleteData(op.key);
    }
    return { kind: "txn", response: { succeeded, results } };
  }

  /** Whether a Txn compare holds now (a value compare on an absent key fails, as in etcd). */
  #holds(compare: TxnCompare): boolean {
    const current = this.#spaces.data.get(compare.key);
    let order: number;
    if (compare.target === TxnCompare_Target.VALUE) {
      if (current === undefined) return false;
      order = Math.sign(compareBytes(current, compare.value));
    } else {
      order = current === undefined ? 0 : 1;
    }
    switch (compare.result) {
      case TxnCompare_Result.EQUAL:
        return order === 0;
      case TxnCompare_Result.GREATER:
        return order > 0;
      case TxnCompare_Result.LESS:
        return order < 0;
      case TxnCompare_Result.NOT_EQUAL:
        return order !== 0;
      default:
        return false;
    }
  }

  #append(key: Uint8Array, suffix: Uint8Array, limits: Limits): MutationOutcome {
    const current = this.#spaces.data.get(key) ?? EMPTY;
    const length = current.length + suffix.length;
    const size = checkLength(length, limits.valueBytesMax, "value");
    if (size.kind !== "ok") {
      // Deterministic on every replica: the value stays as it was.
      if (limits.legacy) return { kind: "append", response: { length: current.length } };
      return {
        kind: "refused",
        message: `Append would make the value ${length} bytes long: the maximum is ` +
          `${limits.valueBytesMax} (storage.value_bytes_max); the value is unchanged ` +
          `(${current.length} bytes)`,
      };
    }
    const value = new Uint8Array(length);
    value.set(current, 0);
    value.set(suffix, current.length);
    this.#setData(key, value);
    return { kind: "append", response: { length } };
  }

  #compareAndSwap(op: Extract<Operation, { kind: "compareAndSwap" }>): MutationResult {
    const { key, expected, expectAbsent, value } = op.request;
    const current = this.#spaces.data.get(key);
    const matches = expectAbsent
      ? current === undefined
      : current !== undefined && compareBytes(current, expected) === 0;
    const found = current !== undefined;
    if (!matches) {
      const response = { succeeded: false, found, current: current ?? EMPTY };
      return { kind: "compareAndSwap", response };
    }
    if (op.request.delete) this.#deleteData(key);
    else this.#setData(key, value);
    return { kind: "compareAndSwap", response: { succeeded: true, found, current: EMPTY } };
  }

  // The key and byte counts live in the meta space, updated with every change in the same
  // transaction, so Status never scans the data (and the counts travel with snapshots).
  #ensureCounters(): void {
    if (this.#number(META_KEYS) !== undefined) return;
    const { keys, bytes } = countPairs(this.#spaces.data);
    this.#setNumber(META_KEYS, keys);
    this.#setNumber(META_BYTES, bytes);
  }

  #adjustCounters(keys: number, bytes: number): void {
    this.#setNumber(META_KEYS, (this.#number(META_KEYS) ?? 0) + keys);
    this.#setNumber(META_BYTES, (this.#number(META_BYTES) ?? 0) + bytes);
  }

  /**
   * Told of every change to the data as it is made (the watch window's feed, set by
   * `KvMachine`): a put with its new value, a delete of a key that existed with an empty value.
   */
  onChange: ((kind: "put" | "delete", key: Uint8Array, value: Uint8Array) => void) | undefined;

  #setData(key: Uint8Array, value: Uint8Array): void {
    this.onChange?.("put", key, value);
    const previous = this.#spaces.data.get(key);
    this.#spaces.data.put(key, value);
    if (previous === undefined) this.#adjustCounters(1, key.length + value.length);
    else this.#adjustCounters(0, value.length - previous.length);
  }

  #deleteData(key: Uint8Array): boolean {
    const previous = this.#spaces.data.get(key);
    if (previous === undefined) return false;
    this.onChange?.("delete", key, EMPTY);
    this.#spaces.data.delete(key);
    this.#adjustCounters(-1, -(key.length + previous.length));
    return true;
  }

  #maybeSweep(now: number, ttlMs: number): void {
    const swept = this.#number(META_SWEPT) ?? 0;
    if (now - swept < SESSION_SWEEP_INTERVAL_MS) return;
    this.#setNumber(META_SWEPT, now);
    // The scan below reads the headers from the space, and the sweep rewrites them there.
    this.flush();
    const idle: Array<{ clientId: string; expired: boolean }> = [];
    for (const { clientId, session } of SessionTable.headers(this.#spaces.sessions)) {
      if (session.lastActiveMs + ttlMs >= now) continue;
      idle.push({ clientId, expired: session.expired });
    }
    if (idle.length === 0) return;
    const before = this.#sessionCount();
    let removed = 0;
    for (const { clientId, expired } of idle) {
      const table = new SessionTable(this.#spaces.sessions, clientId);
      if (expired) {
        table.remove();
        removed++;
      } else {
        table.expire(now);
      }
    }
    if (removed > 0) this.#setNumber(META_SESSIONS, before - removed);
  }

  /** Reads one key. */
  get(key: Uint8Array): { found: boolean; value: Uint8Array } {
    const value = this.#spaces.data.get(key);
    return value === undefined ? { found: false, value: EMPTY } : { found: true, value };
  }

  /**
   * Lists this shard's keys in `[start, end)`, at most `limit` and about {@linkcode SCAN_BYTES_MAX}
   * bytes; `next` resumes within this shard.
   */
  scan(request: ScanRequest): ScanResponse {
    const end = request.end.length === 0 ? undefined : request.end;
    const kvs: KvPair[] = [];
    let bytes = 0;
    for (const pair of this.#spaces.data.scan(request.start, end)) {
      if (kvs.length >= request.limit || (kvs.length > 0 && bytes >= SCAN_BYTES_MAX)) {
        return { kvs, more: true, next: pair.key.slice() };
      }
      kvs.push({ key: pair.key.slice(), value: pair.value.slice() });
      bytes += pair.key.length + pair.value.length;
    }
    return { kvs, more: false, next: EMPTY };
  }

  /** Keys, and bytes of keys and values (kept as counters; counted once for older data). */
  dataSize(): { keys: number; bytes: number } {
    const keys = this.#number(META_KEYS);
    if (keys === undefined) return countPairs(this.#spaces.data);
    return { keys, bytes: this.#number(META_BYTES) ?? 0 };
  }

  /** A SHA-256 (hex) of the data, the sessions and the clock, in key order. */
  dataHash(): string {
    this.flush();
    const hashing = hashSpaces(this.#spaces);
    let step = hashing.next();
    while (step.done !== true) step = hashing.next();
    return step.value;
  }

  #namedSpaces(): Array<[string, KvSpace]> {
    return [["data", this.#spaces.data], ["sessions", this.#spaces.sessions], [
      "meta",
      this.#spaces.meta,
    ]];
  }

  /** Removes all data, sessions and the clock (the replica is being deleted). */
  clearAll(): void {
    for (const [, space] of this.#namedSpaces()) space.clear();
    this.#forgetHeld();
  }

  /** Drops the numbers and headers held, written or not (the spaces were replaced). */
  #forgetHeld(): void {
    this.#numbers.clear();
    this.#dirtyNumbers.clear();
    this.#sessions.clear();
  }

  /** Every record of a snapshot of this state machine (data, sessions, meta), in order. */
  records(): Iterable<SnapshotRecord> {
    this.flush();
    return snapshotRecords(this.#spaces);
  }

  /** Serializes everything (data, sessions, clock) as one snapshot (tests and small states). */
  serialize(): Uint8Array {
    const parts = [...pieces(this.records(), 1024 * 1024)];
    const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  /**
   * Replaces everything with the records of `bytes` (snapshot data sent inline, by in-process
   * transports). Parses all of it before changing anything, so malformed input leaves the state
   * as it was. Real nodes stage a received snapshot in a new generation instead.
   */
  restore(bytes: Uint8Array): { kind: "ok" } | { kind: "invalid"; message: string } {
    const parser = new RecordParser(Number.MAX_SAFE_INTEGER);
    const parsed = parser.push(bytes);
    if (parsed.kind === "invalid") return parsed;
    if (!parser.complete) {
      return { kind: "invalid", message: "Snapshot data ends in the middle of a record" };
    }
    const spaces = this.#namedSpaces().map(([, space]) => space);
    for (const space of spaces) space.clear();
    for (const { space, key, value } of parsed.records) spaces[space].put(key, value);
    this.#forgetHeld();
    return { kind: "ok" };
  }
}

/** One client's session records, and its header as held until the machine flushes. */
interface HeldSession {
  readonly table: SessionTable;
  header: ClientSession | undefined;
  /** Whether `header` was set since it was read, so that {@linkcode KvStateMachine.flush} writes it. */
  dirty: boolean;
}

/** The limits a command applies under (from the leader's stamps). */
interface Limits {
  readonly valueBytesMax: number;
  /** A command from before the stamps: an Append past the bound keeps its old answer. */
  readonly legacy: boolean;
}

type Operation =
  | { kind: "put"; request: NonNullable<Command["put"]> }
  | { kind: "delete"; request: NonNullable<Command["delete"]> }
  | { kind: "append"; request: NonNullable<Command["append"]> }
  | { kind: "compareAndSwap"; request: NonNullable<Command["compareAndSwap"]> }
  | { kind: "txn"; request: NonNullable<Command["txn"]> };

function commandOp(command: Command): Operation | undefined {
  if (command.put !== undefined) return { kind: "put", request: command.put };
  if (command.delete !== undefined) return { kind: "delete", request: command.delete };
  if (command.append !== undefined) return { kind: "append", request: command.append };
  if (command.compareAndSwap !== undefined) {
    return { kind: "compareAndSwap", request: command.compareAndSwap };
  }
  if (command.txn !== undefined) return { kind: "txn", request: command.txn };
  return undefined;
}

function hexOf(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}

function resultToSession(seq: number, outcome: MutationOutcome): SessionResult {
  switch (outcome.kind) {
    case "put":
      return { seq, put: outcome.response };
    case "delete":
      return { seq, delete: outcome.response };
    case "append":
      return { seq, append: outcome.response };
    case "compareAndSwap":
      return { seq, compareAndSwap: outcome.response };
    case "txn":
      return { seq, txn: outcome.response };
    case "refused":
      return { seq, invalid: outcome.message };
    default: {
      const never: never = outcome;
      return unreachable(never, "result");
    }
  }
}

function resultFromSession(stored: SessionResult): MutationOutcome {
  if (stored.put !== undefined) return { kind: "put", response: stored.put };
  if (stored.delete !== undefined) return { kind: "delete", response: stored.delete };
  if (stored.append !== undefined) return { kind: "append", response: stored.append };
  if (stored.compareAndSwap !== undefined) {
    return { kind: "compareAndSwap", response: stored.compareAndSwap };
  }
  if (stored.txn !== undefined) return { kind: "txn", response: stored.txn };
  if (stored.invalid !== undefined) return { kind: "refused", message: stored.invalid };
  throw new Error(`Session result of seq ${stored.seq} holds no response`);
}

function answerOf(outcome: MutationOutcome, duplicate: boolean): ApplyResult {
  if (outcome.kind === "refused") return { kind: "invalid", message: outcome.message };
  return { kind: "ok", result: outcome, duplicate };
}

function expired(clientId: string, why: string): ApplyResult {
  return {
    kind: "sessionExpired",
    message: `Session of client "${clientId}" ${why}: start a new session (a new client_id)`,
  };
}
