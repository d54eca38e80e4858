/**
 * Every limit of a client request (docs/design.md "Limits and bad input"), defined once, and the one
 * check that enforces them. The gateway checks each call with {@linkcode checkRequest} before
 * routing it, the kvnode checks each item with it before proposing or reading, and the state
 * machine checks each command with it again when it applies (with the value limit the leader
 * stamped into the command, so every replica decides alike). A rejection names the field and the
 * limit, so the caller can answer `INVALID_ARGUMENT` with its message.
 *
 * @module
 */
import { compareBytes } from "./bytes.ts";

/** The fewest bytes a key may have: the empty key is not a key. */
export const KEY_BYTES_MIN = 1;
/** The most bytes a key may have (4 KiB). */
export const KEY_BYTES_MAX = 4096;
/** The default for the most bytes a value may have (1 MiB); `storage.value_bytes_max` sets it. */
export const VALUE_BYTES_MAX = 1024 * 1024;
/** The longest `client_id`, in UTF-8 bytes. */
export const CLIENT_ID_BYTES_MAX = 128;
/** The most keys one scan may ask for. */
export const SCAN_LIMIT_MAX = 10_000;
/** The longest trace id a client may give a request (metadata `tinykv-trace`), in characters. */
export const TRACE_ID_CHARS_MAX = 64;
/** Keys and values in one scan answer before it is cut (at least one pair is always returned). */
export const SCAN_BYTES_MAX = 1024 * 1024;
/**
 * Bytes a stored command takes besides its key, its values and its client id: the protobuf
 * framing of every field, the seqs and the leader's stamps, with room to spare.
 */
export const COMMAND_OVERHEAD_BYTES = 256;

/**
 * The most bytes one command can take in the Raft log when values may have `valueBytesMax` bytes:
 * a compare-and-swap with a key of {@linkcode KEY_BYTES_MAX}, an `expected` and a `value` of the
 * limit each, and the longest client id. Every message that carries a command must have room for
 * this much (the config refuses a value limit for which it does not).
 */
export function commandBytesMax(valueBytesMax: number): number {
  return KEY_BYTES_MAX + 2 * valueBytesMax + CLIENT_ID_BYTES_MAX + COMMAND_OVERHEAD_BYTES;
}

/** The most compares of a Txn, and the most operations in each of its branches (etcd's default). */
export const TXN_OPS_MAX = 128;
/** What a Txn's size counts for each compare and operation besides its key and value (framing). */
export const TXN_ENTRY_OVERHEAD_BYTES = 16;

/**
 * The most bytes a Txn may carry: its keys and values, {@linkcode TXN_ENTRY_OVERHEAD_BYTES} per
 * compare and operation — what the largest compare-and-swap carries (a key and two values), so a
 * Txn's command is never larger than {@linkcode commandBytesMax}. The values a Txn's branch
 * returns are bounded the same way (2 × `valueBytesMax`) when it applies.
 */
export function txnBytesMax(valueBytesMax: number): number {
  return KEY_BYTES_MAX + 2 * valueBytesMax;
}

/**
 * The outcome of {@linkcode validateKey} and {@linkcode validateValue}. A rejection names the
 * limit it hit, so a gateway can answer `INVALID_ARGUMENT` with that message.
 */
export type SizeCheck =
  | { kind: "ok" }
  | { kind: "tooShort"; byteLength: number; limit: number; limitName: string; message: string }
  | { kind: "tooLong"; byteLength: number; limit: number; limitName: string; message: string };

/**
 * Checks that `key` has {@linkcode KEY_BYTES_MIN} to {@linkcode KEY_BYTES_MAX} bytes. `field`
 * names the field in the message (default `key`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { validateKey } from "./key_limits.ts";
 *
 * const result = validateKey(new Uint8Array(0));
 * assert(result.kind === "tooShort");
 * ```
 */
export function validateKey(key: Uint8Array, field = "key"): SizeCheck {
  const byteLength = key.byteLength;
  if (byteLength < KEY_BYTES_MIN) {
    return {
      kind: "tooShort",
      byteLength,
      limit: KEY_BYTES_MIN,
      limitName: "KEY_BYTES_MIN",
      message: `Field "${field}" has ${byteLength} bytes: the minimum is ${KEY_BYTES_MIN} ` +
        "(KEY_BYTES_MIN)",
    };
  }
  if (byteLength > KEY_BYTES_MAX) {
    return {
      kind: "tooLong",
      byteLength,
      limit: KEY_BYTES_MAX,
      limitName: "KEY_BYTES_MAX",
      message: `Field "${field}" has ${byteLength} bytes: the maximum is ${KEY_BYTES_MAX} ` +
        "(KEY_BYTES_MAX)",
    };
  }
  return { kind: "ok" };
}

