/**
 * Runs the kvnode simulation over many seeds, or replays one.
 *
 * ```sh
 * deno run tests/sim_kvnode/main.ts --seeds 50 [--from 1] [--ticks 300]
 * deno run tests/sim_kvnode/main.ts --seed 17 --trace
 * ```
 *
 * On a failure it prints the one command that replays the failing seed, and exits with 1.
 *
 * @module
 */
import { runSimulation, type SimResult } from "./simulation.ts";

const HELP = `Usage: main.ts --seeds N [--from S] [--ticks T] [--gated-moves]
       main.ts --seed S [--trace] [--ticks T] [--gated-moves]

--ticks T         ticks of the chaos phase (default 300)
--gated-moves   promote moved-in replicas only once every member has their address (the old workaround)
                  (reproduces the address bug of tests/sim_kvnode/FINDINGS.md)`;

function replayCommand(seed: number, flags: Flags): string {
  const ticksFlag = flags.ticks === undefined ? "" : ` --ticks ${flags.ticks}`;
  const movesFlag = flags.gatedMoves ? " --gated-moves" : "";
  return `deno run tests/sim_kvnode/main.ts --seed ${seed}${ticksFlag}${movesFlag} --trace`;
}

function summary(result: SimResult): string {
  const s = result.stats;
  return `seed ${result.seed}: ${result.kind} trace=${result.traceHash.toString(16)} ` +
    `nodes=${s.nodes} ticks=${s.ticks} turns=${s.turns} envelopes=${s.envelopes} ` +
    `snapshots=${s.snapshots} ` +
    `crashes=${s.crashes} (mid-turn ${s.crashesMidTurn}) partitions=${s.partitions} ` +
    `transfers=${s.transfers} moves=${s.movesDone} (aborted ${s.movesAborted}) ops ok/failed/unknown=` +
    `${s.opsOk}/${s.opsFailed}/${s.opsUnknown} groupsPerTxMax=${s.groupsPerTransactionMax} ` +
    `quiesced=${s.quiescedReplicaTicks}`;
}

async function main(args: string[]): Promise<number> {
  const flags = parseFlags(args);
  if (flags === undefined) {
    console.error(HELP);
    return 2;
  }
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  const ticks = flags.ticks === undefined ? undefined : Number(flags.ticks);
  if (flags.seed !== undefined) {
    const seed = Number(flags.seed);
    const result = await runSimulation({
      seed,
      chaosTicks: ticks,
      gatedMoves: flags.gatedMoves,
      trace: flags.trace ? (line) => console.log(line) : undefined,
    });
    console.log(summary(result));
    if (result.kind === "failed") {
      console.log(`FAILED: ${result.failure}`);
      console.log(`Replay: ${replayCommand(seed, flags)}`);
      return 1;
    }
    return 0;
  }
  if (flags.seeds === undefined) {
    console.error(HELP);
    return 2;
  }
  const count = Number(flags.seeds);
  const from = flags.from === undefined ? 1 : Number(flags.from);
  let failed = 0;
  for (let seed = from; seed < from + count; seed++) {
    const result = await runSimulation({
      seed,
      chaosTicks: ticks,
      gatedMoves: flags.gatedMoves,
    });
    console.log(summary(result));
    if (result.kind === "failed") {
      failed++;
      console.log(`FAILED: ${result.failure}`);
      console.log(`Replay: ${replayCommand(seed, flags)}`);
    }
  }
  console.log(`${count - failed} of ${count} seeds passed`);
  return failed === 0 ? 0 : 1;
}

interface Flags {
  seeds?: string;
  seed?: string;
  from?: string;
  ticks?: string;
  trace: boolean;
  help: boolean;
  gatedMoves: boolean;
}

function parseFlags(args: string[]): Flags | undefined {
  const flags: Flags = { trace: false, help: false, gatedMoves: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--trace") flags.trace = true;
    else if (arg === "--help") flags.help = true;
    else if (arg === "--gated-moves") flags.gatedMoves = true;
    else if (["--seeds", "--seed", "--from", "--ticks"].includes(arg)) {
      const value = args[++i];
      if (value === undefined || !/^\d+$/.test(value)) return undefined;
      flags[arg.slice(2) as "seeds" | "seed" | "from" | "ticks"] = value;
    } else {
      return undefined;
    }
  }
  return flags;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
