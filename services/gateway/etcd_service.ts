/**
 * etcd's v3 API on the gateway's client port, beside `tinykv.v1.KV`, so that etcdctl and etcd's
 * client libraries work against TinyKV. Every call is made of the gateway's own `tinykv.v1.KV`
 * handlers ({@linkcode kvHandlers}): the same limits, exactly-once sessions, routing and statuses.
 *
 * What maps how (docs/design.md "The etcd API" is the reference):
 * - `Range`: one key is a `Get` (linearizable unless `serializable`); a range or prefix pages
 *   through `Scan` (every shard, merged in key order), then applies `limit`, `keys_only`,
 *   `count_only` and the sort order; `count` is the number of keys in the whole range.
 * - `Put` is a `Put`; with `prev_kv`, a one-operation `Txn` that returns the value it replaced.
 * - `DeleteRange`: one key is a `Delete` (with `prev_kv`, a one-operation `Txn`); a range is
 *   scanned, then deleted key by key — not one atomic step.
 * - `Txn` is TinyKV's `Txn` (atomic, in one shard): value compares as they are; version, create
 *   and mod revision compares against 0 become existence compares; lease compares (a lease is
 *   always 0) are decided here. Keys in several shards are FAILED_PRECONDITION naming two shards
 *   (TinyKV's own `Txn` says INVALID_ARGUMENT).
 * - Revisions: TinyKV keeps no history and no cluster-wide revision. Every revision and version it
 *   reports is 1 (a key that exists), compares on them accept only 0 (absent), and whatever needs
 *   history (a past revision, revision filters) is UNIMPLEMENTED, as are leases, etcd's auth API
 *   and watches.
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
import {
  type KeyValue,
  type KVService,
  type TxnCompare as TinyKvTxnCompare,
  TxnCompare_Result,
  TxnCompare_Target,
  type TxnOp as TinyKvTxnOp,
  TxnOp_Kind,
  type TxnOpResult as TinyKvTxnOpResult,
} from "@tinykv/proto/tinykv/v1";
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
import { describeKey, spreadOverShards } from "./kv_service.ts";

/** The version `Maintenance.Status` reports: the etcd API it speaks, and that it is TinyKV. */
export const ETCD_API_VERSION = "3.4.0+tinykv";
/** The revision, create revision, mod revision and version of every key TinyKV reports. */
export const REVISION = 1;
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
        const got = await this.#call(
          this.#options.kv.Get({ key: request.key, serializable: request.serializable }, context),
        );
        const all = got.found ? [{ key: request.key, value: got.value }] : [];
        return rpcOk(this.#rangeAnswer(request, all));
      }
      const all = await this.#scanAll(
        request.key,
        request.rangeEnd,
        context,
        !request.countOnly && !request.keysOnly,
      );
      return rpcOk(this.#rangeAnswer(request, all));
    });
  }

  async put(request: EtcdPutRequest, context: HandlerContext): Promise<RpcResult<EtcdPutResponse>> {
    return await this.#run(async () => {
      const unsupported = unsupportedPut(request);
      if (unsupported !== undefined) return rpcFailure("unimplemented", unsupported);
      if (!request.prevKv) {
        await this.#call(
          this.#options.kv.Put({ ...NO_SESSION, key: request.key, value: request.value }, context),
        );
        return rpcOk({ header: this.#header() });
      }
      const [before] = await this.#txn([], [putOp(request.key, request.value, true)], context);
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
        const { found, prevKv } = await this.#deleteOne(request.key, request.prevKv, context);
        return rpcOk({
          header: this.#header(),
          deleted: found ? 1 : 0,
          prevKvs: prevKv === undefined ? [] : [prevKv],
        });
      }
      const keys = await this.#scanAll(request.key, request.rangeEnd, context, request.prevKv);
      // The previous values go back in one answer: refused before anything is deleted when they
      // would not fit in it.
      const room = this.#options.maxMessageBytes - MESSAGE_OVERHEAD_BYTES;
      const scanned = keys.reduce((sum, pair) => sum + pair.key.length + pair.value.length, 0);
      if (request.prevKv && scanned > room) {
        return rpcFailure(
          "resourceExhausted",
          `DeleteRange with prev_kv would return ${keys.length} keys and ${scanned} bytes of ` +
            `keys and values: the most one answer holds is about ${room} bytes ` +
            "(rpc_server.max_message_bytes); nothing was deleted: delete without prev_kv, or a " +
            "smaller range",
        );
      }
      const prevKvs: EtcdKeyValue[] = [];
      let deleted = 0;
      let next = 0;
      const worker = async () => {
        while (next < keys.length) {
          const { found, prevKv } = await this.#deleteOne(
            keys[next++].key,
            request.prevKv,
            context,
          );
          if (found) deleted++;
          if (prevKv !== undefined) prevKvs.push(prevKv);
        }
      };
      await Promise.all(
        Array.from({ length: Math.min(RANGE_DELETES_IN_FLIGHT, keys.length) }, worker),
      );
      prevKvs.sort((a, b) => compareBytes(a.key, b.key));
      const returned = prevKvs.reduce((sum, kv) => sum + kv.key.length + kv.value.length, 0);
      if (returned > room) {
        // Values written into the range after the scan made the answer too large to send.
        return rpcFailure(
          "resourceExhausted",
          `DeleteRange deleted ${deleted} keys, but their previous values (${returned} bytes ` +
            `with the keys) grew past what one answer holds, about ${room} bytes, after the ` +
            "range was read: the keys are deleted; their previous values cannot be returned",
        );
      }
      return rpcOk({ header: this.#header(), deleted, prevKvs });
    });
  }

  /** Deletes one key: a `Delete`, or with `prevKv` a one-operation Txn that returns the value. */
  async #deleteOne(
    key: Uint8Array,
    prevKv: boolean,
    context: HandlerContext,
  ): Promise<{ found: boolean; prevKv?: EtcdKeyValue }> {
    if (!prevKv) {
      const { deleted } = await this.#call(
        this.#options.kv.Delete({ ...NO_SESSION, key }, context),
      );
      return { found: deleted };
    }
    const [before] = await this.#txn([], [deleteOp(key, true)], context);
    return before.found
      ? { found: true, prevKv: keyValue(key, before.value, false) }
      : { found: false };
  }

  async txn(request: TxnRequest, context: HandlerContext): Promise<RpcResult<TxnResponse>> {
    return await this.#run(async () => {
      const compares: TinyKvTxnCompare[] = [];
      let never = false;
      for (const compare of request.compare) {
        const mapped = compareOf(compare);
        if (mapped === "always") continue;
        if (mapped === "never") never = true;
        else compares.push(mapped);
      }
      const success = request.success.map(opOf);
      const failure = request.failure.map(opOf);
      const keyOf = compares[0]?.key ?? success[0]?.key ?? failure[0]?.key;
      if (keyOf === undefined) {
        // Nothing to read or write: only a lease compare (always 0) decides the branch.
        const succeeded = !never;
        const ops = succeeded ? request.success : request.failure;
        return rpcOk({ header: this.#header(), succeeded, responses: ops.map(() => ({})) });
      }
      // A lease compare that fails (a lease is always 0 here) fails the Txn: a compare that can
      // never hold (existence LESS than 0) says so to the shard, which still runs the failure
      // branch atomically.
      // etcd answers a request its cluster cannot run FAILED_PRECONDITION (TinyKV's own Txn says
      // INVALID_ARGUMENT: retrying never helps either way).
      const keys = [...compares, ...success, ...failure].map((entry) => entry.key);
      const spread = spreadOverShards(this.#options.shardOf, keys);
      if (spread !== undefined) return rpcFailure("failedPrecondition", spread);
      if (never) {
        compares.push({
          key: keyOf,
          result: TxnCompare_Result.LESS,
          target: TxnCompare_Target.EXISTS,
          value: EMPTY,
        });
      }
      const answer = await this.#call(this.#options.kv.Txn({
        ...NO_SESSION,
        compares,
        success,
        failure,
      }, context));
      const ops = answer.succeeded ? request.success : request.failure;
      const responses = ops.map((op, i) => responseOf(op, answer.results[i], this.#header));
      return rpcOk({ header: this.#header(), succeeded: answer.succeeded, responses });
    });
  }

  /** A Txn without compares (every one succeeds): the results of its operations. */
  async #txn(
    compares: TinyKvTxnCompare[],
    success: TinyKvTxnOp[],
    context: HandlerContext,
  ): Promise<TinyKvTxnOpResult[]> {
    const answer = await this.#call(
      this.#options.kv.Txn({ ...NO_SESSION, compares, success, failure: [] }, context),
    );
    return answer.results;
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
        // Values are dropped when unused (a count, a delete), so that a count over many keys holds
        // only keys.
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

function putOp(key: Uint8Array, value: Uint8Array, prev: boolean): TinyKvTxnOp {
  return { kind: TxnOp_Kind.PUT, key, value, prev };
}

function deleteOp(key: Uint8Array, prev: boolean): TinyKvTxnOp {
  return { kind: TxnOp_Kind.DELETE, key, value: EMPTY, prev };
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

/** What of a `PutRequest` TinyKV cannot do, if anything. */
function unsupportedPut(request: EtcdPutRequest): string | undefined {
  if (request.lease !== 0) return noLeases(request.lease);
  if (request.ignoreValue || request.ignoreLease) {
    return "Put with ignore_value or ignore_lease needs leases and per-key history, which " +
      "TinyKV does not keep";
  }
  return undefined;
}

/**
 * An etcd compare as TinyKV's: on the value, or on existence (version, create and mod revision
 * are 1 for a key that exists, 0 for one that does not, and are compared only against 0). A lease
 * is always 0: its compare against 0 is decided here ("always" or "never").
 */
function compareOf(compare: Compare): TinyKvTxnCompare | "always" | "never" {
  if (compare.rangeEnd.length > 0) throw new Stop(spreadRange("A Txn compare"));
  const results: number[] = Object.values(Compare_CompareResult);
  if (!results.includes(compare.result)) {
    throw new Stop(
      rpcFailure("invalidArgument", `Compare with result ${compare.result}: unknown`),
    );
  }
  const result = compare.result as number as TxnCompare_Result;
  if (compare.target === Compare_CompareTarget.VALUE) {
    return {
      key: compare.key,
      result,
      target: TxnCompare_Target.VALUE,
      value: compare.value ?? EMPTY,
    };
  }
  const known: number[] = [
    Compare_CompareTarget.VERSION,
    Compare_CompareTarget.CREATE,
    Compare_CompareTarget.MOD,
    Compare_CompareTarget.LEASE,
  ];
  if (!known.includes(compare.target)) {
    throw new Stop(
      rpcFailure("invalidArgument", `Compare with target ${compare.target}: unknown`),
    );
  }
  const operand = compare.version ?? compare.createRevision ?? compare.modRevision ??
    compare.lease ?? 0;
  if (operand !== 0) {
    const what = compare.target === Compare_CompareTarget.LEASE
      ? "a lease (TinyKV has no leases)"
      : "a revision or version (TinyKV keeps no per-key history)";
    throw new Stop(rpcFailure(
      "unimplemented",
      `Compare of ${describeKey(compare.key)} against ${operand}: ${what}; compare against 0 ` +
        "(the key is absent) instead",
    ));
  }
  if (compare.target === Compare_CompareTarget.LEASE) {
    const holds = compare.result === Compare_CompareResult.EQUAL;
    return holds ? "always" : "never";
  }
  return { key: compare.key, result, target: TxnCompare_Target.EXISTS, value: EMPTY };
}

/** An etcd Txn operation as TinyKV's (one key each; no nested Txn, no leases). */
function opOf(op: RequestOp): TinyKvTxnOp {
  if (op.requestTxn !== undefined) {
    throw new Stop(rpcFailure("unimplemented", "A Txn inside a Txn is not supported by TinyKV"));
  }
  if (op.requestRange !== undefined) {
    const range = op.requestRange;
    if (range.rangeEnd.length > 0) throw new Stop(spreadRange("A Txn Range"));
    const unsupported = unsupportedRange(range);
    if (unsupported !== undefined) throw new Stop(rpcFailure("unimplemented", unsupported));
    return { kind: TxnOp_Kind.GET, key: range.key, value: EMPTY, prev: false };
  }
  if (op.requestPut !== undefined) {
    const unsupported = unsupportedPut(op.requestPut);
    if (unsupported !== undefined) throw new Stop(rpcFailure("unimplemented", unsupported));
    return putOp(op.requestPut.key, op.requestPut.value, op.requestPut.prevKv);
  }
  if (op.requestDeleteRange !== undefined) {
    if (op.requestDeleteRange.rangeEnd.length > 0) {
      throw new Stop(spreadRange("A Txn DeleteRange"));
    }
    return deleteOp(op.requestDeleteRange.key, op.requestDeleteRange.prevKv);
  }
  throw new Stop(rpcFailure("invalidArgument", "A Txn operation names no request"));
}

/** The etcd response to one operation of the branch that ran, from what TinyKV's op found. */
function responseOf(
  op: RequestOp,
  result: TinyKvTxnOpResult | undefined,
  header: () => ResponseHeader,
): ResponseOp {
  if (result === undefined) {
    throw new Stop(rpcFailure("internal", "A Txn answered fewer results than operations"));
  }
  if (op.requestRange !== undefined) {
    const range = op.requestRange;
    const found = result.found ? [keyValue(range.key, result.value, range.keysOnly)] : [];
    return {
      responseRange: {
        header: header(),
        kvs: range.countOnly ? [] : found,
        more: false,
        count: found.length,
      },
    };
  }
  if (op.requestPut !== undefined) {
    const put = op.requestPut;
    return {
      responsePut: {
        header: header(),
        ...(put.prevKv && result.found ? { prevKv: keyValue(put.key, result.value, false) } : {}),
      },
    };
  }
  const del = op.requestDeleteRange!;
  return {
    responseDeleteRange: {
      header: header(),
      deleted: result.found ? 1 : 0,
      prevKvs: del.prevKv && result.found ? [keyValue(del.key, result.value, false)] : [],
    },
  };
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
