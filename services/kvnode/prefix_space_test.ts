// Checks PrefixSpace, the KvSpace that stores keys longer than the storage's own key limit in
// hashed groups: under random operations it must agree with a plain model (get, put, delete and
// scans in byte order), also with a weak slot hash that makes every group a run of collisions and
// with scans that sort a group in several passes; and on real LMDB, keys of 4,096 bytes that share
// all but their last bytes are stored, found, scanned in order and removed.
import assert from "node:assert/strict";
import fc from "fast-check";
import { compareBytes } from "@tinykv/shard";
import { MemoryNodeStore } from "./memory_node_store.ts";
import { NodeStore } from "./node_store.ts";
import { makeKey, PREFIX } from "./node_storage.ts";
import { PrefixSpace, SLOT_BYTES, type SlotHash } from "./prefix_space.ts";

const PREFIX_BYTES = 10;
const HEAD = 16;
const SLOTS = 1n << 64n;

type Op =
  | { kind: "put"; key: number[]; value: number[] }
  | { kind: "delete"; key: number[] }
  | { kind: "scan"; start: number[]; end: number[] | undefined };

// Keys of 0 to 24 bytes over three symbols, so that many keys are longer than the 16-byte head
// and many share it.
const keyArbitrary = fc.oneof(
  fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 24 }),
  // One of twelve long keys of one group, so that puts and deletes meet.
  fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 2 }).map((tail) => [
    ...new Array(HEAD).fill(1),
    ...tail,
  ]),
);
const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("put" as const),
      key: keyArbitrary,
      value: fc.array(fc.nat(255), { maxLength: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("delete" as const), key: keyArbitrary }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("scan" as const),
      start: keyArbitrary,
      end: fc.option(keyArbitrary, { nil: undefined }),
    }),
  },
);

const id = (k: Uint8Array | number[]) => Array.from(k).join(",");
const bytesOf = (k: string) => new Uint8Array(k === "" ? [] : k.split(",").map(Number));

/** Runs `ops` in one transaction of a fresh memory store; every answer must match a model. */
async function agreesWithModel(
  ops: Op[],
  options: { slotHash?: SlotHash; groupPassKeys?: number },
): Promise<void> {
  const store = new MemoryNodeStore({ keyBytesMax: PREFIX_BYTES + HEAD + SLOT_BYTES });
  const space = new PrefixSpace(store, makeKey(PREFIX.space, [1], new Uint8Array([0])), options);
  const model = new Map<string, number[]>();
  await store.write(() => {
    for (const op of ops) {
      if (op.kind === "put") {
        space.put(new Uint8Array(op.key), new Uint8Array(op.value));
        model.set(id(op.key), op.value);
      } else if (op.kind === "delete") {
        assert.equal(space.delete(new Uint8Array(op.key)), model.delete(id(op.key)));
      } else {
        const start = new Uint8Array(op.start);
        const end = op.end === undefined ? undefined : new Uint8Array(op.end);
        const got = [...space.scan(start, end)].map((p) => [id(p.key), Array.from(p.value)]);
        const want = [...model.entries()]
          .map(([k, v]) => ({ key: bytesOf(k), v }))
          .filter((p) => compareBytes(p.key, start) >= 0)
          .filter((p) => end === undefined || compareBytes(p.key, end) < 0)
          .sort((a, b) => compareBytes(a.key, b.key))
          .map((p) => [id(p.key), p.v]);
        assert.deepEqual(got, want);
      }
    }
    for (const [k, v] of model) assert.deepEqual(Array.from(space.get(bytesOf(k)) ?? []), v);
    assert.equal([...space.scan(new Uint8Array(), undefined)].length, model.size);
  });
}

Deno.test("PrefixSpace agrees with a model on short and long keys", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArbitrary, { maxLength: 60 }), (ops) => agreesWithModel(ops, {})),
    { numRuns: 500 },
  );
});

