/**
 * `tinykv backup DIR` and `tinykv restore DIR`.
 *
 * **Backup.** Placement's `ClusterState` names every shard, its range and leader. Each shard is
 * copied from its leader with `NodeAdmin.ExportShard`: the leader passes a linearizable read
 * barrier, then streams every pair at one applied index (export_shard.ts in the kvnode). The pairs
 * go to `DIR/shard-<id>.pairs`, framed as `@tinykv/shard` `framePair` does; the kvnode's SHA-256
 * over that framing must match the file's, and its key and byte counts the file's. A shard whose
 * leader moved is asked again, of the leader it names or, after a new `ClusterState`, of its new
 * leader, until `--timeout` per shard. The manifest (`DIR/manifest.json`, {@linkcode Manifest}) is
 * written last, and atomically: a directory without one is not a backup.
 *
 * So each shard is a consistent snapshot holding every write acknowledged before the command
 * started; shards are taken one after another, so the backup as a whole is not one instant
 * (a write acknowledged while it runs may be in it or not).
 *
 * **Restore** builds a new cluster's data from a backup: it checks everything first (the
 * manifest, that the ranges cover the hash space once, each file's SHA-256, counts and framing,
 * every key's length and shard), then refuses a cluster that holds any key, then writes every
 * pair through the gateways (`Put`, {@linkcode RESTORE_IN_FLIGHT} at a time, each retried until
 * its deadline). Keys are routed by the new cluster's shard map, so it may have a different
 * number of shards.
 *
 * @module
 */
import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import {
  type ExportShardChunk,
  NodeAdminService,
  PlacementService,
  type PlacementShardState,
} from "@tinykv/proto/tinykv/v1";
import {
  type ClientSecurity,
  createGrpcClient,
  failureFromError,
  type RpcFailure,
  rpcFailure,
  unaryCaller,
} from "@tinykv/rpc";
import {
  compareBytes,
  framePair,
  FrameReader,
  HASH_SPACE,
  KEY_BYTES_MAX,
  keyHash,
  validateKey,
} from "@tinykv/shard";
import { TinyKvClient, TinyKvError } from "@tinykv/client";
import { EXIT, exitCodeOf } from "./exit_codes.ts";
import {
  ADMIN_MESSAGE_BYTES_MAX,
  PlacementConnection,
  RETRY_PAUSE_MS,
} from "./placement_connection.ts";
import { formatTable } from "./render.ts";

/** The format name in every manifest this version writes and reads. */
export const BACKUP_FORMAT = "tinykv-backup/1";
/** The manifest's file name inside a backup directory. */
export const MANIFEST_FILE = "manifest.json";
/** The default bound on each shard's export, retries included, and on each restored write. */
export const BACKUP_TIMEOUT_MS_DEFAULT = 60_000;
/** Shards exported at once. */
export const BACKUP_SHARDS_IN_FLIGHT = 2;
/** Writes in flight during a restore. */
export const RESTORE_IN_FLIGHT = 64;
/** Bytes of keys and values in flight during a restore (one pair over it goes alone). */
export const RESTORE_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
/** The largest value a backup may hold: the largest `storage.value_bytes_max` a server allows. */
export const BACKUP_VALUE_BYTES_MAX = 64 * 1024 * 1024;
/** The largest message of an export: a chunk ends after the pair that passes 1 MiB. */
const EXPORT_MESSAGE_BYTES_MAX = BACKUP_VALUE_BYTES_MAX + KEY_BYTES_MAX + 2 * 1024 * 1024;
/** Bytes read from a shard file at a time. */
const READ_BYTES = 1024 * 1024;

/** One shard of a backup. */
export interface ManifestShard {
  shard_id: number;
  range_lo: number;
  range_hi: number;
  /** The applied index (and term, conf epoch, node) the copy is exactly the state at. */
  applied_index: number;
  term: number;
  conf_epoch: number;
  node_id: string;
  /** The file of its pairs, in the backup directory. */
  file: string;
  keys: number;
  /** Bytes of keys and values. */
  bytes: number;
  /** SHA-256 (hex) of the file. */
  sha256: string;
}

