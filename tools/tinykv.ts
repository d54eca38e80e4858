/**
 * `tinykv`: the command line client of a TinyKV cluster: data commands through its gateways
 * ({@linkcode TinyKvClient} from `@tinykv/client`), admin commands through placement's admin API
 * (`tools/tinykv/admin.ts`). Run `tinykv --help` for the usage, the output formats and the exit
 * codes ({@linkcode USAGE}).
 *
 * Permissions: `--allow-net` (the gateways of `--endpoint`, the placement instances of
 * `--placement`, and for `status` and `backup` the kvnodes placement lists), `--allow-env` for
 * grpc-js's `GRPC_*` and proxy variables and `TINYKV_CA`/`TINYKV_TOKEN_FILE`, `--allow-read` for
 * the `--ca` and `--token-file` files, `trace`'s logs and `restore`'s DIR, and `--allow-write` for
 * `backup`'s DIR. Checking whether stdout is a terminal, and reading a VALUE of `-` from stdin
 * (`tools/tinykv/stdin.ts`), need none.
 *
 * @module
 */
import { type KeyValue, TinyKvClient, TinyKvError } from "@tinykv/client";
import {
  type AdminCommand,
  DRAIN_TIMEOUT_MS_DEFAULT,
  PLACEMENT_DEFAULT,
  runAdmin,
} from "./tinykv/admin.ts";
import { SCAN_LIMIT_MAX, type ShardId, shardId } from "@tinykv/shard";
import { WatchEvent_Kind } from "@tinykv/proto/tinykv/v1";
import { EXIT, exitCodeOf } from "./tinykv/exit_codes.ts";
import { bytesOfHex, hexOf } from "./tinykv/hex.ts";
import { type ByteReader, readStdinValue, STDIN_VALUE_BYTES_MAX } from "./tinykv/stdin.ts";
import { formatTrace, newTraceId, readTrace } from "./tinykv/trace.ts";
import {
  BACKUP_FORMAT,
  BACKUP_TIMEOUT_MS_DEFAULT,
  runBackup,
  runRestore,
} from "./tinykv/backup.ts";
import { checkTraceId } from "@tinykv/shard";
import type { ClientSecurity } from "@tinykv/rpc";

export { EXIT };

const ENDPOINT_DEFAULT = "127.0.0.1:7700";
/** Where the dev cluster's services log (`log.dir`); `tinykv trace` reads it. */
const LOGS_DEFAULT = "./data/logs";
const SCAN_PAGE_SIZE = 1000;
/** The VALUE that means "read the value from stdin". */
const STDIN_ARG = "-";
const STDIN_MIB = STDIN_VALUE_BYTES_MAX / (1024 * 1024);
/**
 * The largest gRPC message the CLI sends or receives: a value as large as a server may allow
 * (`STDIN_VALUE_BYTES_MAX`, the schema's maximum `storage.value_bytes_max`) plus its key, a second
 * value given as an argument (Linux caps one argument at 128 KiB) and framing. The server's
 * limits then decide, and name themselves; the client's default of 4 MiB refused larger values
 * on the client with RESOURCE_EXHAUSTED, even where the server would take them.
 */
const MESSAGE_BYTES_MAX = STDIN_VALUE_BYTES_MAX + 1024 * 1024;

/** The name checked in servers' certificates unless `--server-name` says otherwise. */
const SERVER_NAME_DEFAULT = "tinykv";

