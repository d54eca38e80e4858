// Checks GrpcRaftTransport and raftTransportService with real grpc-js servers and clients on
// 127.0.0.1 (port 0), sender and receiver in one process: envelopes of many shards arrive batched;
// no batch on the wire exceeds batchBytesMax; batches wait in the queue while the stream is busy
// and drain in order; a receiver of another cluster refuses the stream; the sender reconnects
// after the receiver restarts; the per-node queue bound drops and counts; a multi-MiB snapshot
// arrives intact in chunks; a snapshot corrupted in flight, cut short, too big or of another
// cluster never reaches the receiver's driver. Waits are on conditions with bounded timeouts.
import assert from "node:assert/strict";
import type { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import {
  crc32,
  createEntry,
  type LogIndex,
  type Message,
  type PeerId,
  type Term,
} from "@tinykv/raft";
import { RaftTransportService, type SnapshotChunk } from "@tinykv/proto/tinykv/v1";
import {
  createGrpcClient,
  type GrpcServer,
  type ServiceBinding,
  startGrpcServer,
} from "@tinykv/rpc";
import type { Envelope, SnapshotStagingHandle } from "./driver.ts";
import { messageToProto } from "./raft_codec.ts";
import type { PeerAddress } from "./replica.ts";
import {
  GrpcRaftTransport,
  type GrpcRaftTransportOptions,
  raftTransportService,
  SNAPSHOT_CHUNKS_AHEAD_MAX,
} from "./transport.ts";
import { shardId as toShardId } from "@tinykv/shard";

const CLUSTER = "test-cluster";
const MESSAGE_BYTES_MAX = 1024 * 1024;
const WAIT_MS = 5_000;

interface LogLine {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

function recordingLog(lines: LogLine[]) {
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    lines.push({ level, msg, fields });
  return { info: at("info"), warn: at("warn"), error: at("error") };
}

/** Polls `condition` (running `action` before each look) until it holds or `WAIT_MS` passed. */
async function waitFor(condition: () => boolean, what: string, action?: () => void) {
  const deadline = Date.now() + WAIT_MS;
  while (true) {
    action?.();
    if (condition()) return;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A receiving node: its server and what reached its driver. */
interface Receiver {
  server: GrpcServer;
  address: string;
  /** One entry per onEnvelopes call. */
  deliveries: Envelope[][];
  /** Encoded sizes of the RaftBatch messages received. */
  batchBytes: number[];
  /** Snapshot chunks received. */
  chunks: number;
  log: LogLine[];
}

async function startReceiver(
  options: { port?: number; clusterId?: string; corruptSnapshots?: boolean } = {},
): Promise<Receiver> {
  const log: LogLine[] = [];
  const receiver = { deliveries: [], batchBytes: [], chunks: 0, log } as unknown as Receiver;
  const binding = raftTransportService({
    clusterId: options.clusterId ?? CLUSTER,
    maxSnapshotBytes: 64 * 1024 * 1024,
    onEnvelopes: (envelopes) => receiver.deliveries.push(envelopes),
    log: recordingLog(log),
    stageSnapshot: inMemoryStaging,
  });
  const { Send, SendSnapshot } = RaftTransportService;
  // The real service behind deserializers that measure (and, when asked, corrupt) what arrives.
  const spied: ServiceBinding = {
    definition: {
      Send: {
        ...Send,
        requestDeserialize: (bytes: Buffer) => {
          receiver.batchBytes.push(bytes.length);
          return Send.requestDeserialize(bytes);
        },
      },
      SendSnapshot: {
        ...SendSnapshot,
        requestDeserialize: (bytes: Buffer): SnapshotChunk => {
          receiver.chunks++;
          const chunk = SendSnapshot.requestDeserialize(bytes);
          if (options.corruptSnapshots && chunk.data.length > 0) chunk.data[7] ^= 0x40;
          return chunk;
        },
      },
    },
    implementation: binding.implementation,
  };
  receiver.server = await startGrpcServer({
    host: "127.0.0.1",
    port: options.port ?? 0,
    maxMessageBytes: MESSAGE_BYTES_MAX,
    services: [spied],
  });
  receiver.address = `127.0.0.1:${receiver.server.port}`;
  return receiver;
}

/**
 * A staging that keeps the pieces in memory and hands the whole data over as the message's data,
 * so the test sees what arrived (a kvnode stages into its storage instead).
 */
function inMemoryStaging(): SnapshotStagingHandle {
  const pieces: Uint8Array[] = [];
  return {
    write: (piece) => {
      pieces.push(piece.slice());
      return Promise.resolve(undefined);
    },
    finish: () => {
      const data = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const piece of pieces) {
        data.set(piece, at);
        at += piece.length;
      }
      return Promise.resolve({ kind: "ok", data });
    },
    abort() {},
  };
}

function delivered(receiver: Receiver): Envelope[] {
  return receiver.deliveries.flat();
}

interface Sender {
  transport: GrpcRaftTransport;
  statuses: Array<[number, number, boolean]>;
  log: LogLine[];
}

function startSender(options: Partial<GrpcRaftTransportOptions> = {}): Sender {
  const statuses: Array<[number, number, boolean]> = [];
  const log: LogLine[] = [];
  const transport = new GrpcRaftTransport({
    nodeId: "a",
    address: "127.0.0.1:1",
    clusterId: CLUSTER,
    maxMessageBytes: MESSAGE_BYTES_MAX,
    batchBytesMax: 256 * 1024,
    queueBytesMax: 4 * 1024 * 1024,
    snapshotChunkBytes: 256 * 1024,
    log: recordingLog(log),
    onSnapshotStatus: (shard, peer, ok) => statuses.push([shard, peer, ok]),
    reconnectMinMs: 10,
    reconnectMaxMs: 100,
    ...options,
  });
  return { transport, statuses, log };
}

function peerOn(receiver: { address: string }, peerId = 2): PeerAddress {
  return { peerId, nodeId: "b", address: receiver.address };
}

function heartbeat(shardId: number, round: number): Envelope {
  const message: Message = {
    type: "heartbeat",
    from: 1 as PeerId,
    to: 2 as PeerId,
    term: 3 as Term,
    commit: 7 as LogIndex,
    round,
    quiesce: false,
  };
  return { shardId: toShardId(shardId), confEpoch: 4, message };
}

function bigAppend(shardId: number, dataBytes: number, fill: number): Envelope {
  const entry = createEntry({
    term: 3 as Term,
    index: 11 as LogIndex,
    data: new Uint8Array(dataBytes).fill(fill),
  });
  const message: Message = {
    type: "append",
    from: 1 as PeerId,
    to: 2 as PeerId,
    term: 3 as Term,
    prevLogIndex: 10 as LogIndex,
    prevLogTerm: 3 as Term,
    entries: [entry],
    commit: 10 as LogIndex,
  };
  return { shardId: toShardId(shardId), confEpoch: 1, message };
}

function snapshotEnvelope(data: Uint8Array): Envelope {
  const message: Message = {
    type: "snapshot",
    from: 1 as PeerId,
    to: 2 as PeerId,
    term: 3 as Term,
    snapshot: {
      metadata: {
        index: 500 as LogIndex,
        term: 3 as Term,
        confState: { voters: [1, 2, 3] as PeerId[], learners: [], epoch: 9 as LogIndex },
      },
      data,
    },
  };
  return { shardId: toShardId(6), confEpoch: 9, message };
}

function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += 65_536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(offset + 65_536, length)));
  }
  return bytes;
}

