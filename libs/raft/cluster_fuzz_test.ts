/**
 * Randomized whole-group runs on the test cluster, one seed each: proposals,
 * crashes and restarts, partitions, a lossy/duplicating/reordering network,
 * membership changes (learners, promotion, removal), leader transfers,
 * snapshots and ReadIndex/lease reads. Checks: no index is applied with two
 * different entries (the cluster's checker), every read index is at least the
 * highest index any replica had applied when the read was issued, and after
 * healing the group commits a new entry on every member.
 * A failing seed is named in the assertion message; rerun it alone to replay.
 */

import assert from "node:assert/strict";
import { bytes, Cluster, mulberry32, randomInt } from "./testing.ts";
import type { PeerId } from "./types.ts";

function chaos(c: Cluster, prng: () => number, steps: number, readFloors: Map<number, number>) {
  let nextId = 10;
  let readId = 0;
  for (let step = 0; step < steps; step++) {
    const r = prng();
    const any = c.ids[randomInt(prng, c.ids.length)];
    const raw = c.node(any).raw;
    const leading = raw?.status().role === "leader";
    if (r < 0.35) raw?.propose(bytes(`v${step}`));
    else if (r < 0.42) c.crash(any);
    else if (r < 0.5) {
      if (!c.node(any).alive) c.restart(any);
    } else if (r < 0.55) c.isolate(any);
    else if (r < 0.62) c.heal();
    else if (r < 0.66 && leading) {
      const voters = raw!.status().confState.voters;
      raw!.transferLeader(voters[randomInt(prng, voters.length)]);
    } else if (r < 0.7 && leading) {
      changeMembership(c, any, prng, () => nextId++);
    } else if (r < 0.8 && leading) {
      let floor = 0;
      for (const node of c.nodes.values()) floor = Math.max(floor, node.applied);
      readFloors.set(readId, floor);
      raw!.readIndex(readId++);
    }
    c.tick(randomInt(prng, 3));
    checkReads(c, readFloors);
  }
}

function changeMembership(c: Cluster, leader: number, prng: () => number, newId: () => number) {
  const raw = c.raw(leader);
  const conf = raw.status().confState;
  const q = prng();
  if (q < 0.3 && c.ids.length < 7) {
    const id = newId();
    c.addNode(id);
    raw.proposeConfChange({ type: "addLearner", nodeId: id as PeerId });
  } else if (q < 0.6 && conf.learners.length > 0) {
    raw.proposeConfChange({ type: "addNode", nodeId: conf.learners[0] });
  } else if (conf.voters.length > 3) {
    raw.proposeConfChange({
      type: "removeNode",
      nodeId: conf.voters[randomInt(prng, conf.voters.length)],
    });
  }
}

function checkReads(c: Cluster, readFloors: Map<number, number>): void {
  for (const node of c.nodes.values()) {
    for (const state of node.readStates) {
      if (state.kind !== "ready") continue;
      const floor = readFloors.get(state.requestId)!;
      assert.ok(state.index >= floor, `read ${state.requestId} at ${state.index} < ${floor}`);
    }
    node.readStates = [];
  }
}

function converge(c: Cluster): void {
  c.faults = { dropRate: 0, duplicateRate: 0, delayTicksMax: 0 };
  c.heal();
  for (const id of c.ids) if (!c.node(id).alive) c.restart(id);
  c.waitForLeader(400);
  c.tick(50);
  const conf = c.raw(c.waitForLeader()).status().confState;
  const index = c.one("final", conf.voters.length, 600);
  assert.ok(index !== undefined, "the healed group did not commit");
  c.tick(30);
  for (const id of [...conf.voters, ...conf.learners]) {
    assert.ok(c.node(id).applied >= index, `member ${id} did not apply ${index}`);
  }
}

function run(seed: number): void {
  const prng = mulberry32(seed * 7919);
  const readMode = prng() < 0.3 ? "leaseBased" : "safe";
  const c = new Cluster({
    voters: 3 + randomInt(prng, 3),
    seed,
    node: { electionTicks: 10, inflightMessagesMax: 4, appendBytesMax: 64, readMode },
    snapshotEveryEntries: prng() < 0.5 ? 7 : undefined,
  });
  c.faults = {
    dropRate: prng() * 0.2,
    duplicateRate: prng() * 0.1,
    delayTicksMax: randomInt(prng, 4),
  };
  chaos(c, prng, 400, new Map());
  converge(c);
}

Deno.test("randomized runs: faults, membership, transfers, snapshots and reads (300 seeds)", () => {
  for (let seed = 1; seed <= 300; seed++) {
    try {
      run(seed);
    } catch (error) {
      throw new Error(`Seed ${seed} failed: ${(error as Error).message}`, { cause: error });
    }
  }
});
