// The fault test's network: test hosts reach each other and the root namespace over TCP, a cut
// stops exactly the directions it names, and healing restores them. Needs root, ip and nft, as
// the fault test does.
import assert from "node:assert/strict";
import { ChaosNet, HOST, removeLeftovers, run } from "./net.ts";

/** Whether a TCP connection from `from` (a test host or HOST) to `address:port` succeeds. */
async function connects(net: ChaosNet, from: number, address: string, port: number) {
  const code = `try { const c = await Deno.connect({ hostname: "${address}", port: ${port} }); ` +
    `c.close(); Deno.exit(0); } catch { Deno.exit(1); }`;
  const deno = [Deno.execPath(), "eval", code];
  const command = from === HOST ? deno : [...net.prefix(from), ...deno];
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    stdout: "null",
    stderr: "null",
  }).spawn();
  // A dropped SYN never answers: give up after a bound, which then means "cut".
  const timer = setTimeout(() => child.kill("SIGKILL"), 1500);
  const status = await child.status;
  clearTimeout(timer);
  return status.success;
}

/** Starts a TCP listener on test host `host`; returns its port and a way to stop it. */
async function listenOn(net: ChaosNet, host: number, port: number) {
  const code = `const l = Deno.listen({ hostname: "${net.address(host)}", port: ${port} }); ` +
    `console.log("listening"); for await (const c of l) c.close();`;
  const child = new Deno.Command(net.prefix(host)[0], {
    args: [...net.prefix(host).slice(1), Deno.execPath(), "eval", code],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read();
  reader.releaseLock();
  return {
    stop: async () => {
      child.kill("SIGKILL");
      await child.status;
      await child.stdout.cancel();
    },
  };
}

Deno.test({
  name: "chaos net: cuts drop exactly the named directions on the real path, heal restores",
  ignore: Deno.uid() !== 0,
  async fn() {
    const net = await ChaosNet.create(3);
    const listeners: Array<{ stop(): Promise<void> }> = [];
    const hostListener = Deno.listen({ hostname: net.address(HOST), port: 0 });
    const hostPort = (hostListener.addr as Deno.NetAddr).port;
    const accepting = (async () => {
      for await (const conn of hostListener) conn.close();
    })();
    try {
      const port = 17_000 + (Deno.pid % 1000);
      for (let i = 0; i < 3; i++) listeners.push(await listenOn(net, i, port));
      const reach = (from: number, to: number) =>
        to === HOST
          ? connects(net, from, net.address(HOST), hostPort)
          : connects(net, from, net.address(to), port);

      assert.equal(await reach(0, 1), true, "0 reaches 1");
      assert.equal(await reach(HOST, 2), true, "the root namespace reaches 2");
      assert.equal(await reach(2, HOST), true, "2 reaches the root namespace");

      // One way: 0 cannot reach 1 (its SYN is dropped at 1), 1 cannot complete to 0 either
      // (0's answers are dropped), but 0 and 1 still reach 2.
      await net.cut(0, 1);
      assert.deepEqual(net.cuts, ["0>1"]);
      assert.equal(await reach(0, 1), false, "0 -> 1 is cut");
      assert.equal(await reach(0, 2), true, "0 still reaches 2");
      assert.equal(await reach(1, 2), true, "1 still reaches 2");

      // Isolating a host from the root namespace, both ways.
      await net.cutBoth(2, HOST);
      assert.equal(await reach(2, HOST), false, "2 -> root is cut");
      assert.equal(await reach(HOST, 2), false, "root -> 2 is cut");
      assert.equal(await reach(1, 2), true, "1 still reaches 2");

      await net.heal();
      assert.deepEqual(net.cuts, []);
      assert.equal(await reach(0, 1), true, "0 reaches 1 after healing");
      assert.equal(await reach(2, HOST), true, "2 reaches the root after healing");
      assert.equal(await reach(HOST, 2), true, "root reaches 2 after healing");
    } finally {
      for (const listener of listeners) await listener.stop();
      hostListener.close();
      await accepting.catch(() => {});
      await net.destroy();
    }
    const left = await run("ip", ["netns", "list"]);
    assert.equal(left.includes(net.namespace(0)), false, "the namespaces are removed");
  },
});

Deno.test({
  name: "chaos net: leftovers of a dead run are removed, a live run's network is kept",
  ignore: Deno.uid() !== 0,
  async fn() {
    const live = new Deno.Command("sleep", { args: ["60"] }).spawn();
    const dead = new Deno.Command("true").spawn();
    await dead.status;
    const liveName = `tkvc${live.pid}n0`;
    const deadName = `tkvc${dead.pid}n0`;
    try {
      await run("ip", ["netns", "add", liveName]);
      await run("ip", ["netns", "add", deadName]);
      const removed = await removeLeftovers();
      assert.ok(removed.includes(deadName), `removed ${removed.join(", ")}`);
      assert.ok(!removed.includes(liveName), "a live run's namespace is kept");
      const left = await run("ip", ["netns", "list"]);
      assert.match(left, new RegExp(`^${liveName}\\b`, "m"));
    } finally {
      live.kill("SIGKILL");
      await live.status;
      await run("ip", ["netns", "del", liveName]).catch(() => {});
      await run("ip", ["netns", "del", deadName]).catch(() => {});
    }
  },
});
