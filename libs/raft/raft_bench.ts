/**
 * Benchmark of the Raft core's own overhead: a 3-node group over an in-memory,
 * zero-latency network, committing proposals in batches. Storage is
 * MemoryStorage, compacted periodically so memory stays flat.
 *
 * `deno bench libs/raft/` runs the Deno.bench cases. As a script,
 * `deno run --v8-flags=--expose-gc libs/raft/raft_bench.ts` prints proposals
 * committed per second. Bytes per entry is the heap growth over the run; it
 * equals bytes allocated only if no minor GC runs meanwhile, so measure it with
 * a young generation large enough to hold the run:
 * `deno run --v8-flags=--expose-gc,--max-semi-space-size=1024,--min-semi-space-size=1024
 * libs/raft/raft_bench.ts` (throughput is lower in that mode).
 */

import { mulberry32 } from "./prng.ts";
import { RawNode } from "./raw_node.ts";
import { MemoryStorage } from "./storage.ts";
import type { Message } from "./messages.ts";
import type { PeerId } from "./types.ts";

const COMPACT_EVERY_ENTRIES = 10_000;

/** Three RawNodes wired directly to each other. */
class BenchGroup {
  readonly nodes = new Map<PeerId, { raw: RawNode; storage: MemoryStorage; applied: number }>();
  readonly leader: RawNode;
  #inbox: Message[] = [];
  committed = 0;

  constructor() {
    const ids = [1, 2, 3] as PeerId[];
    for (const id of ids) {
      const storage = new MemoryStorage({ voters: ids });
      const raw = new RawNode({ id, storage, prng: mulberry32(id) });
      this.nodes.set(id, { raw, storage, applied: 0 });
    }
    this.leader = this.nodes.get(1 as PeerId)!.raw;
    this.leader.campaign();
    this.run();
  }

  run(): void {
    let busy = true;
    while (busy) {
      busy = false;
      for (const [id, node] of this.nodes) {
        if (!node.raw.hasReady()) continue;
        busy = true;
        const ready = node.raw.ready();
        if (ready.snapshot) node.storage.applySnapshot(ready.snapshot);
        node.storage.append(ready.entries);
        if (ready.hardState) node.storage.setHardState(ready.hardState);
        for (const m of ready.messages) this.#inbox.push(m);
        if (ready.committedEntries.length > 0) {
          node.applied = ready.committedEntries[ready.committedEntries.length - 1].index;
          if (id === 1) this.committed += ready.committedEntries.length;
        }
        node.raw.advance(ready);
        this.#maybeCompact(node);
      }
      const inbox = this.#inbox;
      this.#inbox = [];
      for (const m of inbox) this.nodes.get(m.to)!.raw.step(m);
      if (inbox.length > 0) busy = true;
    }
  }

  #maybeCompact(node: { raw: RawNode; storage: MemoryStorage; applied: number }): void {
    if (node.applied - node.storage.firstIndex() < COMPACT_EVERY_ENTRIES) return;
    // Keep some entries so followers do not need snapshots.
    const index = (node.applied - 1000) as never;
    const confState = node.raw.status().confState;
    node.storage.createSnapshot(index, { confState, data: new Uint8Array() });
    node.storage.compact(index);
  }

  /** Proposes `count` entries in one turn and runs until they are committed. */
  proposeBatch(count: number, payload: Uint8Array): void {
    for (let k = 0; k < count; k++) {
      const result = this.leader.propose(payload);
      if (result.kind !== "ok") throw new Error(`Proposal refused: ${result.kind}`);
    }
    this.run();
  }
}

const PAYLOAD = new Uint8Array(64);

for (const batch of [1, 64, 512]) {
  const group = new BenchGroup();
  Deno.bench({
    name: `3-node group, ${batch} proposal(s) of 64 B per turn`,
    group: "commit",
    n: Math.max(200, Math.floor(50_000 / batch)),
    fn() {
      group.proposeBatch(batch, PAYLOAD);
    },
  });
}

function measure(batch: number, total: number): { perSecond: number; bytesPerEntry: number } {
  const group = new BenchGroup();
  for (let k = 0; k < 20; k++) group.proposeBatch(batch, PAYLOAD); // warm up
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = Deno.memoryUsage().heapUsed;
  const start = performance.now();
  const turns = Math.ceil(total / batch);
  for (let k = 0; k < turns; k++) group.proposeBatch(batch, PAYLOAD);
  const elapsed = performance.now() - start;
  const after = Deno.memoryUsage().heapUsed;
  const entries = turns * batch;
  // Heap growth equals bytes allocated only if no GC ran (see the module doc).
  return { perSecond: (entries / elapsed) * 1000, bytesPerEntry: (after - before) / entries };
}

if (import.meta.main) {
  for (const batch of [1, 64, 512]) {
    const total = batch === 1 ? 20_000 : 100_000;
    const { perSecond, bytesPerEntry } = measure(batch, total);
    console.log(
      `batch ${String(batch).padStart(3)}: ${
        Math.round(perSecond).toLocaleString("en")
      } proposals/s, ` +
        `heap growth ${Math.round(bytesPerEntry)} B per entry (3 replicas)`,
    );
  }
}
