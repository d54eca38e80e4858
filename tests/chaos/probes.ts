/**
 * Bad-input probes during the fault test: every few seconds a key gets a known value, then a
 * gateway is sent requests it must refuse (a value over the size limit, a session with `seq` 0,
 * a key over the key limit, a compare-and-swap that would match but carries a value over the limit),
 * and a linearizable read must still show the known value. A refusal other than
 * INVALID_ARGUMENT, an accepted bad request, or a changed value is a problem. Answers of
 * UNAVAILABLE (the gateway is down, a fault at work) leave the probe uncounted.
 *
 * Each round then sends legal requests at the limits ({@linkcode checkBoundary}: a 1 MiB value
 * under a 4,096-byte key, an append to exactly 1 MiB and one byte past it, a compare-and-swap of
 * two 1 MiB values), one kind per round in turn, into {@linkcode Probes.boundary}.
 *
 * @module
 */
import { text, TinyKvClient } from "@tinykv/client";
import { KVService } from "@tinykv/proto/tinykv/v1";
import {
  type ClientSecurity,
  createGrpcClient,
  type GrpcClient,
  type RpcResult,
  unaryCaller,
} from "@tinykv/rpc";
import { BOUNDARY_KINDS, BoundaryReport, checkBoundary } from "./boundary.ts";
import { CALL_DEADLINE_MS } from "./workloads.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const VALUE_BYTES_MAX = 1024 * 1024;
const KEY_BYTES_MAX = 4096;

/** What the probes saw. */
export interface ProbeReport {
  /** Bad requests refused with INVALID_ARGUMENT and the state seen untouched afterwards. */
  refused: number;
  /** Probes not counted because a call could not get through. */
  skipped: number;
  problems: string[];
}

/** Sends probes every `intervalMs` until stopped. */
export class Probes {
  readonly report: ProbeReport = { refused: 0, skipped: 0, problems: [] };
  /** What the legal requests at the limits saw. */
  readonly boundary: BoundaryReport = new BoundaryReport();
  readonly #gateways: GrpcClient<typeof KVService>[];
  readonly #client: TinyKvClient;
  readonly #intervalMs: number;
  #stopped = false;
  #done: Promise<void> = Promise.resolve();

  constructor(endpoints: readonly string[], intervalMs: number, security: ClientSecurity = {}) {
    this.#gateways = endpoints.map((address) =>
      createGrpcClient(KVService, address, { maxMessageBytes: 8 * 1024 * 1024, ...security })
    );
    this.#client = TinyKvClient.connect({ endpoints, deadlineMs: CALL_DEADLINE_MS, security });
    this.#intervalMs = intervalMs;
  }

  start(): void {
    this.#done = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
    this.#client.close();
    for (const gateway of this.#gateways) gateway.close();
  }

  async #run(): Promise<void> {
    for (let n = 0; !this.#stopped; n++) {
      await new Promise((resolve) => setTimeout(resolve, this.#intervalMs));
      try {
        await this.#probe(n);
      } catch (error) {
        this.report.problems.push(`probe ${n}: ${error}`);
      }
      const kind = BOUNDARY_KINDS[n % BOUNDARY_KINDS.length];
      try {
        this.boundary.add(kind, n, await checkBoundary(this.#client, { round: n, kind }));
      } catch (error) {
        this.report.problems.push(`legal boundary probe ${n} (${kind}): ${error}`);
      }
    }
  }

  async #probe(n: number): Promise<void> {
    const key = `p/${n}`;
    const known = `known-${n}`;
    try {
      await this.#client.put(key, known);
    } catch {
      this.report.skipped++;
      return;
    }
    const gateway = this.#gateways[n % this.#gateways.length];
    const session = { clientId: `probe-${n}`, seq: 1, ackSeq: 0 };
    const bad: Array<[string, () => Promise<RpcResult<unknown>>]> = [
      ["a value over the limit", () =>
        unaryCaller(gateway, "Put")({
          key: enc(key),
          value: new Uint8Array(VALUE_BYTES_MAX + 1),
          ...session,
        }, { deadlineMs: CALL_DEADLINE_MS })],
      ["seq 0 with a client id", () =>
        unaryCaller(gateway, "Append")({
          key: enc(key),
          value: enc("bad"),
          ...session,
          seq: 0,
        }, { deadlineMs: CALL_DEADLINE_MS })],
      ["a key over the limit", () =>
        unaryCaller(gateway, "Put")({
          key: enc(key.padEnd(KEY_BYTES_MAX + 1, "x")),
          value: enc("bad"),
          ...session,
        }, { deadlineMs: CALL_DEADLINE_MS })],
      [
        "a compare-and-swap that would match, with a value over the limit",
        () =>
          unaryCaller(gateway, "CompareAndSwap")({
            key: enc(key),
            expected: enc(known),
            expectAbsent: false,
            value: new Uint8Array(VALUE_BYTES_MAX + 1),
            delete: false,
            ...session,
          }, { deadlineMs: CALL_DEADLINE_MS }),
      ],
    ];
    let refused = 0;
    for (const [what, send] of bad) {
      const answer = await send();
      if (answer.kind === "unavailable" || answer.kind === "deadlineExceeded") continue;
      if (answer.kind !== "invalidArgument") {
        this.report.problems.push(
          `probe ${n} (${what}) on "${key}": expected INVALID_ARGUMENT, got ${answer.kind}` +
            ("message" in answer ? `: ${answer.message}` : ""),
        );
        continue;
      }
      refused++;
    }
    let value: string | undefined;
    try {
      const got = await this.#client.get(key);
      value = got.found ? text(got.value) : "(absent)";
    } catch {
      this.report.skipped++;
      return;
    }
    if (value !== known) {
      this.report.problems.push(
        `probe ${n}: "${key}" held "${known}" before the bad requests, "${value}" after`,
      );
      return;
    }
    this.report.refused += refused;
  }
}
