/**
 * The kvnode's `NodeAdmin` service: replica lifecycle (create, membership changes, leadership
 * transfer, deleting a replica outside its group), each fenced by cluster id and the shard's expected conf epoch, the node's status
 * as placement pulls it, and a shard's export for backups (`export_shard.ts`).
 *
 * @module
 */
import {
  ChangeMembershipRequest_Change,
  NodeAdminService,
  type NodeStatusResponse,
  type Peer,
  type ReplicaStatus,
  ReplicaStatus_Role,
} from "@tinykv/proto/tinykv/v1";
import {
  bindService,
  MESSAGE_BYTES_MAX_DEFAULT,
  RpcError,
  rpcFailure,
  rpcOk,
  type RpcResult,
  type ServiceBinding,
} from "@tinykv/rpc";
import { HASH_SPACE, isHashRange } from "@tinykv/shard";
import type { LogIndex, PeerId, Role } from "@tinykv/raft";
import type { AdminResult } from "./driver.ts";
import type { KvDriver, KvReplica } from "./kv_app.ts";
import type { PeerAddress } from "./replica.ts";
import { unreachable } from "./_assert.ts";
import { hashSpacesInSlices } from "./state_machine.ts";
import { exportShardHandler } from "./export_shard.ts";
import { type StatusAnswer, StatusVersions } from "./status_versions.ts";
import { shardId } from "@tinykv/shard";

/** Who this node is, as admin calls check it. */
export interface NodeIdentity {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly address: string;
  readonly startedAtMs: number;
}

/** Options of {@linkcode nodeAdminService}. */
export interface AdminServiceOptions {
  readonly driver: KvDriver;
  readonly identity: NodeIdentity;
  /** The longest an admin call waits for its change to apply. */
  readonly changeTimeoutMsMax: number;
  /** Bytes of the node's data file up to its last page (`NodeStore.usedBytes`); 0 when not given. */
  readonly diskBytes?: () => number;
  /** The driver's wall clock in Unix milliseconds (default `Date.now`). */
  readonly now?: () => number;
  /** The server's largest message (`rpc_server.max_message_bytes`), for export chunks. */
  readonly messageBytesMax?: number;
}

const ROLE: Record<Role, ReplicaStatus_Role> = {
  follower: ReplicaStatus_Role.FOLLOWER,
  preCandidate: ReplicaStatus_Role.PRE_CANDIDATE,
  candidate: ReplicaStatus_Role.CANDIDATE,
  leader: ReplicaStatus_Role.LEADER,
};

