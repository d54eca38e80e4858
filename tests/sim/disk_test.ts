// Tests of the simulated disk: unsynced writes are lost on a crash, synced
// ones never are, and a torn write is detected by its checksum and truncated
// on recovery instead of being taken as valid.
import assert from "node:assert/strict";
import { createEntry, type LogIndex, type PeerId, type Term, verifyEntry } from "@tinykv/raft";
import { hardStateChecksum, SimDisk, tearRecord, verifyRecord } from "./disk.ts";
import { SimRandom } from "./random.ts";

const CONF = { voters: [1 as PeerId], learners: [], epoch: 0 as LogIndex };

function entries(from: number, to: number, term = 1) {
  const out = [];
  for (let i = from; i <= to; i++) {
    out.push(createEntry({
      term: term as Term,
      index: i as LogIndex,
      data: new TextEncoder().encode(`e${i}`),
    }));
  }
  return out;
}

Deno.test("SimDisk.crash() keeps synced writes and loses what never reached the disk", () => {
  const disk = new SimDisk(CONF);
  disk.write({ kind: "entries", entries: entries(1, 3) });
  disk.sync();
  disk.write({ kind: "entries", entries: entries(4, 6) });
  assert.equal(disk.live.log.lastIndex(), 6);
  // A crash keeps a random prefix of the unsynced writes; find a seed that keeps none.
  let seed = 0;
  for (;; seed++) {
    const probe = new SimRandom(seed);
    if (probe.int(2) === 0) break;
  }
  disk.crash(new SimRandom(seed), 0);
  disk.recover();
  assert.equal(disk.live.log.lastIndex(), 3);
});

Deno.test("SimDisk.recover() truncates a torn entries write at the first bad entry", () => {
  for (let seed = 1; seed <= 200; seed++) {
    const disk = new SimDisk(CONF);
    disk.write({ kind: "entries", entries: entries(1, 2) });
    disk.sync();
    disk.write({ kind: "entries", entries: entries(3, 8) });
    disk.crash(new SimRandom(seed), 1);
    const report = disk.recover();
    const log = disk.live.log;
    assert.ok(log.lastIndex() >= 2, "synced entries survive");
    const read = log.entries(1 as LogIndex, (log.lastIndex() + 1) as LogIndex, {
      bytesMax: 1 << 20,
    });
    assert.equal(read.kind, "ok", "every recovered entry passes its checksum");
    if (report.torn) assert.ok(log.lastIndex() < 8, "a torn write loses its tail");
  }
});

Deno.test("tearRecord() always produces a record that fails verification", () => {
  const random = new SimRandom(7);
  const hardState = { term: 3 as Term, vote: 1 as PeerId, commit: 5 as LogIndex };
  for (let i = 0; i < 100; i++) {
    const torn = tearRecord({ kind: "entries", entries: entries(1, 4) }, random);
    assert.notEqual(verifyRecord(torn).kind, "ok");
    const hs = tearRecord(
      { kind: "hardState", hardState, checksum: hardStateChecksum(hardState) },
      random,
    );
    assert.equal(verifyRecord(hs).kind, "corrupt");
    const applied = tearRecord({ kind: "apply", entry: entries(1, 1)[0] }, random);
    assert.equal(verifyRecord(applied).kind, "corrupt");
    if (applied.kind === "apply") assert.equal(verifyEntry(applied.entry), false);
  }
});

Deno.test("SimDisk.recover() restores the applied state machine with the log", () => {
  const disk = new SimDisk(CONF);
  const entry = createEntry({
    term: 1 as Term,
    index: 1 as LogIndex,
    data: new TextEncoder().encode(
      JSON.stringify({ kind: "put", client: 1, seq: 1, key: "x", value: "v" }),
    ),
  });
  disk.write({ kind: "entries", entries: [entry] });
  disk.write({ kind: "apply", entry });
  disk.sync();
  disk.crash(new SimRandom(1), 1);
  disk.recover();
  assert.equal(disk.live.sm.applied, 1);
  assert.equal(disk.live.sm.get("x"), "v");
});