/** The usage text of `tinykv --help`. */
export const USAGE = `tinykv: read and write a TinyKV cluster through its gateways, and administer
it through placement

Usage:
  tinykv [flags] get KEY
  tinykv [flags] put KEY (VALUE | -)
  tinykv [flags] del KEY
  tinykv [flags] append KEY (VALUE | -)
  tinykv [flags] cas KEY (--expected V | --absent) (--value V | --delete)   (V may be -)
  tinykv [flags] scan [--start S] [--end E] [--limit N]
  tinykv [flags] watch KEY [--prefix] [--from SHARD:INDEX,...] [--count N]
  tinykv [flags] status
  tinykv [flags] rebalance [--dry-run]
  tinykv [flags] move SHARD --from NODE --to NODE
  tinykv [flags] transfer-leader SHARD --to NODE
  tinykv [flags] drain NODE [--no-wait]
  tinykv [flags] backup DIR
  tinykv [flags] restore DIR
  tinykv trace ID [--logs DIR]
  tinykv COMMAND --help

Flags (anywhere on the line; "--" ends flags, so later words may start with "-"):
  --endpoint HOST:PORT  a gateway; repeat or comma-separate for several (failover in order)
                        (default ${ENDPOINT_DEFAULT})
  --placement HOST:PORT a placement admin address, for the admin commands; repeat or
                        comma-separate for several (tried in order; a non-leader's answer naming
                        the leader is followed once) (default ${PLACEMENT_DEFAULT})
  --timeout MS          deadline of each request, retries included (default 5000); for drain,
                        the bound on the whole wait (default ${DRAIN_TIMEOUT_MS_DEFAULT}, 10 minutes); for
                        backup, the bound on reaching each shard's leader and then on each
                        wait for its data, and for restore, per write (default ${BACKUP_TIMEOUT_MS_DEFAULT})
  --json                print one JSON document per command on stdout, errors included
  --hex                 KEY, VALUE and the values of --expected/--value/--start/--end are hex,
                        and human output prints keys and values as hex
  --trace               (data commands) follow the request through the services: each logs its
                        steps under a new trace id, printed on stderr with the command that
                        shows them (tinykv trace ID)
  --ca FILE             connect with TLS, trusting this CA (PEM) (default: \$TINYKV_CA; none:
                        plaintext)
  --token-file FILE     send the token in FILE with every call (default: \$TINYKV_TOKEN_FILE;
                        none: no credential). Credentials are never picked up otherwise
  --server-name NAME    the name checked in the servers' certificates (default ${SERVER_NAME_DEFAULT})
  -h, --help            show this help

Values from stdin:
  A VALUE of "-" (of put or append, or as --expected or --value of cas; one per command) is
  read from stdin: all of it, as raw bytes, so binary passes byte for byte and a trailing
  newline is part of the value (use printf, not echo, to leave it out). At most ${STDIN_MIB} MiB
  is read; the server refuses a value over its own limit (storage.value_bytes_max, default
  1 MiB). With --hex, stdin holds hex text, and whitespace in it is ignored (xxd -p output
  works). A KEY, --start or --end of "-" is the key "-"; to store the value "-" itself, use
  --hex and 2d.

Output:
  get     the value, then a newline
  put     OK
  del     "deleted", or "not found" when the key was absent (exit 0 either way)
  append  the new length of the value in bytes
  cas     OK; or "not swapped" and the current value (or "key is absent") on stderr, exit 1
  scan    one "KEY<TAB>VALUE" line per key, in byte order. Without --limit it pages through
          the whole range; with --limit N it prints at most N keys and, when more remain, the
          key to continue from (--start) on stderr
  Human output prints bytes that are valid UTF-8 as text and other bytes as "hex:" and their hex
  digits (--hex prints everything as hex).
  --json prints bytes that are valid UTF-8 as JSON strings and other bytes as {"base64": "..."}:
    get     {"found": true, "value": V} or {"found": false}
    put     {"ok": true}
    del     {"deleted": BOOL}
    append  {"length": N}
    cas     {"succeeded": BOOL, "found": BOOL, "current": V or null}
    scan    {"entries": [{"key": K, "value": V}, ...], "more": BOOL, "next": K or null}
    errors  {"error": {"code": CODE, "message": TEXT, "outcomeUnknown": BOOL}}

Admin output:
  status           the placement leader; a table of nodes (id, address, live, draining,
                   replicas, leaders); a table of shards (id, hash range, replicas, learners,
                   leader, conf epoch, applied index, size); the moves in progress with their
                   step; placement's notes. Applied index and size come from the kvnodes' own
                   status ("-" when a node does not answer)
  rebalance        the planned moves, each with its cause and reason, and whether they were
                   started (--dry-run: planned only)
  move, transfer-leader
                   the started move's reason and first step (it goes on in the background)
  drain            waits until the node holds no replica: a progress bar on a terminal, a line
                   per change (and every 5 s) otherwise; --no-wait returns once it is marked
  --json:
    status           placement's ClusterState (nodes, shards, tasks, notes, ...) plus
                     "shardStats": [{"shardId", "appliedIndex", "dataKeys", "dataBytes",
                     "reportedBy"}] from the kvnodes
    rebalance        {"dryRun": BOOL, "started": BOOL, "moves": [...], "notes": [...]}
    move, transfer-leader
                     {"started": true, "task": {"move": {...}, "step": S, ...}}
    drain            one document at the end: {"node": N, "replicas": COUNT, "done": BOOL, ...}

Backup and restore:
  backup DIR   copies every shard from its leader into DIR (new or empty): each shard at one
               applied index, after a linearizable read barrier, so it holds every write
               acknowledged before the command started. DIR gets shard-N.pairs files and, last,
               manifest.json (format ${BACKUP_FORMAT}: per shard its range, applied index, term,
               node, keys, bytes and SHA-256). Talks to placement (--placement) and the kvnodes
               it lists; needs the admin role. Prints a table of the shards copied
               (--json: {"ok": true, "dir": DIR, "manifest": {...}})
  restore DIR  checks the whole backup first (manifest, SHA-256, counts, every key's shard),
               refuses a cluster that holds any key, writes the largest value first and alone
               (a cluster with a smaller storage.value_bytes_max refuses it with nothing
               written), then every pair through the gateways (--endpoint). The new cluster
               may have another number of shards (--json: {"ok": true, "keys": N, "bytes": N,
               "shards": N}; a failure midway adds "written" and "keys" to the error: start
               a new cluster to restore again)

Exit codes:
  0  success
  1  get: the key does not exist; cas: the comparison did not match (nothing changed)
  2  usage error (bad command, flag or argument; or for a VALUE of "-", a stdin that cannot be
     read, is over ${STDIN_MIB} MiB, or with --hex is not hex)
  3  the server rejected the request as invalid (INVALID_ARGUMENT, e.g. an empty key, an unknown
     shard or node; or OUT_OF_RANGE, a watch position no longer held)
  4  retryable failure: UNAVAILABLE, DEADLINE_EXCEEDED (a write's outcome is then unknown) or
     RESOURCE_EXHAUSTED; the client already retried until the deadline (also: no placement
     instance reachable, or drain still waiting at --timeout)
  5  any other failure (FAILED_PRECONDITION, e.g. a move already in flight, a drain that would
     leave too few nodes, a backup DIR that is not empty, a restore into a cluster with keys;
     DATA_LOSS, e.g. a backup file whose checksum differs; INTERNAL, cancelled)
  6  refused: no credential the server accepts (UNAUTHENTICATED) or a role that may not make the
     call (PERMISSION_DENIED); also a server certificate TLS does not accept (signed by another
     CA than --ca, or not for --server-name), at once, without retrying
`;

