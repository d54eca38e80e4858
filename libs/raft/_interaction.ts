/**
 * A small interpreter for interaction scripts in the manner of etcd's
 * rafttest (`testdata/*.txt` there; here scripts live in
 * `testdata/interaction_scripts.ts` so tests need no file permissions).
 *
 * A script is a sequence of blocks: a command line, `----`, and the expected
 * output, separated by blank lines. Commands:
 * `add-nodes <n> [learners=<id>,...] [quiesce=<ticks>]`, `campaign <id>`, `propose <id> <text>`,
 * `propose-conf-change <id> <addNode|addLearner|removeNode> <node>`,
 * `read-index <id> <request>`, `transfer-leader <id> <target>`,
 * `tick <id> [count]`, `wake <id> [leaderLost]`, `process-ready <id>`, `deliver-msgs [id]`,
 * `stabilize`, `status <id>`, `raft-log <id>`.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import type { Message } from "./messages.ts";
import { mulberry32 } from "./prng.ts";
import { RawNode, type Ready } from "./raw_node.ts";
import { MemoryStorage } from "./storage.ts";
import type { ConfChangeType, Entry, LogIndex, PeerId } from "./types.ts";

const decoder = new TextDecoder();

interface ScriptNode {
  readonly raw: RawNode;
  readonly storage: MemoryStorage;
}

/** One command and its expected output. */
export interface Block {
  readonly command: string;
  readonly expected: string;
}

/** Splits a script into blocks. */
export function parseScript(script: string): Block[] {
  const blocks: Block[] = [];
  for (const chunk of script.trim().split(/\n\s*\n(?=\S+.*\n----)/)) {
    const [command, ...rest] = chunk.split("\n");
    assert(rest[0] === "----", `Block "${command}" lacks a ---- line`);
    blocks.push({ command: command.trim(), expected: rest.slice(1).join("\n").trim() });
  }
  return blocks;
}

/** Renders blocks back into a script (used to rewrite expected output). */
export function renderScript(blocks: readonly Block[]): string {
  return blocks.map((b) => `${b.command}\n----\n${b.expected}`).join("\n\n") + "\n";
}

/** Runs scripts against fresh in-memory nodes. */
export class Interpreter {
  readonly #nodes = new Map<number, ScriptNode>();
  #mailbox: Message[] = [];

