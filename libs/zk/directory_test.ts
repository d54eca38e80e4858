// Checks ZnodeDirectory on a scripted ZooKeeper: entries follow the children and their data, and
// `onChange` fires once for each change of the entries (a child with a value coming or going, a
// value that differs) and never for a watch that reports what was already known.
import assert from "node:assert/strict";
import type { NodeData, ZooKeeperClient } from "./client.ts";
import { ZnodeDirectory } from "./directory.ts";

/** Only the two watches the directory uses; the test fires them by hand. */
class ScriptedZooKeeper {
  children: ((children: string[] | undefined) => void) | undefined;
  readonly data = new Map<string, (node: NodeData | undefined) => void>();

  watchChildren(_path: string, onChange: (children: string[] | undefined) => void): () => void {
    this.children = onChange;
    return () => (this.children = undefined);
  }

  watchData(path: string, onChange: (node: NodeData | undefined) => void): () => void {
    this.data.set(path, onChange);
    return () => this.data.delete(path);
  }

  setData(path: string, text: string): void {
    const watcher = this.data.get(path);
    assert.ok(watcher !== undefined, `no watch on ${path}`);
    watcher({ data: new TextEncoder().encode(text), version: 0 });
  }
}

/** A started directory of text values on `zk`, counting its changes. */
function followed(zk: ScriptedZooKeeper, keepDeparted = false) {
  const counted = { changes: 0 };
  const directory = new ZnodeDirectory(zk as unknown as ZooKeeperClient, {
    path: "/nodes",
    decode: (data) => new TextDecoder().decode(data),
    warn: () => {},
    keepDeparted,
    onChange: () => counted.changes++,
  });
  directory.start();
  return { directory, counted };
}

Deno.test("ZnodeDirectory: onChange fires for each change of the entries, not for repeats", () => {
  const zk = new ScriptedZooKeeper();
  let changes = 0;
  const warnings: string[] = [];
  const directory = new ZnodeDirectory(zk as unknown as ZooKeeperClient, {
    path: "/nodes",
    decode: (data) => {
      const text = new TextDecoder().decode(data);
      return text.startsWith("bad") ? undefined : text;
    },
    warn: (message) => warnings.push(message),
    onChange: () => changes++,
  });
  directory.start();
  zk.children?.(undefined);
  assert.equal(changes, 0, "an absent directory is no change");
  zk.children?.(["n2", "n1"]);
  assert.equal(changes, 0, "listed children with no value yet are no entries");
  zk.setData("/nodes/n1", "127.0.0.1:1");
  zk.setData("/nodes/n2", "127.0.0.1:2");
  assert.equal(changes, 2, "each child's first value");
  assert.deepEqual(directory.entries(), [
    { id: "n1", value: "127.0.0.1:1" },
    { id: "n2", value: "127.0.0.1:2" },
  ]);
  zk.children?.(["n1", "n2"]);
  zk.setData("/nodes/n1", "127.0.0.1:1");
  assert.equal(changes, 2, "the same children and value again");
  zk.setData("/nodes/n1", "bad data");
  assert.equal(changes, 2, "a malformed value changes nothing");
  assert.deepEqual(warnings, ["Ignored a malformed registration"]);
  zk.setData("/nodes/n1", "127.0.0.1:9");
  assert.equal(changes, 3, "a moved child");
  assert.equal(directory.get("n1"), "127.0.0.1:9");
  zk.children?.(["n1"]);
  assert.equal(changes, 4, "a child left");
  assert.equal(directory.get("n2"), undefined);
  assert.equal(zk.data.has("/nodes/n2"), false, "the departed child's watch is gone");
  directory.close();
  assert.equal(zk.children, undefined);
});

Deno.test("ZnodeDirectory: a child's data deleted before it leaves the list is one change", () => {
  const zk = new ScriptedZooKeeper();
  const { directory, counted } = followed(zk);
  zk.children?.(["n1"]);
  zk.setData("/nodes/n1", "a");
  assert.equal(counted.changes, 1);
  zk.data.get("/nodes/n1")?.(undefined);
  assert.equal(counted.changes, 2, "the value went");
  assert.deepEqual(directory.entries(), []);
  zk.data.get("/nodes/n1")?.(undefined);
  assert.equal(counted.changes, 2, "a second report of the same deletion");
  zk.children?.([]);
  assert.equal(counted.changes, 2, "leaving the list after its value went is no further change");
  directory.close();
});

Deno.test("ZnodeDirectory: with keepDeparted, a child that leaves and comes back is two changes", () => {
  const zk = new ScriptedZooKeeper();
  const { directory, counted } = followed(zk, true);
  zk.children?.(["n1"]);
  zk.setData("/nodes/n1", "a");
  assert.equal(counted.changes, 1);
  zk.children?.([]);
  assert.equal(counted.changes, 2, "it left the entries");
  assert.equal(directory.get("n1"), "a", "its last value is kept");
  zk.children?.(["n1"]);
  assert.equal(counted.changes, 3, "back in the entries with its kept value");
  zk.setData("/nodes/n1", "a");
  assert.equal(counted.changes, 3, "its value again, unchanged");
  directory.close();
});
