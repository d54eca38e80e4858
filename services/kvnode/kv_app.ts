/**
 * TinyKV's application on the multi-Raft driver ({@linkcode ./application.ts}): a request of the
 * kvnode data stream ({@linkcode DataOp}) becomes a stamped {@linkcode Command} to propose, or a
 * get or scan to serve; a committed entry is a `Command` that {@linkcode KvStateMachine} applies.
 * Every check a request needs on its replica is here: the kvnode checked every limit where the
 * request came in (`checkRequest` in data_service.ts); what is left is whether the key belongs to
 * this shard, which only the replica knows.
 *
 * @module
 */
import type { Entry } from "@tinykv/raft";
import { Command, type ScanRequest } from "@tinykv/proto/tinykv/v1";
import { type HashRange, VALUE_BYTES_MAX } from "@tinykv/shard";
import type {
  GroupApplication,
  GroupMachine,
  MachineSpaces,
  Outcome,
  Prepared,
  ReplicaIdentity,
} from "./application.ts";
import type { Driver, DriverOptions } from "./driver.ts";
import type { ItemResult } from "./outcome.ts";
import type { Replica } from "./replica.ts";
import { type ApplyResult, KvStateMachine, SESSION_TTL_MS_DEFAULT } from "./state_machine.ts";
import type { EventWindow, WatchChange, WatchHub } from "./watch_hub.ts";
import { unreachable } from "./_assert.ts";

/** One data-path request of the KV application. */
export type DataOp =
  | { readonly kind: "get"; readonly key: Uint8Array; readonly serializable: boolean }
  | { readonly kind: "scan"; readonly request: ScanRequest }
  | { readonly kind: "mutation"; readonly command: Command };

/** What a leader stamps into every command it proposes, so that every replica applies alike. */
export interface KvStamps {
  /** The value limit (`storage.value_bytes_max`). */
  readonly valueBytesMax: number;
  /** The session TTL (`kvnode.session_ttl_ms`). */
  readonly sessionTtlMs: number;
}

/** Options of a {@linkcode KvApplication}. */
export interface KvApplicationOptions extends Partial<KvStamps> {
  /** The node's watch windows: every replica's changes are recorded there. */
  readonly watches?: WatchHub;
}

/** The state machine of one KV replica, as the driver sees it. */
export class KvMachine implements GroupMachine<ItemResult> {
  /** The KV state machine itself (reads, checks, stats). */
  readonly kv: KvStateMachine;
  readonly #watches: { readonly hub: WatchHub; window: EventWindow } | undefined;
  /** The changes of the entry being applied. */
  #changes: WatchChange[] = [];

  constructor(kv: KvStateMachine, watches?: { hub: WatchHub; window: EventWindow }) {
    this.kv = kv;
    this.#watches = watches === undefined ? undefined : { ...watches };
    if (watches !== undefined) {
      kv.onChange = (kind, key, value) => this.#changes.push({ kind, key, value });
    }
  }

  apply(entry: Entry): Outcome<ItemResult> {
    const watches = this.#watches;
    if (watches === undefined) return this.#apply(entry);
    this.#changes = [];
    const outcome = this.#apply(entry);
    watches.hub.record(watches.window, entry.index, this.#changes);
    this.#changes = [];
    return outcome;
  }

  #apply(entry: Entry): Outcome<ItemResult> {
    let command: Command;
    try {
      command = Command.decode(entry.data);
    } catch (error) {
      // A committed entry that does not decode does not decode on any replica: every replica
      // skips it alike. (An error thrown while applying is not a property of the entry — a full
      // LMDB map, a disk error, a bug — and is not caught here: it stops the node, since skipping
      // the entry on one replica while the others apply it would diverge them silently.)
      return { kind: "invalid", message: `Entry ${entry.index} does not decode: ${error}` };
    }
    return outcomeOfApply(this.kv.apply(command));
  }

  flush(): void {
    this.kv.flush();
  }

  restore(data: Uint8Array): { kind: "ok" } | { kind: "invalid"; message: string } {
    const restored = this.kv.restore(data);
    const watches = this.#watches;
    if (restored.kind === "ok" && watches !== undefined) {
      watches.window = watches.hub.restart(watches.window);
    }
    return restored;
  }

