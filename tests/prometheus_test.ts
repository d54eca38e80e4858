// Checks the metrics of every service with a real Prometheus (Debian's `prometheus`, which
// `deno task setup --test` installs): the dev cluster runs on free ports; `deploy/prometheus.yml`,
// its targets moved to those ports and its interval shortened, is Prometheus's config; every
// target (placement, the gateway, three kvnodes) comes up; under a load of writes through the
// gateway, Prometheus finds a write rate above zero and the kvnodes' group commits; each
// service's text carries HELP and TYPE lines. Prometheus and the cluster are stopped, and their
// files removed, whatever happens. Waits are bounded polls.
import assert from "node:assert/strict";
import { KVService } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, unaryCaller } from "@tinykv/rpc";
import { waitFor } from "@tinykv/zk/testing";
import {
  devArgs,
  devPorts,
  killDev,
  REPO_ROOT,
  type RunningDev,
  runUntilServing,
  stopDev,
} from "./_harness/dev_cluster.ts";
import { freePort } from "./_harness/processes.ts";

const PROMETHEUS = "/usr/bin/prometheus";
const enc = (text: string) => new TextEncoder().encode(text);

/** deploy/prometheus.yml with the dev cluster's default ports replaced by the test cluster's. */
function prometheusConfig(ports: ReturnType<typeof devPorts>): string {
  const text = Deno.readTextFileSync(`${REPO_ROOT}/deploy/prometheus.yml`);
  const moves: Array<[string, number]> = [
    ["127.0.0.1:7880", ports.http],
    ["127.0.0.1:7790", ports.gateway + 90],
    ["127.0.0.1:8901", ports.base + 1000],
    ["127.0.0.1:8902", ports.base + 1001],
    ["127.0.0.1:8903", ports.base + 1002],
  ];
  let moved = text;
  for (const [from, port] of moves) {
    assert.ok(moved.includes(`"${from}"`), `deploy/prometheus.yml scrapes ${from}`);
    moved = moved.replace(`"${from}"`, `"127.0.0.1:${port}"`);
  }
  return moved.replaceAll("interval: 5s", "interval: 1s");
}

/** Asks Prometheus's HTTP API; returns `data`. */
// deno-lint-ignore no-explicit-any
async function api(base: string, path: string): Promise<any> {
  const response = await fetch(`${base}${path}`);
  const body = await response.json();
  assert.equal(body.status, "success", JSON.stringify(body));
  return body.data;
}

/** The value of an instant query with one result, or undefined. */
async function scalar(base: string, query: string): Promise<number | undefined> {
  const data = await api(base, `/api/v1/query?query=${encodeURIComponent(query)}`);
  const value = data.result?.[0]?.value?.[1];
  return value === undefined ? undefined : Number(value);
}

Deno.test({
  name: "Prometheus scrapes every service of the dev cluster and sees the writes",
  async fn() {
    assert.ok(existsSync(PROMETHEUS), `${PROMETHEUS} is missing: run deno task setup --test`);
    const dir = Deno.makeTempDirSync({ prefix: "tinykv-prometheus-" });
    const ports = devPorts();
    let running: RunningDev | undefined;
    let prometheus: Deno.ChildProcess | undefined;
    const stopping = new AbortController();
    try {
      running = await runUntilServing(devArgs(`${dir}/dev`, ports));
      Deno.writeTextFileSync(`${dir}/prometheus.yml`, prometheusConfig(ports));
      const webPort = freePort();
      prometheus = new Deno.Command(PROMETHEUS, {
        args: [
          `--config.file=${dir}/prometheus.yml`,
          `--storage.tsdb.path=${dir}/tsdb`,
          `--web.listen-address=127.0.0.1:${webPort}`,
        ],
        stdout: "null",
        stderr: "null",
      }).spawn();
      const base = `http://127.0.0.1:${webPort}`;
      let targets: Array<{ labels: { job: string }; health: string; lastError: string }> = [];
      await waitFor(async () => {
        targets = await api(base, "/api/v1/targets").then((d) => d.activeTargets).catch(() => []);
        return targets.length === 5 && targets.every((t) => t.health === "up");
      }, { timeoutMs: 60_000, what: "every target up" }).catch((error) => {
        throw new Error(`${error}: ${JSON.stringify(targets)}`);
      });
      const jobs = targets.map((t) => t.labels.job).sort();
      assert.deepEqual(jobs, [
        "tinykv-gateway",
        "tinykv-kvnode",
        "tinykv-kvnode",
        "tinykv-kvnode",
        "tinykv-placement",
      ]);

      // A steady load of writes through the gateway until Prometheus sees its rate.
      const client = createGrpcClient(KVService, `127.0.0.1:${ports.gateway}`, {
        maxMessageBytes: 8 << 20,
      });
      const put = unaryCaller<typeof KVService, "Put">(client, "Put");
      let written = 0;
      const load = (async () => {
        while (!stopping.signal.aborted) {
          const result = await put({
            key: enc(`k${written % 50}`),
            value: enc("v"),
            clientId: "",
            seq: 0,
            ackSeq: 0,
          }, { deadlineMs: 5000 });
          assert.equal(result.kind, "ok", JSON.stringify(result));
          written++;
        }
      })();
      try {
        const rate = 'sum(rate(tinykv_gateway_requests_total{method="Put",code="OK"}[5s]))';
        let seen: number | undefined;
        await waitFor(async () => ((seen = await scalar(base, rate)) ?? 0) > 0, {
          timeoutMs: 60_000,
          what: "a write rate above zero in Prometheus",
        });
        assert.ok(seen! > 0);
        const entries = "sum(tinykv_kvnode_turn_entries_sum)";
        await waitFor(async () => ((await scalar(base, entries)) ?? 0) > 0, {
          timeoutMs: 30_000,
          what: "the kvnodes' group commits in Prometheus",
        });
        const leaders = 'sum(tinykv_kvnode_replica_role{role="leader"})';
        assert.equal(await scalar(base, leaders), 4, "one leader per shard, over the kvnodes");
        assert.equal(await scalar(base, "sum(tinykv_placement_is_leader)"), 1);
      } finally {
        stopping.abort();
        await load;
        client.close();
      }
      assert.ok(written > 0);

      // Every service's own text: HELP and TYPE lines.
      const texts = await Promise.all([
        `http://127.0.0.1:${ports.http}/metrics`,
        `http://127.0.0.1:${ports.gateway + 90}/metrics`,
        `http://127.0.0.1:${ports.base + 1000}/metrics`,
      ].map(async (url) => await (await fetch(url)).text()));
      assert.match(texts[0], /# TYPE tinykv_placement_moves_total counter/);
      assert.match(texts[1], /# TYPE tinykv_gateway_request_duration_seconds histogram/);
      assert.match(texts[2], /# TYPE tinykv_kvnode_lmdb_commit_duration_seconds histogram/);
      assert.match(texts[2], /# HELP tinykv_kvnode_replica_applied_index /);

      await stopPrometheus(prometheus);
      await stopDev(running, `${dir}/dev`);
      running = undefined;
    } finally {
      stopping.abort();
      await stopPrometheus(prometheus);
      await killDev(running);
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

async function stopPrometheus(prometheus: Deno.ChildProcess | undefined): Promise<void> {
  if (prometheus === undefined) return;
  try {
    prometheus.kill("SIGTERM");
  } catch {
    // Already gone.
  }
  await prometheus.status;
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
