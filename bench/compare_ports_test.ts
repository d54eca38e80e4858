/**
 * Tests of the comparison's port plan (compare_ports.ts): no port twice, none of the dev
 * cluster's defaults, none in Linux's ephemeral range, and the next block when one is taken.
 */
import assert from "node:assert/strict";
import { findFreePlan, PORT_BASE_DEFAULT, portPlan, portsOf } from "./compare_ports.ts";

const DEV_DEFAULTS = [2181, 7700, 7800, 7880, 7901, 7902, 7903];

Deno.test("portPlan() uses 13 distinct ports, clear of dev's defaults and ephemeral ports", () => {
  const ports = portsOf(portPlan(PORT_BASE_DEFAULT));
  assert.equal(ports.length, 13);
  assert.equal(new Set(ports).size, 13);
  assert.ok(ports.every((port) => !DEV_DEFAULTS.includes(port)));
  assert.ok(ports.every((port) => port > 1024 && port < 32768));
  const plan = portPlan(24300);
  assert.deepEqual(plan.etcd, { clientPort: 24300, peerPort: 24310 });
  assert.equal(plan.tinykv.kvnode, 24331);
});

Deno.test("findFreePlan() skips a block with any port taken", () => {
  const taken = new Set([24322, 24412]);
  const plan = findFreePlan((port) => !taken.has(port), 24300);
  assert.equal(plan.base, 24500);
  assert.equal(findFreePlan(() => true, 24300).base, 24300);
  assert.throws(() => findFreePlan(() => false, 24300), /^Error: Cannot find 13 free ports/);
});
