/**
 * etcd's v3 API on the gateway's client port, beside `tinykv.v1.KV`, so that etcdctl and etcd's
 * client libraries work against TinyKV. Every call is made of the gateway's own `tinykv.v1.KV`
 * handlers ({@linkcode kvHandlers}): the same limits, exactly-once sessions, routing and statuses.
 *
 * What maps how (docs/design.md "The etcd API" is the reference):
 * - `Range`: one key is a `Get` (linearizable unless `serializable`); a range or prefix pages
 *   through `Scan` (every shard, merged in key order; linearizable per shard, not a snapshot across
 *   shards; `serializable` is ignored), keeping values only for the keys it answers with and
 *   counting the rest; `count` is the number of keys in the whole range. Sorting follows etcd:
 *   order NONE with a target other than the key is ascending; by value compares bytes; by version,
 *   create or mod revision (all 1) keeps key order. At most `rangesInFlightMax` ranges (Range and
 *   DeleteRange over a range) run at once in a gateway; past it RESOURCE_EXHAUSTED.
 * - `Put` is a `Put`; with `prev_kv`, a one-operation `Txn` that returns the value it replaced.
 * - `DeleteRange`: one key is a `Delete` (with `prev_kv`, a one-operation `Txn`); a range is
 *   scanned, then deleted in batches, each a Txn of up to 128 deletes in one shard — not one
 *   atomic step. After a failed batch no other starts; the answer says how many keys were deleted
 *   (DEADLINE_EXCEEDED: the outcome is partial).
 * - `Txn` is TinyKV's `Txn` (atomic, in one shard): value compares as they are; version, create
 *   and mod revision compares against 0 become existence compares; lease compares (a lease is
 *   always 0) are decided here. Keys in several shards are FAILED_PRECONDITION naming two shards
 *   (TinyKV's own `Txn` says INVALID_ARGUMENT). A branch that writes a key twice, and a Txn whose
 *   answer might not fit one message, are INVALID_ARGUMENT before anything is proposed.
 * - Revisions: TinyKV keeps no history and no cluster-wide revision. Every revision and version it
 *   reports is 1 (a key that exists), compares on them accept only 0 (absent), and whatever needs
 *   history (a past revision, revision filters) is UNIMPLEMENTED, as are leases and etcd's auth
 *   API (but `Authenticate`, which on a port without TinyKV's tokens says, as etcd without auth
 *   does, that authentication is not enabled). `Compact` up to revision 1 does nothing; past it,
 *   etcd's "future revision" error.
 * - `Watch`: TinyKV's watches (etcd_watch.ts), from now on, with revisions of 1; a watch from an
 *   earlier revision is refused as etcd refuses one (created and canceled at once, with the reason).
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
  type CompactionRequest,
  type CompactionResponse,
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
  TxnRequest,
  type TxnResponse,
  type WatchRequest,
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
import { raftMessageRoom } from "@tinykv/config";
import {
  bindService,
  eachWireField,
  type HandlerContext,
  MALFORMED,
  outcomeOf,
  repeatedPast,
  type RpcFailure,
  rpcFailure,
  rpcOk,
  type RpcResult,
  type ServiceBinding,
  type ServiceHandlers,
  statusName,
  toServerError,
} from "@tinykv/rpc";
import {
  commandBytesMax,
  compareBytes,
  fnv1a32,
  KEY_BYTES_MAX,
  SCAN_LIMIT_MAX,
  TXN_ENTRY_OVERHEAD_BYTES,
  TXN_OPS_MAX,
  txnBytesMax,
  validateKey,
} from "@tinykv/shard";
import { assert } from "./_assert.ts";
import { serveEtcdWatch } from "./etcd_watch.ts";
import { describeKey, spreadOverShards } from "./kv_service.ts";
import type { GatewayWatches } from "./watch.ts";

/** The version `Maintenance.Status` reports: the etcd API it speaks, and that it is TinyKV. */
export const ETCD_API_VERSION = "3.4.0+tinykv";
/** The revision, create revision, mod revision and version of every key TinyKV reports. */
export const REVISION = 1;
/** Batches of deletes (Txns of up to 128 keys of one shard) one range DeleteRange keeps going. */
const RANGE_DELETES_IN_FLIGHT = 16;
/** Room left in a message for everything but the keys and values and their framing. */
const MESSAGE_OVERHEAD_BYTES = 64 * 1024;
/**
 * What one `KeyValue` takes in an answer besides its key and value: field tags, lengths and the
 * three revisions of 1 (at most 21 bytes; etcd_service_test.ts checks the encoding against it).
 */
export const KEY_VALUE_FRAMING_BYTES = 24;
/**
 * What one operation's response takes in a Txn answer besides its key and value: its tags and
 * lengths, its header, the framing of one `KeyValue` and a count (at most 57 bytes).
 */
export const RESPONSE_OP_FRAMING_BYTES = 64;
/**
 * How many answers' worth of keys and values (the message size less 64 KiB) a Range may hold while
 * it reads, when it cannot answer as it goes: sorted by value, or the last keys of a descending
 * limit (and the keys a DeleteRange deletes).
 */
const RANGE_HELD_ANSWERS = 4;
/** Range and DeleteRange calls over a range (not one key) a gateway runs at once by default. */
export const RANGES_IN_FLIGHT_MAX = 8;
/** Hosts that mean "every address", which name no one place for a client to dial. */
const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]", ""]);
/**
 * etcd's own words for a revision past the current one, for a key written twice in a Txn's
 * branch, and for authentication that is off. Kept word for word, against the house style of
 * messages: etcd's client libraries (clientv3's `rpctypes`) recognise these errors by their text.
 */