async function stopAll(sender: Sender, ...receivers: Receiver[]) {
  await sender.transport.close();
  for (const receiver of receivers) await receiver.server.shutdown(100);
}

Deno.test("GrpcRaftTransport batches the envelopes of many shards per flush", async () => {
  const receiver = await startReceiver();
  const sender = startSender();
  try {
    const sent: Envelope[] = [];
    for (let turn = 0; turn < 5; turn++) {
      for (let shard = 1; shard <= 10; shard++) {
        const envelope = heartbeat(shard, turn + 1);
        sent.push(envelope);
        sender.transport.send(peerOn(receiver), envelope);
      }
      sender.transport.flush();
    }
    await waitFor(() => delivered(receiver).length === sent.length, "every envelope");
    const sender_ = { nodeId: "a", address: "127.0.0.1:1" };
    assert.deepStrictEqual(delivered(receiver), sent.map((e) => ({ ...e, sender: sender_ })));
    // One RaftBatch (one onEnvelopes call) per flush, not one per envelope.
    assert.equal(receiver.deliveries.length, 5);
    assert.equal(receiver.batchBytes.length, 5);
    const stats = sender.transport.stats();
    assert.equal(stats.batchesSent, 5);
    assert.equal(stats.envelopesSent, 50);
  } finally {
    await stopAll(sender, receiver);
  }
});

