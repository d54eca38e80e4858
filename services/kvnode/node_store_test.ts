// Checks NodeStore's kinds of write on a real LMDB environment: a durable write runs its work
// later, in lmdb-js's batch, and resolves once synced, or during the call with `now`; a write with
// `durable: false` runs and commits during the call, on this thread, even while durable writes are
// queued; a failing one applies nothing. All survive a reopen (a process crash loses none).
import assert from "node:assert/strict";
import { NodeStore } from "./node_store.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) =>
  b === undefined ? undefined : new TextDecoder().decode(b);

/** A write that notes `name` in `order` when its work runs and stores `value` at `key`. */
function recordedWrite(
  store: NodeStore,
  order: string[],
  name: string,
  [key, value]: [string, string],
  options?: { durable?: boolean },
): Promise<string | undefined> {
  return store.write(() => {
    order.push(name);
    store.put(enc(key), enc(value));
    return dec(store.get(enc(key)));
  }, options);
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tinykv-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("NodeStore.write({ durable: false }) commits during the call, beside queued durable writes", async () => {
  await withDir(async (dir) => {
    const store = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
    await store.write(() => store.put(enc("a"), enc("1")));
    // A durable write queued first runs later, in the batch; the deferred one runs now.
    const order: string[] = [];
    const durable = recordedWrite(store, order, "durable", ["b", "2"]);
    const deferred = recordedWrite(store, order, "deferred", ["c", "3"], { durable: false });
    assert.deepEqual(order, ["deferred"]);
    assert.equal(dec(store.get(enc("c"))), "3", "committed: visible to reads at once");
    assert.equal(await deferred, "3");
    await durable;
    assert.deepEqual(order, ["deferred", "durable"]);
    // While lmdb-js's writer thread holds a durable batch (started from `setImmediate`; its work
    // runs when the writer gets to it), a write on this thread waits for it or goes first: both
    // commit whole.
    const big = new Uint8Array(512 * 1024).fill(7);
    const batch = store.write(() => {
      for (let i = 0; i < 16; i++) store.put(enc(`big${i}`), big);
    });
    await new Promise((resolve) => setImmediate(resolve));
    await store.write(() => store.put(enc("beside"), enc("small")), { durable: false });
    assert.equal(dec(store.get(enc("beside"))), "small");
    await batch;
    for (let i = 0; i < 16; i++) assert.equal(store.get(enc(`big${i}`))?.length, big.length);
    // A durable write `now` runs during the call too.
    let ranNow = false;
    const now = store.write(() => {
      ranNow = true;
      store.put(enc("d"), enc("4"));
    }, { now: true });
    assert.ok(ranNow);
    await now;
    await assert.rejects(
      store.write(() => {
        store.put(enc("d"), enc("lost"));
        throw new Error("boom");
      }, { now: true }),
      /boom/,
    );
    assert.equal(dec(store.get(enc("d"))), "4");
    // Deferred writes in a row, then one that throws: it applies nothing.
    for (let i = 0; i < 50; i++) {
      await store.write(() => store.put(enc(`n${i}`), enc(String(i))), { durable: false });
    }
    await assert.rejects(
      store.write(() => {
        store.put(enc("a"), enc("lost"));
        throw new Error("boom");
      }, { durable: false }),
      /boom/,
    );
    assert.equal(dec(store.get(enc("a"))), "1");
    await store.close();
    const again = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
    try {
      assert.equal(dec(again.get(enc("a"))), "1");
      assert.equal(dec(again.get(enc("b"))), "2");
      assert.equal(dec(again.get(enc("c"))), "3");
      assert.equal(dec(again.get(enc("d"))), "4");
      assert.equal(dec(again.get(enc("beside"))), "small");
      assert.equal(again.get(enc("big15"))?.length, 512 * 1024);
      assert.equal(dec(again.get(enc("n49"))), "49");
    } finally {
      await again.close();
    }
  });
});

Deno.test("NodeStore.write({ durable: false, hold }) commits once its hold settles; writes started meanwhile wait", async () => {
  await withDir(async (dir) => {
    const store = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
    await store.write(() => store.put(enc("a"), enc("1")));
    // A view opened before keeps to what was committed then, while a write is held open.
    const view = store.readView();
    const gate = Promise.withResolvers<void>();
    const order: string[] = [];
    let holdCalls = 0;
    let heldDone = false;
    const held = store.write(() => {
      order.push("held");
      store.put(enc("h"), enc("held"));
      store.put(enc("a"), enc("changed"));
      return "result";
    }, {
      durable: false,
      hold: () => {
        holdCalls++;
        return gate.promise;
      },
    }).then((value) => {
      heldDone = true;
      return value;
    });
    assert.equal(holdCalls, 1, "hold is called inside the write, right after its work");
    // Writes of every kind started while it is held wait for its commit: lmdb-js would run them
    // inside the held transaction.
    const durable = recordedWrite(store, order, "durable", ["b", "2"]);
    const deferred = recordedWrite(store, order, "deferred", ["c", "3"], { durable: false });
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, ["held"], "nothing else ran while the transaction was held");
    assert.equal(heldDone, false, "not committed before its hold settled");
    assert.equal(dec(view.get(enc("a"))), "1", "a view does not read the held transaction");
    assert.equal(view.get(enc("h")), undefined);
    assert.deepEqual([...view.range(enc("a"), enc("z"))].map((p) => dec(p.value)), ["1"]);
    view.close();
    gate.resolve();
    assert.equal(await held, "result");
    await Promise.all([durable, deferred]);
    assert.deepEqual(order.slice(0, 1), ["held"]);
    assert.deepEqual([...order].sort(), ["deferred", "durable", "held"]);
    // A hold that gives nothing to wait for commits at once.
    await store.write(() => store.put(enc("e"), enc("5")), {
      durable: false,
      hold: () => undefined,
    });
    assert.equal(dec(store.get(enc("e"))), "5");
    await store.close();
    const again = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
    try {
      for (
        const [key, value] of [["a", "changed"], ["h", "held"], ["b", "2"], ["c", "3"], ["e", "5"]]
      ) {
        assert.equal(dec(again.get(enc(key))), value, key);
      }
    } finally {
      await again.close();
    }
  });
});

