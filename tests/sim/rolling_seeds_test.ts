// Tests of the rolling seed range: it moves by its length every UTC day, and the environment
// variable replaces its start.
import assert from "node:assert/strict";
import { rollingEnd, rollingRange } from "./rolling_seeds.ts";

const unset = () => undefined;

Deno.test("rollingRange: consecutive UTC days run adjacent ranges, one range all day", () => {
  const morning = rollingRange({
    variable: "X",
    count: 400,
    now: new Date("2026-12-03T00:00:00Z"),
    env: unset,
  });
  const evening = rollingRange({
    variable: "X",
    count: 400,
    now: new Date("2026-12-03T23:59:59Z"),
    env: unset,
  });
  const next = rollingRange({
    variable: "X",
    count: 400,
    now: new Date("2026-12-04T00:00:00Z"),
    env: unset,
  });
  assert.deepEqual(evening, morning);
  assert.equal(morning.start, 20_790 * 400);
  assert.equal(morning.source, "UTC day 20790 (2026-12-03) x 400");
  assert.equal(next.start, rollingEnd(morning) + 1);
});

Deno.test("rollingRange: the environment variable sets the start; a bad one is refused", () => {
  const env = (value: string) => (name: string) => name === "TINYKV_SIM_START" ? value : undefined;
  const set = rollingRange({ variable: "TINYKV_SIM_START", count: 10, env: env("778000") });
  assert.deepEqual(set, { start: 778_000, count: 10, source: "TINYKV_SIM_START=778000" });
  assert.throws(
    () => rollingRange({ variable: "TINYKV_SIM_START", count: 10, env: env("-5") }),
    /Cannot parse TINYKV_SIM_START="-5"/,
  );
  const empty = rollingRange({ variable: "TINYKV_SIM_START", count: 10, env: env("") });
  assert.match(empty.source, /^UTC day /);
});