const FUTURE_REVISION = "etcdserver: mvcc: required revision is a future revision";
const DUPLICATE_KEY = "etcdserver: duplicate key given in txn request";
const AUTH_NOT_ENABLED = "etcdserver: authentication is not enabled";
/** Why etcd's `Auth` service is not served. */
const ETCD_AUTH_WHY = "TinyKV's gateway has no etcd users or roles: TinyKV's own tokens and " +
  "TLS ([security]) guard it";

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
  /**
   * The largest value a shard stores and answers with (`storage.value_bytes_max`), which bounds
   * what a Txn can return. Default: the largest a config with `maxMessageBytes` admits
   * ({@linkcode valueBytesBound}), which holds for every kvnode whose messages are no larger.
   */
  readonly valueBytesMax?: number;
  /**
   * Whether the client port requires TinyKV's tokens ([security]): then etcd's `Authenticate` is
   * UNIMPLEMENTED, else etcd's "authentication is not enabled" (default false).
   */
  readonly tokensRequired?: boolean;
  /** Whether the client port serves TLS: client URLs are then `https://` (default false). */
  readonly tls?: boolean;
  /** The gateway's watches (none: `Watch` is UNIMPLEMENTED, in tests of the other calls). */
  readonly watches?: GatewayWatches;
  /**
   * How many ranges (Range and DeleteRange over a range) run at once; default
   * {@linkcode RANGES_IN_FLIGHT_MAX}.
   */
  readonly rangesInFlightMax?: number;
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

/**
 * The largest `storage.value_bytes_max` a config with `maxMessageBytes` admits: its largest
 * command must fit half a message less 64 KiB (libs/config). 0 when none fits.
 */
export function valueBytesBound(maxMessageBytes: number): number {
  return Math.max(0, Math.floor((raftMessageRoom(maxMessageBytes) - commandBytesMax(0)) / 2));
}

/**
 * The client URL etcd clients dial to reach the gateway at `address` (`host:port`):
 * `https://host:port` when the gateway serves TLS, else `host:port` without a scheme. etcdctl 3.4
 * dials one endpoint (`endpoint status --cluster`) with the endpoint's whole text as the HTTP/2
 * `:authority`, and the HTTP/2 server of Deno's runtime refuses `http://host:port` there (GOAWAY,
 * PROTOCOL_ERROR: not an authority); with TLS, etcdctl sends the host name instead. etcd clients
 * dial an endpoint without a scheme in plaintext, or with the TLS options they were given. A host
 * of every address (`0.0.0.0`, `::`) is listed as 127.0.0.1, and an IPv6 host in brackets.
 */
export function clientUrlOf(address: string, tls: boolean): string {
  const colon = address.lastIndexOf(":");
  assert(colon >= 0, () => `A gateway's address has no port: ${JSON.stringify(address)}`);
  let host = address.slice(0, colon);
  const port = address.slice(colon + 1);
  if (WILDCARD_HOSTS.has(host)) host = "127.0.0.1";
  else if (host.includes(":") && !host.startsWith("[")) host = `[${host}]`;
  return tls ? `https://${host}:${port}` : `${host}:${port}`;
}

/** The etcd services of a gateway: KV, Watch, Maintenance, Cluster, and what TinyKV lacks. */
export function etcdServices(options: EtcdServiceOptions): ServiceBinding[] {
  const handlers = etcdHandlers(options);
  return [
    etcdKvBinding(handlers.kv),
    watchBinding(handlers.watch),
    bindService(MaintenanceService, handlers.maintenance),
    bindService(ClusterService, handlers.cluster),
    ...UNSUPPORTED.map(({ service, methods, why }) => unsupportedService(service, methods, why)),
    authenticateBinding(options.tokensRequired ?? false),
  ];
}

/** etcd's Txn's lists of compares and operations, by field number. */
const ETCD_TXN_LISTS = new Map([[1, "compare"], [2, "success"], [3, "failure"]]);
/** What a Txn with a Txn inside it decodes to: the handler refuses it (UNIMPLEMENTED). */
const NESTED_TXN: TxnRequest = TxnRequest.create({
  success: [{ requestTxn: TxnRequest.create() }],
});

/**
 * etcd's KV service, its Txn requests read before they are decoded (libs/rpc wire_scan.ts): more
 * than 128 compares or operations in a list, or bytes the scan cannot read plainly, is
 * INVALID_ARGUMENT without decoding (a message of a million empty operations takes seconds to
 * decode); then a Txn nested in one of its operations is never decoded — however deep, or long —
 * but answered UNIMPLEMENTED as any nested Txn.
 */
function etcdKvBinding(handlers: ServiceHandlers<typeof EtcdKVService>): ServiceBinding {
  const binding = bindService(EtcdKVService, handlers);
  const txn = binding.definition.Txn;
  const requestDeserialize = (bytes: Buffer) => {
    const refused = repeatedPast(bytes, ETCD_TXN_LISTS, TXN_OPS_MAX, "TXN_OPS_MAX");
    if (refused !== undefined) throw new RangeError(refused);
    const nested = nestsTxn(bytes);
    if (nested === undefined) throw new RangeError(MALFORMED);
    return nested ? NESTED_TXN : txn.requestDeserialize(bytes);
  };
  return {
    definition: { ...binding.definition, Txn: { ...txn, requestDeserialize } },
    implementation: binding.implementation,
  };
}

/**
 * Whether an operation of the etcd Txn in `bytes` holds a Txn (`RequestOp.request_txn`, 4);
 * undefined when an operation's bytes cannot be read plainly.
 */
