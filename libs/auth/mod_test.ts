import assert from "node:assert/strict";
import {
  authorize,
  type Claims,
  exportPem,
  generateKeyPair,
  importSigningKey,
  importVerifyKey,
  mintToken,
  SUBJECT_CHARS_MAX,
  TOKEN_BYTES_MAX,
  TokenVerifier,
  VERIFIED_CACHE_MAX,
} from "./mod.ts";

const keys = await generateKeyPair();
const HOUR = 3_600_000;

function claims(fields: Partial<Claims> = {}): Claims {
  return { sub: "n-1", role: "kvnode", cluster: "c-1", iat: 0, exp: Date.now() + HOUR, ...fields };
}

async function refusal(verifier: TokenVerifier, token: string): Promise<string> {
  const verified = await verifier.verify(token);
  if (verified.kind === "ok") assert.fail(`accepted: ${token.slice(0, 40)}`);
  assert.equal(verified.kind, "unauthenticated");
  return verified.message;
}

Deno.test("a minted token verifies with the cluster's verify key and gives back its claims", async () => {
  const verifier = new TokenVerifier(keys.verify, { cluster: "c-1" });
  const token = await mintToken(keys.signing, claims());
  assert.match(token, /^tkv1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  const verified = await verifier.verify(token);
  assert.equal(verified.kind === "ok" && verified.claims.sub, "n-1");
  assert.equal(verified.kind === "ok" && verified.claims.role, "kvnode");
});

Deno.test("tokens are refused when forged, altered, of another cluster, expired or malformed", async () => {
  const verifier = new TokenVerifier(keys.verify, { cluster: "c-1" });
  const token = await mintToken(keys.signing, claims());
  const [prefix, payload, signature] = token.split(".");
  // Claims changed after signing (a kvnode token turned into an admin one).
  const admin = btoa(JSON.stringify({ ...claims(), role: "admin" })).replace(/=+$/, "")
    .replace(/\+/g, "-").replace(/\//g, "_");
  assert.match(await refusal(verifier, `${prefix}.${admin}.${signature}`), /signature/);
  // Signed by another cluster's key.
  const other = await generateKeyPair();
  assert.match(await refusal(verifier, await mintToken(other.signing, claims())), /signature/);
  // Good signature, wrong cluster.
  assert.match(
    await refusal(verifier, await mintToken(keys.signing, claims({ cluster: "c-2" }))),
    /for cluster "c-2", not "c-1"/,
  );
  // Expired.
  assert.match(
    await refusal(verifier, await mintToken(keys.signing, claims({ exp: Date.now() - 1 }))),
    /expired at/,
  );
  // Malformed.
  assert.match(await refusal(verifier, ""), /Not a TinyKV token/);
  assert.match(await refusal(verifier, "Bearer xyz"), /Not a TinyKV token/);
  assert.match(await refusal(verifier, `${prefix}.${payload}`), /Not a TinyKV token/);
  assert.match(
    await refusal(verifier, `${prefix}.${payload}.${signature}.x`),
    /Not a TinyKV token/,
  );
  assert.match(await refusal(verifier, `tkv2.${payload}.${signature}`), /Not a TinyKV token/);
  assert.match(await refusal(verifier, `${prefix}.${payload}.!!`), /not base64url/);
  const flipped = (signature[0] === "A" ? "B" : "A") + signature.slice(1);
  assert.match(await refusal(verifier, `${prefix}.${payload}.${flipped}`), /signature/);
  assert.match(await refusal(verifier, `${prefix}.${payload}.${signature.slice(2)}`), /signature/);
});

Deno.test("a token at TOKEN_BYTES_MAX is read, one byte more is refused unread", async () => {
  const verifier = new TokenVerifier(keys.verify, { cluster: "c-1" });
  const atMax = "tkv1." + "a".repeat(TOKEN_BYTES_MAX - 5 - 3) + ".aa";
  assert.equal(atMax.length, TOKEN_BYTES_MAX);
  assert.match(await refusal(verifier, atMax), /signature/, "read, then refused on its signature");
  assert.match(
    await refusal(verifier, atMax + "a"),
    new RegExp(`${TOKEN_BYTES_MAX + 1} bytes: the most is ${TOKEN_BYTES_MAX}`),
  );
});

Deno.test("mintToken refuses claims a verifier would refuse", async () => {
  await assert.rejects(mintToken(keys.signing, claims({ sub: "" })), /"sub" must be/);
  await assert.rejects(
    mintToken(keys.signing, claims({ sub: "x".repeat(SUBJECT_CHARS_MAX + 1) })),
    /"sub" must be 1 to 128/,
  );
  await mintToken(keys.signing, claims({ sub: "x".repeat(SUBJECT_CHARS_MAX) }));
  await assert.rejects(
    mintToken(keys.signing, claims({ role: "root" as Claims["role"] })),
    /"role" must be one of client, admin, gateway, kvnode, placement: got "root"/,
  );
  await assert.rejects(mintToken(keys.signing, claims({ exp: 1.5 })), /integers/);
});

Deno.test("a verified token is remembered, but its expiry is checked at every use", async () => {
  let now = 1000;
  const verifier = new TokenVerifier(keys.verify, { cluster: "c-1", now: () => now });
  const token = await mintToken(keys.signing, claims({ exp: 2000 }));
  assert.equal((await verifier.verify(token)).kind, "ok");
  now = 2000;
  assert.match(await refusal(verifier, token), /expired/);
  // The cache stays bounded.
  now = 0;
  for (let i = 0; i < VERIFIED_CACHE_MAX + 5; i++) {
    const each = await mintToken(keys.signing, claims({ sub: `s${i}`, exp: 10 }));
    assert.equal((await verifier.verify(each)).kind, "ok");
  }
});

Deno.test("keys round-trip through PEM, as openssl writes them", async () => {
  const signing = await importSigningKey(await exportPem(keys.signing));
  const verify = await importVerifyKey(await exportPem(keys.verify));
  const token = await mintToken(signing, claims());
  assert.equal((await new TokenVerifier(verify, { cluster: "c-1" }).verify(token)).kind, "ok");
  await assert.rejects(importSigningKey("not a key"), /Not an Ed25519 private key/);
  await assert.rejects(importVerifyKey(await exportPem(keys.signing)), /Not an Ed25519 public key/);
  // A key openssl made.
  const dir = await Deno.makeTempDir();
  try {
    const made = await new Deno.Command("openssl", {
      args: ["genpkey", "-algorithm", "ed25519", "-out", `${dir}/k.pem`],
      stderr: "null",
    }).output();
    assert.ok(made.success);
    await new Deno.Command("openssl", {
      args: ["pkey", "-in", `${dir}/k.pem`, "-pubout", "-out", `${dir}/k.pub`],
      stderr: "null",
    }).output();
    const fromOpenssl = await importSigningKey(await Deno.readTextFile(`${dir}/k.pem`));
    const publicFromOpenssl = await importVerifyKey(await Deno.readTextFile(`${dir}/k.pub`));
    const minted = await mintToken(fromOpenssl, claims());
    const verifier = new TokenVerifier(publicFromOpenssl, { cluster: "c-1" });
    assert.equal((await verifier.verify(minted)).kind, "ok");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("authorize() lets the listed roles through and names who may otherwise", () => {
  assert.equal(authorize(claims({ role: "admin" }), ["admin"], "drain a node"), undefined);
  assert.deepEqual(authorize(claims({ role: "client", sub: "app" }), ["admin"], "drain a node"), {
    kind: "permissionDenied",
    message: '"app" (role client) may not drain a node: only admin',
  });
});
