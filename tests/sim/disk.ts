/**
 * {@linkcode SimDisk}: one node's simulated disk. Every write goes to the
 * node's live view at once and to a queue of unsynced records; `sync()` makes
 * the queue durable. A crash keeps the durable records, a random prefix of the
 * unsynced ones (the OS may have flushed some), and may tear the next one (a
 * partial write). Recovery verifies every record it replays — log entries by
 * their CRC-32, other records by a checksum of their own — and truncates the
 * log at the first record that fails, so a torn write is never taken as
 * valid, and a synced write is never lost.
 *
 * @module
 */

import {
  type ConfState,
  crc32,
  type Entry,
  type HardState,
  type LogIndex,
  type Snapshot,
  verifyEntry,
} from "@tinykv/raft";
import { assert, unreachable } from "./_assert.ts";
import { type CommandResult, KvStateMachine } from "./kv_state_machine.ts";
import type { SimRandom } from "./random.ts";
import { SimLog } from "./sim_log.ts";

/** One write to the disk, in write order (a write-ahead log record). */
export type DiskRecord =
  /** Log entries of a Ready (each carries its own CRC-32). */
  | { readonly kind: "entries"; readonly entries: readonly Entry[] }
  | { readonly kind: "hardState"; readonly hardState: HardState; readonly checksum: number }
  /**
   * A snapshot: a leader's, installed over the whole log (`install`), or the
   * host's own, after which the log is compacted up to `compactTo`.
   */
  | {
    readonly kind: "snapshot";
    readonly snapshot: Snapshot;
    readonly install: boolean;
    readonly compactTo: LogIndex;
    readonly checksum: number;
  }
  /** A normal entry applied to the state machine (with the applied index, in one write). */
  | { readonly kind: "apply"; readonly entry: Entry }
  /** A conf change applied: the new membership and applied index, in one write. */
  | {
    readonly kind: "applyConf";
    readonly index: LogIndex;
    readonly confState: ConfState;
    readonly checksum: number;
  };

/** The state on disk: the Raft log and the applied state machine. */
export interface DiskImage {
  /** The Raft log, hard state, membership and snapshot. */
  readonly log: SimLog;
  /** The applied state machine, with its applied index and sessions. */
  readonly sm: KvStateMachine;
}

/** What recovery found after a crash. */
export interface RecoveryReport {
  /** Unsynced records that survived the crash intact. */
  readonly survived: number;
  /** Unsynced records lost. */
  readonly lost: number;
  /** Whether the crash tore a record (and recovery detected and truncated it). */
  readonly torn: boolean;
}

const encoder = new TextEncoder();

/** The checksum of a hard state record. */
export function hardStateChecksum(hs: HardState): number {
  return crc32(encoder.encode(`${hs.term}/${hs.vote ?? 0}/${hs.commit}`));
}

/** The checksum of a snapshot record. */
export function snapshotChecksum(snapshot: Snapshot, install: boolean, compactTo: number): number {
  const meta = snapshot.metadata;
  const head = crc32(
    encoder.encode(
      `${meta.index}/${meta.term}/${confText(meta.confState)}/${install}/${compactTo}`,
    ),
  );
  return (head ^ crc32(snapshot.data) ^ snapshot.data.length) >>> 0;
}

/** The checksum of an applied conf change record. */
export function applyConfChecksum(index: number, confState: ConfState): number {
  return crc32(encoder.encode(`${index}/${confText(confState)}`));
}

function confText(cs: ConfState): string {
  return `${cs.voters.join(",")}|${cs.learners.join(",")}|${cs.epoch}`;
}

/** A simulated disk with unsynced writes, crashes and torn writes. */
export class SimDisk {
  /** What the running node sees: every write, synced or not. */
  live: DiskImage;
  #durable: DiskImage;
  #pending: DiskRecord[] = [];
  // Set by a crash: what reached the disk beyond the durable records, unverified.
  #afterCrash: DiskRecord[] | undefined = undefined;

