/**
 * etcd's v3 API on the gateway's client port, beside `tinykv.v1.KV`, so that etcdctl and etcd's
 * client libraries work against TinyKV. Every call is made of the gateway's own `tinykv.v1.KV`
 * handlers ({@linkcode kvHandlers}): the same limits, exactly-once sessions, routing and statuses.
 *
 * What maps how (docs/design.md "The etcd API" is the reference):
 * - `Range`: one key is a `Get` (linearizable unless `serializable`); a range or prefix pages
 *   through `Scan` (every shard, merged in key order), then applies `limit`, `keys_only`,
 *   `count_only` and the sort order; `count` is the number of keys in the whole range.
 * - `Put` is a `Put`; with `prev_kv`, a read and a compare-and-swap from that value, repeated until
 *   the swap matches, so the previous value returned is the one replaced.
 * - `DeleteRange`: one key is a `Delete` (with `prev_kv`, a compare-and-swap that deletes); a range
 *   is deleted key by key from a scan — not one atomic step.
 * - `Txn` whose compares and operations all name one key: read the key, evaluate the compares and
 *   run the chosen branch on that value, then make the change with one compare-and-swap from the
 *   value read (again from the new value when another write came between). Keys in different
 *   shards are FAILED_PRECONDITION; several keys of one shard are not supported yet.
 * - Revisions: TinyKV keeps no history and no cluster-wide revision. Every revision and version it
 *   reports is 1 (a key that exists), compares on them accept only 0 (absent), and whatever needs
 *   history (a past revision, `Compact` of history, revision filters) is UNIMPLEMENTED, as are
 *   leases and etcd's auth API.
 * - `Maintenance.Status` and `Cluster.MemberList` describe the gateways: each is a member.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";
import {
  type AlarmRequest,
  AlarmRequest_AlarmAction,
  ClusterService,
  type Compare,
  Compare_CompareResult,
  Compare_CompareTarget,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type KeyValue as EtcdKeyValue,
  KVService as EtcdKVService,
  MaintenanceService,
  type Member,
  type PutRequest as EtcdPutRequest,
  type PutResponse as EtcdPutResponse,
  type RangeRequest,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type RangeResponse,
  type RequestOp,
  type ResponseHeader,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
  WatchService,
} from "@tinykv/proto/etcdserverpb";
import type { KeyValue, KVService } from "@tinykv/proto/tinykv/v1";
import {
  bindService,
  type HandlerContext,
  type RpcFailure,
  rpcFailure,
  rpcOk,
  type RpcResult,
  type ServiceBinding,
  type ServiceHandlers,
  toServerError,
} from "@tinykv/rpc";
import { compareBytes, fnv1a32, SCAN_LIMIT_MAX } from "@tinykv/shard";

/** The version `Maintenance.Status` reports: the etcd API it speaks, and that it is TinyKV. */
export const ETCD_API_VERSION = "3.4.0+tinykv";
/** The revision, create revision, mod revision and version of every key TinyKV reports. */
export const REVISION = 1;
/** Attempts of a read-then-swap (`prev_kv`, a one-key `Txn`) before it gives up. */
export const SWAP_ATTEMPTS_MAX = 64;
/** Deletes of one range `DeleteRange` keeps in flight. */
const RANGE_DELETES_IN_FLIGHT = 16;
/** Room left in a message for everything but the keys and values. */
const MESSAGE_OVERHEAD_BYTES = 64 * 1024;

/** A gateway as `Cluster.MemberList` lists it. */
export interface GatewayMember {
  /** Its client API address, `host:port`. */
  readonly address: string;
}

/** Options of {@linkcode etcdServices}. */
export interface EtcdServiceOptions {
  /** The gateway's `tinykv.v1.KV` handlers (kv_service.ts `kvHandlers`). */
  readonly kv: ServiceHandlers<typeof KVService>;
  /** This gateway's client API address (its member id and name come from it). */
  readonly address: string;
  /** The gateways registered now (this one included once it is listed). */
  readonly members: () => readonly GatewayMember[];
  /** The cluster's id (from the shard map), when known. */
  readonly clusterId: () => string | undefined;
  /** The shard a key belongs to, when the shard map is known. */
  readonly shardOf: (key: Uint8Array) => number | undefined;
  /** The largest message the gateway sends (`rpc_server.max_message_bytes`). */
  readonly maxMessageBytes: number;
}

