/**
 * A model of an append-only list per key: `append(token)` adds a token at the end, and `read`
 * returns the whole list. A read is legal only if it equals the tokens appended so far, in the
 * order of some linearization, so it catches lost, reordered and duplicated appends.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import { combineHash, hashString } from "./hash.ts";
import type { Model } from "./model.ts";

/** An operation on the list of one key. */
export type AppendListInput =
  | { readonly kind: "append"; readonly key: string; readonly token: string }
  | { readonly kind: "read"; readonly key: string };

/** The answer to an {@linkcode AppendListInput} of the same `kind`. */
export type AppendListOutput =
  | { readonly kind: "append" }
  | { readonly kind: "read"; readonly tokens: readonly string[] };

/**
 * The list of one key: `null` when empty, else its last token and the list before it. States
 * share their prefixes, so an append costs O(1) whatever the length.
 */
export type AppendListState = null | {
  readonly token: string;
  readonly previous: AppendListState;
  readonly length: number;
  /** A hash of the whole list, so that comparing two lists usually takes O(1). */
  readonly hash: number;
};

const EMPTY_HASH = 0x1b873593;
const IMPOSSIBLE: readonly AppendListState[] = Object.freeze([]);

/** The tokens of a list state, first appended first. */
export function appendListTokens(state: AppendListState): string[] {
  const tokens: string[] = [];
  for (let node = state; node !== null; node = node.previous) tokens.push(node.token);
  return tokens.reverse();
}

function append(state: AppendListState, token: string): AppendListState {
  const length = (state?.length ?? 0) + 1;
  return {
    token,
    previous: state,
    length,
    hash: combineHash(state?.hash ?? EMPTY_HASH, hashString(token)),
  };
}

function equalLists(a: AppendListState, b: AppendListState): boolean {
  while (a !== b) {
    if (a === null || b === null) return false;
    if (a.length !== b.length || a.hash !== b.hash || a.token !== b.token) return false;
    a = a.previous;
    b = b.previous;
  }
  return true;
}

function readMatches(state: AppendListState, tokens: readonly string[]): boolean {
  if ((state?.length ?? 0) !== tokens.length) return false;
  if (prefixHashes(tokens)[tokens.length] !== (state?.hash ?? EMPTY_HASH)) return false;
  // Equal hashes: confirm token by token, as a collision must not make a read legal.
  let node = state;
  for (let i = tokens.length - 1; i >= 0; i--) {
    assert(node !== null, "Cannot compare a read: the list is shorter than its length");
    if (node.token !== tokens[i]) return false;
    node = node.previous;
  }
  return true;
}

// The hash of every prefix of a read's tokens, computed once per read, so that comparing a
// state with a read usually takes O(1): equal lists have equal hashes.
const prefixHashesOfRead = new WeakMap<readonly string[], Uint32Array>();

function prefixHashes(tokens: readonly string[]): Uint32Array {
  let hashes = prefixHashesOfRead.get(tokens);
  if (hashes === undefined) {
    hashes = new Uint32Array(tokens.length + 1);
    hashes[0] = EMPTY_HASH;
    for (let i = 0; i < tokens.length; i++) {
      hashes[i + 1] = combineHash(hashes[i], hashString(tokens[i]));
    }
    prefixHashesOfRead.set(tokens, hashes);
  }
  return hashes;
}

// A read can become legal later only if the list so far is a prefix of what it returned:
// the list only grows. A hash match may be a collision, but answering true is always safe.
function mayAcceptLater(
  state: AppendListState,
  input: AppendListInput,
  output: AppendListOutput,
): boolean {
  if (input.kind === "append" || output.kind !== "read") return true;
  const length = state?.length ?? 0;
  if (length > output.tokens.length) return false;
  return prefixHashes(output.tokens)[length] === (state?.hash ?? EMPTY_HASH);
}

function stepAppendList(
  state: AppendListState,
  input: AppendListInput,
  output: AppendListOutput | undefined,
): readonly AppendListState[] {
  assert(
    output === undefined || output.kind === input.kind,
    `Cannot step the append list: a "${input.kind}" was answered as a "${output?.kind}"`,
  );
  switch (input.kind) {
    case "append":
      return [append(state, input.token)];
    case "read":
      // The asserted kinds make `output` either unknown or a read answer.
      return output?.kind === "read" && !readMatches(state, output.tokens) ? IMPOSSIBLE : [state];
    default: {
      const unreachable: never = input;
      throw new Error(`Unexpected append-list input ${JSON.stringify(unreachable)}`);
    }
  }
}

function describeAppendListOperation(
  input: AppendListInput,
  output: AppendListOutput | undefined,
): string {
  const key = JSON.stringify(input.key);
  const call = input.kind === "append"
    ? `append(${key}, ${JSON.stringify(input.token)})`
    : `read(${key})`;
  if (output === undefined) return `${call} -> unknown`;
  if (output.kind === "read") return `${call} -> ${JSON.stringify(output.tokens)}`;
  return `${call} -> ok`;
}

/**
 * The append-only list model, partitioned by key. Every list starts empty. Tokens need not be
 * unique, though unique tokens make the check faster and the explanations clearer.
 *
 * @example A duplicated append is caught
 * ```ts
 * import assert from "node:assert/strict";
 * import { appendListModel, check } from "./mod.ts";
 *
 * const result = check(appendListModel, [
 *   { clientId: 1, input: { kind: "append", key: "k", token: "t1" }, output: { kind: "append" }, invokeTime: 0, returnTime: 1 },
 *   { clientId: 2, input: { kind: "read", key: "k" }, output: { kind: "read", tokens: ["t1", "t1"] }, invokeTime: 2, returnTime: 3 },
 * ]);
 * assert.equal(result.kind, "illegal");
 * ```
 */
export const appendListModel: Model<AppendListState, AppendListInput, AppendListOutput> = {
  init: () => null,
  step: stepAppendList,
  hashState: (state) => state?.hash ?? EMPTY_HASH,
  equalStates: equalLists,
  partitionKey: (input) => input.key,
  isReadOnly: (input) => input.kind === "read",
  mayAcceptLater,
  describeOperation: describeAppendListOperation,
  describeState: (state) => JSON.stringify(appendListTokens(state)),
};
