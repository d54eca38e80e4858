/**
 * {@linkcode ChaosNet}: the fault test's network of test hosts. Every kvnode runs in a network
 * namespace of its own, with its own address on a bridge; the root namespace (ZooKeeper,
 * placement, gateways, the test's clients) has the bridge's address. Partitions are nftables
 * rules inside the namespaces that drop packets by address, so they cut the real network path
 * the product uses — nothing inside the product knows about them.
 *
 * Names carry the runner's PID (`tkvc<pid>…`), so a run never touches another run's network, and
 * the leftovers of a run that died (its PID gone) are removed by the next one. Another test that
 * builds hosts this way (the deployment test, `tests/deploy`) passes a name prefix and a
 * `10.X.0.0/16` of its own ({@linkcode NetNames}), so the two never meet. Needs root, `ip`
 * (iproute2) and `nft` (nftables); `tools/setup.ts` installs nftables.
 *
 * @module
 */

/** The root namespace: ZooKeeper, placement, gateways and clients. */
export const HOST = -1;

/**
 * How a user of {@linkcode ChaosNet} names its namespaces and links, and where its addresses come
 * from: `prefix` (4 letters, so names stay within Linux's 15 characters) then the runner's PID,
 * and a free `/24` under `<subnet16>.0.0/16`.
 */
export interface NetNames {
  readonly prefix: string;
  /** The first two octets, e.g. `"10.213"`. */
  readonly subnet16: string;
}

/** The fault test's names: `tkvc<pid>…` on 10.213.0.0/16. */
export const CHAOS_NAMES: NetNames = { prefix: "tkvc", subnet16: "10.213" };