Deno.test("GrpcRaftTransport splits big appends so no batch exceeds batchBytesMax", async () => {
  const receiver = await startReceiver();
  const batchBytesMax = 256 * 1024;
  const sender = startSender({ batchBytesMax });
  try {
    for (let shard = 1; shard <= 30; shard++) {
      sender.transport.send(peerOn(receiver), bigAppend(shard, 60 * 1024, shard));
    }
    // An envelope that cannot fit in a batch on its own is dropped and counted.
    sender.transport.send(peerOn(receiver), bigAppend(99, batchBytesMax, 1));
    sender.transport.flush();
    await waitFor(() => delivered(receiver).length === 30, "30 appends");
    assert.ok(receiver.batchBytes.length >= 8, `${receiver.batchBytes.length} batches`);
    for (const bytes of receiver.batchBytes) assert.ok(bytes <= batchBytesMax, `${bytes} bytes`);
    const shards = delivered(receiver).map((e) => e.shardId);
    assert.deepStrictEqual(shards, Array.from({ length: 30 }, (_, i) => i + 1));
    assert.equal(sender.transport.stats().droppedOversized, 1);
  } finally {
    await stopAll(sender, receiver);
  }
});

Deno.test("raftTransportService refuses a stream of another cluster", async () => {
  const receiver = await startReceiver({ clusterId: "another-cluster" });
  const sender = startSender();
  try {
    sender.transport.send(peerOn(receiver), heartbeat(1, 1));
    sender.transport.flush();
    await waitFor(() => sender.transport.stats().streamFailures >= 1, "the refusal");
    assert.equal(receiver.deliveries.length, 0);
    assert.ok(receiver.log.some((line) => /cluster "test-cluster"/.test(line.msg)));
    const warning = sender.log.find((line) => line.level === "warn");
    assert.match(String(warning?.fields?.error), /FAILED_PRECONDITION|another-cluster/);
  } finally {
    await stopAll(sender, receiver);
  }
});

Deno.test("GrpcRaftTransport reconnects after the receiver restarts", async () => {
  const first = await startReceiver();
  const port = first.server.port;
  const sender = startSender();
  let second: Receiver | undefined;
  try {
    sender.transport.send(peerOn(first), heartbeat(1, 1));
    sender.transport.flush();
    await waitFor(() => delivered(first).length === 1, "the first heartbeat");
    await first.server.shutdown(50);
    // Traffic while the receiver is down fails the stream; the sender backs off and retries.
    let round = 2;
    await waitFor(
      () => sender.transport.stats().streamFailures >= 1,
      "the stream to fail",
      () => {
        sender.transport.send(peerOn(first), heartbeat(1, round++));
        sender.transport.flush();
      },
    );
    second = await startReceiver({ port });
    const restarted = second;
    await waitFor(
      () => delivered(restarted).length > 0,
      "a heartbeat after the restart",
      () => {
        sender.transport.send(peerOn(first), heartbeat(1, round++));
        sender.transport.flush();
      },
    );
    const message = delivered(restarted)[0].message;
    assert.ok(message.type === "heartbeat" && message.round > 1);
  } finally {
    await stopAll(sender, first, ...(second ? [second] : []));
  }
});

