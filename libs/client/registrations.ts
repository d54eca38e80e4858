/**
 * What processes register in ZooKeeper (ephemeral znodes, relative to the cluster root):
 * kvnodes under `nodes/<node-id>` (JSON `{address, startedAtMs}`, written by the kvnode, read by
 * gateways and placement), gateways under `gateways/<host:port>` (a {@linkcode GatewayInfo},
 * read by placement's dashboard to find every gateway's `/metrics`; clients do not need it: any
 * gateway serves any key).
 *
 * @module
 */

/** Where kvnodes register, relative to the cluster root. */
export const NODES_PATH = "/nodes";

/** The address a kvnode's registration names; undefined when it is not one. */
export function decodeNodeAddress(data: Uint8Array): string | undefined {
  try {
    const info = JSON.parse(new TextDecoder().decode(data));
    return typeof info?.address === "string" ? info.address : undefined;
  } catch {
    return undefined;
  }
}

/** The parent of the gateways' znodes, relative to the cluster root. */
export const GATEWAYS_PATH = "/gateways";

/** What a gateway's znode holds. */
export interface GatewayInfo {
  /** The client API address (`host:port`). */
  readonly address: string;
  /** The `/metrics` address (`host:port`), empty when the gateway serves none. */
  readonly metricsAddress: string;
  /** When the process started, in Unix milliseconds. */
  readonly startedAtMs: number;
}

/** The znode of the gateway serving on `address`. */
export function gatewayPath(address: string): string {
  return `${GATEWAYS_PATH}/${address}`;
}

/** A gateway's znode for the wire. */
export function encodeGatewayInfo(info: GatewayInfo): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(info));
}

/** Reads a gateway's znode; undefined when it is not one. */
export function decodeGatewayInfo(data: Uint8Array): GatewayInfo | undefined {
  try {
    const value = JSON.parse(new TextDecoder().decode(data));
    if (
      typeof value?.address === "string" && typeof value.metricsAddress === "string" &&
      typeof value.startedAtMs === "number"
    ) {
      return {
        address: value.address,
        metricsAddress: value.metricsAddress,
        startedAtMs: value.startedAtMs,
      };
    }
  } catch {
    // Not JSON: not a gateway's.
  }
  return undefined;
}
