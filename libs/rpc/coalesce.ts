/**
 * Fewer socket writes for the HTTP/2 frames of gRPC answers: the writes a connection makes while
 * one macrotask runs (one socket read, one timer, one immediate, with the ticks and microtasks it
 * leads to) leave together.
 *
 * Deno's `node:http2` hands each frame nghttp2 produces to `socket.write` at once: a unary gRPC
 * answer is three writes (its headers, its message, its trailers), each its own `sendto` — 79,000
 * of them for 25,600 gets through the gateway with 256 in flight (`strace -c`), and on loopback
 * every one also runs the receiver's TCP path and wakes it. {@linkcode coalesceWrites} corks a
 * socket at its first write and uncorks it once the ticks queued so far have run, from a microtask
 * (`process.nextTick`, then `queueMicrotask`): the answers one kvnode message completes leave in
 * a `writev` or a few. Nothing waits for a later macrotask or a timer (docs/style.md, "no waits that
 * do no work"); backpressure is the socket's own, since a corked socket still counts what it holds.
 *
 * @module
 */
import process from "node:process";
import tls from "node:tls";

/** The part of a `net.Socket` this uses. */
export interface CorkableSocket {
  write(...args: never[]): boolean;
  cork(): void;
  uncork(): void;
}

/** What {@linkcode coalesceWrites} did in this process (for tests and benchmarks). */
export interface CoalesceCounts {
  /** Sockets taken on. */
  readonly sockets: number;
  /** Writes made to them. */
  readonly writes: number;
  /** Batches those writes left in (one `uncork` each). */
  readonly batches: number;
}

const counts = { sockets: 0, writes: 0, batches: 0 };

/** The counts so far (a copy). */
export function coalesceCounts(): CoalesceCounts {
  return { ...counts };
}

/**
 * Makes the writes `socket` gets while one macrotask runs leave together: the first corks it,
 * and a microtask after the ticks queued meanwhile uncorks it.
 */
export function coalesceWrites(socket: CorkableSocket): void {
  const write = socket.write as (...args: unknown[]) => boolean;
  let corked = false;
  const uncork = () => {
    corked = false;
    counts.batches++;
    socket.uncork();
  };
  // nextTick first: Deno's http2 flushes a stream's message from a tick queued by the write,
  // and a trailer after it; the microtask runs once the tick queue is empty.
  const afterTicks = () => queueMicrotask(uncork);
  socket.write = function (this: CorkableSocket, ...args: unknown[]): boolean {
    counts.writes++;
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(afterTicks);
    }
    return write.apply(this, args);
  } as CorkableSocket["write"];
  counts.sockets++;
}

/** An HTTP/2 server of grpc-js: a `net.Server` underneath, a `tls.Server` when secure. */
interface ConnectionSource {
  prependListener(
    event: "connection" | "secureConnection",
    listener: (socket: CorkableSocket) => void,
  ): unknown;
}

/**
 * Coalesces the writes of every connection a started grpc-js server accepts from now on: the
 * socket HTTP/2 writes to, the TLS socket on a secure server (its `secureConnection`), the TCP
 * socket otherwise. The HTTP/2 servers are grpc-js's own (`Server.http2Servers`, not public API,
 * of the pinned 1.14.3): `false` when they are not where this expects them (the server then runs
 * as before, and `coalesce_test.ts` fails).
 */
export function coalesceServerWrites(server: object): boolean {
  const servers = (server as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return false;
  for (const http2Server of servers.keys() as Iterable<ConnectionSource>) {
    if (typeof http2Server?.prependListener !== "function") return false;
  }
  for (const http2Server of servers.keys() as Iterable<ConnectionSource>) {
    const event = http2Server instanceof tls.Server ? "secureConnection" : "connection";
    http2Server.prependListener(event, coalesceWrites);
  }
  return true;
}
