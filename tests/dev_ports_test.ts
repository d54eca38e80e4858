// Checks the ports the test harness hands out: a dev cluster's all different, their /metrics ports
// included, and all below Linux's ephemeral range (a port the kernel hands out as a client's
// source port, or again to the next bind to port 0, could collide with a service's); and that
// freePort() never hands out one port twice.
import assert from "node:assert/strict";
import { devPorts, devPortsUsed } from "./_harness/dev_cluster.ts";
import { freePort } from "./_harness/processes.ts";

Deno.test("devPorts() draws different ports below the ephemeral range, metrics ports included", () => {
  for (let draw = 0; draw < 200; draw++) {
    const used = devPortsUsed(devPorts());
    assert.equal(new Set(used).size, used.length, `a port drawn twice: ${used}`);
    for (const port of used) assert.ok(port >= 20_000 && port < 32_700, `port ${port} drawn`);
  }
});

Deno.test("freePort() never hands out a port twice in one process", () => {
  const ports = Array.from({ length: 500 }, () => freePort());
  assert.equal(new Set(ports).size, ports.length);
});
