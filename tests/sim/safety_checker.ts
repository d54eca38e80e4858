/**
 * {@linkcode SafetyChecker}: the Raft safety properties (paper figure 3),
 * checked as the simulation runs, against global maps that only the simulator
 * can see:
 *
 * - election safety: at most one leader per term;
 * - one vote per term: no voter grants votes to two candidates in one term
 *   (catches a vote lost by a crash);
 * - log matching: an entry is identified by (index, term): every copy has the
 *   same contents, and the same term before it;
 * - leader completeness: a new leader's log holds every entry committed
 *   before it was elected in an earlier term than its own (paper §5.4: an
 *   entry committed in term t is promised to the leaders of terms after t
 *   only; a candidate of an older term that has not heard of the newer one
 *   may still win its term late, from votes granted in that term);
 * - state machine safety: no two replicas apply different entries at one
 *   index, and each replica applies every entry once, in order, across
 *   crashes and snapshots.
 *
 * A violation throws {@linkcode InvariantViolation} naming the check.
 *
 * @module
 */

import type { Entry, LogIndex, LogReader, PeerId, Snapshot, Term } from "@tinykv/raft";

/** The entry at `index` of `log`, if it holds it. */
function entryAt(log: LogReader, index: number): Entry | undefined {
  if (index < log.firstIndex() || index > log.lastIndex()) return undefined;
  const result = log.entries(index as LogIndex, (index + 1) as LogIndex, {
    bytesMax: Number.MAX_SAFE_INTEGER,
  });
  return result.kind === "ok" ? result.entries[0] : undefined;
}

/** The names of the checks, as reports print them. */
export type CheckName =
  | "electionSafety"
  | "oneVotePerTerm"
  | "logMatching"
  | "leaderCompleteness"
  | "stateMachineSafety"
  | "applyOnce"
  | "snapshotSafety"
  | "replicaConvergence"
  | "linearizability"
  | "liveness";

/** A violated safety or liveness property. */
export class InvariantViolation extends Error {
  /** Which property failed. */
  readonly check: CheckName;

  /** Creates the error for `check` with a description of what was seen. */
  constructor(check: CheckName, detail: string) {
    super(`${check} violated: ${detail}`);
    this.name = "InvariantViolation";
    this.check = check;
  }
}

interface EntryFacts {
  readonly checksum: number;
  /** The term of the entry before this one, or -1 when not known. */
  readonly prevTerm: number;
}

interface Known {
  readonly term: number;
  readonly checksum: number;
}

/** Global safety checks across all replicas of one group. */
export class SafetyChecker {
  readonly #leaderOfTerm: Map<number, PeerId> = new Map();
  readonly #votes: Map<string, PeerId> = new Map();
  // index → term → facts about the entry (index, term) wherever it was seen.
  readonly #entries: Map<number, Map<number, EntryFacts>> = new Map();
  readonly #committed: Map<number, Known> = new Map();
  // index → the lowest current term of a node seen holding the entry committed. The entry was
  // committed in that term or an earlier one (the leader that commits it observes it in its own
  // term; everyone else learns it later), so it is promised to the leaders of later terms.
  readonly #commitTerm: Map<number, number> = new Map();
  readonly #applied: Map<number, Known> = new Map();
  #committedMax = 0;
  /** Checks performed, for the summary. */
  checks = 0;

  /** The highest index known to be committed. */
  get committedMax(): number {
    return this.#committedMax;
  }

  /** The entry applied at `index` by any replica, if any. */
  appliedAt(index: number): Known | undefined {
    return this.#applied.get(index);
  }

  /** A node is leader in `term`: no other node may be. */
  onLeader(id: PeerId, term: Term): void {
    this.checks++;
    const other = this.#leaderOfTerm.get(term);
    if (other === undefined) this.#leaderOfTerm.set(term, id);
    else if (other !== id) {
      throw new InvariantViolation(
        "electionSafety",
        `nodes ${other} and ${id} both lead term ${term}`,
      );
    }
  }

  /** `voter` granted its vote in `term` to `candidate`. */
  onVoteGranted(voter: PeerId, term: Term, candidate: PeerId): void {
    this.checks++;
    const key = `${term}/${voter}`;
    const previous = this.#votes.get(key);
    if (previous === undefined) this.#votes.set(key, candidate);
    else if (previous !== candidate) {
      throw new InvariantViolation(
        "oneVotePerTerm",
        `node ${voter} voted for ${previous} and then ${candidate} in term ${term}`,
      );
    }
  }

  /**
   * A node persisted `entries` (a Ready's) into `log`. Checks log matching for
   * them and records the entries the node's commit index now covers.
   */
  onPersisted(id: PeerId, log: LogReader, entries: readonly Entry[]): void {
    let prevTerm: number = entries.length > 0
      ? (log.term((entries[0].index - 1) as LogIndex) ?? -1)
      : -1;
    for (const entry of entries) {
      this.#checkEntry(id, entry, prevTerm);
      prevTerm = entry.term;
    }
  }

