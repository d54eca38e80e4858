/**
 * A promise-based ZooKeeper client over `npm:node-zookeeper-client` that survives session expiry.
 *
 * Errors, by the style guide's three kinds:
 * - Expected outcomes are returned as discriminated unions: a node that is missing
 *   (`get()` → `undefined`, `{kind: "noNode"}`), already exists, has another version, has
 *   children, or data over {@linkcode DATA_BYTES_MAX}.
 * - Environment failures throw {@linkcode ZooKeeperError}: the connection was lost while a write
 *   was in flight (`"connectionLoss"`: its outcome is unknown), the session expired under it
 *   (`"sessionExpired"`), no answer within `operationTimeoutMs` (`"timeout"`), the client is
 *   closed (`"closed"`), or ZooKeeper refused otherwise (`"serverError"`). Reads (`get`,
 *   `exists`, `children`) and `mkdirp` are retried on a lost connection until
 *   `operationTimeoutMs`, so they throw only `"timeout"` or `"closed"`.
 * - Invalid paths are caller bugs and throw `TypeError`.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import zookeeper from "node-zookeeper-client";
import { assert } from "./_assert.ts";

/** The largest data a znode may hold here (ZooKeeper's default `jute.maxbuffer` is about 1 MiB). */
export const DATA_BYTES_MAX = 1024 * 1024;
/** Default session timeout asked of the server (it clamps to its own min and max). */
export const SESSION_TIMEOUT_MS_DEFAULT = 10_000;
/** Default bound on one operation, including waits for a (re)connection. */
export const OPERATION_TIMEOUT_MS_DEFAULT = 10_000;
/** Default bound on the first connection in {@linkcode connectZooKeeper}. */
export const CONNECT_TIMEOUT_MS_DEFAULT = 10_000;
/** Default upper bound of the random pause between reconnection rounds. */
export const RECONNECT_DELAY_MS_DEFAULT = 500;
/** The longest pause between attempts to open a new session after an expiry. */
export const SESSION_RETRY_DELAY_MS_MAX = 2000;
/**
 * How many session timeouts a disconnection may last before the client takes its session as
 * expired without hearing it from the server (see `#armExpiry`).
 */
export const EXPIRY_AFTER_TIMEOUTS = 2;
/** Attempts to re-create one ephemeral after an expiry (each may replace our own leftover). */
const RECREATE_ATTEMPTS_MAX = 3;
/** How long `close()` waits for the server to confirm the session's end. */
export const CLOSE_TIMEOUT_MS = 2000;

/** How a znode is created. Sequential modes append a 10-digit counter to the name. */
export type CreateMode =
  | "persistent"
  | "ephemeral"
  | "persistentSequential"
  | "ephemeralSequential";

/** Data accepted by writes: bytes, or a string stored as UTF-8. */
export type ZnodeData = Uint8Array | string;

/** A znode's data and version, as read. */
export interface NodeData {
  /** The data (a copy). */
  data: Uint8Array;
  /** The data version, for conditional writes. */
  version: number;
}

/** A znode's metadata. */
export interface NodeStat {
  /** The data version. */
  version: number;
  /** How many children it has. */
  childrenCount: number;
  /** The owning session id (16 hex digits) of an ephemeral node; undefined for persistent ones. */
  ephemeralOwner: string | undefined;
}

/** The outcome of {@linkcode ZooKeeperClient.create}. `path` is relative to the root. */
export type CreateResult =
  | { kind: "ok"; path: string }
  | { kind: "nodeExists" }
  | { kind: "noParent" }
  | { kind: "dataTooLarge"; bytes: number; bytesMax: number };

/** The outcome of {@linkcode ZooKeeperClient.setData}. */
export type SetDataResult =
  | { kind: "ok"; version: number }
  | { kind: "badVersion" }
  | { kind: "noNode" }
  | { kind: "dataTooLarge"; bytes: number; bytesMax: number };

/** The outcome of {@linkcode ZooKeeperClient.delete}. */
export type DeleteResult =
  | { kind: "ok" }
  | { kind: "noNode" }
  | { kind: "badVersion" }
  | { kind: "notEmpty" };

/**
 * A change of the connection. In order of a typical life: `connected` (a session exists; the
 * first one before `connectZooKeeper` resolves, so listeners see it only with `afterExpiry`:
 * a new session whose ephemerals are restored and whose watches are re-armed), `disconnected` (the
 * session may live on), `reconnected` (the same session is back), `expired` (the server ended
 * the session: its ephemerals are gone; the client is opening a new one), `ephemeralLost` (an
 * ephemeral could not be restored after an expiry and is no longer tracked), `closed`.
 *
 * Expiry is learned from the server on reconnection, as with the Java client: a client cut off
 * from every server sees only `disconnected`. Code that must not act without its session (a
 * leader holding an ephemeral) should treat a disconnection longer than `sessionTimeoutMs` as
 * losing it.
 */
export type ConnectionEvent =
  | { kind: "connected"; sessionId: string; afterExpiry: boolean }
  | { kind: "disconnected" }
  | { kind: "reconnected"; sessionId: string }
  | { kind: "expired"; sessionId: string }
  | { kind: "ephemeralLost"; path: string; reason: "nodeExists" | "noParent" }
  | { kind: "closed" };

