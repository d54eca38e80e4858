/**
 * A directory of znodes that processes register in, followed with watches: a child that appears
 * or changes is seen as soon as ZooKeeper reports it.
 *
 * @module
 */
import type { ZooKeeperClient } from "./client.ts";

/** Options of a {@linkcode ZnodeDirectory}. */
export interface ZnodeDirectoryOptions<T> {
  /** The directory, relative to the client's root. */
  readonly path: string;
  /** What a child holds; undefined for data that is not a registration (warned about). */
  readonly decode: (data: Uint8Array) => T | undefined;
  readonly warn: (message: string, fields?: Record<string, unknown>) => void;
  /**
   * Keep the last value of a child that left (a client keeps routing to a node's last address:
   * it may come back there, and a request to a dead address fails fast). Default false: a child
   * that leaves is forgotten.
   */
  readonly keepDeparted?: boolean;
  /**
   * Called after what {@linkcode ZnodeDirectory.entries} returns changed: a child with a known
   * value came or went, or its value changed (values are compared by their JSON text, so they
   * should be strings or plain data). Not called for a child listed before its value is known, nor
   * for a value written again unchanged. Runs inside the ZooKeeper client's watch callback: keep
   * it short.
   */
  readonly onChange?: () => void;
}

/** The children of one znode and what each holds, decoded. */
export class ZnodeDirectory<T> {
  readonly #zk: ZooKeeperClient;
  readonly #options: ZnodeDirectoryOptions<T>;
  readonly #values = new Map<string, T>();
  readonly #watches = new Map<string, () => void>();
  #children: string[] = [];
  #unwatch: (() => void) | undefined;

  constructor(zk: ZooKeeperClient, options: ZnodeDirectoryOptions<T>) {
    this.#zk = zk;
    this.#options = options;
  }

  /** Starts following (a directory that does not exist yet is followed until it does). */
  start(): void {
    const { path, keepDeparted } = this.#options;
    this.#unwatch = this.#zk.watchChildren(path, (children) => {
      const before = this.#signature();
      this.#children = [...children ?? []].sort();
      for (const [id, unwatch] of this.#watches) {
        if (this.#children.includes(id)) continue;
        unwatch();
        this.#watches.delete(id);
        if (keepDeparted !== true) this.#values.delete(id);
      }
      for (const id of this.#children) {
        if (!this.#watches.has(id)) this.#watches.set(id, this.#watchChild(id));
      }
      this.#notify(before);
    });
  }

  #watchChild(id: string): () => void {
    const { path, decode, warn, keepDeparted } = this.#options;
    return this.#zk.watchData(`${path}/${id}`, (node) => {
      const before = this.#signature();
      if (node === undefined) {
        if (keepDeparted !== true) this.#values.delete(id);
      } else {
        const value = decode(node.data);
        if (value !== undefined) this.#values.set(id, value);
        else warn("Ignored a malformed registration", { path: `${path}/${id}` });
      }
      this.#notify(before);
    });
  }

  /** What `entries()` holds, as text (only when someone is told of changes). */
  #signature(): string | undefined {
    if (this.#options.onChange === undefined) return undefined;
    return JSON.stringify(this.entries());
  }

  #notify(before: string | undefined): void {
    if (before !== undefined && this.#signature() !== before) this.#options.onChange?.();
  }

  /** The children registered now whose data is known, ordered by name. */
  entries(): Array<{ id: string; value: T }> {
    const out: Array<{ id: string; value: T }> = [];
    for (const id of this.#children) {
      const value = this.#values.get(id);
      if (value !== undefined) out.push({ id, value });
    }
    return out;
  }

  /** What a registered child holds (with `keepDeparted`, also one that left). */
  get(id: string): T | undefined {
    return this.#options.keepDeparted === true || this.#children.includes(id)
      ? this.#values.get(id)
      : undefined;
  }

  /** Stops following. */
  close(): void {
    this.#unwatch?.();
    for (const unwatch of this.#watches.values()) unwatch();
    this.#watches.clear();
  }
}
