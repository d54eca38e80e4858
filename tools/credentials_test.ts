import assert from "node:assert/strict";
import { importVerifyKey, TokenVerifier } from "@tinykv/auth";
import { credentialFiles, initCredentials, main, makeToken } from "./credentials.ts";

Deno.test("credentials init makes what is missing, once; tokens verify with its key", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tinykv-credentials-" });
  try {
    const made = await initCredentials(dir, { hosts: ["10.0.0.5", "kv1.example"] });
    const files = credentialFiles(dir);
    assert.deepEqual(made, [files.ca, files.cert, files.signing, files.verify]);
    assert.deepEqual(await initCredentials(dir, { hosts: [] }), [], "a second run keeps all");
    assert.equal((await Deno.stat(files.signing)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(files.key)).mode! & 0o777, 0o600);
    const san = await new Deno.Command("openssl", {
      args: ["x509", "-in", files.cert, "-noout", "-ext", "subjectAltName"],
      stdout: "piped",
    }).output();
    assert.match(
      new TextDecoder().decode(san.stdout),
      /DNS:tinykv, IP Address:10.0.0.5, DNS:kv1.example/,
    );
    const token = await makeToken(dir, { cluster: "prod", role: "admin", sub: "ops", days: 2 });
    const verifier = new TokenVerifier(
      await importVerifyKey(await Deno.readTextFile(files.verify)),
      {
        cluster: "prod",
      },
    );
    const verified = await verifier.verify(token);
    assert.equal(verified.kind === "ok" && verified.claims.sub, "ops");
    assert.ok(
      verified.kind === "ok" && verified.claims.exp - verified.claims.iat === 2 * 86_400_000,
    );
    assert.equal(
      await main(["token", dir, "--cluster", "prod", "--role", "root", "--sub", "x"]),
      1,
    );
    assert.equal(await main(["token", dir, "--cluster", "prod", "--role", "kvnode"]), 1);
    assert.equal(
      await main(["token", dir, "--cluster", "p", "--role", "client", "--sub", "a", "--days", "0"]),
      1,
    );
    assert.equal(await main(["cert", dir, "--name", "placement2", "--hosts", "10.0.0.6"]), 0);
    assert.ok((await Deno.stat(`${dir}/placement2.crt`)).isFile);
    assert.equal(await main(["frobnicate", dir]), 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("credentials init works in a directory named relative to the current one", async () => {
  // As `deno task dev --secure` names its own: "./data/secure/pki" (openssl runs inside the
  // directory, so a relative CA path would be looked for below it).
  const parent = await Deno.makeTempDir({ prefix: "tinykv-credentials-" });
  const cwd = Deno.cwd();
  try {
    Deno.chdir(parent);
    const made = await initCredentials("./nested/pki", { hosts: ["127.0.0.1"] });
    assert.equal(made.length, 4);
    assert.ok((await Deno.stat(`${parent}/nested/pki/server.crt`)).isFile);
  } finally {
    Deno.chdir(cwd);
    await Deno.remove(parent, { recursive: true });
  }
});
