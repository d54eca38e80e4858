// Tests of the simulated network's partitions and delays.
import assert from "node:assert/strict";
import type { PeerId } from "@tinykv/raft";
import { SimNetwork } from "./network.ts";
import { SimRandom } from "./random.ts";

const FAULTS = { lossRate: 0, duplicateRate: 0, delayMax: 5, spikeRate: 0, spikeMax: 0 };
const n = (id: number) => id as PeerId;

Deno.test("SimNetwork.split() cuts every link across sides and none within", () => {
  const network = new SimNetwork(FAULTS);
  network.split([[n(1), n(2)], [n(3)]]);
  assert.equal(network.cut(n(1), n(3)), true);
  assert.equal(network.cut(n(3), n(2)), true);
  assert.equal(network.cut(n(1), n(2)), false);
  network.heal();
  assert.equal(network.partitioned, false);
  assert.equal(network.cut(n(1), n(3)), false);
});

Deno.test("SimNetwork.cutLink() cuts one direction only (asymmetric partition)", () => {
  const network = new SimNetwork(FAULTS);
  network.cutLink(n(1), n(2));
  assert.equal(network.cut(n(1), n(2)), true);
  assert.equal(network.cut(n(2), n(1)), false);
});

Deno.test("SimNetwork.drawDelay() stays within its bounds and is seeded", () => {
  const network = new SimNetwork({ ...FAULTS, spikeRate: 0.5, spikeMax: 100 });
  const a = new SimRandom(9);
  const b = new SimRandom(9);
  for (let i = 0; i < 1000; i++) {
    const delay = network.drawDelay(a);
    assert.ok(delay >= 1 && delay <= 5 + 100);
    assert.equal(delay, network.drawDelay(b));
  }
});
