// Checks the KvSpace implementations (in memory, and a key prefix of the LMDB NodeStore or of
// MemoryNodeStore) against a plain model under random operation sequences, plus NodeStore's
// durability across a reopen and that neighbouring prefixes never see each other's keys.
import assert from "node:assert/strict";
import fc from "fast-check";
import { compareBytes, countPairs, type KvSpace, MemoryKvSpace } from "./kv_space.ts";
import { MemoryNodeStore } from "./memory_node_store.ts";
import { NodeStore, prefixEnd, SPACE } from "./node_store.ts";

type Op =
  | { kind: "put"; key: number[]; value: number[] }
  | { kind: "delete"; key: number[] }
  | { kind: "scan"; start: number[]; end: number[] | undefined };

const key = fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 });
const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("put" as const), key, value: fc.array(fc.nat(255)) }),
  fc.record({ kind: fc.constant("delete" as const), key }),
  fc.record({
    kind: fc.constant("scan" as const),
    start: key,
    end: fc.option(key, { nil: undefined }),
  }),
);

/** Runs `ops` on `space` and on a model; every answer must agree. */
function agreesWithModel(space: KvSpace, ops: Op[]): void {
  const model = new Map<string, Uint8Array>();
  const id = (k: Uint8Array) => Array.from(k).join(",");
  for (const op of ops) {
    if (op.kind === "put") {
      const k = new Uint8Array(op.key);
      space.put(k, new Uint8Array(op.value));
      model.set(id(k), new Uint8Array(op.value));
    } else if (op.kind === "delete") {
      const k = new Uint8Array(op.key);
      assert.equal(space.delete(k), model.delete(id(k)));
    } else {
      const start = new Uint8Array(op.start);
      const end = op.end === undefined ? undefined : new Uint8Array(op.end);
      const got = [...space.scan(start, end)].map((p) => [id(p.key), Array.from(p.value)]);
      const want = [...model.entries()]
        .map(([k, v]) => ({ key: new Uint8Array(k === "" ? [] : k.split(",").map(Number)), v }))
        .filter((p) => compareBytes(p.key, start) >= 0)
        .filter((p) => end === undefined || compareBytes(p.key, end) < 0)
        .sort((a, b) => compareBytes(a.key, b.key))
        .map((p) => [id(p.key), Array.from(p.v)]);
      assert.deepEqual(got, want);
    }
  }
  for (const [k, v] of model) {
    const bytes = new Uint8Array(k === "" ? [] : k.split(",").map(Number));
    assert.deepEqual(space.get(bytes), v);
  }
}

Deno.test("MemoryKvSpace agrees with a model", () => {
  fc.assert(fc.property(fc.array(opArbitrary, { maxLength: 40 }), (ops) => {
    agreesWithModel(new MemoryKvSpace(), ops);
  }));
});

Deno.test("NodeStore spaces agree with a model and never see a neighbour's keys", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tinykv-store-" });
  const store = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
  try {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArbitrary, { maxLength: 30 }), async (ops) => {
        const peer = ++run;
        await store.write(() => {
          // Neighbours on both sides of the space under test.
          store.space(peer, SPACE.data).put(new Uint8Array([9]), new Uint8Array([1]));
          store.space(peer, SPACE.meta).put(new Uint8Array([]), new Uint8Array([2]));
          agreesWithModel(store.space(peer, SPACE.sessions), ops);
        });
        const neighbour = [...store.space(peer, SPACE.data).scan(new Uint8Array(), undefined)];
        assert.equal(neighbour.length, 1);
      }),
      { numRuns: 60 },
    );
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("MemoryNodeStore spaces agree with a model and never see a neighbour's keys", async () => {
  const store = new MemoryNodeStore();
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(opArbitrary, { maxLength: 30 }), async (ops) => {
      const peer = ++run;
      await store.write(() => {
        store.space(peer, SPACE.data).put(new Uint8Array([9]), new Uint8Array([1]));
        store.space(peer, SPACE.meta).put(new Uint8Array([]), new Uint8Array([2]));
        agreesWithModel(store.space(peer, SPACE.sessions), ops);
      });
      const neighbour = [...store.space(peer, SPACE.data).scan(new Uint8Array(), undefined)];
      assert.equal(neighbour.length, 1);
    }),
    { numRuns: 60 },
  );
});

Deno.test("NodeStore keeps committed writes across a reopen and clears a space alone", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tinykv-store-" });
  try {
    const first = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
    await first.write(() => {
      first.putIdentity("node_id", "n1");
      first.space(7, SPACE.data).put(new TextEncoder().encode("k"), new Uint8Array([1, 2]));
      first.space(8, SPACE.data).put(new TextEncoder().encode("k"), new Uint8Array([3]));
    });
    await first.close();
    const second = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
    assert.equal(second.getIdentity("node_id"), "n1");
    assert.deepEqual(
      second.space(7, SPACE.data).get(new TextEncoder().encode("k")),
      new Uint8Array([1, 2]),
    );
    await second.write(() => second.space(7, SPACE.data).clear());
    assert.equal(second.space(7, SPACE.data).get(new TextEncoder().encode("k")), undefined);
    assert.deepEqual(
      second.space(8, SPACE.data).get(new TextEncoder().encode("k")),
      new Uint8Array([3]),
    );
    await second.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("prefixEnd() is the least key above every key with the prefix", () => {
  assert.deepEqual(prefixEnd(new Uint8Array([1, 2])), new Uint8Array([1, 3]));
  assert.deepEqual(prefixEnd(new Uint8Array([1, 0xff])), new Uint8Array([2]));
  assert.throws(() => prefixEnd(new Uint8Array([0xff])), RangeError);
});

Deno.test("countPairs() counts a space's keys and the bytes of its keys and values", () => {
  const space = new MemoryKvSpace();
  assert.deepEqual(countPairs(space), { keys: 0, bytes: 0 });
  space.put(new Uint8Array([1, 2]), new Uint8Array([3]));
  space.put(new Uint8Array([4]), new Uint8Array(0));
  assert.deepEqual(countPairs(space), { keys: 2, bytes: 4 });
});