function nestsTxn(bytes: Uint8Array): boolean | undefined {
  let nested = false;
  let plain = true;
  eachWireField(bytes, ({ field, start, end }) => {
    if (field !== 2 && field !== 3) return true;
    plain = eachWireField(bytes.subarray(start, end), (op) => {
      nested = op.field === 4;
      return !nested;
    });
    return plain && !nested;
  });
  return plain ? nested : undefined;
}

/**
 * etcd's `Auth.Authenticate`. On a port that takes no TinyKV tokens, etcd's own answer when its
 * authentication is off — FAILED_PRECONDITION, `etcdserver: authentication is not enabled` — on
 * which etcd's clients (`etcdctl --user`, clientv3) go on without a token, as they do against an
 * etcd without auth. With tokens required, a caller that got past them (a valid TinyKV token) is
 * told UNIMPLEMENTED: etcd's users and roles are not served.
 */
function authenticateBinding(tokensRequired: boolean): ServiceBinding {
  const path = "/etcdserverpb.Auth/Authenticate";
  const raw = (bytes: Buffer) => bytes;
  const failure = tokensRequired
    ? rpcFailure("unimplemented", `etcdserverpb.Auth.Authenticate: ${ETCD_AUTH_WHY}`)
    : rpcFailure("failedPrecondition", AUTH_NOT_ENABLED);
  return {
    definition: {
      Authenticate: {
        path,
        requestStream: false,
        responseStream: false,
        requestSerialize: raw,
        requestDeserialize: raw,
        responseSerialize: raw,
        responseDeserialize: raw,
      },
    } as grpc.ServiceDefinition,
    implementation: {
      Authenticate:
        ((_call: unknown, callback: grpc.sendUnaryData<Buffer>) =>
          callback(toServerError(failure))) as grpc.UntypedHandleCall,
    },
  };
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
      Compact: (request) => Promise.resolve(compact(request, header)),
    },
    watch: {
      Watch: (call) =>
        options.watches === undefined
          ? void call.emit(
            "error",
            toServerError(rpcFailure("unimplemented", "This gateway serves no watches")),
          )
          : serveEtcdWatch(call, { watches: options.watches, header, describeKey }, isUndecoded),
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
          clientURLs: [clientUrlOf(address, options.tls ?? false)],
          isLearner: false,
        }));
        return Promise.resolve(rpcOk({ header: header(), members }));
      },
    },
  };
}

/**
 * `Compact`: TinyKV keeps no history, so compacting up to the current revision (always 1) does
 * nothing; a later revision does not exist yet, which etcd answers OUT_OF_RANGE (`outOfRange`).
 */
function compact(
  request: CompactionRequest,
  header: () => ResponseHeader,
): RpcResult<CompactionResponse> {
  if (request.revision > REVISION) return rpcFailure("outOfRange", FUTURE_REVISION);
  return rpcOk({ header: header() });
}

/** A message of a stream that could not be decoded, and why. */
class UndecodedRequest {
  constructor(readonly message: string) {}
}

function isUndecoded(request: unknown): request is UndecodedRequest {
  return request instanceof UndecodedRequest;
}

/**
 * The Watch service, its requests decoded in the handler's care: one that cannot be decoded (an
 * int64 past 2^53, which a number cannot hold) reaches it as an {@linkcode UndecodedRequest}, as
 * libs/rpc answers a unary call INVALID_ARGUMENT (grpc-js alone would end a stream INTERNAL).
 */
function watchBinding(handlers: ServiceHandlers<typeof WatchService>): ServiceBinding {
  const binding = bindService(WatchService, handlers);
  const method = WatchService.Watch;
  const requestDeserialize = (bytes: Buffer): WatchRequest | UndecodedRequest => {
    try {
      return method.requestDeserialize(bytes);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      return new UndecodedRequest(`Cannot decode the request of "${method.path}": ${reason}`);
    }
  };
  return {
    definition: { ...binding.definition, Watch: { ...method, requestDeserialize } },
    implementation: binding.implementation,
  };
}

/** A failure a step of a call ended with, thrown to leave nested loops; caught by the handler. */
class Stop {
  constructor(readonly failure: RpcFailure) {}
}

class EtcdKv {
  readonly #options: EtcdServiceOptions;
  readonly #header: () => ResponseHeader;
  /** The most bytes of keys, values and their framing one answer holds. */
  readonly #room: number;
  readonly #valueBytesMax: number;
  readonly #rangesInFlightMax: number;
  #rangesInFlight = 0;

