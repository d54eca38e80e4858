/**
 * Reading systemd unit files as the deployment test needs them: the `[Service]` keys that decide
 * how a process starts (`ExecStart`, `Environment`, `User`, `Group`, `WorkingDirectory`), with
 * systemd's own rules for continued lines, quoting and `$VAR`/`${VAR}` expansion
 * (systemd.service(5) "Command lines", systemd.exec(5) `Environment=`). systemd itself does not
 * run inside the test's network namespaces, so the test starts each process from the command line
 * its unit names.
 *
 * Not read: specifiers (`%h`, …; a unit that uses one is refused, except `%%`), `EnvironmentFile=`
 * (returned for the caller to decide), and the sandboxing keys.
 *
 * @module
 */

/** A unit file's sections, each a list of `key=value` in file order. */
export type UnitFile = ReadonlyMap<string, ReadonlyArray<readonly [string, string]>>;

/** Parses a unit file's text; throws naming the line when it is not one. */
export function parseUnitFile(text: string): UnitFile {
  const sections = new Map<string, Array<[string, string]>>();
  let current: Array<[string, string]> | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const number = i + 1;
    let line = lines[i].trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    // A line ending in a backslash continues on the next, joined by a space; comment lines
    // between the parts are skipped.
    while (line.endsWith("\\")) {
      line = line.slice(0, -1);
      i++;
      while (i < lines.length && /^\s*[#;]/.test(lines[i])) i++;
      if (i >= lines.length) break;
      line += ` ${lines[i].trim()}`;
    }
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header !== null) {
      current = sections.get(header[1]) ?? [];
      sections.set(header[1], current);
      continue;
    }
    const eq = line.indexOf("=");
    if (eq < 1 || current === undefined) {
      throw new Error(`Unit file line ${number} is neither a [section] nor key=value: ${line}`);
    }
    current.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return sections;
}

/**
 * Splits `text` into words as systemd does: white space separates words; double and single
 * quotes group (a backslash escapes the next character inside double quotes and outside quotes).
 */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === '"' || c === "'") {
      const end = closingQuote(text, i);
      const inner = text.slice(i + 1, end);
      word = (word ?? "") + (c === '"' ? inner.replace(/\\(.)/g, "$1") : inner);
      i = end;
    } else if (c === "\\" && i + 1 < text.length) {
      word = (word ?? "") + text[++i];
    } else {
      word = (word ?? "") + c;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

function closingQuote(text: string, open: number): number {
  for (let i = open + 1; i < text.length; i++) {
    if (text[i] === "\\" && text[open] === '"') {
      i++;
    } else if (text[i] === text[open]) {
      return i;
    }
  }
  throw new Error(`Unterminated quote in: ${text}`);
}

/** The environment `Environment=` lines set, in order (a later assignment wins). */
export function unitEnvironment(unit: UnitFile): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const [key, value] of unit.get("Service") ?? []) {
    if (key !== "Environment") continue;
    for (const assignment of splitWords(value)) {
      const eq = assignment.indexOf("=");
      if (eq < 1) throw new Error(`Environment= holds no VAR=value: "${assignment}"`);
      environment[assignment.slice(0, eq)] = assignment.slice(eq + 1);
    }
  }
  return environment;
}

/** How a unit starts its process. */
export interface UnitCommand {
  /** The program and its arguments, expanded. */
  readonly argv: readonly string[];
  readonly environment: Readonly<Record<string, string>>;
  readonly user: string | undefined;
  readonly group: string | undefined;
  readonly workingDirectory: string | undefined;
  /** `EnvironmentFile=` paths (a leading `-`: may be missing), not read here. */
  readonly environmentFiles: readonly string[];
}

/**
 * The command `ExecStart=` runs, with `Environment=` (overridden by `overrides`, as a drop-in
 * would) expanded: `${VAR}` in place, a word that is exactly `$VAR` split at white space into
 * words. The prefixes `-`, `:`, `+` and `!` are dropped; `@` and specifiers other than `%%` are
 * refused. Throws when the unit has no `ExecStart=`, or more than one.
 */
export function unitCommand(
  unit: UnitFile,
  overrides: Readonly<Record<string, string>> = {},
): UnitCommand {
  const service = unit.get("Service") ?? [];
  const starts = service.filter(([key, value]) => key === "ExecStart" && value !== "");
  if (starts.length !== 1) {
    throw new Error(`A unit needs exactly one ExecStart=, this one has ${starts.length}`);
  }
  const environment = { ...unitEnvironment(unit), ...overrides };
  let line = starts[0][1];
  while (/^[-:+!]/.test(line)) line = line.slice(1);
  if (line.startsWith("@")) throw new Error(`ExecStart= with "@" is not supported: ${line}`);
  const specifier = /%[^%]/.exec(line.replaceAll("%%", ""));
  if (specifier !== null) throw new Error(`Specifier "${specifier[0]}" is not supported: ${line}`);
  const argv = splitWords(line.replaceAll("%%", "%")).flatMap((word) => {
    const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(word);
    if (whole !== null) return splitWords(environment[whole[1]] ?? "");
    return [word.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name) => environment[name] ?? "")];
  });
  const get = (key: string) => service.findLast(([k]) => k === key)?.[1];
  return {
    argv,
    environment,
    user: get("User"),
    group: get("Group"),
    workingDirectory: get("WorkingDirectory"),
    environmentFiles: service.filter(([k]) => k === "EnvironmentFile").map(([, v]) => v),
  };
}
