/**
 * The whole test suite, as `deno task test` runs it: format, lint and type checks, then every
 * test (unit tests beside the code, doc examples, integration tests under `tests/`) against one
 * real ZooKeeper shared by the run. Each test works under its own random znode root.
 *
 * The last line printed is `N passed, N failed`, counting every test plus one for each of the
 * format, lint and type checks. The exit code is 0 only when nothing failed.
 *
 * Then, on a full run, the fault test (`tests/chaos/main.ts`) runs for {@linkcode CHAOS_MINUTES}
 * minutes of faults against a real cluster and counts as one test, and the deployment test
 * (`tests/deploy/main.ts`: the guide's cluster on separate hosts, rolled under load) as another.
 *
 * `deno task test path/…` runs only the tests under the given paths, without the three checks,
 * the fault test and the deployment test.
 *
 * @module
 */
import { startZooKeeper } from "@tinykv/zk/server";

/**
 * Permissions granted to the test processes. Integration tests spawn real services and
 * ZooKeeper (run), bind and dial 127.0.0.1 (net), keep data in temp dirs (read, write), read
 * TINYKV_* settings and grpc-js's environment (env), and grpc-js asks the OS for its hostname and
 * interfaces (sys). lmdb's native addon needs ffi.
 */
const TEST_PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-run",
  "--allow-sys",
  "--allow-ffi",
];

/** Minutes of faults the fault test runs in every full test run. */
export const CHAOS_MINUTES = 3;

/** What the fault test needs: it runs test hosts as root (`ip netns`, `nft`) and real services. */
const CHAOS_PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
];

/** What the deployment test needs: the same as the fault test (root, namespaces, processes). */
const DEPLOY_PERMISSIONS = CHAOS_PERMISSIONS;

interface Tally {
  passed: number;
  failed: number;
}

function banner(text: string): void {
  console.log(`\n=== ${text}`);
}

async function runCheck(tally: Tally, name: string, args: string[]): Promise<void> {
  banner(`${name}: deno ${args.join(" ")}`);
  const status = await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  if (status.success) {
    tally.passed++;
    console.log(`${name}: ok`);
  } else {
    tally.failed++;
    console.log(`${name}: FAILED (exit code ${status.code})`);
  }
}

/** Copies a stream to `sink` while keeping its last `keepBytes` bytes for the summary. */
async function tee(
  stream: ReadableStream<Uint8Array>,
  sink: { write(p: Uint8Array): Promise<number> },
  keepBytes: number,
): Promise<string> {
  const decoder = new TextDecoder();
  let tail = "";
  for await (const chunk of stream) {
    await writeAll(sink, chunk);
    tail = (tail + decoder.decode(chunk, { stream: true })).slice(-keepBytes);
  }
  return tail;
}

async function writeAll(sink: { write(p: Uint8Array): Promise<number> }, bytes: Uint8Array) {
  let offset = 0;
  while (offset < bytes.length) offset += await sink.write(bytes.subarray(offset));
}

/** Reads `N passed … | M failed` from the end of `deno test`'s output. */
export function parseDenoTestSummary(output: string): Tally | undefined {
  // deno test ends with e.g. "ok | 12 passed (3 steps) | 0 failed (1s)".
  const pattern = /(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/g;
  let last: RegExpExecArray | undefined;
  for (let match = pattern.exec(output); match !== null; match = pattern.exec(output)) {
    last = match;
  }
  if (last === undefined) return undefined;
  return { passed: Number(last[1]), failed: Number(last[2]) };
}

async function runTests(tally: Tally, paths: string[], zkConnect: string): Promise<void> {
  const args = ["test", "--parallel", ...TEST_PERMISSIONS];
  if (paths.length === 0) args.push("--doc");
  args.push(...paths);
  banner(`tests: deno ${args.join(" ")}`);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    env: { TINYKV_TEST_ZK: zkConnect, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const tail = await tee(child.stdout, Deno.stdout, 64 * 1024);
  const status = await child.status;
  const summary = parseDenoTestSummary(tail);
  if (summary === undefined) {
    tally.failed++;
    console.log(`tests: FAILED (deno test exited with code ${status.code} and no summary)`);
    return;
  }
  tally.passed += summary.passed;
  tally.failed += summary.failed;
  if (!status.success && summary.failed === 0) {
    tally.failed++;
    console.log(`tests: FAILED (deno test exited with code ${status.code})`);
  }
}

async function main(paths: string[]): Promise<number> {
  const tally: Tally = { passed: 0, failed: 0 };
  if (paths.length === 0) {
    await runCheck(tally, "format", ["fmt", "--check"]);
    await runCheck(tally, "lint", ["lint"]);
    await runCheck(tally, "types", ["check", "--doc"]);
  }
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-test-zk-" });
  banner("starting the shared ZooKeeper for this run");
  const zk = await startZooKeeper({ dataDir });
  console.log(`ZooKeeper serves on ${zk.connectString} (pid ${zk.pid}, data in ${dataDir})`);
  try {
    await runTests(tally, paths, zk.connectString);
  } finally {
    await zk.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
  if (paths.length === 0) {
    await runCheck(tally, "fault test", [
      "run",
      ...CHAOS_PERMISSIONS,
      "tests/chaos/main.ts",
      "--minutes",
      String(CHAOS_MINUTES),
    ]);
    await runCheck(tally, "deployment test", [
      "run",
      ...DEPLOY_PERMISSIONS,
      "tests/deploy/main.ts",
    ]);
  }
  console.log(`\n${tally.passed} passed, ${tally.failed} failed`);
  return tally.failed === 0 ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