  /** Creates the disk of a new replica whose membership is `confState` (durable at once). */
  constructor(confState: ConfState) {
    this.#durable = { log: new SimLog(confState), sm: new KvStateMachine() };
    this.live = cloneImage(this.#durable);
  }

  /** Unsynced records. */
  get unsyncedCount(): number {
    return this.#pending.length;
  }

  /** The durable image (for tests and checks; never handed to a running node). */
  get durable(): DiskImage {
    return this.#durable;
  }

  /** Writes `record` (not yet durable). Returns the result of an applied command. */
  write(record: DiskRecord): CommandResult | undefined {
    assert(this.#afterCrash === undefined, "Write to a crashed disk");
    this.#pending.push(record);
    return applyRecord(this.live, record);
  }

  /** Makes every write so far durable. */
  sync(): void {
    for (const record of this.#pending) applyRecord(this.#durable, record);
    this.#pending = [];
  }

  /**
   * The machine stops: a random prefix of the unsynced writes reaches the
   * disk, and with probability `tornRate` the next one is torn.
   */
  crash(random: SimRandom, tornRate: number): void {
    const keep = random.int(this.#pending.length + 1);
    const reached = this.#pending.slice(0, keep);
    if (keep < this.#pending.length && random.chance(tornRate)) {
      reached.push(tearRecord(this.#pending[keep], random));
    }
    this.#pending = [];
    this.#afterCrash = reached;
  }

  /**
   * Recovery at restart: replays what reached the disk after the durable
   * records, verifying each, and stops at the first that fails its checksum
   * (salvaging the intact entries before a torn one). Rebuilds the live view.
   */
  recover(): RecoveryReport {
    const reached = this.#afterCrash ?? [];
    this.#afterCrash = undefined;
    let survived = 0;
    let torn = false;
    for (const record of reached) {
      const verdict = verifyRecord(record);
      if (verdict.kind === "ok") {
        applyRecord(this.#durable, record);
        survived++;
        continue;
      }
      torn = true;
      if (verdict.kind === "partial") applyRecord(this.#durable, verdict.record);
      break;
    }
    // Everything recovered is on disk now: it is durable.
    this.live = cloneImage(this.#durable);
    return { survived, lost: reached.length - survived, torn };
  }
}

function cloneImage(image: DiskImage): DiskImage {
  return { log: image.log.clone(), sm: image.sm.clone() };
}

/** Applies one verified record to an image. */
export function applyRecord(image: DiskImage, record: DiskRecord): CommandResult | undefined {
  switch (record.kind) {
    case "entries":
      image.log.append(record.entries);
      return undefined;
    case "hardState":
      image.log.hardState = record.hardState;
      return undefined;
    case "snapshot":
      if (record.install) {
        image.log.installSnapshot(record.snapshot);
        const restored = KvStateMachine.restore(record.snapshot.data);
        assert(
          restored.applied === record.snapshot.metadata.index,
          `Snapshot ${record.snapshot.metadata.index} holds state applied to ${restored.applied}`,
        );
        image.sm.applied = restored.applied;
        image.sm.registers = restored.registers;
        image.sm.lists = restored.lists;
        image.sm.sessions = restored.sessions;
      } else {
        image.log.compact(record.snapshot, record.compactTo);
      }
      return undefined;
    case "apply":
      return image.sm.applyEntry(record.entry);
    case "applyConf":
      image.log.confState = record.confState;
      image.sm.applyConfChange(record.index);
      return undefined;
    default:
      return unreachable(record);
  }
}

type Verdict =
  | { readonly kind: "ok" }
  | { readonly kind: "partial"; readonly record: DiskRecord }
  | { readonly kind: "corrupt" };

/** Checks a record read back from disk. */
export function verifyRecord(record: DiskRecord): Verdict {
  switch (record.kind) {
    case "entries": {
      const bad = record.entries.findIndex((e) => !verifyEntry(e));
      if (bad < 0) return { kind: "ok" };
      return {
        kind: "partial",
        record: { kind: "entries", entries: record.entries.slice(0, bad) },
      };
    }
    case "hardState":
      return record.checksum === hardStateChecksum(record.hardState)
        ? { kind: "ok" }
        : { kind: "corrupt" };
    case "snapshot":
      return record.checksum === snapshotChecksum(record.snapshot, record.install, record.compactTo)
        ? { kind: "ok" }
        : { kind: "corrupt" };
    case "apply":
      return verifyEntry(record.entry) ? { kind: "ok" } : { kind: "corrupt" };
    case "applyConf":
      return record.checksum === applyConfChecksum(record.index, record.confState)
        ? { kind: "ok" }
        : { kind: "corrupt" };
    default:
      return unreachable(record);
  }
}

/** A partial write of `record`: some of its bytes are missing or garbage. */
export function tearRecord(record: DiskRecord, random: SimRandom): DiskRecord {
  switch (record.kind) {
    case "entries": {
      const intact = random.int(record.entries.length);
      const torn = tearEntry(record.entries[intact], random);
      return { kind: "entries", entries: [...record.entries.slice(0, intact), torn] };
    }
    case "hardState": {
      const hs = record.hardState;
      const commit = (hs.commit + 1 + random.int(1000)) as LogIndex;
      return { ...record, hardState: { ...hs, commit } };
    }
    case "snapshot": {
      const data = record.snapshot.data.slice(0, random.int(record.snapshot.data.length));
      return { ...record, snapshot: { ...record.snapshot, data } };
    }
    case "apply":
      return { kind: "apply", entry: tearEntry(record.entry, random) };
    case "applyConf":
      return { ...record, index: (record.index + 1) as LogIndex };
    default:
      return unreachable(record);
  }
}

function tearEntry(entry: Entry, random: SimRandom): Entry {
  if (entry.data.length === 0) return { ...entry, term: (entry.term + 1) as Entry["term"] };
  // Keep a prefix of the bytes and zero-fill the rest, as a sector that was half written.
  const data = new Uint8Array(entry.data.length);
  const kept = random.int(entry.data.length);
  data.set(entry.data.subarray(0, kept));
  if (kept === 0 || data[kept] === entry.data[kept]) data[kept] = entry.data[kept] ^ 0xff;
  return { ...entry, data };
}
