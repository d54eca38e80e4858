/**
 * {@linkcode HistoryRecorder} collects a history while a test runs, so the deterministic
 * simulation and the fault test against a real cluster record the same way.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import type { Operation } from "./model.ts";

/** Identifies an operation recorded by {@linkcode HistoryRecorder.invoke}. */
export type OperationId = number & { readonly __brand: "OperationId" };

/**
 * The default {@linkcode HistoryRecorderOptions.operationsMax}: more operations than any
 * test should record, and few enough to keep a history in memory.
 */
export const RECORDER_OPERATIONS_MAX_DEFAULT = 1_000_000;

/** Options for {@linkcode HistoryRecorder}. */
export interface HistoryRecorderOptions {
  /**
   * Reads the current time: logical ticks in the simulation, real milliseconds (for example
   * `performance.now`) in a fault test. Must never go backwards. The default counts recorded
   * events (0, 1, 2, ...), which is exact real-time order when every event is recorded by one
   * process at the moment it happens; a coarse clock makes ties, which the checker treats as
   * overlap (a weaker but still sound check).
   */
  readonly clock?: () => number;
  /** The most operations recorded, a positive safe integer (default {@linkcode RECORDER_OPERATIONS_MAX_DEFAULT}). */
  readonly operationsMax?: number;
}

type Status = "pending" | "ok" | "failed" | "unknown";

interface RecordedOperation<Input, Output> {
  readonly clientId: string | number;
  readonly input: Input;
  readonly invokeTime: number;
  status: Status;
  output: Output | undefined;
  returnTime: number;
}

/**
 * Records operations as they are invoked and completed.
 *
 * Contract: call {@linkcode invoke} just before sending a request and exactly one of
 * {@linkcode ok}, {@linkcode fail} or {@linkcode unknown} as soon as its outcome is known (or
 * never, if the test ends first). Misuse (an unknown id, completing twice, exceeding
 * `operationsMax`) is a bug in the test and throws `AssertionError`: a recorder that cannot
 * record faithfully must not produce a history that looks fine.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { check, HistoryRecorder, registerModel } from "./mod.ts";
 * import type { RegisterInput, RegisterOutput } from "./mod.ts";
 *
 * const recorder = new HistoryRecorder<RegisterInput, RegisterOutput>();
 * const put = recorder.invoke("c1", { kind: "put", key: "k", value: "a" });
 * const get = recorder.invoke("c2", { kind: "get", key: "k" });
 * recorder.ok(put, { kind: "put" });
 * recorder.ok(get, { kind: "get", value: "a" });
 * assert.equal(check(registerModel, recorder.history()).kind, "ok");
 * ```
 */
export class HistoryRecorder<Input, Output> {
  readonly #clock: () => number;
  readonly #operationsMax: number;
  readonly #records: RecordedOperation<Input, Output>[] = [];
  #events = 0;
  #lastTime = -Infinity;
  #pendingCount = 0;

  /** Creates an empty recorder. */
  constructor(options: HistoryRecorderOptions = {}) {
    this.#clock = options.clock ?? (() => this.#events);
    this.#operationsMax = options.operationsMax ?? RECORDER_OPERATIONS_MAX_DEFAULT;
    assert(
      Number.isSafeInteger(this.#operationsMax) && this.#operationsMax > 0,
      `Cannot create a recorder with operationsMax ${this.#operationsMax}: it must be a positive safe integer`,
    );
  }

  /** How many operations were invoked and not completed yet. */
  get pendingCount(): number {
    return this.#pendingCount;
  }

  /** Records that `clientId` sends `input` now; returns the id to complete it with. */
  invoke(clientId: string | number, input: Input): OperationId {
    assert(
      this.#records.length < this.#operationsMax,
      `Cannot record another operation: the recorder holds operationsMax (${this.#operationsMax})`,
    );
    const invokeTime = this.#now();
    this.#records.push({
      clientId,
      input,
      invokeTime,
      status: "pending",
      output: undefined,
      returnTime: Infinity,
    });
    this.#pendingCount++;
    return (this.#records.length - 1) as OperationId;
  }

  /** Records that the operation took effect and answered `output` now. */
  ok(id: OperationId, output: Output): void {
    assert(output !== undefined, `Cannot complete operation ${id} with an undefined output`);
    const record = this.#complete(id, "ok");
    record.output = output;
    record.returnTime = this.#now();
  }

  /** Records that the operation definitely did not take effect; it leaves the history. */
  fail(id: OperationId): void {
    this.#complete(id, "failed");
  }

  /** Records that the operation's outcome is unknown (for example it timed out). */
  unknown(id: OperationId): void {
    this.#complete(id, "unknown");
  }

  /**
   * The history so far, in invocation order. Operations still pending are included with an
   * unknown outcome, as they may yet take effect.
   */
  history(): Operation<Input, Output>[] {
    const history: Operation<Input, Output>[] = [];
    for (const record of this.#records) {
      if (record.status === "failed") continue;
      const { clientId, input, invokeTime } = record;
      history.push(
        record.status === "ok"
          ? { clientId, input, output: record.output, invokeTime, returnTime: record.returnTime }
          : { clientId, input, output: undefined, invokeTime, returnTime: Infinity },
      );
    }
    return history;
  }

  #complete(id: OperationId, status: Status): RecordedOperation<Input, Output> {
    const record = this.#records[id];
    assert(record !== undefined, `Cannot complete operation ${id}: it was never invoked`);
    assert(
      record.status === "pending",
      `Cannot complete operation ${id} as "${status}": it is already "${record.status}"`,
    );
    record.status = status;
    this.#pendingCount--;
    return record;
  }

  #now(): number {
    const time = this.#clock();
    this.#events++;
    assert(
      Number.isFinite(time) && time >= this.#lastTime,
      `Cannot record an event at time ${time}: the clock went backwards (last time ${this.#lastTime})`,
    );
    this.#lastTime = time;
    return time;
  }
}
