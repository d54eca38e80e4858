/**
 * A test gRPC server process: serves the in-memory test KV service and the echo Sample service
 * (testdata/sample_service.ts, for streaming methods) on 127.0.0.1 (an ephemeral port), prints `LISTENING <port>` on stdout once bound, and shuts down cleanly (exit code 0) on
 * SIGTERM or SIGINT. Used by churn_test.ts through `spawnServerProcess()`.
 *
 * With `--exit-after-calls=N` it exits with code 134 (as an abort would) on KV call N + 1, so the
 * churn harness can be shown to notice a dying server.
 */

import { MESSAGE_BYTES_MAX_DEFAULT, type ServiceBinding, startGrpcServer } from "../mod.ts";
import { kvTestService } from "./kv_service.ts";
import { sampleTestService } from "./sample_service.ts";

const EXIT_CODE_ABORT = 134;

function dieAfter(service: ServiceBinding, calls: number): ServiceBinding {
  let seen = 0;
  const implementation: ServiceBinding["implementation"] = {};
  for (const [name, handler] of Object.entries(service.implementation)) {
    implementation[name] = ((call: unknown, callback: unknown) => {
      if (++seen > calls) Deno.exit(EXIT_CODE_ABORT);
      return (handler as (call: unknown, callback: unknown) => void)(call, callback);
    }) as typeof handler;
  }
  return { definition: service.definition, implementation };
}

const exitAfter = Deno.args.find((a) => a.startsWith("--exit-after-calls="));
const service = exitAfter === undefined
  ? kvTestService()
  : dieAfter(kvTestService(), Number(exitAfter.split("=")[1]));
const server = await startGrpcServer({
  host: "127.0.0.1",
  port: 0,
  maxMessageBytes: MESSAGE_BYTES_MAX_DEFAULT,
  services: [service, sampleTestService()],
});
console.log(`LISTENING ${server.port}`);

const stop = async () => {
  await server.shutdown(1000);
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
