/**
 * A service's security from its `[security]` config: TLS for the ports it serves and the calls it
 * makes, the credential check its servers apply (with each service's own policy of roles), the
 * token it sends, and the refusal to serve off loopback without them. Read once at start; a file
 * that is missing or malformed stops the service with a message naming it.
 *
 * @module
 */
import { checkClaims, type Claims, importVerifyKey, type Role, TokenVerifier } from "@tinykv/auth";
import type { ClientSecurity, ServerAuth, ServerTls } from "./security.ts";

/** The `[security]` section of the config. */
export interface SecuritySection {
  readonly ca_file: string;
  readonly cert_file: string;
  readonly key_file: string;
  readonly verify_key_file: string;
  readonly token_file: string;
  readonly server_name: string;
  readonly insecure: boolean;
}

/** The roles that may call each method of a service, by method path (`/pkg.Service/Method`). */
export type Policy = (methodPath: string) => readonly Role[] | undefined;

/** A policy that lets `roles` call every method under `servicePrefix` (`/tinykv.v1.KV/`). */
export function servicePolicy(entries: ReadonlyArray<readonly [string, readonly Role[]]>): Policy {
  return (path) => entries.find(([prefix]) => path.startsWith(prefix))?.[1];
}

/** What a service uses of its security. */
export interface ServiceSecurity {
  /** TLS for the ports it serves; undefined: plaintext. */
  readonly serverTls: ServerTls | undefined;
  /** How its clients connect and what they send (`createGrpcClient` options). */
  readonly client: ClientSecurity;
  /** The process's own claims (from its token), when it has one. */
  readonly identity: Claims | undefined;
  /** The check its servers apply under `policy`; undefined when credentials are off. */
  auth(policy: Policy): ServerAuth | undefined;
  /** TLS and credentials both on. */
  readonly secure: boolean;
}

async function readFile(what: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot read ${what} "${path}" ([security]): ${reason}`);
  }
}

/** The claims of a token, read without checking its signature (the process's own file). */
export function claimsOf(token: string): Claims | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const claims = JSON.parse(json);
    return checkClaims(claims) === undefined ? claims as Claims : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Loads `[security]` for a service of `cluster` (the `zookeeper.cluster` name tokens carry).
 * Throws, naming the key and the file, when a file is missing or the settings do not fit
 * together; when the process's own token does not verify with the cluster's key, or is for
 * another cluster or `role`.
 */
export async function loadServiceSecurity(
  section: SecuritySection,
  options: { cluster: string; role?: Role },
): Promise<ServiceSecurity> {
  const { ca_file, cert_file, key_file, verify_key_file, token_file } = section;
  if ((cert_file === "") !== (key_file === "")) {
    throw new Error("[security] cert_file and key_file go together: set both or neither");
  }
  if (cert_file !== "" && ca_file === "") {
    throw new Error("[security] cert_file needs ca_file (the CA that signed it)");
  }
  if (token_file !== "" && ca_file === "") {
    throw new Error("[security] token_file needs ca_file: a token is sent only over TLS");
  }
  if (verify_key_file !== "" && token_file === "") {
    throw new Error(
      "[security] verify_key_file needs token_file: with credentials on, this process's own " +
        "calls to the others need its token",
    );
  }
  const ca = ca_file === "" ? undefined : await readFile("ca_file", ca_file);
  const serverTls = cert_file === "" ? undefined : {
    cert: await readFile("cert_file", cert_file),
    key: await readFile("key_file", key_file),
    ca: ca!,
  };
  const token = token_file === "" ? undefined : (await readFile("token_file", token_file)).trim();
  const identity = token === undefined ? undefined : claimsOf(token);
  if (token !== undefined && identity === undefined) {
    throw new Error(`[security] token_file "${token_file}" holds no TinyKV token`);
  }
  let verifier: TokenVerifier | undefined;
  if (verify_key_file !== "") {
    let key: CryptoKey;
    try {
      key = await importVerifyKey(await readFile("verify_key_file", verify_key_file));
    } catch (error) {
      throw new Error(
        `[security] verify_key_file "${verify_key_file}": ${(error as Error).message}`,
      );
    }
    verifier = new TokenVerifier(key, { cluster: options.cluster });
    if (token !== undefined) {
      const own = await verifier.verify(token);
      if (own.kind !== "ok") {
        throw new Error(`[security] token_file "${token_file}" is refused: ${own.message}`);
      }
    }
  }
  if (options.role !== undefined && identity !== undefined && identity.role !== options.role) {
    throw new Error(
      `[security] token_file "${token_file}" is a ${identity.role}'s token: this process is a ` +
        options.role,
    );
  }
  return {
    serverTls,
    client: {
      tls: ca === undefined ? undefined : { ca, serverName: section.server_name },
      token,
    },
    identity,
    auth: (policy) =>
      verifier === undefined ? undefined : {
        verify: (t) => verifier.verify(t),
        roles: policy,
      },
    secure: serverTls !== undefined && verifier !== undefined,
  };
}

/**
 * What a service does first: loads `[security]` for `options.role` (after `options.check`, e.g.
 * that the ZooKeeper credential can be read) and checks that it may listen on `options.host`.
 * The security, or the message to stop with.
 */
export async function prepareServiceSecurity(
  section: SecuritySection,
  options: { cluster: string; role: Role; host: string; check?: () => void },
): Promise<{ kind: "ok"; security: ServiceSecurity } | { kind: "refused"; message: string }> {
  let security: ServiceSecurity;
  try {
    options.check?.();
    security = await loadServiceSecurity(section, options);
  } catch (error) {
    return { kind: "refused", message: error instanceof Error ? error.message : String(error) };
  }
  const exposed = exposureRefusal(options.host, security, section);
  return exposed === undefined ? { kind: "ok", security } : { kind: "refused", message: exposed };
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|\[::1\]|localhost)$/i;

/** Whether `host` is a loopback address (or `localhost`). */
export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

/**
 * Why a service must not listen on `host` as configured (off loopback without TLS and
 * credentials, unless `insecure = true`); undefined when it may.
 */
export function exposureRefusal(
  host: string,
  security: { readonly secure: boolean },
  section: SecuritySection,
): string | undefined {
  if (isLoopback(host) || security.secure || section.insecure) return undefined;
  return `Refusing to listen on "${host}" without TLS and credentials: set [security] ca_file, ` +
    "cert_file, key_file, verify_key_file and token_file, or insecure = true to accept that any " +
    "host that reaches this port may read and change the cluster";
}
