/**
 * The simulation's command line (`deno task sim`): runs the regression seeds
 * and then a range of seeds, spread over Web Workers to use every core. Each
 * failure prints the seed, the violated check and the one command that
 * replays it with a trace; the last line is a summary. The exit code is 0
 * only when every seed passed.
 *
 * ```sh
 * deno task sim                       # regression seeds + seeds 1..300
 * deno task sim --seeds 10000         # regression seeds + seeds 1..10000
 * deno task sim --seeds 500 --start 7000 --workers 4
 * deno task sim --seed 1234 --trace   # replay one seed, printing its trace
 * ```
 *
 * Permissions: `--allow-read` only (the workers load their modules from disk).
 *
 * @module
 */

import { REGRESSION_SEEDS } from "./regression.ts";
import { runSeed, type SeedResult } from "./run_seed.ts";
import type { WorkerRequest, WorkerResponse } from "./worker.ts";

/** Parsed command line. */
export interface CliOptions {
  /** How many seeds to run. */
  readonly seeds: number;
  /** The first seed of the range. */
  readonly start: number;
  /** A single seed to replay, instead of a range. */
  readonly seed: number | undefined;
  /** Print the trace of the single seed. */
  readonly trace: boolean;
  /** Print every delivered message too. */
  readonly traceMessages: boolean;
  /** Web Workers to run seeds on. */
  readonly workers: number;
  /** Run the regression seeds first. */
  readonly regression: boolean;
}

const USAGE = "Usage: deno task sim [--seeds N] [--start S] [--workers K] [--no-regression]\n" +
  "       deno task sim --seed S [--trace | --trace-messages]";

/** Parses `args`; returns an error message for bad input. */
export function parseArgs(args: readonly string[]): CliOptions | string {
  let seeds = 300;
  let start = 1;
  let seed: number | undefined;
  let trace = false;
  let traceMessages = false;
  let workers = 2;
  let regression = true;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const number = (name: string): number | string => {
      const text = args[++i];
      const value = Number(text);
      if (text === undefined || !Number.isSafeInteger(value) || value < 0) {
        return `Cannot parse ${name} "${text}": expected a non-negative integer`;
      }
      return value;
    };
    let parsed: number | string = 0;
    switch (arg) {
      case "--seeds":
        parsed = seeds = number(arg) as number;
        break;
      case "--start":
        parsed = start = number(arg) as number;
        break;
      case "--seed":
        parsed = seed = number(arg) as number;
        break;
      case "--workers":
        parsed = workers = number(arg) as number;
        break;
      case "--trace":
        trace = true;
        break;
      case "--trace-messages":
        trace = traceMessages = true;
        break;
      case "--no-regression":
        regression = false;
        break;
      case "--help":
        return USAGE;
      default:
        return `Unknown argument "${arg}"\n${USAGE}`;
    }
    if (typeof parsed === "string") return parsed;
  }
  if (workers < 1) return `Cannot run with --workers ${workers}: expected at least 1`;
  return { seeds, start, seed, trace, traceMessages, workers, regression };
}

/** The command that replays `seed` with a trace. */
export function replayCommand(seed: number): string {
  return `deno task sim --seed ${seed} --trace`;
}

function describeFailure(result: Extract<SeedResult, { ok: false }>): string {
  return `FAIL seed ${result.seed}: ${result.check} (${result.kind}) at t=${result.time}\n` +
    `  ${abbreviate(result.message).join("\n  ")}\n` +
    `  replay: ${replayCommand(result.seed)}`;
}

/** Lines of a failure message, with a long linearizable prefix cut to its end. */
export function abbreviate(message: string): string[] {
  const PREFIX_LINES_KEPT = 10;
  const LINE_CHARS_MAX = 300;
  const out: string[] = [];
  let prefix: string[] = [];
  const flush = () => {
    if (prefix.length > PREFIX_LINES_KEPT) {
      out.push(`    ... (${prefix.length - PREFIX_LINES_KEPT} earlier operations)`);
    }
    out.push(...prefix.slice(-PREFIX_LINES_KEPT));
    prefix = [];
  };
  let inPrefix = false;
  for (const line of message.split("\n")) {
    const short = line.length > LINE_CHARS_MAX ? `${line.slice(0, LINE_CHARS_MAX)}...` : line;
    if (line.startsWith("Longest linearizable prefix")) {
      out.push(short);
      inPrefix = true;
    } else if (inPrefix && line.startsWith("  ")) {
      prefix.push(short);
    } else {
      if (inPrefix) flush();
      inPrefix = false;
      out.push(short);
    }
  }
  if (inPrefix) flush();
  return out;
}

