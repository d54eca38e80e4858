/**
 * `deno task caught-up NODE`: waits until kvnode NODE serves and every replica it holds has caught
 * up with its shard's leader, the step of a rolling restart (docs/deploy.md) between starting a
 * kvnode again and stopping the next one. Restarting the next node while this one still catches
 * up would leave its shards with one up-to-date replica fewer than they need for a majority.
 *
 * Caught up means: placement lists NODE as live (registered in ZooKeeper); NODE answers
 * `NodeAdmin.Status`; and for every shard placement lists NODE in, NODE holds a replica whose
 * applied index is within `--lag` entries (default {@linkcode LAG_DEFAULT}) of the commit index
 * of the shard's leader, read just before (or NODE leads the shard itself). It asks placement
 * (`ClusterState`, as `tinykv status` does) and the kvnodes (`Status`, which an admin token may
 * call), once every {@linkcode POLL_MS} ms, printing what it waits for whenever that changes.
 *
 * ```
 * deno task caught-up kv1 --placement 10.0.0.11:7800,10.0.0.12:7800 \
 *   --ca /etc/tinykv/ca.crt --token-file ~/admin.token [--lag N] [--timeout MS]
 * ```
 *
 * Exit codes as `tinykv`'s: 0 caught up; 2 usage; 4 not caught up within `--timeout` (default
 * 120 s), or placement unreachable; 6 refused (a token placement or the kvnodes do not accept).
 *
 * @module
 */
import {
  type ClusterStateResponse,
  type NodeStatusResponse,
  type PlacementService,
  ReplicaStatus_Role,
} from "@tinykv/proto/tinykv/v1";
import { type ClientSecurity, unaryCaller } from "@tinykv/rpc";
import { EXIT, exitCodeOf } from "./tinykv/exit_codes.ts";
import {
  NODE_STATUS_DEADLINE_MS_MAX,
  nodeStatuses,
  PlacementConnection,
} from "./tinykv/placement_connection.ts";

/** How many entries a replica may be behind its leader's commit index and count as caught up. */
export const LAG_DEFAULT = 8;
/** The default bound on the whole wait. */
export const TIMEOUT_MS_DEFAULT = 120_000;
/** The pause between two looks. */
export const POLL_MS = 500;
const SERVER_NAME_DEFAULT = "tinykv";

/** Where NODE stands: caught up, or what is still missing. */
export type CatchUp =
  | { readonly kind: "caughtUp"; readonly replicas: number }
  | { readonly kind: "waiting"; readonly reasons: readonly string[] };

/**
 * Whether `node` serves and its replicas caught up, from placement's `state` and the kvnodes'
 * `statuses` (by node id; the leaders' taken before the node's own). Pure.
 */
export function catchUp(
  node: string,
  state: ClusterStateResponse,
  statuses: ReadonlyMap<string, NodeStatusResponse>,
  lag: number,
): CatchUp {
  const known = state.nodes.find((n) => n.nodeId === node);
  if (known === undefined) return waiting(`${node} is not a node placement knows`);
  if (!known.live) return waiting(`${node} is not live (not registered in ZooKeeper)`);
  const own = statuses.get(node);
  if (own === undefined) return waiting(`${node} does not answer Status`);
  const reasons: string[] = [];
  const shards = state.shards.filter((s) => s.voters.includes(node) || s.learners.includes(node));
  for (const shard of shards) {
    const id = shard.shardId;
    const replica = own.replicas.find((r) => r.shardId === id);
    if (replica === undefined) {
      reasons.push(`shard ${id}: no replica on ${node} yet`);
    } else if (shard.leader === "") {
      reasons.push(`shard ${id}: no leader known`);
    } else if (shard.leader !== node) {
      const leader = statuses.get(shard.leader)?.replicas.find((r) =>
        r.shardId === id && r.role === ReplicaStatus_Role.LEADER
      );
      if (leader === undefined) {
        reasons.push(`shard ${id}: its leader ${shard.leader} does not answer as its leader`);
      } else if (leader.commitIndex - replica.appliedIndex > lag) {
        const behind = leader.commitIndex - replica.appliedIndex;
        reasons.push(
          `shard ${id}: applied ${replica.appliedIndex}, ${shard.leader}'s commit ` +
            `${leader.commitIndex} (${behind} behind)`,
        );
      }
    }
  }
  if (reasons.length > 0) return { kind: "waiting", reasons };
  return { kind: "caughtUp", replicas: shards.length };
}

function waiting(reason: string): CatchUp {
  return { kind: "waiting", reasons: [reason] };
}

/** The options of {@linkcode waitCaughtUp}. */
export interface WaitOptions {
  readonly placements: readonly string[];
  readonly security: ClientSecurity;
  readonly lag: number;
  readonly timeoutMs: number;
  /** Prints a progress line. */
  readonly say: (line: string) => void;
}

