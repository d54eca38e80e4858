/**
 * {@linkcode SimNetwork}: which links are cut (full, one-way and isolating
 * partitions) and how long a message takes. Losses, duplicates and delays are
 * drawn by the caller from the run's generator.
 *
 * @module
 */

import type { PeerId } from "@tinykv/raft";
import type { SimRandom } from "./random.ts";

/** Message faults of the network. */
export interface LinkFaults {
  /** Probability a message is lost. */
  lossRate: number;
  /** Probability a message is delivered twice. */
  duplicateRate: number;
  /** Delays are uniform in [1, delayMax] time units... */
  delayMax: number;
  /** ...plus, with this probability, up to `spikeMax` more. */
  spikeRate: number;
  /** The longest extra delay. */
  spikeMax: number;
}

/** The kinds of partition the simulation injects. */
export type PartitionKind = "split" | "oneWay" | "isolate";

/** Links between nodes and their faults. */
export class SimNetwork {
  /** The current message faults. */
  faults: LinkFaults;
  // Cut directed links, as from * LINK_KEY + to.
  readonly #cut: Set<number> = new Set();

  /** Creates a network with `faults` and no partition. */
  constructor(faults: LinkFaults) {
    this.faults = { ...faults };
  }

  /** Whether a partition is in place. */
  get partitioned(): boolean {
    return this.#cut.size > 0;
  }

  /** Whether messages from `from` to `to` are dropped by a partition. */
  cut(from: PeerId, to: PeerId): boolean {
    return this.#cut.size > 0 && this.#cut.has(from * LINK_KEY + to);
  }

  /** Cuts the directed link `from` → `to`. */
  cutLink(from: PeerId, to: PeerId): void {
    this.#cut.add(from * LINK_KEY + to);
  }

  /** Splits `ids` into the groups `sides` (messages cross no side boundary). */
  split(sides: readonly (readonly PeerId[])[]): void {
    for (let i = 0; i < sides.length; i++) {
      for (let j = 0; j < sides.length; j++) {
        if (i === j) continue;
        for (const a of sides[i]) for (const b of sides[j]) this.cutLink(a, b);
      }
    }
  }

  /** Removes every partition. */
  heal(): void {
    this.#cut.clear();
  }

  /** A delivery delay in time units: short and jittered, sometimes long (reordering). */
  drawDelay(random: SimRandom): number {
    const f = this.faults;
    let delay = 1 + random.int(f.delayMax);
    if (f.spikeRate > 0 && random.chance(f.spikeRate)) delay += random.int(f.spikeMax);
    return delay;
  }
}

const LINK_KEY = 1 << 16;
