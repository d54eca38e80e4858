/**
 * {@linkcode runSeed}: runs one seed and classifies the outcome, so a report
 * tells a violated Raft property from a crash inside the core and from a bug
 * in the simulation itself.
 *
 * @module
 */

import { AssertionError as LincheckAssertionError } from "@tinykv/lincheck";
import { AssertionError as RaftAssertionError, DataLossError } from "@tinykv/raft";
import { SimAssertionError } from "./_assert.ts";
import { drawConfig } from "./config.ts";
import { InvariantViolation } from "./safety_checker.ts";
import { type SimStats, Simulation } from "./simulation.ts";

/** Where a failure came from. */
export type FailureKind =
  /** A checked property was violated (safety, liveness, linearizability). */
  | "invariant"
  /** An assertion inside libs/raft failed. */
  | "raftAssertion"
  /** The core read an entry that failed its checksum. */
  | "dataLoss"
  /** An assertion inside libs/lincheck failed. */
  | "lincheckAssertion"
  /** An assertion of the simulation harness failed: a bug in tests/sim. */
  | "simBug"
  /** Anything else that was thrown. */
  | "error";

/** The outcome of one seed. */
export type SeedResult =
  | {
    readonly seed: number;
    readonly ok: true;
    readonly stats: SimStats;
    readonly traceHash: number;
  }
  | {
    readonly seed: number;
    readonly ok: false;
    readonly kind: FailureKind;
    /** The violated check, or the kind again for thrown errors. */
    readonly check: string;
    readonly message: string;
    readonly stack: string;
    /** Simulated time of the failure. */
    readonly time: number;
  };

/** Options of {@linkcode runSeed}. */
export interface RunSeedOptions {
  /** Receives every trace line (tracing is off without it). */
  readonly trace?: (line: string) => void;
  /** Also traces every delivered message. */
  readonly traceMessages?: boolean;
}

/** Runs `seed` to the end and reports what happened. Never throws. */
export async function runSeed(
  seed: number,
  options: RunSeedOptions = {},
): Promise<SeedResult> {
  let sim: Simulation | undefined;
  try {
    sim = new Simulation(drawConfig(seed), {
      trace: options.trace,
      traceMessages: options.traceMessages,
    });
    await sim.run();
    return { seed, ok: true, stats: sim.stats, traceHash: sim.traceHash };
  } catch (error) {
    const { kind, check } = classify(error);
    const message = error instanceof Error ? error.message : String(error);
    const stack = error instanceof Error ? (error.stack ?? message) : message;
    return { seed, ok: false, kind, check, message, stack, time: sim?.now ?? 0 };
  }
}

function classify(error: unknown): { kind: FailureKind; check: string } {
  if (error instanceof InvariantViolation) return { kind: "invariant", check: error.check };
  if (error instanceof RaftAssertionError) return { kind: "raftAssertion", check: "raftAssertion" };
  if (error instanceof DataLossError) return { kind: "dataLoss", check: "dataLoss" };
  if (error instanceof LincheckAssertionError) {
    return { kind: "lincheckAssertion", check: "lincheckAssertion" };
  }
  if (error instanceof SimAssertionError) return { kind: "simBug", check: "simBug" };
  return { kind: "error", check: "error" };
}
