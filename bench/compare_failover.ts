/**
 * Leader failover trials, the same for both systems: a writer loops on one key (each put with a
 * short deadline) through a server that survives; the leader for that key is killed with
 * SIGKILL; the trial measures the time from the kill to the first successful put sent after it.
 * Then the cluster is made whole again before the next trial.
 *
 * A put sent while there is no leader may wait out its whole deadline (etcd holds it), so one
 * loop would see the first possible success up to a deadline late. The writer therefore runs
 * {@linkcode WRITER_LOOPS} loops started {@linkcode WRITER_STAGGER_MS} apart, which bounds that
 * error by the stagger instead.
 *
 * - TinyKV: the victim is the kvnode leading a shard (the one whose node has run longest), the
 *   key is one of that shard, the writer goes through the gateway; dev restarts the kvnode after
 *   about 2 s, and the next trial waits until every shard has a leader with 3 voters following it.
 * - etcd: the victim is the leader member, the writer talks to a follower; the member is
 *   restarted on its data, and the next trial waits until all three agree on a leader.
 *
 * @module
 */
import { connect, type KvConnection } from "./compare_clients.ts";
import type { EtcdCluster } from "./compare_etcd.ts";
import { sleep } from "./compare_procs.ts";
import { type FailoverResult, type FailoverTrial, summarizeFailover } from "./compare_report.ts";
import { keyInRange, pickVictimShard } from "./compare_shard_view.ts";
import type { TinyKvCluster } from "./compare_tinykv.ts";

/** Each put's deadline: short, so a put stuck on the dead leader is soon given up. */
export const FAILOVER_DEADLINE_MS = 250;
/** Writer loops, each one put at a time. */
export const WRITER_LOOPS = 5;
/** How far apart the loops start (and so the resolution of the measurement). */
export const WRITER_STAGGER_MS = FAILOVER_DEADLINE_MS / WRITER_LOOPS;
/** Bound on the wait for the first successful put after the kill. */
const FAILOVER_TIMEOUT_MS = 60_000;
/** Bound on the writer's first success before the kill. */
const WARM_TIMEOUT_MS = 30_000;
/** Bound on the cluster becoming whole again. */
const RECOVER_TIMEOUT_MS = 180_000;
/** Trials run again at most, per run, when the leader moved before the kill. */
const REDO_MAX = 10;
/** Pause after a failed put, so a put that fails at once does not spin. */
const RETRY_PAUSE_MS = 5;
const VALUE = new Uint8Array(256);

/** One trial's plan: the victim, the key it leads, a surviving connection, kill and recovery. */
export interface TrialPlan {
  /** What is killed, for the report. */
  readonly victim: string;
  /** A key whose writes the victim leads. */
  readonly key: Uint8Array;
  /** A connection through a server that survives the kill. */
  readonly writer: KvConnection;
  /** Whether the victim still leads (asked right before the kill: placement moves leaders). */
  stillLeads(): Promise<boolean>;
  /** Kills the victim with SIGKILL. */
  kill(): Promise<void>;
  /** Waits until the cluster is whole again; throws after a bound. */
  recover(): Promise<void>;
}

/** A system under trials. */
export interface FailoverSubject {
  /** Which system. */
  readonly system: "etcd" | "tinykv";
  /** Where the trials run, for the report. */
  readonly setup: string;
  /** Picks the victim of the next trial (once the cluster is whole). */
  prepare(): Promise<TrialPlan>;
}

/** Loops putting one key, remembering when each successful put was sent. */
class Writer {
  #running = true;
  /** Each successful put, in the order they completed. */
  readonly #successes: Array<{ sentAtMs: number; doneAtMs: number }> = [];
  readonly done: Promise<void>;

  constructor(writer: KvConnection, key: Uint8Array) {
    this.done = Promise.all(
      Array.from(
        { length: WRITER_LOOPS },
        (_, i) => this.#loop(writer, key, i * WRITER_STAGGER_MS),
      ),
    ).then(() => {});
  }

  async #loop(writer: KvConnection, key: Uint8Array, delayMs: number): Promise<void> {
    await sleep(delayMs);
    while (this.#running) {
      const sentAtMs = performance.now();
      const outcome = await writer.put(key, VALUE, FAILOVER_DEADLINE_MS);
      if (outcome.kind === "ok") this.#successes.push({ sentAtMs, doneAtMs: performance.now() });
      else await sleep(RETRY_PAUSE_MS);
    }
  }

  /**
   * Waits for the first put sent at or after `sinceMs` to succeed; resolves to when it completed
   * (`performance.now()` time), or null after `timeoutMs`.
   */
  async successSince(sinceMs: number, timeoutMs: number): Promise<number | null> {
    const deadline = performance.now() + timeoutMs;
    let seen = 0;
    while (performance.now() < deadline) {
      for (; seen < this.#successes.length; seen++) {
        const success = this.#successes[seen];
        if (success.sentAtMs >= sinceMs) return success.doneAtMs;
      }
      await sleep(1);
    }
    return null;
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.done;
  }
}

/**
 * Runs `trials` trials on `subject`. A trial whose victim no longer leads right before the kill
 * is run again (at most {@linkcode REDO_MAX} times in all); a trial after which the cluster does
 * not become whole again ends the series.
 */
