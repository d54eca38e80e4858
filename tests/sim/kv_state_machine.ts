/**
 * {@linkcode KvStateMachine}: the replicated key-value state of the
 * simulation (registers with put and compare-and-swap, append-only lists),
 * with a session table that makes client retries exactly-once: a command
 * carries `(client, seq)`, and a duplicate of the last applied seq gets the
 * remembered result instead of a second application.
 *
 * @module
 */

import { crc32, type Entry } from "@tinykv/raft";
import { assert } from "./_assert.ts";

/** A mutation proposed through the log. */
export type Command =
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
  /** A host proposal with no effect (the liveness probe). */
  | { readonly kind: "noop"; readonly tag: string };

/** What applying a command answered. `stale`: an older seq of a client that moved on. */
export type CommandResult =
  | { readonly kind: "put" }
  | { readonly kind: "cas"; readonly succeeded: boolean }
  | { readonly kind: "append" }
  | { readonly kind: "noop" }
  | { readonly kind: "stale" };

interface Session {
  readonly seq: number;
  readonly result: CommandResult;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes a command as entry data. */
export function encodeCommand(command: Command): Uint8Array {
  return encoder.encode(JSON.stringify(command));
}

/** Decodes entry data made by {@linkcode encodeCommand}. */
export function decodeCommand(data: Uint8Array): Command {
  return JSON.parse(decoder.decode(data)) as Command;
}

interface SnapshotShape {
  applied: number;
  registers: [string, string][];
  lists: [string, string[]][];
  sessions: [number, Session][];
}

/** The state machine of one replica. */
export class KvStateMachine {
  /** The index of the last entry applied (conf changes included). */
  applied = 0;
  /** Register values by key. */
  registers: Map<string, string> = new Map();
  /** List tokens by key. */
  lists: Map<string, string[]> = new Map();
  /** The last applied seq and its result, per client. */
  sessions: Map<number, Session> = new Map();

  /**
   * Applies the normal entry at `applied + 1`. Returns the command's result, or
   * undefined for an empty entry (a new leader's no-op).
   */
  applyEntry(entry: Entry): CommandResult | undefined {
    assert(entry.type === "normal", `Entry ${entry.index} is not a normal entry`);
    this.#advance(entry.index);
    if (entry.data.length === 0) return undefined;
    return this.#execute(decodeCommand(entry.data));
  }

  /** Records that the conf change entry at `index` was applied. */
  applyConfChange(index: number): void {
    this.#advance(index);
  }

  #advance(index: number): void {
    // Invariant: entries are applied once each, in log order, across restarts too.
    assert(index === this.applied + 1, `Applying entry ${index} after ${this.applied}`);
    this.applied = index;
  }

  #execute(command: Command): CommandResult {
    if (command.kind === "noop") return { kind: "noop" };
    const session = this.sessions.get(command.client);
    if (session !== undefined) {
      if (command.seq === session.seq) return session.result;
      if (command.seq < session.seq) return { kind: "stale" };
    }
    let result: CommandResult;
    switch (command.kind) {
      case "put":
        this.registers.set(command.key, command.value);
        result = { kind: "put" };
        break;
      case "cas": {
        const succeeded = (this.registers.get(command.key) ?? null) === command.expected;
        if (succeeded) this.registers.set(command.key, command.next);
        result = { kind: "cas", succeeded };
        break;
      }
      case "append": {
        const list = this.lists.get(command.key);
        if (list === undefined) this.lists.set(command.key, [command.token]);
        else list.push(command.token);
        result = { kind: "append" };
        break;
      }
    }
    this.sessions.set(command.client, { seq: command.seq, result });
    return result;
  }

  /** The value of register `key` (null when absent). */
  get(key: string): string | null {
    return this.registers.get(key) ?? null;
  }

  /** A copy of list `key`. */
  read(key: string): string[] {
    return [...(this.lists.get(key) ?? [])];
  }

  /** Serializes the whole state (maps in key order, so equal states give equal bytes). */
  snapshot(): Uint8Array {
    const byKey = <V>(map: Map<string, V>) =>
      [...map].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const shape: SnapshotShape = {
      applied: this.applied,
      registers: byKey(this.registers),
      lists: byKey(this.lists),
      sessions: [...this.sessions].sort((a, b) => a[0] - b[0]),
    };
    return encoder.encode(JSON.stringify(shape));
  }

  /** A checksum of the state, for comparing replicas. */
  digest(): number {
    return crc32(this.snapshot());
  }

  /** Rebuilds a state machine from {@linkcode snapshot} bytes. */
  static restore(data: Uint8Array): KvStateMachine {
    const sm = new KvStateMachine();
    if (data.length === 0) return sm;
    const shape = JSON.parse(decoder.decode(data)) as SnapshotShape;
    sm.applied = shape.applied;
    sm.registers = new Map(shape.registers);
    sm.lists = new Map(shape.lists);
    sm.sessions = new Map(shape.sessions);
    return sm;
  }

  /** A deep copy. */
  clone(): KvStateMachine {
    const copy = new KvStateMachine();
    copy.applied = this.applied;
    copy.registers = new Map(this.registers);
    copy.lists = new Map([...this.lists].map(([k, v]) => [k, [...v]]));
    copy.sessions = new Map(this.sessions);
    return copy;
  }
}
