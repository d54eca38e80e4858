import assert from "node:assert/strict";
import {
  decodeGatewayInfo,
  decodeNodeAddress,
  encodeGatewayInfo,
  gatewayPath,
} from "./registrations.ts";

Deno.test("a gateway's znode reads back; anything else is not one", () => {
  const info = { address: "127.0.0.1:7700", metricsAddress: "127.0.0.1:7790", startedAtMs: 5 };
  assert.deepEqual(decodeGatewayInfo(encodeGatewayInfo(info)), info);
  assert.equal(gatewayPath(info.address), "/gateways/127.0.0.1:7700");
  const bytes = (text: string) => new TextEncoder().encode(text);
  assert.equal(decodeGatewayInfo(bytes("not json")), undefined);
  assert.equal(decodeGatewayInfo(bytes('{"address": "a"}')), undefined);
  assert.equal(decodeGatewayInfo(bytes("null")), undefined);
});

Deno.test("a kvnode's registration names its address; anything else names none", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);
  assert.equal(
    decodeNodeAddress(bytes('{"address": "127.0.0.1:7901", "startedAtMs": 1}')),
    "127.0.0.1:7901",
  );
  assert.equal(decodeNodeAddress(bytes('{"address": 7901}')), undefined);
  assert.equal(decodeNodeAddress(bytes("null")), undefined);
  assert.equal(decodeNodeAddress(bytes("{")), undefined);
});