const COMMAND_USAGE: Record<string, string> = {
  get: "tinykv [flags] get KEY\n  Prints the value of KEY (linearizable read). Exit 1 when absent.",
  put: "tinykv [flags] put KEY (VALUE | -)\n" +
    "  Sets KEY to VALUE (an empty VALUE is allowed). With -, VALUE is all of stdin, byte for\n" +
    '  byte (hex text with --hex). A KEY of "-" is the key "-".',
  del: 'tinykv [flags] del KEY\n  Removes KEY; prints "deleted" or "not found".',
  append: "tinykv [flags] append KEY (VALUE | -)\n" +
    "  Appends VALUE to KEY's value; prints the new length. With -, VALUE is all of stdin,\n" +
    "  byte for byte (hex text with --hex).",
  cas: "tinykv [flags] cas KEY (--expected V | --absent) (--value V | --delete)\n" +
    "  Sets KEY to V (or deletes it) only when it holds --expected (or is absent).\n" +
    "  Exit 1 when the comparison does not match; the current value goes to stderr.\n" +
    "  A V of - is all of stdin, byte for byte (hex text with --hex): --expected - or\n" +
    "  --value -, not both.",
  scan: "tinykv [flags] scan [--start S] [--end E] [--limit N]\n" +
    "  Lists keys in [S, E) in byte order as KEY<TAB>VALUE lines. Without --limit, every key;\n" +
    `  with --limit N (1 to ${SCAN_LIMIT_MAX}), one page and the key to continue from on stderr.`,
  watch: "tinykv [flags] watch KEY [--prefix] [--from SHARD:INDEX,...] [--count N]\n" +
    "  Prints every change of KEY (with --prefix, of every key under KEY; an empty KEY with\n" +
    "  --prefix is every key) from now on, one line each: PUT<TAB>KEY<TAB>VALUE or\n" +
    "  DELETE<TAB>KEY, then <TAB>SHARD:INDEX (--json: one document per change, and one\n" +
    '  {"positions": [...]} per update). Stderr shows where the watch started; when it\n' +
    "  ends (Ctrl-C, --count changes printed, or --timeout MS passed) it prints the --from\n" +
    "  that resumes it without missing or repeating a change. Exit 3 when a --from position\n" +
    "  is no longer held (OUT_OF_RANGE).",
  status: "tinykv [flags] status\n" +
    "  Prints the nodes, shards and moves in progress as placement's leader sees them.",
  rebalance: "tinykv [flags] rebalance [--dry-run]\n" +
    "  Plans a round of moves and starts them; --dry-run prints the plan without starting it.",
  move: "tinykv [flags] move SHARD --from NODE --to NODE\n" +
    "  Starts moving shard SHARD's replica from node NODE to another node.",
  "transfer-leader": "tinykv [flags] transfer-leader SHARD --to NODE\n" +
    "  Starts moving shard SHARD's leadership to NODE, one of its voters.",
  drain: "tinykv [flags] drain NODE [--no-wait]\n" +
    "  Marks NODE draining, then waits (--timeout, default 10 minutes) until it holds no\n" +
    "  replica, with a progress bar. --no-wait returns once the node is marked.",
  backup: "tinykv [flags] backup DIR\n" +
    "  Copies every shard, each at one applied index, into DIR (new or empty) with checksums\n" +
    "  and a manifest written last. Needs --placement and the admin role.",
  restore: "tinykv [flags] restore DIR\n" +
    "  Checks the backup in DIR, then writes all of it into the cluster behind --endpoint,\n" +
    "  which must hold no key.",
  trace: "tinykv trace ID [--logs DIR]\n" +
    "  Prints the steps of a request sent with --trace, from the services' logs in DIR\n" +
    `  (default ${LOGS_DEFAULT}, the dev cluster's log.dir), oldest first: the gateway that\n` +
    "  received and answered it, the kvnode that took it in, proposed it at a log index and\n" +
    "  answered it. Exit 1 when no line names ID. Reading DIR needs --allow-read for it.",
};

const ADMIN_COMMANDS = new Set(["status", "rebalance", "move", "transfer-leader", "drain"]);

/** A value given as {@linkcode STDIN_ARG} on the command line, to read once parsing succeeded. */
const FROM_STDIN = Symbol("fromStdin");
type ValueArg = Uint8Array | typeof FROM_STDIN;

/**
 * A command line. `V` holds its values: as parsed, {@linkcode ValueArg} (a `-` not read yet);
 * to run, bytes.
 */
type Command<V = Uint8Array> =
  | { kind: "help"; text: string }
  | { kind: "admin"; admin: AdminCommand }
  | { kind: "get"; key: Uint8Array }
  | { kind: "put"; key: Uint8Array; value: V }
  | { kind: "del"; key: Uint8Array }
  | { kind: "append"; key: Uint8Array; value: V }
  | {
    kind: "cas";
    key: Uint8Array;
    expected: V | undefined;
    value: V | undefined;
  }
  | { kind: "scan"; start?: Uint8Array; end?: Uint8Array; limit?: number }
  | {
    kind: "watch";
    key: Uint8Array;
    prefix: boolean;
    from: Array<{ shard: number; index: number }>;
    count: number | undefined;
  }
  | { kind: "trace"; id: string; logs: string }
  | { kind: "backup"; dir: string }
  | { kind: "restore"; dir: string };

