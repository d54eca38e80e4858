/**
 * Legal requests at the contract's limits, sent during the fault test through the gateways, one
 * check per probe round with the three kinds in turn (about 1–2 MiB written per round):
 *
 * - `put-get`: a Put of a 4,096-byte key with a 1,048,576-byte value, then a linearizable Get
 *   that must return it byte for byte;
 * - `append-to-limit`: a 1,048,575-byte Put, a 1-byte Append whose answer must be a length of
 *   exactly 1,048,576, a second 1-byte Append that must be INVALID_ARGUMENT, and a Get that must
 *   show the 1,048,576 bytes unchanged;
 * - `cas`: a 1 MiB Put, then a CompareAndSwap whose 1 MiB `expected` matches it and whose 1 MiB
 *   `value` replaces it, which must succeed, and a Get that must return the new value.
 *
 * A check ends `ok` (every step answered, every answer right), `unknown` (a step got an answer a
 * fault explains — UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, an expired session — so
 * the rest could not be judged), or `wrong` (an answer the contract rules out: a read that does
 * not show an acknowledged write, an over-limit Append that is not refused with
 * INVALID_ARGUMENT, INVALID_ARGUMENT on a legal request, a compare-and-swap that does not match
 * the value just written, INTERNAL or DATA_LOSS). Keys are distinct per round
 * (`pb/<round>/<kind>/` padded to 4,096 bytes) and deleted at the end of their check.
 *
 * @module
 */
import { type GetResult, type TinyKvClient, TinyKvError } from "@tinykv/client";
import { patternBytes } from "../_harness/bytes.ts";

export { patternBytes };

/** The contract's largest key (docs/design.md "Limits and bad input"). */
export const KEY_BYTES_MAX = 4096;
/** The contract's largest value by default (`storage.value_bytes_max`). */
export const VALUE_BYTES_MAX = 1024 * 1024;
/** How long one call of a check may take, retries included: a 1 MiB write is slow under faults. */
export const BOUNDARY_CALL_DEADLINE_MS = 10_000;

/** The checks, sent in this order round after round. */
export const BOUNDARY_KINDS = ["put-get", "append-to-limit", "cas"] as const;
/** One kind of check. */
export type BoundaryKind = (typeof BOUNDARY_KINDS)[number];

/** How a check ended; `code` names the status that left it unknown. */
export type BoundaryOutcome =
  | { readonly kind: "ok" }
  | { readonly kind: "unknown"; readonly code: string; readonly why: string }
  | { readonly kind: "wrong"; readonly why: string };

/** One step of a check: its answer, or why it cannot be judged, or why it is wrong. */
type Step<T> =
  | { readonly kind: "ok"; readonly value: T }
  | {
    readonly kind: "unknown";
    readonly code: string;
    readonly why: string;
    /** Whether the request may have taken effect. */
    readonly mayHaveApplied: boolean;
  }
  | { readonly kind: "wrong"; readonly why: string };

/** A step that ends its check early. */
type Failure = Exclude<Step<never>, { kind: "ok" }>;

const CALL = { deadlineMs: BOUNDARY_CALL_DEADLINE_MS };

/** The calls the checks make: {@linkcode TinyKvClient}'s (a fake in unit tests). */
export type BoundaryClient = Pick<
  TinyKvClient,
  "put" | "get" | "append" | "compareAndSwap" | "delete"
>;

/** What the checks saw over a run. */
export class BoundaryReport {
  readonly ok: Record<BoundaryKind, number> = { "put-get": 0, "append-to-limit": 0, "cas": 0 };
  readonly unknown: Record<BoundaryKind, number> = {
    "put-get": 0,
    "append-to-limit": 0,
    "cas": 0,
  };
  /** Unknown checks by the status that left them unknown. */
  readonly unknownCodes = new Map<string, number>();
  /** Wrong answers, described; each fails the run. */
  readonly wrong: string[] = [];

  /** Counts `outcome` of a check of `kind` in round `round`. */
  add(kind: BoundaryKind, round: number, outcome: BoundaryOutcome): void {
    switch (outcome.kind) {
      case "ok":
        this.ok[kind]++;
        return;
      case "unknown":
        this.unknown[kind]++;
        this.unknownCodes.set(outcome.code, (this.unknownCodes.get(outcome.code) ?? 0) + 1);
        return;
      case "wrong":
        this.wrong.push(`legal boundary probe ${round} (${kind}): ${outcome.why}`);
        return;
      default: {
        const never: never = outcome;
        throw new Error(`Unknown boundary outcome ${JSON.stringify(never)}`);
      }
    }
  }

