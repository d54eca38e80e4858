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
 * A unary answer's trailers come later than its headers and message: Deno's `node:http2` runs the
 * message's write callback from an immediate (grpc-js ends the call there), and `sendTrailers`
 * writes them from another immediate it queues then, in the next loop iteration. So each answer's
 * trailers left in a write of their own, 11 bytes: one `sendto` per call at any concurrency (1,047
 * of the gateway's 1,107 socket writes in half a second of put ×256). With `untilTrailers` (the
 * gateway's client port, whose calls are unary) a batch stays corked until the immediates of the
 * next loop iteration have run: the answers written in the macrotask that opened the batch leave
 * whole in one write, and the trailers written in one iteration's immediates leave together. Their
 * calls end only with their trailers, so holding their headers and messages until then delays none.
 * The cost: an answer a later macrotask of the same iteration writes joins the batch, but its
 * trailers start the next one, which leaves from the check phase two iterations on; and what carries
 * no trailers (watch events, a trailers-only error, SETTINGS and PING frames) waits one or two
 * iterations of the loop. No timer is involved.
 *
 * @module
 */
import process from "node:process";
import { setImmediate } from "node:timers";
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

/** Options of {@linkcode coalesceWrites} and {@linkcode coalesceServerWrites}. */
export interface CoalesceOptions {
  /**
   * Keep a batch corked until the immediates of the next loop iteration have run, so that unary
   * answers' trailers leave with them (see the module docs).
   */
  readonly untilTrailers?: boolean;
}

/**
 * Makes the writes `socket` gets while one macrotask runs leave together: the first corks it,
 * and a microtask after the ticks queued meanwhile uncorks it (with `untilTrailers`, an immediate
 * queued from an immediate that microtask queues).
 */
export function coalesceWrites(socket: CorkableSocket, options: CoalesceOptions = {}): void {
  const write = socket.write as (...args: unknown[]) => boolean;
  let corked = false;
  const uncork = () => {
    corked = false;
    counts.batches++;
    socket.uncork();
  };
  // nextTick first: Deno's http2 flushes a stream's message from a tick queued by the write,
  // and a trailer after it; the microtask runs once the tick queue is empty.
  // With untilTrailers: the first immediate runs after the one that ends a call (its message's
  // write callback), which queues the trailers' immediate; the second runs after that one.
  const uncorkLater = () => setImmediate(() => setImmediate(uncork));
  const afterTicks = () => queueMicrotask(options.untilTrailers === true ? uncorkLater : uncork);
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
export function coalesceServerWrites(server: object, options: CoalesceOptions = {}): boolean {
  const servers = (server as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return false;
  for (const http2Server of servers.keys() as Iterable<ConnectionSource>) {
    if (typeof http2Server?.prependListener !== "function") return false;
  }
  for (const http2Server of servers.keys() as Iterable<ConnectionSource>) {
    const event = http2Server instanceof tls.Server ? "secureConnection" : "connection";
    http2Server.prependListener(event, (socket) => coalesceWrites(socket, options));
  }
  return true;
}
