// Checks the two real clocks: systemClock reads performance.now(), dateClock reads Date.now()
// (epoch milliseconds, the scale of gRPC deadlines); both fire and cancel timeouts.
import assert from "node:assert/strict";
import { dateClock, systemClock } from "./mod.ts";

Deno.test("dateClock reads epoch milliseconds and systemClock the monotonic clock", () => {
  const before = Date.now();
  const now = dateClock.now();
  assert.ok(now >= before && now <= Date.now());
  const mono = systemClock.now();
  assert.ok(Math.abs(mono - performance.now()) < 1000);
  assert.ok(now - mono > 1e12, "epoch milliseconds are far above the monotonic origin");
});

Deno.test("dateClock fires a timeout and cancels another", async () => {
  const fired: string[] = [];
  const cancelled = dateClock.setTimeout(() => fired.push("cancelled"), 5);
  dateClock.clearTimeout(cancelled);
  await new Promise<void>((resolve) =>
    dateClock.setTimeout(() => {
      fired.push("kept");
      resolve();
    }, 10)
  );
  assert.deepEqual(fired, ["kept"]);
});