/** Runs a command; throws with its output when it fails. */
export async function run(command: string, args: readonly string[], stdin?: string) {
  const child = new Deno.Command(command, {
    args: [...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    // A command that fails at once closes its input: its exit status says why, below.
    await writer.write(new TextEncoder().encode(stdin)).catch(() => {});
    await writer.close().catch(() => {});
  }
  const output = await child.output();
  if (!output.success) {
    const text = new TextDecoder().decode(output.stderr).trim();
    throw new Error(`${command} ${args.join(" ")} failed (exit ${output.code}): ${text}`);
  }
  return new TextDecoder().decode(output.stdout);
}

/**
 * Whether process `pid` exists. Asked of the shell (`kill -0`), since Deno reads `/proc` only
 * with every permission; when the answer is unclear the process counts as alive, so that a live
 * run's network is never removed.
 */
async function processAlive(pid: number): Promise<boolean> {
  try {
    const probe = await new Deno.Command("sh", {
      args: ["-c", `kill -0 ${pid} 2>/dev/null; echo $?`],
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(probe.stdout).trim() !== "1";
  } catch {
    return true;
  }
}

/** Removes namespaces and bridges left by runs (named by `names`) whose process is gone. */
export async function removeLeftovers(names: NetNames = CHAOS_NAMES): Promise<string[]> {
  const removed: string[] = [];
  const pattern = new RegExp(`^${names.prefix}(\\d+)`);
  const namespaces = (await run("ip", ["netns", "list"])).split("\n").map((l) => l.split(" ")[0]);
  for (const name of namespaces) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (Number.isInteger(pid) && !(await processAlive(pid))) {
      await run("ip", ["netns", "del", name]).catch(() => {});
      removed.push(name);
    }
  }
  const links = (await run("ip", ["-o", "link", "show", "type", "bridge"])).split("\n")
    .map((l) => l.split(": ")[1]?.split("@")[0] ?? "");
  for (const name of links) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (Number.isInteger(pid) && !(await processAlive(pid))) {
      await run("ip", ["link", "del", name]).catch(() => {});
      removed.push(name);
    }
  }
  return removed;
}

/** A `/24` under `<subnet16>.0.0/16` that no interface here uses, starting the search at `pid`. */
async function freeSubnet(pid: number, subnet16: string): Promise<string> {
  const used = await run("ip", ["-4", "-o", "addr", "show"]);
  for (let i = 0; i < 250; i++) {
    const subnet = `${subnet16}.${(pid + i) % 250}`;
    if (!used.includes(` ${subnet}.`)) return subnet;
  }
  throw new Error(`Cannot find a free /24 in ${subnet16}.0.0/16 for the test hosts`);
}

/** A bridge with `hosts` network namespaces on it, and the partitions between them. */
export class ChaosNet {
  readonly hosts: number;
  readonly #tag: string;
  readonly #subnet: string;
  /** Directed cuts: `from>to` means packets from `from` do not reach `to`. */
  readonly #cuts = new Set<string>();

  private constructor(hosts: number, tag: string, subnet: string) {
    this.hosts = hosts;
    this.#tag = tag;
    this.#subnet = subnet;
  }

  /**
   * Creates the bridge and `hosts` namespaces (removing dead runs' leftovers first), named by
   * `names` (by default the fault test's).
   */
  static async create(hosts: number, names: NetNames = CHAOS_NAMES): Promise<ChaosNet> {
    if (hosts < 1 || hosts > 50) throw new Error(`Cannot make ${hosts} test hosts: 1 to 50`);
    if (!/^[a-z]{4}$/.test(names.prefix) || !/^\d{1,3}\.\d{1,3}$/.test(names.subnet16)) {
      throw new Error(`Bad test host names ${JSON.stringify(names)}: 4 letters, "A.B"`);
    }
    await removeLeftovers(names);
    const pid = Deno.pid;
    const net = new ChaosNet(hosts, `${names.prefix}${pid}`, await freeSubnet(pid, names.subnet16));
    try {
      await run("ip", ["link", "add", net.#bridge, "type", "bridge"]);
      await run("ip", ["addr", "add", `${net.address(HOST)}/24`, "dev", net.#bridge]);
      await run("ip", ["link", "set", net.#bridge, "up"]);
      for (let i = 0; i < hosts; i++) {
        const ns = net.namespace(i);
        const veth = `${net.#tag}v${i}`;
        await run("ip", ["netns", "add", ns]);
        await run("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
        await run("ip", ["link", "set", veth, "master", net.#bridge]);
        await run("ip", ["link", "set", veth, "up"]);
        await run("ip", ["-n", ns, "addr", "add", `${net.address(i)}/24`, "dev", "eth0"]);
        await run("ip", ["-n", ns, "link", "set", "eth0", "up"]);
        await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
      }
    } catch (error) {
      await net.destroy();
      throw error;
    }
    return net;
  }

  get #bridge(): string {
    return `${this.#tag}br`;
  }

  /** The namespace of test host `i`. */
  namespace(i: number): string {
    return `${this.#tag}n${i}`;
  }

  /** The address of test host `i`, or of the root namespace for {@linkcode HOST}. */
  address(i: number): string {
    return `${this.#subnet}.${i === HOST ? 1 : i + 10}`;
  }

  /** The command prefix that runs a program on test host `i`. */
  prefix(i: number): string[] {
    return ["ip", "netns", "exec", this.namespace(i)];
  }

  /** Drops every packet from `from` to `to` (one way; either may be {@linkcode HOST}). */
  async cut(from: number, to: number): Promise<void> {
    if (from === to) return;
    this.#cuts.add(`${from}>${to}`);
    await this.#apply([from, to]);
  }

  /** Cuts `a` and `b` apart both ways. */
  async cutBoth(a: number, b: number): Promise<void> {
    this.#cuts.add(`${a}>${b}`);
    this.#cuts.add(`${b}>${a}`);
    await this.#apply([a, b]);
  }

  /** The cuts in force, as `from>to` strings (host is -1). */
  get cuts(): string[] {
    return [...this.#cuts];
  }

  /** Removes every cut. */
  async heal(): Promise<void> {
    const touched = [...this.#cuts].flatMap((c) => c.split(">").map(Number));
    this.#cuts.clear();
    await this.#apply(touched);
  }

  /**
   * Rewrites the rules of the namespaces involved: host `i` drops input from every `x` with a
   * cut `x>i`, and output to every `y` with a cut `i>y` when `y` is the root namespace (which has
   * no rules of its own). Each namespace's ruleset is replaced in one `nft -f` transaction.
   */
  async #apply(involved: number[]): Promise<void> {
    for (const i of new Set(involved)) {
      if (i === HOST) continue;
      const drops: string[] = [];
      const outputs: string[] = [];
      for (const cut of this.#cuts) {
        const [from, to] = cut.split(">").map(Number);
        if (to === i) drops.push(`    ip saddr ${this.address(from)} drop`);
        if (from === i && to === HOST) outputs.push(`    ip daddr ${this.address(HOST)} drop`);
      }
      const ruleset = [
        "table inet tinykv_chaos",
        "delete table inet tinykv_chaos",
        "table inet tinykv_chaos {",
        "  chain input {",
        "    type filter hook input priority 0; policy accept;",
        ...drops,
        "  }",
        "  chain output {",
        "    type filter hook output priority 0; policy accept;",
        ...outputs,
        "  }",
        "}",
        "",
      ].join("\n");
      await run("ip", ["netns", "exec", this.namespace(i), "nft", "-f", "-"], ruleset);
    }
  }

  /** Removes the namespaces and the bridge. */
  async destroy(): Promise<void> {
    for (let i = 0; i < this.hosts; i++) {
      await run("ip", ["netns", "del", this.namespace(i)]).catch(() => {});
    }
    await run("ip", ["link", "del", this.#bridge]).catch(() => {});
  }
}