/** Waits until `node` is caught up; returns the exit code. */
export async function waitCaughtUp(node: string, options: WaitOptions): Promise<number> {
  const connection = new PlacementConnection(options.placements, options.security);
  const deadlineAt = Date.now() + options.timeoutMs;
  let said = "";
  try {
    while (true) {
      const answer = await connection.call(
        (client, call) =>
          unaryCaller<typeof PlacementService, "ClusterState">(client, "ClusterState")({}, call),
        Math.min(deadlineAt, Date.now() + 5000),
      );
      if (answer.kind !== "ok") {
        if (answer.kind === "unauthenticated" || answer.kind === "permissionDenied") {
          options.say(`error: ${answer.kind}: ${answer.message}`);
          return exitCodeOf(answer.kind);
        }
        said = report(options, said, `placement does not answer: ${answer.message}`);
      } else {
        const result = await look(node, answer.response, options);
        if (result.kind === "caughtUp") {
          options.say(
            `${node} serves and its ${result.replicas} replicas are caught up (within ` +
              `${options.lag} entries of their leaders' commit index)`,
          );
          return EXIT.ok;
        }
        said = report(options, said, result.reasons.join("; "));
      }
      if (Date.now() + POLL_MS >= deadlineAt) {
        options.say(`error: ${node} not caught up after ${options.timeoutMs} ms: ${said}`);
        return EXIT.retryable;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } finally {
    connection.close();
  }
}

/** Prints `line` when it differs from the last one printed; returns it. */
function report(options: WaitOptions, last: string, line: string): string {
  if (line !== last) options.say(`waiting: ${line}`);
  return line;
}

/** One look: the leaders' statuses first, then the node's own, then the verdict. */
async function look(
  node: string,
  state: ClusterStateResponse,
  options: WaitOptions,
): Promise<CatchUp> {
  const addressOf = new Map(state.nodes.filter((n) => n.live).map((n) => [n.nodeId, n.address]));
  const leaders = new Set(
    state.shards.filter((s) => s.voters.includes(node) || s.learners.includes(node))
      .map((s) => s.leader).filter((l) => l !== "" && l !== node),
  );
  const ask = (ids: Iterable<string>) =>
    nodeStatuses(
      [...ids].flatMap((id) => addressOf.has(id) ? [addressOf.get(id)!] : []),
      NODE_STATUS_DEADLINE_MS_MAX,
      options.security,
    );
  const statuses = new Map<string, NodeStatusResponse>();
  for (const status of await ask(leaders)) statuses.set(status.nodeId, status);
  for (const status of await ask([node])) statuses.set(status.nodeId, status);
  return catchUp(node, state, statuses, options.lag);
}

const USAGE =
  `deno task caught-up NODE --placement HOST:PORT[,HOST:PORT] [--ca FILE] [--token-file FILE]
  [--server-name NAME] [--lag N] [--timeout MS]

Waits until kvnode NODE (its node id) is live, answers, and every replica it holds has applied
within --lag entries (default ${LAG_DEFAULT}) of its shard leader's commit index: the step between
two nodes of a rolling restart (docs/deploy.md). --ca, --token-file and --server-name as tinykv's
(defaults: $TINYKV_CA, $TINYKV_TOKEN_FILE, "${SERVER_NAME_DEFAULT}"); the token needs the admin role.
Exit 0 caught up, 2 usage, 4 not within --timeout (default ${TIMEOUT_MS_DEFAULT} ms), 6 refused.
`;

interface Args {
  node: string;
  placements: string[];
  ca: string | undefined;
  tokenFile: string | undefined;
  serverName: string;
  lag: number;
  timeoutMs: number;
}

/** Parses the command line; a string is the usage error. */
export function parseArgs(args: readonly string[], env: (name: string) => string | undefined) {
  const words: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) {
      words.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (!["placement", "ca", "token-file", "server-name", "lag", "timeout"].includes(name)) {
      return `Unknown flag "--${name}"`;
    }
    const value = eq < 0 ? args[++i] : arg.slice(eq + 1);
    if (value === undefined) return `Flag "--${name}" needs a value`;
    flags.set(name, value);
  }
  if (words.length !== 1) return "Name one NODE (a node id, as tinykv status shows it)";
  const placements = (flags.get("placement") ?? "").split(",").filter((p) => p !== "");
  if (placements.length === 0) return 'Flag "--placement" is needed';
  const lag = Number(flags.get("lag") ?? LAG_DEFAULT);
  if (!Number.isSafeInteger(lag) || lag < 0) return `Flag "--lag" must be an integer >= 0`;
  const timeoutMs = Number(flags.get("timeout") ?? TIMEOUT_MS_DEFAULT);
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) {
    return `Flag "--timeout" must be a number of milliseconds above 0`;
  }
  if (flags.has("server-name") && flags.get("ca") === undefined && env("TINYKV_CA") === undefined) {
    return `Flag "--server-name" needs --ca (it names what TLS checks)`;
  }
  const tokenFile = flags.get("token-file") ?? env("TINYKV_TOKEN_FILE");
  if (tokenFile !== undefined && (flags.get("ca") ?? env("TINYKV_CA")) === undefined) {
    return "A token is sent only over TLS: --token-file needs --ca";
  }
  const parsed: Args = {
    node: words[0],
    placements,
    ca: flags.get("ca") ?? env("TINYKV_CA"),
    tokenFile,
    serverName: flags.get("server-name") ?? SERVER_NAME_DEFAULT,
    lag,
    timeoutMs,
  };
  return parsed;
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    return EXIT.ok;
  }
  const args = parseArgs(argv, (name) => Deno.env.get(name));
  if (typeof args === "string") {
    console.error(`caught-up: ${args}\n\n${USAGE}`);
    return EXIT.usage;
  }
  let security: ClientSecurity;
  try {
    security = {
      tls: args.ca === undefined
        ? undefined
        : { ca: await Deno.readTextFile(args.ca), serverName: args.serverName },
      token: args.tokenFile === undefined
        ? undefined
        : (await Deno.readTextFile(args.tokenFile)).trim(),
    };
  } catch (error) {
    console.error(`caught-up: ${error instanceof Error ? error.message : String(error)}`);
    return EXIT.usage;
  }
  return await waitCaughtUp(args.node, {
    placements: args.placements,
    security,
    lag: args.lag,
    timeoutMs: args.timeoutMs,
    say: (line) => console.log(`caught-up: ${line}`),
  });
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
