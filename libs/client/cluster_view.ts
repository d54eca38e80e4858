/**
 * {@linkcode ClusterView}: what a router needs to know about the cluster — the published shard map
 * and where each kvnode listens. {@linkcode ZooKeeperClusterView} follows both in ZooKeeper
 * (`shardmap` and `nodes/<id>` under the cluster root) with watches, and keeps the last view it had
 * while ZooKeeper is unreachable, so routing goes on. {@linkcode StaticClusterView} is a fixed view
 * for tests and tools.
 *
 * @module
 */
import { decodeShardMap, type ShardMap } from "@tinykv/shard";
import { type Clock, systemClock } from "@tinykv/timer";
import { ZnodeDirectory, type ZooKeeperClient } from "@tinykv/zk";
import { decodeNodeAddress, NODES_PATH } from "./registrations.ts";

/** The cluster as a router sees it. */
export interface ClusterView {
  /** The newest valid shard map seen, if any. */
  shardMap(): ShardMap | undefined;
  /** The address (`host:port`) of a kvnode, if known. */
  nodeAddress(nodeId: string): string | undefined;
  /** Resolves when the shard map changes (or after `timeoutMs`), whichever comes first. */
  changed(timeoutMs: number): Promise<void>;
  /** Stops following the cluster. */
  close(): void;
}

/** A view that changes only when told to ({@linkcode StaticClusterView.update}). */
export class StaticClusterView implements ClusterView {
  #map: ShardMap | undefined;
  readonly #addresses: Map<string, string>;
  readonly #clock: Clock;
  #waiters: Array<() => void> = [];

  /** Creates a view of `map` with kvnodes at `addresses` (node id → `host:port`). */
  constructor(
    map: ShardMap | undefined,
    addresses: Record<string, string>,
    options: { readonly clock?: Clock } = {},
  ) {
    this.#map = map;
    this.#addresses = new Map(Object.entries(addresses));
    this.#clock = options.clock ?? systemClock;
  }

  shardMap(): ShardMap | undefined {
    return this.#map;
  }

  nodeAddress(nodeId: string): string | undefined {
    return this.#addresses.get(nodeId);
  }

  /** Replaces the map (tests use it to simulate a new publication). */
  update(map: ShardMap, addresses?: Record<string, string>): void {
    this.#map = map;
    for (const [id, address] of Object.entries(addresses ?? {})) this.#addresses.set(id, address);
    for (const wake of this.#waiters.splice(0)) wake();
  }

  changed(timeoutMs: number): Promise<void> {
    return waitOrTimeout(this.#waiters, timeoutMs, this.#clock);
  }

  close(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

/** A reporter for problems met while following ZooKeeper. */
export interface ViewLog {
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** Follows the shard map and the kvnode registry in ZooKeeper. */
export class ZooKeeperClusterView implements ClusterView {
  readonly #zk: ZooKeeperClient;
  readonly #log: ViewLog | undefined;
  readonly #clock: Clock;
  #map: ShardMap | undefined;
  readonly #nodes: ZnodeDirectory<string>;
  readonly #unwatch: Array<() => void> = [];
  #waiters: Array<() => void> = [];

  /**
   * Starts following `shardmap` and `nodes/` under the client's root. The first values arrive
   * asynchronously; {@linkcode changed} resolves when the map does.
   */
  constructor(zk: ZooKeeperClient, options: { log?: ViewLog; clock?: Clock } = {}) {
    this.#zk = zk;
    this.#log = options.log;
    this.#clock = options.clock ?? systemClock;
    this.#unwatch.push(zk.watchData("/shardmap", (node) => {
      if (node === undefined) return;
      const decoded = decodeShardMap(node.data);
      if (decoded.kind !== "ok") {
        this.#log?.warn("Ignored an invalid shard map", { error: decoded.error.message });
        return;
      }
      if (this.#map !== undefined && decoded.map.version < this.#map.version) return;
      this.#map = decoded.map;
      for (const wake of this.#waiters.splice(0)) wake();
    }));
    // A node that left keeps its last address: it may come back at the same place, and a request
    // to a dead address fails fast and is retried elsewhere.
    this.#nodes = new ZnodeDirectory(zk, {
      path: NODES_PATH,
      decode: decodeNodeAddress,
      warn: (message, fields) => this.#log?.warn(message, fields),
      keepDeparted: true,
    });
    this.#nodes.start();
  }

  shardMap(): ShardMap | undefined {
    return this.#map;
  }

  nodeAddress(nodeId: string): string | undefined {
    return this.#nodes.get(nodeId);
  }

  changed(timeoutMs: number): Promise<void> {
    return waitOrTimeout(this.#waiters, timeoutMs, this.#clock);
  }

  close(): void {
    for (const unwatch of this.#unwatch.splice(0)) unwatch();
    this.#nodes.close();
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

function waitOrTimeout(
  waiters: Array<() => void>,
  timeoutMs: number,
  clock: Clock,
): Promise<void> {
  return new Promise((resolve) => {
    const timer = clock.setTimeout(done, Math.max(0, timeoutMs));
    function done() {
      clock.clearTimeout(timer);
      const at = waiters.indexOf(done);
      if (at >= 0) waiters.splice(at, 1);
      resolve();
    }
    waiters.push(done);
  });
}
