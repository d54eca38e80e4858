// Checks the Raft message codec: every message kind survives messageToProto → protobuf bytes →
// messageFromProto unchanged (fast-check generates the messages), envelopeBytesBound() is an upper
// bound of the encoded size, and malformed input — unknown types, bad integers, bad peer ids,
// gaps in entries, corrupt entries, misplaced snapshot data — is refused with a reason.
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  createEntry,
  type Entry,
  type LogIndex,
  type Message,
  type PeerId,
  type Term,
} from "@tinykv/raft";
import { RaftBatch, RaftEnvelope, type RaftMessage } from "@tinykv/proto/tinykv/v1";
import type { Envelope } from "./driver.ts";
import { envelopeBytesBound, messageFromProto, messageToProto } from "./raft_codec.ts";
import { shardId as toShardId } from "@tinykv/shard";

const MAX = Number.MAX_SAFE_INTEGER;
const count = fc.integer({ min: 0, max: MAX });
const smallCount = fc.integer({ min: 0, max: 1_000_000 });
const peerId = fc.integer({ min: 1, max: MAX });

const header = fc.tuple(peerId, peerId, smallCount).filter(([from, to]) => from !== to).map((
  [from, to, term],
) => ({ from: from as PeerId, to: to as PeerId, term: (term + 1_000) as Term }));

/** Contiguous, checksummed entries after `prevLogIndex` with terms in [prevLogTerm, term]. */
const append: fc.Arbitrary<Message> = fc.record({
  header,
  prevLogIndex: smallCount,
  prevLogTermDelta: fc.integer({ min: 0, max: 500 }),
  commit: count,
  entries: fc.array(
    fc.record({
      termStep: fc.integer({ min: 0, max: 2 }),
      confChange: fc.boolean(),
      data: fc.uint8Array({ maxLength: 64 }),
    }),
    { maxLength: 8 },
  ),
}).map(({ header, prevLogIndex, prevLogTermDelta, commit, entries }) => {
  const prevLogTerm = header.term - 1_000 + Math.min(prevLogTermDelta, 1_000 - 2 * entries.length);
  let entryTerm = prevLogTerm;
  const built: Entry[] = entries.map((e, i) => {
    entryTerm += e.termStep;
    return createEntry({
      term: entryTerm as Term,
      index: (prevLogIndex + 1 + i) as LogIndex,
      type: e.confChange ? "confChange" : "normal",
      data: e.data,
    });
  });
  return {
    ...header,
    type: "append" as const,
    prevLogIndex: prevLogIndex as LogIndex,
    prevLogTerm: prevLogTerm as Term,
    entries: built,
    commit: commit as LogIndex,
  };
});

const others: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ header, reject: fc.boolean(), index: count, hintIndex: count, hintTerm: count }).map(
    ({ header, reject, index, hintIndex, hintTerm }) => ({
      ...header,
      type: "appendResponse" as const,
      reject,
      index: index as LogIndex,
      hintIndex: hintIndex as LogIndex,
      hintTerm: hintTerm as Term,
    }),
  ),
  fc.record({
    header,
    type: fc.constantFrom("requestVote" as const, "requestPreVote" as const),
    lastLogIndex: count,
    lastLogTerm: count,
    transfer: fc.boolean(),
  }).map(({ header, type, lastLogIndex, lastLogTerm, transfer }) => ({
    ...header,
    type,
    lastLogIndex: lastLogIndex as LogIndex,
    lastLogTerm: lastLogTerm as Term,
    transfer,
  })),
  fc.record({
    header,
    type: fc.constantFrom("requestVoteResponse" as const, "requestPreVoteResponse" as const),
    reject: fc.boolean(),
  }).map(({ header, type, reject }) => ({ ...header, type, reject })),
  fc.record({ header, commit: count, round: count, quiesce: fc.boolean() }).map((
    { header, commit, round, quiesce },
  ) => ({
    ...header,
    type: "heartbeat" as const,
    commit: commit as LogIndex,
    round,
    quiesce,
  })),
  fc.record({ header, round: count }).map(({ header, round }) => ({
    ...header,
    type: "heartbeatResponse" as const,
    round,
  })),
  header.map((h) => ({ ...h, type: "timeoutNow" as const })),
);

const snapshot: fc.Arbitrary<Message> = fc.record({
  header,
  index: count,
  term: count,
  voters: fc.array(peerId, { maxLength: 7 }),
  learners: fc.array(peerId, { maxLength: 3 }),
  epoch: count,
  data: fc.uint8Array({ maxLength: 256 }),
}).map(({ header, index, term, voters, learners, epoch, data }) => ({
  ...header,
  type: "snapshot" as const,
  snapshot: {
    metadata: {
      index: index as LogIndex,
      term: term as Term,
      confState: {
        voters: voters as PeerId[],
        learners: learners as PeerId[],
        epoch: epoch as LogIndex,
      },
    },
    data,
  },
}));

const envelope: fc.Arbitrary<Envelope> = fc.record({
  shardId: fc.integer({ min: 0, max: 0xffff_ffff }).map(toShardId),
  confEpoch: count,
  message: fc.oneof(append, others, snapshot),
}).map((e) => ({ ...e })); // fast-check records have a null prototype.

function snapshotDataOf(e: Envelope): Uint8Array | undefined {
  return e.message.type === "snapshot" ? e.message.snapshot.data : undefined;
}

/** The proto of `e` after a trip through protobuf bytes. */
function wire(e: Envelope): RaftEnvelope {
  return RaftEnvelope.decode(RaftEnvelope.encode(messageToProto(e)));
}

