/**
 * Watches on a kvnode (docs/design.md "Watch"): every replica keeps a window of its shard's recent
 * changes (each put and delete its state machine applied, with the entry's index), all windows of
 * the node sharing one memory budget, oldest change evicted first. A shard's leader serves
 * `KvNode.Watch` from its window: a watcher is a cursor into it (an index), not a queue, so a
 * watcher costs no memory of its own; one too slow to keep up is cut when the window evicts what
 * it has not yet been sent.
 *
 * The windows are fed inside the driver's turn (`record`, from `KvMachine.apply`), and watchers
 * register and are checked against their replica inside a turn too (`Driver.inspect`), so a
 * position is always exact: a watcher registered at index `i` is sent every change after `i`.
 * Changes are sent once they are applied here, which is once they are committed by a majority.
 *
 * A window holds every change from its `start` index on. It starts when its replica opens (at
 * the first index it applies, or at its applied index + 1 when a watcher registers first), and
 * again when the replica's state is replaced by a snapshot: changes before are not held, and a
 * position before `start - 1` is out of range.
 *
 * @module
 */
import type { WatchEvent } from "@tinykv/proto/tinykv/v1";
import { WatchEvent_Kind } from "@tinykv/proto/tinykv/v1";
import { compareBytes } from "@tinykv/shard";

/** One change the state machine applied. */
export interface WatchChange {
  readonly kind: "put" | "delete";
  readonly key: Uint8Array;
  /** The new value of a put; empty for a delete. */
  readonly value: Uint8Array;
}

/** Bytes one held change counts besides its key and value (objects, indexes). */
export const EVENT_OVERHEAD_BYTES = 96;
/** The default budget of all windows of a node (`kvnode.watch_window_bytes`). */
export const WATCH_WINDOW_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Bytes of events per message to a watcher (the changes of one index always travel together). */
export const WATCH_MESSAGE_BYTES = 1024 * 1024;

/** Why a watch cannot start or had to end; the kinds map to gRPC statuses. */
export type WatchFailure = {
  readonly kind: "unavailable" | "outOfRange" | "resourceExhausted" | "invalidArgument";
  readonly message: string;
  /** For a replica that does not lead: the leader's address, when known. */
  readonly leaderAddress?: string;
};

/** Where a watcher's messages go. */
export interface WatchSink {
  /**
   * Sends events (possibly none: progress) and the index they reach; the first message, sent
   * as the watcher registers, is its position with no events. Returns false when the transport
   * wants no more for now; the hub then waits for {@linkcode ShardWatcher.resume}.
   */
  send(events: WatchEvent[], index: number): boolean;
  /** Ends the watch with a failure (called at most once, never after the watcher is closed). */
  close(failure: WatchFailure): void;
  /**
   * Whether the caller is gone (its call canceled or ended): the sweep then stops the watcher, in
   * case the transport's own notice of it never came.
   */
  gone?(): boolean;
}

interface HeldEvent {
  readonly index: number;
  readonly event: WatchEvent;
  readonly bytes: number;
  readonly window: EventWindow;
  evicted: boolean;
}

/** A FIFO with O(1) shift and binary search by index. */
class EventQueue {
  #items: HeldEvent[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(event: HeldEvent): void {
    this.#items.push(event);
  }

  first(): HeldEvent | undefined {
    return this.#items[this.#head];
  }

  shift(): HeldEvent | undefined {
    const event = this.#items[this.#head];
    if (event === undefined) return undefined;
    this.#items[this.#head] = undefined as unknown as HeldEvent;
    this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return event;
  }

  at(offset: number): HeldEvent | undefined {
    return this.#items[this.#head + offset];
  }

  /** The offset of the first event with an index above `index` (`length` when none). */
  after(index: number): number {
    let low = 0;
    let high = this.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#items[this.#head + middle].index <= index) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  *[Symbol.iterator](): Generator<HeldEvent> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i];
  }

  /** Keeps only the events `keep` says to, in order. */
  retain(keep: (event: HeldEvent) => boolean): void {
    this.#items = this.#items.slice(this.#head).filter(keep);
    this.#head = 0;
  }
}