Deno.test("GrpcRaftTransport bounds each node's queue, dropping the newest and counting", async () => {
  // A port nothing listens on any more.
  const gone = await startReceiver();
  await gone.server.shutdown(0);
  const queueBytesMax = 64 * 1024;
  const sender = startSender({ queueBytesMax, batchBytesMax: 32 * 1024 });
  try {
    for (let i = 0; i < 40; i++) sender.transport.send(peerOn(gone), bigAppend(i, 4096, i));
    let stats = sender.transport.stats();
    assert.ok(stats.queuedBytes <= queueBytesMax);
    assert.ok(stats.droppedQueueFull >= 20, `${stats.droppedQueueFull} dropped`);
    assert.equal(stats.droppedQueueFull + Math.round(stats.queuedBytes / (4096 + 256 + 64)), 40);
    // While the node stays unreachable, flushing and sending more stays within the bound.
    await waitFor(
      () => sender.transport.stats().streamFailures >= 3,
      "repeated connection failures",
      () => {
        for (let i = 0; i < 20; i++) sender.transport.send(peerOn(gone), bigAppend(i, 4096, i));
        sender.transport.flush();
        assert.ok(sender.transport.stats().queuedBytes <= queueBytesMax);
      },
    );
    stats = sender.transport.stats();
    assert.ok(stats.droppedQueueFull > 20);
  } finally {
    await sender.transport.close();
  }
});

Deno.test("GrpcRaftTransport sends a multi-MiB snapshot in chunks, intact", async () => {
  const receiver = await startReceiver();
  const sender = startSender({ snapshotChunkBytes: 256 * 1024 });
  try {
    const data = randomBytes(3 * 1024 * 1024 + 123);
    const envelope = snapshotEnvelope(data);
    sender.transport.send(peerOn(receiver), envelope);
    // At most one snapshot per (shard, peer) is in flight: a second one is dropped.
    sender.transport.send(peerOn(receiver), envelope);
    sender.transport.flush();
    await waitFor(() => sender.statuses.length === 1, "the snapshot status");
    assert.deepStrictEqual(sender.statuses, [[6, 2, true]]);
    assert.equal(receiver.deliveries.length, 1);
    const from = { nodeId: "a", address: "127.0.0.1:1" };
    assert.deepStrictEqual(receiver.deliveries[0], [{ ...envelope, sender: from }]);
    // The envelope, then 13 data chunks of at most 256 KiB.
    assert.equal(receiver.chunks, 1 + 13);
    assert.equal(sender.transport.stats().snapshotsSent, 1);
    assert.equal(sender.transport.stats().snapshotsDropped, 1);
  } finally {
    await stopAll(sender, receiver);
  }
});

Deno.test("A snapshot corrupted in flight is not delivered and reports failure", async () => {
  const receiver = await startReceiver({ corruptSnapshots: true });
  const sender = startSender();
  try {
    sender.transport.send(peerOn(receiver), snapshotEnvelope(randomBytes(600 * 1024)));
    sender.transport.flush();
    await waitFor(() => sender.statuses.length === 1, "the snapshot status");
    assert.deepStrictEqual(sender.statuses, [[6, 2, false]]);
    assert.equal(receiver.deliveries.length, 0);
    assert.ok(receiver.log.some((line) => /checksum/.test(String(line.fields?.reason))));
    const warning = sender.log.find((line) => line.msg === "Sending a snapshot failed");
    assert.match(String(warning?.fields?.reason), /DATA_LOSS|checksum/);
  } finally {
    await stopAll(sender, receiver);
  }
});

