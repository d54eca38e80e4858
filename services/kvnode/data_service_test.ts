// Checks the kvnode's own check of a request item's trace id (the data stream is a trust
// boundary): an id of TRACE_ID_CHARS_MAX characters reaches the driver with the request, one past
// it or with a character outside A-Z a-z 0-9 . _ - is answered INVALID_ARGUMENT and reaches
// nothing, and an untraced item carries no trace id.
import assert from "node:assert/strict";
import type { RequestItem } from "@tinykv/proto/tinykv/v1";
import { TRACE_ID_CHARS_MAX } from "@tinykv/shard";
import { type DataServiceOptions, serveItem } from "./data_service.ts";
import type { DataRequest } from "./driver.ts";
import type { DataOp, KvDriver } from "./kv_app.ts";

const enc = (text: string) => new TextEncoder().encode(text);

function service() {
  const submitted: DataRequest<DataOp>[] = [];
  const driver = {
    submit: (request: DataRequest<DataOp>) => {
      submitted.push(request);
      return Promise.resolve({ kind: "ok", result: { kind: "put", response: {} } });
    },
  } as unknown as KvDriver;
  const options: DataServiceOptions = {
    driver,
    clock: { now: () => 1_700_000_000_000 },
    requestTimeoutMsDefault: 1000,
    requestTimeoutMsMax: 5000,
    valueBytesMax: 1024,
    streamItemsMax: 16,
    responseBytesMax: 1 << 20,
  };
  return { options, submitted };
}

function item(traceId: string): RequestItem {
  return {
    id: 1,
    shardId: 1,
    confEpoch: 0,
    timeoutMs: 0,
    traceId,
    put: { key: enc("k"), value: enc("v"), clientId: "", seq: 0, ackSeq: 0 },
  };
}

Deno.test("serveItem() passes a trace id of TRACE_ID_CHARS_MAX characters and refuses a longer or odd one", async () => {
  const { options, submitted } = service();
  const longest = "t".repeat(TRACE_ID_CHARS_MAX);
  assert.equal((await serveItem(item(longest), options)).kind, "ok");
  assert.equal(submitted[0].traceId, longest);
  assert.equal((await serveItem(item(""), options)).kind, "ok");
  assert.equal(submitted[1].traceId, undefined, "an untraced item");
  for (const bad of [longest + "t", "a b", "ü"]) {
    const outcome = await serveItem(item(bad), options);
    assert.equal(outcome.kind, "invalid", JSON.stringify(outcome));
    assert.match(JSON.stringify(outcome), /TRACE_ID_CHARS_MAX/);
  }
  assert.equal(submitted.length, 2, "a refused item reaches no driver");
});
