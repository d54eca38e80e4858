/**
 * `canSend` and `whenCanSend` over a stand-in for a grpc-js server call: the HTTP/2 session is
 * found through the call's `call`/`nextCall` chain, a closed send window (0) or a pending drain
 * holds the writer, and it is released when the window opens or the drain comes, never after the
 * call closed.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { canSend, SEND_WINDOW_POLL_MS, SendGate, sessionOf, whenCanSend } from "./send_window.ts";

class FakeCall extends EventEmitter {
  writableNeedDrain = false;
  destroyed = false;
  readonly session = { state: { remoteWindowSize: 65535 }, destroyed: false, closed: false };
  // grpc-js 1.14: ServerWritableStreamImpl.call → ServerInterceptingCall.nextCall → stream.
  readonly call = { nextCall: { stream: { session: this.session } } };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("sessionOf finds the session behind interceptors, or nothing", () => {
  const call = new FakeCall();
  assert.equal(sessionOf(call), call.session);
  assert.equal(sessionOf({ call: { stream: { session: call.session } } }), call.session);
  assert.equal(sessionOf({}), undefined);
});

Deno.test("canSend is false while the send window is 0 or a drain is pending", () => {
  const call = new FakeCall();
  assert.equal(canSend(call), true);
  call.session.state.remoteWindowSize = 0;
  assert.equal(canSend(call), false);
  call.session.state.remoteWindowSize = 1;
  assert.equal(canSend(call), true);
  call.writableNeedDrain = true;
  assert.equal(canSend(call), false);
  // No session to ask: only the drain counts.
  assert.equal(canSend({ writableNeedDrain: false, once: () => {} }), true);
});

Deno.test("whenCanSend waits for the window to open, then for a drain", async () => {
  const call = new FakeCall();
  call.session.state.remoteWindowSize = 0;
  let ready = 0;
  whenCanSend(call, () => ready++);
  await sleep(SEND_WINDOW_POLL_MS * 3);
  assert.equal(ready, 0, "held while the window is 0");
  call.writableNeedDrain = true;
  call.session.state.remoteWindowSize = 100;
  await sleep(SEND_WINDOW_POLL_MS * 3);
  assert.equal(ready, 0, "held while a drain is pending");
  call.writableNeedDrain = false;
  call.emit("drain");
  assert.equal(ready, 1);
  await sleep(SEND_WINDOW_POLL_MS * 2);
  assert.equal(ready, 1, "called once");
});

Deno.test("whenCanSend never calls back after the call closed, and stops on demand", async () => {
  const call = new FakeCall();
  call.session.state.remoteWindowSize = 0;
  let ready = 0;
  whenCanSend(call, () => ready++);
  call.emit("close");
  call.session.state.remoteWindowSize = 10;
  await sleep(SEND_WINDOW_POLL_MS * 3);
  assert.equal(ready, 0);
  const other = new FakeCall();
  other.session.state.remoteWindowSize = 0;
  const stop = whenCanSend(other, () => ready++);
  stop();
  other.session.state.remoteWindowSize = 10;
  await sleep(SEND_WINDOW_POLL_MS * 3);
  assert.equal(ready, 0);
});

Deno.test("SendGate says to write on while the peer takes more, then calls ready once it does again", async () => {
  const call = new FakeCall();
  let ready = 0;
  const gate = new SendGate(call, () => ready++);
  assert.equal(gate.wrote(true), true);
  assert.equal(gate.waiting, false);
  call.session.state.remoteWindowSize = 0;
  assert.equal(gate.wrote(true), false);
  assert.equal(gate.waiting, true);
  assert.equal(gate.wrote(true), false, "a second write while waiting waits once");
  call.session.state.remoteWindowSize = 1000;
  await sleep(SEND_WINDOW_POLL_MS * 3);
  assert.deepEqual([ready, gate.waiting], [1, false]);
  // A write the stream itself refused (write() returned false) waits for its drain.
  call.writableNeedDrain = true;
  assert.equal(gate.wrote(false), false);
  call.writableNeedDrain = false;
  call.emit("drain");
  assert.equal(ready, 2);
});
