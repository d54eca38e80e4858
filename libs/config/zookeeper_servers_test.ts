// Checks parseZooKeeperServers() and zooKeeperServers(): connect strings the ZooKeeper client
// reads as meant are taken, server by server; everything else is refused with a message naming
// the server and what is wrong with it (table tests), and an empty `servers` means host:port.
import assert from "node:assert/strict";
import {
  parseZooKeeperServers,
  ZOOKEEPER_SERVERS_MAX,
  zooKeeperServers,
} from "./zookeeper_servers.ts";

Deno.test("parseZooKeeperServers() takes every server of a connect string, in order", () => {
  const cases: Array<[string, Array<[string, number]>]> = [
    ["10.0.0.11:2181", [["10.0.0.11", 2181]]],
    [
      "10.0.0.11:2181,10.0.0.12:2181,10.0.0.13:2181",
      [["10.0.0.11", 2181], ["10.0.0.12", 2181], ["10.0.0.13", 2181]],
    ],
    ["zk1.example.com:2181,zk-2:12181", [["zk1.example.com", 2181], ["zk-2", 12181]]],
    ["localhost:1,127.0.0.1:65535", [["localhost", 1], ["127.0.0.1", 65535]]],
    // The same host on other ports: three servers on one machine.
    ["h:2181,h:2182", [["h", 2181], ["h", 2182]]],
  ];
  for (const [text, expected] of cases) {
    const parsed = parseZooKeeperServers(text);
    assert.equal(parsed.kind, "ok", `${text}: ${JSON.stringify(parsed)}`);
    if (parsed.kind !== "ok") continue;
    assert.deepEqual(parsed.servers.map((s) => [s.host, s.port]), expected, text);
  }
});

Deno.test("parseZooKeeperServers() names the server and the problem it refuses", () => {
  const cases: Array<[string, RegExp]> = [
    ["", /^it is empty$/],
    ["10.0.0.11", /^server 1 "10\.0\.0\.11" has no port: write "host:port"$/],
    ["a:1,b", /^server 2 "b" has no port/],
    ["a:1,,b:2", /^server 2 is empty \(two commas in a row, or one at an end\)$/],
    ["a:1,", /^server 2 is empty/],
    [",a:1", /^server 1 is empty/],
    ["a:1, b:2", /^server 2 " b:2" has white space/],
    ["a:1,b:2/tinykv", /^it has a chroot path \("\/…"\), which TinyKV does not take/],
    ["[::1]:2181", /^server 1 "\[::1\]:2181" has more than one ":": IPv6 addresses cannot/],
    ["fe80::1:2181", /more than one ":"/],
    [":2181", /^server 1 ":2181" has no host$/],
    ["a_b:2181", /^server 1 "a_b:2181" has host "a_b": expected a host name or an IPv4/],
    ["-a:2181", /has host "-a"/],
    ["a.:2181", /has host "a\."/],
    ["10.0.0.256:2181", /has host "10\.0\.0\.256"/],
    ["10.0.0:2181", /has host "10\.0\.0"/],
    ["a:0", /^server 1 "a:0" has port "0": expected an integer from 1 to 65535$/],
    ["a:65536", /has port "65536"/],
    ["a:", /has port "": expected/],
    ["a:21x", /has port "21x"/],
    ["a:+21", /has port "\+21"/],
    ["a:2181,b:2181,A:2181", /^server 3 "A:2181" repeats server 1$/],
  ];
  for (const [text, expected] of cases) {
    const parsed = parseZooKeeperServers(text);
    assert.equal(parsed.kind, "error", `${JSON.stringify(text)} was taken`);
    if (parsed.kind !== "error") continue;
    assert.match(parsed.problem, expected, JSON.stringify(text));
  }
});

Deno.test("parseZooKeeperServers() takes ZOOKEEPER_SERVERS_MAX servers and refuses one more", () => {
  const servers = (n: number) => Array.from({ length: n }, (_, i) => `h${i}:2181`).join(",");
  assert.equal(parseZooKeeperServers(servers(ZOOKEEPER_SERVERS_MAX)).kind, "ok");
  const over = parseZooKeeperServers(servers(ZOOKEEPER_SERVERS_MAX + 1));
  assert.equal(over.kind, "error");
  if (over.kind === "error") {
    assert.equal(
      over.problem,
      `it names ${ZOOKEEPER_SERVERS_MAX + 1} servers: at most ${ZOOKEEPER_SERVERS_MAX}`,
    );
  }
});

Deno.test("zooKeeperServers() is host:port when servers is empty, else the servers", () => {
  assert.deepEqual(zooKeeperServers({ servers: "", host: "10.0.0.9", port: 2181 }), [
    { host: "10.0.0.9", port: 2181 },
  ]);
  assert.deepEqual(zooKeeperServers({ servers: "a:1,b:2", host: "10.0.0.9", port: 2181 }), [
    { host: "a", port: 1 },
    { host: "b", port: 2 },
  ]);
  assert.throws(
    () => zooKeeperServers({ servers: "a", host: "x", port: 1 }),
    /^Error: Invalid zookeeper\.servers "a": server 1 "a" has no port/,
  );
});
