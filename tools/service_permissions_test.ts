import assert from "node:assert/strict";
import { loadConfigFromArgs } from "@tinykv/config";
import { KVNODE_ENV, servicePermissions } from "./service_permissions.ts";

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
