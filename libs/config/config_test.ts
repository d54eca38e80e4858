// Checks loadConfig(): the shipped default_config.toml, overrides, and one precise message for each
// kind of bad input (unknown key, wrong type, out of range, syntax, missing file, bad flag, rules
// across keys). Files are served from memory through the injectable reader.
import assert from "node:assert/strict";
import { loadConfig, loadConfigFromArgs, raftMessageRoom, splitConfigArgs } from "./config.ts";

const DEFAULT_CONFIG_PATH = new URL("../../default_config.toml", import.meta.url);

function fromText(text: string, overrides: Array<[string, string]> = []) {
  return loadConfig({ path: "test.toml", overrides, readTextFile: () => text });
}

function errorOf(result: ReturnType<typeof loadConfig>): string {
  assert.equal(result.kind, "error", "expected the config to be refused");
  return result.kind === "error" ? result.message : "";
}

Deno.test("default_config.toml loads and equals the built-in defaults", () => {
  const text = Deno.readTextFileSync(DEFAULT_CONFIG_PATH);
  const fromFile = fromText(text);
  const builtIn = loadConfig();
  assert.equal(fromFile.kind, "ok");
  assert.equal(builtIn.kind, "ok");
  if (fromFile.kind !== "ok" || builtIn.kind !== "ok") return;
  assert.deepEqual(fromFile.config, builtIn.config);
  assert.equal(fromFile.config.zookeeper.port, 2181);
  assert.equal(fromFile.config.rpc_server.port, 7700);
  assert.equal(fromFile.config.sharding.num_shards, 10);
  assert.equal(fromFile.config.sharding.replica_count, 3);
  assert.equal(fromFile.config.placement.admin_port, 7800);
  assert.equal(fromFile.config.placement.http_port, 7880);
  assert.equal(fromFile.config.kvnode.port, 7901);
});

Deno.test("loadConfig() fills missing keys and sections with defaults", () => {
  const result = fromText("[raft]\ntick_ms = 50\n");
  assert.equal(result.kind, "ok");
  if (result.kind !== "ok") return;
  assert.equal(result.config.raft.tick_ms, 50);
  assert.equal(result.config.raft.election_ticks, 10);
  assert.equal(result.config.kvnode.host, "127.0.0.1");
});

Deno.test("loadConfig() applies flag overrides after the file, typed as TOML values", () => {
  const result = fromText("[kvnode]\nport = 7901\n", [
    ["kvnode.port", "7902"],
    ["zookeeper.host", "localhost"],
    ["raft.pre_vote", "false"],
    ["log.level", '"debug"'],
  ]);
  assert.equal(result.kind, "ok");
  if (result.kind !== "ok") return;
  assert.equal(result.config.kvnode.port, 7902);
  assert.equal(result.config.zookeeper.host, "localhost");
  assert.equal(result.config.raft.pre_vote, false);
  assert.equal(result.config.log.level, "debug");
});

