/**
 * TinyKV configuration: one TOML file (`default_config.toml` holds the dev defaults) with
 * `--section.key=value` overrides on the command line, validated before anything starts.
 *
 * ```ts
 * import { loadConfig } from "@tinykv/config";
 *
 * const result = loadConfig({ overrides: [["kvnode.port", "7902"]] });
 * if (result.kind === "error") throw new Error(result.message);
 * console.log(result.config.kvnode.port); // 7902
 * ```
 *
 * @module
 */
export {
  type ConfigArgs,
  loadConfig,
  loadConfigFromArgs,
  type LoadConfigOptions,
  type LoadConfigResult,
  raftMessageRoom,
  splitConfigArgs,
} from "./config.ts";
export { type Config, CONFIG_SPEC, type KeySpec, keySpec, type SectionName } from "./schema.ts";
export {
  parseZooKeeperServers,
  ZOOKEEPER_SERVERS_EXPECTED,
  ZOOKEEPER_SERVERS_MAX,
  type ZooKeeperServerAddress,
  type ZooKeeperServerKeys,
  zooKeeperServers,
  type ZooKeeperServersResult,
} from "./zookeeper_servers.ts";
