// Checks waitForShutdown() in a child process: it stops when its parent's pipe closes (with
// TINYKV_EXIT_WITH_PARENT=1) and on SIGTERM, and it ignores a closed stdin without the variable.
import assert from "node:assert/strict";

const CHILD = `
import { waitForShutdown } from "${new URL("./mod.ts", import.meta.url).href}";
const shutdown = waitForShutdown();
console.log("ready");
const timer = setTimeout(() => { console.log("timeout"); Deno.exit(3); }, 1500);
console.log("reason:", await shutdown);
clearTimeout(timer);
`;

async function runChild(
  env: Record<string, string>,
  act: (child: Deno.ChildProcess) => Promise<void>,
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", CHILD],
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  while (!output.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) break;
    output += value;
  }
  await act(child);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    output += value;
  }
  const status = await child.status;
  return { output, status };
}

Deno.test("waitForShutdown() resolves when the parent's pipe closes", async () => {
  const { output, status } = await runChild({ TINYKV_EXIT_WITH_PARENT: "1" }, async (child) => {
    await child.stdin.close();
  });
  assert.match(output, /reason: parent exited/);
  assert.equal(status.code, 0);
});

Deno.test("waitForShutdown() resolves on SIGTERM", async () => {
  const { output } = await runChild({}, async (child) => {
    await child.stdin.close();
    child.kill("SIGTERM");
  });
  assert.match(output, /reason: SIGTERM/);
});

Deno.test("waitForShutdown() ignores stdin without TINYKV_EXIT_WITH_PARENT", async () => {
  const { output, status } = await runChild({}, async (child) => {
    await child.stdin.close();
  });
  assert.match(output, /timeout/);
  assert.equal(status.code, 3);
});