interface Flags {
  endpoints: string[];
  /** `--ca`, `--token-file`, `--server-name` (files not read yet). */
  ca: string | undefined;
  tokenFile: string | undefined;
  serverName: string | undefined;
  placements: string[];
  timeoutMs: number | undefined;
  json: boolean;
  hex: boolean;
  help: boolean;
  /** `--trace`: follow the request (data commands). */
  trace: boolean;
  /** Command flags by name (`--absent` and `--delete` hold ""). */
  named: Map<string, string>;
  words: string[];
  /** With `--trace`, the id this run's request is followed under. */
  traceId?: string;
}

/** A bad command line; `command` names the command whose usage to show, if known. */
class UsageError extends Error {
  readonly command: string | undefined;

  constructor(message: string, command?: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

const VALUED = new Set([
  "endpoint",
  "ca",
  "token-file",
  "server-name",
  "placement",
  "timeout",
  "expected",
  "value",
  "start",
  "end",
  "limit",
  "from",
  "to",
  "logs",
  "count",
]);
const SWITCHES = new Set([
  "json",
  "hex",
  "help",
  "trace",
  "absent",
  "delete",
  "dry-run",
  "no-wait",
  "prefix",
]);
const COMMAND_FLAGS: Record<string, readonly string[]> = {
  cas: ["expected", "absent", "value", "delete"],
  scan: ["start", "end", "limit"],
  watch: ["prefix", "from", "count"],
  rebalance: ["dry-run"],
  move: ["from", "to"],
  "transfer-leader": ["to"],
  drain: ["no-wait"],
  trace: ["logs"],
};

function parseFlags(args: readonly string[]): Flags {
  const flags: Flags = {
    endpoints: [],
    ca: undefined,
    tokenFile: undefined,
    serverName: undefined,
    placements: [],
    timeoutMs: undefined,
    json: false,
    hex: false,
    help: false,
    trace: false,
    named: new Map(),
    words: [],
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      flags.words.push(...args.slice(i + 1));
      break;
    }
    if (arg === "-h") {
      flags.help = true;
      continue;
    }
    if (!arg.startsWith("--") || arg === "-") {
      if (arg.startsWith("-") && arg !== "-") throw new UsageError(`Unknown flag "${arg}"`);
      flags.words.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (SWITCHES.has(name)) {
      if (eq >= 0) throw new UsageError(`Flag "--${name}" takes no value`);
      setSwitch(flags, name);
    } else if (VALUED.has(name)) {
      const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
      if (value === undefined) throw new UsageError(`Flag "--${name}" needs a value`);
      setValued(flags, name, value);
    } else {
      throw new UsageError(`Unknown flag "--${name}"`);
    }
  }
  if (flags.endpoints.length === 0) flags.endpoints.push(ENDPOINT_DEFAULT);
  if (flags.placements.length === 0) flags.placements.push(PLACEMENT_DEFAULT);
  return flags;
}

function setSwitch(flags: Flags, name: string): void {
  if (name === "json") flags.json = true;
  else if (name === "hex") flags.hex = true;
  else if (name === "help") flags.help = true;
  else if (name === "trace") flags.trace = true;
  else flags.named.set(name, "");
}

function setValued(flags: Flags, name: string, value: string): void {
  if (name === "endpoint" || name === "placement") {
    for (const part of value.split(",")) {
      const address = part.trim();
      if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d{1,5}$/.test(address)) {
        throw new UsageError(`Flag "--${name}" is "${part}": expected host:port`);
      }
      (name === "endpoint" ? flags.endpoints : flags.placements).push(address);
    }
  } else if (name === "ca" || name === "token-file" || name === "server-name") {
    const key = name === "ca" ? "ca" : name === "token-file" ? "tokenFile" : "serverName";
    if (flags[key] !== undefined) throw new UsageError(`Flag "--${name}" is given twice`);
    if (value === "") throw new UsageError(`Flag "--${name}" needs a value`);
    flags[key] = value;
  } else if (name === "timeout") {
    flags.timeoutMs = positiveInteger("--timeout", value, 3_600_000);
  } else {
    if (flags.named.has(name)) throw new UsageError(`Flag "--${name}" is given twice`);
    flags.named.set(name, value);
  }
}

function positiveInteger(flag: string, value: string, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new UsageError(`Flag "${flag}" is "${value}": expected an integer from 1 to ${max}`);
  }
  return n;
}