/**
 * A stable, non-zero id below 2^48 for a name: etcd's member and cluster ids are 64-bit numbers,
 * and TinyKV's protobuf numbers must be safe integers.
 */
export function idOf(name: string): number {
  const bytes = new TextEncoder().encode(name);
  const high = fnv1a32(bytes);
  const low = fnv1a32(new Uint8Array([...bytes, 0x2f])) & 0xffff;
  return high * 0x10000 + low || 1;
}

/** The etcd services of a gateway: KV, Watch, Maintenance, Cluster, and what TinyKV lacks. */
export function etcdServices(options: EtcdServiceOptions): ServiceBinding[] {
  const handlers = etcdHandlers(options);
  return [
    bindService(EtcdKVService, handlers.kv),
    bindService(WatchService, handlers.watch),
    bindService(MaintenanceService, handlers.maintenance),
    bindService(ClusterService, handlers.cluster),
    ...UNSUPPORTED.map(({ service, methods, why }) => unsupportedService(service, methods, why)),
  ];
}

/** The typed handlers of {@linkcode etcdServices}, callable without a gRPC server. */
export function etcdHandlers(options: EtcdServiceOptions): {
  kv: ServiceHandlers<typeof EtcdKVService>;
  watch: ServiceHandlers<typeof WatchService>;
  maintenance: ServiceHandlers<typeof MaintenanceService>;
  cluster: ServiceHandlers<typeof ClusterService>;
} {
  const memberId = idOf(options.address);
  const header = (): ResponseHeader => {
    const cluster = options.clusterId();
    return {
      clusterId: cluster === undefined ? 0 : idOf(cluster),
      memberId,
      revision: REVISION,
      raftTerm: 0,
    };
  };
  const kv = new EtcdKv(options, header);
  return {
    kv: {
      Range: (request, context) => kv.range(request, context),
      Put: (request, context) => kv.put(request, context),
      DeleteRange: (request, context) => kv.deleteRange(request, context),
      Txn: (request, context) => kv.txn(request, context),
      Compact: () => Promise.resolve(rpcOk({ header: header() })),
    },
    watch: {
      Watch: (call) => {
        call.on("error", () => {});
        call.emit(
          "error",
          toServerError(
            rpcFailure("unimplemented", "TinyKV's gateway does not serve etcd watches"),
          ),
        );
      },
    },
    maintenance: {
      Alarm: (request: AlarmRequest) =>
        Promise.resolve(
          request.action === AlarmRequest_AlarmAction.GET
            ? rpcOk({ header: header(), alarms: [] })
            : rpcFailure("unimplemented", "TinyKV has no etcd alarms to raise or clear"),
        ),
      Status: () =>
        Promise.resolve(rpcOk({
          header: header(),
          version: ETCD_API_VERSION,
          dbSize: 0,
          leader: 0,
          raftIndex: 0,
          raftTerm: 0,
          raftAppliedIndex: 0,
          errors: [],
          dbSizeInUse: 0,
          isLearner: false,
        })),
    },
    cluster: {
      MemberList: () => {
        const addresses = new Set(options.members().map((member) => member.address));
        addresses.add(options.address);
        const members: Member[] = [...addresses].sort().map((address) => ({
          ID: idOf(address),
          name: `gateway-${address}`,
          peerURLs: [],
          clientURLs: [`http://${address}`],
          isLearner: false,
        }));
        return Promise.resolve(rpcOk({ header: header(), members }));
      },
    },
  };
}

/** One key's state as a one-key `Txn` or a `prev_kv` swap sees and changes it. */
type KeyState = { readonly found: false } | { readonly found: true; readonly value: Uint8Array };

const ABSENT: KeyState = { found: false };

/** A failure a step of a call ended with, thrown to leave nested loops; caught by the handler. */
class Stop {
  constructor(readonly failure: RpcFailure) {}
}

class EtcdKv {
  readonly #options: EtcdServiceOptions;
  readonly #header: () => ResponseHeader;

  constructor(options: EtcdServiceOptions, header: () => ResponseHeader) {
    this.#options = options;
    this.#header = header;
  }