const BAD_FILES: Array<{ name: string; text: string; expect: RegExp }> = [
  {
    name: "an unknown key in a section",
    text: "[raft]\ntikc_ms = 5\n",
    expect:
      /^Cannot load config "test\.toml": unknown key "raft\.tikc_ms" \(known keys: raft\.tick_ms,/,
  },
  {
    name: "an unknown section",
    text: "[raftt]\ntick_ms = 5\n",
    expect: /unknown key "raftt" \(sections are \[zookeeper\], \[rpc_server\]/,
  },
  {
    name: "a wrong type",
    text: '[zookeeper]\nport = "2181"\n',
    expect: /key "zookeeper\.port" must be an integer from 1 to 65535: got "2181"$/,
  },
  {
    name: "a value out of range",
    text: "[sharding]\nnum_shards = 0\n",
    expect: /key "sharding\.num_shards" must be an integer from 1 to 4096: got 0$/,
  },
  {
    name: "a fraction where an integer belongs",
    text: "[raft]\ntick_ms = 1.5\n",
    expect: /key "raft\.tick_ms" must be an integer from 1 to 60000: got 1\.5$/,
  },
  {
    name: "a value outside an enumeration",
    text: '[log]\nlevel = "loud"\n',
    expect: /key "log\.level" must be one of "debug", "info", "warn", "error": got "loud"$/,
  },
  {
    name: "a section that is not a table",
    text: "raft = 3\n",
    expect: /"raft" must be a table \(\[raft\]\): got 3$/,
  },
  {
    name: "an invalid cluster name",
    text: '[zookeeper]\ncluster = "a/b"\n',
    expect: /key "zookeeper\.cluster" must be a name of 1 to 63 characters/,
  },
  {
    name: "a ZooKeeper connect string with a server without its port",
    text: '[zookeeper]\nservers = "10.0.0.11:2181,10.0.0.12"\n',
    expect:
      /^Cannot load config "test\.toml": key "zookeeper\.servers" must be a ZooKeeper connect string, "host:port" entries separated by commas \(e\.g\. "10\.0\.0\.11:2181,10\.0\.0\.12:2181,10\.0\.0\.13:2181"\), or "" for zookeeper\.host and zookeeper\.port: server 2 "10\.0\.0\.12" has no port: write "host:port"$/,
  },
  {
    name: "a ZooKeeper connect string that is not a string",
    text: "[zookeeper]\nservers = 2181\n",
    expect: /key "zookeeper\.servers" must be a ZooKeeper connect string, .*: got 2181$/,
  },
  {
    name: "a TOML syntax error",
    text: "[raft]\ntick_ms = = 3\n",
    expect: /^Cannot parse config file "test\.toml": line 2, column \d+: /,
  },
  {
    name: "a broken rule across keys",
    text: "[raft]\nelection_ticks = 5\nheartbeat_ticks = 5\n",
    expect: /key "raft\.heartbeat_ticks" must be less than "raft\.election_ticks" \(5\): got 5$/,
  },
  {
    name: "lease reads without check-quorum",
    text: "[raft]\ncheck_quorum = false\n",
    expect:
      /key "raft\.read_mode" must be "read_index" when "raft\.check_quorum" is false \(a leader's lease rests on check-quorum\): got "lease"$/,
  },
  {
    name: "a value limit whose largest command does not fit a Raft message",
    text: "[rpc_server]\nmax_message_bytes = 1048576\n[storage]\nvalue_bytes_max = 1048576\n",
    expect: /key "storage\.value_bytes_max" must be at most 227136: its largest command/,
  },
  {
    name: "a watch window smaller than the largest Txn's changes (one byte short)",
    text: "[kvnode]\nwatch_window_bytes = 2162687\n",
    expect:
      /key "kvnode\.watch_window_bytes" must be at least 2162688 \(2 × "storage\.value_bytes_max" \+ 64 KiB: the changes of the largest Txn\): got 2162687$/,
  },
];

Deno.test("loadConfig() takes a watch window exactly as large as the largest Txn's changes", () => {
  const loaded = fromText("[kvnode]\nwatch_window_bytes = 2162688\n");
  assert.equal(loaded.kind, "ok", JSON.stringify(loaded));
  if (loaded.kind !== "ok") return;
  assert.equal(loaded.config.kvnode.watch_window_bytes, 2 * 1024 * 1024 + 64 * 1024);
});

for (const bad of BAD_FILES) {
  Deno.test(`loadConfig() refuses ${bad.name} with a precise message`, () => {
    assert.match(errorOf(fromText(bad.text)), bad.expect);
  });
}

Deno.test("loadConfig() takes a ZooKeeper ensemble's servers; empty means host:port", () => {
  const ensemble = fromText(
    '[zookeeper]\nservers = "10.0.0.11:2181,10.0.0.12:2181,10.0.0.13:2181"\n',
  );
  assert.equal(ensemble.kind, "ok", JSON.stringify(ensemble));
  if (ensemble.kind === "ok") {
    assert.equal(ensemble.config.zookeeper.servers, "10.0.0.11:2181,10.0.0.12:2181,10.0.0.13:2181");
  }
  const single = fromText("", [["zookeeper.servers", '""']]);
  assert.equal(single.kind, "ok");
  if (single.kind === "ok") assert.equal(single.config.zookeeper.servers, "");
  assert.match(
    errorOf(fromText("", [["zookeeper.servers", "a:1,a:1"]])),
    /key "zookeeper\.servers" must be .*: server 2 "a:1" repeats server 1$/,
  );
});

Deno.test("loadConfig() names a missing file", () => {
  const result = loadConfig({ path: "/nonexistent/tinykv.toml" });
  assert.match(errorOf(result), /^Cannot read config file "\/nonexistent\/tinykv\.toml": /);
});

Deno.test("loadConfig() refuses a flag for an unknown key and a wrongly typed flag", () => {
  assert.match(
    errorOf(fromText("", [["kvnode.prt", "1"]])),
    /^Cannot apply flag "--kvnode\.prt": unknown key "kvnode\.prt" \(known keys: kvnode\.host, kvnode\.port, kvnode\.http_port, kvnode\.session_ttl_ms, kvnode\.watch_window_bytes\)$/,
  );
  assert.match(
    errorOf(fromText("", [["a.b.c", "1"]])),
    /^Cannot apply flag "--a\.b\.c": expected the form --section\.key=value$/,
  );
  assert.match(
    errorOf(fromText("", [["kvnode.port", "99999"]])),
    /key "kvnode\.port" must be an integer from 1 to 65535: got 99999$/,
  );
});

Deno.test("splitConfigArgs() separates --config, overrides and the program's own arguments", () => {
  const split = splitConfigArgs([
    "--config",
    "x.toml",
    "--kvnode.port=7902",
    "--fresh",
    "--raft.tick_ms",
    "50",
    "positional",
  ]);
  assert.equal(split.path, "x.toml");
  assert.deepEqual(split.overrides, [["kvnode.port", "7902"], ["raft.tick_ms", "50"]]);
  assert.deepEqual(split.rest, ["--fresh", "positional"]);
});

Deno.test("loadConfigFromArgs() falls back to the default path", () => {
  const seen: string[] = [];
  const result = loadConfigFromArgs(["--nodes", "3"], {
    defaultPath: "default.toml",
    readTextFile: (path) => {
      seen.push(path);
      return "";
    },
  });
  assert.equal(result.kind, "ok");
  assert.deepEqual(seen, ["default.toml"]);
  assert.deepEqual(result.rest, ["--nodes", "3"]);
});

Deno.test("loadConfig() takes the largest value and Raft message that fit, and refuses one more", () => {
  // With the default 8 MiB gRPC message a Raft message may carry 4 MiB less 64 KiB: 4,128,768
  // bytes, so two values of 2,062,144 bytes, a 4 KiB key, a 128-byte client id and 256 bytes of
  // framing fit exactly.
  assert.equal(raftMessageRoom(8 * 1024 * 1024), 4_128_768);
  const value = (n: number) => fromText(`[storage]\nvalue_bytes_max = ${n}\n`);
  assert.equal(value(2_062_144).kind, "ok");
  assert.match(
    errorOf(value(2_062_145)),
    /key "storage\.value_bytes_max" must be at most 2062144: .* got 2062145$/,
  );
  const raft = (n: number) => fromText(`[raft]\nmessage_bytes_max = ${n}\n`);
  assert.equal(raft(4_128_768).kind, "ok");
  assert.match(errorOf(raft(4_128_769)), /key "raft\.message_bytes_max" must be at most 4128768/);
});
