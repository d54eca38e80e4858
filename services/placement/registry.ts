/**
 * The kvnodes registered in ZooKeeper (`nodes/<id>`, ephemeral, JSON `{"address", …}`), followed
 * with watches: a join or a departure is seen as soon as ZooKeeper reports it, and a node that
 * re-registers at another address is seen there.
 *
 * @module
 */
import type { ZooKeeperClient } from "@tinykv/zk";
import type { RegisteredNode } from "./cluster_model.ts";

/** Where kvnodes register, relative to the cluster root. */
export const NODES_PATH = "/nodes";

/** The registered kvnodes. */
export class NodeRegistry {
  readonly #zk: ZooKeeperClient;
  readonly #warn: (message: string, fields?: Record<string, unknown>) => void;
  readonly #addresses = new Map<string, string>();
  readonly #watches = new Map<string, () => void>();
  #children: string[] = [];
  #unwatch: (() => void) | undefined;

  constructor(
    zk: ZooKeeperClient,
    warn: (message: string, fields?: Record<string, unknown>) => void,
  ) {
    this.#zk = zk;
    this.#warn = warn;
  }

  /** Starts following the registry. */
  async start(): Promise<void> {
    await this.#zk.mkdirp(NODES_PATH);
    this.#unwatch = this.#zk.watchChildren(NODES_PATH, (children) => {
      this.#children = [...children ?? []].sort();
      for (const [id, unwatch] of this.#watches) {
        if (this.#children.includes(id)) continue;
        unwatch();
        this.#watches.delete(id);
        this.#addresses.delete(id);
      }
      for (const id of this.#children) {
        if (!this.#watches.has(id)) this.#watches.set(id, this.#watchNode(id));
      }
    });
  }

  #watchNode(id: string): () => void {
    return this.#zk.watchData(`${NODES_PATH}/${id}`, (node) => {
      if (node === undefined) {
        this.#addresses.delete(id);
        return;
      }
      try {
        const info = JSON.parse(new TextDecoder().decode(node.data));
        if (typeof info.address === "string") this.#addresses.set(id, info.address);
      } catch {
        this.#warn("Ignored a malformed node registration", { node: id });
      }
    });
  }

  /** The registered nodes whose address is known, ordered by id. */
  registered(): RegisteredNode[] {
    const out: RegisteredNode[] = [];
    for (const id of this.#children) {
      const address = this.#addresses.get(id);
      if (address !== undefined) out.push({ id, address });
    }
    return out;
  }

  /** The address of a registered node. */
  address(id: string): string | undefined {
    return this.#children.includes(id) ? this.#addresses.get(id) : undefined;
  }

  /** Stops following. */
  close(): void {
    this.#unwatch?.();
    for (const unwatch of this.#watches.values()) unwatch();
    this.#watches.clear();
  }
}
