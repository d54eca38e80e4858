/**
 * The clock `libs/client` reads by default where callers pass absolute deadlines in.
 *
 * @module
 */
import { type Clock, systemClock } from "@tinykv/timer";

/**
 * The real clock on the scale of `Date.now()` (epoch milliseconds), with the runtime's timeouts.
 * Deadlines reach the router as epoch milliseconds, because gRPC deadlines are (the gateway's
 * `HandlerContext.deadlineMs`), so the router must read time on that scale. Unlike
 * {@linkcode systemClock} it follows steps of the wall clock; the router only ever compares it
 * with deadlines taken on the same scale, as it did when it called `Date.now()` itself.
 */
export const dateClock: Clock = Object.freeze({
  now: (): number => Date.now(),
  setTimeout: systemClock.setTimeout,
  clearTimeout: systemClock.clearTimeout,
});