  /** Runs one command and returns its output. */
  run(command: string): string {
    const [name, ...args] = command.split(/\s+/);
    const num = (k: number) => Number(args[k]);
    switch (name) {
      case "add-nodes":
        return this.#addNodes(num(0), args.slice(1));
      case "campaign":
        return this.#raw(num(0)).campaign().kind;
      case "propose":
        return JSON.stringify(this.#raw(num(0)).propose(new TextEncoder().encode(args[1])));
      case "propose-conf-change": {
        const change = { type: args[1] as ConfChangeType, nodeId: num(2) as PeerId };
        return JSON.stringify(this.#raw(num(0)).proposeConfChange(change));
      }
      case "read-index":
        return JSON.stringify(this.#raw(num(0)).readIndex(num(1)));
      case "transfer-leader":
        return JSON.stringify(this.#raw(num(0)).transferLeader(num(1) as PeerId));
      case "wake":
        this.#raw(num(0)).wake(args[1] === "leaderLost");
        return "ok";
      case "tick":
        for (let k = 0; k < (args[1] === undefined ? 1 : num(1)); k++) this.#raw(num(0)).tick();
        return "ok";
      case "process-ready":
        return this.#processReady(num(0)).join("\n");
      case "deliver-msgs":
        return this.#deliver(args[0] === undefined ? undefined : num(0)).join("\n");
      case "stabilize":
        return this.#stabilize().join("\n");
      case "status":
        return formatStatus(this.#raw(num(0)));
      case "raft-log":
        return this.#raftLog(num(0));
      default:
        throw new Error(`Unknown command "${name}"`);
    }
  }

  #raw(id: number): RawNode {
    const node = this.#nodes.get(id);
    assert(node !== undefined, `No node ${id}`);
    return node.raw;
  }

  #addNodes(count: number, options: string[]): string {
    const learners = (options.find((o) => o.startsWith("learners="))?.slice(9).split(",") ?? [])
      .map((x) => Number(x) as PeerId);
    const quiesceTicks = Number(options.find((o) => o.startsWith("quiesce="))?.slice(8) ?? 0);
    const voters = Array.from({ length: count - learners.length }, (_, k) => (k + 1) as PeerId);
    for (const id of [...voters, ...learners]) {
      const storage = new MemoryStorage({ voters, learners });
      const raw = new RawNode({
        id,
        storage,
        prng: mulberry32(id),
        electionTicks: 10,
        quiesceTicks,
      });
      this.#nodes.set(id, { raw, storage });
    }
    return `voters=${voters.join(",")} learners=${learners.join(",")}`;
  }

  #processReady(id: number): string[] {
    const node = this.#nodes.get(id)!;
    if (!node.raw.hasReady()) return [];
    const ready = node.raw.ready();
    if (ready.snapshot) node.storage.applySnapshot(ready.snapshot);
    node.storage.append(ready.entries);
    if (ready.hardState) node.storage.setHardState(ready.hardState);
    this.#mailbox.push(...ready.messages);
    for (const entry of ready.committedEntries) {
      if (entry.type === "confChange") node.storage.setConfState(node.raw.applyConfChange(entry));
    }
    node.raw.advance(ready);
    return [`> ${id} handling Ready`, ...formatReady(ready).map((line) => `  ${line}`)];
  }

  #deliver(to: number | undefined): string[] {
    const out: string[] = [];
    const keep: Message[] = [];
    const mailbox = this.#mailbox;
    this.#mailbox = [];
    for (const m of mailbox) {
      if (to !== undefined && m.to !== to) {
        keep.push(m);
        continue;
      }
      out.push(`${formatMessage(m)}`);
      this.#nodes.get(m.to)?.raw.step(m);
    }
    this.#mailbox.unshift(...keep);
    return out.length === 0 ? [] : [`> delivering messages`, ...out.map((l) => `  ${l}`)];
  }

  #stabilize(): string[] {
    const out: string[] = [];
    for (let round = 0; round < 1000; round++) {
      const before = out.length;
      for (const id of [...this.#nodes.keys()].sort((a, b) => a - b)) {
        out.push(...this.#processReady(id));
      }
      out.push(...this.#deliver(undefined));
      if (out.length === before) return out;
    }
    throw new Error("stabilize did not settle");
  }

  #raftLog(id: number): string {
    const storage = this.#nodes.get(id)!.storage;
    const result = storage.entries(storage.firstIndex(), (storage.lastIndex() + 1) as LogIndex, {
      bytesMax: Number.MAX_SAFE_INTEGER,
    });
    assert(result.kind === "ok", "raft-log read failed");
    return result.entries.map(formatEntry).join("\n") || "(empty)";
  }
}

function formatEntry(e: Entry): string {
  const data = e.type === "normal" ? JSON.stringify(decoder.decode(e.data)) : "confChange";
  return `${e.term}/${e.index} ${data}`;
}

function formatEntries(entries: readonly Entry[]): string {
  return `[${entries.map(formatEntry).join(", ")}]`;
}

/** One line per message, etcd-style: `from->to type term=... fields`. */
export function formatMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case "append":
      return `${head} prev=${m.prevLogTerm}/${m.prevLogIndex} commit=${m.commit} entries=${
        formatEntries(m.entries)
      }`;
    case "appendResponse":
      return m.reject
        ? `${head} reject index=${m.index} hint=${m.hintTerm}/${m.hintIndex}`
        : `${head} index=${m.index}`;
    case "requestVote":
    case "requestPreVote":
      return `${head} last=${m.lastLogTerm}/${m.lastLogIndex}${m.transfer ? " transfer" : ""}`;
    case "requestVoteResponse":
    case "requestPreVoteResponse":
      return `${head}${m.reject ? " reject" : ""}`;
    case "heartbeat":
      return `${head} commit=${m.commit} round=${m.round}${m.quiesce ? " quiesce" : ""}`;
    case "heartbeatResponse":
      return `${head} round=${m.round}`;
    case "snapshot":
      return `${head} snapshot=${m.snapshot.metadata.term}/${m.snapshot.metadata.index}`;
    case "timeoutNow":
      return head;
  }
}

function formatReady(ready: Ready): string[] {
  const lines: string[] = [];
  if (ready.softState) {
    lines.push(`role=${ready.softState.role} leader=${ready.softState.leader ?? "none"}`);
  }
  if (ready.hardState) {
    const hs = ready.hardState;
    lines.push(`hard state: term=${hs.term} vote=${hs.vote ?? "none"} commit=${hs.commit}`);
  }
  if (ready.entries.length > 0) lines.push(`entries: ${formatEntries(ready.entries)}`);
  if (ready.committedEntries.length > 0) {
    lines.push(`committed: ${formatEntries(ready.committedEntries)}`);
  }
  for (const m of ready.messages) lines.push(`send ${formatMessage(m)}`);
  for (const s of ready.readStates) lines.push(`read state: ${JSON.stringify(s)}`);
  return lines;
}

function formatStatus(raw: RawNode): string {
  const s = raw.status();
  const lines = [
    `${s.role} term=${s.term} leader=${
      s.leader ?? "none"
    } commit=${s.commit} applied=${s.applied}` +
    (raw.quiesced ? " quiesced" : ""),
    `voters=${s.confState.voters.join(",")} learners=${
      s.confState.learners.join(",")
    } epoch=${s.confState.epoch}`,
  ];
  for (const p of s.peers) lines.push(`  ${p.id}: ${p.state} match=${p.match} next=${p.next}`);
  return lines.join("\n");
}
