import assert from "node:assert/strict";
import { addSelfTimes, type CpuProfile, type SelfTimes } from "./cpuprofile.ts";

const frame = (functionName: string, lineNumber = 0) => ({
  functionName,
  url: "file:///repo/services/kvnode/driver.ts",
  lineNumber,
});

// root → turn → write → commit, and root → turn (self), and root → (idle).
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame("(root)"), children: [2, 5] },
    { id: 2, callFrame: frame("turn", 9), children: [3] },
    { id: 3, callFrame: frame("write", 19), children: [4] },
    { id: 4, callFrame: frame("commit", 29) },
    { id: 5, callFrame: { functionName: "(idle)", url: "", lineNumber: -1 } },
  ],
  samples: [4, 4, 2, 5, 3],
  timeDeltas: [100, 100, 50, 1000, 20],
};

function times(lastUs?: number): SelfTimes {
  const into = { byFunction: new Map(), byFile: new Map(), byFunctionTotal: new Map(), totalUs: 0 };
  addSelfTimes(profile, into, lastUs);
  return into;
}

Deno.test("self time goes to the sampled function, total time to every function on its stack", () => {
  const { byFunction, byFunctionTotal, totalUs } = times();
  assert.equal(totalUs, 1270);
  assert.equal(byFunction.get("commit services/kvnode/driver.ts:30"), 200);
  assert.equal(byFunction.get("turn services/kvnode/driver.ts:10"), 50);
  assert.equal(byFunctionTotal.get("turn services/kvnode/driver.ts:10"), 270);
  assert.equal(byFunctionTotal.get("write services/kvnode/driver.ts:20"), 220);
  assert.equal(byFunctionTotal.get("commit services/kvnode/driver.ts:30"), 200);
  assert.equal(byFunctionTotal.get("(idle) (native):0"), 1000);
  assert.equal(byFunctionTotal.has("(root) services/kvnode/driver.ts:1"), false);
});

Deno.test("--last counts only the profile's final microseconds", () => {
  const { byFunctionTotal, totalUs } = times(1020);
  assert.equal(totalUs, 1020);
  assert.equal(byFunctionTotal.get("turn services/kvnode/driver.ts:10"), 20);
  assert.equal(byFunctionTotal.has("commit services/kvnode/driver.ts:30"), false);
});
