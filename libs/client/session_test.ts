// Checks ClientSession's seq and ack_seq bookkeeping: seqs increase, ack_seq trails the oldest
// unanswered seq whatever order answers arrive in, and the outstanding bound refuses new seqs.
import assert from "node:assert/strict";
import fc from "fast-check";
import { mulberry32 } from "@tinykv/raft";
import { ClientSession } from "./session.ts";

Deno.test("ClientSession hands out increasing seqs and acknowledges the answered prefix", () => {
  const session = new ClientSession({ clientId: "c" });
  assert.deepEqual(session.next(), { seq: 1, ackSeq: 0 });
  assert.deepEqual(session.next(), { seq: 2, ackSeq: 0 });
  assert.deepEqual(session.next(), { seq: 3, ackSeq: 0 });
  session.answered(2);
  assert.equal(session.ackSeq, 0, "seq 1 is still unanswered");
  session.answered(1);
  assert.equal(session.ackSeq, 2);
  session.answered(3);
  assert.equal(session.ackSeq, 3);
  assert.deepEqual(session.next(), { seq: 4, ackSeq: 3 });
});

Deno.test("ClientSession refuses new seqs past its outstanding bound", () => {
  const session = new ClientSession({ outstandingMax: 2 });
  assert.notEqual(session.next(), undefined);
  assert.notEqual(session.next(), undefined);
  assert.equal(session.next(), undefined);
  session.answered(1);
  assert.notEqual(session.next(), undefined);
  assert.match(session.clientId, /^c-/);
});

Deno.test("ClientSession.ackSeq is always below every unanswered seq (property)", () => {
  fc.assert(fc.property(fc.array(fc.boolean(), { maxLength: 200 }), fc.nat(), (steps, seed) => {
    const session = new ClientSession();
    const open: number[] = [];
    let highest = 0;
    const random = mulberry32(seed);
    for (const issue of steps) {
      if (issue || open.length === 0) {
        const next = session.next()!;
        assert.ok(next.ackSeq < next.seq);
        open.push(next.seq);
        highest = next.seq;
      } else {
        const [seq] = open.splice(Math.floor(random() * open.length), 1);
        session.answered(seq);
      }
      for (const seq of open) assert.ok(session.ackSeq < seq);
      if (open.length === 0) assert.equal(session.ackSeq, highest);
      else assert.equal(session.ackSeq, Math.min(...open) - 1);
    }
  }));
});
