/**
 * Runs the `tinykv` CLI as `deno task tinykv` does (same script, same permissions) in a child
 * process, for tests.
 *
 * @module
 */

const REPO_ROOT = new URL("../..", import.meta.url).pathname;

/** The permissions of `deno task tinykv`. */
export const CLI_PERMISSIONS = [
  "--allow-net",
  "--allow-env=GRPC_*,grpc_proxy,https_proxy,http_proxy,no_grpc_proxy,no_proxy,TINYKV_CA,TINYKV_TOKEN_FILE",
  "--allow-read",
  "--allow-write",
];

/** What one CLI run returned. */
export interface CliRun {
  /** The exit code. */
  code: number;
  /** Everything written to stdout, decoded as UTF-8. */
  stdout: string;
  /** Everything written to stderr, decoded as UTF-8. */
  stderr: string;
}

/** Options of {@linkcode runCli}. */
export interface RunCliOptions {
  /** Bytes to write to the CLI's stdin, which is then closed; default: stdin is /dev/null. */
  stdin?: Uint8Array;
}

/** Runs `tinykv ARGS…` to completion. */
export async function runCli(
  args: readonly string[],
  options: RunCliOptions = {},
): Promise<CliRun> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...CLI_PERMISSIONS, "tools/tinykv.ts", ...args],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Fed while the output is collected, so neither side's pipe can fill up and block the other.
  const [output] = await Promise.all([
    child.output(),
    options.stdin === undefined ? undefined : feed(child.stdin, options.stdin),
  ]);
  const dec = new TextDecoder();
  return {
    code: output.code,
    stdout: dec.decode(output.stdout),
    stderr: dec.decode(output.stderr),
  };
}

/**
 * Writes `bytes` to `stdin` and closes it. A CLI that exits without reading all of it (a usage
 * error, or input over its bound) closes the pipe: that is its answer, not a harness failure.
 */
async function feed(stdin: WritableStream<Uint8Array>, bytes: Uint8Array): Promise<void> {
  const writer = stdin.getWriter();
  try {
    await writer.write(bytes);
    await writer.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
}