function parseCommand(flags: Flags): Command<ValueArg> {
  const [name, ...rest] = flags.words;
  if (name === undefined) {
    if (flags.help) return { kind: "help", text: USAGE };
    throw new UsageError("No command given");
  }
  if (!(name in COMMAND_USAGE)) throw new UsageError(`Unknown command "${name}"`);
  if (flags.help) return { kind: "help", text: `Usage: ${COMMAND_USAGE[name]}\n` };
  const allowed = COMMAND_FLAGS[name] ?? [];
  for (const flag of flags.named.keys()) {
    if (!allowed.includes(flag)) {
      throw new UsageError(`Flag "--${flag}" does not apply to "${name}"`, name);
    }
  }
  const arity = ARITY[name] ?? 0;
  if (rest.length !== arity) {
    throw new UsageError(
      `Command "${name}" takes ${arity} argument${arity === 1 ? "" : "s"}: got ${rest.length}`,
      name,
    );
  }
  if (ADMIN_COMMANDS.has(name)) return { kind: "admin", admin: parseAdmin(flags, name, rest) };
  if (flags.trace && (ADMIN_COMMANDS.has(name) || name === "trace")) {
    throw new UsageError(`Flag "--trace" applies to data commands, not "${name}"`, name);
  }
  if (name === "backup" || name === "restore") {
    if (flags.trace) {
      throw new UsageError(`Flag "--trace" applies to data commands, not "${name}"`, name);
    }
    if (rest[0] === "") throw new UsageError(`Command "${name}" needs a DIR`, name);
    return { kind: name, dir: rest[0] };
  }
  if (name === "trace") {
    const problem = checkTraceId(rest[0]);
    if (problem !== undefined) throw new UsageError(problem, name);
    return { kind: "trace", id: rest[0], logs: flags.named.get("logs") ?? LOGS_DEFAULT };
  }
  const key = rest[0] === undefined ? undefined : decodeArg(flags, rest[0]);
  switch (name) {
    case "get":
    case "del":
      return { kind: name, key: key! };
    case "put":
    case "append":
      return { kind: name, key: key!, value: valueArg(flags, rest[1]) };
    case "cas":
      return parseCas(flags, key!);
    case "watch":
      return parseWatch(flags, key!);
    default:
      return parseScan(flags);
  }
}

const ARITY: Record<string, number> = {
  get: 1,
  del: 1,
  put: 2,
  append: 2,
  cas: 1,
  scan: 0,
  watch: 1,
  status: 0,
  rebalance: 0,
  move: 1,
  "transfer-leader": 1,
  drain: 1,
  trace: 1,
  backup: 1,
  restore: 1,
};

function parseAdmin(flags: Flags, name: string, args: readonly string[]): AdminCommand {
  const need = (flag: string) => {
    const value = flags.named.get(flag);
    if (value === undefined || value === "") {
      throw new UsageError(`Command "${name}" needs "--${flag} NODE"`, name);
    }
    return value;
  };
  switch (name) {
    case "status":
      return { kind: "status" };
    case "rebalance":
      return { kind: "rebalance", dryRun: flags.named.has("dry-run") };
    case "move":
      return {
        kind: "move",
        shardId: shardIdOf(args[0], name),
        from: need("from"),
        to: need("to"),
      };
    case "transfer-leader":
      return { kind: "transfer-leader", shardId: shardIdOf(args[0], name), to: need("to") };
    default:
      if (args[0] === "") throw new UsageError('Command "drain" needs a NODE', name);
      return { kind: "drain", nodeId: args[0], wait: !flags.named.has("no-wait") };
  }
}

/** A shard id: an integer from 0 to 2^32 - 1 (the proto's uint32), branded here, where it enters. */
function shardIdOf(word: string, command: string): ShardId {
  const n = Number(word);
  if (!/^\d+$/.test(word) || n > 0xffff_ffff) {
    throw new UsageError(
      `Shard "${word}" is not a shard id: expected an integer from 0 to 4294967295`,
      command,
    );
  }
  return shardId(n);
}

function parseCas(flags: Flags, key: Uint8Array): Command<ValueArg> {
  const named = flags.named;
  if (named.has("expected") === named.has("absent")) {
    throw new UsageError('Command "cas" needs exactly one of "--expected V" and "--absent"', "cas");
  }
  if (named.has("value") === named.has("delete")) {
    throw new UsageError('Command "cas" needs exactly one of "--value V" and "--delete"', "cas");
  }
  const expected = named.get("expected");
  const value = named.get("value");
  if (expected === STDIN_ARG && value === STDIN_ARG) {
    throw new UsageError(
      'Command "cas" reads stdin once: "--expected -" and "--value -" cannot both be given',
      "cas",
    );
  }
  return {
    kind: "cas",
    key,
    expected: expected === undefined ? undefined : valueArg(flags, expected),
    value: value === undefined ? undefined : valueArg(flags, value),
  };
}

function parseWatch(flags: Flags, key: Uint8Array): Command {
  const from: Array<{ shard: number; index: number }> = [];
  const positions = flags.named.get("from");
  for (const part of positions === undefined ? [] : positions.split(",")) {
    const match = /^(\d+):(\d+)$/.exec(part.trim());
    const shard = Number(match?.[1]);
    const index = Number(match?.[2]);
    if (match === null || shard > 0xffff_ffff || !Number.isSafeInteger(index)) {
      throw new UsageError(
        `Flag "--from" has "${part}": expected SHARD:INDEX pairs, comma-separated`,
        "watch",
      );
    }
    if (from.some((position) => position.shard === shard)) {
      throw new UsageError(`Flag "--from" names shard ${shard} twice`, "watch");
    }
    from.push({ shard, index });
  }
  const count = flags.named.get("count");
  return {
    kind: "watch",
    key,
    prefix: flags.named.has("prefix"),
    from,
    count: count === undefined ? undefined : positiveInteger("--count", count, 1_000_000_000),
  };
}

