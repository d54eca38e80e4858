/**
 * {@linkcode BinaryHeap}: a priority queue (binary min-heap) with a stable order for ties, the
 * one behind `FakeClock`'s timeouts and the simulation's event queue (`tests/sim`).
 *
 * @module
 */

/**
 * Orders two items, in the shape `Array.prototype.sort` takes: negative when `a` comes first,
 * positive when `b` does, 0 when they tie. It must be a consistent order (never `NaN`, and the
 * same answer for the same items while they are in the heap).
 */
export type Comparator<T> = (a: T, b: T) => number;

/**
 * A priority queue: {@linkcode BinaryHeap.pop} returns the first item under `compare` (the one
 * `Array.prototype.sort` would put first), and items that tie come out in the order they were
 * pushed (first in, first out), so a queue of timed events replays identically. `push` and `pop`
 * take O(log n), `peek` and `size` O(1).
 *
 * Unbounded: the owner limits what it pushes. An item's ordering keys must not change while it is
 * in the heap.
 *
 * @example Timed events, ties in push order
 * ```ts
 * import assert from "node:assert/strict";
 * import { BinaryHeap } from "./binary_heap.ts";
 *
 * const heap = new BinaryHeap<{ at: number; name: string }>((a, b) => a.at - b.at);
 * heap.push({ at: 20, name: "late" });
 * heap.push({ at: 10, name: "first" });
 * heap.push({ at: 10, name: "second" });
 * assert.equal(heap.peek()?.name, "first");
 * const names: string[] = [];
 * for (let item = heap.pop(); item !== undefined; item = heap.pop()) names.push(item.name);
 * assert.deepEqual(names, ["first", "second", "late"]);
 * ```
 */
export class BinaryHeap<T> {
  readonly #compare: Comparator<T>;
  // Invariant: no slot comes after its children in (compare, push order). `#items[i]` was the
  // `#orders[i]`-th push; the two arrays always have the same length.
  readonly #items: T[] = [];
  readonly #orders: number[] = [];
  #pushCount = 0;

  /** Creates an empty heap ordered by `compare` (ties by push order). */
  constructor(compare: Comparator<T>) {
    this.#compare = compare;
  }

  /** The number of items in the heap. */
  get size(): number {
    return this.#items.length;
  }

  /** Adds `item`. */
  push(item: T): void {
    this.#items.push(item);
    this.#orders.push(this.#pushCount++);
    this.#siftUp(this.#items.length - 1);
  }

  /** Returns the first item without removing it, or `undefined` when the heap is empty. */
  peek(): T | undefined {
    return this.#items[0];
  }

  /** Removes and returns the first item, or returns `undefined` when the heap is empty. */
  pop(): T | undefined {
    const items = this.#items;
    if (items.length === 0) return undefined;
    const top = items[0];
    // Array.pop() drops the heap's reference to the moved slot, so popped items can be collected.
    const last = items.pop() as T;
    const lastOrder = this.#orders.pop() as number;
    if (items.length > 0) {
      items[0] = last;
      this.#orders[0] = lastOrder;
      this.#siftDown(0);
    }
    return top;
  }

  /** Whether the item `a` (pushed `aOrder`-th) comes before the item `b` (pushed `bOrder`-th). */
  #before(a: T, aOrder: number, b: T, bOrder: number): boolean {
    const order = this.#compare(a, b);
    return order < 0 || (order === 0 && aOrder < bOrder);
  }

  /** Moves the slot at `index` up to its place. Shifts parents down rather than swapping. */
  #siftUp(index: number): void {
    const items = this.#items;
    const orders = this.#orders;
    const item = items[index];
    const order = orders[index];
    let i = index;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(item, order, items[parent], orders[parent])) break;
      items[i] = items[parent];
      orders[i] = orders[parent];
      i = parent;
    }
    items[i] = item;
    orders[i] = order;
  }

  /** Moves the slot at `index` down to its place. Shifts children up rather than swapping. */
  #siftDown(index: number): void {
    const items = this.#items;
    const orders = this.#orders;
    const length = items.length;
    const item = items[index];
    const order = orders[index];
    let i = index;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= length) break;
      const right = left + 1;
      const child = right < length &&
          this.#before(items[right], orders[right], items[left], orders[left])
        ? right
        : left;
      if (!this.#before(items[child], orders[child], item, order)) break;
      items[i] = items[child];
      orders[i] = orders[child];
      i = child;
    }
    items[i] = item;
    orders[i] = order;
  }
}
