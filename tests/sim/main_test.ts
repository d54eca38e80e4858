// Tests of the simulation's command line parsing.
import assert from "node:assert/strict";
import { parseArgs, replayCommand } from "./main.ts";

Deno.test("parseArgs() reads seeds, start, workers and a single traced seed", () => {
  const options = parseArgs(["--seeds", "10000", "--start", "5", "--workers", "3"]);
  assert.ok(typeof options !== "string");
  assert.equal(options.seeds, 10000);
  assert.equal(options.start, 5);
  assert.equal(options.workers, 3);
  const one = parseArgs(["--seed", "1234", "--trace"]);
  assert.ok(typeof one !== "string");
  assert.equal(one.seed, 1234);
  assert.equal(one.trace, true);
});

Deno.test("parseArgs() rejects unknown arguments and bad numbers", () => {
  assert.equal(typeof parseArgs(["--bogus"]), "string");
  assert.equal(typeof parseArgs(["--seeds", "x"]), "string");
  assert.equal(typeof parseArgs(["--workers", "0"]), "string");
});

Deno.test("replayCommand() is the one-line task command", () => {
  assert.equal(replayCommand(1234), "deno task sim --seed 1234 --trace");
});