function parseScan(flags: Flags): Command {
  const start = flags.named.get("start");
  const end = flags.named.get("end");
  const limit = flags.named.get("limit");
  return {
    kind: "scan",
    start: start === undefined ? undefined : decodeArg(flags, start),
    end: end === undefined ? undefined : decodeArg(flags, end),
    limit: limit === undefined ? undefined : positiveInteger("--limit", limit, SCAN_LIMIT_MAX),
  };
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

function decodeArg(flags: Flags, word: string): Uint8Array {
  if (!flags.hex) return encoder.encode(word);
  const bytes = bytesOfHex(word);
  if (bytes === undefined) {
    throw new UsageError(`Argument "${word}" is not hex: expected pairs of hex digits (--hex)`);
  }
  return bytes;
}

/** A VALUE argument: {@linkcode FROM_STDIN} for `-`, else its bytes. Keys never come here. */
function valueArg(flags: Flags, word: string): ValueArg {
  return word === STDIN_ARG ? FROM_STDIN : decodeArg(flags, word);
}

/**
 * Reads the value given as `-`, if any, from `stdin`. Parsing allows one `-` per command, and
 * this reads stdin only for it. A stdin that cannot be read, is too long or is not hex (with
 * --hex) is a usage error.
 */
async function readStdinArg(
  command: Command<ValueArg>,
  flags: Flags,
  stdin: ByteReader,
): Promise<Command> {
  let reads = 0;
  const fill = async (arg: ValueArg): Promise<Uint8Array> => {
    if (arg !== FROM_STDIN) return arg;
    if (++reads > 1) throw new Error(`Command "${command.kind}" read stdin twice`);
    const read = await readStdinValue(stdin, { hex: flags.hex });
    switch (read.kind) {
      case "ok":
        return read.value;
      case "tooLong":
      case "notHex":
      case "unreadable":
        throw new UsageError(read.message, command.kind);
      default:
        return read satisfies never;
    }
  };
  switch (command.kind) {
    case "put":
    case "append":
      return { ...command, value: await fill(command.value) };
    case "cas":
      return {
        ...command,
        expected: command.expected === undefined ? undefined : await fill(command.expected),
        value: command.value === undefined ? undefined : await fill(command.value),
      };
    default:
      return command;
  }
}

function utf8Of(bytes: Uint8Array): string | undefined {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Bytes for humans: UTF-8 text when valid (and not --hex), else `hex:` and hex digits. */
function human(flags: Flags, bytes: Uint8Array): string {
  if (flags.hex) return hexOf(bytes);
  return utf8Of(bytes) ?? `hex:${hexOf(bytes)}`;
}

/** Bytes in JSON: a string when valid UTF-8, else `{"base64": "..."}`. */
function jsonBytes(bytes: Uint8Array): string | { base64: string } {
  const text = utf8Of(bytes);
  if (text !== undefined) return text;
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return { base64: btoa(binary) };
}

/** Where a command writes (stdout and stderr, as text lines) and reads a `-` value from. */
export interface Output {
  /** Writes `line` and a newline to stdout. */
  out(line: string): Promise<void>;
  /** Writes `line` and a newline to stderr. */
  err(line: string): Promise<void>;
  /** Rewrites the current stdout line (a progress bar); only called when `terminal`. */
  rewrite?(line: string): Promise<void>;
  /** Whether stdout is a terminal (then `drain` draws a progress bar). */
  terminal?: boolean;
  /** Where a VALUE of `-` is read from; default `Deno.stdin`. */
  stdin?: ByteReader;
}

/**
 * Writes all of `text`. A reader that went away (`tinykv status | head`) is not an error of the
 * command: the rest of the output is dropped, and the command finishes with its own exit code.
 */
async function writeAll(file: { write(p: Uint8Array): Promise<number> }, text: string) {
  let data = encoder.encode(text);
  try {
    while (data.length > 0) data = data.subarray(await file.write(data));
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
}

const STDIO: Output = {
  out: (line) => writeAll(Deno.stdout, `${line}\n`),
  err: (line) => writeAll(Deno.stderr, `${line}\n`),
  // Carriage return, then erase the line (ECMA-48 EL), then the new text.
  rewrite: (line) => writeAll(Deno.stdout, `\r\x1b[2K${line}`),
  terminal: Deno.stdout.isTerminal(),
};

/** Runs one data command; returns the exit code. */
async function run(command: Command, flags: Flags, client: TinyKvClient, io: Output) {
  const call = { deadlineMs: flags.timeoutMs, traceId: flags.traceId };
  const print = (line: string, json: unknown) =>
    flags.json ? io.out(JSON.stringify(json)) : io.out(line);
  switch (command.kind) {
    case "get": {
      const got = await client.get(command.key, call);
      if (!got.found) {
        if (flags.json) await io.out(JSON.stringify({ found: false }));
        else await io.err(`Key "${human(flags, command.key)}" not found`);
        return EXIT.negative;
      }
      await print(human(flags, got.value), { found: true, value: jsonBytes(got.value) });
      return EXIT.ok;
    }
    case "put":
      await client.put(command.key, command.value, call);
      await print("OK", { ok: true });
      return EXIT.ok;
    case "del": {
      const deleted = await client.delete(command.key, call);
      await print(deleted ? "deleted" : "not found", { deleted });
      return EXIT.ok;
    }
    case "append": {
      const length = await client.append(command.key, command.value, call);
      await print(String(length), { length });
      return EXIT.ok;
    }
    case "cas":
      return await runCas(command, flags, client, io);
    case "scan":
      return await runScan(command, flags, client, io);
    case "watch":
      return await runWatch(command, flags, client, io);
    case "help":
    case "admin":
    case "trace":
    case "backup":
    case "restore":
      throw new Error(`run() was given "${command.kind}"`);
    default:
      return command satisfies never;
  }
}

async function runCas(
  command: Extract<Command, { kind: "cas" }>,
  flags: Flags,
  client: TinyKvClient,
  io: Output,
): Promise<number> {
  const result = await client.compareAndSwap(
    command.key,
    command.expected === undefined ? { expectAbsent: true } : { expected: command.expected },
    command.value === undefined
      ? { delete: true, deadlineMs: flags.timeoutMs, traceId: flags.traceId }
      : { value: command.value, deadlineMs: flags.timeoutMs, traceId: flags.traceId },
  );
  if (flags.json) {
    await io.out(JSON.stringify({
      succeeded: result.succeeded,
      found: result.found,
      current: result.found ? jsonBytes(result.current) : null,
    }));
  } else if (result.succeeded) {
    await io.out("OK");
  } else {
    await io.err(
      result.found
        ? `not swapped: current value is ${human(flags, result.current)}`
        : "not swapped: key is absent",
    );
  }
  return result.succeeded ? EXIT.ok : EXIT.negative;
}

async function runWatch(
  command: Extract<Command, { kind: "watch" }>,
  flags: Flags,
  client: TinyKvClient,
  io: Output,
): Promise<number> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  const timer = flags.timeoutMs === undefined
    ? undefined
    : setTimeout(() => stop.abort(), flags.timeoutMs);
  const reached = new Map<number, number>(command.from.map((p) => [p.shard, p.index]));
  let printed = 0;
  try {
    let first = true;
    for await (
      const update of client.watch(command.key, {
        prefix: command.prefix,
        start: command.from,
        signal: stop.signal,
        traceId: flags.traceId,
      })
    ) {
      for (const position of update.positions) reached.set(position.shard, position.index);
      if (first) {
        first = false;
        if (!flags.json) await io.err(`Watching from ${describePositions(reached)}`);
      }
      for (const [i, event] of update.events.entries()) {
        const put = event.kind === WatchEvent_Kind.PUT;
        if (flags.json) {
          await io.out(JSON.stringify({
            kind: put ? "put" : "delete",
            key: jsonBytes(event.key),
            ...(put ? { value: jsonBytes(event.value) } : {}),
            shard: event.shard,
            index: event.index,
          }));
        } else {
          const value = put ? `\t${human(flags, event.value)}` : "";
          await io.out(
            `${put ? "PUT" : "DELETE"}\t${human(flags, event.key)}${value}\t` +
              `${event.shard}:${event.index}`,
          );
        }
        printed++;
        const next = update.events[i + 1];
        const sameIndex = next !== undefined && next.shard === event.shard &&
          next.index === event.index;
        if (command.count !== undefined && printed >= command.count && !sameIndex) {
          // The rest of this update is not printed (the changes of one index all are): resume
          // from the last index printed.
          reached.set(event.shard, event.index);
          stop.abort();
          break;
        }
      }
      if (flags.json && !stop.signal.aborted) {
        await io.out(JSON.stringify({ positions: update.positions }));
      }
      if (stop.signal.aborted) break;
    }
  } finally {
    clearTimeout(timer);
    Deno.removeSignalListener("SIGINT", onSignal);
  }
  if (flags.json) await io.out(JSON.stringify({ positions: positionsOf(reached) }));
  else await io.err(`Resume with --from ${describePositions(reached)}`);
  return EXIT.ok;
}

function positionsOf(reached: Map<number, number>): Array<{ shard: number; index: number }> {
  return [...reached].sort(([a], [b]) => a - b).map(([shard, index]) => ({ shard, index }));
}

function describePositions(reached: Map<number, number>): string {
  return positionsOf(reached).map((p) => `${p.shard}:${p.index}`).join(",");
}

async function runScan(
  command: Extract<Command, { kind: "scan" }>,
  flags: Flags,
  client: TinyKvClient,
  io: Output,
): Promise<number> {
  const range = {
    start: command.start,
    end: command.end,
    deadlineMs: flags.timeoutMs,
    traceId: flags.traceId,
  };
  const entries: KeyValue[] = [];
  let next: Uint8Array | undefined;
  const take = async (page: readonly KeyValue[]) => {
    if (flags.json) entries.push(...page);
    for (const kv of flags.json ? [] : page) {
      await io.out(`${human(flags, kv.key)}\t${human(flags, kv.value)}`);
    }
  };
  if (command.limit !== undefined) {
    const page = await client.scan({ ...range, limit: command.limit });
    await take(page.entries);
    next = page.next;
  } else {
    for await (const page of client.scanPages({ ...range, pageSize: SCAN_PAGE_SIZE })) {
      await take(page.entries);
    }
  }
  if (flags.json) {
    await io.out(JSON.stringify({
      entries: entries.map((kv) => ({ key: jsonBytes(kv.key), value: jsonBytes(kv.value) })),
      more: next !== undefined,
      next: next === undefined ? null : jsonBytes(next),
    }));
  } else if (next !== undefined) {
    await io.err(`More keys remain: continue with --start ${human(flags, next)}`);
  }
  return EXIT.ok;
}

async function runTrace(
  command: Extract<Command, { kind: "trace" }>,
  flags: Flags,
  io: Output,
): Promise<number> {
  let lines;
  try {
    lines = await readTrace(command.logs, command.id);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotCapable
      ? `run with --allow-read=${command.logs}`
      : error instanceof Error
      ? error.message
      : String(error);
    await io.err(`error: cannot read the logs in ${command.logs}: ${reason}`);
    return EXIT.usage;
  }
  if (flags.json) {
    await io.out(JSON.stringify({ trace: command.id, lines }));
  } else {
    for (const line of formatTrace(lines)) await io.out(line);
    if (lines.length === 0) {
      await io.err(`No log line in ${command.logs} names trace ${command.id}`);
    }
  }
  return lines.length > 0 ? EXIT.ok : EXIT.negative;
}

async function usageError(error: UsageError, json: boolean, io: Output): Promise<number> {
  const usage = error.command === undefined ? USAGE : `Usage: ${COMMAND_USAGE[error.command]}`;
  await io.err(`error: ${error.message}\n\n${usage}`);
  if (json) await io.out(JSON.stringify({ error: { code: "usage", message: error.message } }));
  return EXIT.usage;
}

/**
 * TLS and the token the flags (or `TINYKV_CA`, `TINYKV_TOKEN_FILE`) name; nothing else is looked
 * for. A file that cannot be read is a usage error naming it.
 */
async function securityOf(flags: Flags): Promise<ClientSecurity> {
  const env = (name: string) => {
    try {
      const value = Deno.env.get(name);
      return value === "" ? undefined : value;
    } catch {
      return undefined; // Not allowed to read it: not set, as far as this run knows.
    }
  };
  const caFile = flags.ca ?? env("TINYKV_CA");
  const tokenFile = flags.tokenFile ?? env("TINYKV_TOKEN_FILE");
  const read = async (what: string, path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new UsageError(`Cannot read the ${what} file "${path}": ${reason}`);
    }
  };
  if (caFile === undefined && flags.serverName !== undefined) {
    throw new UsageError(`Flag "--server-name" needs --ca (it names what TLS checks)`);
  }
  if (caFile === undefined && tokenFile !== undefined) {
    throw new UsageError(`A token is sent only over TLS: --token-file needs --ca`);
  }
  const tls = caFile === undefined ? undefined : {
    ca: await read("--ca", caFile),
    serverName: flags.serverName ?? SERVER_NAME_DEFAULT,
  };
  if (tls !== undefined && !tls.ca.includes("-----BEGIN CERTIFICATE-----")) {
    throw new UsageError(`The --ca file "${caFile}" holds no PEM certificate`);
  }
  const token = tokenFile === undefined
    ? undefined
    : (await read("--token-file", tokenFile)).trim();
  if (token !== undefined && !token.startsWith("tkv1.")) {
    throw new UsageError(`The --token-file file "${tokenFile}" holds no TinyKV token`);
  }
  return { tls, token };
}

/** Runs `tinykv` with `args`; returns the exit code. */
export async function main(args: readonly string[], io: Output = STDIO): Promise<number> {
  let flags: Flags;
  let command: Command;
  try {
    flags = parseFlags(args);
    command = await readStdinArg(parseCommand(flags), flags, io.stdin ?? Deno.stdin);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    return await usageError(error, args.includes("--json"), io);
  }
  if (command.kind === "help") {
    await io.out(command.text.trimEnd());
    return EXIT.ok;
  }
  let security: ClientSecurity;
  try {
    security = await securityOf(flags);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    return await usageError(error, flags.json, io);
  }
  if (command.kind === "admin") {
    const options = {
      placements: flags.placements,
      timeoutMs: flags.timeoutMs,
      json: flags.json,
      security,
    };
    return await runAdmin(command.admin, options, io);
  }
  if (command.kind === "trace") return await runTrace(command, flags, io);
  if (command.kind === "backup") {
    return await runBackup({
      placements: flags.placements,
      dir: command.dir,
      timeoutMs: flags.timeoutMs,
      json: flags.json,
      security,
    }, io);
  }
  if (command.kind === "restore") {
    return await runRestore({
      endpoints: flags.endpoints,
      dir: command.dir,
      timeoutMs: flags.timeoutMs,
      json: flags.json,
      security,
      maxMessageBytes: MESSAGE_BYTES_MAX,
    }, io);
  }
  if (flags.trace) {
    flags.traceId = newTraceId();
    await io.err(`trace ${flags.traceId}: deno task tinykv trace ${flags.traceId}`);
  }
  const client = TinyKvClient.connect({
    endpoints: flags.endpoints,
    deadlineMs: flags.timeoutMs,
    maxMessageBytes: MESSAGE_BYTES_MAX,
    security,
  });
  try {
    return await run(command, flags, client, io);
  } catch (error) {
    if (!(error instanceof TinyKvError)) throw error;
    const { code, message, outcomeUnknown } = error;
    if (flags.json) await io.out(JSON.stringify({ error: { code, message, outcomeUnknown } }));
    else {
      const unknown = outcomeUnknown ? " (the write may or may not have been applied)" : "";
      await io.err(`error: ${code}: ${message}${unknown}`);
    }
    return exitCodeOf(error.code);
  } finally {
    client.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
