/**
 * {@linkcode ItemOutcome}: how one data-path request ended on this node, and its mapping onto the
 * wire (`ResponseItem` of kvnode.proto) — one kind per row of the product's status table.
 *
 * @module
 */
import {
  type GetResponse,
  ItemFailure_Kind,
  type ResponseItem,
  type ScanResponse,
} from "@tinykv/proto/tinykv/v1";
import type { MutationResult } from "./state_machine.ts";
import type { Outcome } from "./application.ts";
import { unreachable } from "./_assert.ts";

/** A successful answer: a mutation's result, or a read's. */
export type ItemResult =
  | MutationResult
  | { readonly kind: "get"; readonly response: GetResponse }
  | { readonly kind: "scan"; readonly response: ScanResponse };

/** How a KV request ended (see {@linkcode Outcome}). */
export type ItemOutcome = Outcome<ItemResult>;

const FAILURE_KIND = {
  notLeader: ItemFailure_Kind.NOT_LEADER,
  staleEpoch: ItemFailure_Kind.STALE_EPOCH,
  invalid: ItemFailure_Kind.INVALID,
  unavailable: ItemFailure_Kind.UNAVAILABLE,
  unknown: ItemFailure_Kind.UNKNOWN,
  sessionExpired: ItemFailure_Kind.SESSION_EXPIRED,
  resourceExhausted: ItemFailure_Kind.RESOURCE_EXHAUSTED,
  dataLoss: ItemFailure_Kind.DATA_LOSS,
  internal: ItemFailure_Kind.INTERNAL,
} as const;

/** Encodes an outcome as the `ResponseItem` of request `id`. */
export function toResponseItem(id: number, outcome: ItemOutcome): ResponseItem {
  if (outcome.kind === "ok") return { id, ...resultField(outcome.result) };
  const failure = {
    kind: FAILURE_KIND[outcome.kind],
    message: outcome.message,
    leaderNode: outcome.kind === "notLeader" ? outcome.leaderNode : "",
    leaderAddress: outcome.kind === "notLeader" ? outcome.leaderAddress : "",
    confEpoch: outcome.kind === "notLeader" || outcome.kind === "staleEpoch"
      ? outcome.confEpoch
      : 0,
  };
  return { id, failure };
}

function resultField(result: ItemResult): Omit<ResponseItem, "id"> {
  switch (result.kind) {
    case "get":
      return { get: result.response };
    case "scan":
      return { scan: result.response };
    case "put":
      return { put: result.response };
    case "delete":
      return { delete: result.response };
    case "append":
      return { append: result.response };
    case "compareAndSwap":
      return { compareAndSwap: result.response };
    case "txn":
      return { txn: result.response };
    default: {
      const never: never = result;
      return unreachable(never, "result");
    }
  }
}
