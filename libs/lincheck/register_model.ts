/**
 * A model of a key-value register: every key holds a string or nothing, and supports get,
 * put, delete and compare-and-swap. Callers with `Uint8Array` values convert them to strings
 * (for example hex or base64) before recording.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import { hashString } from "./hash.ts";
import type { Model } from "./model.ts";

/** The value of one key: a string, or `null` when the key is absent. */
export type RegisterState = string | null;

/** An operation on one key. `null` stands for "absent" wherever a value may appear. */
export type RegisterInput =
  | { readonly kind: "get"; readonly key: string }
  | { readonly kind: "put"; readonly key: string; readonly value: string }
  | { readonly kind: "delete"; readonly key: string }
  | {
    readonly kind: "cas";
    readonly key: string;
    /** The value the key must hold for the swap to happen; `null` means "must be absent". */
    readonly expected: string | null;
    /** The value to store on success; `null` deletes the key. */
    readonly next: string | null;
  };

/**
 * The answer to a {@linkcode RegisterInput} of the same `kind`. A compare-and-swap that did
 * not match is an answer (`succeeded: false`), not an error.
 */
export type RegisterOutput =
  | { readonly kind: "get"; readonly value: string | null }
  | { readonly kind: "put" }
  | { readonly kind: "delete" }
  | { readonly kind: "cas"; readonly succeeded: boolean };

const NULL_HASH = 0x6b43a9b5;
const IMPOSSIBLE: readonly RegisterState[] = Object.freeze([]);

function checkOutputKind(input: RegisterInput, output: RegisterOutput | undefined): void {
  assert(
    output === undefined || output.kind === input.kind,
    `Cannot step the register: a "${input.kind}" was answered as a "${output?.kind}"`,
  );
}

function stepRegister(
  state: RegisterState,
  input: RegisterInput,
  output: RegisterOutput | undefined,
): readonly RegisterState[] {
  checkOutputKind(input, output);
  switch (input.kind) {
    case "get":
      // The asserted kinds make `output` either unknown or a get answer.
      return output?.kind === "get" && output.value !== state ? IMPOSSIBLE : [state];
    case "put":
      return [input.value];
    case "delete":
      return [null];
    case "cas": {
      const matches = input.expected === state;
      const after = matches ? input.next : state;
      return output?.kind === "cas" && output.succeeded !== matches ? IMPOSSIBLE : [after];
    }
    default: {
      const unreachable: never = input;
      throw new Error(`Unexpected register input ${JSON.stringify(unreachable)}`);
    }
  }
}

function show(value: string | null): string {
  return value === null ? "absent" : JSON.stringify(value);
}

function describeRegisterOperation(
  input: RegisterInput,
  output: RegisterOutput | undefined,
): string {
  const key = JSON.stringify(input.key);
  const call = input.kind === "get"
    ? `get(${key})`
    : input.kind === "put"
    ? `put(${key}, ${show(input.value)})`
    : input.kind === "delete"
    ? `delete(${key})`
    : `cas(${key}, ${show(input.expected)} -> ${show(input.next)})`;
  if (output === undefined) return `${call} -> unknown`;
  if (output.kind === "get") return `${call} -> ${show(output.value)}`;
  if (output.kind === "cas") return `${call} -> ${output.succeeded ? "succeeded" : "failed"}`;
  return `${call} -> ok`;
}

/**
 * The register model, partitioned by key. Every key starts absent.
 *
 * @example A compare-and-swap that lost a race
 * ```ts
 * import assert from "node:assert/strict";
 * import { check, registerModel } from "./mod.ts";
 *
 * const result = check(registerModel, [
 *   { clientId: 1, input: { kind: "cas", key: "k", expected: null, next: "a" }, output: { kind: "cas", succeeded: true }, invokeTime: 0, returnTime: 5 },
 *   { clientId: 2, input: { kind: "cas", key: "k", expected: null, next: "b" }, output: { kind: "cas", succeeded: false }, invokeTime: 1, returnTime: 4 },
 *   { clientId: 3, input: { kind: "get", key: "k" }, output: { kind: "get", value: "a" }, invokeTime: 6, returnTime: 7 },
 * ]);
 * assert.equal(result.kind, "ok");
 * ```
 */
export const registerModel: Model<RegisterState, RegisterInput, RegisterOutput> = {
  init: () => null,
  step: stepRegister,
  hashState: (state) => state === null ? NULL_HASH : hashString(state),
  equalStates: (a, b) => a === b,
  partitionKey: (input) => input.key,
  isReadOnly: (input, output) =>
    input.kind === "get" || (output?.kind === "cas" && !output.succeeded),
  describeOperation: describeRegisterOperation,
  describeState: show,
};
