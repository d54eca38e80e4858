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
  "--allow-env=GRPC_*,grpc_proxy,https_proxy,http_proxy,no_grpc_proxy,no_proxy",
];

/** What one CLI run returned. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `tinykv ARGS…` to completion. */
export async function runCli(args: readonly string[]): Promise<CliRun> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...CLI_PERMISSIONS, "tools/tinykv.ts", ...args],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return {
    code: output.code,
    stdout: dec.decode(output.stdout),
    stderr: dec.decode(output.stderr),
  };
}
