import assert from "node:assert/strict";
import { exportPem, generateKeyPair, mintToken } from "@tinykv/auth";
import { makeCertificate, makeCertificateAuthority } from "@tinykv/auth/pki";
import {
  exposureRefusal,
  isLoopback,
  loadServiceSecurity,
  type SecuritySection,
  servicePolicy,
} from "./service_security.ts";

const OFF: SecuritySection = {
  ca_file: "",
  cert_file: "",
  key_file: "",
  verify_key_file: "",
  token_file: "",
  server_name: "tinykv",
  insecure: false,
};

const dir = await Deno.makeTempDir({ prefix: "tinykv-security-" });
const ca = await makeCertificateAuthority(`${dir}/ca`);
const server = await makeCertificate(dir, ca, "server", ["tinykv", "127.0.0.1"]);
const keys = await generateKeyPair();
await Deno.writeTextFile(`${dir}/verify.pem`, await exportPem(keys.verify));
async function tokenFile(name: string, role: "kvnode" | "gateway", cluster = "dev") {
  const token = await mintToken(keys.signing, {
    sub: name,
    role,
    cluster,
    iat: 0,
    exp: Date.now() + 3_600_000,
  });
  await Deno.writeTextFile(`${dir}/${name}.token`, `${token}\n`);
  return `${dir}/${name}.token`;
}
const ON: SecuritySection = {
  ...OFF,
  ca_file: ca.cert,
  cert_file: server.cert,
  key_file: server.key,
  verify_key_file: `${dir}/verify.pem`,
  token_file: await tokenFile("n-1", "kvnode"),
};

Deno.test("security off: plaintext, no check, no token", async () => {
  const security = await loadServiceSecurity(OFF, { cluster: "dev", role: "kvnode" });
  assert.equal(security.serverTls, undefined);
  assert.deepEqual(security.client, { tls: undefined, token: undefined });
  assert.equal(security.auth(servicePolicy([])), undefined);
  assert.equal(security.secure, false);
});

Deno.test("security on: TLS both ways, a check by policy, the process's own identity", async () => {
  const security = await loadServiceSecurity(ON, { cluster: "dev", role: "kvnode" });
  assert.ok(security.serverTls?.cert.includes("BEGIN CERTIFICATE"));
  assert.equal(security.client.tls?.serverName, "tinykv");
  assert.equal(security.identity?.sub, "n-1");
  assert.equal(security.secure, true);
  const auth = security.auth(servicePolicy([["/tinykv.v1.KV/", ["client"]]]))!;
  assert.deepEqual(auth.roles("/tinykv.v1.KV/Get"), ["client"]);
  assert.equal(auth.roles("/tinykv.v1.NodeAdmin/Status"), undefined);
  assert.equal((await auth.verify(security.client.token!)).kind, "ok");
});

Deno.test("security settings that do not fit stop the service, naming the key or file", async () => {
  const refused = (section: Partial<SecuritySection>, role: "kvnode" | "gateway" = "kvnode") =>
    loadServiceSecurity({ ...ON, ...section }, { cluster: "dev", role });
  await assert.rejects(refused({ key_file: "" }), /cert_file and key_file go together/);
  await assert.rejects(refused({ ca_file: "" }), /cert_file needs ca_file/);
  await assert.rejects(
    refused({ ca_file: "", cert_file: "", key_file: "" }),
    /token_file needs ca_file: a token is sent only over TLS/,
  );
  await assert.rejects(refused({ token_file: "" }), /verify_key_file needs token_file/);
  await assert.rejects(
    refused({ cert_file: `${dir}/missing.crt` }),
    /Cannot read cert_file ".*missing.crt"/,
  );
  await assert.rejects(
    refused({ verify_key_file: server.cert }),
    /verify_key_file .*Not an Ed25519 public key/,
  );
  await assert.rejects(refused({ token_file: server.key }), /holds no TinyKV token/);
  await assert.rejects(
    refused({ token_file: await tokenFile("g-1", "gateway", "other") }, "gateway"),
    /is refused: .*cluster "other", not "dev"/,
  );
  await assert.rejects(
    refused({ token_file: await tokenFile("g-2", "gateway") }, "kvnode"),
    /is a gateway's token: this process is a kvnode/,
  );
});

Deno.test("off loopback, a service needs TLS and credentials, or insecure = true", async () => {
  assert.ok(isLoopback("127.0.0.1") && isLoopback("127.1.2.3") && isLoopback("::1"));
  assert.ok(isLoopback("localhost") && !isLoopback("10.0.0.5") && !isLoopback("0.0.0.0"));
  const off = { secure: false };
  assert.equal(exposureRefusal("127.0.0.1", off, OFF), undefined);
  assert.match(exposureRefusal("0.0.0.0", off, OFF)!, /Refusing to listen on "0.0.0.0"/);
  assert.equal(exposureRefusal("0.0.0.0", off, { ...OFF, insecure: true }), undefined);
  const on = await loadServiceSecurity(ON, { cluster: "dev" });
  assert.equal(exposureRefusal("10.0.0.5", on, ON), undefined);
  const tlsOnly = await loadServiceSecurity({ ...ON, verify_key_file: "", token_file: "" }, {
    cluster: "dev",
  });
  assert.match(exposureRefusal("10.0.0.5", tlsOnly, ON)!, /without TLS and credentials/);
});

addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