/** Options for {@linkcode validateValue}. */
export interface ValidateValueOptions {
  /** The most bytes a value may have; defaults to {@linkcode VALUE_BYTES_MAX}. */
  valueBytesMax?: number;
  /** The field named in the message; default `value`. */
  field?: string;
}

/**
 * Checks that `value` has at most `valueBytesMax` bytes (default {@linkcode VALUE_BYTES_MAX}).
 * An empty value is allowed.
 *
 * @throws {RangeError} If `valueBytesMax` is not a non-negative safe integer.
 */
export function validateValue(value: Uint8Array, options: ValidateValueOptions = {}): SizeCheck {
  const limit = options.valueBytesMax ?? VALUE_BYTES_MAX;
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new RangeError(`Cannot use valueBytesMax ${limit}: expected a non-negative safe integer`);
  }
  return checkLength(value.byteLength, limit, options.field ?? "value");
}

/**
 * Checks that a value of `byteLength` bytes (an append's result, say) fits `valueBytesMax`;
 * `field` names the field in the message.
 */
export function checkLength(byteLength: number, valueBytesMax: number, field: string): SizeCheck {
  if (byteLength > valueBytesMax) {
    return {
      kind: "tooLong",
      byteLength,
      limit: valueBytesMax,
      limitName: "storage.value_bytes_max",
      message: `Field "${field}" has ${byteLength} bytes: the maximum is ${valueBytesMax} ` +
        "(storage.value_bytes_max)",
    };
  }
  return { kind: "ok" };
}

/** The exactly-once fields of a mutation (docs/design.md "Exactly-once with many requests in flight"). */
export interface SessionFields {
  readonly clientId: string;
  readonly seq: number;
  readonly ackSeq: number;
}

/** A mutation as it travels (the shapes of kv.proto's requests). */
export interface MutationFields extends SessionFields {
  readonly key: Uint8Array;
}

/** A Txn (kv.proto `TxnRequest`): compares and two branches of operations, one session. */
export interface TxnFields extends SessionFields {
  readonly compares: ReadonlyArray<{
    readonly key: Uint8Array;
    readonly result: number;
    readonly target: number;
    readonly value: Uint8Array;
  }>;
  readonly success: ReadonlyArray<TxnOpFields>;
  readonly failure: ReadonlyArray<TxnOpFields>;
}