  /** Checks that ended ok, all kinds together. */
  get okTotal(): number {
    return BOUNDARY_KINDS.reduce((sum, kind) => sum + this.ok[kind], 0);
  }

  /** Checks that ended unknown, all kinds together. */
  get unknownTotal(): number {
    return BOUNDARY_KINDS.reduce((sum, kind) => sum + this.unknown[kind], 0);
  }
}

/** The key of round `round`'s check of `kind`: `pb/<round>/<kind>/` padded to 4,096 bytes. */
export function boundaryKey(round: number, kind: BoundaryKind): string {
  return `pb/${round}/${kind}/`.padEnd(KEY_BYTES_MAX, "k");
}

/** How a read differs from `expected`, or undefined when it holds exactly those bytes. */
export function readDifference(got: GetResult, expected: Uint8Array): string | undefined {
  if (!got.found) return "no value (the key is absent)";
  const value = got.value;
  const shorter = Math.min(value.length, expected.length);
  let i = 0;
  while (i < shorter && value[i] === expected[i]) i++;
  if (i === shorter && value.length === expected.length) return undefined;
  if (i === shorter) {
    return `${value.length} bytes (expected ${expected.length}), a prefix or extension`;
  }
  return `${value.length} bytes (expected ${expected.length}) differing first at byte ${i} ` +
    `(${value[i]}, expected ${expected[i]})`;
}

/**
 * The step a legal request that threw `error` makes: a status a fault explains is unknown,
 * INVALID_ARGUMENT (the request is legal), INTERNAL and DATA_LOSS are wrong.
 */
export function legalFailure(what: string, error: unknown): Failure {
  if (!(error instanceof TinyKvError)) {
    return { kind: "wrong", why: `${what} threw something other than a client error: ${error}` };
  }
  switch (error.code) {
    case "invalidArgument":
    case "internal":
    case "dataLoss":
    case "unauthenticated":
    case "permissionDenied":
    case "unimplemented":
      return {
        kind: "wrong",
        why: `${what} got ${error.code} on a legal request: ${error.message}`,
      };
    case "unavailable":
    case "deadlineExceeded":
    case "resourceExhausted":
    case "failedPrecondition":
    case "cancelled":
    case "outOfRange":
      return {
        kind: "unknown",
        code: error.code,
        why: `${what}: ${error.code}: ${error.message}`,
        mayHaveApplied: error.outcomeUnknown,
      };
    default: {
      const never: never = error.code;
      throw new Error(`Unknown client error code ${JSON.stringify(never)}`);
    }
  }
}

async function attempt<T>(what: string, call: () => Promise<T>): Promise<Step<T>> {
  try {
    return { kind: "ok", value: await call() };
  } catch (error) {
    return legalFailure(what, error);
  }
}

/** A step that ended the check early, as the check's outcome. */
function stopped(step: Failure): Exclude<BoundaryOutcome, { kind: "ok" }> {
  return step.kind === "wrong" ? step : { kind: "unknown", code: step.code, why: step.why };
}

/** Runs round `round`'s check of `kind` through `client`, then deletes its key. */
export async function checkBoundary(
  client: BoundaryClient,
  options: { round: number; kind: BoundaryKind },
): Promise<BoundaryOutcome> {
  const key = boundaryKey(options.round, options.kind);
  const seed = options.round * BOUNDARY_KINDS.length + BOUNDARY_KINDS.indexOf(options.kind);
  try {
    switch (options.kind) {
      case "put-get":
        return await checkPutGet(client, key, seed);
      case "append-to-limit":
        return await checkAppendToLimit(client, key, seed);
      case "cas":
        return await checkCompareAndSwap(client, key, seed);
      default: {
        const never: never = options.kind;
        throw new Error(`Unknown boundary kind ${JSON.stringify(never)}`);
      }
    }
  } finally {
    await client.delete(key, CALL).catch(() => {});
  }
}

/** Put 1 MiB under a 4,096-byte key, then a linearizable Get must return it byte for byte. */
async function checkPutGet(
  client: BoundaryClient,
  key: string,
  seed: number,
): Promise<BoundaryOutcome> {
  const value = patternBytes(VALUE_BYTES_MAX, seed);
  const put = await attempt("the 1 MiB put", () => client.put(key, value, CALL));
  if (put.kind === "wrong") return put;
  const got = await attempt("the get after the put", () => client.get(key, CALL));
  if (got.kind !== "ok") return stopped(got);
  const difference = readDifference(got.value, value);
  if (put.kind === "ok") {
    return difference === undefined ? { kind: "ok" } : {
      kind: "wrong",
      why: `a linearizable get after the acknowledged 1 MiB put returned ${difference}`,
    };
  }
  // The put's outcome is unknown: the get may show it or not, but nothing else.
  if (!got.value.found) return stopped(put);
  if (difference !== undefined || !put.mayHaveApplied) {
    return {
      kind: "wrong",
      why: `after a put that ${put.mayHaveApplied ? "may have applied" : "certainly failed"} ` +
        `(${put.why}) a linearizable get returned ${difference ?? "its value"}`,
    };
  }
  return stopped(put);
}

