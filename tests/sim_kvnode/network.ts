/**
 * The simulated network between kvnode drivers: every envelope a driver flushes gets a delivery
 * slot (a seeded delay, so envelopes reorder), may be lost or duplicated, and is dropped at
 * delivery when a partition cuts its link. Envelopes are deep-copied per delivery, as a wire would.
 * Node pings (which carry nothing but their sender) are delayed and lost at the same rates, drawn
 * from a generator of their own, so that they do not change the envelopes' draws.
 *
 * @module
 */
import type { Envelope } from "../../services/kvnode/driver.ts";
import type { SimRandom } from "../sim/random.ts";

/** Fault rates of a run's network. */
export interface NetworkFaults {
  /** Probability that an envelope is lost. */
  loss: number;
  /** Probability that an envelope is delivered twice. */
  duplicate: number;
  /** The largest delay, in slots (at least 1). */
  delaySlotsMax: number;
}

/** One envelope on its way. */
export interface InFlight {
  readonly at: number;
  readonly order: number;
  readonly from: string;
  /** The sender's incarnation (a restarted node does not hear of its predecessor's snapshots). */
  readonly fromIncarnation: number;
  readonly to: string;
  readonly envelope: Envelope;
  /** Lost on the way: it is dropped when due (so a lost snapshot is reported as failed). */
  readonly lost: boolean;
}

/** A node ping on its way. */
export interface PingInFlight {
  readonly at: number;
  readonly from: string;
  readonly to: string;
}

/** The network. Time is counted in slots (see `simulation.ts`). */
export class SimNetwork {
  readonly #random: SimRandom;
  readonly #pingRandom: SimRandom;
  faults: NetworkFaults;
  /** Links cut, as `from>to`. */
  readonly #cut = new Set<string>();
  #queue: InFlight[] = [];
  /** Pings in the order they are due (a ping sent later may be due earlier: sorted on insert). */
  #pings: PingInFlight[] = [];
  #order = 0;
  sent = 0;
  lost = 0;

  constructor(random: SimRandom, faults: NetworkFaults, pingRandom: SimRandom) {
    this.#random = random;
    this.faults = faults;
    this.#pingRandom = pingRandom;
  }

  /** Queues a node ping sent at `now`, unless it is lost. */
  ping(now: number, from: string, to: string): void {
    if (this.#pingRandom.chance(this.faults.loss)) return;
    const at = now + 1 + this.#pingRandom.int(this.faults.delaySlotsMax);
    let i = this.#pings.length;
    while (i > 0 && this.#pings[i - 1].at > at) i--;
    this.#pings.splice(i, 0, { at, from, to });
  }

  /** Takes the pings due at `now` whose link is up at delivery. */
  duePings(now: number): PingInFlight[] {
    let count = 0;
    while (count < this.#pings.length && this.#pings[count].at <= now) count++;
    return this.#pings.splice(0, count).filter((p) => !this.#cut.has(`${p.from}>${p.to}`));
  }

  /** Envelopes not yet delivered. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Queues an envelope sent at `now`. */
  send(
    now: number,
    from: { node: string; incarnation: number },
    to: string,
    envelope: Envelope,
  ): void {
    this.sent++;
    const lost = this.#random.chance(this.faults.loss);
    if (lost) this.lost++;
    const copies = !lost && this.#random.chance(this.faults.duplicate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const at = now + 1 + this.#random.int(this.faults.delaySlotsMax);
      this.#insert({
        at,
        order: this.#order++,
        from: from.node,
        fromIncarnation: from.incarnation,
        to,
        envelope,
        lost,
      });
    }
  }

  #insert(item: InFlight): void {
    let lo = 0;
    let hi = this.#queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const other = this.#queue[mid];
      if (other.at < item.at || (other.at === item.at && other.order < item.order)) lo = mid + 1;
      else hi = mid;
    }
    this.#queue.splice(lo, 0, item);
  }

  /** Takes the envelopes due at `now`, in order, with whether their link is up. */
  due(now: number): Array<InFlight & { cut: boolean }> {
    let count = 0;
    while (count < this.#queue.length && this.#queue[count].at <= now) count++;
    return this.#queue.splice(0, count).map((item) => ({
      ...item,
      envelope: structuredClone(item.envelope),
      cut: this.#cut.has(`${item.from}>${item.to}`),
    }));
  }

  /** Cuts the link from `from` to `to`. */
  cut(from: string, to: string): void {
    this.#cut.add(`${from}>${to}`);
  }

  /** Whether any link is cut. */
  get partitioned(): boolean {
    return this.#cut.size > 0;
  }

  /** Restores every link. */
  heal(): void {
    this.#cut.clear();
  }
}
