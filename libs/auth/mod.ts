/**
 * Credentials between TinyKV's processes and their clients: a token names a process's identity,
 * role and cluster and is signed with the cluster's Ed25519 signing key; every server holds only
 * the matching verify key, so a process that can check tokens cannot make them. Servers verify
 * the token of every call and stream before anything else (libs/rpc), then check the caller's role
 * against what the service allows.
 *
 * A token is `tkv1.<payload>.<signature>`: base64url of the JSON claims, and base64url of the
 * Ed25519 signature over `tkv1.<payload>`. Keys are PEM files (PKCS#8 private, SPKI public), as
 * `openssl genpkey -algorithm ed25519` writes them.
 *
 * @example Mint and verify a token
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateKeyPair, mintToken, TokenVerifier } from "./mod.ts";
 *
 * const keys = await generateKeyPair();
 * const token = await mintToken(keys.signing, {
 *   sub: "ops", role: "admin", cluster: "c-1", iat: 0, exp: Date.now() + 60_000,
 * });
 * const verifier = new TokenVerifier(keys.verify, { cluster: "c-1" });
 * const verified = await verifier.verify(token);
 * assert.equal(verified.kind === "ok" && verified.claims.role, "admin");
 * ```
 *
 * @module
 */

/** The roles a token may carry. */
export const ROLES = [
  "client",
  "admin",
  "gateway",
  "kvnode",
  "placement",
] as const;
/** A role: what a caller may do (see each service's policy). */
export type Role = typeof ROLES[number];

/** What a token says. */
export interface Claims {
  /** Who: a kvnode's node id, a gateway's or placement's name, an operator's or an app's. */
  readonly sub: string;
  readonly role: Role;
  /** The cluster the token is good for. */
  readonly cluster: string;
  /** When it was made and until when it is good, in Unix milliseconds. */
  readonly iat: number;
  readonly exp: number;
}

/** The longest token taken (a few hundred bytes in practice). */
export const TOKEN_BYTES_MAX = 2048;
/** The longest `sub` taken. */
export const SUBJECT_CHARS_MAX = 128;
/** How many verified tokens a verifier remembers (a verification costs about half a millisecond). */
export const VERIFIED_CACHE_MAX = 1024;

const PREFIX = "tkv1.";

/** A refused credential, with why. */
export interface Refusal {
  readonly kind: "unauthenticated" | "permissionDenied";
  readonly message: string;
}

/** The outcome of {@linkcode TokenVerifier.verify}. */
export type Verified =
  | { readonly kind: "ok"; readonly claims: Claims }
  | Refusal;

/** A key pair for a new cluster (tests, and the dev cluster's first start). */
export async function generateKeyPair(): Promise<
  { signing: CryptoKey; verify: CryptoKey }
> {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  return { signing: pair.privateKey, verify: pair.publicKey };
}

/** A key as PEM text (PKCS#8 for a signing key, SPKI for a verify key). */
export async function exportPem(key: CryptoKey): Promise<string> {
  const format = key.type === "private" ? "pkcs8" : "spki";
  const der = new Uint8Array(await crypto.subtle.exportKey(format, key));
  const label = key.type === "private" ? "PRIVATE KEY" : "PUBLIC KEY";
  const base64 = btoa(String.fromCharCode(...der)).replace(/(.{64})/g, "$1\n")
    .trim();
  return `-----BEGIN ${label}-----\n${base64}\n-----END ${label}-----\n`;
}

function pemBody(pem: string, label: string): Uint8Array<ArrayBuffer> {
  const match = new RegExp(
    `-----BEGIN ${label}-----([^-]+)-----END ${label}-----`,
  ).exec(pem);
  if (match === null) throw new Error(`Not a PEM "${label}"`);
  return Uint8Array.from(
    atob(match[1].replace(/\s+/g, "")),
    (c) => c.charCodeAt(0),
  );
}

/** The signing key in `pem` (PKCS#8 Ed25519). Throws, saying why, when it is not one. */
export async function importSigningKey(pem: string): Promise<CryptoKey> {
  try {
    return await crypto.subtle.importKey(
      "pkcs8",
      pemBody(pem, "PRIVATE KEY"),
      {
        name: "Ed25519",
      },
      true,
      ["sign"],
    );
  } catch (error) {
    throw new Error(
      `Not an Ed25519 private key in PKCS#8 PEM: ${messageOf(error)}`,
    );
  }
}

