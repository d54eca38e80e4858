/**
 * `tinykv trace ID`: one traced request's path across the services, read back from their logs.
 * A request sent with `--trace` (metadata `tinykv-trace`) is logged at each step with field
 * `trace`: the gateway receives and answers it, the kvnode it reaches takes it in, proposes it at
 * a log index (the leader) and answers it. This reads every `*.log` file of a log directory (the
 * dev cluster's `./data/logs`: JSON lines with `ts`, `level`, `msg`), keeps the lines of that
 * trace and orders them by time.
 *
 * @module
 */

/** One log line of a traced request. */
export interface TraceLine {
  /** When it was written (ISO 8601, as the logger wrote it). */
  readonly ts: string;
  /** The process that wrote it: the log file's name without its date (`kvnode-7901`). */
  readonly source: string;
  readonly msg: string;
  /** Every other field of the line. */
  readonly fields: Readonly<Record<string, unknown>>;
}

/** The lines of trace `id` in the `*.log` files of `dir`, oldest first. */
export async function readTrace(dir: string, id: string): Promise<TraceLine[]> {
  const lines: TraceLine[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".log")) continue;
    const source = entry.name.replace(/(-\d{4}-\d{2}-\d{2})?\.log$/, "");
    const text = await Deno.readTextFile(`${dir}/${entry.name}`);
    const needle = JSON.stringify(id);
    for (const line of text.split("\n")) {
      // Cheap filter first: most lines are not about this request.
      if (!line.includes(needle)) continue;
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue;
      }
      if (parsed.trace !== id) continue;
      const { ts, msg, level: _, trace: __, ...fields } = parsed;
      lines.push({ ts: String(ts), source, msg: String(msg), fields });
    }
  }
  return lines.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
}

/** One line per step: time, process, message and fields. */
export function formatTrace(lines: readonly TraceLine[]): string[] {
  const width = Math.max(0, ...lines.map((l) => l.source.length));
  return lines.map((l) => {
    const fields = Object.entries(l.fields).map(([k, v]) =>
      `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`
    );
    return [l.ts, l.source.padEnd(width), l.msg, ...fields].join("  ").trimEnd();
  });
}

/** A new trace id: `t-` and 12 random hex digits. */
export function newTraceId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return `t-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}