  dataSize(): { keys: number; bytes: number } {
    return this.kv.dataSize();
  }

  dataHash(): string {
    return this.kv.dataHash();
  }
}

/** The KV application: see the module docs. */
export class KvApplication implements GroupApplication<DataOp, ItemResult, KvMachine> {
  readonly #stamps: KvStamps;
  readonly #watches: WatchHub | undefined;

  constructor(options: KvApplicationOptions = {}) {
    this.#stamps = {
      valueBytesMax: options.valueBytesMax ?? VALUE_BYTES_MAX,
      sessionTtlMs: options.sessionTtlMs ?? SESSION_TTL_MS_DEFAULT,
    };
    this.#watches = options.watches;
  }

  open(spaces: MachineSpaces, range: HashRange, replica?: ReplicaIdentity): KvMachine {
    const kv = new KvStateMachine(spaces, { range });
    const hub = this.#watches;
    if (hub === undefined || replica === undefined) return new KvMachine(kv);
    const window = hub.attach(replica.shardId, replica.peerId, replica.applied);
    return new KvMachine(kv, { hub, window });
  }

  isLocal(op: DataOp): boolean {
    return op.kind === "get" && op.serializable;
  }

  prepare(op: DataOp, machine: KvMachine, nowMs: number): Prepared<ItemResult, KvMachine> {
    switch (op.kind) {
      case "mutation":
        return this.#prepareMutation(op.command, machine.kv, nowMs);
      case "get": {
        const invalid = machine.kv.checkKey(op.key);
        if (invalid !== undefined) return { kind: "invalid", message: invalid };
        return {
          kind: "read",
          local: op.serializable,
          serve: (now) => ({ kind: "ok", result: { kind: "get", response: now.kv.get(op.key) } }),
        };
      }
      case "scan":
        return {
          kind: "read",
          local: false,
          serve: (now) => ({
            kind: "ok",
            result: { kind: "scan", response: now.kv.scan(op.request) },
          }),
        };
      default:
        return unreachable(op, "data op");
    }
  }

  #prepareMutation(
    command: Command,
    kv: KvStateMachine,
    nowMs: number,
  ): Prepared<ItemResult, KvMachine> {
    const keys = commandKeys(command);
    if (keys.length === 0) return { kind: "invalid", message: "Request has no operation" };
    for (const key of keys) {
      const invalid = kv.checkKey(key);
      if (invalid !== undefined) return { kind: "invalid", message: invalid };
    }
    const stamped: Command = {
      ...command,
      stampMs: nowMs,
      valueBytesMax: this.#stamps.valueBytesMax,
      sessionTtlMs: this.#stamps.sessionTtlMs,
    };
    return { kind: "propose", data: Command.encode(stamped) };
  }
}

/** Every key a mutation names (a Txn's compares and both branches). */
export function commandKeys(command: Command): Uint8Array[] {
  const request = command.put ?? command.delete ?? command.append ?? command.compareAndSwap;
  if (request !== undefined) return [request.key];
  const txn = command.txn;
  if (txn === undefined) return [];
  return [...txn.compares, ...txn.success, ...txn.failure].map((entry) => entry.key);
}

/** The kvnode's driver: the generic driver running the KV application. */
export type KvDriver = Driver<DataOp, ItemResult, KvMachine>;

/** A replica of the KV application. */
export type KvReplica = Replica<ItemResult, KvMachine>;

/** The options of a {@linkcode KvDriver}. */
export type KvDriverOptions = DriverOptions<DataOp, ItemResult, KvMachine>;

/** Maps the state machine's answer to a request outcome. */
export function outcomeOfApply(result: ApplyResult): Outcome<ItemResult> {
  switch (result.kind) {
    case "ok":
      return { kind: "ok", result: result.result };
    case "sessionExpired":
      return { kind: "sessionExpired", message: result.message };
    case "invalid":
      return { kind: "invalid", message: result.message };
    case "resourceExhausted":
      return { kind: "resourceExhausted", message: result.message };
    default:
      return unreachable(result, "apply result");
  }
}