  async range(request: RangeRequest, context: HandlerContext): Promise<RpcResult<RangeResponse>> {
    return await this.#run(async () => {
      const unsupported = unsupportedRange(request);
      if (unsupported !== undefined) return rpcFailure("unimplemented", unsupported);
      if (request.limit < 0) {
        return rpcFailure(
          "invalidArgument",
          `Field "limit" is ${request.limit}: expected 0 or more`,
        );
      }
      if (request.rangeEnd.length === 0) {
        const state = await this.#get(request.key, request.serializable, context);
        const all = state.found ? [{ key: request.key, value: state.value }] : [];
        return rpcOk(this.#rangeAnswer(request, all));
      }
      const all = await this.#scanAll(request.key, request.rangeEnd, context, !request.countOnly);
      return rpcOk(this.#rangeAnswer(request, all));
    });
  }

  async put(request: EtcdPutRequest, context: HandlerContext): Promise<RpcResult<EtcdPutResponse>> {
    return await this.#run(async () => {
      if (request.lease !== 0) return rpcFailure("unimplemented", noLeases(request.lease));
      if (request.ignoreValue || request.ignoreLease) {
        return rpcFailure(
          "unimplemented",
          "Put with ignore_value or ignore_lease needs leases and per-key history, " +
            "which TinyKV does not keep",
        );
      }
      if (!request.prevKv) {
        await this.#call(
          this.#options.kv.Put({ ...NO_SESSION, key: request.key, value: request.value }, context),
        );
        return rpcOk({ header: this.#header() });
      }
      const before = await this.#swap(request.key, context, () => ({
        found: true,
        value: request.value,
      }));
      return rpcOk({
        header: this.#header(),
        ...(before.found ? { prevKv: keyValue(request.key, before.value, false) } : {}),
      });
    });
  }

  async deleteRange(
    request: DeleteRangeRequest,
    context: HandlerContext,
  ): Promise<RpcResult<DeleteRangeResponse>> {
    return await this.#run(async () => {
      if (request.rangeEnd.length === 0) {
        if (!request.prevKv) {
          const { deleted } = await this.#call(
            this.#options.kv.Delete({ ...NO_SESSION, key: request.key }, context),
          );
          return rpcOk({ header: this.#header(), deleted: deleted ? 1 : 0, prevKvs: [] });
        }
        const before = await this.#swap(request.key, context, () => ABSENT);
        return rpcOk({
          header: this.#header(),
          deleted: before.found ? 1 : 0,
          prevKvs: before.found ? [keyValue(request.key, before.value, false)] : [],
        });
      }
      const found = await this.#scanAll(request.key, request.rangeEnd, context, request.prevKv);
      const prevKvs: EtcdKeyValue[] = [];
      let deleted = 0;
      let next = 0;
      const worker = async () => {
        while (next < found.length) {
          const pair = found[next++];
          if (request.prevKv) {
            // From the value the scan saw: the value returned is the one deleted.
            const before = await this.#swap(
              pair.key,
              context,
              () => ABSENT,
              { found: true, value: pair.value },
            );
            if (before.found) {
              deleted++;
              prevKvs.push(keyValue(pair.key, before.value, false));
            }
          } else {
            const { deleted: was } = await this.#call(
              this.#options.kv.Delete({ ...NO_SESSION, key: pair.key }, context),
            );
            if (was) deleted++;
          }
        }
      };
      await Promise.all(
        Array.from({ length: Math.min(RANGE_DELETES_IN_FLIGHT, found.length) }, worker),
      );
      prevKvs.sort((a, b) => compareBytes(a.key, b.key));
      return rpcOk({ header: this.#header(), deleted, prevKvs });
    });
  }

  async txn(request: TxnRequest, context: HandlerContext): Promise<RpcResult<TxnResponse>> {
    return await this.#run(async () => {
      const key = this.#txnKey(request);
      if (key === undefined) {
        // No compare and no operation: the success branch, which is empty.
        return rpcOk({ header: this.#header(), succeeded: true, responses: [] });
      }
      const mutates = [...request.success, ...request.failure].some((op) =>
        op.requestPut !== undefined || op.requestDeleteRange !== undefined
      );
      let outcome: { succeeded: boolean; responses: ResponseOp[] } | undefined;
      if (!mutates) {
        const state = await this.#get(key, false, context);
        outcome = runBranch(request, key, state, this.#header).outcome;
      } else {
        await this.#swap(key, context, (state) => {
          const run = runBranch(request, key, state, this.#header);
          outcome = run.outcome;
          return run.writes ? run.after : undefined;
        });
      }
      return rpcOk({ header: this.#header(), ...outcome! });
    });
  }

  /**
   * The one key a `Txn` names, after refusing what TinyKV cannot run: ranges (their keys are
   * spread over shards), nested transactions, keys in several shards, several keys.
   */
  #txnKey(request: TxnRequest): Uint8Array | undefined {
    const keys: Uint8Array[] = [];
    for (const compare of request.compare) {
      if (compare.rangeEnd.length > 0) throw new Stop(spreadRange("A Txn compare"));
      const problem = unsupportedCompare(compare);
      if (problem !== undefined) throw new Stop(rpcFailure("unimplemented", problem));
      keys.push(compare.key);
    }
    for (const op of [...request.success, ...request.failure]) {
      if (op.requestTxn !== undefined) {
        throw new Stop(
          rpcFailure("unimplemented", "A Txn inside a Txn is not supported by TinyKV"),
        );
      }
      if (op.requestRange !== undefined) {
        if (op.requestRange.rangeEnd.length > 0) throw new Stop(spreadRange("A Txn Range"));
        const unsupported = unsupportedRange(op.requestRange);
        if (unsupported !== undefined) throw new Stop(rpcFailure("unimplemented", unsupported));
        keys.push(op.requestRange.key);
      } else if (op.requestPut !== undefined) {
        const put = op.requestPut;
        if (put.lease !== 0) throw new Stop(rpcFailure("unimplemented", noLeases(put.lease)));
        if (put.ignoreValue || put.ignoreLease) {
          throw new Stop(
            rpcFailure("unimplemented", "Put with ignore_value or ignore_lease is not supported"),
          );
        }
        keys.push(put.key);
      } else if (op.requestDeleteRange !== undefined) {
        if (op.requestDeleteRange.rangeEnd.length > 0) {
          throw new Stop(spreadRange("A Txn DeleteRange"));
        }
        keys.push(op.requestDeleteRange.key);
      } else {
        throw new Stop(rpcFailure("invalidArgument", "A Txn operation names no request"));
      }
    }
    if (keys.length === 0) return undefined;
    const first = keys[0];
    const other = keys.find((key) => compareBytes(key, first) !== 0);
    if (other === undefined) return first;
    const a = this.#options.shardOf(first);
    const b = this.#options.shardOf(other);
    if (a !== undefined && b !== undefined && a !== b) {
      throw new Stop(rpcFailure(
        "failedPrecondition",
        `A Txn's keys must be in one shard: ${describeKey(first)} is in shard ${a} and ` +
          `${describeKey(other)} in shard ${b} (give related keys one hash tag, {tag}, so that ` +
          "they share a shard)",
      ));
    }
    throw new Stop(rpcFailure(
      "unimplemented",
      `A Txn over several keys (${describeKey(first)} and ${describeKey(other)}) is not ` +
        "supported yet: TinyKV runs a Txn whose compares and operations name one key",
    ));
  }

  #rangeAnswer(request: RangeRequest, all: readonly KeyValue[]): RangeResponse {
    const sorted = request.sortOrder === RangeRequest_SortOrder.DESCEND ? [...all].reverse() : all;
    const limited = request.limit > 0 ? sorted.slice(0, request.limit) : sorted;
    const kvs = request.countOnly
      ? []
      : limited.map((pair) => keyValue(pair.key, pair.value, request.keysOnly));
    let bytes = 0;
    for (const pair of kvs) bytes += pair.key.length + pair.value.length;
    const room = this.#options.maxMessageBytes - MESSAGE_OVERHEAD_BYTES;
    if (bytes > room) {
      throw new Stop(rpcFailure(
        "resourceExhausted",
        `Range answer holds ${kvs.length} keys and ${bytes} bytes of keys and values: the most ` +
          `one answer holds is about ${room} bytes (rpc_server.max_message_bytes); ` +
          "ask with a limit, or keys only, and continue from the last key",
      ));
    }
    return {
      header: this.#header(),
      kvs,
      more: !request.countOnly && kvs.length < all.length,
      count: all.length,
    };
  }

  /** Every pair in `[start, end)` (etcd's `range_end`; `\0` is "to the end"), in key order. */
  async #scanAll(
    start: Uint8Array,
    rangeEnd: Uint8Array,
    context: HandlerContext,
    values: boolean,
  ): Promise<KeyValue[]> {
    const end = rangeEnd.length === 1 && rangeEnd[0] === 0 ? new Uint8Array() : rangeEnd;
    if (end.length > 0 && compareBytes(start, end) >= 0) return [];
    const all: KeyValue[] = [];
    let bytes = 0;
    const room = this.#options.maxMessageBytes - MESSAGE_OVERHEAD_BYTES;
    for (let from = start;;) {
      const page = await this.#call(
        this.#options.kv.Scan({ start: from, end, limit: SCAN_LIMIT_MAX }, context),
      );
      for (const pair of page.kvs) {
        // Values are dropped when unused (a count, a delete without prev_kv), so that a count
        // over many keys holds only keys.
        all.push(values ? pair : { key: pair.key, value: EMPTY });
        bytes += pair.key.length + (values ? pair.value.length : 0);
      }
      if (bytes > room * 4) {
        throw new Stop(rpcFailure(
          "resourceExhausted",
          `Range holds more than ${room * 4} bytes of keys and values: ask for a smaller range ` +
            "or with a limit and continue from the last key",
        ));
      }
      if (!page.more) return all;
      from = page.next;
    }
  }

  async #get(key: Uint8Array, serializable: boolean, context: HandlerContext): Promise<KeyState> {
    const got = await this.#call(this.#options.kv.Get({ key, serializable }, context));
    return got.found ? { found: true, value: got.value } : ABSENT;
  }

  /**
   * Changes one key from the state it is in to `change(state)` with a compare-and-swap from that
   * state, reading it first (unless `guess` is given) and again from what the swap found until
   * one matches; returns the state the successful swap replaced.
   */
  async #swap(
    key: Uint8Array,
    context: HandlerContext,
    change: (state: KeyState) => KeyState | undefined,
    guess?: KeyState,
  ): Promise<KeyState> {
    let state = guess ?? await this.#get(key, false, context);
    for (let attempt = 1;; attempt++) {
      const after = change(state);
      // Nothing to write (a branch without writes; absent stays absent): the read decided it.
      if (after === undefined || (!state.found && !after.found)) return state;
      const result = await this.#call(this.#options.kv.CompareAndSwap({
        ...NO_SESSION,
        key,
        expected: state.found ? state.value : EMPTY,
        expectAbsent: !state.found,
        value: after.found ? after.value : EMPTY,
        delete: !after.found,
      }, context));
      if (result.succeeded) return state;
      if (attempt >= SWAP_ATTEMPTS_MAX) {
        throw new Stop(rpcFailure(
          "unavailable",
          `Key ${describeKey(key)} changed under ${attempt} attempts to read and swap it: ` +
            "nothing was written; retry",
        ));
      }
      state = result.found ? { found: true, value: result.current } : ABSENT;
    }
  }

  async #call<T>(answered: RpcResult<T> | Promise<RpcResult<T>>): Promise<T> {
    const result = await answered;
    if (result.kind !== "ok") throw new Stop(result);
    return result.response;
  }

  async #run<T>(work: () => Promise<RpcResult<T>>): Promise<RpcResult<T>> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof Stop) return error.failure;
      throw error;
    }
  }
}