/** What a failed operation ran into; see {@linkcode ZooKeeperError}. */
export type ZooKeeperErrorCode =
  | "connectionLoss"
  | "sessionExpired"
  | "timeout"
  | "closed"
  | "serverError";

/** An environment failure of a ZooKeeper operation. */
export class ZooKeeperError extends Error {
  /** What went wrong. */
  readonly code: ZooKeeperErrorCode;
  /** Creates the error. */
  constructor(code: ZooKeeperErrorCode, message: string) {
    super(message);
    this.name = "ZooKeeperError";
    this.code = code;
  }
}

/** Where the client reports what it does; every method is optional. */
export interface ZooKeeperLogger {
  /** Routine events: sessions opened, restored nodes. */
  info?(message: string): void;
  /** Problems the client works around: failed watch reads, lost ephemerals. */
  warn?(message: string): void;
}

/** Options of {@linkcode connectZooKeeper}. */
export interface ConnectZooKeeperOptions {
  /** `host:port[,host:port…]`. */
  connectString: string;
  /** The absolute path every caller path is relative to, e.g. `/tinykv/dev`; created if missing. */
  root: string;
  /** The session timeout to ask for. Default {@linkcode SESSION_TIMEOUT_MS_DEFAULT}. */
  sessionTimeoutMs?: number;
  /** Bound on the first connection. Default {@linkcode CONNECT_TIMEOUT_MS_DEFAULT}. */
  connectTimeoutMs?: number;
  /** Bound on each operation. Default {@linkcode OPERATION_TIMEOUT_MS_DEFAULT}. */
  operationTimeoutMs?: number;
  /** Upper bound of the random pause between reconnection rounds. Default {@linkcode RECONNECT_DELAY_MS_DEFAULT}. */
  reconnectDelayMs?: number;
  /** Where to report; default silent. */
  logger?: ZooKeeperLogger;
  /**
   * The cluster's ZooKeeper credential (digest scheme). With it, the session authenticates as
   * `user`, and every znode this client creates (the root's missing ancestors too) may be read
   * by anyone but changed only by that user; without it, znodes are created open to all.
   */
  digest?: { readonly user: string; readonly password: string };
}

// The parts of node-zookeeper-client used here; the package ships no types.
interface LibStat {
  version: number;
  numChildren: number;
  ephemeralOwner: Buffer;
  mzxid: Buffer;
  czxid: Buffer;
}
interface LibError extends Error {
  getCode(): number;
}
type LibCallback = (error: LibError | null, ...results: unknown[]) => void;
interface LibClient {
  connect(): void;
  close(): void;
  on(event: "state", listener: (state: { name: string }) => void): void;
  getSessionId(): Buffer;
  getSessionPassword(): Buffer;
  getSessionTimeout(): number;
  create(path: string, data: Buffer, acls: unknown[], mode: number, callback: LibCallback): void;
  remove(path: string, version: number, callback: LibCallback): void;
  setData(path: string, data: Buffer, version: number, callback: LibCallback): void;
  getData(path: string, watcher: (() => void) | undefined, callback: LibCallback): void;
  exists(path: string, watcher: (() => void) | undefined, callback: LibCallback): void;
  getChildren(path: string, watcher: (() => void) | undefined, callback: LibCallback): void;
  addAuthInfo(scheme: string, auth: Buffer): void;
  getACL(path: string, callback: LibCallback): void;
  connectionManager: LibConnectionManager;
}
/** The parts of the library's connection manager that closing a session must reach. */
interface LibConnectionManager {
  socket?: { destroy(): void };
  /** Bound to each new socket when it is created (so replacing it affects later sockets). */
  onSocketConnected(): void;
  onSocketData(data: Buffer): void;
}
const lib = zookeeper as unknown as {
  createClient(connectString: string, options: Record<string, unknown>): LibClient;
  CreateMode: Record<string, number>;
  Exception: Record<string, number>;
  ACL: (new (permission: number, id: unknown) => unknown) & { OPEN_ACL_UNSAFE: unknown[] };
  Id: new (scheme: string, id: string) => unknown;
  Permission: Record<"READ" | "ALL", number>;
};

/**
 * The ACL of every znode a client with `digest` creates: anyone may read, only the digest's user
 * may change (ZooKeeper's digest id is `user:base64(sha1("user:password"))`).
 */
function aclsOf(digest: ConnectZooKeeperOptions["digest"]): unknown[] {
  if (digest === undefined) return lib.ACL.OPEN_ACL_UNSAFE;
  const hash = createHash("sha1").update(`${digest.user}:${digest.password}`).digest("base64");
  return [
    new lib.ACL(lib.Permission.READ, new lib.Id("world", "anyone")),
    new lib.ACL(lib.Permission.ALL, new lib.Id("digest", `${digest.user}:${hash}`)),
  ];
}
const CODE = lib.Exception;
const LIB_MODES: Record<CreateMode, number> = {
  persistent: lib.CreateMode.PERSISTENT,
  ephemeral: lib.CreateMode.EPHEMERAL,
  persistentSequential: lib.CreateMode.PERSISTENT_SEQUENTIAL,
  ephemeralSequential: lib.CreateMode.EPHEMERAL_SEQUENTIAL,
};