/** The `NodeAdmin` service of a kvnode. */
export function nodeAdminService(options: AdminServiceOptions): ServiceBinding {
  const { driver, identity } = options;
  const quietStatuses = new QuietStatusCache();
  const versions = new StatusVersions();
  // One data hash at a time: each holds a read view (an LMDB reader) while it runs.
  const hashing = { running: false };
  const clusterCheck = (clusterId: string) =>
    clusterId === identity.clusterId ? undefined : rpcFailure(
      "failedPrecondition",
      `Node "${identity.nodeId}" belongs to cluster "${identity.clusterId}", not "${clusterId}"`,
    );
  return bindService(NodeAdminService, {
    CreateReplica: async (request) => {
      const refused = clusterCheck(request.clusterId) ?? checkCreate(request);
      if (refused !== undefined) return refused;
      const peers = [...request.voters, ...request.learners].map(peerAddress);
      const result = await driver.createReplica({
        shardId: shardId(request.shardId),
        peerId: request.peerId,
        range: { lo: request.rangeLo, hi: request.rangeHi },
        peers,
        initialConfState: {
          voters: request.voters.map((p) => p.peerId as PeerId),
          learners: request.learners.map((p) => p.peerId as PeerId),
          epoch: request.confEpoch as LogIndex,
        },
      });
      return fromAdmin(result, (value) => ({ created: value.created }));
    },
    ChangeMembership: async (request) => {
      const refused = clusterCheck(request.clusterId);
      if (refused !== undefined) return refused;
      const change = CHANGES[request.change];
      if (change === undefined) {
        return rpcFailure(
          "invalidArgument",
          `Field "change" is ${request.change}: expected 1 to 3`,
        );
      }
      if (request.peer === undefined || request.peer.peerId === 0) {
        return rpcFailure("invalidArgument", 'Field "peer" is missing or has peer_id 0');
      }
      const result = await driver.changeMembership({
        shardId: shardId(request.shardId),
        expectedConfEpoch: request.expectedConfEpoch,
        change,
        peer: peerAddress(request.peer),
        timeoutMs: clampTimeout(request.timeoutMs, options.changeTimeoutMsMax),
      });
      return fromAdmin(result, (value) => ({ confEpoch: value.confEpoch }));
    },
    TransferLeader: async (request) => {
      const refused = clusterCheck(request.clusterId);
      if (refused !== undefined) return refused;
      const result = await driver.transferLeader({
        shardId: shardId(request.shardId),
        expectedConfEpoch: request.expectedConfEpoch,
        targetPeerId: request.targetPeerId,
      });
      return fromAdmin(result, () => ({}));
    },
    DeleteReplica: async (request) => {
      const refused = clusterCheck(request.clusterId);
      if (refused !== undefined) return refused;
      if (request.peerId === 0) return rpcFailure("invalidArgument", 'Field "peer_id" is 0');
      const result = await driver.deleteReplica({
        shardId: shardId(request.shardId),
        peerId: request.peerId,
        confEpoch: request.confEpoch,
      });
      return fromAdmin(result, (value) => ({ deleted: value.deleted }));
    },
    ExportShard: exportShardHandler({
      driver,
      nodeId: identity.nodeId,
      clusterId: identity.clusterId,
      now: options.now ?? Date.now,
      messageBytesMax: options.messageBytesMax ?? MESSAGE_BYTES_MAX_DEFAULT,
    }),
    Status: async (request, context) => {
      let answer: StatusAnswer;
      if (!request.withDataHash) {
        const current = await driver.inspect((all) =>
          all.map((replica) => quietStatuses.get(replica, () => replicaStatus(replica)))
        );
        const since = request.sinceStartedAtMs === identity.startedAtMs ? request.sinceVersion : 0;
        answer = versions.answer(current, since);
      } else {
        if (hashing.running) {
          return rpcFailure(
            "resourceExhausted",
            `Node "${identity.nodeId}" is already hashing its data for another Status call: ` +
              "retry later",
          );
        }
        hashing.running = true;
        try {
          // Statuses with hashes are never a delta's base: version 0 asks for every replica.
          const replicas = await hashedStatuses(driver, context.signal);
          answer = { version: 0, delta: false, replicas, removed: [] };
        } finally {
          hashing.running = false;
        }
      }
      const response: NodeStatusResponse = {
        nodeId: identity.nodeId,
        clusterId: identity.clusterId,
        address: identity.address,
        startedAtMs: identity.startedAtMs,
        replicas: answer.replicas,
        statusVersion: answer.version,
        delta: answer.delta,
        removed: answer.removed,
        turnMsMax: Math.ceil(driver.turnStats.turnMsMax),
        slowTurns: driver.turnStats.slowTurns,
        turnWriteMs: Math.ceil(driver.turnStats.turnWriteMs),
        diskBytes: options.diskBytes?.() ?? 0,
      };
      if (request.resetTurnStats) driver.resetTurnStats();
      return rpcOk(response);
    },
  });
}

const CHANGES: Record<number, "addLearner" | "promote" | "remove" | undefined> = {
  [ChangeMembershipRequest_Change.ADD_LEARNER]: "addLearner",
  [ChangeMembershipRequest_Change.PROMOTE]: "promote",
  [ChangeMembershipRequest_Change.REMOVE]: "remove",
};

function checkCreate(request: {
  shardId: number;
  peerId: number;
  rangeLo: number;
  rangeHi: number;
  voters: Peer[];
  learners: Peer[];
}): RpcResult<never> | undefined {
  if (request.peerId === 0) return rpcFailure("invalidArgument", 'Field "peer_id" is 0');
  const range = { lo: request.rangeLo, hi: request.rangeHi };
  if (!isHashRange(range) || range.hi > HASH_SPACE) {
    return rpcFailure(
      "invalidArgument",
      `Range [${range.lo}, ${range.hi}) is not a hash range: expected 0 <= lo < hi <= 2^32`,
    );
  }
  const members = [...request.voters, ...request.learners];
  if (request.voters.length === 0) return rpcFailure("invalidArgument", 'Field "voters" is empty');
  if (!members.some((p) => p.peerId === request.peerId)) {
    return rpcFailure(
      "invalidArgument",
      `Peer ${request.peerId} is not among the voters and learners it is created with`,
    );
  }
  const bad = members.find((p) => p.peerId === 0 || p.nodeId === "" || p.address === "");
  if (bad !== undefined) {
    return rpcFailure("invalidArgument", `Peer ${bad.peerId} lacks a peer id, node id or address`);
  }
  return undefined;
}

