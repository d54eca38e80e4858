// Checks the loop-delay sampler: statistics over the last samples only (a ring), nearest-rank
// percentiles, nothing before the first sample; and, on the real loop, that a blocked loop shows
// up as a late sample (Deno's perf_hooks histogram does not see it).
import assert from "node:assert/strict";
import { LOOP_DELAY_SAMPLE_MS, LOOP_DELAY_SAMPLES, LoopDelaySampler } from "./loop_delay.ts";

Deno.test("LoopDelaySampler: statistics of the last samples, in seconds", () => {
  const sampler = new LoopDelaySampler({ samples: 100 });
  assert.equal(sampler.stats(), undefined, "no sample yet");
  // 1..100 ms, then 100 more of 1 ms push every earlier one out of the ring.
  for (let ms = 1; ms <= 100; ms++) sampler.record(ms);
  const all = sampler.stats()!;
  assert.deepEqual(
    [all.min, all.max, all.mean, all.p50, all.p90, all.p99],
    [0.001, 0.1, 0.0505, 0.05, 0.09, 0.099],
  );
  assert.ok(Math.abs(all.stddev - 0.028866) < 1e-6, `stddev ${all.stddev}`);
  for (let i = 0; i < 99; i++) sampler.record(1);
  assert.equal(sampler.stats()!.max, 0.1, "the 100 ms sample is still among the last 100");
  sampler.record(1);
  const flat = sampler.stats()!;
  assert.deepEqual([flat.min, flat.max, flat.stddev, flat.p99], [0.001, 0.001, 0, 0.001]);
  assert.equal(LOOP_DELAY_SAMPLE_MS * LOOP_DELAY_SAMPLES, 60_000, "a minute by default");
  assert.throws(() => new LoopDelaySampler({ intervalMs: 0 }), RangeError);
  assert.throws(() => new LoopDelaySampler({ samples: 0 }), RangeError);
});

Deno.test("LoopDelaySampler: a blocked loop is a late sample", async () => {
  const sampler = new LoopDelaySampler({ intervalMs: 20, samples: 50 });
  sampler.start();
  try {
    await new Promise((resolve) => setTimeout(resolve, 60));
    const blockedUntil = performance.now() + 300;
    while (performance.now() < blockedUntil) {
      // Hold the loop, as a long synchronous task would.
    }
    await new Promise((resolve) => setTimeout(resolve, 60));
    const stats = sampler.stats();
    assert.ok(stats !== undefined, "samples were taken");
    assert.ok(stats.max >= 0.2, `the 300 ms block shows: max ${stats.max} s`);
    assert.ok(stats.p50 < 0.2, `most samples were on time: p50 ${stats.p50} s`);
  } finally {
    sampler.stop();
  }
});
