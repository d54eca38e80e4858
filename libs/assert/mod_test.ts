// Checks the shared assertions: a holding condition passes, a broken one throws AssertionError
// with its message (built lazily when given as a function), and unreachable() always throws.
import assertNode from "node:assert/strict";
import { assert, AssertionError, unreachable } from "./mod.ts";

Deno.test("assert() passes a holding condition and throws AssertionError otherwise", () => {
  assert(1 + 1 === 2, "arithmetic");
  assertNode.throws(() => assert(false, "Log start 5 is past applied 3"), {
    name: "AssertionError",
    message: "Log start 5 is past applied 3",
  });
  let built = 0;
  assert(true, () => `never built ${++built}`);
  assertNode.equal(built, 0);
  assertNode.throws(() => assert(0, () => "lazy"), AssertionError);
});

Deno.test("unreachable() names what it got", () => {
  assertNode.throws(() => unreachable("x" as never, "stream state"), {
    name: "AssertionError",
    message: 'Unknown stream state: "x"',
  });
});