/** The recent changes of one replica. */
export class EventWindow {
  readonly shardId: number;
  readonly peerId: number;
  /** Every change at an index from `start` on is held; undefined until the first is known. */
  start: number | undefined;
  /** The last index this replica applied, as far as the window knows. */
  applied = 0;
  readonly events = new EventQueue();
  readonly watchers = new Set<ShardWatcher>();
  /** Set once the replica's state was replaced or the replica is gone. */
  closed = false;

  constructor(shardId: number, peerId: number) {
    this.shardId = shardId;
    this.peerId = peerId;
  }

  /** The oldest position a watcher may start from (every change after it is held). */
  oldestPosition(): number {
    return (this.start ?? this.applied + 1) - 1;
  }
}

/** One watcher: the keys it wants, how far it was sent, where its messages go. */
export class ShardWatcher {
  readonly window: EventWindow;
  readonly #hub: WatchHub;
  readonly #start: Uint8Array;
  readonly #end: Uint8Array | undefined;
  readonly #sink: WatchSink;
  /** Every change up to here was looked at (and the watched ones sent). */
  position: number;
  /** The index the caller was last told about. */
  told: number;
  blocked = false;
  closed = false;

  constructor(
    hub: WatchHub,
    window: EventWindow,
    range: { start: Uint8Array; end: Uint8Array | undefined },
    position: number,
    sink: WatchSink,
  ) {
    this.#hub = hub;
    this.window = window;
    this.#start = range.start;
    this.#end = range.end;
    this.position = position;
    this.told = position;
    this.#sink = sink;
  }

