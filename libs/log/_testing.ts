// Test doubles shared by the tests of this folder: a manual clock and timer, a memory sink that
// can be held (slow disk) or made to fail, and a bounded wait for a condition.

import type { Clock, LogTimer } from "./logger.ts";
import type { LogSink } from "./file_sink.ts";

/** A clock the test sets. */
export class ManualClock implements Clock {
  ms: number;
  constructor(ms: number) {
    this.ms = ms;
  }
  now(): number {
    return this.ms;
  }
}

/** A timer that fires only when the test says so. */
export class ManualTimer implements LogTimer {
  #nextId = 1;
  readonly #pending = new Map<number, () => void>();
  get pending(): number {
    return this.#pending.size;
  }
  setTimeout(callback: () => void, _delayMs: number): number {
    const id = this.#nextId++;
    this.#pending.set(id, callback);
    return id;
  }
  clearTimeout(id: unknown): void {
    this.#pending.delete(id as number);
  }
  /** Fires every pending timer. */
  fire(): void {
    const callbacks = [...this.#pending.values()];
    this.#pending.clear();
    for (const callback of callbacks) callback();
  }
}

/** A sink keeping writes in memory; `hold()` stalls writes until `release()`. */
export class MemorySink implements LogSink {
  readonly writes: { day: string; text: string }[] = [];
  failWrites = false;
  calls = 0;
  synced = 0;
  closed = false;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  readonly #decoder = new TextDecoder();

  hold(): void {
    this.#gate = new Promise((resolve) => this.#open = resolve);
  }
  release(): void {
    this.#open?.();
    this.#gate = undefined;
  }
  async write(day: string, data: Uint8Array): Promise<void> {
    this.calls += 1;
    const text = this.#decoder.decode(data); // Copy now: the logger reuses `data` afterwards.
    if (this.#gate !== undefined) await this.#gate;
    if (this.failWrites) throw new Error("Cannot write: disk is full");
    this.writes.push({ day, text });
  }
  sync(): Promise<void> {
    this.synced += 1;
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
  /** Every written line, parsed. */
  records(): Record<string, unknown>[] {
    return this.writes.flatMap((write) =>
      write.text.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line))
    );
  }
}

/** Lets pending microtasks and one macrotask turn run. */
export function turn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Waits until `condition()` holds, polling; throws after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 2000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