/** The verify key in `pem` (SPKI Ed25519). Throws, saying why, when it is not one. */
export async function importVerifyKey(pem: string): Promise<CryptoKey> {
  try {
    return await crypto.subtle.importKey(
      "spki",
      pemBody(pem, "PUBLIC KEY"),
      {
        name: "Ed25519",
      },
      true,
      ["verify"],
    );
  } catch (error) {
    throw new Error(
      `Not an Ed25519 public key in SPKI PEM: ${messageOf(error)}`,
    );
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(
    /\//g,
    "_",
  ).replace(
    /=+$/,
    "",
  );
}

function fromBase64url(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  try {
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") +
      "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/** Why `claims` cannot be a token's, or undefined when they can. */
export function checkClaims(claims: unknown): string | undefined {
  if (typeof claims !== "object" || claims === null) {
    return "the claims are not an object";
  }
  const c = claims as Record<string, unknown>;
  if (
    typeof c.sub !== "string" || c.sub.length === 0 ||
    c.sub.length > SUBJECT_CHARS_MAX
  ) {
    return `"sub" must be 1 to ${SUBJECT_CHARS_MAX} characters`;
  }
  if (
    typeof c.role !== "string" || !(ROLES as readonly string[]).includes(c.role)
  ) {
    return `"role" must be one of ${ROLES.join(", ")}: got ${JSON.stringify(c.role)}`;
  }
  if (typeof c.cluster !== "string" || c.cluster.length === 0) {
    return `"cluster" is missing`;
  }
  if (!Number.isSafeInteger(c.iat) || !Number.isSafeInteger(c.exp)) {
    return `"iat" and "exp" must be integers (Unix milliseconds)`;
  }
  return undefined;
}

/** Makes a token of `claims` signed with `key`. Throws when the claims are not valid. */
export async function mintToken(
  key: CryptoKey,
  claims: Claims,
): Promise<string> {
  const problem = checkClaims(claims);
  if (problem !== undefined) throw new Error(`Cannot mint a token: ${problem}`);
  const { sub, role, cluster, iat, exp } = claims;
  const payload = base64url(
    new TextEncoder().encode(JSON.stringify({ sub, role, cluster, iat, exp })),
  );
  const signed = new TextEncoder().encode(PREFIX + payload);
  const signature = new Uint8Array(
    await crypto.subtle.sign("Ed25519", key, signed),
  );
  const token = `${PREFIX}${payload}.${base64url(signature)}`;
  if (token.length > TOKEN_BYTES_MAX) {
    throw new Error(
      `Cannot mint a token: it would be ${token.length} bytes, over ${TOKEN_BYTES_MAX}`,
    );
  }
  return token;
}

/** Checks tokens against one verify key and cluster, remembering those it verified. */
export class TokenVerifier {
  readonly #key: CryptoKey;
  readonly #cluster: string;
  readonly #now: () => number;
  readonly #verified = new Map<string, Claims>();

  constructor(
    key: CryptoKey,
    options: { cluster: string; now?: () => number },
  ) {
    this.#key = key;
    this.#cluster = options.cluster;
    this.#now = options.now ?? Date.now;
  }

  /** The token's claims, or why it is refused (`unauthenticated`). */
  async verify(token: string): Promise<Verified> {
    let claims = this.#verified.get(token);
    if (claims === undefined) {
      const checked = await this.#check(token);
      if (checked.kind !== "ok") return checked;
      claims = checked.claims;
      if (this.#verified.size >= VERIFIED_CACHE_MAX) {
        this.#verified.delete(this.#verified.keys().next().value!);
      }
      this.#verified.set(token, claims);
    }
    if (claims.exp <= this.#now()) {
      this.#verified.delete(token);
      return refuse(
        `The token of "${claims.sub}" expired at ${new Date(claims.exp).toISOString()}`,
      );
    }
    return { kind: "ok", claims };
  }

  async #check(token: string): Promise<Verified> {
    if (token.length > TOKEN_BYTES_MAX) {
      return refuse(
        `The token is ${token.length} bytes: the most is ${TOKEN_BYTES_MAX}`,
      );
    }
    const parts = token.split(".");
    if (parts.length !== 3 || `${parts[0]}.` !== PREFIX) {
      return refuse(
        `Not a TinyKV token (expected "tkv1.<claims>.<signature>")`,
      );
    }
    const payload = fromBase64url(parts[1]);
    const signature = fromBase64url(parts[2]);
    if (payload === undefined || signature === undefined) {
      return refuse("The token is not base64url");
    }
    const signed = new TextEncoder().encode(`${PREFIX}${parts[1]}`);
    let valid = false;
    try {
      valid = await crypto.subtle.verify(
        "Ed25519",
        this.#key,
        signature,
        signed,
      );
    } catch {
      valid = false;
    }
    if (!valid) {
      return refuse(
        "The token's signature does not match this cluster's verify key",
      );
    }
    let claims: unknown;
    try {
      claims = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return refuse("The token's claims are not JSON");
    }
    const problem = checkClaims(claims);
    if (problem !== undefined) {
      return refuse(`The token's claims are invalid: ${problem}`);
    }
    const valid_ = claims as Claims;
    if (valid_.cluster !== this.#cluster) {
      return refuse(
        `The token of "${valid_.sub}" is for cluster "${valid_.cluster}", not "${this.#cluster}"`,
      );
    }
    return { kind: "ok", claims: valid_ };
  }
}

function refuse(message: string): Refusal {
  return { kind: "unauthenticated", message };
}

/**
 * Whether `claims` may do `what`, which the listed roles may: undefined when they may, else a
 * `permissionDenied` refusal naming the caller, its role and who may.
 */
export function authorize(
  claims: Claims,
  allowed: readonly Role[],
  what: string,
): Refusal | undefined {
  if (allowed.includes(claims.role)) return undefined;
  return {
    kind: "permissionDenied",
    message: `"${claims.sub}" (role ${claims.role}) may not ${what}: only ${allowed.join(", ")}`,
  };
}
