// The search for one partition: Wing & Gong's tree search for a linearization, with Lowe's
// just-in-time rule and memo cache ("Testing for linearizability", 2017), as Porcupine does.
//
// The history becomes one doubly linked list of call and return entries sorted by time. A node
// of the search is a linearized prefix: the set of operations placed so far and the state they
// lead to. The operations that may come next (the candidates) are those whose call precedes
// the first return entry in the list: any other one was invoked after some unplaced operation
// returned. Placing an operation removes ("lifts") its entries from the list; backtracking
// puts them back (dancing links). The search succeeds once every operation with a known
// outcome is placed. An operation with an unknown outcome has no return entry, so nothing ever
// forces it: it may be placed anywhere after its call, or never.
//
// Pruning, each argued where it is implemented:
// - the memo cache: a node equal to, or dominated by, a node already visited is skipped;
// - a legal read-only candidate is placed without trying the alternatives;
// - a node is dead as soon as an operation that must still be placed can never be legal
//   (for models that provide `mayAcceptLater`).
//
// Nondeterministic models are handled by searching over sets of states (the power-set
// construction): the state after an operation is every state any member may lead to.

import { assert } from "./_assert.ts";
import { Bitset, type BitsetSnapshot } from "./_bitset.ts";
import { mixHash } from "./hash.ts";
import type { Model, Operation } from "./model.ts";

/** What one partition's search found. */
export type SearchResult<State> =
  | { kind: "ok"; stepsUsed: number }
  | {
    kind: "illegal";
    stepsUsed: number;
    /** Indices (into the searched operations) of the longest linearizable prefix found. */
    longestPrefix: readonly number[];
    /** The possible states after that prefix. */
    statesAfterPrefix: readonly State[];
  }
  | { kind: "unknown"; stepsUsed: number };

interface Entry {
  readonly operation: number;
  readonly isCall: boolean;
  readonly time: number;
  /** On a call entry: its return entry, or null when the outcome is unknown. */
  match: Entry | null;
  prev: Entry | null;
  next: Entry | null;
}

/** One way to extend the current linearization: its call entry and the states after it. */
interface Alternative<State> {
  readonly entry: Entry;
  readonly states: readonly State[];
}

/** A node of the search tree: its states, the ways to go on, and the one being explored. */
interface Frame<State> {
  readonly states: readonly State[];
  readonly alternatives: readonly Alternative<State>[];
  next: number;
  chosen: Alternative<State> | null;
}

/** A node visited: its linearized operations, split by kind of outcome, and its states. */
interface CacheEntry<State> {
  readonly known: BitsetSnapshot;
  readonly unknown: BitsetSnapshot;
  readonly states: readonly State[];
}

/**
 * Builds the entry list: calls and returns sorted by time; at equal times calls come first,
 * so operations that touch at one instant count as overlapping; ties otherwise break by
 * operation index, which keeps the search deterministic. Returns the head sentinel.
 */
function buildEntries<I, O>(operations: readonly Operation<I, O>[]): Entry {
  const entries: Entry[] = [];
  operations.forEach((op, index) => {
    const call: Entry = {
      operation: index,
      isCall: true,
      time: op.invokeTime,
      match: null,
      prev: null,
      next: null,
    };
    entries.push(call);
    if (op.output !== undefined) {
      const ret: Entry = { ...call, isCall: false, time: op.returnTime };
      call.match = ret;
      entries.push(ret);
    }
  });
  entries.sort((a, b) =>
    a.time - b.time || Number(b.isCall) - Number(a.isCall) || a.operation - b.operation
  );
  const head: Entry = {
    operation: -1,
    isCall: false,
    time: -Infinity,
    match: null,
    prev: null,
    next: null,
  };
  let last = head;
  for (const entry of entries) {
    last.next = entry;
    entry.prev = last;
    last = entry;
  }
  return head;
}

function unlink(entry: Entry): void {
  assert(entry.prev !== null, "Cannot lift the head of the entry list");
  entry.prev.next = entry.next;
  if (entry.next !== null) entry.next.prev = entry.prev;
}

