// Checks BinaryHeap: table tests of push/pop/peek/size scripts (empty heap, order, ties in push
// order, interleaved pushes and pops, a reversed comparator), and a property test that replays
// random scripts from seeded PRNGs (mulberry32 from @tinykv/raft) against a dumb oracle: an array
// kept sorted by a stable insertion. A failure names its seed.

import assert from "node:assert/strict";
import { mulberry32, type Prng } from "@tinykv/raft";
import { BinaryHeap } from "./binary_heap.ts";

interface Item {
  readonly key: number;
  readonly name: string;
}

const byKey = (a: Item, b: Item) => a.key - b.key;
const item = (key: number, name = `${key}`): Item => ({ key, name });

/** Pops every item, returning their names. */
function drain(heap: BinaryHeap<Item>): string[] {
  const names: string[] = [];
  for (let next = heap.pop(); next !== undefined; next = heap.pop()) names.push(next.name);
  return names;
}

Deno.test("BinaryHeap is empty when new: pop() and peek() return undefined", () => {
  const heap = new BinaryHeap<Item>(byKey);
  assert.equal(heap.size, 0);
  assert.equal(heap.peek(), undefined);
  assert.equal(heap.pop(), undefined);
  assert.equal(heap.size, 0);
});

Deno.test("BinaryHeap.pop() returns items in compare order, ties in push order", () => {
  const cases: { name: string; keys: number[]; popped: string[] }[] = [
    { name: "one item", keys: [7], popped: ["7"] },
    { name: "ascending", keys: [1, 2, 3, 4], popped: ["1", "2", "3", "4"] },
    { name: "descending", keys: [4, 3, 2, 1], popped: ["1", "2", "3", "4"] },
    { name: "shuffled", keys: [5, 1, 4, 2, 3, 0], popped: ["0", "1", "2", "3", "4", "5"] },
    {
      name: "negative and fractional",
      keys: [0.5, -2, 1e9, -0.25],
      popped: ["-2", "-0.25", "0.5", "1000000000"],
    },
    { name: "all equal", keys: [3, 3, 3, 3, 3], popped: ["3#0", "3#1", "3#2", "3#3", "3#4"] },
    {
      name: "ties among others",
      keys: [2, 1, 2, 0, 1, 2, 0],
      popped: ["0#3", "0#6", "1#1", "1#4", "2#0", "2#2", "2#5"],
    },
  ];
  for (const { name, keys, popped } of cases) {
    const heap = new BinaryHeap<Item>(byKey);
    const duplicated = (key: number) => keys.filter((k) => k === key).length > 1;
    keys.forEach((key, i) => heap.push(item(key, duplicated(key) ? `${key}#${i}` : `${key}`)));
    assert.equal(heap.size, keys.length, name);
    assert.deepEqual(drain(heap), popped, name);
    assert.equal(heap.size, 0, name);
  }
});

Deno.test("BinaryHeap.peek() returns what pop() would, without removing it", () => {
  const heap = new BinaryHeap<Item>(byKey);
  const first = item(1, "first");
  heap.push(item(2));
  heap.push(first);
  heap.push(item(1, "second"));
  assert.equal(heap.peek(), first);
  assert.equal(heap.peek(), first);
  assert.equal(heap.size, 3);
  assert.equal(heap.pop(), first);
  assert.equal(heap.peek()?.name, "second");
  assert.equal(heap.size, 2);
});

Deno.test("BinaryHeap keeps push order for ties across interleaved pushes and pops", () => {
  // Each step is a key to push, or "pop" with the name it must return.
  const steps: (number | { pop: string })[] = [
    5,
    5,
    { pop: "5#0" },
    1,
    5,
    { pop: "1#3" },
    { pop: "5#1" },
    0,
    5,
    { pop: "0#7" },
    { pop: "5#4" },
    { pop: "5#8" },
  ];
  const heap = new BinaryHeap<Item>(byKey);
  steps.forEach((step, i) => {
    if (typeof step === "number") heap.push(item(step, `${step}#${i}`));
    else assert.equal(heap.pop()?.name, step.pop, `step ${i}`);
  });
  assert.equal(heap.size, 0);
});

Deno.test("BinaryHeap with a reversed comparator pops the largest first, ties in push order", () => {
  const heap = new BinaryHeap<Item>((a, b) => b.key - a.key);
  for (const [key, name] of [[1, "a"], [3, "b"], [2, "c"], [3, "d"]] as const) {
    heap.push(item(key, name));
  }
  assert.deepEqual(drain(heap), ["b", "d", "c", "a"]);
});

/** The oracle: an array sorted by key, an item inserted after every item with a key <= its own. */
class SortedArrayQueue {
  readonly items: Item[] = [];

  push(next: Item): void {
    let at = this.items.length;
    while (at > 0 && this.items[at - 1].key > next.key) at--;
    this.items.splice(at, 0, next);
  }

  pop(): Item | undefined {
    return this.items.shift();
  }
}

/** Runs one random script of `steps` operations against the heap and the oracle. */
function checkAgainstOracle(seed: number, steps: number): void {
  const random: Prng = mulberry32(seed);
  const heap = new BinaryHeap<Item>(byKey);
  const oracle = new SortedArrayQueue();
  // Few distinct keys, so that ties are common; a bias that drifts, so the heap grows and shrinks.
  const keyRange = 1 + Math.floor(random() * 20);
  const pushChance = 0.3 + random() * 0.5;
  for (let step = 0; step < steps; step++) {
    const where = `seed ${seed}, step ${step}`;
    if (random() < pushChance) {
      const next = item(Math.floor(random() * keyRange), `#${step}`);
      heap.push(next);
      oracle.push(next);
    } else {
      const expected = oracle.items[0];
      assert.equal(heap.peek(), expected, `peek() at ${where}`);
      assert.equal(heap.pop(), oracle.pop(), `pop() at ${where}`);
    }
    assert.equal(heap.size, oracle.items.length, `size at ${where}`);
  }
  for (let expected = oracle.pop(); expected !== undefined; expected = oracle.pop()) {
    assert.equal(heap.pop(), expected, `drain at seed ${seed}`);
  }
  assert.equal(heap.pop(), undefined, `empty at seed ${seed}`);
}

Deno.test("BinaryHeap pops like a stable sorted array on random scripts (seeds 1..300)", () => {
  for (let seed = 1; seed <= 300; seed++) checkAgainstOracle(seed, 400);
});
