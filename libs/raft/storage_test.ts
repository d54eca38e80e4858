/**
 * MemoryStorage, entry checksums (CRC-32) and the DATA_LOSS path: a corrupt
 * stored entry is reported with its index, by storage and by RawNode.
 */

import assert from "node:assert/strict";
import { crc32 } from "./crc32.ts";
import { DataLossError } from "./errors.ts";
import { entriesWithTerms, i, n } from "./_test_helpers.ts";
import { MemoryStorage } from "./storage.ts";
import { RawNode } from "./raw_node.ts";
import { mulberry32 } from "./prng.ts";
import {
  createEntry,
  decodeConfChange,
  encodeConfChange,
  type Term,
  verifyEntry,
} from "./types.ts";

Deno.test("crc32() matches the standard check values", () => {
  const table: [string, number][] = [
    ["", 0],
    ["a", 0xe8b7be43],
    ["123456789", 0xcbf43926],
    ["The quick brown fox jumps over the lazy dog", 0x414fa339],
  ];
  for (const [text, want] of table) assert.equal(crc32(new TextEncoder().encode(text)), want, text);
});

Deno.test("entry checksums cover index, term, type and data", () => {
  const base = createEntry({ term: 2 as Term, index: i(5), data: new Uint8Array([1, 2]) });
  assert.ok(verifyEntry(base));
  assert.ok(!verifyEntry({ ...base, index: i(6) }));
  assert.ok(!verifyEntry({ ...base, term: 3 as Term }));
  assert.ok(!verifyEntry({ ...base, type: "confChange" }));
  assert.ok(!verifyEntry({ ...base, data: new Uint8Array([1, 3]) }));
});

Deno.test("conf changes round-trip through their encoding; bad bytes are reported", () => {
  const change = { type: "removeNode", nodeId: n(12345), context: new Uint8Array([9]) } as const;
  assert.deepEqual(decodeConfChange(encodeConfChange(change)), { kind: "ok", change });
  assert.equal(decodeConfChange(new Uint8Array(3)).kind, "invalid");
  const bad = encodeConfChange(change);
  bad[0] = 7;
  assert.equal(decodeConfChange(bad).kind, "invalid");
});

Deno.test("MemoryStorage: append replaces a suffix, snapshots and compaction move the first index", () => {
  const s = new MemoryStorage({ voters: [n(1)] });
  s.append(entriesWithTerms([1, 1, 1, 1]));
  s.append(entriesWithTerms([2, 2], 3));
  assert.deepEqual([s.firstIndex(), s.lastIndex(), s.term(i(2)), s.term(i(4))], [1, 4, 1, 2]);
  const all = s.entries(i(1), i(5), { bytesMax: 1 << 20 });
  assert.equal(all.kind === "ok" && all.entries.length, 4);
  const confState = { voters: [n(1)], learners: [], epoch: i(0) };
  assert.deepEqual(s.createSnapshot(i(3), { confState, data: new Uint8Array([7]) }), {
    kind: "ok",
  });
  assert.deepEqual(s.compact(i(3)), { kind: "ok" });
  assert.deepEqual([s.firstIndex(), s.lastIndex(), s.term(i(3)), s.term(i(2))], [
    4,
    4,
    2,
    undefined,
  ]);
  assert.deepEqual(s.entries(i(2), i(5), { bytesMax: 100 }), { kind: "compacted" });
  assert.deepEqual(s.createSnapshot(i(2), { confState, data: new Uint8Array() }), {
    kind: "outOfDate",
  });
  // Installing a newer snapshot from a leader drops the whole log.
  const snapshot = {
    metadata: { index: i(10), term: 5 as Term, confState },
    data: new Uint8Array(),
  };
  assert.deepEqual(s.applySnapshot(snapshot), { kind: "ok" });
  assert.deepEqual([s.firstIndex(), s.lastIndex(), s.term(i(10))], [11, 10, 5]);
});

Deno.test("MemoryStorage.entries() honours bytesMax but returns at least one entry", () => {
  const s = new MemoryStorage({ voters: [n(1)] });
  s.append(
    [1, 2, 3].map((k) => createEntry({ term: 1 as Term, index: i(k), data: new Uint8Array(10) })),
  );
  const one = s.entries(i(1), i(4), { bytesMax: 5 });
  assert.equal(one.kind === "ok" && one.entries.length, 1);
  const two = s.entries(i(1), i(4), { bytesMax: 20 });
  assert.equal(two.kind === "ok" && two.entries.length, 2);
});

Deno.test("a corrupt stored entry is DATA_LOSS naming its index, in storage and in RawNode", () => {
  const id = n(1);
  const s = new MemoryStorage({ voters: [id] });
  const entries = [1, 2, 3].map((k) =>
    createEntry({ term: 1 as Term, index: i(k), data: new Uint8Array([k]) })
  );
  s.append(entries);
  s.setHardState({ term: 1 as Term, vote: id, commit: i(3) });
  entries[1].data[0] = 99; // bit rot after the write
  const result = s.entries(i(1), i(4), { bytesMax: 1 << 20 });
  assert.equal(result.kind, "dataLoss");
  assert.equal(result.kind === "dataLoss" && result.index, 2);
  // On restart the node must apply entries 1..3 and refuses to serve wrong data.
  const node = new RawNode({ id, storage: s, prng: mulberry32(1) });
  assert.throws(() => node.ready(), (error: unknown) => {
    assert.ok(error instanceof DataLossError);
    assert.equal(error.code, "DATA_LOSS");
    assert.equal(error.index, 2);
    assert.match(error.message, /Cannot read log entry 2: checksum mismatch/);
    return true;
  });
});
