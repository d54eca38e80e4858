// Checks what a CA rotation (docs/deploy.md "Certificate rotation") relies on, on real grpc-js
// servers and clients in this process: a CA file holding two certificates (the old CA and the new
// one, concatenated PEM) is accepted as `ca` by a TLS server and by its clients, and a client that
// trusts the pair talks to a server whose certificate either CA signed; a client that trusts only
// one CA refuses a server certificate of the other (so the test would see a bundle ignored).
import assert from "node:assert/strict";
import { makeCertificate, makeCertificateAuthority } from "@tinykv/auth/pki";
import { KVService } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, unaryCaller } from "./client.ts";
import { bindService, MESSAGE_BYTES_MAX_DEFAULT, startGrpcServer } from "./server.ts";
import { rpcOk } from "./status.ts";

const dir = await Deno.makeTempDir({ prefix: "tinykv-ca-bundle-test-" });
const oldCa = await makeCertificateAuthority(`${dir}/old`, "TinyKV old CA");
const newCa = await makeCertificateAuthority(`${dir}/new`, "TinyKV new CA");
const oldCert = await makeCertificate(`${dir}/old`, oldCa, "server", ["tinykv", "127.0.0.1"]);
const newCert = await makeCertificate(`${dir}/new`, newCa, "server", ["tinykv", "127.0.0.1"]);
const pem = (path: string) => Deno.readTextFileSync(path);
const OLD = pem(oldCa.cert);
const NEW = pem(newCa.cert);
const BUNDLE = OLD + NEW;

/** A KV server whose certificate is `cert`, trusting `ca`; runs `test` with its port. */
async function withServer(
  cert: { cert: string; key: string },
  ca: string,
  test: (port: number) => Promise<void>,
): Promise<void> {
  const refuse = () => {
    throw new Error("not in this test");
  };
  const running = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: MESSAGE_BYTES_MAX_DEFAULT,
    services: [
      bindService(KVService, {
        Get: () => rpcOk({ found: true, value: new Uint8Array([7]) }),
        Put: refuse,
        Delete: refuse,
        Append: refuse,
        CompareAndSwap: refuse,
        Scan: refuse,
        Txn: refuse,
        Watch: (call) => call.end(),
      }),
    ],
    tls: { cert: pem(cert.cert), key: pem(cert.key), ca },
  });
  try {
    await test(running.port);
  } finally {
    await running.shutdown(1000);
  }
}

/** One Get over TLS trusting `ca`: "ok", or the failure's kind. */
async function get(port: number, ca: string): Promise<string> {
  const client = createGrpcClient(KVService, `127.0.0.1:${port}`, {
    maxMessageBytes: MESSAGE_BYTES_MAX_DEFAULT,
    tls: { ca, serverName: "tinykv" },
  });
  try {
    const result = await unaryCaller(client, "Get")({
      key: new Uint8Array([1]),
      serializable: false,
    }, { deadlineMs: 3000 });
    return result.kind;
  } finally {
    client.close();
  }
}

Deno.test("a CA file of two certificates serves and trusts certificates of either CA", async () => {
  try {
    for (const [name, cert] of [["old", oldCert], ["new", newCert]] as const) {
      await withServer(cert, BUNDLE, async (port) => {
        assert.equal(await get(port, BUNDLE), "ok", `${name} certificate, client trusts both`);
        const own = name === "old" ? OLD : NEW;
        const other = name === "old" ? NEW : OLD;
        assert.equal(await get(port, own), "ok", `${name} certificate, client trusts its CA`);
        assert.notEqual(await get(port, other), "ok", `${name} certificate, other CA refused`);
      });
    }
    // A server that trusts only its own CA still serves a client trusting the pair.
    await withServer(newCert, NEW, async (port) => {
      assert.equal(await get(port, BUNDLE), "ok");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