const EMPTY = new Uint8Array();
const NO_SESSION = { clientId: "", seq: 0, ackSeq: 0 };

function keyValue(key: Uint8Array, value: Uint8Array, keysOnly: boolean): EtcdKeyValue {
  return {
    key,
    createRevision: REVISION,
    modRevision: REVISION,
    version: REVISION,
    value: keysOnly ? EMPTY : value,
    lease: 0,
  };
}

/** What of a `RangeRequest` TinyKV cannot do, if anything. */
function unsupportedRange(request: RangeRequest): string | undefined {
  if (request.revision > 0) {
    return `Range at revision ${request.revision}: TinyKV keeps no history, only the latest value`;
  }
  if (
    request.minModRevision !== 0 || request.maxModRevision !== 0 ||
    request.minCreateRevision !== 0 || request.maxCreateRevision !== 0
  ) {
    return "Range with revision filters: TinyKV keeps no per-key revisions";
  }
  if (
    request.sortOrder !== RangeRequest_SortOrder.NONE &&
    request.sortTarget !== RangeRequest_SortTarget.KEY
  ) {
    return `Range sorted by target ${request.sortTarget}: TinyKV sorts by key only`;
  }
  if (
    request.sortOrder !== RangeRequest_SortOrder.NONE &&
    request.sortOrder !== RangeRequest_SortOrder.ASCEND &&
    request.sortOrder !== RangeRequest_SortOrder.DESCEND
  ) {
    return `Range with sort order ${request.sortOrder}: expected NONE, ASCEND or DESCEND`;
  }
  return undefined;
}

