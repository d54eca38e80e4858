/**
 * The ports of the comparison's clusters. They stay clear of the dev cluster's defaults (2181,
 * 7700, 7800, 7880, 7901-7903) and of Linux's ephemeral range (32768 and up, where test
 * harnesses pick free ports): a block of ports from {@linkcode PORT_BASE_DEFAULT}, and the next
 * block of 100 when one of them is taken (another engineer's cluster, say).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { portPlan } from "./compare_ports.ts";
 *
 * assert.equal(portPlan(24300).tinykv.zookeeper, 24320);
 * ```
 *
 * @module
 */
import type { EtcdPorts } from "./compare_etcd.ts";
import type { TinyKvPorts } from "./compare_tinykv.ts";

/** The first block tried. */
export const PORT_BASE_DEFAULT = 24_300;
/** Blocks tried before giving up. */
export const PORT_BLOCKS_MAX = 50;
const BLOCK_SIZE = 100;

/** Every port of one block. */
export interface PortPlan {
  /** The block's first port. */
  readonly base: number;
  /** etcd's ports. */
  readonly etcd: EtcdPorts;
  /** TinyKV's ports. */
  readonly tinykv: TinyKvPorts;
}

/** The ports of the block at `base`: etcd clients +0..2, etcd peers +10..12, TinyKV +20.., kvnodes +31..33. */
export function portPlan(base: number): PortPlan {
  return {
    base,
    etcd: { clientPort: base, peerPort: base + 10 },
    tinykv: {
      zookeeper: base + 20,
      gateway: base + 21,
      placementAdmin: base + 22,
      placementHttp: base + 23,
      kvnode: base + 31,
    },
  };
}

/** Every port a plan uses. */
export function portsOf(plan: PortPlan): number[] {
  const { etcd, tinykv } = plan;
  return [
    ...[0, 1, 2].flatMap((i) => [etcd.clientPort + i, etcd.peerPort + i, tinykv.kvnode + i]),
    tinykv.zookeeper,
    tinykv.gateway,
    tinykv.placementAdmin,
    tinykv.placementHttp,
  ];
}

/** The first plan whose ports are all free (`isFree`), from `base` on in blocks of 100. */
export function findFreePlan(
  isFree: (port: number) => boolean,
  base: number = PORT_BASE_DEFAULT,
): PortPlan {
  for (let block = 0; block < PORT_BLOCKS_MAX; block++) {
    const plan = portPlan(base + block * BLOCK_SIZE);
    if (portsOf(plan).every(isFree)) return plan;
  }
  throw new Error(
    `Cannot find ${portsOf(portPlan(base)).length} free ports from ${base} to ` +
      `${base + PORT_BLOCKS_MAX * BLOCK_SIZE}`,
  );
}

/** Whether nothing listens on `port` of 127.0.0.1 (it could be bound just now). */
export function isPortFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return false;
    throw error;
  }
}
