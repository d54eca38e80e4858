/**
 * {@linkcode EventQueue}: a binary min-heap of timed events. Events at the same
 * time come out in the order they were scheduled, so the run is deterministic.
 *
 * @module
 */

interface Slot<T> {
  readonly time: number;
  readonly seq: number;
  readonly event: T;
}

/** A priority queue of events ordered by (time, scheduling order). */
export class EventQueue<T> {
  #heap: Slot<T>[] = [];
  #seq = 0;

  /** The number of events waiting. */
  get size(): number {
    return this.#heap.length;
  }

  /** Schedules `event` at `time`. */
  push(time: number, event: T): void {
    const heap = this.#heap;
    heap.push({ time, seq: this.#seq++, event });
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(heap[i], heap[parent])) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
  }

  /** The time of the earliest event, or undefined when empty. */
  peekTime(): number | undefined {
    return this.#heap[0]?.time;
  }

  /** Removes and returns the earliest event with its time. */
  pop(): { time: number; event: T } | undefined {
    const heap = this.#heap;
    const top = heap[0];
    if (top === undefined) return undefined;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < heap.length && less(heap[left], heap[smallest])) smallest = left;
        if (right < heap.length && less(heap[right], heap[smallest])) smallest = right;
        if (smallest === i) break;
        [heap[i], heap[smallest]] = [heap[smallest], heap[i]];
        i = smallest;
      }
    }
    return { time: top.time, event: top.event };
  }
}

function less<T>(a: Slot<T>, b: Slot<T>): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}
