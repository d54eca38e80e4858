/**
 * Majority quorum arithmetic for a single (non-joint) configuration.
 *
 * @module
 */

import { idx } from "./_raft_log.ts";
import type { LogIndex, PeerId } from "./types.ts";

/** The outcome of an election so far. */
export type VoteResult = "won" | "lost" | "pending";

/** The smallest number of voters that forms a majority of `voterCount`. */
export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The largest index acknowledged by a majority of `voters`, given each
 * voter's match index (missing voters count as 0).
 */
export function committedIndex(
  voters: ReadonlySet<PeerId>,
  matchOf: (id: PeerId) => LogIndex,
): LogIndex {
  if (voters.size === 0) return idx(Number.MAX_SAFE_INTEGER);
  const matches: number[] = [];
  for (const id of voters) matches.push(matchOf(id));
  matches.sort((a, b) => b - a);
  return idx(matches[majority(voters.size) - 1]);
}

/** Tallies `votes` (true = granted) among `voters`. */
export function voteResult(
  voters: ReadonlySet<PeerId>,
  votes: ReadonlyMap<PeerId, boolean>,
): VoteResult {
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const vote = votes.get(id);
    if (vote === true) granted++;
    else if (vote === false) rejected++;
  }
  const needed = majority(voters.size);
  if (granted >= needed) return "won";
  if (voters.size - rejected < needed) return "lost";
  return "pending";
}
