// Builders for hand-written histories in the tests: `[invokeTime, returnTime]` pairs read
// like the interval diagrams in papers on linearizability.

import type { AppendListInput, AppendListOutput } from "./list_model.ts";
import type { Operation } from "./model.ts";
import type { RegisterInput, RegisterOutput } from "./register_model.ts";

/** A register operation. */
export type RegisterOperation = Operation<RegisterInput, RegisterOutput>;
/** An append-list operation. */
export type AppendListOperation = Operation<AppendListInput, AppendListOutput>;
/** When an operation was invoked and when it returned. */
export type Interval = readonly [invokeTime: number, returnTime: number];

function done<I, O>(
  clientId: number,
  input: I,
  output: O,
  [invokeTime, returnTime]: Interval,
): Operation<I, O> {
  return { clientId, input, output, invokeTime, returnTime };
}

function unknown<I, O>(clientId: number, input: I, invokeTime: number): Operation<I, O> {
  return { clientId, input, output: undefined, invokeTime, returnTime: Infinity };
}

/** A get of `key` that answered `value` (`null`: absent). */
export function get(
  clientId: number,
  value: string | null,
  at: Interval,
  key = "x",
): RegisterOperation {
  return done(clientId, { kind: "get", key }, { kind: "get", value }, at);
}

/** A put of `value` that succeeded. */
export function put(clientId: number, value: string, at: Interval, key = "x"): RegisterOperation {
  return done(clientId, { kind: "put", key, value }, { kind: "put" }, at);
}

/** A put of `value` whose outcome is unknown. */
export function putUnknown(
  clientId: number,
  value: string,
  invokeTime: number,
  key = "x",
): RegisterOperation {
  return unknown(clientId, { kind: "put", key, value }, invokeTime);
}

/** A delete that succeeded. */
export function del(clientId: number, at: Interval, key = "x"): RegisterOperation {
  return done(clientId, { kind: "delete", key }, { kind: "delete" }, at);
}

/** A compare-and-swap that answered `succeeded`. */
export function cas(
  clientId: number,
  expected: string | null,
  next: string | null,
  succeeded: boolean,
  at: Interval,
  key = "x",
): RegisterOperation {
  return done(clientId, { kind: "cas", key, expected, next }, { kind: "cas", succeeded }, at);
}

/** A compare-and-swap whose outcome is unknown. */
export function casUnknown(
  clientId: number,
  expected: string | null,
  next: string | null,
  invokeTime: number,
  key = "x",
): RegisterOperation {
  return unknown(clientId, { kind: "cas", key, expected, next }, invokeTime);
}

/** An append of `token` that succeeded. */
export function append(
  clientId: number,
  token: string,
  at: Interval,
  key = "x",
): AppendListOperation {
  return done(clientId, { kind: "append", key, token }, { kind: "append" }, at);
}

/** An append of `token` whose outcome is unknown. */
export function appendUnknown(
  clientId: number,
  token: string,
  invokeTime: number,
  key = "x",
): AppendListOperation {
  return unknown(clientId, { kind: "append", key, token }, invokeTime);
}

/** A read that answered `tokens`. */
export function read(
  clientId: number,
  tokens: readonly string[],
  at: Interval,
  key = "x",
): AppendListOperation {
  return done(clientId, { kind: "read", key }, { kind: "read", tokens }, at);
}