// Dancing links: an unlinked entry keeps its own pointers, so undoing the unlinks in reverse
// order restores the list exactly.
function relink(entry: Entry): void {
  assert(entry.prev !== null, "Cannot unlift the head of the entry list");
  entry.prev.next = entry;
  if (entry.next !== null) entry.next.prev = entry;
}

function lift(call: Entry): void {
  unlink(call);
  if (call.match !== null) unlink(call.match);
}

function unlift(call: Entry): void {
  if (call.match !== null) relink(call.match);
  relink(call);
}

/**
 * How many list entries past the candidates the search inspects for operations that can never
 * be placed (see `Model.mayAcceptLater`). The check is skipped for models without that hook.
 */
const LOOKAHEAD_ENTRIES = 64;

const NO_STATES: readonly never[] = Object.freeze([]);

class PartitionSearch<State, Input, Output> {
  readonly #model: Model<State, Input, Output>;
  readonly #operations: readonly Operation<Input, Output>[];
  readonly #stepBudget: number;
  readonly #head: Entry;
  /** The linearized operations whose outcome is known. */
  readonly #linearizedKnown: Bitset;
  /** The linearized operations whose outcome is unknown. */
  readonly #linearizedUnknown: Bitset;
  readonly #cache = new Map<number, CacheEntry<State>[]>();
  readonly #stack: Frame<State>[] = [];
  readonly #readOnly: readonly boolean[];
  #states: readonly State[];
  #knownRemaining = 0;
  #steps = 0;
  /** The deepest path seen, as operation indices. */
  readonly #longestPrefix: number[] = [];
  #statesAfterLongestPrefix: readonly State[];
  /** How many leading operations the current path shares with `#longestPrefix`. */
  #sharedWithLongest = 0;

  constructor(
    model: Model<State, Input, Output>,
    operations: readonly Operation<Input, Output>[],
    stepBudget: number,
  ) {
    this.#model = model;
    this.#operations = operations;
    this.#stepBudget = stepBudget;
    this.#head = buildEntries(operations);
    this.#linearizedKnown = new Bitset(operations.length);
    this.#linearizedUnknown = new Bitset(operations.length);
    this.#readOnly = operations.map((op) => model.isReadOnly?.(op.input, op.output) ?? false);
    this.#states = [model.init()];
    this.#statesAfterLongestPrefix = this.#states;
    for (const op of operations) if (op.output !== undefined) this.#knownRemaining++;
  }

