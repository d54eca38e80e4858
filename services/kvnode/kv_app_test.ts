// Checks the KV application on in-memory spaces, without a driver: a mutation becomes a command
// stamped with the leader's clock, value limit and session TTL; a key outside the shard or a
// request with no operation is refused before anything is proposed; a serializable get is local,
// a linearizable one and a scan are not; a read is served on the machine current at serve time;
// a committed entry applies through the state machine, and one that does not decode is refused
// alike on every replica.
import assert from "node:assert/strict";
import type { Entry, LogIndex, Term } from "@tinykv/raft";
import { Command } from "@tinykv/proto/tinykv/v1";
import { HASH_SPACE, keyHash } from "@tinykv/shard";
import { MemoryKvSpace } from "./kv_space.ts";
import { KvApplication, type KvMachine } from "./kv_app.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const FULL = { lo: 0, hi: HASH_SPACE };
const NO_SESSION = { clientId: "", seq: 0, ackSeq: 0 };

function open(app: KvApplication, range = FULL): KvMachine {
  const spaces = {
    data: new MemoryKvSpace(),
    sessions: new MemoryKvSpace(),
    meta: new MemoryKvSpace(),
  };
  return app.open(spaces, range);
}

function putCommand(key: string, value: string): Command {
  return {
    stampMs: 0,
    valueBytesMax: 0,
    sessionTtlMs: 0,
    put: { key: enc(key), value: enc(value), ...NO_SESSION },
  };
}

function entry(index: number, data: Uint8Array): Entry {
  return { index: index as LogIndex, term: 1 as Term, type: "normal", checksum: 0, data };
}

Deno.test("KvApplication.prepare() stamps a mutation with the clock and the leader's limits", () => {
  const app = new KvApplication({ valueBytesMax: 5000, sessionTtlMs: 42_000 });
  const prepared = app.prepare(
    { kind: "mutation", command: putCommand("k", "v") },
    open(app),
    1_700_000_000_123,
  );
  assert.equal(prepared.kind, "propose");
  if (prepared.kind !== "propose") return;
  const command = Command.decode(prepared.data);
  assert.equal(Number(command.stampMs), 1_700_000_000_123);
  assert.equal(command.valueBytesMax, 5000);
  assert.equal(Number(command.sessionTtlMs), 42_000);
  assert.equal(dec(command.put!.key), "k");
});

Deno.test("KvApplication.prepare() refuses a key outside the shard and an empty command", () => {
  const app = new KvApplication();
  const key = "outside";
  const hash = keyHash(enc(key));
  // A shard that owns every hash but this key's.
  const range = hash === 0 ? { lo: 1, hi: HASH_SPACE } : { lo: 0, hi: hash };
  const machine = open(app, range);
  const mutation = app.prepare({ kind: "mutation", command: putCommand(key, "v") }, machine, 1);
  assert.equal(mutation.kind, "invalid");
  assert.match(mutation.kind === "invalid" ? mutation.message : "", /outside this shard's range/);
  const get = app.prepare({ kind: "get", key: enc(key), serializable: false }, machine, 1);
  assert.equal(get.kind, "invalid");
  const empty = app.prepare(
    { kind: "mutation", command: { stampMs: 0, valueBytesMax: 0, sessionTtlMs: 0 } },
    machine,
    1,
  );
  assert.deepEqual(empty, { kind: "invalid", message: "Request has no operation" });
});

Deno.test("KvApplication: only a serializable get is local", () => {
  const app = new KvApplication();
  const machine = open(app);
  const scan = { start: enc(""), end: enc(""), limit: 10 };
  const cases = [
    { op: { kind: "get" as const, key: enc("k"), serializable: true }, local: true },
    { op: { kind: "get" as const, key: enc("k"), serializable: false }, local: false },
    { op: { kind: "scan" as const, request: scan }, local: false },
    { op: { kind: "mutation" as const, command: putCommand("k", "v") }, local: false },
  ];
  for (const { op, local } of cases) {
    assert.equal(app.isLocal(op), local, op.kind);
    const prepared = app.prepare(op, machine, 1);
    if (prepared.kind === "read") assert.equal(prepared.local, local, op.kind);
  }
});

Deno.test("KvApplication: a read is served on the machine current when it is served", () => {
  const app = new KvApplication();
  const before = open(app);
  const after = open(app);
  const put = app.prepare({ kind: "mutation", command: putCommand("k", "new") }, after, 5);
  assert.equal(put.kind, "propose");
  if (put.kind !== "propose") return;
  assert.equal(after.apply(entry(1, put.data)).kind, "ok");
  const read = app.prepare({ kind: "get", key: enc("k"), serializable: false }, before, 6);
  assert.equal(read.kind, "read");
  if (read.kind !== "read") return;
  // Prepared on `before`, served after a snapshot replaced it by `after`.
  const served = read.serve(after);
  assert.equal(served.kind, "ok");
  if (served.kind !== "ok" || served.result.kind !== "get") return;
  assert.equal(served.result.response.found, true);
  assert.equal(dec(served.result.response.value), "new");
});

Deno.test("KvMachine.apply() refuses an entry that does not decode, and changes nothing", () => {
  const app = new KvApplication();
  const machine = open(app);
  const hash = machine.dataHash();
  const outcome = machine.apply(entry(7, new Uint8Array([0xff, 0xff, 0xff])));
  assert.equal(outcome.kind, "invalid");
  assert.match(outcome.kind === "invalid" ? outcome.message : "", /^Entry 7 does not decode/);
  assert.equal(machine.dataHash(), hash);
  assert.deepEqual(machine.dataSize(), { keys: 0, bytes: 0 });
});