Deno.test("messageFromProto() inverts messageToProto() for every message kind", () => {
  fc.assert(
    fc.property(envelope, (e) => {
      const decoded = messageFromProto(wire(e), { snapshotData: snapshotDataOf(e) });
      assert.equal(decoded.kind, "ok", decoded.kind === "invalid" ? decoded.reason : "");
      assert.deepStrictEqual(decoded.kind === "ok" && decoded.envelope, e);
    }),
    { numRuns: 500 },
  );
});

Deno.test("envelopeBytesBound() bounds the encoded size inside a RaftBatch", () => {
  fc.assert(
    fc.property(envelope, (e) => {
      const empty =
        RaftBatch.encode({ fromNode: "", fromAddress: "", clusterId: "", messages: [] }).length;
      const one = RaftBatch.encode({
        fromNode: "",
        fromAddress: "",
        clusterId: "",
        messages: [messageToProto(e)],
      });
      assert.ok(one.length - empty <= envelopeBytesBound(e));
    }),
    { numRuns: 300 },
  );
});

Deno.test("messageFromProto() refuses an entry whose bytes changed in flight", () => {
  fc.assert(
    fc.property(append, fc.nat(), fc.integer({ min: 1, max: 255 }), (message, pick, flip) => {
      fc.pre(message.type === "append" && message.entries.some((e) => e.data.length > 0));
      const proto = wire({ shardId: toShardId(1), confEpoch: 0, message });
      const withData = proto.message!.entries.filter((e) => e.data.length > 0);
      const entry = withData[pick % withData.length];
      entry.data = entry.data.slice();
      entry.data[pick % entry.data.length] ^= flip;
      const decoded = messageFromProto(proto);
      assert.equal(decoded.kind, "invalid");
      assert.match(decoded.kind === "invalid" ? decoded.reason : "", /corrupt/);
    }),
  );
});

function heartbeatProto(): RaftEnvelope {
  return messageToProto({
    shardId: toShardId(3),
    confEpoch: 2,
    message: {
      type: "heartbeat",
      from: 1 as PeerId,
      to: 2 as PeerId,
      term: 5 as Term,
      commit: 9 as LogIndex,
      round: 4,
      quiesce: false,
    },
  });
}

function appendProto(): RaftEnvelope {
  const entries = [1, 2, 3].map((i) =>
    createEntry({ term: 5 as Term, index: (10 + i) as LogIndex, data: new Uint8Array([i]) })
  );
  return messageToProto({
    shardId: toShardId(3),
    confEpoch: 2,
    message: {
      type: "append",
      from: 1 as PeerId,
      to: 2 as PeerId,
      term: 5 as Term,
      prevLogIndex: 10 as LogIndex,
      prevLogTerm: 4 as Term,
      entries,
      commit: 10 as LogIndex,
    },
  });
}

const INVALID_CASES: ReadonlyArray<[string, () => RaftEnvelope, RegExp]> = [
  ["no message", () => ({ shardId: toShardId(1), confEpoch: 0, notMember: false }), /no message/],
  ["unspecified type", () => withMessage(heartbeatProto(), { type: 0 as 1 }), /type 0/],
  ["unknown type", () => withMessage(heartbeatProto(), { type: 99 as 1 }), /type 99/],
  ["peer id 0", () => withMessage(heartbeatProto(), { from: 0 }), /"from"/],
  ["message to itself", () => withMessage(heartbeatProto(), { to: 1 }), /itself/],
  ["negative term", () => withMessage(heartbeatProto(), { term: -1 }), /"term"/],
  ["fractional commit", () => withMessage(heartbeatProto(), { commit: 1.5 }), /"commit"/],
  ["unsafe round", () => withMessage(heartbeatProto(), { readRound: 2 ** 53 }), /"read_round"/],
  [
    "shard id over uint32",
    () => ({ ...heartbeatProto(), shardId: toShardId(2) ** 32 }),
    /"shard_id"/,
  ],
  ["negative conf epoch", () => ({ ...heartbeatProto(), confEpoch: -2 }), /"conf_epoch"/],
  ["gap in entries", () => editEntries((e) => e.splice(1, 1)), /index 13: expected 12/],
  ["entry term above message term", () => editEntries((e) => (e[2].term = 6)), /term 6/],
  ["entry type 2", () => editEntries((e) => (e[0].type = 2)), /entries\[0\]\.type/],
  [
    "entry checksum",
    () => editEntries((e) => (e[1].checksum = (e[1].checksum + 1) % 2 ** 32)),
    /corrupt/,
  ],
  [
    "snapshot without data",
    () => withMessage(heartbeatProto(), { type: 9, snapshot: undefined }),
    /without its data/,
  ],
];

function withMessage(proto: RaftEnvelope, fields: Partial<RaftMessage>): RaftEnvelope {
  return { ...proto, message: { ...proto.message!, ...fields } };
}

function editEntries(edit: (entries: RaftMessage["entries"]) => void): RaftEnvelope {
  const proto = appendProto();
  edit(proto.message!.entries);
  return proto;
}

Deno.test("messageFromProto() refuses malformed envelopes with a reason", async (t) => {
  assert.equal(messageFromProto(heartbeatProto()).kind, "ok");
  assert.equal(messageFromProto(appendProto()).kind, "ok");
  for (const [name, make, reason] of INVALID_CASES) {
    await t.step(name, () => {
      const decoded = messageFromProto(make());
      assert.equal(decoded.kind, "invalid");
      assert.match(decoded.kind === "invalid" ? decoded.reason : "", reason);
    });
  }
});

Deno.test("messageFromProto() refuses snapshot data for a message that is no snapshot", () => {
  const decoded = messageFromProto(heartbeatProto(), { snapshotData: new Uint8Array(1) });
  assert.equal(decoded.kind, "invalid");
});
