/**
 * {@linkcode drawConfig}: each seed draws its own cluster shape and fault
 * levels, so the seeds together cover calm and hostile runs alike.
 *
 * @module
 */

import { SimRandom } from "./random.ts";

/** Simulated time units per Raft tick. Message delays and disk syncs are finer than a tick. */
export const TICK_UNITS = 10;

/** Everything one seed decided before the run starts. */
export interface SimConfig {
  /** The seed that drives the run. */
  readonly seed: number;
  /** Initial voters (ids 1..n). */
  readonly voters: number;
  /** The most members (voters and learners) the admin lets the group grow to. */
  readonly membersMax: number;
  /** Concurrent clients. */
  readonly clients: number;
  /** RawNode election timeout in ticks. */
  readonly electionTicks: number;
  /** RawNode heartbeat interval in ticks. */
  readonly heartbeatTicks: number;
  /** Pre-vote on (the default) or off. */
  readonly preVote: boolean;
  /** Check-quorum on (the default) or off. */
  readonly checkQuorum: boolean;
  /**
   * How leaders confirm reads: `leaseBased` (the kvnode's default, drawn only with check-quorum;
   * its nodes count ticks by the simulated clock, as a kvnode does, and their clocks do not
   * drift) or `safe` (a heartbeat round per batch).
   */
  readonly readMode: "safe" | "leaseBased";
  /** RawNode limits, drawn small or large so flow control and paging paths run too. */
  readonly appendBytesMax: number;
  /** RawNode `inflightMessagesMax`. */
  readonly inflightMessagesMax: number;
  /** RawNode `committedBytesMax`. */
  readonly committedBytesMax: number;
  /** RawNode `uncommittedBytesMax`. */
  readonly uncommittedBytesMax: number;
  /** RawNode `pendingReadsMax`. */
  readonly pendingReadsMax: number;
  /** Ticks of the faulty phase; the liveness phase follows. */
  readonly mainTicks: number;
  /** Probability a message is lost. */
  readonly lossRate: number;
  /** Probability a message is delivered twice. */
  readonly duplicateRate: number;
  /** Message delay in time units: uniform in [1, delayMax]... */
  readonly delayMax: number;
  /** ...plus, with this probability, a long delay up to `spikeMax` (reordering). */
  readonly spikeRate: number;
  /** The longest extra delay, in time units. */
  readonly spikeMax: number;
  /** Per tick: probability a partition starts (when none is active). */
  readonly partitionRate: number;
  /** The longest partition, in ticks. */
  readonly partitionTicksMax: number;
  /**
   * Whether each client sits beside one node and shares its side of a partition
   * (otherwise clients reach every node).
   */
  readonly clientsPartitioned: boolean;
  /** Per tick: probability some running node crashes. */
  readonly crashRate: number;
  /** The longest a crashed node stays down, in ticks. */
  readonly downTicksMax: number;
  /** Per tick: probability some running node pauses (a long GC or a stalled VM). */
  readonly pauseRate: number;
  /** The longest pause, in ticks. */
  readonly pauseTicksMax: number;
  /** Whether node clocks drift: each node's tick lasts TICK_UNITS - 1 to TICK_UNITS + 1. */
  readonly clockSkew: boolean;
  /**
   * Probability a crash keeps the transaction that was waiting for its sync (the disk wrote it
   * before the power went); otherwise the crash loses it whole.
   */
  readonly keepUnsyncedRate: number;
  /** Time units a disk sync takes, at most. */
  readonly syncUnitsMax: number;
  /** Per tick: probability the admin changes membership. */
  readonly confChangeRate: number;
  /** Per tick: probability the admin asks for a leader transfer. */
  readonly transferRate: number;
  /** A replica compacts its log after this many applied entries (keeping a quarter of them). */
  readonly snapshotEntries: number;
  /** Idle ticks after which a leader quiesces the group (0: never). */
  readonly quiesceTicks: number;
  /** Client think time between operations, in time units, at most. */
  readonly thinkUnitsMax: number;
}

/** Draws the configuration of `seed`. */
export function drawConfig(seed: number): SimConfig {
  // A generator of its own, so the shape of a run does not shift the run's draws.
  const r = new SimRandom(seed ^ 0x5bd1e995);
  const calm = r.chance(0.1);
  const voters = r.chance(0.6) ? 3 : 5;
  const drawn = {
    seed,
    voters,
    membersMax: voters + 2,
    clients: r.range(2, 6),
    electionTicks: 10,
    heartbeatTicks: r.range(1, 3),
    preVote: r.chance(0.8),
    checkQuorum: r.chance(0.8),
    appendBytesMax: r.pick([64, 512, 4096, 1 << 20]),
    inflightMessagesMax: r.pick([1, 2, 4, 64, 256]),
    committedBytesMax: r.pick([64, 1024, 64 << 20]),
    uncommittedBytesMax: r.pick([256, 4096, 64 << 20]),
    pendingReadsMax: r.pick([2, 16, 65536]),
    mainTicks: r.range(2000, 4000),
    lossRate: calm ? 0 : r.uniform(0, 0.3),
    duplicateRate: calm ? 0 : r.uniform(0, 0.1),
    delayMax: r.range(1, 30),
    spikeRate: calm ? 0 : r.uniform(0, 0.05),
    spikeMax: r.range(30, 300),
    partitionRate: calm ? 0 : r.uniform(0, 0.02),
    partitionTicksMax: r.range(10, 150),
    clientsPartitioned: r.chance(0.5),
    crashRate: calm ? 0 : r.uniform(0, 0.01),
    downTicksMax: r.range(5, 100),
    pauseRate: calm ? 0 : r.uniform(0, 0.01),
    pauseTicksMax: r.range(1, 40),
    clockSkew: r.chance(0.5),
    keepUnsyncedRate: r.uniform(0, 1),
    syncUnitsMax: r.range(1, 8),
    confChangeRate: r.uniform(0, 0.015),
    transferRate: r.uniform(0, 0.01),
    snapshotEntries: r.range(8, 150),
    quiesceTicks: r.chance(0.3) ? r.range(20, 60) : 0,
    thinkUnitsMax: r.range(2, 60),
  };
  // Drawn last, so the draws above are those of the seeds before lease reads existed.
  const lease = drawn.checkQuorum && r.chance(0.5);
  return {
    ...drawn,
    readMode: lease ? "leaseBased" : "safe",
    // A lease allows the nodes' clocks to differ in rate by a tick per election timeout; the skew
    // drawn here (a tenth each way, a fifth between two nodes) is beyond that, and real clocks
    // drift by parts per million.
    clockSkew: drawn.clockSkew && !lease,
  };
}
