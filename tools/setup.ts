/**
 * The idempotent setup step that `deno task dev` and `deno task test` run first: it checks the
 * Deno version and installs what is missing (ZooKeeper, from Debian's `zookeeper` package, after
 * `apt-get update`), saying what it does. A second run finds everything in place and does nothing.
 *
 * Run: `deno run --allow-read=/usr/share/java --allow-run=apt-get,java --allow-env tools/setup.ts`
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
    if (error instanceof Deno.errors.NotFound) return false;
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
      `Cannot install ZooKeeper: "${command} ${args.join(" ")}" exited with code ${status.code}` +
        " (run as root, or install the Debian package zookeeper yourself)",
    );
  }
}

async function ensureZooKeeper(): Promise<void> {
  const haveJar = fileExists(ZOOKEEPER_JAR);
  const haveJava = await commandSucceeds("java", ["-version"]);
  if (haveJar && haveJava) {
    say(`ZooKeeper is installed (${ZOOKEEPER_JAR}), Java is available`);
    return;
  }
  say('installing ZooKeeper from Debian\'s package "zookeeper" (it brings Java with it)');
  await run("apt-get", ["update"]);
  await run("apt-get", ["install", "-y", "--no-install-recommends", "zookeeper"]);
  if (!fileExists(ZOOKEEPER_JAR) || !(await commandSucceeds("java", ["-version"]))) {
    throw new Error(
      `Cannot find ZooKeeper after installing it: "${ZOOKEEPER_JAR}" or java missing`,
    );
  }
  say("ZooKeeper installed");
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

/** Runs every setup step; throws with a message saying what is missing and how to fix it. */
export async function setup(): Promise<void> {
  checkDenoVersion();
  await ensureZooKeeper();
}

if (import.meta.main) {
  try {
    await setup();
  } catch (error) {
    console.error(`setup: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}
