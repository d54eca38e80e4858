// Checks the snapshot stream: records cut into pieces of any size parse back whole (and pieces
// never exceed their bound), a corrupt record is refused rather than read past, a read view's
// source keeps serving the state it was opened on while the store moves on, and staged tokens
// are told apart from inline data.
import assert from "node:assert/strict";
import fc from "fast-check";
import { MemoryKvSpace } from "./kv_space.ts";
import { MemoryNodeStore } from "./memory_node_store.ts";
import { NodeStore } from "./node_store.ts";
import { SPACE, spacePrefix } from "./node_storage.ts";
import { PrefixSpace } from "./prefix_space.ts";
import {
  pieces,
  RecordParser,
  SharedSnapshotSource,
  type SnapshotRecord,
  snapshotRecords,
  stagedGeneration,
  stagedToken,
} from "./snapshot_stream.ts";

const recordArbitrary: fc.Arbitrary<SnapshotRecord> = fc.record({
  space: fc.integer({ min: 0, max: 2 }),
  key: fc.uint8Array({ maxLength: 40 }),
  value: fc.uint8Array({ maxLength: 300 }),
});

Deno.test("pieces() and RecordParser round-trip records cut anywhere", () => {
  fc.assert(
    fc.property(
      fc.array(recordArbitrary, { maxLength: 30 }),
      fc.integer({ min: 1, max: 500 }),
      (records, bytesMax) => {
        const parser = new RecordParser(10_000);
        const parsed: SnapshotRecord[] = [];
        for (const piece of pieces(records, bytesMax)) {
          assert.ok(piece.length <= bytesMax && piece.length > 0);
          const result = parser.push(piece);
          assert.equal(result.kind, "ok");
          if (result.kind === "ok") parsed.push(...result.records);
        }
        assert.ok(parser.complete);
        const plain = (r: SnapshotRecord) => ({ space: r.space, key: r.key, value: r.value });
        assert.deepEqual(parsed.map(plain), records.map(plain));
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("RecordParser refuses a bad space tag and a record over its bound", () => {
  const [piece] = pieces([{ space: 1, key: new Uint8Array(10), value: new Uint8Array(100) }], 1000);
  const tooLong = new RecordParser(50).push(piece);
  assert.equal(tooLong.kind, "invalid");
  assert.match(tooLong.kind === "invalid" ? tooLong.message : "", /119 bytes: the limit is 50/);
  const badTag = piece.slice();
  badTag[0] = 7;
  assert.equal(new RecordParser(1000).push(badTag).kind, "invalid");
  const partial = new RecordParser(1000);
  partial.push(piece.subarray(0, 20));
  assert.equal(partial.complete, false);
});

Deno.test("a snapshot source serves the state its view was opened on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tinykv-snapshot-source-" });
  const store = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
  try {
    const data = store.space(5, SPACE.data);
    const key = (i: number) => new TextEncoder().encode(`k${i}`);
    await store.write(() => {
      for (let i = 0; i < 100; i++) data.put(key(i), new Uint8Array(1000).fill(i));
    });
    const view = store.readView();
    let closed = 0;
    const reader = (tag: number) => new PrefixSpace(view, spacePrefix(5, 0, tag));
    const shared = new SharedSnapshotSource(
      () => snapshotRecords({ data: reader(0), sessions: reader(1), meta: reader(2) }),
      () => {
        closed++;
        view.close();
      },
    );
    const source = shared.acquire();
    // The store moves on; the view does not.
    await store.write(() => {
      for (let i = 0; i < 100; i++) data.delete(key(i));
      data.put(key(1000), new Uint8Array(5));
    });
    const parser = new RecordParser(1 << 20);
    const records: SnapshotRecord[] = [];
    let sent = 0;
    for (const piece of source.chunks(4096)) {
      sent += piece.length;
      const parsed = parser.push(piece);
      if (parsed.kind === "ok") records.push(...parsed.records);
    }
    assert.equal(records.length, 100);
    // The size a sender declares is exactly what it sends (measured over the same view).
    assert.equal(await source.sizeBytes(), sent);
    assert.ok(sent > 100 * 1000);
    assert.ok(
      records.every((r, i) => r.value.length === 1000 && r.value[0] === records[i].value[0]),
    );
    shared.release();
    assert.equal(closed, 0, "a handle still uses the view");
    source.close();
    source.close();
    assert.equal(closed, 1);
    assert.throws(() => shared.acquire(), /closed/);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a staged token names its generation and is never inline snapshot data", () => {
  assert.equal(stagedGeneration(stagedToken(123456789)), 123456789);
  const spaces = {
    data: new MemoryKvSpace(),
    sessions: new MemoryKvSpace(),
    meta: new MemoryKvSpace(),
  };
  spaces.data.put(new Uint8Array([1]), new Uint8Array([2]));
  const [inline] = pieces(snapshotRecords(spaces), 1000);
  assert.equal(stagedGeneration(inline), undefined);
  assert.equal(stagedGeneration(new Uint8Array(0)), undefined);
});

Deno.test("MemoryNodeStore's read view is the committed state, unchanged by later writes", async () => {
  const store = new MemoryNodeStore();
  const space = store.space(1, SPACE.data);
  await store.write(() => space.put(new Uint8Array([1]), new Uint8Array([1])));
  const view = store.readView();
  await store.write(() => space.put(new Uint8Array([1]), new Uint8Array([2])));
  const seen = new PrefixSpace(view, spacePrefix(1, 0, SPACE.data)).get(new Uint8Array([1]));
  assert.deepEqual(seen, new Uint8Array([1]));
  view.close();
  assert.throws(() => view.get(new Uint8Array([1])), /closed/);
});
