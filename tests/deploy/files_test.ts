// Checks that the files the deployment guide ships (deploy/) agree with each other and with the
// code: every config loads; every unit's deno run flags are exactly those
// tools/service_permissions.ts names for its config on each of its hosts; the ZooKeeper unit runs
// the jars libs/zk/server.ts runs; zoo.cfg, the configs' `servers` and haproxy.cfg name the
// guide's hosts and ports. The deploy test (main.ts) then runs these files.
import assert from "node:assert/strict";
import { type Config, loadConfig, zooKeeperServers } from "@tinykv/config";
import { ZOOKEEPER_JAR_DIR, ZOOKEEPER_JARS } from "@tinykv/zk/server";
import { servicePermissions } from "../../tools/service_permissions.ts";
import {
  GUIDE_CLUSTER,
  GUIDE_CODE,
  hostsWith,
  OWN_ADDRESS_KEY,
  peersOf,
  type Service,
  setTomlKey,
} from "./layout.ts";
import { parseUnitFile, unitCommand } from "./systemd.ts";

const DEPLOY = new URL("../../deploy/", import.meta.url).pathname;
const SERVICES: readonly Service[] = ["kvnode", "placement", "gateway"];
const ROLE_OF = { kvnode: "kvnode", placement: "placement", gateway: "gateway" } as const;

function configOf(service: Service, address: string): Config {
  const [section, key] = OWN_ADDRESS_KEY[service];
  const text = setTomlKey(
    Deno.readTextFileSync(`${DEPLOY}config/${service}.toml`),
    section,
    key,
    `"${address}"`,
  );
  const loaded = loadConfig({ path: `${service}.toml`, readTextFile: () => text });
  assert.equal(loaded.kind, "ok", JSON.stringify(loaded));
  return (loaded as { config: Config }).config;
}

/** A flag's name and the set of its comma-separated values. */
function flagSets(flags: readonly string[]): Map<string, Set<string>> {
  return new Map(flags.map((flag) => {
    const eq = flag.indexOf("=");
    return [flag.slice(0, eq), new Set(flag.slice(eq + 1).split(","))];
  }));
}

Deno.test("each unit runs its service with exactly the permissions its config needs", () => {
  for (const service of SERVICES) {
    const unit = parseUnitFile(Deno.readTextFileSync(`${DEPLOY}systemd/tinykv-${service}.service`));
    const command = unitCommand(unit);
    const script = `${GUIDE_CODE}/services/${service}/main.ts`;
    const at = command.argv.indexOf(script);
    assert.deepEqual(command.argv.slice(0, 3), ["/usr/local/bin/deno", "run", "--cached-only"]);
    assert.deepEqual(command.argv.slice(at), [script, `--config=/etc/tinykv/${service}.toml`]);
    assert.equal(command.workingDirectory, GUIDE_CODE, "deno finds deno.json from there");
    assert.equal(command.user, "tinykv");
    assert.equal(command.environment.DENO_DIR, "/var/cache/tinykv/deno");
    const shipped = flagSets(command.argv.slice(3, at));
    for (const host of hostsWith(ROLE_OF[service])) {
      const needed = flagSets(
        servicePermissions(service, configOf(service, host.address), {
          code: GUIDE_CODE,
          configFile: `/etc/tinykv/${service}.toml`,
          peers: peersOf(service),
        }),
      );
      assert.deepEqual(shipped, needed, `tinykv-${service}.service on ${host.name}`);
    }
  }
});

Deno.test("every service's config names the guide's ZooKeeper ensemble, cluster and credentials", () => {
  const ensemble = hostsWith("zookeeper").map((h) => ({ host: h.address, port: 2181 }));
  for (const service of SERVICES) {
    const config = configOf(service, "10.0.0.99");
    assert.deepEqual(zooKeeperServers(config.zookeeper), ensemble, service);
    assert.equal(config.zookeeper.cluster, GUIDE_CLUSTER);
    assert.equal(config.zookeeper.digest_file, "/etc/tinykv/zookeeper.digest");
    assert.equal(config.security.token_file, `/etc/tinykv/${service}.token`);
    for (const key of ["ca_file", "cert_file", "key_file", "verify_key_file"] as const) {
      assert.match(config.security[key], /^\/etc\/tinykv\//, `${service} ${key}`);
    }
    assert.equal(config.log.dir, "/var/log/tinykv");
  }
  const zooCfg = Deno.readTextFileSync(`${DEPLOY}zookeeper/zoo.cfg`);
  const servers = [...zooCfg.matchAll(/^server\.(\d+)=([\d.]+):2888:3888$/gm)]
    .map((m) => [Number(m[1]), m[2]]);
  assert.deepEqual(
    servers,
    hostsWith("zookeeper").map((h) => [h.zookeeperId, h.address]),
  );
  assert.match(zooCfg, /^clientPort=2181$/m);
});

Deno.test("the ZooKeeper unit runs the jars the repository runs ZooKeeper with", () => {
  const unit = parseUnitFile(
    Deno.readTextFileSync(`${DEPLOY}systemd/tinykv-zookeeper.service`),
  );
  const { argv, user } = unitCommand(unit);
  assert.equal(user, "zookeeper");
  const classPath = argv[argv.indexOf("-cp") + 1];
  assert.equal(classPath, ZOOKEEPER_JARS.map((jar) => `${ZOOKEEPER_JAR_DIR}/${jar}`).join(":"));
  assert.deepEqual(argv.slice(-2), [
    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
    "/etc/zookeeper/tinykv/zoo.cfg",
  ]);
});

Deno.test("haproxy.cfg balances the guide's gateways on their client port", () => {
  const text = Deno.readTextFileSync(`${DEPLOY}haproxy.cfg`);
  const [balancer] = hostsWith("balancer");
  assert.match(text, new RegExp(`^\\s*bind ${balancer.address}:7700$`, "m"));
  const servers = [...text.matchAll(/^\s*server (\S+) ([\d.]+):(\d+)$/gm)].map((m) => m.slice(1));
  const gateways = hostsWith("gateway");
  assert.deepEqual(
    servers,
    gateways.map((
      h,
    ) => [h.name, h.address, String(configOf("gateway", h.address).rpc_server.port)]),
  );
  assert.match(text, /^\s*mode tcp$/m);
});
