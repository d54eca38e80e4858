/**
 * Helpers for the table-driven tests of the Raft state machine: build a node
 * with a given log and hard state, build messages, and pump messages between
 * a few nodes by hand.
 *
 * @module
 */

import { Raft, type RaftOptions } from "./_raft.ts";
import type { Message } from "./messages.ts";
import { mulberry32 } from "./prng.ts";
import { MemoryStorage } from "./storage.ts";
import { createEntry, type Entry, type LogIndex, type PeerId, type Term } from "./types.ts";

/** Options for {@linkcode newRaft}. */
export interface NewRaftOptions extends Partial<Omit<RaftOptions, "id" | "storage">> {
  /** The term of each log entry, from index 1. */
  readonly logTerms?: readonly number[];
  readonly term?: number;
  readonly vote?: number;
  readonly commit?: number;
  readonly learners?: readonly number[];
}

/** Log entries with the given terms at indexes 1..n. */
export function entriesWithTerms(terms: readonly number[], start = 1): Entry[] {
  return terms.map((t, i) => createEntry({ term: t as Term, index: (start + i) as LogIndex }));
}

/** A Raft node `id` of the group `voters`, with a persisted log and hard state. */
export function newRaft(id: number, voters: readonly number[], options: NewRaftOptions = {}): Raft {
  const storage = new MemoryStorage({
    voters: voters as PeerId[],
    learners: (options.learners ?? []) as PeerId[],
  });
  storage.append(entriesWithTerms(options.logTerms ?? []));
  storage.setHardState({
    term: (options.term ?? 0) as Term,
    vote: options.vote as PeerId | undefined,
    commit: (options.commit ?? 0) as LogIndex,
  });
  return new Raft({
    id: id as PeerId,
    storage,
    prng: options.prng ?? mulberry32(id),
    electionTicks: options.electionTicks ?? 10,
    heartbeatTicks: options.heartbeatTicks ?? 1,
    applied: options.applied ?? (0 as LogIndex),
    appendBytesMax: options.appendBytesMax ?? 1 << 20,
    entryOverheadBytes: options.entryOverheadBytes ?? 0,
    quiesceTicks: options.quiesceTicks ?? 0,
    inflightMessagesMax: options.inflightMessagesMax ?? 256,
    uncommittedBytesMax: options.uncommittedBytesMax ?? 1 << 26,
    committedBytesMax: options.committedBytesMax ?? 1 << 26,
    pendingReadsMax: options.pendingReadsMax ?? 1000,
    preVote: options.preVote ?? false,
    checkQuorum: options.checkQuorum ?? false,
    readMode: options.readMode ?? "safe",
  });
}

/** The terms of every entry in a node's log, from its first index. */
export function logTerms(raft: Raft): number[] {
  const out: number[] = [];
  for (let i = raft.log.firstIndex(); i <= raft.log.lastIndex(); i++) {
    out.push(raft.log.term(i as LogIndex) ?? -1);
  }
  return out;
}

/** Delivers messages among `nodes` until none are left (dropping those to absent nodes). */
export function pump(nodes: ReadonlyMap<number, Raft>, dropTo: ReadonlySet<number> = new Set()) {
  for (let round = 0; round < 10_000; round++) {
    const batch: Message[] = [];
    for (const raft of nodes.values()) {
      raft.flush();
      batch.push(...raft.takeMessages());
    }
    if (batch.length === 0) return;
    for (const m of batch) {
      if (!dropTo.has(m.to)) nodes.get(m.to)?.step(m);
    }
  }
  throw new Error("pump did not settle");
}

/** Casts a number to a Term. */
export const t = (n: number): Term => n as Term;
/** Casts a number to a LogIndex. */
export const i = (n: number): LogIndex => n as LogIndex;
/** Casts a number to a PeerId. */
export const n = (id: number): PeerId => id as PeerId;

/** Message shorthand: an append from `from` to `to`. */
export function appendMessage(
  fields: {
    from: number;
    to: number;
    term: number;
    prevLogIndex: number;
    prevLogTerm: number;
    entries?: Entry[];
    commit?: number;
  },
): Message {
  return {
    type: "append",
    from: n(fields.from),
    to: n(fields.to),
    term: t(fields.term),
    prevLogIndex: i(fields.prevLogIndex),
    prevLogTerm: t(fields.prevLogTerm),
    entries: fields.entries ?? [],
    commit: i(fields.commit ?? 0),
  };
}

/** Message shorthand: a (pre-)vote request. */
export function voteMessage(
  fields: {
    from: number;
    to: number;
    term: number;
    lastLogIndex: number;
    lastLogTerm: number;
    preVote?: boolean;
    transfer?: boolean;
  },
): Message {
  return {
    type: fields.preVote ? "requestPreVote" : "requestVote",
    from: n(fields.from),
    to: n(fields.to),
    term: t(fields.term),
    lastLogIndex: i(fields.lastLogIndex),
    lastLogTerm: t(fields.lastLogTerm),
    transfer: fields.transfer ?? false,
  };
}

/** Message shorthand: an append response. */
export function appendResponse(
  fields: {
    from: number;
    to: number;
    term: number;
    index: number;
    reject?: boolean;
    hintIndex?: number;
    hintTerm?: number;
  },
): Message {
  return {
    type: "appendResponse",
    from: n(fields.from),
    to: n(fields.to),
    term: t(fields.term),
    reject: fields.reject ?? false,
    index: i(fields.index),
    hintIndex: i(fields.hintIndex ?? 0),
    hintTerm: t(fields.hintTerm ?? 0),
  };
}

/** Makes `raft` the leader of its current term + 1 without messages (votes granted by fiat). */
export function forceLeader(raft: Raft): void {
  raft.becomeCandidate();
  raft.becomeLeader();
  raft.takeMessages();
}