/**
 * A 1,048,575-byte value, a 1-byte Append to exactly the limit (its answer must be 1,048,576),
 * a 1-byte Append past it (INVALID_ARGUMENT), and a Get showing the 1,048,576 bytes unchanged.
 */
async function checkAppendToLimit(
  client: BoundaryClient,
  key: string,
  seed: number,
): Promise<BoundaryOutcome> {
  const base = patternBytes(VALUE_BYTES_MAX - 1, seed);
  const last = new Uint8Array([0x2a]);
  const put = await attempt("the 1,048,575-byte put", () => client.put(key, base, CALL));
  if (put.kind !== "ok") return stopped(put);
  const append = await attempt("the append to the limit", () => client.append(key, last, CALL));
  if (append.kind !== "ok") return stopped(append);
  if (append.value !== VALUE_BYTES_MAX) {
    return {
      kind: "wrong",
      why: `the 1-byte append to a 1,048,575-byte value answered length ${append.value}, ` +
        `expected ${VALUE_BYTES_MAX}`,
    };
  }
  const over = await overLimitAppend(client, key);
  if (over.kind === "wrong") return over;
  const full = new Uint8Array(VALUE_BYTES_MAX);
  full.set(base);
  full.set(last, base.length);
  const got = await attempt("the get after the appends", () => client.get(key, CALL));
  if (got.kind !== "ok") return stopped(got);
  const difference = readDifference(got.value, full);
  if (difference !== undefined) {
    return {
      kind: "wrong",
      why: `after an append to exactly the limit and an append past it (${over.kind}) a ` +
        `linearizable get returned ${difference}`,
    };
  }
  return over.kind === "refused" ? { kind: "ok" } : over;
}

/** A 1-byte Append to a value at the limit: it must be refused with INVALID_ARGUMENT. */
async function overLimitAppend(
  client: BoundaryClient,
  key: string,
): Promise<{ kind: "refused" } | Exclude<BoundaryOutcome, { kind: "ok" }>> {
  try {
    const length = await client.append(key, new Uint8Array([0x21]), CALL);
    return {
      kind: "wrong",
      why: `a 1-byte append to a value of ${VALUE_BYTES_MAX} bytes was accepted (length ${length})`,
    };
  } catch (error) {
    if (error instanceof TinyKvError && error.code === "invalidArgument") {
      return { kind: "refused" };
    }
    // INVALID_ARGUMENT is the one right answer here; INTERNAL and DATA_LOSS stay wrong.
    return stopped(legalFailure("the append past the limit", error));
  }
}

/**
 * A 1 MiB value, then a CompareAndSwap with that 1 MiB value as `expected` and another 1 MiB
 * `value`: it must succeed, and a Get must return the new value.
 */
async function checkCompareAndSwap(
  client: BoundaryClient,
  key: string,
  seed: number,
): Promise<BoundaryOutcome> {
  const before = patternBytes(VALUE_BYTES_MAX, seed);
  const after = patternBytes(VALUE_BYTES_MAX, seed + 1_000_003);
  const put = await attempt("the 1 MiB put", () => client.put(key, before, CALL));
  if (put.kind !== "ok") return stopped(put);
  const swapped = await attempt(
    "the 1 MiB compare-and-swap",
    () => client.compareAndSwap(key, { expected: before }, { value: after, ...CALL }),
  );
  if (swapped.kind !== "ok") return stopped(swapped);
  if (!swapped.value.succeeded) {
    const current = { found: swapped.value.found, value: swapped.value.current };
    return {
      kind: "wrong",
      why: "a compare-and-swap whose 1 MiB `expected` is the value just put did not succeed; " +
        `it reports the current value as ${readDifference(current, before) ?? "equal to it"}`,
    };
  }
  const got = await attempt("the get after the compare-and-swap", () => client.get(key, CALL));
  if (got.kind !== "ok") return stopped(got);
  const difference = readDifference(got.value, after);
  return difference === undefined ? { kind: "ok" } : {
    kind: "wrong",
    why: `a linearizable get after the acknowledged compare-and-swap returned ${difference}`,
  };
}
