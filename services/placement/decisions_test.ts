// Checks the decision ring: bounded to the newest entries, tolerant of a damaged znode.
import assert from "node:assert/strict";
import { appendDecisions, type Decision, DECISIONS_MAX, decodeDecisions } from "./decisions.ts";

const decision = (i: number): Decision => ({ atMs: i, event: "done", reason: `move ${i}` });

Deno.test("appendDecisions() keeps the newest DECISIONS_MAX entries in order", () => {
  let ring: Decision[] = [];
  for (let i = 0; i < DECISIONS_MAX + 5; i++) ring = appendDecisions(ring, [decision(i)]);
  assert.equal(ring.length, DECISIONS_MAX);
  assert.equal(ring[0].atMs, 5);
  assert.equal(ring[ring.length - 1].atMs, DECISIONS_MAX + 4);
  assert.deepEqual(
    appendDecisions([decision(1)], [decision(2), decision(3)], 2).map((d) => d.atMs),
    [2, 3],
  );
});

Deno.test("decodeDecisions() reads a ring and treats damage as empty", () => {
  const bytes = new TextEncoder().encode(JSON.stringify([decision(1), { junk: true }]));
  assert.deepEqual(decodeDecisions(bytes), [decision(1)]);
  assert.deepEqual(decodeDecisions(new TextEncoder().encode("{oops")), []);
  assert.deepEqual(decodeDecisions(new TextEncoder().encode('{"a":1}')), []);
});