async function runOne(options: CliOptions, seed: number): Promise<number> {
  const result = await runSeed(seed, {
    trace: options.trace ? (line) => console.log(line) : undefined,
    traceMessages: options.traceMessages,
  });
  if (result.ok) {
    console.log(`seed ${seed}: ok (trace hash ${result.traceHash.toString(16)})`);
    console.log(JSON.stringify(result.stats));
    return 0;
  }
  console.log(describeFailure(result));
  if (result.kind !== "invariant") console.log(result.stack);
  return 1;
}

/** Failures whose trace tail is printed after the run. */
const TRACE_TAILS_MAX = 3;
/** Trace lines printed per failure. */
const TRACE_TAIL_LINES = 40;

/** Replays `seed` here and prints the end of its trace. */
async function printTraceTail(seed: number): Promise<void> {
  const tail: string[] = [];
  await runSeed(seed, {
    trace: (line) => {
      tail.push(line);
      if (tail.length > TRACE_TAIL_LINES) tail.shift();
    },
  });
  console.log(`--- last ${tail.length} trace lines of seed ${seed} (${replayCommand(seed)}):`);
  for (const line of tail) console.log(`  ${line}`);
}

/** Runs `seeds` on `workers` Web Workers; calls `onResult` for each result as it arrives. */
export function runOnWorkers(
  seeds: readonly number[],
  workers: number,
  onResult: (result: SeedResult) => void,
): Promise<void> {
  const BATCH = 4;
  let next = 0;
  let running = 0;
  return new Promise((resolve, reject) => {
    const feed = (worker: Worker) => {
      if (next >= seeds.length) {
        worker.terminate();
        if (--running === 0) resolve();
        return;
      }
      const request: WorkerRequest = { seeds: seeds.slice(next, next + BATCH) };
      next += BATCH;
      worker.postMessage(request);
    };
    const count = Math.max(1, Math.min(workers, Math.ceil(seeds.length / BATCH)));
    if (seeds.length === 0) return resolve();
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
      running++;
      worker.onmessage = (event: MessageEvent<WorkerResponse>) => {
        for (const result of event.data.results) onResult(result);
        feed(worker);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error(`A simulation worker failed: ${event.message}`));
      };
      feed(worker);
    }
  });
}

async function main(args: readonly string[]): Promise<number> {
  const options = parseArgs(args);
  if (typeof options === "string") {
    console.error(options);
    return 2;
  }
  if (options.seed !== undefined) return runOne(options, options.seed);
  const regression = options.regression ? REGRESSION_SEEDS.map((r) => r.seed) : [];
  const range = Array.from({ length: options.seeds }, (_, i) => options.start + i);
  const seeds = [...regression, ...range];
  const started = performance.now();
  let done = 0;
  let operations = 0;
  let safetyChecks = 0;
  let events = 0;
  const failures: Extract<SeedResult, { ok: false }>[] = [];
  await runOnWorkers(seeds, options.workers, (result) => {
    done++;
    if (result.ok) {
      operations += result.stats.operations;
      safetyChecks += result.stats.safetyChecks;
      events += result.stats.events;
    } else {
      failures.push(result);
      console.log(describeFailure(result));
    }
    if (done % 1000 === 0) {
      const seconds = ((performance.now() - started) / 1000).toFixed(0);
      console.error(`... ${done}/${seeds.length} seeds, ${failures.length} failed, ${seconds}s`);
    }
  });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  // A linearizability failure explains itself; the end of the trace says little about it.
  const traceable = failures.filter((f) => f.check !== "linearizability");
  for (const failure of traceable.slice(0, TRACE_TAILS_MAX)) await printTraceTail(failure.seed);
  const failed = failures.map((f) => f.seed).sort((a, b) => a - b);
  console.log(
    `sim: ${seeds.length} seeds (${regression.length} regression + ${range.length} from ` +
      `${options.start}), ${failures.length} failed${failed.length > 0 ? ` [${failed}]` : ""}; ` +
      `${operations} client operations checked linearizable, ${safetyChecks} safety checks, ` +
      `${events} events; ${seconds}s on ${options.workers} workers`,
  );
  return failures.length === 0 ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
