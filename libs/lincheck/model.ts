/**
 * The two shapes every caller of the checker deals with: an {@linkcode Operation} in a
 * history, and the {@linkcode Model} (a sequential specification) the history is checked
 * against.
 *
 * @module
 */

/**
 * One client operation as observed from outside the system.
 *
 * Contract:
 * - `invokeTime` is when the client sent the request, `returnTime` when it saw the answer, on
 *   one clock shared by every operation of the history (logical ticks or real milliseconds).
 *   Operation A precedes B in real time only if `A.returnTime < B.invokeTime`; equal times
 *   count as overlapping, so a coarse clock makes the check weaker, never wrong.
 * - `output === undefined` means the outcome is unknown (a timed-out request): the operation
 *   may take effect at any moment after `invokeTime`, long after the client gave up, or never.
 *   Its `returnTime` must then be `Infinity`. `Output` itself must never be `undefined`.
 * - An operation that definitely did not take effect (rejected before it was proposed) does
 *   not belong in the history at all.
 */
export interface Operation<Input, Output> {
  /** Who issued the operation. Used only in explanations: one client may overlap itself. */
  readonly clientId: string | number;
  /** What was asked. */
  readonly input: Input;
  /** What was answered, or `undefined` when the outcome is unknown. */
  readonly output: Output | undefined;
  /** When the request was sent. A finite number. */
  readonly invokeTime: number;
  /** When the answer arrived: finite and `>= invokeTime`, or `Infinity` when unknown. */
  readonly returnTime: number;
}

/**
 * A sequential specification of one object (for example one key of a register).
 *
 * Contract:
 * - `step` is pure: it must not mutate `state`, and equal arguments give equal results.
 * - `equalStates(a, b)` implies `hashState(a) === hashState(b)`.
 * - With `output === undefined` (unknown outcome), `step` returns the states the operation
 *   may lead to whatever it answered; it should not return an empty list for a mutation.
 *
 * @typeParam State The state of one partition. Treated as immutable.
 * @typeParam Input What an operation asks.
 * @typeParam Output What an operation answers. Never `undefined`.
 */
export interface Model<State, Input, Output> {
  /** The state of every partition before its first operation. */
  init(): State;
  /**
   * Applies `input`, answered with `output`, to `state`: returns every state the object may be
   * in afterwards. An empty list means the answer is impossible in `state`. Most models are
   * deterministic and return one state or none; a nondeterministic one returns several.
   */
  step(state: State, input: Input, output: Output | undefined): readonly State[];
  /** A 32-bit hash of a state, for the search's memo cache. */
  hashState(state: State): number;
  /** Whether two states are interchangeable for every future operation. */
  equalStates(a: State, b: State): boolean;
  /**
   * The independent object (for example the key) an operation touches. Operations on
   * different partitions are checked separately, which is sound for linearizability (it is a
   * local property) and keeps every search small. Without it, the history is one partition
   * named `""`.
   */
  partitionKey?(input: Input): string;
  /**
   * Whether an operation, answered with `output` (`undefined`: unknown), leaves every state
   * in which it is legal unchanged: a read, or a compare-and-swap that answered "no swap".
   * It must be exact: when it says true, `step` returns only `state` itself or nothing.
   *
   * The checker uses it twice. It drops read-only operations whose outcome is unknown: they
   * constrain nothing and only widen the search. And it places a read-only operation as soon
   * as it is legal without trying alternatives, which is safe (moving a state-preserving
   * operation earlier, among operations that overlap it, keeps a linearization legal) and
   * prunes most of the search.
   */
  isReadOnly?(input: Input, output: Output | undefined): boolean;
  /**
   * Whether some sequence of operations applied to `state` could reach a state in which
   * `step` accepts `input` answered with `output`. Returning true is always safe; returning
   * false lets the checker abandon a branch as soon as an operation that must still be placed
   * can never be (for an append-only list: a read whose tokens do not start with the current
   * list). Without it, the checker assumes true.
   */
  mayAcceptLater?(state: State, input: Input, output: Output): boolean;
  /** A one-line description of an operation for explanations (default: JSON). */
  describeOperation?(input: Input, output: Output | undefined): string;
  /** A one-line description of a state for explanations (default: JSON). */
  describeState?(state: State): string;
}