  constructor(options: EtcdServiceOptions, header: () => ResponseHeader) {
    this.#options = options;
    this.#header = header;
    this.#room = options.maxMessageBytes - MESSAGE_OVERHEAD_BYTES;
    this.#valueBytesMax = options.valueBytesMax ?? valueBytesBound(options.maxMessageBytes);
    this.#rangesInFlightMax = options.rangesInFlightMax ?? RANGES_IN_FLIGHT_MAX;
    assert(
      Number.isSafeInteger(this.#rangesInFlightMax) && this.#rangesInFlightMax > 0,
      () => `rangesInFlightMax must be a positive integer: got ${this.#rangesInFlightMax}`,
    );
  }

  async range(request: RangeRequest, context: HandlerContext): Promise<RpcResult<RangeResponse>> {
    return await this.#run(async () => {
      const unsupported = unsupportedRange(request);
      if (unsupported !== undefined) return rpcFailure("unimplemented", unsupported);
      // A limit of 0 or less is no limit, as in etcd.
      const keys = keysProblem(request.key, request.rangeEnd);
      if (keys !== undefined) return keys;
      if (request.rangeEnd.length === 0) {
        const got = await this.#call(
          this.#options.kv.Get({ key: request.key, serializable: request.serializable }, context),
        );
        const found = got.found ? [{ key: request.key, value: got.value }] : [];
        return rpcOk(this.#rangeAnswer(request, found, found.length));
      }
      return await this.#inRangeSlot(async () => {
        const { kvs, count } = await this.#readRange(request, context);
        return rpcOk(this.#rangeAnswer(request, kvs, count));
      });
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
      const keys = keysProblem(request.key, request.rangeEnd);
      if (keys !== undefined) return keys;
      if (request.rangeEnd.length === 0) {
        const { found, prevKv } = await this.#deleteOne(request.key, request.prevKv, context);
        return rpcOk({
          header: this.#header(),
          deleted: found ? 1 : 0,
          prevKvs: prevKv === undefined ? [] : [prevKv],
        });
      }
      return await this.#inRangeSlot(() => this.#deleteRangeOfKeys(request, context));
    });
  }

  /**
   * Deletes every key of a range: scanned first (the previous values go back in one answer, so
   * with `prev_kv` a range whose pairs would not fit is refused before anything is deleted), then
   * deleted in batches ({@linkcode deleteBatchesOf}).
   */
  async #deleteRangeOfKeys(
    request: DeleteRangeRequest,
    context: HandlerContext,
  ): Promise<RpcResult<DeleteRangeResponse>> {
    const room = this.#room;
    const held = RANGE_HELD_ANSWERS * room;
    const kept = new KeptPairs(held, Infinity, heldTooMuch("DeleteRange", held));
    let count = 0;
    let bytes = 0;
    await this.#scanEach(request.key, request.rangeEnd, context, (pair) => {
      count++;
      const value = request.prevKv ? pair.value : EMPTY;
      bytes += answerBytes(pair.key, value);
      // Refused below: from here on only counted, for the message.
      if (request.prevKv && bytes > room) return;
      kept.push(pair.key, value);
    });
    if (request.prevKv && bytes > room) {
      return rpcFailure(
        "resourceExhausted",
        `DeleteRange with prev_kv would return ${count} keys and ${bytes} bytes of keys, ` +
          `values and their framing: the most one answer holds is about ${room} bytes ` +
          "(rpc_server.max_message_bytes); nothing was deleted: delete without prev_kv, or a " +
          "smaller range",
      );
    }
    const done = await this.#deleteAll(kept.pairs(), request.prevKv, context);
    if (done.kind !== "ok") return done;
    const { deleted, prevKvs } = done.response;
    prevKvs.sort((a, b) => compareBytes(a.key, b.key));
    const returned = prevKvs.reduce((sum, kv) => sum + answerBytes(kv.key, kv.value), 0);
    if (returned > room) {
      // Values written into the range after the scan made the answer too large to send.
      return rpcFailure(
        "resourceExhausted",
        `DeleteRange deleted ${deleted} keys, but their previous values (${returned} bytes ` +
          "with the keys and their framing) grew past what one answer holds, about " +
          `${room} bytes, after the range was read: the keys are deleted; their previous ` +
          "values cannot be returned",
      );
    }
    return rpcOk({ header: this.#header(), deleted, prevKvs });
  }

  /**
   * Deletes `pairs`' keys in batches ({@linkcode deleteBatchesOf}: a Txn of up to 128 deletes of
   * one shard each, one Raft entry), {@linkcode RANGE_DELETES_IN_FLIGHT} batches at a time. A
   * batch of prev_kv deletes whose previous values grew past what a Txn returns after the scan is
   * refused when it applies, with nothing changed, and is deleted again key by key. After a batch
   * fails no other starts, those in flight are waited for, and the failure says how many of the
   * keys were deleted: the first failure's status when nothing changed (no key deleted, and every
   * failed batch definitely not applied), else DEADLINE_EXCEEDED, TinyKV's "outcome unknown".
   */
  async #deleteAll(
    pairs: readonly KeyValue[],
    prevKv: boolean,
    context: HandlerContext,
  ): Promise<RpcResult<{ deleted: number; prevKvs: EtcdKeyValue[] }>> {
    const batches = deleteBatchesOf(pairs.map((pair) => pair.key), {
      shardOf: this.#options.shardOf,
      valueBytes: prevKv ? pairs.map((pair) => pair.value.length) : undefined,
      valueBytesMax: this.#valueBytesMax,
    });
    const prevKvs: EtcdKeyValue[] = [];
    let deleted = 0;
    let next = 0;
    let tried = 0;
    let stop = false;
    const failures: FailedDelete[] = [];
    const deleteKeys = async (keys: readonly Uint8Array[]) => {
      const done = await this.#deleteKeys(keys, prevKv, context);
      for (const [i, found] of done.found.entries()) {
        if (!found) continue;
        deleted++;
        if (prevKv) prevKvs.push(keyValue(keys[i], done.values[i], false));
      }
    };
    const worker = async () => {
      while (!stop && next < batches.length) {
        const keys = batches[next++];
        tried += keys.length;
        try {
          await deleteKeys(keys);
          continue;
        } catch (error) {
          // A batch refused changed nothing: previous values that grew past what a Txn may
          // return after the scan, or keys the shard map no longer puts in one shard.
          const refused = error instanceof Stop && error.failure.kind === "invalidArgument";
          if (!refused || keys.length === 1) {
            stop = true;
            if (!(error instanceof Stop)) throw error;
            failures.push({ failure: error.failure, keys: keys.length });
            continue;
          }
        }
        for (const [i, key] of keys.entries()) {
          try {
            await deleteKeys([key]);
          } catch (error) {
            stop = true;
            if (!(error instanceof Stop)) throw error;
            // The keys after it were not tried.
            tried -= keys.length - i - 1;
            failures.push({ failure: error.failure, keys: 1 });
            break;
          }
        }
      }
    };
    const workers = Array.from(
      { length: Math.min(RANGE_DELETES_IN_FLIGHT, batches.length) },
      worker,
    );
    const settled = await Promise.allSettled(workers);
    for (const result of settled) {
      // A bug in one worker, reported once every delete in flight has ended.
      if (result.status === "rejected") throw result.reason;
    }
    if (failures.length === 0) return rpcOk({ deleted, prevKvs });
    return partialDelete(failures, { deleted, tried, total: pairs.length });
  }

  /**
   * Deletes `keys` (of one shard when there are several) in one step: one key a `Delete` (with
   * `prevKv` a one-operation Txn), several a Txn of deletes. Whether each key existed, and with
   * `prevKv` the values replaced.
   */
  async #deleteKeys(
    keys: readonly Uint8Array[],
    prevKv: boolean,
    context: HandlerContext,
  ): Promise<{ found: boolean[]; values: Uint8Array[] }> {
    if (keys.length === 1 && !prevKv) {
      const { deleted } = await this.#call(
        this.#options.kv.Delete({ ...NO_SESSION, key: keys[0] }, context),
      );
      return { found: [deleted], values: [EMPTY] };
    }
    const results = await this.#txn([], keys.map((key) => deleteOp(key, prevKv)), context);
    return {
      found: results.map((result) => result.found),
      values: results.map((result) => result.value),
    };
  }

  /** Deletes one key: a `Delete`, or with `prevKv` a one-operation Txn that returns the value. */
  async #deleteOne(
    key: Uint8Array,
    prevKv: boolean,
    context: HandlerContext,
  ): Promise<{ found: boolean; prevKv?: EtcdKeyValue }> {
    const { found: [found], values: [value] } = await this.#deleteKeys([key], prevKv, context);
    return found && prevKv ? { found, prevKv: keyValue(key, value, false) } : { found };
  }

  async txn(request: TxnRequest, context: HandlerContext): Promise<RpcResult<TxnResponse>> {
    return await this.#run(async () => {
      const { compares, never } = comparesOf(request.compare);
      const success = request.success.map(opOf);
      const failure = request.failure.map(opOf);
      if (writesKeyTwice(request.success) || writesKeyTwice(request.failure)) {
        return rpcFailure("invalidArgument", DUPLICATE_KEY);
      }
      const keyOf = compares[0]?.key ?? success[0]?.key ?? failure[0]?.key;
      if (keyOf === undefined) {
        // Nothing to read or write: only a lease compare (always 0) decides the branch.
        const succeeded = !never;
        const ops = succeeded ? request.success : request.failure;
        return rpcOk({ header: this.#header(), succeeded, responses: ops.map(() => ({})) });
      }
      // etcd answers a request its cluster cannot run FAILED_PRECONDITION (TinyKV's own Txn says
      // INVALID_ARGUMENT: retrying never helps either way).
      const keys = [...compares, ...success, ...failure].map((entry) => entry.key);
      const spread = spreadOverShards(this.#options.shardOf, keys);
      if (spread !== undefined) return rpcFailure("failedPrecondition", spread);
      const tooLarge = this.#txnAnswerRefusal(request);
      if (tooLarge !== undefined) return tooLarge;
      // A lease compare that fails (a lease is always 0 here) fails the Txn: a compare that can
      // never hold (existence LESS than 0) says so to the shard, which still runs the failure
      // branch atomically.
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

  /**
   * INVALID_ARGUMENT when the answer to a branch of `request` might not fit one message, before
   * anything is proposed (an answer built after the Txn applied could not be sent, and the caller
   * would not learn that it applied). A shard returns at most 2 × `valueBytesMax` bytes of values
   * from one branch; the keys come from the request.
   */
  #txnAnswerRefusal(request: TxnRequest): RpcFailure | undefined {
    for (
      const [branch, ops] of [["success", request.success], ["failure", request.failure]] as const
    ) {
      const bytes = txnAnswerBytesMax(ops, this.#valueBytesMax);
      if (bytes <= this.#room) continue;
      return rpcFailure(
        "invalidArgument",
        `Txn's ${branch} branch could answer ${bytes} bytes (its keys, up to 2 × ` +
          `${this.#valueBytesMax} bytes of values, ${RESPONSE_OP_FRAMING_BYTES} bytes per ` +
          `operation): the most one answer holds is about ${this.#room} bytes ` +
          "(rpc_server.max_message_bytes); nothing was done: read fewer keys per Txn",
      );
    }
    return undefined;
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

  /** The answer to a Range: `kept` (ordered and limited), and the number of keys in the range. */
  #rangeAnswer(request: RangeRequest, kept: readonly KeyValue[], count: number): RangeResponse {
    const kvs = request.countOnly
      ? []
      : kept.map((pair) => keyValue(pair.key, pair.value, request.keysOnly));
    let bytes = 0;
    for (const pair of kvs) bytes += answerBytes(pair.key, pair.value);
    if (bytes > this.#room) throw new Stop(answerTooLarge(this.#room, false)(kvs.length, bytes));
    return {
      header: this.#header(),
      kvs,
      more: !request.countOnly && kvs.length < count,
      count,
    };
  }

  /**
   * Reads a Range over `[key, range_end)`: the pairs it answers with, in its order and within its
   * limit, and the number of keys in the whole range. Values are kept only for pairs it may
   * answer with, copied out of the pages: the first `limit` (in key order), the last `limit`
   * (descending), or every pair when sorting by value, which needs them all. What is kept is
   * bounded: an answer's worth when it is the answer, {@linkcode RANGE_HELD_ANSWERS} otherwise.
   */
  async #readRange(
    request: RangeRequest,
    context: HandlerContext,
  ): Promise<{ kvs: KeyValue[]; count: number }> {
    let count = 0;
    if (request.countOnly) {
      await this.#scanEach(request.key, request.rangeEnd, context, () => count++);
      return { kvs: [], count };
    }
    const limit = request.limit > 0 ? request.limit : Infinity;
    const order = rangeOrderOf(request);
    const byValue = order === "valueAscending" || order === "valueDescending";
    // What is kept is the answer (bounded by one answer's room), or what it is chosen from.
    const keptIsAnswer = order === "keyAscending" ||
      (limit === Infinity && !(byValue && request.keysOnly));
    const held = RANGE_HELD_ANSWERS * this.#room;
    const kept = keptIsAnswer
      ? new KeptPairs(this.#room, Infinity, answerTooLarge(this.#room, true))
      : new KeptPairs(
        held,
        order === "keyDescending" ? limit : Infinity,
        heldTooMuch("Range", held),
      );
    await this.#scanEach(request.key, request.rangeEnd, context, (pair) => {
      count++;
      if (order === "keyAscending" && kept.length >= limit) return;
      kept.push(pair.key, request.keysOnly && !byValue ? EMPTY : pair.value);
    });
    const pairs = kept.pairs();
    if (order === "keyDescending") return { kvs: pairs.reverse().slice(0, limit), count };
    if (byValue) {
      // Array sort is stable: pairs of one value stay in key order.
      const sign = order === "valueDescending" ? -1 : 1;
      pairs.sort((a, b) => sign * compareBytes(a.value, b.value));
      return { kvs: pairs.slice(0, limit), count };
    }
    return { kvs: pairs, count };
  }

  /**
   * Pages through `[start, rangeEnd)` (etcd's `range_end`; `\0` is "to the end") in key order,
   * giving `visit` each pair (a view into its page: copy what is kept). Stops with CANCELLED when
   * the caller went away.
   */
  async #scanEach(
    start: Uint8Array,
    rangeEnd: Uint8Array,
    context: HandlerContext,
    visit: (pair: KeyValue) => void,
  ): Promise<void> {
    const end = rangeEnd.length === 1 && rangeEnd[0] === 0 ? EMPTY : rangeEnd;
    if (end.length > 0 && compareBytes(start, end) >= 0) return;
    for (let from = start;;) {
      if (context.signal.aborted) {
        throw new Stop(rpcFailure("cancelled", "The caller went away while the range was read"));
      }
      const page = await this.#call(
        this.#options.kv.Scan({ start: from, end, limit: SCAN_LIMIT_MAX }, context),
      );
      for (const pair of page.kvs) visit(pair);
      if (!page.more) return;
      from = page.next;
    }
  }

  /**
   * Runs a Range or DeleteRange over a range if fewer than `rangesInFlightMax` run: each may hold
   * up to {@linkcode RANGE_HELD_ANSWERS} answers' worth of keys and values, so their number
   * bounds the gateway's memory. Past it, RESOURCE_EXHAUSTED (retry later), not a queue.
   */
  async #inRangeSlot<T>(work: () => Promise<RpcResult<T>>): Promise<RpcResult<T>> {
    const max = this.#rangesInFlightMax;
    if (this.#rangesInFlight >= max) {
      return rpcFailure(
        "resourceExhausted",
        `Cannot start another read of a range on this gateway: ${max} Range and DeleteRange ` +
          "calls over ranges are in flight, the most it runs at once (RANGES_IN_FLIGHT_MAX); " +
          "retry later",
      );
    }
    this.#rangesInFlight++;
    try {
      return await work();
    } finally {
      this.#rangesInFlight--;
      assert(this.#rangesInFlight >= 0, "More ranges ended than started");
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

/** What a pair takes in an answer: its key, its value and a `KeyValue`'s framing. */
function answerBytes(key: Uint8Array, value: Uint8Array): number {
  return key.length + value.length + KEY_VALUE_FRAMING_BYTES;
}

/**
 * The pairs a Range or DeleteRange keeps while it reads, copied out of their pages (a view would
 * hold its whole page), and their answer bytes, at most `bytesMax`: past it, the call stops with
 * what `full` says. With a `window`, only the last `window` pairs pushed are kept.
 */
class KeptPairs {
  readonly #bytesMax: number;
  readonly #window: number;
  readonly #full: (pairs: number, bytes: number) => RpcFailure;
  readonly #pairs: Array<KeyValue | undefined> = [];
  /** The index of the oldest pair kept; the ones before it were dropped from the window. */
  #first = 0;
  #bytes = 0;

  constructor(
    bytesMax: number,
    window: number,
    full: (pairs: number, bytes: number) => RpcFailure,
  ) {
    this.#bytesMax = bytesMax;
    this.#window = window;
    this.#full = full;
  }

  /** How many pairs are kept. */
  get length(): number {
    return this.#pairs.length - this.#first;
  }

  push(key: Uint8Array, value: Uint8Array): void {
    this.#pairs.push({ key: key.slice(), value: value.length === 0 ? EMPTY : value.slice() });
    this.#bytes += answerBytes(key, value);
    if (this.length > this.#window) {
      const dropped = this.#pairs[this.#first]!;
      this.#pairs[this.#first++] = undefined;
      this.#bytes -= answerBytes(dropped.key, dropped.value);
      // Amortized: the array is shifted once half of it was dropped.
      if (this.#first > 1024 && this.#first * 2 > this.#pairs.length) {
        this.#pairs.splice(0, this.#first);
        this.#first = 0;
      }
    }
    // Invariant: what is kept stays within its bound, or the call stops.
    if (this.#bytes > this.#bytesMax) throw new Stop(this.#full(this.length, this.#bytes));
  }

  /** The pairs kept, oldest first. */
  pairs(): KeyValue[] {
    return this.#pairs.slice(this.#first) as KeyValue[];
  }
}

/** The refusal of a Range answer past `room` bytes (`atLeast`: found while it was read). */
function answerTooLarge(
  room: number,
  atLeast: boolean,
): (pairs: number, bytes: number) => RpcFailure {
  return (pairs, bytes) =>
    rpcFailure(
      "resourceExhausted",
      `Range answer would hold ${atLeast ? "at least " : ""}${pairs} keys and ${bytes} bytes ` +
        `of keys, values and their framing: the most one answer holds is about ${room} bytes ` +
        "(rpc_server.max_message_bytes); ask with a limit, or keys only, and continue from " +
        "the last key",
    );
}

/** The refusal of a `call` that would hold more than `bytesMax` while it reads its range. */
function heldTooMuch(call: string, bytesMax: number): (pairs: number, bytes: number) => RpcFailure {
  return (pairs, bytes) =>
    rpcFailure(
      "resourceExhausted",
      `${call} would hold ${pairs} keys and ${bytes} bytes of keys, values and their framing ` +
        `while it reads the range: the most it may is ${bytesMax} bytes ` +
        `(${RANGE_HELD_ANSWERS} answers of rpc_server.max_message_bytes less 64 KiB); ask for a ` +
        "smaller range, or a smaller limit, and continue from the last key",
    );
}

/**
 * A Range's or DeleteRange's `key` and `range_end` checked with the names the caller sent (else a
 * range would be refused naming the `start` of the Scan it makes, or the `success[0].key` of a
 * Txn): one key 1 B to 4 KiB; a range's bounds at most 4 KiB each.
 */
function keysProblem(key: Uint8Array, rangeEnd: Uint8Array): RpcFailure | undefined {
  const checks = rangeEnd.length === 0
    ? [validateKey(key, "key")]
    : [key, rangeEnd].map((bound, i) =>
      bound.length > KEY_BYTES_MAX ? validateKey(bound, i === 0 ? "key" : "range_end") : undefined
    );
  for (const check of checks) {
    if (check !== undefined && check.kind !== "ok") {
      return rpcFailure("invalidArgument", check.message);
    }
  }
  return undefined;
}

/** A batch of a range delete that failed, and how many keys it held. */
interface FailedDelete {
  readonly failure: RpcFailure;
  readonly keys: number;
}

/**
 * The batches a range delete deletes `keys` in (in their order, each batch in one step): keys of
 * one shard, at most {@linkcode TXN_OPS_MAX} of them, whose Txn of deletes stays within
 * {@linkcode txnBytesMax}. With `valueBytes` (prev_kv: each key's value as scanned), a batch's
 * values add up to at most `valueBytesMax`, half of what a Txn may return, so a value that grows
 * after the scan seldom makes the batch too large to return (then it is deleted key by key). A key
 * whose shard is not known (no shard map yet) is a batch of its own.
 */
export function deleteBatchesOf(
  keys: readonly Uint8Array[],
  options: {
    shardOf: (key: Uint8Array) => number | undefined;
    valueBytes?: readonly number[];
    valueBytesMax: number;
  },
): Uint8Array[][] {
  const bytesMax = txnBytesMax(options.valueBytesMax);
  const open = new Map<number, { keys: Uint8Array[]; bytes: number; values: number }>();
  const batches: Uint8Array[][] = [];
  for (const [i, key] of keys.entries()) {
    const shard = options.shardOf(key);
    if (shard === undefined) {
      batches.push([key]);
      continue;
    }
    const bytes = key.length + TXN_ENTRY_OVERHEAD_BYTES;
    const values = options.valueBytes?.[i] ?? 0;
    let batch = open.get(shard);
    if (
      batch !== undefined &&
      (batch.keys.length === TXN_OPS_MAX || batch.bytes + bytes > bytesMax ||
        batch.values + values > options.valueBytesMax)
    ) {
      batch = undefined;
    }
    if (batch === undefined) {
      batch = { keys: [], bytes: 0, values: 0 };
      open.set(shard, batch);
      batches.push(batch.keys);
    }
    batch.keys.push(key);
    batch.bytes += bytes;
    batch.values += values;
  }
  return batches;
}

/**
 * The failure of a range delete that stopped after `failures`: how many of the keys were
 * deleted; the first failure's status when nothing changed, else DEADLINE_EXCEEDED.
 */
function partialDelete(
  failures: readonly FailedDelete[],
  counts: { deleted: number; tried: number; total: number },
): RpcFailure {
  const first = failures[0].failure;
  const unknown = failures
    .filter(({ failure }) => outcomeOf(failure) === "unknown")
    .reduce((sum, { keys }) => sum + keys, 0);
  const untried = counts.total - counts.tried;
  const why = `a delete failed (${statusName(first)}: ${first.message})`;
  if (counts.deleted === 0 && unknown === 0) {
    return rpcFailure(
      first.kind,
      `DeleteRange deleted 0 of the range's ${counts.total} keys: ${why}, and ${untried} ` +
        "were not tried; nothing changed",
    );
  }
  return rpcFailure(
    "deadlineExceeded",
    `Outcome unknown: DeleteRange deleted ${counts.deleted} of the range's ${counts.total} ` +
      `keys, then ${why}; ${unknown} keys of failed deletes may have been deleted and ` +
      `${untried} keys were not tried: read the range, or delete it again`,
  );
}

type RangeOrder = "keyAscending" | "keyDescending" | "valueAscending" | "valueDescending";

/**
 * The order a Range answers in, as etcd sorts: order NONE with a target other than the key is
 * ascending by that target. Every version and revision TinyKV reports is 1, so sorting by them
 * (a stable sort of equal targets) keeps key order, in either direction.
 */
function rangeOrderOf(request: RangeRequest): RangeOrder {
  const descending = request.sortOrder === RangeRequest_SortOrder.DESCEND;
  switch (request.sortTarget) {
    case RangeRequest_SortTarget.KEY:
      return descending ? "keyDescending" : "keyAscending";
    case RangeRequest_SortTarget.VALUE:
      return descending ? "valueDescending" : "valueAscending";
    default:
      return "keyAscending";
  }
}

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
  const targets: number[] = Object.values(RangeRequest_SortTarget);
  if (!targets.includes(request.sortTarget)) {
    return `Range sorted by target ${request.sortTarget}: expected KEY, VERSION, CREATE, MOD or ` +
      "VALUE";
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

/** A Txn's compares as TinyKV's, and whether one of them can never hold. */
function comparesOf(list: readonly Compare[]): { compares: TinyKvTxnCompare[]; never: boolean } {
  const compares: TinyKvTxnCompare[] = [];
  let never = false;
  for (const compare of list) {
    const mapped = compareOf(compare);
    if (mapped === "always") continue;
    if (mapped === "never") never = true;
    else compares.push(mapped);
  }
  return { compares, never };
}

/** The operand field of each compare target (the `target_union` member it must use). */
const OPERAND_FIELDS = {
  [Compare_CompareTarget.VERSION]: ["version", "version"],
  [Compare_CompareTarget.CREATE]: ["createRevision", "create_revision"],
  [Compare_CompareTarget.MOD]: ["modRevision", "mod_revision"],
  [Compare_CompareTarget.VALUE]: ["value", "value"],
  [Compare_CompareTarget.LEASE]: ["lease", "lease"],
} as const;

/**
 * An etcd compare as TinyKV's: on the value, or on existence (version, create and mod revision
 * are 1 for a key that exists, 0 for one that does not, and are compared only against 0). A lease
 * is always 0: its compare against 0 is decided here ("always" or "never"). The operand must be
 * the target's member of `target_union` (or none: 0, or an empty value, as etcd reads it).
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
  const fields = OPERAND_FIELDS[compare.target as keyof typeof OPERAND_FIELDS];
  if (fields === undefined) {
    throw new Stop(
      rpcFailure("invalidArgument", `Compare with target ${compare.target}: unknown`),
    );
  }
  for (const [field, name] of Object.values(OPERAND_FIELDS)) {
    if (field === fields[0] || compare[field] === undefined) continue;
    throw new Stop(rpcFailure(
      "invalidArgument",
      `Compare on key ${describeKey(compare.key)} gives its operand in "${name}": its target ` +
        `compares "${fields[1]}"`,
    ));
  }
  if (compare.target === Compare_CompareTarget.VALUE) {
    return {
      key: compare.key,
      result,
      target: TxnCompare_Target.VALUE,
      value: compare.value ?? EMPTY,
    };
  }
  const operand = compare.version ?? compare.createRevision ?? compare.modRevision ??
    compare.lease ?? 0;
  if (operand !== 0) {
    const what = compare.target === Compare_CompareTarget.LEASE
      ? "a lease (TinyKV has no leases)"
      : "a revision or version (TinyKV keeps no per-key history)";
    throw new Stop(rpcFailure(
      "unimplemented",
      `Compare on key ${describeKey(compare.key)} against ${operand}: ${what}; compare against 0 ` +
        "(the key is absent) instead",
    ));
  }
  if (compare.target === Compare_CompareTarget.LEASE) {
    const holds = compare.result === Compare_CompareResult.EQUAL;
    return holds ? "always" : "never";
  }
  return { key: compare.key, result, target: TxnCompare_Target.EXISTS, value: EMPTY };
}

/**
 * Whether a Txn branch writes one key twice — two puts, or a put and a delete — which etcd refuses
 * ("duplicate key given in txn request"). As in etcd, reads of any key and several deletes of one
 * key are allowed, and each branch is checked on its own.
 */
function writesKeyTwice(ops: readonly RequestOp[]): boolean {
  const hex = (key: Uint8Array) => Array.from(key, (b) => b.toString(16).padStart(2, "0")).join("");
  const deleted = new Set<string>();
  for (const op of ops) {
    if (op.requestDeleteRange !== undefined) deleted.add(hex(op.requestDeleteRange.key));
  }
  const put = new Set<string>();
  for (const op of ops) {
    if (op.requestPut === undefined) continue;
    const key = hex(op.requestPut.key);
    if (put.has(key) || deleted.has(key)) return true;
    put.add(key);
  }
  return false;
}

/**
 * The most bytes of keys, values and framing the answer to a branch of `ops` can hold: the keys
 * its operations return (reads unless counts only, writes with `prev_kv`), their framing, and the
 * values, at most one per operation that returns one and 2 × `valueBytesMax` in all (what a shard
 * lets one branch return).
 */
function txnAnswerBytesMax(ops: readonly RequestOp[], valueBytesMax: number): number {
  let bytes = 0;
  let values = 0;
  for (const op of ops) {
    bytes += RESPONSE_OP_FRAMING_BYTES;
    const range = op.requestRange;
    const written = op.requestPut ?? op.requestDeleteRange;
    if (range !== undefined && !range.countOnly) {
      bytes += range.key.length;
      if (!range.keysOnly) values++;
    } else if (written !== undefined && written.prevKv) {
      bytes += written.key.length;
      values++;
    }
  }
  return bytes + Math.min(values, 2) * valueBytesMax;
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
    why: ETCD_AUTH_WHY,
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
