/**
 * One socket write per connection per event-loop turn for the HTTP/2 frames of every answer
 * ready in it.
 *
 * Deno's `node:http2` hands each frame nghttp2 produces to `socket.write` at once: a unary gRPC
 * answer is three writes (its headers, its message, its trailers), each its own `sendto` — 79,000
 * of them for 25,600 gets through the gateway with 256 in flight (`strace -c`), and on loopback
 * every one also runs the receiver's TCP path and wakes it. {@linkcode coalesceWrites} corks a
 * socket at its first write in a turn and uncorks it from `setImmediate`, after the turn's I/O
 * callbacks: the frames of every answer that turn produced leave in one `writev`. Nothing waits on
 * a timer (a `setImmediate` runs in the same loop iteration; docs/style.md, "no waits that do no
 * work"); backpressure is the socket's own, since a corked socket still counts what it holds.
 *
 * @module
 */
import { setImmediate } from "node:timers";

/** The part of a `net.Socket` this uses. */
export interface CorkableSocket {
  write(...args: never[]): boolean;
  cork(): void;
  uncork(): void;
}

let coalesced = 0;

/** How many sockets {@linkcode coalesceWrites} took on in this process (for tests). */
export function coalescedSockets(): number {
  return coalesced;
}

/**
 * Makes `socket`'s writes in one event-loop turn leave together: the first write of a turn corks
 * it, and an immediate after the turn uncorks it.
 */
export function coalesceWrites(socket: CorkableSocket): void {
  const write = socket.write as (...args: unknown[]) => boolean;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  socket.write = function (this: CorkableSocket, ...args: unknown[]): boolean {
    if (!corked) {
      corked = true;
      socket.cork();
      setImmediate(uncork);
    }
    return write.apply(this, args);
  } as CorkableSocket["write"];
  coalesced++;
}

/** An HTTP/2 server of grpc-js: a `net.Server` underneath. */
interface ConnectionSource {
  prependListener(event: "connection", listener: (socket: CorkableSocket) => void): unknown;
}

/**
 * Coalesces the writes of every connection a started grpc-js server accepts from now on. The
 * HTTP/2 servers are grpc-js's own (`Server.http2Servers`, not public API, of the pinned 1.14.3):
 * `false` when they are not where this expects them (the server then runs as before, and
 * `coalesce_test.ts` fails).
 */
export function coalesceServerWrites(server: object): boolean {
  const servers = (server as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return false;
  for (const http2Server of servers.keys() as Iterable<ConnectionSource>) {
    if (typeof http2Server?.prependListener !== "function") return false;
  }
  for (const http2Server of servers.keys() as Iterable<ConnectionSource>) {
    http2Server.prependListener("connection", coalesceWrites);
  }
  return true;
}