/** `manifest.json`. */
export interface Manifest {
  format: typeof BACKUP_FORMAT;
  cluster_id: string;
  /** When the backup started, ISO 8601. */
  started_at: string;
  finished_at: string;
  shard_map_version: number;
  keys: number;
  bytes: number;
  shards: ManifestShard[];
}

/** Where a backup command writes. */
export interface BackupOutput {
  out(line: string): Promise<void>;
  err(line: string): Promise<void>;
}

/** Options of {@linkcode runBackup}. */
export interface BackupOptions {
  readonly placements: readonly string[];
  readonly dir: string;
  /** Per shard, retries included; default {@linkcode BACKUP_TIMEOUT_MS_DEFAULT}. */
  readonly timeoutMs?: number;
  readonly json: boolean;
  readonly security?: ClientSecurity;
}

/** Options of {@linkcode runRestore}. */
export interface RestoreOptions {
  readonly endpoints: readonly string[];
  readonly dir: string;
  /** Per write, retries included; default {@linkcode BACKUP_TIMEOUT_MS_DEFAULT}. */
  readonly timeoutMs?: number;
  readonly json: boolean;
  readonly security?: ClientSecurity;
  /** The largest gRPC message the client sends or receives. */
  readonly maxMessageBytes: number;
}

/** A failure that ends the command, with its status-table kind. */
class CommandFailure extends Error {
  readonly failure: RpcFailure;

  constructor(failure: RpcFailure) {
    super(failure.message);
    this.failure = failure;
  }
}

function failWith(kind: RpcFailure["kind"], message: string): never {
  throw new CommandFailure(rpcFailure(kind, message));
}

async function reportFailure(
  error: unknown,
  json: boolean,
  io: BackupOutput,
  extra: Record<string, unknown> = {},
): Promise<number> {
  let failure: RpcFailure;
  let outcomeUnknown = false;
  if (error instanceof CommandFailure) failure = error.failure;
  else if (error instanceof TinyKvError) {
    failure = rpcFailure(error.code, error.message);
    outcomeUnknown = error.outcomeUnknown;
  } else throw error;
  if (json) {
    const { kind: code, message } = failure;
    await io.out(JSON.stringify({ error: { code, message, outcomeUnknown, ...extra } }));
  } else {
    await io.err(`error: ${failure.kind}: ${failure.message}`);
  }
  return exitCodeOf(failure.kind);
}

// ---- Backup ----

