// `deno task dev --secure`, as a user runs it: a cluster of its own under <data_dir>/secure with
// TLS and credentials on every port, its credentials made on the first start (the signing key
// readable by its owner only), and "try it" commands that work as printed, with --ca and
// --token-file. The same command without them is refused: no TLS (a retryable failure: exit 4),
// or TLS without a token (UNAUTHENTICATED: exit 6). A second start keeps the credentials.
import assert from "node:assert/strict";
import {
  devArgs,
  devPorts,
  killDev,
  printedCommands,
  REPO_ROOT,
  type RunningDev,
  runUntilServing,
  stopDev,
} from "./_harness/dev_cluster.ts";

/** Runs `deno task tinykv …` words as a user would paste them, from the repository root. */
async function run(
  words: readonly string[],
): Promise<{ code: number; out: string; err: string }> {
  const [deno, ...args] = words;
  assert.equal(deno, "deno");
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, out: decode(output.stdout), err: decode(output.stderr) };
}

Deno.test("deno task dev --secure: TLS and credentials everywhere; the printed commands work", async () => {
  // Under the repository's data dir: the CLI task may read credentials there (./data).
  const dataDir = `${REPO_ROOT}data/dev-secure-test-${crypto.randomUUID().slice(0, 8)}`;
  const ports = devPorts();
  const args = [...devArgs(dataDir, ports), "--secure"];
  let running: RunningDev | undefined;
  try {
    running = await runUntilServing(args);
    const output = running.dev.output();
    const pki = `${dataDir}/secure/pki`;
    assert.match(output, /--secure: made a CA, a server certificate and the keys/);
    assert.match(output, new RegExp(`dashboard https://127\\.0\\.0\\.1:${ports.http}/`));
    assert.match(output, /node n1: .* replicas/, "a kvnode's id is its token's");
    assert.equal((await Deno.stat(`${pki}/signing.pem`)).mode! & 0o777, 0o600);
    const commands = printedCommands(output);
    const put = commands.find((c) => c.includes(" put hello world"));
    const get = commands.find((c) => c.includes(" get hello"));
    const status = commands.find((c) => c.endsWith(" status"));
    assert.ok(put && get && status, `printed commands: ${commands.join("\n")}`);
    const credentials = ` --ca ${pki}/ca.crt --token-file ${pki}/admin.token`;
    for (const command of [put, get, status]) assert.ok(command.includes(credentials), command);
    const words = (command: string) => command.split(" ");
    assert.equal((await run(words(put))).code, 0);
    const got = await run(words(get));
    assert.equal(got.code, 0, got.err);
    assert.equal(got.out.trim(), "world");
    const shown = await run(words(status));
    assert.equal(shown.code, 0, shown.err);
    assert.match(shown.out, /n1 +127\.0\.0\.1:/);
    // Without the credentials: refused.
    const plain = await run([...words(get.replace(credentials, "")), "--timeout", "2000"]);
    assert.equal(plain.code, 4, plain.err);
    const anonymous = await run(
      [...words(get.replace(` --token-file ${pki}/admin.token`, "")), "--timeout", "2000"],
    );
    assert.equal(anonymous.code, 6, anonymous.err);
    assert.match(anonymous.err, /unauthenticated/);
    await stopDev(running, `${dataDir}/secure`);
    running = undefined;
    // A second start keeps the credentials and the data.
    running = await runUntilServing(args);
    assert.doesNotMatch(running.dev.output(), /made a CA/);
    const again = await run(words(get));
    assert.equal(again.out.trim(), "world");
    await stopDev(running, `${dataDir}/secure`);
    running = undefined;
  } finally {
    await killDev(running);
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
