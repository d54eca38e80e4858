// A cluster with TLS and credentials on every gRPC port (3 kvnodes, placement, a gateway as real
// processes, certificates from a test CA, tokens of the cluster's key): an application with a
// client token writes and reads through the gateway, with the library and with the CLI (--ca,
// --token-file). Each refusal the issue names is made and checked to change nothing: a plaintext
// client; no token; a token of another cluster; an admin call with a client's token; a node call
// with a gateway's token; a Raft batch sent with one kvnode's token in another kvnode's name.
// A kvnode speaks only for its own replicas, even in its own name; a process without the
// cluster's ZooKeeper credential changes no znode. Last, a kvnode told to listen off loopback
// without TLS and credentials refuses to start.
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { type Claims, exportPem, generateKeyPair, mintToken } from "@tinykv/auth";
import { makeCertificate, makeCertificateAuthority } from "@tinykv/auth/pki";
import { TinyKvClient, TinyKvError } from "@tinykv/client";
import { KVService as EtcdKVService } from "@tinykv/proto/etcdserverpb";
import {
  NodeAdminService,
  PlacementService,
  type RaftBatch,
  RaftTransportService,
} from "@tinykv/proto/tinykv/v1";
import { type ClientSecurity, createGrpcClient, unaryCaller } from "@tinykv/rpc";
import { randomTestRoot, removeTestRoot, testZooKeeper, waitFor } from "@tinykv/zk/testing";
import { connectZooKeeper } from "@tinykv/zk";
import { peerId } from "@tinykv/raft";
import { shardId } from "@tinykv/shard";
import type { Envelope } from "../services/kvnode/driver.ts";
import { messageToProto } from "../services/kvnode/raft_codec.ts";
import { runCli } from "./_harness/cli.ts";
import { freePort, SERVICE_PERMISSIONS, ServiceProcess } from "./_harness/processes.ts";

const REPO_ROOT = new URL("..", import.meta.url).pathname;
const CLUSTER = "secure";
const HOUR = 3_600_000;

/** Credentials for one cluster, under the repository's data dir (the CLI may read it there). */
async function makeCredentials(dir: string) {
  const ca = await makeCertificateAuthority(`${dir}/ca`);
  const server = await makeCertificate(dir, ca, "server", ["tinykv", "127.0.0.1"]);
  const keys = await generateKeyPair();
  await Deno.writeTextFile(`${dir}/verify.pem`, await exportPem(keys.verify));
  const tokenFile = async (
    name: string,
    claims: Partial<Claims> & Pick<Claims, "role" | "sub">,
  ) => {
    const path = `${dir}/${name}.token`;
    const token = await mintToken(keys.signing, {
      cluster: CLUSTER,
      iat: Date.now(),
      exp: Date.now() + HOUR,
      ...claims,
    });
    await Deno.writeTextFile(path, token + "\n");
    return path;
  };
  return { ca, server, verify: `${dir}/verify.pem`, tokenFile };
}

function securityFlags(
  credentials: Awaited<ReturnType<typeof makeCredentials>>,
  tokenFile: string,
): string[] {
  return [
    `--security.ca_file=${credentials.ca.cert}`,
    `--security.cert_file=${credentials.server.cert}`,
    `--security.key_file=${credentials.server.key}`,
    `--security.verify_key_file=${credentials.verify}`,
    `--security.token_file=${tokenFile}`,
  ];
}