/** Runs `tinykv backup DIR`; returns the exit code. */
export async function runBackup(options: BackupOptions, io: BackupOutput): Promise<number> {
  const connection = new PlacementConnection(options.placements, options.security);
  const timeoutMs = options.timeoutMs ?? BACKUP_TIMEOUT_MS_DEFAULT;
  let created: { dirMade: boolean } | undefined;
  try {
    created = await prepareEmptyDir(options.dir);
    const startedAt = new Date();
    const state = await clusterState(connection, timeoutMs);
    if (!state.bootstrapped || state.shards.length === 0) {
      failWith("unavailable", "The cluster has no shards yet: placement has not bootstrapped it");
    }
    const addresses = new Map(state.nodes.map((n) => [n.nodeId, n.address]));
    const clusterId = await findClusterId([...addresses.values()], options.security, timeoutMs);
    const context: ExportContext = {
      connection,
      security: options.security,
      clusterId,
      dir: options.dir,
      timeoutMs,
      addresses,
    };
    const shards = [...state.shards].sort((a, b) => a.shardId - b.shardId);
    const done: ManifestShard[] = [];
    const queue = [...shards];
    await Promise.all(
      Array.from({ length: Math.min(BACKUP_SHARDS_IN_FLIGHT, queue.length) }, async () => {
        for (let shard = queue.shift(); shard !== undefined; shard = queue.shift()) {
          done.push(await exportWithRetries(context, shard));
        }
      }),
    );
    done.sort((a, b) => a.shard_id - b.shard_id);
    const manifest: Manifest = {
      format: BACKUP_FORMAT,
      cluster_id: clusterId,
      started_at: startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      shard_map_version: Number(state.shardMapVersion),
      keys: done.reduce((sum, s) => sum + s.keys, 0),
      bytes: done.reduce((sum, s) => sum + s.bytes, 0),
      shards: done,
    };
    const problem = checkManifest(manifest);
    if (problem !== undefined) failWith("unavailable", `The shards copied do not fit: ${problem}`);
    const temporary = `${options.dir}/${MANIFEST_FILE}.partial`;
    await onDisk("write", temporary, async () => {
      await syncDir(options.dir); // the shard files' renames, before the manifest names them
      await writeSynced(
        temporary,
        new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n"),
      );
      await Deno.rename(temporary, `${options.dir}/${MANIFEST_FILE}`);
      await syncDir(options.dir);
    });
    if (options.json) {
      await io.out(JSON.stringify({ ok: true, dir: options.dir, manifest }));
    } else {
      const rows = done.map((s) => [
        String(s.shard_id),
        String(s.keys),
        String(s.bytes),
        String(s.applied_index),
        s.node_id,
      ]);
      for (const line of formatTable(["SHARD", "KEYS", "BYTES", "APPLIED", "FROM NODE"], rows)) {
        await io.out(line);
      }
      await io.out(
        `Backed up ${manifest.keys} keys (${manifest.bytes} bytes) of ${done.length} shards ` +
          `of cluster ${clusterId} to ${options.dir}`,
      );
    }
    return EXIT.ok;
  } catch (error) {
    // A failed backup leaves nothing behind: what it wrote into DIR goes (DIR too if it made it),
    // so the same command can run again.
    if (created !== undefined) await removeWritten(options.dir, created.dirMade);
    return await reportFailure(error, options.json, io);
  } finally {
    connection.close();
  }
}

/** Removes the files a failed backup wrote in `dir` (it was empty), and `dir` if it made it. */
async function removeWritten(dir: string, dirMade: boolean): Promise<void> {
  try {
    if (dirMade) await Deno.remove(dir, { recursive: true });
    else {
      for await (const entry of Deno.readDir(dir)) {
        if (/^shard-\d+\.pairs(\.partial)?$|^manifest\.json\.partial$/.test(entry.name)) {
          await Deno.remove(`${dir}/${entry.name}`);
        }
      }
    }
  } catch {
    // Best effort: the failure being reported matters more.
  }
}

interface ExportContext {
  readonly connection: PlacementConnection;
  readonly security: ClientSecurity | undefined;
  readonly clusterId: string;
  readonly dir: string;
  readonly timeoutMs: number;
  /** Node id → address, refreshed with each new cluster state. */
  addresses: Map<string, string>;
}

/**
 * A directory that does not exist yet (created, readable by its owner only) or is empty; anything
 * else is refused. Reports whether it made the directory.
 */
