// Checks the deployment test's rewriting of the guide's files (table tests): a per-host key set
// in its section only, the guide's addresses mapped whole, paths mapped by whole components.
import assert from "node:assert/strict";
import { GUIDE_HOSTS, peersOf, rewriteAddresses, rewritePaths, setTomlKey } from "./layout.ts";

const TOML = `[zookeeper]
host = "10.0.0.11"
[kvnode]
# the address
host = "10.0.0.21"   # this host
port = 7901
[placement] # a comment
host = "10.0.0.11"
`;

Deno.test("setTomlKey() sets one key of one section and keeps its comment", () => {
  const kv2 = setTomlKey(TOML, "kvnode", "host", '"10.0.0.22"');
  assert.equal(
    kv2,
    TOML.replace('host = "10.0.0.21"   # this host', 'host = "10.0.0.22"   # this host'),
  );
  assert.equal(
    setTomlKey(TOML, "placement", "host", '"10.0.0.12"'),
    TOML.replace(
      '[placement] # a comment\nhost = "10.0.0.11"',
      '[placement] # a comment\nhost = "10.0.0.12"',
    ),
  );
  assert.equal(setTomlKey(TOML, "kvnode", "port", "7902"), TOML.replace("7901", "7902"));
  assert.throws(() => setTomlKey(TOML, "gateway", "host", '"x"'), /no key "host" in \[gateway\]/);
  assert.throws(() => setTomlKey(TOML, "kvnode", "http_port", "1"), /no key "http_port"/);
});

Deno.test("rewriteAddresses() maps whole addresses of the guide and refuses unknown ones", () => {
  const map = new Map([["10.0.0.1", "10.214.7.10"], ["10.0.0.11", "10.214.7.11"]]);
  assert.equal(
    rewriteAddresses("a=10.0.0.11:2181,10.0.0.1:1 b=110.0.0.11 c=10.0.0.111.5", map),
    "a=10.214.7.11:2181,10.214.7.10:1 b=110.0.0.11 c=10.0.0.111.5",
  );
  assert.throws(
    () => rewriteAddresses("10.0.0.99", map),
    /No test host for the guide's address 10\.0\.0\.99/,
  );
});

Deno.test("rewritePaths() maps whole path components, longest prefix first", () => {
  const map = new Map([
    ["/etc/tinykv", "/t/kv1/etc/tinykv"],
    ["/opt/tinykv", "/repo"],
    ["/run", "/t/lb/run"],
    ["/var/lib/tinykv", "/t/kv1/lib"],
    ["/var/lib/tinykv/special", "/s"],
  ]);
  const cases: Array<[string, string]> = [
    [
      "--allow-read=/etc/tinykv/ca.crt,/opt/tinykv/services",
      "--allow-read=/t/kv1/etc/tinykv/ca.crt,/repo/services",
    ],
    ['ca_file = "/etc/tinykv/ca.crt"', 'ca_file = "/t/kv1/etc/tinykv/ca.crt"'],
    ["/etc/tinykv2/x /xetc/tinykv /etc/tinykv", "/etc/tinykv2/x /xetc/tinykv /t/kv1/etc/tinykv"],
    ["-p /run/haproxy.pid -S /run/m.sock", "-p /t/lb/run/haproxy.pid -S /t/lb/run/m.sock"],
    ["/var/lib/tinykv/special/x /var/lib/tinykv/kvnode-7901", "/s/x /t/kv1/lib/kvnode-7901"],
    ["/opt/tinykv", "/repo"],
  ];
  for (const [text, expected] of cases) assert.equal(rewritePaths(text, map), expected, text);
});

Deno.test("the guide's layout: three ZooKeeper servers, separate kvnode hosts, peers", () => {
  assert.deepEqual(
    GUIDE_HOSTS.filter((h) => h.zookeeperId !== undefined).map((h) => h.zookeeperId),
    [1, 2, 3],
  );
  const kvnodeHosts = GUIDE_HOSTS.filter((h) => h.roles.includes("kvnode"));
  assert.ok(kvnodeHosts.length >= 3 && kvnodeHosts.every((h) => h.roles.length === 1));
  assert.deepEqual(peersOf("kvnode"), ["10.0.0.21", "10.0.0.22", "10.0.0.23"]);
  assert.deepEqual(peersOf("gateway"), [
    "10.0.0.21",
    "10.0.0.22",
    "10.0.0.23",
    "10.0.0.31",
    "10.0.0.32",
  ]);
  assert.deepEqual(peersOf("placement"), [
    "10.0.0.21",
    "10.0.0.22",
    "10.0.0.23",
    "10.0.0.31",
    "10.0.0.32",
    "10.0.0.11",
    "10.0.0.12",
  ]);
});
