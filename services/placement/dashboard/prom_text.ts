/**
 * Reads the Prometheus text exposition format (version 0.0.4), as the gateways' `/metrics`
 * serves it, into samples: enough for the dashboard to total counters and histograms across
 * gateways. Comments, `# HELP` and `# TYPE` lines are skipped; a malformed line is skipped and
 * counted, never thrown on (a scrape of another program's endpoint must not stop placement).
 *
 * @module
 */

/** One sample: a metric name, its labels and its value. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of one scrape, and how many lines could not be read. */
export interface Scrape {
  readonly samples: readonly Sample[];
  readonly malformed: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

/** Parses one scrape. */
export function parsePrometheusText(text: string): Scrape {
  const samples: Sample[] = [];
  let malformed = 0;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const sample = parseLine(line);
    if (sample === undefined) malformed++;
    else samples.push(sample);
  }
  return { samples, malformed };
}

function parseLine(line: string): Sample | undefined {
  const name = NAME.exec(line)?.[0];
  if (name === undefined) return undefined;
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith("{")) {
    rest = rest.slice(1);
    for (;;) {
      rest = rest.trimStart();
      if (rest.startsWith("}")) {
        rest = rest.slice(1);
        break;
      }
      const label = LABEL_NAME.exec(rest)?.[0];
      if (label === undefined) return undefined;
      rest = rest.slice(label.length).trimStart();
      if (!rest.startsWith('="')) return undefined;
      rest = rest.slice(2);
      let value = "";
      let closed = false;
      while (rest.length > 0) {
        const c = rest[0];
        rest = rest.slice(1);
        if (c === '"') {
          closed = true;
          break;
        }
        if (c === "\\") {
          const escaped = rest[0];
          rest = rest.slice(1);
          value += escaped === "n" ? "\n" : escaped ?? "";
        } else {
          value += c;
        }
      }
      if (!closed) return undefined;
      labels[label] = value;
      rest = rest.trimStart();
      if (rest.startsWith(",")) rest = rest.slice(1);
      else if (!rest.startsWith("}")) return undefined;
    }
  }
  const fields = rest.trim().split(/\s+/);
  if (fields.length < 1 || fields.length > 2 || fields[0] === "") return undefined;
  const value = parseValue(fields[0]);
  if (value === undefined) return undefined;
  return { name, labels, value };
}

function parseValue(text: string): number | undefined {
  // Go's parser takes these in any case; prom-client writes "Nan".
  switch (text.toLowerCase()) {
    case "+inf":
    case "inf":
      return Infinity;
    case "-inf":
      return -Infinity;
    case "nan":
      return NaN;
  }
  const value = Number(text);
  return Number.isNaN(value) ? undefined : value;
}