  /** Whether `key` is in the watched range. */
  covers(key: Uint8Array): boolean {
    return compareBytes(key, this.#start) >= 0 &&
      (this.#end === undefined || compareBytes(key, this.#end) < 0);
  }

  /** The transport can take messages again. */
  resume(): void {
    if (this.closed || !this.blocked) return;
    this.blocked = false;
    this.#hub.pump(this);
  }

  /** Whether the sink says its caller is gone. */
  abandoned(): boolean {
    return this.#sink.gone?.() ?? false;
  }

  /** Stops the watcher (the caller went away); nothing more is sent. */
  cancel(): void {
    if (this.closed) return;
    this.closed = true;
    this.window.watchers.delete(this);
  }

  /** Ends the watcher with `failure`. */
  fail(failure: WatchFailure): void {
    if (this.closed) return;
    this.cancel();
    this.#sink.close(failure);
  }

  send(events: WatchEvent[], index: number): void {
    this.told = index;
    if (!this.#sink.send(events, index)) this.blocked = true;
  }
}

/** What a watch asks for on one shard. */
export interface ShardWatchSpec {
  readonly start: Uint8Array;
  /** Exclusive; undefined: to the last key. */
  readonly end: Uint8Array | undefined;
  /** Resume after this index; undefined: from the replica's applied index now. */
  readonly afterIndex: number | undefined;
}

/** The windows of one node and their watchers. */
export class WatchHub {
  readonly #bytesMax: number;
  readonly #windows = new Map<number, EventWindow>();
  /** Every held event of every window, oldest first (eviction order), and some dropped ones. */
  readonly #all = new EventQueue();
  /** Dropped events still in `#all` (they go when eviction reaches them, or in a compaction). */
  #dropped = 0;
  #bytes = 0;
  readonly #dirty = new Set<EventWindow>();
  #flushQueued = false;
  readonly #stats = { recorded: 0, evicted: 0, watchersCut: 0 };

  constructor(options: { bytesMax?: number } = {}) {
    this.#bytesMax = options.bytesMax ?? WATCH_WINDOW_BYTES_DEFAULT;
  }

  /** Bytes held by all windows, and counts since start. */
  get stats(): {
    bytes: number;
    events: number;
    watchers: number;
    recorded: number;
    evicted: number;
    watchersCut: number;
  } {
    let watchers = 0;
    for (const window of this.#windows.values()) watchers += window.watchers.size;
    const events = this.#all.length - this.#dropped;
    return { bytes: this.#bytes, events, watchers, ...this.#stats };
  }

  /** Whether any watcher is registered (the sweep has work). */
  hasWatchers(): boolean {
    for (const window of this.#windows.values()) if (window.watchers.size > 0) return true;
    return false;
  }

  /** The window of a shard's replica here, if it has one. */
  windowOf(shardId: number): EventWindow | undefined {
    return this.#windows.get(shardId);
  }

  /**
   * A state machine of replica `peerId` of shard `shardId` was opened: when the replica opens,
   * and again when a snapshot replaces its state. Either way the new window starts empty, and the
   * watchers of the old one end (they resume on the leader from their position).
   */
  attach(shardId: number, peerId: number, applied?: number): EventWindow {
    const old = this.#windows.get(shardId);
    if (old !== undefined) {
      this.#close(old, {
        kind: "unavailable",
        message: old.peerId === peerId
          ? `Shard ${shardId}: this replica's state was replaced by a snapshot; resume on the leader`
          : `Shard ${shardId}: this replica was replaced; resume on the leader`,
      });
    }
    const window = new EventWindow(shardId, peerId);
    // The state opened at `applied`: every change after it will pass through `record`.
    if (applied !== undefined) {
      window.start = applied + 1;
      window.applied = applied;
    }
    this.#windows.set(shardId, window);
    return window;
  }

  /** The replica's state was replaced in place (an inline snapshot): the window starts again. */
  restart(window: EventWindow): EventWindow {
    if (window.closed) return window;
    return this.attach(window.shardId, window.peerId);
  }

  /** The replica is gone: its window and watchers end. */
  detach(window: EventWindow, why: string): void {
    if (this.#windows.get(window.shardId) === window) this.#windows.delete(window.shardId);
    this.#close(window, { kind: "unavailable", message: why });
  }

  /**
   * Inside the turn's transaction: entry `index` of the window's replica applied `changes`
   * (possibly none). Copies keys and values (the entry's buffer is not kept).
   */
  record(window: EventWindow, index: number, changes: readonly WatchChange[]): void {
    if (window.closed) return;
    window.start ??= index;
    if (index > window.applied) window.applied = index;
    for (const change of changes) {
      const event: WatchEvent = {
        kind: change.kind === "put" ? WatchEvent_Kind.PUT : WatchEvent_Kind.DELETE,
        key: change.key.slice(),
        value: change.value.slice(),
        shard: window.shardId,
        index,
      };
      const held: HeldEvent = {
        index,
        event,
        bytes: EVENT_OVERHEAD_BYTES + change.key.length + change.value.length,
        window,
        evicted: false,
      };
      window.events.push(held);
      this.#all.push(held);
      this.#bytes += held.bytes;
      this.#stats.recorded++;
    }
    if (window.watchers.size > 0) this.#markDirty(window);
    if (this.#bytes > this.#bytesMax) this.#evict();
  }

  /**
   * Inside a turn, on the replica's leader: registers a watcher at the replica's applied index
   * `applied` (its log ends at `lastIndex`). Fails when the position asked for is not held.
   * Sends the watcher's first message, its position with no events, before anything else.
   */
  register(
    window: EventWindow,
    spec: ShardWatchSpec,
    replica: { readonly applied: number; readonly lastIndex: number },
    sink: WatchSink,
  ): { kind: "ok"; watcher: ShardWatcher; position: number } | WatchFailure {
    if (window.closed) {
      return { kind: "unavailable", message: `Shard ${window.shardId}: replica is closing` };
    }
    // Nothing applied since the replica opened: the window holds everything after its applied index.
    window.start ??= replica.applied + 1;
    if (replica.applied > window.applied) window.applied = replica.applied;
    const position = spec.afterIndex ?? window.applied;
    if (position > replica.lastIndex) {
      return {
        kind: "invalidArgument",
        message: `Watch position ${position} of shard ${window.shardId} is past the end of ` +
          `its log (${replica.lastIndex}): it is not a position this shard reported`,
      };
    }
    if (position < window.oldestPosition()) return outOfRange(window, position);
    const watcher = new ShardWatcher(this, window, spec, position, sink);
    window.watchers.add(watcher);
    // The first message is the position, here and now: the changes after it go in a later task.
    watcher.send([], position);
    if (position < window.applied) this.#markDirty(window);
    return { kind: "ok", watcher, position };
  }

  /**
   * Inside a turn, every half second while watchers exist: stops the watchers whose caller is
   * gone ({@linkcode WatchSink.gone}), checks each window against its replica (gone, no longer
   * leading: its watchers end) and tells idle watchers how far the shard applied. `replicaOf`
   * finds a shard's replica here.
   */
  sweep(
    replicaOf: (shardId: number) =>
      | {
        readonly peerId: number;
        readonly leading: boolean;
        readonly applied: number;
        readonly leaderAddress: string;
        readonly leaderNode: string;
      }
      | undefined,
    nodeId: string,
  ): void {
    for (const window of [...this.#windows.values()]) {
      const replica = replicaOf(window.shardId);
      if (replica === undefined || replica.peerId !== window.peerId) {
        this.detach(window, `Shard ${window.shardId}: the replica on node "${nodeId}" is gone`);
        continue;
      }
      // A watcher whose caller is gone goes, whatever missed telling it (watch_service.ts).
      for (const watcher of [...window.watchers]) if (watcher.abandoned()) watcher.cancel();
      if (window.watchers.size === 0) continue;
      if (!replica.leading) {
        const leader = replica.leaderNode === ""
          ? " (no leader known)"
          : ` (leader is "${replica.leaderNode}")`;
        for (const watcher of [...window.watchers]) {
          this.#stats.watchersCut++;
          watcher.fail({
            kind: "unavailable",
            message: `Shard ${window.shardId}: node "${nodeId}" is not the leader${leader}`,
            leaderAddress: replica.leaderAddress,
          });
        }
        continue;
      }
      if (replica.applied > window.applied) window.applied = replica.applied;
      for (const watcher of window.watchers) {
        this.pump(watcher);
        if (!watcher.closed && !watcher.blocked && watcher.told < watcher.position) {
          watcher.send([], watcher.position);
        }
      }
    }
  }

  /** Sends `watcher` what it has not been sent, as far as its transport takes it. */
  pump(watcher: ShardWatcher): void {
    const window = watcher.window;
    while (!watcher.closed && !watcher.blocked && watcher.position < window.applied) {
      if (watcher.position < window.oldestPosition()) {
        this.#cutBehind(watcher);
        return;
      }
      const events: WatchEvent[] = [];
      let bytes = 0;
      let reached = window.applied;
      const queue = window.events;
      const first = queue.after(watcher.position);
      for (let offset = first; offset < queue.length; offset++) {
        const held = queue.at(offset)!;
        if (held.index > window.applied) break;
        // At an index boundary, a message that holds something ends before an index that would
        // take it past the size (an index is never split): so a message is at most the larger of
        // WATCH_MESSAGE_BYTES and one index's changes.
        if (bytes > 0 && offset > first && held.index !== queue.at(offset - 1)!.index) {
          if (bytes + this.#matchedBytes(watcher, offset) > WATCH_MESSAGE_BYTES) {
            reached = queue.at(offset - 1)!.index;
            break;
          }
        }
        if (watcher.covers(held.event.key)) {
          events.push(held.event);
          bytes += held.bytes;
        }
      }
      watcher.position = reached;
      if (events.length > 0) watcher.send(events, reached);
    }
  }

  /** The bytes of the changes `watcher` wants at the index of the held change at `offset`. */
  #matchedBytes(watcher: ShardWatcher, offset: number): number {
    const queue = watcher.window.events;
    const index = queue.at(offset)!.index;
    let bytes = 0;
    for (let i = offset; i < queue.length && queue.at(i)!.index === index; i++) {
      const held = queue.at(i)!;
      if (watcher.covers(held.event.key)) bytes += held.bytes;
    }
    return bytes;
  }

  /** Sends every watcher of the dirty windows what it has not been sent, now. */
  #flushDirty(): void {
    const windows = [...this.#dirty];
    this.#dirty.clear();
    for (const window of windows) {
      for (const watcher of [...window.watchers]) this.pump(watcher);
    }
  }

  #markDirty(window: EventWindow): void {
    this.#dirty.add(window);
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.#flushDirty();
    });
  }

  #evict(): void {
    const touched = new Set<EventWindow>();
    while (this.#bytes > this.#bytesMax) {
      const held = this.#all.shift();
      if (held === undefined) break;
      if (held.evicted) {
        this.#dropped--;
        continue;
      }
      const window = held.window;
      // A watcher that keeps up but was not sent this change yet (one turn may apply more than
      // the window holds) is sent everything it is owed first; only one whose transport takes no
      // more can be cut by eviction. Usually the oldest change is long sent and nothing happens.
      for (const watcher of window.watchers) {
        if (!watcher.blocked && !watcher.closed && watcher.position < held.index) {
          this.pump(watcher);
        }
      }
      // The window's first event is this one: both queues are in the order events were recorded.
      this.#drop(window.events.shift()!);
      this.#dropped--;
      // Its index is no longer whole: drop the rest of it too.
      window.start = held.index + 1;
      while ((window.events.first()?.index ?? Infinity) <= held.index) {
        this.#drop(window.events.shift()!);
      }
      touched.add(window);
    }
    // A watcher whose unsent changes went is cut now, even one waiting for its transport: it
    // cannot be served any more, and it must not wait for a drain that may never come.
    for (const window of touched) {
      for (const watcher of [...window.watchers]) {
        if (watcher.position < window.oldestPosition() && watcher.position < window.applied) {
          this.#cutBehind(watcher);
        }
      }
    }
  }

  #cutBehind(watcher: ShardWatcher): void {
    const window = watcher.window;
    this.#stats.watchersCut++;
    watcher.fail({
      kind: "resourceExhausted",
      message: `Shard ${window.shardId}: the watcher fell behind: it was sent every change ` +
        `up to index ${watcher.position}, and this node now holds changes from index ` +
        `${window.oldestPosition() + 1} on (kvnode.watch_window_bytes); resume from the ` +
        `last position to get the error naming the oldest one held`,
    });
  }

  #drop(held: HeldEvent): void {
    if (held.evicted) return;
    held.evicted = true;
    this.#bytes -= held.bytes;
    this.#dropped++;
    this.#stats.evicted++;
  }

  #close(window: EventWindow, failure: WatchFailure): void {
    if (window.closed) return;
    window.closed = true;
    for (const held of window.events) this.#drop(held);
    window.events.retain(() => false);
    // A closed window's events are dropped but still in `#all`, holding their keys and values
    // beyond the budget until eviction reaches them: compact once they are half of it.
    if (this.#dropped * 2 > this.#all.length) {
      this.#all.retain((held) => !held.evicted);
      this.#dropped = 0;
    }
    for (const watcher of [...window.watchers]) {
      this.#stats.watchersCut++;
      watcher.fail(failure);
    }
  }
}

function outOfRange(window: EventWindow, position: number): WatchFailure {
  return {
    kind: "outOfRange",
    message: `Watch position ${position} of shard ${window.shardId} is no longer held: the ` +
      `oldest position it holds is ${window.oldestPosition()} (changes are kept in a window of ` +
      `kvnode.watch_window_bytes per node, from when the replica opened or last installed a ` +
      `snapshot); read the keys again and watch from now`,
  };
}
