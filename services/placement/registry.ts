/**
 * Directories of ephemeral znodes that processes register in, followed with watches: a join or a
 * departure is seen as soon as ZooKeeper reports it, and a changed registration is seen at once.
 * The kvnodes register under `nodes/<id>` (JSON `{"address", …}`, {@linkcode NodeRegistry}); the
 * gateways under `gateways/<address>` (`GatewayInfo`, read by the dashboard).
 *
 * @module
 */
import { decodeGatewayInfo, type GatewayInfo, GATEWAYS_PATH } from "@tinykv/client";
import type { ZooKeeperClient } from "@tinykv/zk";
import type { RegisteredNode } from "./cluster_model.ts";

/** Where kvnodes register, relative to the cluster root. */
export const NODES_PATH = "/nodes";

type Warn = (message: string, fields?: Record<string, unknown>) => void;

/** The children of one znode and what each holds, decoded; a child that does not decode is left out. */
export class ZnodeDirectory<T> {
  readonly #zk: ZooKeeperClient;
  readonly #path: string;
  readonly #decode: (data: Uint8Array) => T | undefined;
  readonly #warn: Warn;
  readonly #values = new Map<string, T>();
  readonly #watches = new Map<string, () => void>();
  #children: string[] = [];
  #unwatch: (() => void) | undefined;

  constructor(
    zk: ZooKeeperClient,
    options: { path: string; decode: (data: Uint8Array) => T | undefined; warn: Warn },
  ) {
    this.#zk = zk;
    this.#path = options.path;
    this.#decode = options.decode;
    this.#warn = options.warn;
  }

  /** Starts following the directory (creating it when missing). */
  async start(): Promise<void> {
    await this.#zk.mkdirp(this.#path);
    this.#unwatch = this.#zk.watchChildren(this.#path, (children) => {
      this.#children = [...children ?? []].sort();
      for (const [id, unwatch] of this.#watches) {
        if (this.#children.includes(id)) continue;
        unwatch();
        this.#watches.delete(id);
        this.#values.delete(id);
      }
      for (const id of this.#children) {
        if (!this.#watches.has(id)) this.#watches.set(id, this.#watchChild(id));
      }
    });
  }

  #watchChild(id: string): () => void {
    return this.#zk.watchData(`${this.#path}/${id}`, (node) => {
      if (node === undefined) {
        this.#values.delete(id);
        return;
      }
      const value = this.#decode(node.data);
      if (value !== undefined) this.#values.set(id, value);
      else this.#warn("Ignored a malformed registration", { path: `${this.#path}/${id}` });
    });
  }

  /** The registered children whose data is known, ordered by name. */
  entries(): Array<{ id: string; value: T }> {
    const out: Array<{ id: string; value: T }> = [];
    for (const id of this.#children) {
      const value = this.#values.get(id);
      if (value !== undefined) out.push({ id, value });
    }
    return out;
  }

  /** What a registered child holds. */
  get(id: string): T | undefined {
    return this.#children.includes(id) ? this.#values.get(id) : undefined;
  }

  /** Stops following. */
  close(): void {
    this.#unwatch?.();
    for (const unwatch of this.#watches.values()) unwatch();
    this.#watches.clear();
  }
}

function decodeNodeAddress(data: Uint8Array): string | undefined {
  try {
    const info = JSON.parse(new TextDecoder().decode(data));
    return typeof info?.address === "string" ? info.address : undefined;
  } catch {
    return undefined;
  }
}

/** The registered kvnodes. */
export class NodeRegistry {
  readonly #directory: ZnodeDirectory<string>;

  constructor(zk: ZooKeeperClient, warn: Warn) {
    this.#directory = new ZnodeDirectory(zk, { path: NODES_PATH, decode: decodeNodeAddress, warn });
  }

  /** Starts following the registry. */
  start(): Promise<void> {
    return this.#directory.start();
  }

  /** The registered nodes whose address is known, ordered by id. */
  registered(): RegisteredNode[] {
    return this.#directory.entries().map(({ id, value }) => ({ id, address: value }));
  }

  /** The address of a registered node. */
  address(id: string): string | undefined {
    return this.#directory.get(id);
  }

  /** Stops following. */
  close(): void {
    this.#directory.close();
  }
}

/** The gateways registered now (each keeps its znode while it runs). */
export function gatewayDirectory(zk: ZooKeeperClient, warn: Warn): ZnodeDirectory<GatewayInfo> {
  return new ZnodeDirectory(zk, { path: GATEWAYS_PATH, decode: decodeGatewayInfo, warn });
}