async function prepareEmptyDir(dir: string): Promise<{ dirMade: boolean }> {
  try {
    for await (const entry of Deno.readDir(dir)) {
      failWith(
        "failedPrecondition",
        `Directory "${dir}" is not empty (it holds "${entry.name}"): a backup goes to a new ` +
          "or empty directory",
      );
    }
  } catch (error) {
    if (error instanceof CommandFailure) throw error;
    if (!(error instanceof Deno.errors.NotFound)) {
      failWith("failedPrecondition", `Cannot use directory "${dir}": ${messageOf(error)}`);
    }
    try {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (mkdirError) {
      failWith("failedPrecondition", `Cannot create directory "${dir}": ${messageOf(mkdirError)}`);
    }
    return { dirMade: true };
  }
  return { dirMade: false };
}

async function clusterState(connection: PlacementConnection, timeoutMs: number) {
  const result = await connection.call(
    (client, callOptions) =>
      unaryCaller<typeof PlacementService, "ClusterState">(client, "ClusterState")({}, callOptions),
    Date.now() + timeoutMs,
  );
  if (result.kind !== "ok") throw new CommandFailure(result);
  return result.response;
}

/** The cluster id, from the first kvnode that answers `Status`. */
async function findClusterId(
  addresses: readonly string[],
  security: ClientSecurity | undefined,
  timeoutMs: number,
): Promise<string> {
  let last: RpcFailure = rpcFailure("unavailable", "No kvnode is registered");
  for (const address of addresses) {
    const client = createGrpcClient(NodeAdminService, address, {
      maxMessageBytes: ADMIN_MESSAGE_BYTES_MAX,
      ...security,
    });
    try {
      const result = await unaryCaller<typeof NodeAdminService, "Status">(client, "Status")(
        { withDataHash: false, resetTurnStats: false, sinceVersion: 0, sinceStartedAtMs: 0 },
        { deadlineMs: Math.min(timeoutMs, 5000) },
      );
      if (result.kind === "ok") return result.response.clusterId;
      last = rpcFailure(result.kind, `Kvnode at ${address}: ${result.message}`);
      if (result.kind === "unauthenticated" || result.kind === "permissionDenied") break;
    } finally {
      client.close();
    }
  }
  throw new CommandFailure(last);
}

/** The least time left worth another export attempt. */
const ATTEMPT_MS_MIN = 1000;
/** grpc-js's refusal of a message over a size limit: the same next time, so not retried. */
const MESSAGE_TOO_LARGE = /(Sent|Received) message larger than max/;

/** The leader's address named in an UNAVAILABLE answer of a replica that does not lead. */
const LEADER_AT = /the leader is at (\S+)$/;

/**
 * Exports one shard: its leader first, then the leader a refusal names, then (after a pause and a
 * new cluster state) again, until the shard's deadline. Failures other than UNAVAILABLE and
 * RESOURCE_EXHAUSTED end the backup.
 */
async function exportWithRetries(
  context: ExportContext,
  shard: PlacementShardState,
): Promise<ManifestShard> {
  const deadlineAt = Date.now() + context.timeoutMs;
  let last: RpcFailure = rpcFailure("unavailable", `Shard ${shard.shardId} has no leader`);
  let current = shard;
  while (true) {
    const candidates = [
      ...(current.leader === "" ? [] : [current.leader]),
      ...current.voters.filter((v) => v !== current.leader),
    ].map((node) => context.addresses.get(node)).filter((a): a is string => a !== undefined);
    const tried = new Set<string>();
    while (candidates.length > 0) {
      const address = candidates.shift()!;
      if (tried.has(address)) continue;
      tried.add(address);
      const remaining = deadlineAt - Date.now();
      if (remaining < ATTEMPT_MS_MIN) break;
      const outcome = await exportFrom(context, shard, address, remaining);
      if (outcome.kind === "ok") return outcome.shard;
      last = outcome.failure;
      if (
        (last.kind !== "unavailable" && last.kind !== "resourceExhausted") ||
        MESSAGE_TOO_LARGE.test(last.message)
      ) {
        throw new CommandFailure(last);
      }
      const leader = LEADER_AT.exec(last.message)?.[1];
      if (leader !== undefined && !tried.has(leader)) candidates.unshift(leader);
    }
    if (Date.now() + RETRY_PAUSE_MS >= deadlineAt) {
      throw new CommandFailure(
        rpcFailure(last.kind, `Cannot back up shard ${shard.shardId}: ${last.message}`),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
    try {
      const state = await clusterState(context.connection, Math.max(1, deadlineAt - Date.now()));
      context.addresses = new Map(state.nodes.map((n) => [n.nodeId, n.address]));
      current = state.shards.find((s) => s.shardId === shard.shardId) ?? current;
    } catch (error) {
      if (!(error instanceof CommandFailure)) throw error;
      last = error.failure;
    }
  }
}

type ExportOutcome =
  | { kind: "ok"; shard: ManifestShard }
  | { kind: "failed"; failure: RpcFailure };

/** Streams one shard from the kvnode at `address` into its file, checking what arrives. */
async function exportFrom(
  context: ExportContext,
  shard: PlacementShardState,
  address: string,
  deadlineMs: number,
): Promise<ExportOutcome> {
  const file = `shard-${shard.shardId}.pairs`;
  const partial = `${context.dir}/${file}.partial`;
  const client = createGrpcClient(NodeAdminService, address, {
    maxMessageBytes: EXPORT_MESSAGE_BYTES_MAX,
    ...context.security,
  });
  const output = await onDisk(
    "create",
    partial,
    () => Deno.open(partial, { write: true, create: true, truncate: true, mode: 0o600 }),
  );
  let idle = false;
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  const closeOutput = () => {
    if (!closed) output.close();
    closed = true;
  };
  try {
    const call = client.ExportShard(
      {
        clusterId: context.clusterId,
        shardId: shard.shardId,
        timeoutMs: Math.min(deadlineMs, 60_000),
      },
      new grpc.Metadata(),
      {},
    );
    // No deadline on the whole stream (a large shard takes as long as it takes): the barrier has
    // `timeoutMs`, and then each message must come within the shard's timeout.
    const awaitNext = (ms: number) => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        idle = true;
        call.cancel();
      }, ms);
    };
    awaitNext(deadlineMs + 1000);
    const hash = createHash("sha256");
    let header: ExportShardChunk["header"];
    let keys = 0;
    let bytes = 0;
    const problem = (message: string): ExportOutcome => {
      call.cancel();
      return {
        kind: "failed",
        failure: rpcFailure("dataLoss", `Shard ${shard.shardId} from ${address}: ${message}`),
      };
    };
    try {
      for await (const chunk of call as AsyncIterable<ExportShardChunk>) {
        awaitNext(context.timeoutMs);
        if (header === undefined) {
          if (chunk.header === undefined) return problem("the export does not start with a header");
          header = chunk.header;
          if (header.shardId !== shard.shardId) {
            return problem(`the export is of shard ${header.shardId}`);
          }
          continue;
        }
        if (chunk.trailer !== undefined) {
          const digest = hash.digest();
          const sent = chunk.trailer;
          if (sent.keys !== keys || sent.bytes !== bytes) {
            return problem(
              `the kvnode sent ${sent.keys} keys (${sent.bytes} bytes), ${keys} (${bytes}) arrived`,
            );
          }
          if (!equalBytes(sent.sha256, digest)) {
            return problem("the SHA-256 of the pairs received differs from the kvnode's");
          }
          await onDisk("sync", partial, () => output.sync());
          closeOutput();
          await onDisk("rename", partial, () => Deno.rename(partial, `${context.dir}/${file}`));
          return {
            kind: "ok",
            shard: {
              shard_id: shard.shardId,
              range_lo: Number(header.rangeLo),
              range_hi: Number(header.rangeHi),
              applied_index: Number(header.appliedIndex),
              term: Number(header.term),
              conf_epoch: Number(header.confEpoch),
              node_id: header.nodeId,
              file,
              keys,
              bytes,
              sha256: digest.toString("hex"),
            },
          };
        }
        for (const pair of chunk.pairs) {
          const framed = framePair(pair.key, pair.value);
          hash.update(framed);
          await onDisk("write", partial, () => writeAll(output, framed));
          keys++;
          bytes += pair.key.length + pair.value.length;
        }
      }
    } catch (error) {
      if (error instanceof CommandFailure) {
        call.cancel();
        throw error;
      }
      if (idle) {
        return {
          kind: "failed",
          failure: rpcFailure(
            "deadlineExceeded",
            `Kvnode at ${address} sent nothing of shard ${shard.shardId} for ` +
              `${header === undefined ? deadlineMs + 1000 : context.timeoutMs} ms`,
          ),
        };
      }
      return { kind: "failed", failure: withAddress(failureFromError(error), address) };
    }
    return problem("the export ended without its trailer");
  } finally {
    clearTimeout(idleTimer);
    closeOutput();
    client.close();
  }
}