/** One ZooKeeper session and the operations waiting on it. */
interface Session {
  client: LibClient;
  id: string;
  connected: boolean;
  expired: boolean;
  /** Fires when a disconnection has lasted long enough to count as an expiry (see below). */
  expiryTimer?: ReturnType<typeof setTimeout>;
  /** Rejecters of operations in flight, called when the session expires or the client closes. */
  inFlight: Set<(error: ZooKeeperError) => void>;
}

interface Watch {
  kind: "data" | "children";
  path: string;
  onChange: (value: unknown) => void;
  active: boolean;
  running: boolean;
  again: boolean;
  fingerprint: string | undefined;
  trigger: () => void;
}

/**
 * Connects to ZooKeeper, opens a session, creates `root` if missing, and resolves with the client.
 * Throws {@linkcode ZooKeeperError} (`"timeout"`) when no session opens within `connectTimeoutMs`.
 */
export function connectZooKeeper(options: ConnectZooKeeperOptions): Promise<ZooKeeperClient> {
  return ZooKeeperClient.connect(options);
}

/**
 * A ZooKeeper client rooted at a path. Every path argument is absolute *within* the root: `"/"`
 * is the root itself, `"/nodes/n1"` is `<root>/nodes/n1`.
 *
 * Concurrency: methods may be called concurrently; each runs on the session current when it
 * starts. Watch callbacks and connection listeners run on the event loop, one at a time per
 * watch; they must not throw (a throw is logged and ignored).
 */