export async function runFailover(
  subject: FailoverSubject,
  options: { trials: number; say: (line: string) => void },
): Promise<FailoverResult> {
  const { trials, say } = options;
  const results: FailoverTrial[] = [];
  let redone = 0;
  while (results.length < trials) {
    const trial = await runTrial(subject);
    if (trial === "leaderMoved") {
      say(`  ${subject.system} failover: the leader moved before the kill; running it again`);
      if (++redone > REDO_MAX) throw new Error(`The leader moved before ${redone} kills`);
      continue;
    }
    results.push(trial);
    say(describeTrial(subject.system, `${results.length}/${trials}`, trial));
    if (trial.recoveredMs === null) break;
  }
  return summarizeFailover(results, { system: subject.system, setup: subject.setup, redone });
}

function describeTrial(system: string, count: string, trial: FailoverTrial): string {
  const ms = (n: number | null, scale: number, digits: number) =>
    n === null ? "—" : (n / scale).toFixed(digits);
  return `  ${system} failover ${count}: killed ${trial.victim}; first write after ` +
    `${ms(trial.failoverMs, 1, 0)} ms, whole again after ${ms(trial.recoveredMs, 1000, 1)} s` +
    (trial.error === undefined ? "" : ` (${trial.error})`);
}

async function runTrial(subject: FailoverSubject): Promise<FailoverTrial | "leaderMoved"> {
  const plan = await subject.prepare();
  const writer = new Writer(plan.writer, plan.key);
  let failoverMs: number | null = null;
  let error: string | undefined;
  try {
    if (await writer.successSince(performance.now(), WARM_TIMEOUT_MS) === null) {
      throw new Error(`no write succeeded within ${WARM_TIMEOUT_MS / 1000} s before the kill`);
    }
    if (!(await plan.stillLeads())) return "leaderMoved";
    await plan.kill();
    const killedAtMs = performance.now();
    const firstMs = await writer.successSince(killedAtMs, FAILOVER_TIMEOUT_MS);
    failoverMs = firstMs === null ? null : firstMs - killedAtMs;
    if (firstMs === null) error = `no write within ${FAILOVER_TIMEOUT_MS / 1000} s`;
    await writer.stop();
    await plan.recover();
    return { victim: plan.victim, failoverMs, recoveredMs: performance.now() - killedAtMs, error };
  } catch (caught) {
    error = caught instanceof Error ? caught.message : String(caught);
    return { victim: plan.victim, failoverMs, recoveredMs: null, error };
  } finally {
    await writer.stop();
    plan.writer.close();
  }
}

/** TinyKV: kill the kvnode leading a shard; write through the gateway. */
export function tinyKvSubject(cluster: TinyKvCluster): FailoverSubject {
  return {
    system: "tinykv",
    setup: `TinyKV, ${cluster.options.shards} shard${cluster.options.shards === 1 ? "" : "s"}`,
    async prepare() {
      await waitWhole(cluster);
      const { statuses, view } = await cluster.view();
      const leader = pickVictimShard(view, statuses);
      if (leader === undefined) throw new Error("No shard has a leader");
      const name = cluster.kvnodes[leader.nodeIndex];
      const shard = leader.replica.shardId;
      let oldPid = 0;
      const stillLeads = async () =>
        (await cluster.view()).view.leaders.get(shard)?.nodeIndex === leader.nodeIndex;
      return {
        victim: `${name} (leader of shard ${shard})`,
        key: keyInRange(`failover/${shard}/`, {
          lo: leader.replica.rangeLo,
          hi: leader.replica.rangeHi,
        }),
        writer: connect("tinykv", cluster.gateway),
        stillLeads,
        kill: async () => void (oldPid = await cluster.kill(name)),
        recover: async () => {
          if (!(await cluster.waitRestarted(name, oldPid, RECOVER_TIMEOUT_MS))) {
            throw new Error(`dev did not restart ${name} within ${RECOVER_TIMEOUT_MS / 1000} s`);
          }
          await waitWhole(cluster);
        },
      };
    },
  };
}

/** Waits until every kvnode answers and every shard has a leader followed by its 3 voters. */
async function waitWhole(cluster: TinyKvCluster): Promise<void> {
  const deadline = Date.now() + RECOVER_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if ((await cluster.view()).view.whole) return;
    await sleep(100);
  }
  throw new Error(`the cluster was not whole again within ${RECOVER_TIMEOUT_MS / 1000} s`);
}

/** etcd: kill the leader member; write through a follower; restart the member. */
export function etcdSubject(etcd: EtcdCluster): FailoverSubject {
  return {
    system: "etcd",
    setup: "etcd, 3 members",
    async prepare() {
      const leader = await etcd.waitHealthy(RECOVER_TIMEOUT_MS);
      const follower = etcd.members.find((m) => m !== leader)!;
      return {
        victim: `etcd ${leader.name} (leader; writes through ${follower.name})`,
        key: new TextEncoder().encode("failover/etcd"),
        writer: connect("etcd", follower.clientAddress),
        stillLeads: async () => (await etcd.leader()) === leader,
        kill: () => etcd.kill(leader),
        recover: () => etcd.restart(leader),
      };
    },
  };
}