function withAddress(failure: RpcFailure, address: string): RpcFailure {
  if (failure.message.includes(address)) return failure;
  return rpcFailure(failure.kind, `Kvnode at ${address}: ${failure.message}`);
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let rest = bytes;
  while (rest.length > 0) rest = rest.subarray(await file.write(rest));
}

async function writeSynced(path: string, bytes: Uint8Array): Promise<void> {
  const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  try {
    await writeAll(file, bytes);
    await file.sync();
  } finally {
    file.close();
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** Runs a local file operation; its failure ends the command naming `path`. */
async function onDisk<T>(what: string, path: string, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    return failWith("failedPrecondition", `Cannot ${what} "${path}": ${messageOf(error)}`);
  }
}

/** Makes the renames in `dir` durable (a rename is a change of the directory). */
async function syncDir(dir: string): Promise<void> {
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ---- Manifest ----

/**
 * Undefined when `manifest` is well formed: this format, shards with safe file names whose
 * ranges cover the hash space exactly once; else the problem.
 */
export function checkManifest(manifest: unknown): string | undefined {
  if (typeof manifest !== "object" || manifest === null) return "the manifest is not an object";
  const m = manifest as Partial<Manifest>;
  if (m.format !== BACKUP_FORMAT) {
    return `the format is ${JSON.stringify(m.format)}: expected "${BACKUP_FORMAT}"`;
  }
  if (!Array.isArray(m.shards) || m.shards.length === 0) return "the manifest lists no shards";
  const counts = ["shard_id", "range_lo", "range_hi", "applied_index", "keys", "bytes"] as const;
  for (const shard of m.shards) {
    if (typeof shard !== "object" || shard === null || Array.isArray(shard)) {
      return `a shard is ${JSON.stringify(shard)}, not an object`;
    }
    for (const field of counts) {
      const value = (shard as unknown as Record<string, unknown>)[field];
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
        return `shard ${JSON.stringify(shard?.shard_id)}: "${field}" is not a count`;
      }
    }
    if (typeof shard.file !== "string" || !/^shard-\d+\.pairs$/.test(shard.file)) {
      return `shard ${shard.shard_id}: "file" is ${JSON.stringify(shard.file)}, not shard-N.pairs`;
    }
    if (typeof shard.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(shard.sha256)) {
      return `shard ${shard.shard_id}: "sha256" is not 64 hex digits`;
    }
  }
  const sorted = [...m.shards].sort((a, b) => a.range_lo - b.range_lo);
  let next = 0;
  for (const shard of sorted) {
    if (shard.range_lo !== next) {
      return `the shards' ranges leave a gap or overlap at hash ${Math.min(next, shard.range_lo)}`;
    }
    if (shard.range_hi <= shard.range_lo || shard.range_hi > HASH_SPACE) {
      return `shard ${shard.shard_id}: range [${shard.range_lo}, ${shard.range_hi}) is not a hash range`;
    }
    next = shard.range_hi;
  }
  if (next !== HASH_SPACE) return `the shards' ranges end at ${next}, not at ${HASH_SPACE}`;
  if (new Set(m.shards.map((s) => s.file)).size !== m.shards.length) {
    return "two shards name the same file";
  }
  return undefined;
}

async function readManifest(dir: string): Promise<Manifest> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dir}/${MANIFEST_FILE}`);
  } catch (error) {
    failWith(
      "failedPrecondition",
      `Cannot read "${dir}/${MANIFEST_FILE}": ${messageOf(error)} (is "${dir}" a finished backup?)`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    failWith("dataLoss", `"${dir}/${MANIFEST_FILE}" is not JSON: ${messageOf(error)}`);
  }
  const problem = checkManifest(parsed);
  if (problem !== undefined) failWith("dataLoss", `"${dir}/${MANIFEST_FILE}": ${problem}`);
  return parsed as Manifest;
}

/**
 * Reads the pairs of one shard file, checking as it goes that each key is a valid key of the
 * shard's range, after the one before in byte order (so each key once), and each value within {@linkcode BACKUP_VALUE_BYTES_MAX}; at the end, that the
 * file's SHA-256, pair count and bytes are the manifest's. `onPair` may be undefined (a check
 * only). Throws a DATA_LOSS {@linkcode CommandFailure} naming the file and the problem.
 */
export async function readShardFile(
  dir: string,
  shard: ManifestShard,
  onPair?: (key: Uint8Array, value: Uint8Array) => Promise<void>,
): Promise<void> {
  const path = `${dir}/${shard.file}`;
  const bad = (message: string): never => failWith("dataLoss", `Backup file "${path}": ${message}`);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    return bad(`cannot be read: ${messageOf(error)}`);
  }
  const hash = createHash("sha256");
  const reader = new FrameReader(BACKUP_VALUE_BYTES_MAX);
  let keys = 0;
  let bytes = 0;
  // The first problem with the pairs; the rest of the file is still hashed, so that a corrupt
  // file is reported as one (its SHA-256 differs) rather than by the symptom met first.
  let problem: string | undefined;
  let previous: Uint8Array | undefined;
  try {
    const buffer = new Uint8Array(READ_BYTES);
    while (true) {
      let n: number | null;
      try {
        n = await file.read(buffer);
      } catch (error) {
        return bad(`cannot be read: ${messageOf(error)}`);
      }
      if (n === null) break;
      const chunk = buffer.slice(0, n);
      hash.update(chunk);
      if (problem !== undefined) continue;
      const pairs = reader.push(chunk);
      if (!Array.isArray(pairs)) {
        problem = pairs.message;
        continue;
      }
      for (const { key, value } of pairs as { key: Uint8Array; value: Uint8Array }[]) {
        const invalid = validateKey(key);
        if (invalid.kind !== "ok") problem = `pair ${keys + 1}: ${invalid.message}`;
        const h = keyHash(key);
        if (problem === undefined && (h < shard.range_lo || h >= shard.range_hi)) {
          problem = `pair ${keys + 1}: its key hashes to ${h}, outside shard ${shard.shard_id}'s ` +
            `range [${shard.range_lo}, ${shard.range_hi})`;
        }
        if (problem === undefined && previous !== undefined && compareBytes(previous, key) >= 0) {
          problem = `pair ${keys + 1}: its key does not come after the one before (an export ` +
            "lists each key once, in byte order)";
        }
        if (problem !== undefined) break;
        previous = key;
        keys++;
        bytes += key.length + value.length;
        if (onPair !== undefined) await onPair(key, value);
      }
    }
  } finally {
    file.close();
  }
  problem ??= reader.finish()?.message;
  const digest = hash.digest("hex");
  if (digest !== shard.sha256) {
    bad(
      `its SHA-256 is ${digest}, the manifest says ${shard.sha256}: the file is damaged` +
        (problem === undefined ? "" : ` (${problem})`),
    );
  }
  if (problem !== undefined) bad(problem);
  if (keys !== shard.keys || bytes !== shard.bytes) {
    bad(`it holds ${keys} keys (${bytes} bytes), the manifest says ${shard.keys} (${shard.bytes})`);
  }
}

