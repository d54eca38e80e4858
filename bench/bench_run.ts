/**
 * What the side-by-side benchmarks (`bench:compare`, `bench:watch`) share to run: progress lines,
 * timed parts that record a failure and go on, the machine's description, and stopping every
 * process they started on Ctrl-C.
 *
 * @module
 */
import { type ProcessRegistry, readWithCat } from "./compare_procs.ts";
import type { MachineInfo } from "./compare_report.ts";
import { parseCpuModel, parseMemTotalKib } from "./compare_stats.ts";

/** Where progress goes: stderr, so stdout holds only the report (or the JSON). */
export function say(line: string): void {
  console.error(line);
}

/** An error's message, or the thrown value as text. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The machine a run measured: CPU, cores, memory, kernel, Deno and etcd's version. */
export async function machineInfo(etcdVersion: string): Promise<MachineInfo> {
  const [cpuinfo, meminfo, kernel] = await Promise.all(
    ["/proc/cpuinfo", "/proc/meminfo", "/proc/sys/kernel/osrelease"].map((p) => readWithCat([p])),
  );
  return {
    cpuModel: parseCpuModel(cpuinfo),
    cores: navigator.hardwareConcurrency,
    memoryMib: parseMemTotalKib(meminfo) / 1024,
    kernel: kernel.trim(),
    deno: Deno.version.deno,
    etcd: etcdVersion,
  };
}

/** One part, timed; a failure is recorded and the run goes on with the next part. */
export async function part(
  name: string,
  record: { phaseSeconds: Record<string, number>; errors: string[] },
  body: () => Promise<void>,
): Promise<void> {
  const started = performance.now();
  try {
    await body();
  } catch (error) {
    const message = errorMessage(error);
    say(`${name}: FAILED: ${message}`);
    record.errors.push(`${name} failed: ${message.split("\n").slice(0, 12).join(" | ")}`);
  } finally {
    record.phaseSeconds[name] = (performance.now() - started) / 1000;
  }
}

/**
 * On Ctrl-C or SIGTERM: stop every process `registry` started, remove the temp dirs, exit 130;
 * `bench` names the benchmark in the line it prints.
 */
export function stopOnSignal(registry: ProcessRegistry, bench: string): void {
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, async () => {
      if (stopping) return;
      stopping = true;
      say(`${bench}: ${signal}: stopping every process it started`);
      await registry.cleanUp();
      Deno.exit(130);
    });
  }
}
