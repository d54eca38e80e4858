// Checks following one request across the services, as a user does it on the dev cluster: `tinykv
// --trace put` prints a trace id on stderr; `tinykv trace ID --logs DIR` then prints, oldest first,
// the gateway receiving the request, any kvnode that turned it away (not the leader), the leader's
// kvnode taking it in, proposing it at a log index and answering it, and the gateway answering; an id no line names exits 1; a malformed one is a
// usage error. Waits are bounded polls (the services write their logs in batches).
import assert from "node:assert/strict";
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

const CLI = `${REPO_ROOT}/tools/tinykv.ts`;

async function tinykv(
  args: string[],
  logs: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", `--allow-read=${logs}`, CLI, ...args],
    cwd: REPO_ROOT,
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

Deno.test("tinykv --trace and tinykv trace follow one write through gateway, leader and apply", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "tinykv-trace-" });
  const data = `${dir}/dev`;
  const logs = `${data}/logs`;
  const ports = devPorts();
  let running: RunningDev | undefined;
  try {
    running = await runUntilServing(devArgs(data, ports));
    const endpoint = `127.0.0.1:${ports.gateway}`;
    const put = await tinykv(["--endpoint", endpoint, "--trace", "put", "traced", "value"], logs);
    assert.equal(put.code, 0, put.stderr);
    assert.equal(put.stdout.trim(), "OK");
    const id = /^trace (t-[0-9a-f]{12}): deno task tinykv trace \1$/m.exec(put.stderr)?.[1];
    assert.ok(id !== undefined, `a trace id on stderr: ${put.stderr}`);

    let shown = { code: -1, stdout: "", stderr: "" };
    await waitFor(async () => {
      shown = await tinykv(["trace", id, "--logs", logs], logs);
      return /gateway-\d+\s+Traced request answered/.test(shown.stdout) &&
        /Traced request answered .*outcome=ok/.test(shown.stdout);
    }, { timeoutMs: 15_000, what: "the whole trace in the logs" }).catch((error) => {
      throw new Error(`${error}: ${JSON.stringify(shown)}`);
    });
    assert.equal(shown.code, 0);
    const steps = shown.stdout.trim().split("\n").map((line) => {
      const [, source, msg] = line.split(/ {2,}/);
      return `${source.replace(/-\d+$/, "")} ${msg}`;
    });
    // The gateway first, last; between, the kvnodes it tried: one that is not the leader answers
    // NOT_LEADER (arrived, answered), the leader takes it in, proposes it and answers.
    assert.equal(steps[0], "gateway Traced request received");
    assert.equal(steps.at(-1), "gateway Traced request answered");
    const leader = steps.slice(-4, -1);
    assert.deepEqual(leader, [
      "kvnode Traced request arrived",
      "kvnode Traced request proposed",
      "kvnode Traced request answered",
    ], shown.stdout);
    for (const step of steps.slice(1, -4)) {
      assert.match(step, /^kvnode Traced request (arrived|answered)$/);
    }
    assert.match(shown.stdout, /Traced request proposed .*index=\d+ {2}term=\d+/);
    assert.match(shown.stdout, /Traced request answered .*method=Put {2}status=OK/);

    const json = await tinykv(["--json", "trace", id, "--logs", logs], logs);
    assert.equal(JSON.parse(json.stdout).lines.length, steps.length);
    const unknown = await tinykv(["trace", "t-000000000000", "--logs", logs], logs);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /No log line in .* names trace t-000000000000/);
    const bad = await tinykv(["trace", "not a trace", "--logs", logs], logs);
    assert.equal(bad.code, 2);

    await stopDev(running, data);
    running = undefined;
  } finally {
    await killDev(running);
    Deno.removeSync(dir, { recursive: true });
  }
});
