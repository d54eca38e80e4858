import assert from "node:assert/strict";
import { loadConfigFromArgs } from "@tinykv/config";
import { KVNODE_ENV, main, servicePermissions } from "./service_permissions.ts";

Deno.test("each service's permissions name its paths, hosts and variables", () => {
  const loaded = loadConfigFromArgs([
    "--storage.data_dir=/srv/tinykv",
    "--log.dir=/var/log/tinykv",
    "--zookeeper.host=10.0.0.9",
    "--kvnode.host=10.0.0.5",
    "--security.ca_file=/etc/tinykv/ca.crt",
    "--security.token_file=/etc/tinykv/n1.token",
  ]);
  assert.equal(loaded.kind, "ok", JSON.stringify(loaded));
  if (loaded.kind !== "ok") return;
  const flags = (service: "kvnode" | "placement" | "gateway") =>
    servicePermissions(service, loaded.config, { code: "/opt/tinykv" });
  const kvnode = flags("kvnode");
  assert.ok(
    kvnode.includes(
      "--allow-read=/opt/tinykv/default_config.toml,/opt/tinykv/services,/opt/tinykv/node_modules," +
        "/var/log/tinykv,/etc/tinykv/ca.crt,/etc/tinykv/n1.token,/srv/tinykv/kvnode-7901",
    ),
    kvnode.join(" "),
  );
  assert.ok(kvnode.includes("--allow-write=/var/log/tinykv,/srv/tinykv/kvnode-7901"));
  assert.ok(kvnode.includes("--allow-net=10.0.0.9,10.0.0.5,127.0.0.1"));
  assert.ok(kvnode.includes("--allow-ffi=/opt/tinykv/node_modules"));
  assert.ok(kvnode.some((f) => f.startsWith("--allow-env=") && f.includes(KVNODE_ENV[0])));
  for (const service of ["placement", "gateway"] as const) {
    const each = flags(service);
    assert.ok(each.includes("--allow-write=/var/log/tinykv"), `${service} writes only its logs`);
    assert.ok(!each.some((f) => f.startsWith("--allow-ffi") || f.startsWith("--allow-sys")));
    assert.ok(!each.some((f) => f.includes(KVNODE_ENV[0])), `${service} reads no lmdb variable`);
  }
  assert.ok(kvnode.every((f) => f.includes("=")), "no permission is granted whole");
});

Deno.test("servicePermissions() names every ZooKeeper server of an ensemble", () => {
  const loaded = loadConfigFromArgs([
    "--zookeeper.servers=10.0.0.11:2181,10.0.0.12:2181,zk3.example:2181",
    "--zookeeper.host=10.9.9.9",
    "--kvnode.host=10.0.0.21",
  ]);
  assert.equal(loaded.kind, "ok", JSON.stringify(loaded));
  if (loaded.kind !== "ok") return;
  const kvnode = servicePermissions("kvnode", loaded.config, { code: "/opt/tinykv" });
  const net = kvnode.find((f) => f.startsWith("--allow-net="));
  assert.equal(net, "--allow-net=10.0.0.11,10.0.0.12,zk3.example,10.0.0.21,127.0.0.1");
  assert.ok(!net?.includes("10.9.9.9"), "host is not used when servers names the ensemble");
});

Deno.test("servicePermissions() with peers reaches only ZooKeeper, itself and the peers", () => {
  const loaded = loadConfigFromArgs([
    "--zookeeper.servers=10.0.0.11:2181,10.0.0.12:2181,10.0.0.13:2181",
    "--rpc_server.host=10.0.0.31",
  ]);
  assert.equal(loaded.kind, "ok", JSON.stringify(loaded));
  if (loaded.kind !== "ok") return;
  const gateway = servicePermissions("gateway", loaded.config, {
    code: "/opt/tinykv",
    configFile: "/etc/tinykv/gateway.toml",
    peers: ["10.0.0.21", "10.0.0.22", "10.0.0.23"],
  });
  assert.equal(
    gateway.find((f) => f.startsWith("--allow-net=")),
    "--allow-net=10.0.0.11,10.0.0.12,10.0.0.13,10.0.0.31,10.0.0.21,10.0.0.22,10.0.0.23",
  );
  assert.ok(!gateway.some((f) => f.includes("127.0.0.1")), "no loopback: nothing runs there");
  assert.ok(
    gateway.some((f) => f.startsWith("--allow-read=") && f.endsWith(",/etc/tinykv/gateway.toml")),
  );
});

Deno.test("main() prints the flags of a config file, and refuses bad arguments", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/placement.toml`;
    await Deno.writeTextFile(
      file,
      '[zookeeper]\nservers = "10.0.0.11:2181,10.0.0.12:2181"\n[placement]\nhost = "10.0.0.11"\n',
    );
    const printed: string[] = [];
    const errors: string[] = [];
    const log = console.log;
    const error = console.error;
    console.log = (line: string) => printed.push(line);
    console.error = (line: string) => errors.push(line);
    try {
      assert.equal(
        main(["placement", "--config", file, "--code=/opt/tinykv/", "--peers", "10.0.0.21"]),
        0,
      );
      assert.equal(main(["placement", "--config", file]), 2);
      assert.equal(main(["router", "--config", file, "--code", "/x"]), 2);
      assert.equal(main(["placement", "--config", file, "--code", "/x", "--bogus"]), 2);
      assert.equal(main(["kvnode", "--config", `${dir}/missing.toml`, "--code", "/x"]), 1);
    } finally {
      console.log = log;
      console.error = error;
    }
    assert.equal(printed.length, 1);
    assert.ok(printed[0].includes(`,${file} --allow-write=`), printed[0]);
    assert.ok(printed[0].includes("--allow-net=10.0.0.11,10.0.0.12,10.0.0.21 "), printed[0]);
    assert.ok(printed[0].startsWith("--allow-read=/opt/tinykv/default_config.toml,"));
    assert.match(errors[0], /--config and --code are needed/);
    assert.match(errors[1], /unknown service "router"/);
    assert.match(errors[2], /unknown argument "--bogus"/);
    assert.match(errors[3], /Cannot read config file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
