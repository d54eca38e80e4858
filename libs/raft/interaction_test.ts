/**
 * Runs the interaction scripts of `testdata/interaction_scripts.ts` (etcd
 * rafttest style: command, `----`, expected trace) and compares each command's
 * output. To regenerate the expected output after an intended change, run
 * `deno run --allow-read --allow-write libs/raft/interaction_test.ts --rewrite`
 * and review the diff like code.
 */

import assert from "node:assert/strict";
import { Interpreter, parseScript, renderScript } from "./_interaction.ts";
import { SCRIPTS } from "./testdata/interaction_scripts.ts";

for (const [name, script] of Object.entries(SCRIPTS)) {
  Deno.test(`interaction script "${name}"`, () => {
    const interpreter = new Interpreter();
    for (const block of parseScript(script)) {
      const actual = interpreter.run(block.command).trim();
      assert.equal(actual, block.expected, `${name}: ${block.command}`);
    }
  });
}

function escapeTemplate(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("`", "\\`").replaceAll("${", "\\${");
}

function rewrite(): void {
  const parts: string[] = [];
  for (const [name, script] of Object.entries(SCRIPTS)) {
    const interpreter = new Interpreter();
    const blocks = parseScript(script).map((b) => ({
      command: b.command,
      expected: interpreter.run(b.command).trim(),
    }));
    parts.push(`  ${JSON.stringify(name)}: \`\n${escapeTemplate(renderScript(blocks))}\`,`);
  }
  const file = new URL("./testdata/interaction_scripts.ts", import.meta.url);
  const header = Deno.readTextFileSync(file).split("export const SCRIPTS")[0];
  Deno.writeTextFileSync(
    file,
    `${header}export const SCRIPTS: Record<string, string> = {\n${parts.join("\n")}\n};\n`,
  );
}

if (import.meta.main && Deno.args.includes("--rewrite")) rewrite();