export class ZooKeeperClient {
  #options: Required<Omit<ConnectZooKeeperOptions, "logger" | "digest">> & {
    digest?: ConnectZooKeeperOptions["digest"];
  };
  /** The ACL of the znodes this client creates (see `digest`). */
  readonly #acls: unknown[];
  #logger: ZooKeeperLogger;
  #root: string;
  #session: Session | undefined;
  #sessionReady: PromiseWithResolvers<Session> = Promise.withResolvers();
  #closed = false;
  #ephemerals = new Map<string, Uint8Array>();
  /** Ids of this client's sessions that expired: their leftover ephemerals are ours to replace. */
  readonly #formerSessions = new Set<string>();
  #watches = new Set<Watch>();
  #listeners = new Set<(event: ConnectionEvent) => void>();
  #retryTimer: ReturnType<typeof setTimeout> | undefined;

  /** Use {@linkcode connectZooKeeper}: the constructor does not connect. */
  private constructor(options: ConnectZooKeeperOptions) {
    this.#root = normalizeRoot(options.root);
    this.#logger = options.logger ?? {};
    this.#options = {
      connectString: options.connectString,
      root: this.#root,
      sessionTimeoutMs: options.sessionTimeoutMs ?? SESSION_TIMEOUT_MS_DEFAULT,
      connectTimeoutMs: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT,
      operationTimeoutMs: options.operationTimeoutMs ?? OPERATION_TIMEOUT_MS_DEFAULT,
      reconnectDelayMs: options.reconnectDelayMs ?? RECONNECT_DELAY_MS_DEFAULT,
      digest: options.digest,
    };
    this.#acls = aclsOf(options.digest);
    this.#sessionReady.promise.catch(() => {});
  }

  /** The root path this client works under. */
  get root(): string {
    return this.#root;
  }

  /** The current session's id (16 hex digits), or undefined while there is none. */
  get sessionId(): string | undefined {
    return this.#session?.id;
  }

  /** The session timeout the server granted, or undefined while there is no session. */
  get sessionTimeoutMs(): number | undefined {
    return this.#session?.client.getSessionTimeout();
  }

  /** Whether the current session is connected to a server. */
  get connected(): boolean {
    return this.#session?.connected ?? false;
  }

  /** The same as {@linkcode connectZooKeeper}. */
  static async connect(options: ConnectZooKeeperOptions): Promise<ZooKeeperClient> {
    const client = new ZooKeeperClient(options);
    try {
      const session = await client.#openSession(client.#options.connectTimeoutMs);
      client.#install(session, false);
      await client.mkdirp("/");
      await client.#warnIfOpen();
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /**
   * With a credential, whether anyone may still change the root: it was created without one (the
   * cluster existed before the credential was set, or someone else made it). Says so, loudly:
   * the credential protects only what is created with it.
   */
  async #warnIfOpen(): Promise<void> {
    if (this.#options.digest === undefined) return;
    const outcome = await this.#call(true, (client, done) => client.getACL(this.#root, done));
    if (outcome.code !== CODE.OK) return;
    const acls = (outcome.results[0] ?? []) as Array<
      { permission: number; id: { scheme: string; id: string } }
    >;
    const open = acls.some((acl) =>
      acl.id.scheme === "world" && (acl.permission & ~lib.Permission.READ) !== 0
    );
    if (open) {
      this.#logger.warn?.(
        `ZooKeeper root "${this.#root}" may be changed by anyone: it was created without the ` +
          "cluster's credential, and so were the znodes under it then (zookeeper.digest_file " +
          "protects only znodes created with it)",
      );
    }
  }

  /** Subscribes to connection events; returns the unsubscribe function. */
  onConnectionEvent(listener: (event: ConnectionEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Creates a znode. Parents must exist (see {@linkcode mkdirp}). */
  async create(
    path: string,
    data: ZnodeData = "",
    options: { mode?: CreateMode } = {},
  ): Promise<CreateResult> {
    const bytes = toBytes(data);
    if (bytes.length > DATA_BYTES_MAX) {
      return { kind: "dataTooLarge", bytes: bytes.length, bytesMax: DATA_BYTES_MAX };
    }
    const mode = LIB_MODES[options.mode ?? "persistent"];
    const full = this.#full(path);
    const outcome = await this.#call(
      false,
      (client, done) => client.create(full, toBuffer(bytes), this.#acls, mode, done),
    );
    switch (outcome.code) {
      case CODE.OK:
        return { kind: "ok", path: this.#relative(outcome.results[0] as string) };
      case CODE.NODE_EXISTS:
        return { kind: "nodeExists" };
      case CODE.NO_NODE:
        return { kind: "noParent" };
      default:
        throw this.#serverError("create", path, outcome.code);
    }
  }

  /**
   * Creates an ephemeral znode that this client keeps: after a session expiry it is created
   * again, with its latest data, on the new session. Idempotent: a node this session already
   * owns counts as created. `nodeExists` means another session owns it. {@linkcode delete}
   * forgets it.
   */
  async createEphemeral(path: string, data: ZnodeData = ""): Promise<CreateResult> {
    const bytes = toBytes(data);
    const result = await this.#createOwned(path, bytes);
    if (result.kind === "ok") this.#ephemerals.set(normalizePath(path), bytes);
    return result;
  }

  async #createOwned(path: string, bytes: Uint8Array): Promise<CreateResult> {
    const result = await this.create(path, bytes, { mode: "ephemeral" });
    if (result.kind !== "nodeExists") return result;
    const stat = await this.exists(path);
    if (stat !== undefined && stat.ephemeralOwner === this.#session?.id) {
      return { kind: "ok", path: normalizePath(path) };
    }
    return result;
  }

  /** Creates `path` and any missing ancestors as empty persistent nodes. Idempotent. */
  async mkdirp(path: string): Promise<void> {
    const parts = normalizePath(path).split("/").filter((part) => part !== "");
    const prefixes = [""];
    for (const part of parts) prefixes.push(`${prefixes[prefixes.length - 1]}/${part}`);
    const fullPaths = this.#root === "/" ? prefixes.slice(1) : [
      ...rootPrefixes(this.#root),
      ...prefixes.slice(1).map((prefix) => this.#root + prefix),
    ];
    for (const full of fullPaths) {
      // The root's ancestors (`/tinykv`) are shared by every cluster: only the root and what is
      // under it carry this cluster's ACL.
      const inside = full === this.#root || full.startsWith(`${this.#root}/`) || this.#root === "/";
      const acls = inside ? this.#acls : lib.ACL.OPEN_ACL_UNSAFE;
      const outcome = await this.#call(
        true,
        (client, done) => client.create(full, Buffer.alloc(0), acls, LIB_MODES.persistent, done),
      );
      if (outcome.code !== CODE.OK && outcome.code !== CODE.NODE_EXISTS) {
        throw this.#serverError("mkdirp", path, outcome.code);
      }
    }
  }

  /** Reads a znode; undefined when it does not exist. */
  async get(path: string): Promise<NodeData | undefined> {
    return (await this.#read(path, undefined)).node;
  }

  /** Reads a znode's metadata; undefined when it does not exist. */
  async exists(path: string): Promise<NodeStat | undefined> {
    const full = this.#full(path);
    const outcome = await this.#call(true, (client, done) => client.exists(full, undefined, done));
    if (outcome.code !== CODE.OK) throw this.#serverError("exists", path, outcome.code);
    const stat = outcome.results[0] as LibStat | null;
    return stat === null ? undefined : toNodeStat(stat);
  }

  /** Lists a znode's children (names, sorted); undefined when the node does not exist. */
  async children(path: string): Promise<string[] | undefined> {
    return (await this.#readChildren(path, undefined)).children;
  }

  /**
   * Writes data if the node's version is `expectedVersion` (-1 matches any version). A
   * mismatch is `badVersion`, not an error: this is ZooKeeper's compare-and-set.
   */
  async setData(path: string, data: ZnodeData, expectedVersion: number): Promise<SetDataResult> {
    assertVersion(expectedVersion);
    const bytes = toBytes(data);
    if (bytes.length > DATA_BYTES_MAX) {
      return { kind: "dataTooLarge", bytes: bytes.length, bytesMax: DATA_BYTES_MAX };
    }
    const full = this.#full(path);
    const outcome = await this.#call(
      false,
      (client, done) => client.setData(full, toBuffer(bytes), expectedVersion, done),
    );
    switch (outcome.code) {
      case CODE.OK: {
        const key = normalizePath(path);
        if (this.#ephemerals.has(key)) this.#ephemerals.set(key, bytes);
        return { kind: "ok", version: (outcome.results[0] as LibStat).version };
      }
      case CODE.BAD_VERSION:
        return { kind: "badVersion" };
      case CODE.NO_NODE:
        return { kind: "noNode" };
      default:
        throw this.#serverError("setData", path, outcome.code);
    }
  }

  /** Deletes a znode if its version is `expectedVersion` (default -1: any version). */
  async delete(path: string, expectedVersion = -1): Promise<DeleteResult> {
    assertVersion(expectedVersion);
    const full = this.#full(path);
    const outcome = await this.#call(
      false,
      (client, done) => client.remove(full, expectedVersion, done),
    );
    switch (outcome.code) {
      case CODE.OK:
        this.#ephemerals.delete(normalizePath(path));
        return { kind: "ok" };
      case CODE.NO_NODE:
        this.#ephemerals.delete(normalizePath(path));
        return { kind: "noNode" };
      case CODE.BAD_VERSION:
        return { kind: "badVersion" };
      case CODE.NOT_EMPTY:
        return { kind: "notEmpty" };
      default:
        throw this.#serverError("delete", path, outcome.code);
    }
  }

  /** Deletes a znode and everything under it; a missing node is fine. */
  async deleteRecursive(path: string): Promise<void> {
    const children = await this.children(path);
    if (children === undefined) return;
    const base = normalizePath(path);
    for (const child of children) {
      await this.deleteRecursive(base === "/" ? `/${child}` : `${base}/${child}`);
    }
    if (base === "/") return;
    const result = await this.delete(base);
    // A child created meanwhile: delete again.
    if (result.kind === "notEmpty") await this.deleteRecursive(base);
  }

  /**
   * Watches a znode's data: `onChange` gets the current value (undefined while the node does not
   * exist) once at the start and then after every change observed. The watch re-arms after each
   * event, after a reconnection and on a new session. Several quick changes may be seen as one
   * (ZooKeeper watches fire once; the re-read gets the latest value). Returns the unsubscribe.
   */
  watchData(path: string, onChange: (node: NodeData | undefined) => void): () => void {
    return this.#watch("data", path, onChange as (value: unknown) => void);
  }

  /**
   * Watches a znode's children: `onChange` gets the sorted names (undefined while the node does
   * not exist) at the start and after every change observed, as {@linkcode watchData} does.
   */
  watchChildren(path: string, onChange: (children: string[] | undefined) => void): () => void {
    return this.#watch("children", path, onChange as (value: unknown) => void);
  }

  /**
   * Closes the session (its ephemerals go at once) and stops every watch. Operations in flight
   * throw {@linkcode ZooKeeperError} `"closed"`. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    for (const watch of this.#watches) watch.active = false;
    this.#watches.clear();
    const session = this.#session;
    this.#session = undefined;
    this.#sessionReady = Promise.withResolvers();
    this.#sessionReady.promise.catch(() => {});
    this.#sessionReady.reject(closedError());
    if (session !== undefined) await this.#closeSession(session);
    this.#emit({ kind: "closed" });
    this.#listeners.clear();
  }

  // ---- Sessions ----

  #openSession(timeoutMs: number): Promise<Session> {
    const client = lib.createClient(this.#options.connectString, {
      sessionTimeout: this.#options.sessionTimeoutMs,
      spinDelay: this.#options.reconnectDelayMs,
      retries: 0,
    });
    const digest = this.#options.digest;
    if (digest !== undefined) {
      client.addAuthInfo("digest", Buffer.from(`${digest.user}:${digest.password}`));
    }
    const session: Session = {
      client,
      id: "",
      connected: false,
      expired: false,
      inFlight: new Set(),
    };
    const opened = Promise.withResolvers<Session>();
    const timer = setTimeout(() => {
      opened.reject(
        new ZooKeeperError(
          "timeout",
          `Cannot connect to ZooKeeper at "${this.#options.connectString}": no session within ${timeoutMs} ms`,
        ),
      );
      this.#closeSession(session);
    }, timeoutMs);
    client.on("state", (state) => {
      if (state.name === "SYNC_CONNECTED" && session.id === "") {
        clearTimeout(timer);
        session.id = client.getSessionId().toString("hex");
        session.connected = true;
        opened.resolve(session);
        return;
      }
      this.#onState(session, state.name);
    });
    client.connect();
    return opened.promise;
  }

  #install(session: Session, afterExpiry: boolean): void {
    this.#session = session;
    this.#sessionReady.resolve(session);
    this.#logger.info?.(
      `ZooKeeper session ${session.id} opened (${session.client.getSessionTimeout()} ms)`,
    );
    if (!afterExpiry) this.#emit({ kind: "connected", sessionId: session.id, afterExpiry });
  }

  #onState(session: Session, state: string): void {
    if (this.#closed || session !== this.#session) return;
    switch (state) {
      case "SYNC_CONNECTED":
        session.connected = true;
        clearTimeout(session.expiryTimer);
        this.#emit({ kind: "reconnected", sessionId: session.id });
        for (const watch of this.#watches) watch.trigger();
        return;
      case "DISCONNECTED":
        if (!session.connected) return;
        session.connected = false;
        if (!session.expired) this.#emit({ kind: "disconnected" });
        this.#armExpiry(session);
        return;
      case "EXPIRED":
        this.#onExpired(session);
        return;
      default:
        this.#logger.warn?.(`ZooKeeper session ${session.id} entered state ${state}`);
    }
  }

  /**
   * The server expires a session it has not heard from for its timeout, but the client learns
   * that only when it reconnects, and the underlying client has been seen never to reconnect
   * (after ZooKeeper restarts, minutes went by without an attempt). So a disconnection that
   * outlasts {@linkcode EXPIRY_AFTER_TIMEOUTS} session timeouts (by then the server has surely
   * expired the session) counts as an expiry here: the old client is closed and a new session
   * opened, whose ephemerals replace the old session's leftovers.
   */
  #armExpiry(session: Session): void {
    clearTimeout(session.expiryTimer);
    const timeoutMs = session.client.getSessionTimeout() || this.#options.sessionTimeoutMs;
    const afterMs = Math.ceil(timeoutMs * EXPIRY_AFTER_TIMEOUTS);
    session.expiryTimer = setTimeout(() => {
      if (this.#closed || session !== this.#session || session.connected) return;
      this.#logger.warn?.(
        `ZooKeeper session ${session.id} disconnected for ${afterMs} ms: taking it as expired`,
      );
      try {
        session.client.close();
      } catch {
        // Already closing.
      }
      this.#onExpired(session);
    }, afterMs);
  }

  #onExpired(session: Session): void {
    clearTimeout(session.expiryTimer);
    this.#formerSessions.add(session.id);
    session.expired = true;
    session.connected = false;
    this.#session = undefined;
    this.#sessionReady = Promise.withResolvers();
    this.#sessionReady.promise.catch(() => {});
    const error = new ZooKeeperError(
      "sessionExpired",
      `Cannot complete the ZooKeeper operation: session ${session.id} expired`,
    );
    for (const reject of session.inFlight) reject(error);
    session.inFlight.clear();
    this.#logger.warn?.(`ZooKeeper session ${session.id} expired; opening a new one`);
    this.#emit({ kind: "expired", sessionId: session.id });
    this.#renewSession(0);
  }

  #renewSession(attempt: number): void {
    if (this.#closed) return;
    this.#openSession(this.#options.connectTimeoutMs).then(
      (session) => this.#restore(session),
      (error) => {
        if (this.#closed) return;
        const delayMs = Math.min(SESSION_RETRY_DELAY_MS_MAX, 100 * 2 ** attempt);
        this.#logger.warn?.(`Cannot open a new ZooKeeper session: ${String(error)}; retrying`);
        this.#retryTimer = setTimeout(() => this.#renewSession(attempt + 1), delayMs);
      },
    );
  }

  async #restore(session: Session): Promise<void> {
    if (this.#closed) {
      await this.#closeSession(session);
      return;
    }
    this.#install(session, true);
    for (const [path, bytes] of [...this.#ephemerals]) {
      try {
        const result = await this.#recreate(path, bytes);
        if (result.kind === "ok") continue;
        if (result.kind === "dataTooLarge") continue; // Accepted once, so never this large.
        this.#ephemerals.delete(path);
        this.#logger.warn?.(`Cannot restore ephemeral "${path}": ${result.kind}`);
        this.#emit({ kind: "ephemeralLost", path, reason: result.kind });
      } catch (error) {
        // The new session failed too; its own expiry handling restores again.
        this.#logger.warn?.(`Cannot restore ephemeral "${path}" yet: ${String(error)}`);
        if (session !== this.#session) return;
      }
    }
    if (session !== this.#session) return;
    for (const watch of this.#watches) watch.trigger();
    this.#emit({ kind: "connected", sessionId: session.id, afterExpiry: true });
  }

  /**
   * Creates an ephemeral again on a new session. The server tells a client its session expired
   * before it has removed that session's ephemerals, so the node may still be there, owned by
   * the expired session: it is ours and about to go, so it is replaced (deleted at the version
   * seen, so a node another client made meanwhile is never touched). A node owned by any other
   * session is left alone and reported as `nodeExists`.
   */
  async #recreate(path: string, bytes: Uint8Array): Promise<CreateResult> {
    for (let attempt = 0; attempt < RECREATE_ATTEMPTS_MAX; attempt++) {
      const result = await this.#createOwned(path, bytes);
      if (result.kind !== "nodeExists") return result;
      const stat = await this.exists(path);
      if (stat === undefined) continue; // Removed meanwhile: create it now.
      const owner = stat.ephemeralOwner;
      if (owner === undefined || !this.#formerSessions.has(owner)) return result;
      this.#logger.info?.(`Replacing ephemeral "${path}" left by expired session ${owner}`);
      const removed = await this.#call(
        false,
        (client, done) => client.remove(this.#full(path), stat.version, done),
      );
      if (removed.code !== CODE.OK && removed.code !== CODE.NO_NODE) {
        throw this.#serverError("delete", path, removed.code);
      }
    }
    return { kind: "nodeExists" };
  }

  async #closeSession(session: Session): Promise<void> {
    clearTimeout(session.expiryTimer);
    const error = closedError();
    for (const reject of session.inFlight) reject(error);
    session.inFlight.clear();
    if (session.expired) return;
    const ended = Promise.withResolvers<void>();
    session.client.on("state", (state) => {
      if (state.name === "DISCONNECTED") ended.resolve();
    });
    const wasConnected = session.connected;
    session.connected = false;
    session.client.close();
    if (wasConnected) {
      const timer = setTimeout(ended.resolve, CLOSE_TIMEOUT_MS);
      await ended.promise;
      clearTimeout(timer);
    }
    // Ends a connection attempt in progress and any socket the server did not close. A retry the
    // library scheduled before the close (after a refused or dropped connection it waits up to
    // `reconnectDelayMs`) still opens a socket afterwards, and the closing library would read the
    // server's connect response as a reply and throw on it, uncaught, ending the process. So any
    // socket opened from now on is destroyed as it connects, and its bytes are ignored.
    const manager = session.client.connectionManager;
    manager.onSocketConnected = function (this: LibConnectionManager) {
      this.socket?.destroy();
    };
    manager.onSocketData = () => {};
    manager.socket?.destroy();
  }

  // ---- Operations ----

  /**
   * Runs one library call on the current session. Returns the library's result code and values;
   * throws ZooKeeperError for connection loss (retried first when `retry`), expiry, timeout and
   * close.
   */
  async #call(
    retry: boolean,
    operation: (client: LibClient, done: LibCallback) => void,
  ): Promise<{ code: number; results: unknown[] }> {
    const deadline = Date.now() + this.#options.operationTimeoutMs;
    for (;;) {
      try {
        return await this.#callOnce(deadline, operation);
      } catch (error) {
        const retriable = error instanceof ZooKeeperError &&
          (error.code === "connectionLoss" || error.code === "sessionExpired");
        if (!retry || !retriable || Date.now() >= deadline) throw error;
      }
    }
  }

  async #callOnce(
    deadline: number,
    operation: (client: LibClient, done: LibCallback) => void,
  ): Promise<{ code: number; results: unknown[] }> {
    const outcome = Promise.withResolvers<{ code: number; results: unknown[] }>();
    const timer = setTimeout(() => {
      outcome.reject(
        new ZooKeeperError(
          "timeout",
          `Cannot complete the ZooKeeper operation: no answer within ${this.#options.operationTimeoutMs} ms`,
        ),
      );
    }, Math.max(0, deadline - Date.now()));
    let session: Session | undefined;
    try {
      if (this.#closed) throw closedError();
      session = this.#session ??
        await Promise.race([this.#sessionReady.promise, outcome.promise]) as Session;
      session.inFlight.add(outcome.reject);
      const done: LibCallback = (error, ...results) => {
        if (error === null) {
          outcome.resolve({ code: CODE.OK, results });
          return;
        }
        const code = error.getCode();
        if (code === CODE.CONNECTION_LOSS) {
          outcome.reject(
            new ZooKeeperError(
              "connectionLoss",
              "Cannot complete the ZooKeeper operation: the connection was lost",
            ),
          );
        } else if (code === CODE.SESSION_EXPIRED) {
          outcome.reject(
            new ZooKeeperError(
              "sessionExpired",
              "Cannot complete the ZooKeeper operation: the session expired",
            ),
          );
        } else {
          outcome.resolve({ code, results });
        }
      };
      operation(session.client, done);
      return await outcome.promise;
    } finally {
      clearTimeout(timer);
      session?.inFlight.delete(outcome.reject);
    }
  }

  async #read(
    path: string,
    watcher: (() => void) | undefined,
  ): Promise<{ node: NodeData | undefined; fingerprint: string }> {
    const full = this.#full(path);
    const outcome = await this.#call(
      watcher === undefined,
      (client, done) => client.getData(full, watcher, done),
    );
    if (outcome.code === CODE.NO_NODE) {
      if (watcher === undefined) return { node: undefined, fingerprint: "none" };
      // Arm an existence watch, which fires when the node is created.
      const stat = await this.#call(false, (client, done) => client.exists(full, watcher, done));
      if (stat.code !== CODE.OK) throw this.#serverError("exists", path, stat.code);
      if (stat.results[0] !== null) return this.#read(path, watcher);
      return { node: undefined, fingerprint: "none" };
    }
    if (outcome.code !== CODE.OK) throw this.#serverError("get", path, outcome.code);
    const [data, stat] = outcome.results as [Buffer | null, LibStat];
    const node = {
      data: data === null ? new Uint8Array() : new Uint8Array(data),
      version: stat.version,
    };
    return { node, fingerprint: `${stat.czxid.toString("hex")}:${stat.mzxid.toString("hex")}` };
  }

  async #readChildren(
    path: string,
    watcher: (() => void) | undefined,
  ): Promise<{ children: string[] | undefined; fingerprint: string }> {
    const full = this.#full(path);
    const outcome = await this.#call(
      watcher === undefined,
      (client, done) => client.getChildren(full, watcher, done),
    );
    if (outcome.code === CODE.NO_NODE) {
      if (watcher === undefined) return { children: undefined, fingerprint: "none" };
      const stat = await this.#call(false, (client, done) => client.exists(full, watcher, done));
      if (stat.code !== CODE.OK) throw this.#serverError("exists", path, stat.code);
      if (stat.results[0] !== null) return this.#readChildren(path, watcher);
      return { children: undefined, fingerprint: "none" };
    }
    if (outcome.code !== CODE.OK) throw this.#serverError("children", path, outcome.code);
    const children = [...(outcome.results[0] as string[])].sort();
    return { children, fingerprint: JSON.stringify(children) };
  }

  // ---- Watches ----

  #watch(kind: Watch["kind"], path: string, onChange: (value: unknown) => void): () => void {
    this.#full(path); // Validates the path now rather than in the background.
    const watch: Watch = {
      kind,
      path,
      onChange,
      active: true,
      running: false,
      again: false,
      fingerprint: undefined,
      trigger: () => this.#refresh(watch),
    };
    this.#watches.add(watch);
    watch.trigger();
    return () => {
      watch.active = false;
      this.#watches.delete(watch);
    };
  }

  /** Re-reads a watched node with a fresh watch and reports it if it changed. */
  async #refresh(watch: Watch): Promise<void> {
    if (watch.running) {
      watch.again = true;
      return;
    }
    watch.running = true;
    try {
      do {
        watch.again = false;
        if (!watch.active || this.#closed) return;
        try {
          const { value, fingerprint } = watch.kind === "data"
            ? await this.#read(watch.path, watch.trigger).then((r) => ({
              value: r.node,
              fingerprint: r.fingerprint,
            }))
            : await this.#readChildren(watch.path, watch.trigger).then((r) => ({
              value: r.children,
              fingerprint: r.fingerprint,
            }));
          if (watch.active && fingerprint !== watch.fingerprint) {
            watch.fingerprint = fingerprint;
            this.#deliver(watch, value);
          }
        } catch (error) {
          // Connection loss or expiry: the reconnection or the new session triggers us again.
          if (!this.#closed) {
            this.#logger.warn?.(`Cannot re-arm the watch on "${watch.path}" yet: ${String(error)}`);
          }
        }
      } while (watch.again);
    } finally {
      watch.running = false;
    }
  }

  #deliver(watch: Watch, value: unknown): void {
    try {
      watch.onChange(value);
    } catch (error) {
      this.#logger.warn?.(`The watch callback for "${watch.path}" threw: ${String(error)}`);
    }
  }

  #emit(event: ConnectionEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#logger.warn?.(`A connection listener threw on "${event.kind}": ${String(error)}`);
      }
    }
  }

  // ---- Paths ----

  #full(path: string): string {
    const normalized = normalizePath(path);
    if (this.#root === "/") return normalized;
    return normalized === "/" ? this.#root : this.#root + normalized;
  }

  #relative(full: string): string {
    if (this.#root === "/") return full;
    assert(
      full.startsWith(this.#root),
      `ZooKeeper returned "${full}" outside the root "${this.#root}"`,
    );
    return full.slice(this.#root.length) || "/";
  }

  #serverError(operation: string, path: string, code: number): ZooKeeperError {
    const name = Object.keys(CODE).find((key) => CODE[key] === code) ?? String(code);
    return new ZooKeeperError(
      "serverError",
      `Cannot ${operation} "${path}" under "${this.#root}": ZooKeeper answered ${name}`,
    );
  }
}