  #checkEntry(id: PeerId, entry: Entry, prevTerm: number): void {
    this.checks++;
    let byTerm = this.#entries.get(entry.index);
    if (byTerm === undefined) {
      byTerm = new Map();
      this.#entries.set(entry.index, byTerm);
    }
    const seen = byTerm.get(entry.term);
    if (seen === undefined) {
      byTerm.set(entry.term, { checksum: entry.checksum, prevTerm });
      return;
    }
    if (seen.checksum !== entry.checksum) {
      throw new InvariantViolation(
        "logMatching",
        `node ${id} holds entry ${entry.index} of term ${entry.term} with other contents`,
      );
    }
    if (seen.prevTerm >= 0 && prevTerm >= 0 && seen.prevTerm !== prevTerm) {
      throw new InvariantViolation(
        "logMatching",
        `node ${id} holds entry ${entry.index} of term ${entry.term} after an entry of term ` +
          `${prevTerm}, elsewhere after term ${seen.prevTerm}`,
      );
    }
  }

  /**
   * Records the entries in `log` from `from` up to `commit` as committed, by a
   * node whose current term is `term`, checking earlier records.
   */
  onCommit(id: PeerId, log: LogReader, from: number, commit: number, term: Term): void {
    for (let i = Math.max(from, log.firstIndex()); i <= commit; i++) {
      const entry = entryAt(log, i);
      if (entry === undefined) {
        throw new InvariantViolation(
          "logMatching",
          `node ${id} has commit index ${commit} but no entry ${i} (last ${log.lastIndex()})`,
        );
      }
      this.#record(this.#committed, "logMatching", id, entry, "committed");
      const known = this.#commitTerm.get(i);
      if (known === undefined || term < known) this.#commitTerm.set(i, term);
    }
    if (commit > this.#committedMax) this.#committedMax = commit;
  }

  /**
   * A node whose state machine had applied up to `applied` is given `entry` to
   * apply: it must come next, and be the entry every other replica applied there.
   */
  onApply(id: PeerId, entry: Entry, applied: number): void {
    this.checks++;
    if (entry.index !== applied + 1) {
      throw new InvariantViolation(
        "applyOnce",
        `node ${id} was given entry ${entry.index} to apply after ${applied}`,
      );
    }
    this.#record(this.#applied, "stateMachineSafety", id, entry, "applied");
    const committed = this.#committed.get(entry.index);
    if (committed !== undefined && committed.term !== entry.term) {
      throw new InvariantViolation(
        "stateMachineSafety",
        `node ${id} applied entry ${entry.index} of term ${entry.term}, committed was term ${committed.term}`,
      );
    }
  }

  #record(map: Map<number, Known>, check: CheckName, id: PeerId, entry: Entry, what: string): void {
    this.checks++;
    const known = map.get(entry.index);
    if (known === undefined) {
      map.set(entry.index, { term: entry.term, checksum: entry.checksum });
    } else if (known.term !== entry.term || known.checksum !== entry.checksum) {
      throw new InvariantViolation(
        check,
        `node ${id} ${what} entry ${entry.index} of term ${entry.term}, another replica ${what} ` +
          `term ${known.term} there`,
      );
    }
  }

  /** A snapshot's last entry must be committed, and be the committed entry there. */
  onSnapshot(id: PeerId, snapshot: Snapshot): void {
    this.checks++;
    const meta = snapshot.metadata;
    if (meta.index === 0) return;
    const known = this.#applied.get(meta.index) ?? this.#committed.get(meta.index);
    if (known !== undefined && known.term !== meta.term) {
      throw new InvariantViolation(
        "snapshotSafety",
        `node ${id} got a snapshot at ${meta.index} of term ${meta.term}, committed term ${known.term}`,
      );
    }
  }

  /**
   * Leader completeness: `log`, the log of the leader of `term` just after it
   * was elected, holds every entry committed up to `committedAtElection` in a
   * term before `term`. Entries committed only in `term` or later are not
   * promised to it: a candidate that was paused, or whose vote responses were
   * delayed, may win its older term after a newer term committed entries
   * (seed 778041). It cannot commit an entry that conflicts with a committed
   * one (the majority that committed it rejects the older term), which the
   * state machine safety check still verifies.
   */
  checkLeaderLog(id: PeerId, term: Term, log: LogReader, committedAtElection: number): void {
    this.checks++;
    const promised = (index: number) => {
      const committedIn = this.#commitTerm.get(index);
      return committedIn !== undefined && committedIn < term;
    };
    let last = committedAtElection;
    while (last > 0 && !promised(last)) last--;
    if (log.lastIndex() < last) {
      throw new InvariantViolation(
        "leaderCompleteness",
        `leader ${id} of term ${term} ends at ${log.lastIndex()}, but ${last} was committed in ` +
          `term ${this.#commitTerm.get(last)}`,
      );
    }
    for (let i = log.firstIndex(); i <= last; i++) {
      if (!promised(i)) continue;
      const committed = this.#committed.get(i);
      const entry = entryAt(log, i);
      if (committed !== undefined && entry !== undefined && committed.term !== entry.term) {
        throw new InvariantViolation(
          "leaderCompleteness",
          `leader ${id} of term ${term} holds entry ${i} of term ${entry.term}, but entry ${i} of ` +
            `term ${committed.term} was committed (in term ${this.#commitTerm.get(i)})`,
        );
      }
    }
  }
}
