/**
 * Checks the status table both ways, row by row: a typed failure maps to the gRPC code of
 * docs/design.md "Status codes" and back to the same failure, with the documented outcome and retry
 * advice; codes outside the table become `internal`.
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import {
  failureFromError,
  failureFromStatus,
  failureToStatus,
  outcomeOf,
  retryOf,
  RpcError,
  rpcFailure,
  type RpcFailureKind,
  type RpcOutcome,
  type RpcRetry,
  STATUS_TABLE,
  toServerError,
} from "./mod.ts";

const TABLE: readonly [RpcFailureKind, grpc.status, RpcOutcome, RpcRetry][] = [
  ["invalidArgument", grpc.status.INVALID_ARGUMENT, "notApplied", "never"],
  ["unavailable", grpc.status.UNAVAILABLE, "notApplied", "now"],
  ["deadlineExceeded", grpc.status.DEADLINE_EXCEEDED, "unknown", "now"],
  ["failedPrecondition", grpc.status.FAILED_PRECONDITION, "notApplied", "newSession"],
  ["resourceExhausted", grpc.status.RESOURCE_EXHAUSTED, "unknown", "later"],
  ["dataLoss", grpc.status.DATA_LOSS, "unknown", "never"],
  ["internal", grpc.status.INTERNAL, "unknown", "never"],
  ["cancelled", grpc.status.CANCELLED, "unknown", "now"],
  ["unauthenticated", grpc.status.UNAUTHENTICATED, "notApplied", "never"],
  ["permissionDenied", grpc.status.PERMISSION_DENIED, "notApplied", "never"],
  ["unimplemented", grpc.status.UNIMPLEMENTED, "notApplied", "never"],
  ["outOfRange", grpc.status.OUT_OF_RANGE, "notApplied", "never"],
];

Deno.test("STATUS_TABLE has exactly the rows of docs/design.md", () => {
  assert.deepStrictEqual(Object.keys(STATUS_TABLE).sort(), TABLE.map(([kind]) => kind).sort());
});

for (const [kind, code, outcome, retry] of TABLE) {
  Deno.test(`${kind} maps to ${grpc.status[code]} and back`, () => {
    const failure = rpcFailure(kind, `Injected "${kind}"`);
    assert.deepStrictEqual(failureToStatus(failure), { code, details: `Injected "${kind}"` });
    assert.deepStrictEqual(failureFromStatus({ code, details: `Injected "${kind}"` }), failure);
    const serverError = toServerError(failure);
    assert.equal(serverError.code, code);
    assert.deepStrictEqual(failureFromError(serverError), failure);
    assert.equal(outcomeOf(failure), outcome);
    assert.equal(retryOf(failure), retry);
  });
}

Deno.test("failureFromStatus() maps codes outside the table to internal, naming the code", () => {
  const outside = [
    grpc.status.UNKNOWN,
    grpc.status.NOT_FOUND,
    grpc.status.ALREADY_EXISTS,
    grpc.status.ABORTED,
  ];
  for (const code of outside) {
    assert.deepStrictEqual(
      failureFromStatus({ code, details: "x" }),
      rpcFailure("internal", `${grpc.status[code]}: x`),
    );
  }
});

Deno.test("failureFromStatus() refuses status OK: it is not a failure", () => {
  assert.throws(() => failureFromStatus({ code: grpc.status.OK, details: "" }), /status OK/);
});

Deno.test("failureFromError(): a deadline that passed before any connection is not applied", () => {
  const waited = failureFromError({
    code: grpc.status.DEADLINE_EXCEEDED,
    details: "Deadline exceeded after 0.002s,metadata filters: 0.001s,Waiting for LB pick",
  });
  assert.equal(waited.kind, "unavailable");
  assert.equal(outcomeOf(waited), "notApplied");
  const sent = failureFromError({
    code: grpc.status.DEADLINE_EXCEEDED,
    details: "Deadline exceeded",
  });
  assert.equal(sent.kind, "deadlineExceeded");
  assert.equal(outcomeOf(sent), "unknown");
});

Deno.test("failureFromError() maps values without a code to internal", () => {
  assert.deepStrictEqual(
    failureFromError(new Error("boom")),
    rpcFailure("internal", "Unexpected error: boom"),
  );
  assert.deepStrictEqual(
    failureFromError("boom"),
    rpcFailure("internal", "Unexpected error: boom"),
  );
});

Deno.test("RpcError carries its failure", () => {
  const error = new RpcError(rpcFailure("dataLoss", "Checksum of entry 7 failed"));
  assert.equal(error.message, "Checksum of entry 7 failed");
  assert.equal(error.failure.kind, "dataLoss");
});

Deno.test("failureFromError() tells a server's UNAVAILABLE from one grpc-js made up after sending", () => {
  const fromServer = toServerError({ kind: "unavailable", message: "No leader for shard 3" });
  assert.equal(outcomeOf(failureFromError(fromServer)), "notApplied");
  const dropped = {
    code: grpc.status.UNAVAILABLE,
    details: "Connection dropped",
    metadata: new grpc.Metadata(),
  };
  assert.equal(outcomeOf(failureFromError(dropped)), "unknown");
  const neverConnected = {
    code: grpc.status.UNAVAILABLE,
    details: "No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1",
  };
  assert.equal(outcomeOf(failureFromError(neverConnected)), "notApplied");
  const tooLargeToSend = {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: "Attempted to send message with a size larger than 4194304",
  };
  assert.equal(outcomeOf(failureFromError(tooLargeToSend)), "notApplied");
  const tooLargeReceived = {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: "Received message larger than max (9437236 vs 8388608)",
  };
  assert.equal(outcomeOf(failureFromError(tooLargeReceived)), "unknown");
});

Deno.test("failureFromError(): a server certificate the client refuses is not retried", () => {
  const cases = [
    "No connection established. Last error: Error: unable to verify the first certificate. " +
    "Resolution note: ",
    "No connection established. Last error: Error [ERR_TLS_CERT_ALTNAME_INVALID]: Hostname/IP " +
    "does not match certificate's altnames: Host: wrong. is not in the cert's altnames: " +
    "DNS:tinykv. Resolution note: ",
    "No connection established. Last error: Error: certificate has expired.",
  ];
  for (const details of cases) {
    const failure = failureFromError({ code: grpc.status.UNAVAILABLE, details });
    assert.equal(failure.kind, "unauthenticated", details);
    assert.equal(retryOf(failure), "never");
    assert.equal(outcomeOf(failure), "notApplied");
    assert.match(failure.message, /^TLS did not accept the server's certificate \(check the CA/);
    assert.doesNotMatch(failure.message, /Resolution note/);
  }
  // A connection that failed for any other reason is still worth another try.
  const refused = failureFromError({
    code: grpc.status.UNAVAILABLE,
    details: "No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1",
  });
  assert.equal(refused.kind, "unavailable");
});