Deno.test("NodeStore.write({ durable: false, hold }) is not held while a write of lmdb-js's writer thread is under way", async () => {
  await withDir(async (dir) => {
    const store = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
    const big = new Uint8Array(512 * 1024).fill(7);
    const batch = store.write(() => {
      for (let i = 0; i < 16; i++) store.put(enc(`big${i}`), big);
    });
    let holdCalls = 0;
    // Its callbacks may be queued for this thread; a held transaction would take them in.
    await store.write(() => store.put(enc("beside"), enc("small")), {
      durable: false,
      hold: () => {
        holdCalls++;
        return new Promise((resolve) => setTimeout(resolve, 10));
      },
    });
    assert.equal(holdCalls, 0);
    assert.equal(dec(store.get(enc("beside"))), "small");
    await batch;
    assert.equal(store.get(enc("big15"))?.length, big.length);
    await store.close();
  });
});

Deno.test("NodeStore.write({ hold }) of a durable write ignores the hold: nothing waits on its sync", async () => {
  await withDir(async (dir) => {
    const store = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
    let holdCalls = 0;
    const never = () => {
      holdCalls++;
      return new Promise<void>(() => {});
    };
    await store.write(() => store.put(enc("d"), enc("durable")), { hold: never });
    await store.write(() => store.put(enc("n"), enc("now")), { now: true, hold: never });
    assert.equal(holdCalls, 0);
    assert.equal(dec(store.get(enc("d"))), "durable");
    assert.equal(dec(store.get(enc("n"))), "now");
    await store.close();
  });
});