  run(): SearchResult<State> {
    // Invariant: the stack holds one frame per node from the root to the current node, and
    // every frame but the last has a chosen alternative, which is lifted.
    while (this.#knownRemaining > 0) {
      const alternatives = this.#expand();
      if (alternatives === undefined) return { kind: "unknown", stepsUsed: this.#steps };
      this.#stack.push({ states: this.#states, alternatives, next: 0, chosen: null });
      if (!this.#descend()) return this.#illegal();
    }
    return { kind: "ok", stepsUsed: this.#steps };
  }

  /**
   * The ways to extend the current linearization, in the order to try them; undefined when
   * the budget ran out. The candidates are the calls before the first return in the list
   * (Lowe's just-in-time rule). If a read-only one (see `Model.isReadOnly`) is legal and
   * leaves the states exactly as they are, it is the only alternative: in any linearization
   * that extends this one, moving it to the front keeps every step legal (it changes no state
   * where it stood, and none here) and respects real time (it is a candidate, so no remaining
   * operation returned before it was invoked). So if it fails, every alternative fails.
   * If a candidate can never become legal (see `Model.mayAcceptLater`), there are none.
   */
  #expand(): Alternative<State>[] | undefined {
    const alternatives: Alternative<State>[] = [];
    let entry = this.#head.next;
    for (; entry !== null && entry.isCall; entry = entry.next) {
      if (this.#steps >= this.#stepBudget) return undefined;
      this.#steps++;
      const op = this.#operations[entry.operation];
      const states = this.#stepAll(op.input, op.output);
      if (states.length === 0) {
        if (this.#doomed(op)) return [];
        continue;
      }
      const stutters = this.#readOnly[entry.operation] && this.#equalSets(states, this.#states);
      if (stutters) return [{ entry, states: this.#states }];
      alternatives.push({ entry, states });
    }
    if (this.#doomedAhead(entry)) return [];
    // In call order, as Lowe's algorithm walks the list. (Trying unknown outcomes last, or
    // the earliest return first, was measured: both explore far more.)
    return alternatives;
  }

  /**
   * Whether one of the operations invoked in the next {@linkcode LOOKAHEAD_ENTRIES} entries
   * from `entry` can never be placed. They are not candidates yet, but they must be placed
   * later all the same; finding one doomed now saves exploring every order of the operations
   * before it.
   */
  #doomedAhead(entry: Entry | null): boolean {
    if (this.#model.mayAcceptLater === undefined) return false;
    for (let seen = 0; entry !== null && seen < LOOKAHEAD_ENTRIES; entry = entry.next, seen++) {
      if (entry.isCall && this.#doomed(this.#operations[entry.operation])) return true;
    }
    return false;
  }

  /**
   * Whether `op`, which the model rejects in every current state, can never be placed from
   * here: then no linearization extends the current one, if `op` must be placed (its outcome
   * is known).
   */
  #doomed(op: Operation<Input, Output>): boolean {
    const mayAcceptLater = this.#model.mayAcceptLater;
    if (mayAcceptLater === undefined || op.output === undefined) return false;
    const output = op.output;
    return this.#states.every((state) =>
      !mayAcceptLater.call(this.#model, state, op.input, output)
    );
  }

  /**
   * Moves to the next untried alternative of the deepest frame, backtracking through
   * exhausted frames; returns false when the root is exhausted.
   */
  #descend(): boolean {
    for (;;) {
      const frame = this.#stack[this.#stack.length - 1];
      if (frame === undefined) return false;
      while (frame.next < frame.alternatives.length) {
        const alternative = frame.alternatives[frame.next++];
        const operation = alternative.entry.operation;
        this.#linearizedOf(alternative.entry).add(operation);
        if (this.#remember(alternative.states)) {
          frame.chosen = alternative;
          this.#states = alternative.states;
          lift(alternative.entry);
          if (alternative.entry.match !== null) this.#knownRemaining--;
          return true;
        }
        this.#linearizedOf(alternative.entry).delete(operation);
      }
      this.#backtrack();
    }
  }

  /** Drops the deepest frame, undoing its parent's chosen alternative. */
  #backtrack(): void {
    this.#maybeRecordLongest();
    this.#stack.pop();
    const parent = this.#stack[this.#stack.length - 1];
    if (parent === undefined) return;
    const chosen = parent.chosen;
    assert(chosen !== null, "Cannot backtrack: the parent frame has no chosen alternative");
    parent.chosen = null;
    this.#states = parent.states;
    this.#linearizedOf(chosen.entry).delete(chosen.entry.operation);
    unlift(chosen.entry);
    if (chosen.entry.match !== null) this.#knownRemaining++;
    const depth = this.#stack.length - 1;
    this.#sharedWithLongest = Math.min(this.#sharedWithLongest, depth);
  }

  /**
   * Records the current path if it is the deepest yet, copying only the part after where it
   * left the previous record: each operation pushed is copied at most once, so recording costs
   * O(1) amortized per step even on a history of thousands of operations.
   */
  #maybeRecordLongest(): void {
    const depth = this.#stack.length - 1;
    if (depth <= this.#longestPrefix.length) return;
    this.#longestPrefix.length = this.#sharedWithLongest;
    for (let i = this.#sharedWithLongest; i < depth; i++) {
      const chosen = this.#stack[i].chosen;
      assert(chosen !== null, "Cannot record a prefix: a frame on the path has no choice");
      this.#longestPrefix.push(chosen.entry.operation);
    }
    this.#sharedWithLongest = depth;
    this.#statesAfterLongestPrefix = this.#states;
  }

  #illegal(): SearchResult<State> {
    return {
      kind: "illegal",
      stepsUsed: this.#steps,
      longestPrefix: [...this.#longestPrefix],
      statesAfterPrefix: this.#statesAfterLongestPrefix,
    };
  }

  /** Every state any current state may lead to, without duplicates. */
  #stepAll(input: Input, output: Output | undefined): readonly State[] {
    const model = this.#model;
    if (this.#states.length === 1) {
      const next = model.step(this.#states[0], input, output);
      return next.length <= 1 ? next : this.#distinct(next);
    }
    const all: State[] = [];
    for (const state of this.#states) all.push(...model.step(state, input, output));
    return all.length === 0 ? NO_STATES : this.#distinct(all);
  }

  #distinct(states: readonly State[]): State[] {
    const distinct: State[] = [];
    for (const state of states) {
      if (!distinct.some((other) => this.#model.equalStates(other, state))) distinct.push(state);
    }
    return distinct;
  }

  #linearizedOf(call: Entry): Bitset {
    return call.match === null ? this.#linearizedUnknown : this.#linearizedKnown;
  }

  /**
   * Adds the current node to the cache; returns false if a node that dominates it was visited
   * before. Node (K, U, S) dominates (K, U', S) when U is a subset of U': the operations in
   * U' but not U have unknown outcomes, so they may also be left out, and every completion of
   * the second node completes the first. A visited node was either exhausted without success,
   * or is still being explored and will find any completion the dominated node has (Lowe's
   * cache, extended to unknown outcomes). Only the known part enters the hash.
   */
  #remember(states: readonly State[]): boolean {
    let stateHash = 0;
    for (const state of states) stateHash = (stateHash + this.#model.hashState(state)) | 0;
    const key = (this.#linearizedKnown.hash ^ mixHash(stateHash)) >>> 0;
    const bucket = this.#cache.get(key) ?? [];
    // Each comparison counts as a step, so that the budget bounds the time however many
    // nodes differ only in their unknown part.
    this.#steps += bucket.length;
    let dominated = 0;
    for (const cached of bucket) {
      if (!this.#sameKnownAndStates(cached, states)) continue;
      if (this.#linearizedUnknown.includesSnapshot(cached.unknown)) return false;
      if (this.#linearizedUnknown.isSubsetOfSnapshot(cached.unknown)) dominated++;
    }
    const entry = {
      known: this.#linearizedKnown.snapshot(),
      unknown: this.#linearizedUnknown.snapshot(),
      states,
    };
    // Keep each bucket free of entries the new one dominates: they would never match first.
    const kept = dominated === 0
      ? bucket
      : bucket.filter((cached) =>
        !(this.#sameKnownAndStates(cached, states) &&
          this.#linearizedUnknown.isSubsetOfSnapshot(cached.unknown))
      );
    kept.push(entry);
    this.#cache.set(key, kept);
    return true;
  }

  #sameKnownAndStates(cached: CacheEntry<State>, states: readonly State[]): boolean {
    return this.#linearizedKnown.equalsSnapshot(cached.known) &&
      this.#equalSets(cached.states, states);
  }

  // Both sets are duplicate-free (see #distinct), so equal sizes plus inclusion is equality.
  #equalSets(a: readonly State[], b: readonly State[]): boolean {
    if (a.length !== b.length) return false;
    const model = this.#model;
    return a.every((x) => b.some((y) => model.equalStates(x, y)));
  }
}

/**
 * Searches for a linearization of `operations` (one partition) under `model`, taking at most
 * `stepBudget` steps. A step is one visit of an entry: one attempt to linearize an operation
 * (one model step over the current states) or one backtrack.
 */
export function searchLinearization<State, Input, Output>(
  model: Model<State, Input, Output>,
  operations: readonly Operation<Input, Output>[],
  stepBudget: number,
): SearchResult<State> {
  return new PartitionSearch(model, operations, stepBudget).run();
}