Deno.test("GrpcRaftTransport holds batches while the stream is busy, then drains in order", async () => {
  const receiver = await startReceiver();
  const sender = startSender({ batchBytesMax: 256 * 1024 });
  try {
    for (let i = 1; i <= 40; i++) {
      sender.transport.send(peerOn(receiver), bigAppend(i, 60 * 1024, i));
    }
    sender.transport.flush();
    // About ten batches, of which the stream takes STREAM_BATCHES_AHEAD_MAX before their writes
    // complete: the rest wait in the queue until then.
    assert.ok(sender.transport.stats().queuedBytes > 0);
    await waitFor(() => delivered(receiver).length === 40, "every append");
    assert.deepStrictEqual(
      delivered(receiver).map((e) => e.shardId),
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    assert.equal(sender.transport.stats().queuedBytes, 0);
  } finally {
    await stopAll(sender, receiver);
  }
});

/** Sends raw chunks on one SendSnapshot call; resolves to the status code (0 for OK). */
function sendRawSnapshot(address: string, chunks: SnapshotChunk[], end = true): Promise<number> {
  const client = createGrpcClient(RaftTransportService, address, {
    maxMessageBytes: MESSAGE_BYTES_MAX,
  });
  return new Promise<number>((resolve) => {
    const call = client.SendSnapshot(new grpc.Metadata(), {});
    call.on("data", () => {});
    call.on("status", (status: grpc.StatusObject) => {
      client.close();
      resolve(status.code);
    });
    call.on("error", () => {});
    for (const chunk of chunks) call.write(chunk);
    if (end) call.end();
  });
}

Deno.test("raftTransportService never delivers a half-received or oversized snapshot", async () => {
  const receiver = await startReceiver();
  try {
    const data = randomBytes(1024);
    const envelope = messageToProto(snapshotEnvelope(data));
    const base = {
      fromNode: "a",
      fromAddress: "127.0.0.1:1",
      clusterId: CLUSTER,
      shardId: 6,
      checksum: 0,
      totalBytes: 0,
    };
    const first = { ...base, envelope, data: new Uint8Array(0), last: false };
    const piece = { ...base, data: data.subarray(0, 512), last: false };
    // The sender ends the stream before the last chunk.
    const halfCode = await sendRawSnapshot(receiver.address, [first, piece]);
    assert.equal(halfCode, grpc.status.INVALID_ARGUMENT);
    // A total that does not match what arrived.
    const short = { ...base, data: data.subarray(512), last: true, checksum: crc32(data) };
    const lengthCode = await sendRawSnapshot(receiver.address, [
      first,
      piece,
      { ...short, totalBytes: 4096 },
    ]);
    assert.equal(lengthCode, grpc.status.DATA_LOSS);
    // More than maxSnapshotBytes (64 MiB here).
    const big = { ...base, data: new Uint8Array(512 * 1024), last: false };
    const bigCode = await sendRawSnapshot(
      receiver.address,
      [first, ...Array.from({ length: 130 }, () => big)],
      false,
    );
    assert.equal(bigCode, grpc.status.RESOURCE_EXHAUSTED);
    // Declared above maxSnapshotBytes: refused at the first chunk; at the maximum it is taken.
    const maxBytes = 64 * 1024 * 1024;
    const declaredTooBig = await sendRawSnapshot(receiver.address, [
      { ...first, totalBytes: maxBytes + 1 },
    ], false);
    assert.equal(declaredTooBig, grpc.status.RESOURCE_EXHAUSTED);
    // Declared at the maximum: accepted (this stream then ends early, which is its refusal).
    const declaredAtMax = await sendRawSnapshot(receiver.address, [
      { ...first, totalBytes: maxBytes },
    ]);
    assert.equal(declaredAtMax, grpc.status.INVALID_ARGUMENT);
    // More than it declared.
    const moreThanDeclared = await sendRawSnapshot(receiver.address, [
      { ...first, totalBytes: 700 },
      piece,
      piece,
    ], false);
    assert.equal(moreThanDeclared, grpc.status.INVALID_ARGUMENT);
    // Another cluster.
    const otherCode = await sendRawSnapshot(receiver.address, [{ ...first, clusterId: "x" }]);
    assert.equal(otherCode, grpc.status.FAILED_PRECONDITION);
    assert.equal(receiver.deliveries.length, 0);
    // The complete snapshot goes through, undeclared (an older sender) or declared whole.
    const okCode = await sendRawSnapshot(receiver.address, [
      first,
      piece,
      { ...short, totalBytes: 1024 },
    ]);
    assert.equal(okCode, 0);
    const declaredCode = await sendRawSnapshot(receiver.address, [
      { ...first, totalBytes: 1024 },
      piece,
      { ...short, totalBytes: 1024 },
    ]);
    assert.equal(declaredCode, 0);
    assert.equal(receiver.deliveries.length, 2);
    // Snapshots received at once share the maximum: while one declaring 40 MiB is open, another
    // declaring 40 MiB is refused; 24 MiB still fits.
    const open = createGrpcClient(RaftTransportService, receiver.address, {
      maxMessageBytes: MESSAGE_BYTES_MAX,
    });
    const held = open.SendSnapshot(new grpc.Metadata(), {});
    held.on("data", () => {});
    held.on("error", () => {});
    const acked = new Promise((resolve) => held.once("data", resolve));
    held.write({ ...first, totalBytes: 40 * 1024 * 1024 });
    held.write(piece);
    await acked;
    const second = await sendRawSnapshot(receiver.address, [
      { ...first, totalBytes: 40 * 1024 * 1024 },
    ], false);
    assert.equal(second, grpc.status.RESOURCE_EXHAUSTED);
    const fits = await sendRawSnapshot(receiver.address, [
      { ...first, totalBytes: 24 * 1024 * 1024 },
    ]);
    assert.equal(fits, grpc.status.INVALID_ARGUMENT, "taken (then ended early)");
    held.cancel();
    open.close();
  } finally {
    await receiver.server.shutdown(100);
  }
});

/** A receiving server whose snapshots go to stagings whose writes `write` answers. */
async function startStagingServer(
  write: () => Promise<string | undefined>,
): Promise<{ server: GrpcServer; address: string }> {
  const binding = raftTransportService({
    clusterId: CLUSTER,
    maxSnapshotBytes: 2 ** 40,
    onEnvelopes: () => {},
    log: recordingLog([]),
    stageSnapshot: () => ({
      write,
      finish: () => Promise.resolve({ kind: "ok", data: new Uint8Array(0) }),
      abort() {},
    }),
  });
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: MESSAGE_BYTES_MAX,
    services: [binding],
  });
  return { server, address: `127.0.0.1:${server.port}` };
}