Deno.test("security: TLS and tokens end to end, and every refusal changes nothing", async () => {
  const zk = await testZooKeeper();
  const root = randomTestRoot();
  const dir = `${REPO_ROOT}data/security-test-${crypto.randomUUID().slice(0, 8)}`;
  const processes: ServiceProcess[] = [];
  const closers: Array<() => void> = [];
  try {
    const credentials = await makeCredentials(`${dir}/pki`);
    await Deno.writeTextFile(`${dir}/pki/zookeeper.digest`, "tinykv:zk-secret\n");
    const [zkHost, zkPort] = zk.connectString.split(":");
    const common = (name: string) => [
      `--zookeeper.host=${zkHost}`,
      `--zookeeper.port=${zkPort}`,
      `--zookeeper.root=${root}`,
      `--zookeeper.cluster=${CLUSTER}`,
      "--zookeeper.session_timeout_ms=4000",
      `--storage.data_dir=${dir}/data`,
      `--log.dir=${dir}/logs/${name}`,
      "--log.stderr=false",
      "--sharding.num_shards=2",
      "--raft.tick_ms=50",
      "--placement.status_interval_ms=300",
      `--zookeeper.digest_file=${dir}/pki/zookeeper.digest`,
    ];
    const kvnodePorts = [freePort(), freePort(), freePort()];
    for (const [i, port] of kvnodePorts.entries()) {
      const token = await credentials.tokenFile(`n${i + 1}`, { role: "kvnode", sub: `n${i + 1}` });
      processes.push(
        new ServiceProcess(`kvnode n${i + 1}`, "services/kvnode/main.ts", [
          ...common(`n${i + 1}`),
          `--kvnode.port=${port}`,
          `--kvnode.http_port=${freePort()}`,
          ...securityFlags(credentials, token),
        ]),
      );
    }
    const adminPort = freePort();
    const placementToken = await credentials.tokenFile("placement", {
      role: "placement",
      sub: "placement-1",
    });
    processes.push(
      new ServiceProcess("placement", "services/placement/main.ts", [
        ...common("placement"),
        `--placement.admin_port=${adminPort}`,
        `--placement.http_port=${freePort()}`,
        ...securityFlags(credentials, placementToken),
      ]),
    );
    const gatewayPort = freePort();
    const gatewayToken = await credentials.tokenFile("gateway", {
      role: "gateway",
      sub: "gateway-1",
    });
    processes.push(
      new ServiceProcess("gateway", "services/gateway/main.ts", [
        ...common("gateway"),
        `--rpc_server.port=${gatewayPort}`,
        `--gateway.http_port=${freePort()}`,
        ...securityFlags(credentials, gatewayToken),
      ]),
    );
    await Promise.all(processes.map((p) => p.start(/serving on/)));

    const caPem = await Deno.readTextFile(credentials.ca.cert);
    const tls = { ca: caPem, serverName: "tinykv" };
    const read = (path: string) => Deno.readTextFile(path).then((t) => t.trim());
    const clientTokenFile = await credentials.tokenFile("app", { role: "client", sub: "app" });
    const adminTokenFile = await credentials.tokenFile("ops", { role: "admin", sub: "ops" });
    const clientToken = await read(clientTokenFile);
    const adminToken = await read(adminTokenFile);
    const gateway = `127.0.0.1:${gatewayPort}`;
    const client = (security: ClientSecurity, deadlineMs = 20_000) => {
      const c = TinyKvClient.connect({ endpoints: [gateway], deadlineMs, security });
      closers.push(() => c.close());
      return c;
    };

    // An application with a client token: the whole path works with TLS and tokens everywhere
    // (gateway → kvnode streams, kvnode ↔ kvnode Raft, placement → kvnode admin).
    const app = client({ tls, token: clientToken });
    await app.put("hello", "world");
    assert.equal(new TextDecoder().decode((await app.get("hello")).value), "world");

    // etcd's API on the same port takes the same credentials: a client token reads and writes,
    // no token is UNAUTHENTICATED, a token of another role PERMISSION_DENIED.
    const etcdRange = async (security: ClientSecurity) => {
      const etcd = createGrpcClient(EtcdKVService, gateway, {
        maxMessageBytes: 8 << 20,
        ...security,
      });
      try {
        const key = new TextEncoder().encode("hello");
        return await unaryCaller(etcd, "Range")({
          key,
          rangeEnd: new Uint8Array(),
          limit: 0,
          revision: 0,
          sortOrder: 0,
          sortTarget: 0,
          serializable: false,
          keysOnly: false,
          countOnly: false,
          minModRevision: 0,
          maxModRevision: 0,
          minCreateRevision: 0,
          maxCreateRevision: 0,
        }, { deadlineMs: 10_000 });
      } finally {
        etcd.close();
      }
    };
    const etcdOk = await etcdRange({ tls, token: clientToken });
    assert.equal(etcdOk.kind, "ok", JSON.stringify(etcdOk));
    assert.equal(
      new TextDecoder().decode(etcdOk.kind === "ok" ? etcdOk.response.kvs[0].value : undefined),
      "world",
    );
    assert.equal((await etcdRange({ tls })).kind, "unauthenticated");
    assert.equal(
      (await etcdRange({ tls, token: await read(gatewayToken) })).kind,
      "permissionDenied",
    );

    const codeOf = async (call: () => Promise<unknown>) => {
      try {
        await call();
        return "ok";
      } catch (error) {
        if (!(error instanceof TinyKvError)) throw error;
        return error.code;
      }
    };
    // A plaintext client cannot reach a TLS port: it retries until its deadline.
    const plaintext = await codeOf(() => client({}, 3000).put("hello", "plaintext"));
    assert.ok(
      plaintext === "unavailable" || plaintext === "deadlineExceeded",
      `a plaintext client: ${plaintext}`,
    );
    assert.equal(await codeOf(() => client({ tls }, 3000).put("hello", "anon")), "unauthenticated");
    const foreign = await read(
      await credentials.tokenFile("foreign", { role: "client", sub: "app", cluster: "other" }),
    );
    assert.equal(
      await codeOf(() => client({ tls, token: foreign }, 3000).put("hello", "foreign")),
      "unauthenticated",
    );
    assert.equal(new TextDecoder().decode((await app.get("hello")).value), "world", "unchanged");

    // The CLI, with the flags, and without a token.
    const cli = (args: string[]) =>
      runCli(["--endpoint", gateway, "--ca", credentials.ca.cert, ...args]);
    const put = await cli(["--token-file", clientTokenFile, "put", "cli", "yes"]);
    assert.equal(put.code, 0, put.stderr);
    const got = await cli(["--token-file", clientTokenFile, "get", "cli"]);
    assert.equal(got.stdout.trim(), "yes");
    const anonymous = await cli(["--timeout", "3000", "put", "cli", "no"]);
    assert.equal(anonymous.code, 6, anonymous.stderr);
    assert.match(anonymous.stderr, /unauthenticated: .*needs a credential/);
    // A certificate for another name is refused by the CLI's TLS at once, not retried.
    const wrongName = await cli([
      "--server-name",
      "elsewhere",
      "--token-file",
      clientTokenFile,
      "get",
      "cli",
    ]);
    assert.equal(wrongName.code, 6, wrongName.stderr);
    assert.match(
      wrongName.stderr,
      /unauthenticated: TLS did not accept the server's certificate \(check the CA and the server name\)/,
    );

    // Placement's admin API needs an admin: a client's token is refused and nothing drains.
    const placementAs = (token: string) => {
      const c = createGrpcClient(PlacementService, `127.0.0.1:${adminPort}`, {
        maxMessageBytes: 4 << 20,
        tls,
        token,
      });
      closers.push(() => c.close());
      return c;
    };
    const state = await unaryCaller(placementAs(adminToken), "ClusterState")({}, {
      deadlineMs: 5000,
    });
    assert.equal(state.kind, "ok");
    const nodeIds = state.kind === "ok" ? state.response.nodes.map((n) => n.nodeId) : [];
    assert.deepEqual(nodeIds, ["n1", "n2", "n3"], "each kvnode is who its token says");
    const drained = await unaryCaller(placementAs(clientToken), "DrainNode")({ nodeId: "n1" }, {
      deadlineMs: 5000,
    });
    if (drained.kind === "ok") assert.fail("a client drained a node");
    assert.equal(drained.kind, "permissionDenied");
    assert.match(
      drained.message,
      /"app" \(role client\) may not call "\/tinykv.v1.Placement\/DrainNode": only admin/,
    );
    const after = await unaryCaller(placementAs(adminToken), "ClusterState")({}, {
      deadlineMs: 5000,
    });
    assert.ok(after.kind === "ok" && after.response.nodes.every((n) => !n.draining));

    // A kvnode's admin service is for placement and operators, not gateways.
    const nodeAdmin = createGrpcClient(NodeAdminService, `127.0.0.1:${kvnodePorts[0]}`, {
      maxMessageBytes: 4 << 20,
      tls,
      token: await read(gatewayToken),
    });
    closers.push(() => nodeAdmin.close());
    const status = await unaryCaller(nodeAdmin, "Status")({
      withDataHash: false,
      resetTurnStats: false,
      sinceVersion: 0,
      sinceStartedAtMs: 0,
    }, { deadlineMs: 5000 });
    assert.equal(status.kind, "permissionDenied");

    // A backup needs the admin role (placement's shard map, then each leader's ExportShard, over
    // TLS): a client's token is refused and writes nothing; an operator's copies every shard.
    const backup = (tokenFile: string, into: string) =>
      runCli([
        "--placement",
        `127.0.0.1:${adminPort}`,
        "--ca",
        credentials.ca.cert,
        "--token-file",
        tokenFile,
        "--json",
        "backup",
        into,
      ]);
    const refusedBackup = await backup(clientTokenFile, `${dir}/backup-client`);
    assert.equal(refusedBackup.code, 6, JSON.stringify(refusedBackup));
    assert.equal(JSON.parse(refusedBackup.stdout).error.code, "permissionDenied");
    assert.throws(
      () => Deno.statSync(`${dir}/backup-client`),
      Deno.errors.NotFound,
      "a failed backup leaves nothing behind, not even the directory it made",
    );
    const adminBackup = await backup(adminTokenFile, `${dir}/backup-admin`);
    assert.equal(adminBackup.code, 0, JSON.stringify(adminBackup));
    const manifest = JSON.parse(adminBackup.stdout).manifest;
    assert.equal(manifest.shards.length, 2);
    assert.ok(manifest.keys >= 2, `the backup holds "hello" and "cli": ${manifest.keys} keys`);

    // A Raft batch sent with n1's token in n3's name is refused before any message is read.
    const transport = createGrpcClient(RaftTransportService, `127.0.0.1:${kvnodePorts[1]}`, {
      maxMessageBytes: 4 << 20,
      tls,
      token: await read(`${dir}/pki/n1.token`),
    }) as unknown as grpc.Client & {
      Send(
        callback: (error: grpc.ServiceError | null) => void,
      ): grpc.ClientWritableStream<RaftBatch>;
    };
    closers.push(() => transport.close());
    const clusterId = new TextDecoder().decode(
      (await waitForClusterId(zk.connectString, root)).data,
    ).trim();
    const forged = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = transport.Send(resolve);
      call.write({ fromNode: "n3", clusterId, messages: [], fromAddress: "127.0.0.1:1" });
      call.end();
    });
    assert.equal(forged?.code, grpc.status.PERMISSION_DENIED);
    assert.match(forged?.details ?? "", /Node "n1" may not send Raft messages as node "n3"/);

    // In its own name, n1 speaks only for its own replicas: a notice "you are no longer a member"
    // for n2's replica, from a peer id nobody has or from n3's replica, changes nothing.
    const n2Admin = createGrpcClient(NodeAdminService, `127.0.0.1:${kvnodePorts[1]}`, {
      maxMessageBytes: 4 << 20,
      tls,
      token: adminToken,
    });
    closers.push(() => n2Admin.close());
    const n2Replicas = async () => {
      const answer = await unaryCaller(n2Admin, "Status")({
        withDataHash: false,
        resetTurnStats: false,
        sinceVersion: 0,
        sinceStartedAtMs: 0,
      }, { deadlineMs: 5000 });
      if (answer.kind !== "ok") assert.fail(`n2's status: ${answer.message}`);
      return answer.response.replicas;
    };
    const [victim] = await n2Replicas();
    const n3Peer = victim.voters.find((v) => v.nodeId === "n3")!.peerId;
    const notices = [victim.peerId + 777, n3Peer].map((from) =>
      messageToProto({
        shardId: shardId(victim.shardId),
        confEpoch: 1_000_000_000,
        notMember: true,
        message: {
          type: "heartbeatResponse",
          from: peerId(from),
          to: peerId(victim.peerId),
          term: 0,
          round: 0,
        },
      } as Envelope)
    );
    // With an address, and without one (nothing to learn: still checked).
    const sent = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = transport.Send(resolve);
      call.write({ fromNode: "n1", clusterId, messages: notices, fromAddress: "127.0.0.1:1" });
      call.write({ fromNode: "n1", clusterId, messages: notices, fromAddress: "" });
      call.end();
    });
    assert.equal(sent, null, "n1 may send in its own name");
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.ok(
      (await n2Replicas()).some((r) => r.shardId === victim.shardId),
      "n2 kept its replica",
    );
    assert.equal(new TextDecoder().decode((await app.get("hello")).value), "world");

    // ZooKeeper: a process without the cluster's credential reads the znodes but changes none.
    const stranger = await connectZooKeeper({
      connectString: zk.connectString,
      root: `${root}/${CLUSTER}`,
    });
    try {
      assert.ok((await stranger.get("/shardmap")) !== undefined, "readable");
      await assert.rejects(stranger.setData("/shardmap", "forged", -1), /NO_AUTH|auth/i);
      await assert.rejects(
        stranger.createEphemeral("/nodes/fake", '{"address":"127.0.0.1:1"}'),
        /NO_AUTH|auth/i,
      );
    } finally {
      await stranger.close();
    }
    assert.equal(new TextDecoder().decode((await app.get("hello")).value), "world");
  } catch (error) {
    const outputs = processes.map((p) => `--- ${p.name}:\n${p.output.slice(-1500)}`).join("\n");
    throw new Error(`${error instanceof Error ? error.stack : error}\n${outputs}`);
  } finally {
    for (const close of closers) close();
    await Promise.all(processes.map((p) => p.stop()));
    // The cluster's znodes may be deleted only with its credential.
    const owner = await connectZooKeeper({
      connectString: zk.connectString,
      root: `${root}/${CLUSTER}`,
      digest: { user: "tinykv", password: "zk-secret" },
    }).catch(() => undefined);
    await owner?.deleteRecursive("/").catch(() => {});
    await owner?.close();
    await removeTestRoot(zk.connectString, root);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

async function waitForClusterId(connectString: string, root: string) {
  const zk = await connectZooKeeper({ connectString, root: `${root}/${CLUSTER}` });
  try {
    let node: Awaited<ReturnType<typeof zk.get>>;
    await waitFor(async () => (node = await zk.get("/cluster_id")) !== undefined, {
      what: "the cluster id",
    });
    return node!;
  } finally {
    await zk.close();
  }
}

Deno.test("security: a service refuses to listen off loopback without TLS and credentials", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...SERVICE_PERMISSIONS,
      `${REPO_ROOT}services/kvnode/main.ts`,
      "--kvnode.host=0.0.0.0",
      `--kvnode.port=${freePort()}`,
      "--storage.data_dir=/nonexistent/never-created",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 2);
  assert.match(
    new TextDecoder().decode(output.stderr),
    /Refusing to listen on "0.0.0.0" without TLS and credentials: set \[security\]/,
  );
});