// ---- Restore ----

/** Runs `tinykv restore DIR`; returns the exit code. */
export async function runRestore(options: RestoreOptions, io: BackupOutput): Promise<number> {
  const timeoutMs = options.timeoutMs ?? BACKUP_TIMEOUT_MS_DEFAULT;
  const client = TinyKvClient.connect({
    endpoints: options.endpoints,
    deadlineMs: timeoutMs,
    maxMessageBytes: options.maxMessageBytes,
    security: options.security,
  });
  try {
    const manifest = await readManifest(options.dir);
    // Everything is checked before anything is written, the largest value included: it is
    // written first, alone, so that a cluster whose storage.value_bytes_max is smaller refuses
    // it while it holds nothing of the backup.
    let largest: { key: Uint8Array; value: Uint8Array } | undefined;
    for (const shard of manifest.shards) {
      await readShardFile(options.dir, shard, (key, value) => {
        if (largest === undefined || value.length > largest.value.length) largest = { key, value };
        return Promise.resolve();
      });
    }
    const first = await client.scan({ limit: 1 });
    if (first.entries.length > 0) {
      failWith(
        "failedPrecondition",
        `The cluster at ${options.endpoints.join(",")} holds keys already: restore builds a new ` +
          "cluster's data and writes only into an empty cluster",
      );
    }
    if (largest !== undefined) {
      try {
        await client.put(largest.key, largest.value);
      } catch (error) {
        // Over the value limit, or over the gateway's message limit (refused as it arrives).
        if (
          error instanceof TinyKvError &&
          (error.code === "invalidArgument" ||
            (error.code === "resourceExhausted" && MESSAGE_TOO_LARGE.test(error.message)))
        ) {
          failWith(
            "invalidArgument",
            `The cluster at ${options.endpoints.join(",")} refuses the backup's largest value ` +
              `(${largest.value.length} bytes): ${error.message}; nothing was written`,
          );
        }
        throw error;
      }
    }
    const started = Date.now();
    let written = 0;
    let bytes = 0;
    const inFlight = new Set<Promise<void>>();
    let inFlightBytes = 0;
    let failed: unknown;
    const stopped = async () => {
      await Promise.allSettled(inFlight);
      await io.err(
        `restore stopped after writing ${written} of ${manifest.keys} keys (at least: up to ` +
          `${RESTORE_IN_FLIGHT} more may have been written without an answer): the cluster holds ` +
          "part of the backup (start a new cluster to restore again)",
      );
    };
    const writePairs = async (): Promise<void> => {
      for (const shard of manifest.shards) {
        await readShardFile(options.dir, shard, async (key, value) => {
          if (failed !== undefined) throw failed;
          const size = key.length + value.length;
          while (
            inFlight.size > 0 &&
            (inFlight.size >= RESTORE_IN_FLIGHT || inFlightBytes + size > RESTORE_IN_FLIGHT_BYTES)
          ) {
            await Promise.race(inFlight);
          }
          if (failed !== undefined) throw failed;
          inFlightBytes += size;
          const put = client.put(key, value).then(
            () => {
              written++;
              bytes += size;
            },
            (error) => {
              failed ??= error;
            },
          ).finally(() => {
            inFlight.delete(put);
            inFlightBytes -= size;
          });
          inFlight.add(put);
        });
      }
      await Promise.allSettled(inFlight);
      if (failed !== undefined) throw failed;
    };
    try {
      await writePairs();
    } catch (error) {
      await stopped();
      return await reportFailure(error, options.json, io, { written, keys: manifest.keys });
    }
    const seconds = (Date.now() - started) / 1000;
    if (options.json) {
      await io.out(
        JSON.stringify({ ok: true, keys: written, bytes, shards: manifest.shards.length }),
      );
    } else {
      await io.out(
        `Restored ${written} keys (${bytes} bytes) from ${manifest.shards.length} shards of ` +
          `cluster ${manifest.cluster_id} (backed up ${manifest.started_at}) in ${
            seconds.toFixed(1)
          } s`,
      );
    }
    return EXIT.ok;
  } catch (error) {
    return await reportFailure(error, options.json, io);
  } finally {
    client.close();
  }
}