/** Checks a caller path: absolute, no empty, "." or ".." segments, no trailing slash. */
function normalizePath(path: string): string {
  if (path === "/") return path;
  const valid = path.startsWith("/") && !path.endsWith("/") &&
    path.slice(1).split("/").every((segment) =>
      segment !== "" && segment !== "." && segment !== ".."
    );
  if (!valid) {
    throw new TypeError(
      `Cannot use ZooKeeper path "${path}": expected "/" or "/a/b" without empty, "." or ".." segments`,
    );
  }
  return path;
}

function normalizeRoot(root: string): string {
  return normalizePath(root);
}

/** `/a/b/c` → `/a`, `/a/b`, `/a/b/c`. */
function rootPrefixes(root: string): string[] {
  const prefixes: string[] = [];
  let prefix = "";
  for (const part of root.split("/").slice(1)) {
    prefix += `/${part}`;
    prefixes.push(prefix);
  }
  return prefixes;
}

function closedError(): ZooKeeperError {
  return new ZooKeeperError("closed", "Cannot use ZooKeeper: the client is closed");
}

function assertVersion(version: number): void {
  if (!Number.isSafeInteger(version) || version < -1) {
    throw new TypeError(`Cannot use version ${version}: expected an integer >= -1`);
  }
}

function toBytes(data: ZnodeData): Uint8Array {
  return typeof data === "string" ? new TextEncoder().encode(data) : data;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function toNodeStat(stat: LibStat): NodeStat {
  const owner = stat.ephemeralOwner.toString("hex");
  return {
    version: stat.version,
    childrenCount: stat.numChildren,
    ephemeralOwner: /^0+$/.test(owner) ? undefined : owner,
  };
}
