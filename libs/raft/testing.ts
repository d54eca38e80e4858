/**
 * Test support for the Raft core: a seeded in-memory cluster harness and
 * the seeded PRNG. Intended for tests and simulations, not production hosts.
 *
 * @example Elect a leader and commit an entry
 * ```ts
 * import { Cluster } from "@tinykv/raft/testing";
 * const cluster = new Cluster({ voters: 3, seed: 1 });
 * cluster.waitForLeader();
 * const index = cluster.one("hello", 3);
 * if (index === undefined) throw new Error("not committed");
 * ```
 *
 * @module
 */

export {
  bytes,
  Cluster,
  type ClusterOptions,
  type NetworkFaults,
  RecordingStateMachine,
  type StateMachine,
  TestNode,
} from "./testing/cluster.ts";
export { mulberry32, type Prng, randomInt } from "./prng.ts";
