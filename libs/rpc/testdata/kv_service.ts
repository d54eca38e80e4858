/**
 * An in-memory implementation of the `tinykv.v1.KV` service for libs/rpc tests, written with
 * `bindService` and typed handlers. Some keys trigger behaviours the tests need:
 *
 * - `sleep`: waits until the call is cancelled or its deadline passes;
 * - `throw`: throws a plain `Error` (a bug, so INTERNAL);
 * - `fail:<kind>`: returns the failure `<kind>` of the status table, e.g. `fail:unavailable`.
 *
 * @module
 */

import {
  type CompareAndSwapResponse,
  KVService,
  type ScanResponse,
} from "../../../proto/gen/tinykv/v1.ts";
import {
  bindService,
  rpcFailure,
  type RpcFailureKind,
  rpcOk,
  type RpcResult,
  type ServiceBinding,
  STATUS_TABLE,
  type UnexpectedErrorHook,
} from "../mod.ts";

/** The most keys one Scan may ask for (docs/design.md "Scan"). */
const SCAN_LIMIT_MAX = 10_000;

const decoder = new TextDecoder();

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

function isFailureKind(text: string): text is RpcFailureKind {
  return Object.hasOwn(STATUS_TABLE, text);
}

/** Returns the behaviour a special key asks for, or undefined for an ordinary key. */
async function special(
  key: Uint8Array,
  signal: AbortSignal,
): Promise<RpcResult<never> | undefined> {
  const text = decoder.decode(key);
  if (text === "sleep") {
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
    return rpcFailure("unavailable", "Gave up after the caller left");
  }
  if (text === "throw") throw new Error("Injected bug");
  if (text.startsWith("fail:")) {
    const kind = text.slice("fail:".length);
    if (isFailureKind(kind)) return rpcFailure(kind, `Injected "${kind}"`);
  }
  return undefined;
}

/** Builds the test KV service over a fresh in-memory map. */
export function kvTestService(
  options: { onUnexpectedError?: UnexpectedErrorHook } = {},
): ServiceBinding {
  const data = new Map<string, Uint8Array>();
  return bindService(KVService, {
    Get: async (request, context) => {
      const injected = await special(request.key, context.signal);
      if (injected !== undefined) return injected;
      const value = data.get(hex(request.key));
      return rpcOk({ found: value !== undefined, value: value ?? new Uint8Array(0) });
    },
    Put: async (request, context) => {
      const injected = await special(request.key, context.signal);
      if (injected !== undefined) return injected;
      data.set(hex(request.key), request.value.slice());
      return rpcOk({});
    },
    Delete: async (request, context) => {
      const injected = await special(request.key, context.signal);
      if (injected !== undefined) return injected;
      return rpcOk({ deleted: data.delete(hex(request.key)) });
    },
    Append: async (request, context) => {
      const injected = await special(request.key, context.signal);
      if (injected !== undefined) return injected;
      const old = data.get(hex(request.key)) ?? new Uint8Array(0);
      const value = new Uint8Array(old.length + request.value.length);
      value.set(old);
      value.set(request.value, old.length);
      data.set(hex(request.key), value);
      return rpcOk({ length: value.length });
    },
    CompareAndSwap: async (request, context) => {
      const injected = await special(request.key, context.signal);
      if (injected !== undefined) return injected;
      const current = data.get(hex(request.key));
      const matches = request.expectAbsent
        ? current === undefined
        : current !== undefined && hex(current) === hex(request.expected);
      if (matches && request.delete) data.delete(hex(request.key));
      else if (matches) data.set(hex(request.key), request.value.slice());
      const response: CompareAndSwapResponse = {
        succeeded: matches,
        found: current !== undefined,
        current: current ?? new Uint8Array(0),
      };
      return rpcOk(response);
    },
    Scan: (request) => {
      if (request.limit < 1 || request.limit > SCAN_LIMIT_MAX) {
        return rpcFailure(
          "invalidArgument",
          `Scan limit is ${request.limit}: expected 1 to ${SCAN_LIMIT_MAX} (SCAN_LIMIT_MAX)`,
        );
      }
      const start = hex(request.start);
      const end = hex(request.end);
      const keys = [...data.keys()]
        .filter((k) => k >= start && (end === "" || k < end))
        .sort();
      const page = keys.slice(0, request.limit);
      const response: ScanResponse = {
        kvs: page.map((k) => ({ key: unhex(k), value: data.get(k) ?? new Uint8Array(0) })),
        more: keys.length > page.length,
        next: keys.length > page.length ? unhex(keys[page.length]) : new Uint8Array(0),
      };
      return rpcOk(response);
    },
    Txn: () => rpcFailure("unimplemented", "The test KV service has no Txn"),
    Watch: (call) => call.end(),
  }, options);
}
