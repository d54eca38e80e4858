/**
 * {@linkcode SimApplication}: the application the core simulation replicates on the real
 * multi-Raft driver (services/kvnode/application.ts): registers with put and compare-and-swap,
 * append-only lists, linearizable reads of both, and a no-op for the liveness probe. A session
 * table per client makes retries exactly-once: a mutation carries `(client, seq)`, and a duplicate
 * of a client's last applied seq gets the remembered result instead of a second application.
 *
 * Its state lives in the replica's spaces of the node's store, as the KV application's does, so
 * crashes, snapshots and restores go through the driver's own code: `data` holds `r<key>` →
 * value and `l<key>` → the list as JSON; `sessions` holds the client id (4 bytes) → the last seq
 * and its result as JSON.
 *
 * @module
 */
import type { Entry } from "@tinykv/raft";
import type {
  GroupApplication,
  GroupMachine,
  MachineSpaces,
  Outcome,
  Prepared,
} from "../../services/kvnode/application.ts";
import { countPairs, type KvSpace } from "../../services/kvnode/kv_space.ts";
import { RecordParser } from "../../services/kvnode/snapshot_stream.ts";

/** A mutation proposed through the log (entry data, as JSON). */
export type SimCommand =
  | {
    readonly kind: "put";
    readonly client: number;
    readonly seq: number;
    readonly key: string;
    readonly value: string;
  }
  | {
    readonly kind: "cas";
    readonly client: number;
    readonly seq: number;
    readonly key: string;
    readonly expected: string | null;
    readonly next: string;
  }
  | {
    readonly kind: "append";
    readonly client: number;
    readonly seq: number;
    readonly key: string;
    readonly token: string;
  }
  /** A proposal with no effect (the liveness probe). */
  | { readonly kind: "noop"; readonly tag: string };

/** A request to a replica: a mutation, or a linearizable read. */
export type SimOp =
  | SimCommand
  | { readonly kind: "get"; readonly key: string }
  | { readonly kind: "read"; readonly key: string };

/** What a request is answered. `stale`: an older seq of a client that moved on. */
export type SimResult =
  | { readonly kind: "put" }
  | { readonly kind: "cas"; readonly succeeded: boolean }
  | { readonly kind: "append" }
  | { readonly kind: "noop"; readonly index: number }
  | { readonly kind: "stale" }
  | { readonly kind: "value"; readonly value: string | null }
  | { readonly kind: "list"; readonly tokens: readonly string[] };

interface Session {
  readonly seq: number;
  readonly result: SimResult;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);

/** Encodes a command as entry data. */
export function encodeCommand(command: SimCommand): Uint8Array {
  return encoder.encode(JSON.stringify(command));
}

function clientKey(client: number): Uint8Array {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setUint32(0, client);
  return key;
}

/** The state machine of one replica, over its spaces in the node's store. */
export class SimMachine implements GroupMachine<SimResult> {
  readonly #spaces: MachineSpaces;

  constructor(spaces: MachineSpaces) {
    this.#spaces = spaces;
  }

  apply(entry: Entry): Outcome<SimResult> {
    let command: SimCommand;
    try {
      command = JSON.parse(decoder.decode(entry.data)) as SimCommand;
    } catch (error) {
      return { kind: "invalid", message: `Entry ${entry.index} does not decode: ${error}` };
    }
    if (command.kind === "noop") {
      return { kind: "ok", result: { kind: "noop", index: entry.index } };
    }
    const sessions = this.#spaces.sessions;
    const stored = sessions.get(clientKey(command.client));
    if (stored !== undefined) {
      const session = JSON.parse(decoder.decode(stored)) as Session;
      if (command.seq === session.seq) return { kind: "ok", result: session.result };
      if (command.seq < session.seq) return { kind: "ok", result: { kind: "stale" } };
    }
    const result = this.#execute(command);
    const session: Session = { seq: command.seq, result };
    sessions.put(clientKey(command.client), encoder.encode(JSON.stringify(session)));
    return { kind: "ok", result };
  }

  /** Nothing to write: every apply writes its records through. */
  flush(): void {}

  #execute(command: Exclude<SimCommand, { kind: "noop" }>): SimResult {
    const data = this.#spaces.data;
    switch (command.kind) {
      case "put":
        data.put(encoder.encode(`r${command.key}`), encoder.encode(command.value));
        return { kind: "put" };
      case "cas": {
        const succeeded = this.get(command.key) === command.expected;
        if (succeeded) data.put(encoder.encode(`r${command.key}`), encoder.encode(command.next));
        return { kind: "cas", succeeded };
      }
      case "append": {
        const tokens = [...this.read(command.key), command.token];
        data.put(encoder.encode(`l${command.key}`), encoder.encode(JSON.stringify(tokens)));
        return { kind: "append" };
      }
    }
  }

  /** The value of register `key` (null when absent). */
  get(key: string): string | null {
    const value = this.#spaces.data.get(encoder.encode(`r${key}`));
    return value === undefined ? null : decoder.decode(value);
  }

  /** List `key`. */
  read(key: string): string[] {
    const value = this.#spaces.data.get(encoder.encode(`l${key}`));
    return value === undefined ? [] : JSON.parse(decoder.decode(value)) as string[];
  }

  restore(data: Uint8Array): { kind: "ok" } | { kind: "invalid"; message: string } {
    const parser = new RecordParser(Number.MAX_SAFE_INTEGER);
    const parsed = parser.push(data);
    if (parsed.kind === "invalid") return parsed;
    if (!parser.complete) return { kind: "invalid", message: "Snapshot ends inside a record" };
    const spaces = this.#ordered();
    for (const space of spaces) space.clear();
    for (const { space, key, value } of parsed.records) spaces[space].put(key, value);
    return { kind: "ok" };
  }

  dataSize(): { keys: number; bytes: number } {
    return countPairs(this.#spaces.data);
  }

  /** FNV-1a over every record of every space, with lengths: equal states, equal hashes. */
  dataHash(): string {
    let hash = 0x811c9dc5;
    const feed = (bytes: Uint8Array) => {
      for (const byte of [bytes.length >>> 8, bytes.length & 0xff, ...bytes]) {
        hash = Math.imul(hash ^ (byte & 0xff), 0x01000193) >>> 0;
      }
    };
    for (const [tag, space] of this.#ordered().entries()) {
      feed(new Uint8Array([tag]));
      for (const { key, value } of space.scan(EMPTY, undefined)) {
        feed(key);
        feed(value);
      }
    }
    return hash.toString(16).padStart(8, "0");
  }

  /** The spaces in snapshot order (`SNAPSHOT_SPACES`). */
  #ordered(): KvSpace[] {
    return [this.#spaces.data, this.#spaces.sessions, this.#spaces.meta];
  }
}

/** The simulation's application: see the module docs. */
export class SimApplication implements GroupApplication<SimOp, SimResult, SimMachine> {
  open(spaces: MachineSpaces): SimMachine {
    return new SimMachine(spaces);
  }

  isLocal(): boolean {
    return false;
  }

  prepare(op: SimOp): Prepared<SimResult, SimMachine> {
    switch (op.kind) {
      case "get":
        return {
          kind: "read",
          local: false,
          serve: (m) => ({ kind: "ok", result: { kind: "value", value: m.get(op.key) } }),
        };
      case "read":
        return {
          kind: "read",
          local: false,
          serve: (m) => ({ kind: "ok", result: { kind: "list", tokens: m.read(op.key) } }),
        };
      default:
        return { kind: "propose", data: encodeCommand(op) };
    }
  }
}