function peerAddress(peer: Peer): PeerAddress {
  return { peerId: peer.peerId, nodeId: peer.nodeId, address: peer.address };
}

function clampTimeout(timeoutMs: number, max: number): number {
  return timeoutMs <= 0 ? max : Math.min(timeoutMs, max);
}

function fromAdmin<T, R>(result: AdminResult<T>, map: (value: T) => R): RpcResult<R> {
  switch (result.kind) {
    case "ok":
      return rpcOk(map(result.value));
    case "notFound":
      return rpcFailure("failedPrecondition", result.message);
    case "staleEpoch":
      return rpcFailure("failedPrecondition", result.message);
    case "notLeader": {
      const hint = result.leader === undefined
        ? " (no leader known)"
        : ` (leader is "${result.leader.nodeId}" at ${result.leader.address})`;
      return rpcFailure("unavailable", `${result.message}${hint}`);
    }
    case "invalid":
      return rpcFailure("invalidArgument", result.message);
    case "unavailable":
      return rpcFailure("unavailable", result.message);
    case "timeout":
      return rpcFailure("deadlineExceeded", result.message);
    default: {
      const never: never = result;
      return unreachable(never, "admin result");
    }
  }
}

/**
 * The statuses of quiesced replicas, which cannot change until something wakes them (placement
 * asks every second; with a thousand quiet replicas, building each status anew is most of an idle
 * kvnode's work). An entry is reused only while its replica stays quiesced at the same applied
 * index, log length, conf epoch, leader and count of reads served.
 */
class QuietStatusCache {
  readonly #entries = new WeakMap<KvReplica, { key: string; status: ReplicaStatus }>();

  get(replica: KvReplica, build: () => ReplicaStatus): ReplicaStatus {
    if (!replica.node.quiesced) return build();
    const { applied, confState } = replica.log.appliedState;
    const key = `${applied}/${replica.log.entryCount}/${confState.epoch}/${replica.node.leader}/` +
      `${replica.counters.reads}`;
    const cached = this.#entries.get(replica);
    if (cached?.key === key) return cached.status;
    const status = build();
    this.#entries.set(replica, { key, status });
    return status;
  }
}

/**
 * Each replica's status with the hash of its data at that status's applied index: the status and
 * a read view are taken between turns, one replica at a time, and the view is hashed outside the
 * driver's loop in slices (state_machine.ts `hashSpacesInSlices`), then closed. Stops when the
 * caller cancels.
 */
async function hashedStatuses(driver: KvDriver, signal: AbortSignal): Promise<ReplicaStatus[]> {
  const shards = await driver.inspect((all) => all.map((replica) => replica.shardId));
  const out: ReplicaStatus[] = [];
  for (const shard of shards) {
    if (signal.aborted) {
      throw new RpcError(rpcFailure("cancelled", "The Status call was cancelled"));
    }
    const taken = await driver.inspect((all) => {
      const replica = all.find((r) => r.shardId === shard);
      return replica === undefined
        ? undefined
        : { status: replicaStatus(replica), view: replica.openDataView() };
    });
    if (taken === undefined) continue; // Removed meanwhile.
    try {
      out.push({ ...taken.status, dataHash: await hashSpacesInSlices(taken.view.spaces) });
    } finally {
      taken.view.close();
    }
  }
  return out;
}

function replicaStatus(replica: KvReplica): ReplicaStatus {
  const status = replica.node.status();
  const { confState, applied } = replica.log.appliedState;
  const toPeer = (peerId: number): Peer => {
    const known = replica.peers.get(peerId);
    return { peerId, nodeId: known?.nodeId ?? "", address: known?.address ?? "" };
  };
  const size = replica.machine.dataSize();
  return {
    shardId: replica.shardId,
    peerId: replica.peerId,
    role: confState.learners.includes(replica.peerId as PeerId)
      ? ReplicaStatus_Role.LEARNER
      : ROLE[status.role],
    term: status.term,
    commitIndex: status.commit,
    appliedIndex: applied,
    confEpoch: confState.epoch,
    voters: confState.voters.map(toPeer),
    learners: confState.learners.map(toPeer),
    leaderPeerId: status.leader ?? 0,
    rangeLo: replica.record.range.lo,
    rangeHi: replica.record.range.hi,
    logEntries: replica.log.entryCount,
    logBytes: replica.log.entryBytes,
    dataKeys: size.keys,
    dataBytes: size.bytes,
    dataHash: "",
    progress: status.peers.map((p) => ({ peerId: p.id, matchIndex: p.match })),
    proposals: replica.counters.proposals,
    reads: replica.counters.reads,
  };
}
