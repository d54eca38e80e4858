/**
 * {@linkcode EventQueue}: the simulation's timed events, on `@tinykv/timer`'s
 * {@linkcode BinaryHeap}. Events at the same time come out in the order they were
 * scheduled (the heap keeps ties in push order), so the run is deterministic.
 *
 * @module
 */

import { BinaryHeap } from "@tinykv/timer";
import { assert } from "./_assert.ts";

interface Slot<T> {
  readonly time: number;
  readonly event: T;
}

/** A priority queue of events ordered by (time, scheduling order). */
export class EventQueue<T> {
  readonly #heap = new BinaryHeap<Slot<T>>((a, b) => a.time - b.time);

  /** The number of events waiting. */
  get size(): number {
    return this.#heap.size;
  }

  /** Schedules `event` at `time` (a finite number: the heap orders by subtraction). */
  push(time: number, event: T): void {
    assert(
      Number.isFinite(time),
      `Cannot schedule an event at time ${time}: expected a finite time`,
    );
    this.#heap.push({ time, event });
  }

  /** The time of the earliest event, or undefined when empty. */
  peekTime(): number | undefined {
    return this.#heap.peek()?.time;
  }

  /** Removes and returns the earliest event with its time. */
  pop(): { time: number; event: T } | undefined {
    return this.#heap.pop();
  }
}