/** What of a `Compare` TinyKV cannot evaluate, if anything. */
function unsupportedCompare(compare: Compare): string | undefined {
  const known: number[] = Object.values(Compare_CompareResult);
  if (!known.includes(compare.result)) return `Compare with result ${compare.result}: unknown`;
  switch (compare.target) {
    case Compare_CompareTarget.VALUE:
      return undefined;
    case Compare_CompareTarget.VERSION:
    case Compare_CompareTarget.CREATE:
    case Compare_CompareTarget.MOD:
    case Compare_CompareTarget.LEASE: {
      const operand = compare.version ?? compare.createRevision ?? compare.modRevision ??
        compare.lease ?? 0;
      if (operand === 0) return undefined;
      const what = compare.target === Compare_CompareTarget.LEASE
        ? "a lease (TinyKV has no leases)"
        : "a revision or version (TinyKV keeps no per-key history)";
      return `Compare of ${describeKey(compare.key)} against ${operand}: ${what}; compare ` +
        "against 0 (the key is absent) instead";
    }
    default:
      return `Compare with target ${compare.target}: unknown`;
  }
}

/** Runs the branch a one-key `Txn`'s compares choose on `state`: its answers and the new state. */
function runBranch(
  request: TxnRequest,
  key: Uint8Array,
  state: KeyState,
  header: () => ResponseHeader,
): {
  outcome: { succeeded: boolean; responses: ResponseOp[] };
  after: KeyState;
  writes: boolean;
} {
  const succeeded = request.compare.every((compare) => holds(compare, state));
  let current = state;
  let writes = false;
  const responses: ResponseOp[] = [];
  for (const op of succeeded ? request.success : request.failure) {
    responses.push(step(op, key, current, header));
    if (op.requestPut !== undefined) current = { found: true, value: op.requestPut.value };
    if (op.requestDeleteRange !== undefined) current = ABSENT;
    writes ||= op.requestPut !== undefined || op.requestDeleteRange !== undefined;
  }
  return { outcome: { succeeded, responses }, after: current, writes };
}

