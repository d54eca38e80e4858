/**
 * The idempotent setup step that `deno task dev` and `deno task test` run first: it checks the
 * Deno version and installs what is missing (ZooKeeper, from Debian's `zookeeper` package, after
 * `apt-get update`), saying what it does. A second run finds everything in place and does nothing.
 *
 * With `--faults` it also makes sure of what the fault test (`deno task test:chaos`, part of
 * `deno task test`) needs to build its test hosts: `ip` (Debian's `iproute2`) and `nft`
 * (`nftables`). With `--deploy`, what the deployment test (`deno task test:deploy`) needs: those
 * and the load balancer of the deployment guide, haproxy (Debian's `haproxy`). With `--test`,
 * everything the whole suite needs: those, Prometheus (Debian's `prometheus`, which
 * `tests/prometheus_test.ts` runs against the dev cluster) and Chromium (Debian's `chromium`, the
 * headless browser in which `tests/dashboard_test.ts` drives placement's dashboard) and etcdctl
 * (Debian's `etcd-client`, the real etcd client `tests/etcd_api_test.ts` runs against the gateway).
 *
 * Run: `deno run --allow-read=/usr/share/java --allow-run=apt-get,java,/usr/bin/java,/usr/sbin/ip,/usr/sbin/nft,/usr/sbin/haproxy,/usr/bin/prometheus,/usr/bin/chromium,/usr/bin/etcdctl tools/setup.ts [--faults | --deploy | --test]`
 *
 * @module
 */

/** The Deno release TinyKV is pinned to; 2.9.4–2.9.6 abort grpc-js servers (denoland/deno#36788). */
export const PINNED_DENO_VERSION = "2.9.3";

/** Where Debian's `zookeeper` package puts the server's jar. */
export const ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar";

function say(line: string): void {
  console.log(`setup: ${line}`);
}

function fileExists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function commandSucceeds(command: string, args: string[]): Promise<boolean> {
  try {
    const output = await new Deno.Command(command, { args, stdout: "null", stderr: "null" })
      .output();
    return output.success;
  } catch (error) {
    // NotCapable: a bare command name that was not on PATH when Deno started (see below).
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable) {
      return false;
    }
    throw error;
  }
}

async function run(command: string, args: string[]): Promise<void> {
  say(`running: ${command} ${args.join(" ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  let status: Deno.CommandStatus;
  try {
    status = await new Deno.Command(command, { args, env, stdout: "inherit", stderr: "inherit" })
      .spawn().status;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot run "${command}": ${reason} (this setup needs Debian's apt, as root)`);
  }
  if (!status.success) {
    throw new Error(
      `Cannot install: "${command} ${args.join(" ")}" exited with code ${status.code}` +
        " (run as root, or install the Debian packages named above yourself)",
    );
  }
}

/** A Debian package, and how to tell that it is installed. */
interface Requirement {
  readonly what: string;
  readonly packageName: string;
  readonly present: () => Promise<boolean>;
}

const ZOOKEEPER: Requirement = {
  what: `ZooKeeper (${ZOOKEEPER_JAR}) and Java`,
  packageName: "zookeeper",
  present: async () =>
    fileExists(ZOOKEEPER_JAR) &&
    (await commandSucceeds("java", ["-version"]) ||
      await commandSucceeds("/usr/bin/java", ["-version"])),
};

// By absolute path: Deno resolves a command named in --allow-run when it starts, so a command
// installed by this very run could not be run by its bare name.
const FAULT_TEST_TOOLS: readonly Requirement[] = [
  {
    what: "ip (network namespaces)",
    packageName: "iproute2",
    present: () => commandSucceeds("/usr/sbin/ip", ["-V"]),
  },
  {
    what: "nft (nftables)",
    packageName: "nftables",
    present: () => commandSucceeds("/usr/sbin/nft", ["--version"]),
  },
];

const HAPROXY: Requirement = {
  what: "haproxy (/usr/sbin/haproxy)",
  packageName: "haproxy",
  present: () => commandSucceeds("/usr/sbin/haproxy", ["-v"]),
};

const PROMETHEUS: Requirement = {
  what: "Prometheus (/usr/bin/prometheus)",
  packageName: "prometheus",
  present: () => commandSucceeds("/usr/bin/prometheus", ["--version"]),
};

const ETCDCTL: Requirement = {
  what: "etcdctl (/usr/bin/etcdctl)",
  packageName: "etcd-client",
  present: () => commandSucceeds("/usr/bin/etcdctl", ["version"]),
};

const CHROMIUM: Requirement = {
  what: "Chromium (/usr/bin/chromium)",
  packageName: "chromium",
  present: () => commandSucceeds("/usr/bin/chromium", ["--version"]),
};

/** Installs the packages of the requirements that are missing, with one `apt-get update`. */
async function ensure(requirements: readonly Requirement[]): Promise<void> {
  const missing: Requirement[] = [];
  for (const requirement of requirements) {
    if (await requirement.present()) say(`${requirement.what}: installed`);
    else missing.push(requirement);
  }
  if (missing.length === 0) return;
  const packages = missing.map((r) => r.packageName);
  say(`installing Debian's ${packages.map((p) => `"${p}"`).join(", ")}`);
  await run("apt-get", ["update"]);
  await run("apt-get", ["install", "-y", "--no-install-recommends", ...packages]);
  for (const requirement of missing) {
    if (!(await requirement.present())) {
      throw new Error(
        `Cannot find ${requirement.what} after installing "${requirement.packageName}"`,
      );
    }
  }
  say(`installed ${packages.join(", ")}`);
}

function checkDenoVersion(): void {
  if (Deno.version.deno === PINNED_DENO_VERSION) {
    say(`Deno ${Deno.version.deno} (the pinned version)`);
    return;
  }
  say(
    `WARNING: this is Deno ${Deno.version.deno}, TinyKV is pinned to ${PINNED_DENO_VERSION}. ` +
      "Deno 2.9.4-2.9.6 abort gRPC servers when client channels close (denoland/deno#36788). " +
      `Install the pinned one: npm install -g deno@${PINNED_DENO_VERSION}`,
  );
}

/**
 * Runs every setup step (with `faults`, also the fault test's tools; with `deploy`, those and
 * haproxy; with `test`, everything the test suite needs); throws with a message saying what is
 * missing and how to fix it.
 */
export async function setup(
  options: { faults?: boolean; deploy?: boolean; test?: boolean } = {},
): Promise<void> {
  checkDenoVersion();
  const test = options.test === true;
  const deploy = options.deploy === true || test;
  const faults = options.faults === true || deploy;
  await ensure([
    ZOOKEEPER,
    ...(faults ? FAULT_TEST_TOOLS : []),
    ...(deploy ? [HAPROXY] : []),
    ...(test ? [PROMETHEUS, CHROMIUM, ETCDCTL] : []),
  ]);
}

if (import.meta.main) {
  try {
    const known = ["--faults", "--deploy", "--test"];
    const unknown = Deno.args.filter((arg) => !known.includes(arg));
    if (unknown.length > 0) {
      throw new Error(`Unknown argument "${unknown[0]}": expected --faults, --deploy or --test`);
    }
    await setup({
      faults: Deno.args.includes("--faults"),
      deploy: Deno.args.includes("--deploy"),
      test: Deno.args.includes("--test"),
    });
  } catch (error) {
    console.error(`setup: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}
