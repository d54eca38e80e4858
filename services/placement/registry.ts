/**
 * The processes registered in ZooKeeper that placement follows: the kvnodes under
 * `nodes/<id>` ({@linkcode NodeRegistry}) and the gateways under `gateways/<address>` (read by the
 * dashboard), each a `ZnodeDirectory` (libs/zk) over the codecs of `libs/client/registrations.ts`.
 *
 * @module
 */
import {
  decodeGatewayInfo,
  decodeNodeAddress,
  type GatewayInfo,
  GATEWAYS_PATH,
  NODES_PATH,
} from "@tinykv/client";
import { ZnodeDirectory, type ZooKeeperClient } from "@tinykv/zk";
import type { RegisteredNode } from "./cluster_model.ts";

export { NODES_PATH };

type Warn = (message: string, fields?: Record<string, unknown>) => void;

/** The registered kvnodes. */
export class NodeRegistry {
  readonly #zk: ZooKeeperClient;
  readonly #directory: ZnodeDirectory<string>;

  /** `onChange`: a node registered, left or changed its address (see `ZnodeDirectory`). */
  constructor(zk: ZooKeeperClient, warn: Warn, onChange?: () => void) {
    this.#zk = zk;
    this.#directory = new ZnodeDirectory(zk, {
      path: NODES_PATH,
      decode: decodeNodeAddress,
      warn,
      onChange,
    });
  }

  /** Starts following the registry. */
  async start(): Promise<void> {
    await this.#zk.mkdirp(NODES_PATH);
    this.#directory.start();
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

/** The gateways registered now (each keeps its znode while it runs); call `start()`. */
export function gatewayDirectory(zk: ZooKeeperClient, warn: Warn): ZnodeDirectory<GatewayInfo> {
  return new ZnodeDirectory(zk, { path: GATEWAYS_PATH, decode: decodeGatewayInfo, warn });
}