/** One operation of a Txn (kv.proto `TxnOp`; kind 1 GET, 2 PUT, 3 DELETE). */
export interface TxnOpFields {
  readonly kind: number;
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

/** A scan's range and limit (kv.proto `ScanRequest`). */
export interface ScanFields {
  readonly start: Uint8Array;
  readonly end: Uint8Array;
  readonly limit: number;
}

/**
 * One request as the client API and the kvnode data path carry it: exactly one operation field
 * set (kv.proto's request messages; kvnode.proto's `RequestItem` has this shape).
 */
export interface RequestFields {
  readonly get?: { readonly key: Uint8Array };
  readonly put?: MutationFields & { readonly value: Uint8Array };
  readonly delete?: MutationFields;
  readonly append?: MutationFields & { readonly value: Uint8Array };
  readonly compareAndSwap?: MutationFields & {
    readonly expected: Uint8Array;
    readonly value: Uint8Array;
  };
  readonly scan?: ScanFields;
  readonly txn?: TxnFields;
}

/** Why a request breaks a limit: a message naming the field and the limit. */
export interface LimitViolation {
  readonly field: string;
  readonly message: string;
}

const encoder = new TextEncoder();

/**
 * Checks one request against every limit: exactly one operation; the key (1 B – 4 KiB); each value
 * (`value`, `expected`) against `valueBytesMax`; the session fields; a scan's bounds and limit.
 * Returns the first violation, or undefined when the request is within every limit.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkRequest } from "./key_limits.ts";
 *
 * const put = { key: new Uint8Array(4097), value: new Uint8Array(1), clientId: "", seq: 0, ackSeq: 0 };
 * assert.equal(checkRequest({ put }, { valueBytesMax: 1024 })?.field, "key");
 * ```
 */
export function checkRequest(
  request: RequestFields,
  limits: { readonly valueBytesMax: number },
): LimitViolation | undefined {
  const { get, put, delete: del, append, compareAndSwap: cas, scan, txn } = request;
  const present = [get, put, del, append, cas, scan, txn].filter((op) => op !== undefined).length;
  if (present !== 1) {
    return { field: "op", message: `Request has ${present} operations: expected 1` };
  }
  if (scan !== undefined) return checkScan(scan);
  if (txn !== undefined) return checkTxn(txn, limits.valueBytesMax);
  if (get !== undefined) return violation(validateKey(get.key), "key");
  const mutation = (put ?? del ?? append ?? cas)!;
  const values: Array<[string, Uint8Array]> = cas !== undefined
    ? [["expected", cas.expected], ["value", cas.value]]
    : put !== undefined
    ? [["value", put.value]]
    : append !== undefined
    ? [["value", append.value]]
    : [];
  return checkMutation(mutation, values, limits.valueBytesMax);
}

function checkMutation(
  mutation: MutationFields,
  values: ReadonlyArray<[string, Uint8Array]>,
  valueBytesMax: number,
): LimitViolation | undefined {
  const key = violation(validateKey(mutation.key), "key");
  if (key !== undefined) return key;
  for (const [field, value] of values) {
    const size = violation(validateValue(value, { valueBytesMax, field }), field);
    if (size !== undefined) return size;
  }
  return checkSession(mutation);
}

/**
 * Checks a Txn: at most {@linkcode TXN_OPS_MAX} compares and as many operations per branch, at
 * least one key in all; known compare results (0–3) and targets (0 VALUE, 1 EXISTS), and operation
 * kinds (1 GET, 2 PUT, 3 DELETE); every key 1 B – 4 KiB and every value within `valueBytesMax`; all
 * of it within {@linkcode txnBytesMax}; the session fields. The keys' shard is checked by whoever
 * knows the shard map (the gateway, then the shard when it applies).
 */
export function checkTxn(txn: TxnFields, valueBytesMax: number): LimitViolation | undefined {
  for (
    const [field, list] of [
      ["compares", txn.compares],
      ["success", txn.success],
      ["failure", txn.failure],
    ] as const
  ) {
    if (list.length > TXN_OPS_MAX) {
      return {
        field,
        message: `Field "${field}" has ${list.length} entries: the maximum is ${TXN_OPS_MAX} ` +
          "(TXN_OPS_MAX)",
      };
    }
  }
  const entries = txn.compares.length + txn.success.length + txn.failure.length;
  if (entries === 0) {
    return { field: "compares", message: "Txn names no key: expected a compare or an operation" };
  }
  let bytes = 0;
  const entry = (
    field: string,
    key: Uint8Array,
    value: Uint8Array | undefined,
  ): LimitViolation | undefined => {
    bytes += key.length + (value?.length ?? 0) + TXN_ENTRY_OVERHEAD_BYTES;
    return violation(validateKey(key, `${field}.key`), `${field}.key`) ??
      (value === undefined ? undefined : violation(
        validateValue(value, { valueBytesMax, field: `${field}.value` }),
        `${field}.value`,
      ));
  };
  for (const [i, compare] of txn.compares.entries()) {
    const field = `compares[${i}]`;
    if (!Number.isInteger(compare.result) || compare.result < 0 || compare.result > 3) {
      return { field, message: `Field "${field}.result" is ${compare.result}: expected 0 to 3` };
    }
    if (compare.target !== 0 && compare.target !== 1) {
      return {
        field,
        message: `Field "${field}.target" is ${compare.target}: expected 0 (VALUE) or 1 (EXISTS)`,
      };
    }
    const bad = entry(field, compare.key, compare.value);
    if (bad !== undefined) return bad;
  }
  for (const [name, ops] of [["success", txn.success], ["failure", txn.failure]] as const) {
    for (const [i, op] of ops.entries()) {
      const field = `${name}[${i}]`;
      if (op.kind !== 1 && op.kind !== 2 && op.kind !== 3) {
        return {
          field,
          message: `Field "${field}.kind" is ${op.kind}: expected 1 (GET), 2 (PUT) or 3 (DELETE)`,
        };
      }
      const bad = entry(field, op.key, op.kind === 2 ? op.value : undefined);
      if (bad !== undefined) return bad;
    }
  }
  const max = txnBytesMax(valueBytesMax);
  if (bytes > max) {
    return {
      field: "txn",
      message: `Txn carries ${bytes} bytes of keys and values (${TXN_ENTRY_OVERHEAD_BYTES} more ` +
        `for each of its ${entries} compares and operations): the maximum is ${max} ` +
        "(2 × storage.value_bytes_max + KEY_BYTES_MAX)",
    };
  }
  return checkSession(txn);
}

/**
 * Checks the exactly-once fields: no `client_id` means no `seq` and `ack_seq` (the gateway gives
 * the request its own session); with one, `client_id` has at most {@linkcode CLIENT_ID_BYTES_MAX}
 * bytes, `seq` is positive and `ack_seq` is below it.
 */
export function checkSession(fields: SessionFields): LimitViolation | undefined {
  const { clientId, seq, ackSeq } = fields;
  if (clientId === "") {
    if (seq === 0 && ackSeq === 0) return undefined;
    return { field: "client_id", message: 'Fields "seq" and "ack_seq" need a "client_id"' };
  }
  const idBytes = encoder.encode(clientId).length;
  if (idBytes > CLIENT_ID_BYTES_MAX) {
    return {
      field: "client_id",
      message: `Field "client_id" has ${idBytes} bytes: the maximum is ${CLIENT_ID_BYTES_MAX} ` +
        "(CLIENT_ID_BYTES_MAX)",
    };
  }
  if (!Number.isSafeInteger(seq) || seq <= 0 || !(ackSeq < seq)) {
    return {
      field: "seq",
      message: `Field "seq" is ${seq} and "ack_seq" is ${ackSeq}: seq must be positive and ` +
        "greater than ack_seq",
    };
  }
  return undefined;
}

/**
 * Checks a scan: `limit` 1 to {@linkcode SCAN_LIMIT_MAX}; `start` (empty for the beginning) and
 * `end` (empty for the end of the key space) at most {@linkcode KEY_BYTES_MAX} bytes each; and
 * `start` not after a non-empty `end`.
 */
export function checkScan(scan: ScanFields): LimitViolation | undefined {
  if (!Number.isSafeInteger(scan.limit) || scan.limit < 1 || scan.limit > SCAN_LIMIT_MAX) {
    return {
      field: "limit",
      message: `Field "limit" is ${scan.limit}: expected 1 to ${SCAN_LIMIT_MAX} (SCAN_LIMIT_MAX)`,
    };
  }
  for (const [field, bound] of [["start", scan.start], ["end", scan.end]] as const) {
    if (bound.byteLength > KEY_BYTES_MAX) return violation(validateKey(bound, field), field);
  }
  if (scan.end.length > 0 && compareBytes(scan.start, scan.end) > 0) {
    return { field: "start", message: 'Field "start" is after "end": expected start <= end' };
  }
  return undefined;
}

function violation(check: SizeCheck, field: string): LimitViolation | undefined {
  return check.kind === "ok" ? undefined : { field, message: check.message };
}

/**
 * Why `id` cannot name a traced request, or undefined when it can: 1 to
 * {@linkcode TRACE_ID_CHARS_MAX} characters of `A-Z a-z 0-9 . _ -` (it goes into every log line
 * about the request, and `tinykv trace` looks it up).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkTraceId } from "./key_limits.ts";
 *
 * assert.equal(checkTraceId("t-5f2a9c01"), undefined);
 * assert.match(checkTraceId("a b")!, /A-Z a-z 0-9/);
 * ```
 */
export function checkTraceId(id: string): string | undefined {
  if (id.length >= 1 && id.length <= TRACE_ID_CHARS_MAX && /^[A-Za-z0-9._-]+$/.test(id)) {
    return undefined;
  }
  return `Trace id ${JSON.stringify(id.slice(0, TRACE_ID_CHARS_MAX + 1))} is not 1 to ` +
    `${TRACE_ID_CHARS_MAX} characters of A-Z a-z 0-9 . _ - (TRACE_ID_CHARS_MAX)`;
}