Deno.test("PrefixSpace agrees with a model when every long key collides", async () => {
  // Three home slots only, one of them the last slot, so probe runs wrap around.
  const weak: SlotHash = (tail) => (SLOTS - 1n + BigInt(tail[tail.length - 1] % 3)) % SLOTS;
  await fc.assert(
    fc.asyncProperty(
      fc.array(opArbitrary, { maxLength: 60 }),
      (ops) => agreesWithModel(ops, { slotHash: weak, groupPassKeys: 2 }),
    ),
    { numRuns: 1000 },
  );
});

Deno.test("PrefixSpace sorts a large group in passes", async () => {
  const ops: Op[] = [];
  for (let i = 0; i < 40; i++) {
    ops.push({ kind: "put", key: [...new Array(HEAD).fill(2), (i * 7) % 40, i % 3], value: [i] });
  }
  ops.push({ kind: "scan", start: [], end: undefined });
  ops.push({
    kind: "scan",
    start: [...new Array(HEAD).fill(2), 10],
    end: [...new Array(HEAD).fill(2), 30, 1],
  });
  await agreesWithModel(ops, { groupPassKeys: 3 });
});

Deno.test("PrefixSpace stores 4,096-byte keys on LMDB, found, scanned in order and removed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tinykv-prefix-space-" });
  const store = NodeStore.open({ dir, mapBytes: 256 * 1024 * 1024 });
  try {
    assert.ok(store.keyBytesMax < 4096, `LMDB's key limit is ${store.keyBytesMax}`);
    const space = store.space(7, 0);
    const common = new Uint8Array(4094).map((_, i) => (i * 13) & 0xff);
    const keys: Uint8Array[] = [];
    for (let i = 0; i < 300; i++) {
      const key = new Uint8Array(4096);
      key.set(common);
      key[4094] = (i * 37) & 0xff;
      key[4095] = i >> 8;
      keys.push(key);
    }
    const lengths = [1, 1960, 1961, 1978, 1979, 2048, 4025, 4026, 4027];
    const varied = lengths.map((n) => new Uint8Array(n).map((_, i) => (i * 7 + n) & 0xff));
    await store.write(() => {
      for (const [i, key] of [...keys, ...varied].entries()) {
        space.put(key, new Uint8Array([i & 0xff, i >> 8]));
      }
    });
    for (const [i, key] of [...keys, ...varied].entries()) {
      assert.deepEqual(space.get(key), new Uint8Array([i & 0xff, i >> 8]));
    }
    const all = [...keys, ...varied].sort(compareBytes);
    const scanned = [...space.scan(new Uint8Array(), undefined)].map((p) => p.key);
    assert.deepEqual(scanned.map(id), all.map(id));
    const from = keys[5];
    const to = keys[250];
    const middle = [...space.scan(from, to)].map((p) => id(p.key));
    assert.deepEqual(
      middle,
      all.filter((k) => compareBytes(k, from) >= 0 && compareBytes(k, to) < 0).map(id),
    );
    await store.write(() => {
      for (const key of keys.slice(0, 150)) assert.equal(space.delete(key), true);
      assert.equal(space.delete(keys[0]), false);
    });
    for (const key of keys.slice(0, 150)) assert.equal(space.get(key), undefined);
    for (const key of keys.slice(150)) assert.notEqual(space.get(key), undefined);
    assert.equal([...space.scan(new Uint8Array(), undefined)].length, 150 + varied.length);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PrefixSpace finds a displaced key after the key before it in its run is deleted", async () => {
  const everyKeyHome: SlotHash = () => 5n;
  const head = new Array(HEAD).fill(0);
  await agreesWithModel([
    { kind: "put", key: [...head, 1], value: [1] },
    { kind: "put", key: [...head, 2], value: [2] },
    { kind: "put", key: [...head, 3], value: [3] },
    { kind: "delete", key: [...head, 1] },
    { kind: "scan", start: [], end: undefined },
    { kind: "delete", key: [...head, 3] },
    { kind: "put", key: [...head, 4], value: [4] },
  ], { slotHash: everyKeyHome });
});