function step(
  op: RequestOp,
  key: Uint8Array,
  state: KeyState,
  header: () => ResponseHeader,
): ResponseOp {
  if (op.requestRange !== undefined) {
    const range = op.requestRange;
    const found = state.found ? [keyValue(key, state.value, range.keysOnly)] : [];
    const kvs = range.countOnly ? [] : found;
    return { responseRange: { header: header(), kvs, more: false, count: found.length } };
  }
  if (op.requestPut !== undefined) {
    return {
      responsePut: {
        header: header(),
        ...(op.requestPut.prevKv && state.found
          ? { prevKv: keyValue(key, state.value, false) }
          : {}),
      },
    };
  }
  const prevKv = op.requestDeleteRange!.prevKv;
  return {
    responseDeleteRange: {
      header: header(),
      deleted: state.found ? 1 : 0,
      prevKvs: prevKv && state.found ? [keyValue(key, state.value, false)] : [],
    },
  };
}

/** Whether `compare` holds for the key in `state` (etcd: a value compare on an absent key fails). */
function holds(compare: Compare, state: KeyState): boolean {
  let order: number;
  if (compare.target === Compare_CompareTarget.VALUE) {
    if (!state.found) return false;
    order = compareBytes(state.value, compare.value ?? EMPTY);
  } else {
    // Version, create and mod revision are 1 for a key that exists, 0 for one that does not; a
    // lease is always 0. The operand is 0 (unsupportedCompare).
    const mine = compare.target === Compare_CompareTarget.LEASE ? 0 : state.found ? REVISION : 0;
    order = Math.sign(mine);
  }
  switch (compare.result) {
    case Compare_CompareResult.EQUAL:
      return order === 0;
    case Compare_CompareResult.GREATER:
      return order > 0;
    case Compare_CompareResult.LESS:
      return order < 0;
    case Compare_CompareResult.NOT_EQUAL:
      return order !== 0;
    default:
      return false;
  }
}

