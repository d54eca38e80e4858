/**
 * Flow control for long server streams (watches) under Deno 2.9.3, whose `node:http2` server hands
 * every write to its runtime at once: a grpc-js server stream's `write()` keeps returning true and
 * `drain` keeps firing while the peer reads nothing, so the process would buffer without bound for a
 * stalled client. What Deno does report is the connection's HTTP/2 send window
 * (`session.state.remoteWindowSize`): 0 while the peer grants no more. A writer asks
 * {@linkcode canSend} after each message, and when it is false waits with {@linkcode whenCanSend}
 * before the next, so at most one message more than the window is ever handed over.
 *
 * The session is found through grpc-js's server call objects (1.14: the call's `call`, then
 * `nextCall` of interceptors, holds `stream`); where it cannot be found, the stream's own
 * `writableNeedDrain` is all there is.
 *
 * @module
 */

/** What a grpc-js server stream offers that these functions read. */
export interface SendStream {
  readonly writableNeedDrain?: boolean;
  readonly destroyed?: boolean;
  once(event: "drain" | "close", listener: () => void): unknown;
  off?(event: "drain" | "close", listener: () => void): unknown;
}

/** How often a writer waiting for the window looks again. */
export const SEND_WINDOW_POLL_MS = 20;

interface SessionLike {
  readonly state?: { readonly remoteWindowSize?: number };
  readonly destroyed?: boolean;
  readonly closed?: boolean;
}

/** The HTTP/2 session under a grpc-js server call, if it can be found. */
export function sessionOf(call: object): SessionLike | undefined {
  // deno-lint-ignore no-explicit-any
  let inner: any = (call as any).call;
  for (let depth = 0; depth < 6 && inner !== undefined && inner !== null; depth++) {
    const session = inner.stream?.session;
    if (session !== undefined && session !== null) return session as SessionLike;
    inner = inner.nextCall;
  }
  return undefined;
}

/** Whether the peer can take more of `call` now: no drain pending, and an open send window. */
export function canSend(call: SendStream & object): boolean {
  if (call.writableNeedDrain === true) return false;
  const session = sessionOf(call);
  if (session === undefined || session.destroyed === true || session.closed === true) return true;
  let window: number | undefined;
  try {
    window = session.state?.remoteWindowSize;
  } catch {
    return true;
  }
  return window === undefined || window > 0;
}

/**
 * Calls `ready` once the peer can take more of `call` ({@linkcode canSend}), or never if the call
 * closes first. Returns a function that stops waiting.
 */
export function whenCanSend(call: SendStream & object, ready: () => void): () => void {
  let done = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    done = true;
    clearTimeout(timer);
    call.off?.("drain", check);
    call.off?.("close", stop);
  };
  function check(): void {
    if (done) return;
    if (call.destroyed === true) return stop();
    if (call.writableNeedDrain === true) {
      call.once("drain", check);
      return;
    }
    if (canSend(call)) {
      stop();
      ready();
      return;
    }
    timer = setTimeout(check, SEND_WINDOW_POLL_MS);
  }
  call.once("close", stop);
  check();
  return stop;
}

/**
 * The writer's side of {@linkcode canSend} for one stream: after each write, {@linkcode wrote}
 * says whether to write more now; when not, `ready` is called once the peer takes more again.
 */
export class SendGate {
  readonly #call: SendStream & object;
  readonly #ready: () => void;
  #waiting = false;

  constructor(call: SendStream & object, ready: () => void) {
    this.#call = call;
    this.#ready = ready;
  }

  /** Whether the writer waits for the peer (then `ready` comes). */
  get waiting(): boolean {
    return this.#waiting;
  }

  /** After a write that returned `written`: whether to write more now. */
  wrote(written: boolean): boolean {
    const more = written && canSend(this.#call);
    if (!more && !this.#waiting) {
      this.#waiting = true;
      whenCanSend(this.#call, () => {
        this.#waiting = false;
        this.#ready();
      });
    }
    return more;
  }
}