Deno.test("a snapshot sender stays within a window of what the receiver stored", async () => {
  // The receiver stores a piece only when the test lets it; the sender reads its source lazily
  // and must not run ahead of the acknowledgements by more than SNAPSHOT_CHUNKS_AHEAD_MAX.
  let stored = 0;
  const gates: Array<() => void> = [];
  const { server, address } = await startStagingServer(() =>
    new Promise((resolve) =>
      gates.push(() => {
        stored++;
        resolve(undefined);
      })
    )
  );
  const sender = startSender();
  let produced = 0;
  try {
    const envelope = {
      ...snapshotEnvelope(new Uint8Array(0)),
      snapshotSource: {
        *chunks(bytes: number) {
          for (let i = 0; i < 100; i++) {
            produced++;
            yield new Uint8Array(bytes);
          }
        },
        sizeBytes: () => Promise.resolve(0),
        close() {},
      },
    };
    sender.transport.send(peerOn({ address }), envelope);
    sender.transport.flush();
    for (let round = 0; round < 30; round++) {
      await waitFor(() => gates.length > 0, "the receiver to be asked to store a piece");
      // Never more than the window (plus the piece being read) beyond what was stored.
      assert.ok(
        produced - stored <= SNAPSHOT_CHUNKS_AHEAD_MAX + 2,
        `${produced} pieces read, ${stored} stored`,
      );
      gates.shift()!();
    }
    assert.ok(produced < 100, `${produced} pieces read for 30 stored`);
  } finally {
    for (const gate of gates) gate();
    await sender.transport.close();
    await server.shutdown(0);
  }
});

Deno.test("a snapshot whose receiver stops acknowledging is given up and reported failed", async () => {
  // The receiver stores the first piece, then hangs.
  let writes = 0;
  const { server, address } = await startStagingServer(() =>
    writes++ === 0 ? Promise.resolve(undefined) : new Promise(() => {})
  );
  const sender = startSender({ snapshotTimeoutMs: 300 });
  try {
    const envelope = snapshotEnvelope(randomBytes(2 * 1024 * 1024));
    sender.transport.send(peerOn({ address }), envelope);
    sender.transport.flush();
    await waitFor(() => sender.statuses.length === 1, "the snapshot to be reported");
    assert.deepEqual(sender.statuses, [[envelope.shardId, 2, false]]);
    assert.ok(
      sender.log.some((l) => JSON.stringify(l).includes("no progress acknowledged for 300 ms")),
      JSON.stringify(sender.log),
    );
  } finally {
    await sender.transport.close();
    await server.shutdown(0);
  }
});
