/**
 * `deno task dev`: the local dev cluster. Today it runs the real ZooKeeper on the configured port
 * (2181 by default) with its data under `./data/zk`, so that data survives restarts; the TinyKV
 * services join it as their issues land. Ctrl-C stops everything it started.
 *
 * Flags: `--config FILE` (default `default_config.toml`) and any `--section.key=value` override.
 *
 * @module
 */
import { loadConfigFromArgs } from "@tinykv/config";
import { startZooKeeper } from "@tinykv/zk/server";

const DATA_ZK = "zk";

async function main(args: string[]): Promise<number> {
  const loaded = loadConfigFromArgs(args, { defaultPath: "default_config.toml" });
  if (loaded.kind === "error") {
    console.error(`dev: ${loaded.message}`);
    return 2;
  }
  if (loaded.rest.length > 0) {
    console.error(
      `dev: Unknown argument "${loaded.rest[0]}": expected --config or --section.key=value`,
    );
    return 2;
  }
  const { config } = loaded;
  const dataDir = `${config.storage.data_dir}/${DATA_ZK}`;
  await Deno.mkdir(dataDir, { recursive: true });

  console.log(
    `dev: starting ZooKeeper on ${config.zookeeper.host}:${config.zookeeper.port} (data in ${dataDir})`,
  );
  const zk = await startZooKeeper({
    dataDir,
    host: config.zookeeper.host,
    port: config.zookeeper.port,
  });
  console.log(`dev: ZooKeeper serves on ${zk.connectString} (pid ${zk.pid})`);
  console.log(
    "dev: this cluster runs ZooKeeper only so far; placement, kvnodes and the gateway are not built yet",
  );
  console.log("dev: press Ctrl-C to stop");

  const stopped = Promise.withResolvers<string>();
  const onSignal = (name: string) => () => stopped.resolve(name);
  const signals: Array<[Deno.Signal, () => void]> = [
    ["SIGINT", onSignal("SIGINT")],
    ["SIGTERM", onSignal("SIGTERM")],
  ];
  for (const [signal, handler] of signals) Deno.addSignalListener(signal, handler);
  const exited = zk.exited.then(() => "ZooKeeper exited");
  const reason = await Promise.race([stopped.promise, exited]);
  console.log(`\ndev: stopping (${reason})`);
  await zk.stop();
  for (const [signal, handler] of signals) Deno.removeSignalListener(signal, handler);
  console.log("dev: stopped; data kept in", config.storage.data_dir);
  return reason === "ZooKeeper exited" ? 1 : 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
