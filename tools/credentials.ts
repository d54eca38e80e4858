/**
 * Credentials of a TinyKV cluster on disk: a CA and server certificate (openssl), the cluster's
 * Ed25519 signing and verify keys, and tokens. `deno task dev --secure` makes a dev cluster's
 * under `<data_dir>/secure/pki` on its first start; an operator makes a deployment's with
 * `deno task credentials` (docs/deploy.md):
 *
 * ```
 * deno task credentials init DIR [--hosts H1,H2]                  CA, server certificate, keys
 * deno task credentials token DIR --cluster NAME --role ROLE --sub NAME [--days N]
 * deno task credentials cert DIR --name NAME --hosts H1,H2          another certificate of the CA
 * ```
 *
 * `token` prints the token on stdout. A directory's files: `ca.crt`, `ca.key`, `server.crt`,
 * `server.key`, `signing.pem` (keep it offline: whoever has it can make any token),
 * `verify.pem` (every server's `verify_key_file`), and `<name>.token` files that `init` of a dev
 * cluster writes. Keys are written readable by the owner only.
 *
 * @module
 */
import {
  exportPem,
  generateKeyPair,
  importSigningKey,
  mintToken,
  type Role,
  ROLES,
} from "@tinykv/auth";
import { makeCertificate, makeCertificateAuthority } from "@tinykv/auth/pki";

/** The name every TinyKV server certificate carries (`[security] server_name`'s default). */
export const SERVER_NAME = "tinykv";
/** How long a token `init` and `token` make is good for, by default. */
export const TOKEN_DAYS_DEFAULT = 365;
const DAY_MS = 86_400_000;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** The files of a credentials directory. */
export function credentialFiles(dir: string) {
  return {
    ca: `${dir}/ca.crt`,
    caKey: `${dir}/ca.key`,
    cert: `${dir}/server.crt`,
    key: `${dir}/server.key`,
    signing: `${dir}/signing.pem`,
    verify: `${dir}/verify.pem`,
    token: (name: string) => `${dir}/${name}.token`,
  };
}

/**
 * Makes what `dir` lacks of a cluster's credentials: the CA, a server certificate for `hosts`
 * (and {@linkcode SERVER_NAME}), the signing and verify keys. Existing files are kept, so a second
 * run changes nothing. Returns what it made.
 */
export async function initCredentials(
  dir: string,
  options: { hosts: readonly string[] },
): Promise<string[]> {
  const files = credentialFiles(dir);
  const made: string[] = [];
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  if (!(await exists(files.ca))) {
    await makeCertificateAuthority(dir, "TinyKV cluster CA");
    made.push(files.ca);
  }
  if (!(await exists(files.cert))) {
    await makeCertificate(dir, { cert: files.ca, key: files.caKey }, "server", [
      SERVER_NAME,
      ...options.hosts,
    ]);
    made.push(files.cert);
  }
  if (!(await exists(files.signing))) {
    const keys = await generateKeyPair();
    await Deno.writeTextFile(files.signing, await exportPem(keys.signing), { mode: 0o600 });
    await Deno.writeTextFile(files.verify, await exportPem(keys.verify));
    made.push(files.signing, files.verify);
  }
  return made;
}

/** A token signed with the signing key in `dir`, good for `days`. */
export async function makeToken(
  dir: string,
  claims: { cluster: string; role: Role; sub: string; days?: number },
): Promise<string> {
  const key = await importSigningKey(await Deno.readTextFile(credentialFiles(dir).signing));
  const now = Date.now();
  return await mintToken(key, {
    sub: claims.sub,
    role: claims.role,
    cluster: claims.cluster,
    iat: now,
    exp: now + (claims.days ?? TOKEN_DAYS_DEFAULT) * DAY_MS,
  });
}

/** Writes `<dir>/<name>.token` unless it exists; returns its path. */
export async function ensureTokenFile(
  dir: string,
  name: string,
  claims: { cluster: string; role: Role; sub: string },
): Promise<string> {
  const path = credentialFiles(dir).token(name);
  if (!(await exists(path))) {
    await Deno.writeTextFile(path, `${await makeToken(dir, claims)}\n`, { mode: 0o600 });
  }
  return path;
}

const USAGE = `deno task credentials: make a TinyKV cluster's credentials

  init DIR [--hosts H1,H2]            the CA, a server certificate for the hosts (and "${SERVER_NAME}"),
                                      the signing and verify keys; files already there are kept
  token DIR --cluster NAME --role ROLE --sub NAME [--days N]
                                      print a token (ROLE: ${ROLES.join(", ")}); a kvnode's
                                      --sub is its node id
  cert DIR --name NAME --hosts H1,H2  another certificate signed by DIR's CA

DIR holds ca.crt, ca.key, server.crt, server.key, signing.pem (keep it offline) and verify.pem.
`;

function flagValues(args: readonly string[]): { words: string[]; flags: Map<string, string> } {
  const words: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) {
      words.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
    if (value === undefined) throw new Error(`Flag "--${name}" needs a value`);
    flags.set(name, value);
  }
  return { words, flags };
}

function hostsOf(flags: Map<string, string>): string[] {
  return (flags.get("hosts") ?? "").split(",").map((h) => h.trim()).filter((h) => h !== "");
}

/** Runs the tool; returns its exit code. */
export async function main(args: readonly string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  let parsed: ReturnType<typeof flagValues>;
  try {
    parsed = flagValues(args);
  } catch (error) {
    console.error(`credentials: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { words, flags } = parsed;
  const [command, dir] = words;
  if (command === undefined || command === "help" || flags.has("help")) {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (dir === undefined) {
    console.error(`credentials: "${command}" needs DIR\n\n${USAGE}`);
    return 2;
  }
  try {
    switch (command) {
      case "init": {
        const made = await initCredentials(dir, { hosts: hostsOf(flags) });
        console.log(made.length === 0 ? `${dir}: everything is there` : `made ${made.join(", ")}`);
        return 0;
      }
      case "token": {
        const role = flags.get("role") ?? "";
        if (!(ROLES as readonly string[]).includes(role)) {
          throw new Error(`--role must be one of ${ROLES.join(", ")}: got "${role}"`);
        }
        const cluster = flags.get("cluster");
        const sub = flags.get("sub");
        if (cluster === undefined || sub === undefined) {
          throw new Error("token needs --cluster and --sub");
        }
        const days = Number(flags.get("days") ?? TOKEN_DAYS_DEFAULT);
        if (!Number.isInteger(days) || days < 1 || days > 3650) {
          throw new Error(`--days must be an integer from 1 to 3650: got "${flags.get("days")}"`);
        }
        console.log(await makeToken(dir, { cluster, role: role as Role, sub, days }));
        return 0;
      }
      case "cert": {
        const name = flags.get("name");
        const hosts = hostsOf(flags);
        if (name === undefined || hosts.length === 0) {
          throw new Error("cert needs --name and --hosts");
        }
        const files = credentialFiles(dir);
        const made = await makeCertificate(dir, { cert: files.ca, key: files.caKey }, name, hosts);
        console.log(`made ${made.cert} and ${made.key}`);
        return 0;
      }
      default:
        console.error(`credentials: unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    console.error(`credentials: ${(error as Error).message}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
