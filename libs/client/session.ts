/**
 * {@linkcode ClientSession}: the exactly-once identity of one client (docs/design.md "Exactly-once
 * with many requests in flight"): a `client_id`, a `seq` per mutation, and `ack_seq` — the
 * highest seq at or below which every mutation has its answer, so servers may forget those.
 *
 * @module
 */

/** Sequence numbers handed out and not yet answered, beyond which `next()` refuses. */
export const SESSION_OUTSTANDING_MAX_DEFAULT = 10_000;

/** A client's session: unique id, increasing seqs, and the acknowledgement watermark. */
export class ClientSession {
  readonly clientId: string;
  readonly #outstandingMax: number;
  #lastSeq = 0;
  // Seqs handed out and not yet answered, in increasing order.
  readonly #outstanding: number[] = [];

  constructor(options: { clientId?: string; outstandingMax?: number } = {}) {
    this.clientId = options.clientId ?? `c-${crypto.randomUUID()}`;
    this.#outstandingMax = options.outstandingMax ?? SESSION_OUTSTANDING_MAX_DEFAULT;
  }

  /** Mutations waiting for an answer. */
  get outstanding(): number {
    return this.#outstanding.length;
  }

  /**
   * The next seq and the current `ack_seq` for a new mutation, or undefined when
   * `outstandingMax` mutations wait already. Every retry of the mutation reuses the same pair.
   */
  next(): { seq: number; ackSeq: number } | undefined {
    if (this.#outstanding.length >= this.#outstandingMax) return undefined;
    const ackSeq = this.ackSeq;
    const seq = ++this.#lastSeq;
    this.#outstanding.push(seq);
    return { seq, ackSeq };
  }

  /** Every seq at or below this one has its answer. */
  get ackSeq(): number {
    return this.#outstanding.length === 0 ? this.#lastSeq : this.#outstanding[0] - 1;
  }

  /** Records that `seq` has its final answer (success or a definite failure). */
  answered(seq: number): void {
    const at = this.#outstanding.indexOf(seq);
    if (at >= 0) this.#outstanding.splice(at, 1);
  }
}
