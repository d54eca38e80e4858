/**
 * A Web Worker that runs seeds for `main.ts`: it receives batches of seeds and
 * answers with one {@linkcode SeedResult} per seed.
 *
 * @module
 */

import { runSeed, type SeedResult } from "./run_seed.ts";

/** A batch of seeds sent to the worker. */
export interface WorkerRequest {
  readonly seeds: readonly number[];
}

/** The results of a batch. */
export interface WorkerResponse {
  readonly results: readonly SeedResult[];
}

const scope = self as unknown as {
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerResponse): void;
};

scope.onmessage = async (event) => {
  const results: SeedResult[] = [];
  for (const seed of event.data.seeds) results.push(await runSeed(seed));
  scope.postMessage({ results });
};
