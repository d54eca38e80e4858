/**
 * The kvnode's presence in ZooKeeper: which cluster it belongs to ({@linkcode joinCluster}) and its
 * registration under `nodes/<node-id>` ({@linkcode Registration}), kept for as long as it runs.
 *
 * A node that knows its cluster (its data dir records the id) serves its data without ZooKeeper
 * and registers once it can; a new node must learn its cluster id from ZooKeeper first. A node
 * whose data dir belongs to another cluster stops.
 *
 * @module
 */
import { claimEphemeral, type ZooKeeperClient } from "@tinykv/zk";
import type { NodeStorage } from "./node_storage.ts";
import { resolveClusterId, storedClusterId } from "./identity.ts";
import type { DriverLog } from "./driver.ts";

/** How long to wait between attempts to reach ZooKeeper. */
export const ZOOKEEPER_RETRY_MS = 2000;
/** How long a node that knows its cluster waits for ZooKeeper before serving without it. */
export const ZOOKEEPER_FIRST_CONNECT_MS = 2000;

/** Opens a ZooKeeper session (bounded by `connectTimeoutMs` when given). */
export type ZooKeeperConnect = (connectTimeoutMs?: number) => Promise<ZooKeeperClient>;

/** Where the node stands with its cluster before it serves. */
export type Joined =
  | {
    readonly kind: "ok";
    readonly clusterId: string;
    /** The session, when ZooKeeper answered in time. */
    readonly zk: ZooKeeperClient | undefined;
    /** The data dir already recorded the cluster (the node may serve before registering). */
    readonly known: boolean;
  }
  | { readonly kind: "mismatch"; readonly message: string };

/**
 * Finds the node's cluster: a new node waits for ZooKeeper and takes (or creates) the cluster id
 * there; a node that knows its cluster checks it against ZooKeeper when ZooKeeper answers within
 * {@linkcode ZOOKEEPER_FIRST_CONNECT_MS}, else serves and checks once it can (see
 * {@linkcode Registration}).
 */
export async function joinCluster(
  store: NodeStorage,
  options: { dataDir: string; connect: ZooKeeperConnect; log: DriverLog },
): Promise<Joined> {
  const { dataDir, connect, log } = options;
  const known = storedClusterId(store);
  if (known === undefined) {
    const zk = await connect();
    const cluster = await resolveClusterId(store, zk, { dataDir });
    if (cluster.kind === "mismatch") {
      await zk.close();
      return cluster;
    }
    return { kind: "ok", clusterId: cluster.clusterId, zk, known: false };
  }
  let zk: ZooKeeperClient | undefined;
  try {
    zk = await connect(ZOOKEEPER_FIRST_CONNECT_MS);
    const checked = await resolveClusterId(store, zk, { dataDir });
    if (checked.kind === "mismatch") {
      await zk.close();
      return checked;
    }
    return { kind: "ok", clusterId: known, zk, known: true };
  } catch (error) {
    await zk?.close();
    log.warn("ZooKeeper is unreachable: serving without it, registering later", { error });
    return { kind: "ok", clusterId: known, zk: undefined, known: true };
  }
}

/** Options of a {@linkcode Registration}. */
export interface RegistrationOptions {
  /** The node's data dir (named in a cluster mismatch). */
  readonly dataDir: string;
  readonly nodeId: string;
  /** What the znode holds: where the node listens and when it started. */
  readonly info: { readonly address: string; readonly startedAtMs: number };
  readonly connect: ZooKeeperConnect;
  readonly log: DriverLog;
}

/**
 * Keeps the node registered under `nodes/<node-id>` (ephemeral) while it runs: registers until it
 * succeeds, connecting (and checking the cluster) first when the node started without ZooKeeper;
 * and registers again whenever the client gives up restoring the registration after a session
 * expiry (another session's znode was in the way): a node must never stay unregistered.
 */
export class Registration {
  readonly #store: NodeStorage;
  readonly #options: RegistrationOptions;
  #zk: ZooKeeperClient | undefined;
  #stopping = false;
  #registering: Promise<void> = Promise.resolve();
  #first: Promise<void> | undefined;
  readonly #foreign = Promise.withResolvers<string>();

  constructor(
    store: NodeStorage,
    zk: ZooKeeperClient | undefined,
    options: RegistrationOptions,
  ) {
    this.#store = store;
    this.#zk = zk;
    this.#options = options;
    if (zk !== undefined) this.#follow(zk);
  }

  /** Starts registering; resolves once registered the first time (or stopped). */
  start(): Promise<void> {
    this.#first ??= this.#registerUntilDone();
    return this.#first;
  }

  /** Resolves with why, should the node turn out to belong to another cluster. */
  get foreign(): Promise<string> {
    return this.#foreign.promise;
  }

  /** Stops registering (a node shutting down must not register again). */
  stop(): void {
    this.#stopping = true;
  }

  /** Stops registering and closes the session (the ephemeral znode goes with it). */
  async close(): Promise<void> {
    this.#stopping = true;
    await this.#first;
    await this.#registering;
    await this.#zk?.close();
  }

  async #registerUntilDone(): Promise<void> {
    const { connect, dataDir, log } = this.#options;
    while (!this.#stopping) {
      try {
        if (this.#zk === undefined) {
          const client = await connect();
          const checked = await resolveClusterId(this.#store, client, { dataDir }).catch(
            async (error) => {
              await client.close(); // the next attempt opens a new session
              throw error;
            },
          );
          this.#zk = client;
          if (checked.kind === "mismatch") return this.#foreign.resolve(checked.message);
          this.#follow(client);
        }
        await register(this.#zk, this.#options.nodeId, this.#options.info);
        return;
      } catch (error) {
        log.warn("Cannot register in ZooKeeper: retrying", { error });
        await new Promise((resolve) => setTimeout(resolve, ZOOKEEPER_RETRY_MS));
      }
    }
  }

  #follow(client: ZooKeeperClient): void {
    const { nodeId, log } = this.#options;
    client.onConnectionEvent((event) => {
      if (event.kind !== "ephemeralLost" || event.path !== `/nodes/${nodeId}`) return;
      log.warn("The ZooKeeper registration was lost after a session expiry: registering");
      this.#registering = this.#registering.then(() => this.#registerUntilDone());
    });
  }
}

/** Registers the node under `nodes/<id>` (ephemeral; re-created after a session expiry). */
async function register(
  zk: ZooKeeperClient,
  nodeId: string,
  info: { address: string; startedAtMs: number },
): Promise<void> {
  await claimEphemeral(zk, `/nodes/${nodeId}`, new TextEncoder().encode(JSON.stringify(info)));
}