function spreadRange(what: string): RpcFailure {
  return rpcFailure(
    "failedPrecondition",
    `${what} names a range (range_end is set): the keys of a range are spread over every shard, ` +
      "and a Txn runs in one shard; name one key",
  );
}

function noLeases(lease: number): string {
  return `Lease ${lease}: TinyKV has no leases (keys live until deleted)`;
}

/** A key for a message: its text when printable and short, else its length. */
export function describeKey(key: Uint8Array): string {
  const text = new TextDecoder("utf-8", { fatal: false }).decode(key.subarray(0, 64));
  const printable = /^[\x20-\x7e]*$/.test(text) && key.length <= 64;
  return printable ? JSON.stringify(text) : `of ${key.length} bytes`;
}

/** etcd services and methods TinyKV does not have, and why (answered UNIMPLEMENTED). */
const UNSUPPORTED: ReadonlyArray<{
  service: string;
  methods: ReadonlyArray<readonly [string, "unary" | "serverStream" | "bidi"]>;
  why: string;
}> = [
  {
    service: "etcdserverpb.Lease",
    methods: [
      ["LeaseGrant", "unary"],
      ["LeaseRevoke", "unary"],
      ["LeaseKeepAlive", "bidi"],
      ["LeaseTimeToLive", "unary"],
      ["LeaseLeases", "unary"],
    ],
    why: "TinyKV has no leases (keys live until deleted)",
  },
  {
    service: "etcdserverpb.Auth",
    methods: [
      "AuthEnable",
      "AuthDisable",
      "AuthStatus",
      "Authenticate",
      "UserAdd",
      "UserGet",
      "UserList",
      "UserDelete",
      "UserChangePassword",
      "UserGrantRole",
      "UserRevokeRole",
      "RoleAdd",
      "RoleGet",
      "RoleList",
      "RoleDelete",
      "RoleGrantPermission",
      "RoleRevokePermission",
    ].map((name) => [name, "unary"] as const),
    why: "TinyKV's gateway has no etcd users or roles: TinyKV's own tokens and TLS " +
      "([security]) guard it",
  },
  {
    service: "etcdserverpb.Maintenance",
    methods: [
      ["Defragment", "unary"],
      ["Hash", "unary"],
      ["HashKV", "unary"],
      ["Snapshot", "serverStream"],
      ["MoveLeader", "unary"],
      ["Downgrade", "unary"],
    ],
    why: "TinyKV's gateway is not an etcd member: use tinykv backup, tinykv status and " +
      "tinykv transfer-leader",
  },
  {
    service: "etcdserverpb.Cluster",
    methods: [
      ["MemberAdd", "unary"],
      ["MemberRemove", "unary"],
      ["MemberUpdate", "unary"],
      ["MemberPromote", "unary"],
    ],
    why: "TinyKV's members are its gateways, which join and leave by starting and stopping",
  },
];

/** A service whose every method answers UNIMPLEMENTED with `why`, whatever it is sent. */
function unsupportedService(
  service: string,
  methods: ReadonlyArray<readonly [string, "unary" | "serverStream" | "bidi"]>,
  why: string,
): ServiceBinding {
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  const raw = (bytes: Buffer) => bytes;
  for (const [name, kind] of methods) {
    definition[name] = {
      path: `/${service}/${name}`,
      requestStream: kind === "bidi",
      responseStream: kind !== "unary",
      requestSerialize: raw,
      requestDeserialize: raw,
      responseSerialize: raw,
      responseDeserialize: raw,
    };
    const failure = () => toServerError(rpcFailure("unimplemented", `${service}.${name}: ${why}`));
    implementation[name] = kind === "unary"
      ? ((_call: unknown, callback: grpc.sendUnaryData<Buffer>) => callback(failure()))
      : ((call: { on(event: string, f: () => void): void; emit(e: string, x: unknown): void }) => {
        call.on("error", () => {});
        call.emit("error", failure());
      }) as grpc.UntypedHandleCall;
  }
  return { definition: definition as grpc.ServiceDefinition, implementation };
}
