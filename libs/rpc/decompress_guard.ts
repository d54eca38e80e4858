/**
 * A compressed request that cannot be decompressed is answered, not a crash. grpc-js 1.14.3's
 * server decompresses a message flagged as compressed (`grpc-encoding: gzip` or `deflate`) with a
 * zlib stream that has no `error` listener, so one malformed message — from any client that can
 * open a connection, before any handler or credential check — ends the process with an uncaught
 * `incorrect header check`. {@linkcode guardDecompression} replaces that step of its server calls
 * (`BaseServerInterceptingCall.prototype.decompressMessage`, an internal of grpc-js read through
 * its build path; `decompress_guard_test.ts` fails if a grpc-js update moves it) with one that
 * answers, as the gRPC spec says for a message that cannot be decompressed, INTERNAL naming the
 * reason. It also refuses what grpc-js silently reads as uncompressed: a message flagged as
 * compressed on a call without `grpc-encoding`, and a flag other than 0 or 1 (INTERNAL too). A
 * message that decompresses to more than the server's message limit is RESOURCE_EXHAUSTED, as
 * before.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import zlib from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import serverInterceptors from "@grpc/grpc-js/build/src/server-interceptors.js";

/** The part of grpc-js's server call the guard replaces. */
interface ServerCallInternals {
  maxReceiveMessageSize: number;
  decompressMessage(message: Buffer, encoding: string): Buffer | Promise<Buffer>;
}

/** A status grpc-js's server call sends when its promise rejects with it. */
interface CallStatus {
  code: grpc.status;
  details: string;
}

let guarded = false;

/** Installs the guard on grpc-js's server calls (once; later calls do nothing). */
export function guardDecompression(): void {
  if (guarded) return;
  const base = (serverInterceptors as { BaseServerInterceptingCall?: { prototype: unknown } })
    .BaseServerInterceptingCall;
  const prototype = base?.prototype as ServerCallInternals | undefined;
  if (typeof prototype?.decompressMessage !== "function") {
    throw new Error(
      "grpc-js has no BaseServerInterceptingCall.prototype.decompressMessage: " +
        "libs/rpc/decompress_guard.ts needs updating for this grpc-js",
    );
  }
  const original = prototype.decompressMessage;
  // The replacement takes what 1.14.3's takes: the whole frame (its 5-byte prefix first) and the
  // call's encoding. A grpc-js whose method looks otherwise needs this module looked at again.
  const source = String(original);
  if (!source.includes("message.subarray(5)") || !source.includes("createGunzip")) {
    throw new Error(
      "grpc-js's decompressMessage is not the one libs/rpc/decompress_guard.ts was written for " +
        "(grpc-js 1.14.3): check what it takes before patching it",
    );
  }
  prototype.decompressMessage = function (
    this: ServerCallInternals,
    message: Buffer,
    encoding: string,
  ) {
    const flag = message[0];
    if (flag > 1) {
      return Promise.reject(internal(`The request's message has compressed flag ${flag}`));
    }
    if (flag === 1 && encoding === "identity") {
      return Promise.reject(
        internal("The request's message is flagged as compressed, but the call names no encoding"),
      );
    }
    if (encoding !== "gzip" && encoding !== "deflate") {
      return original.call(this, message, encoding);
    }
    return decompress(message.subarray(5), encoding, this.maxReceiveMessageSize);
  };
  guarded = true;
}

/** `contents` inflated, within `maxBytes` (-1: unbounded). */
function decompress(contents: Buffer, encoding: "gzip" | "deflate", maxBytes: number) {
  const stream = encoding === "deflate" ? zlib.createInflate() : zlib.createGunzip();
  return new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let total = 0;
    let settled = false;
    const fail = (status: CallStatus) => {
      if (settled) return;
      settled = true;
      stream.destroy();
      reject(status);
    };
    stream.on("data", (chunk: Buffer) => {
      if (settled) return;
      parts.push(chunk);
      total += chunk.byteLength;
      if (maxBytes !== -1 && total > maxBytes) {
        fail({
          code: grpc.status.RESOURCE_EXHAUSTED,
          details: `Received message that decompresses to a size larger than ${maxBytes}`,
        });
      }
    });
    stream.on("error", (error: Error) => {
      fail(internal(`The request's ${encoding} message cannot be decompressed: ${error.message}`));
    });
    stream.on("end", () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(parts));
    });
    stream.end(contents);
  });
}

function internal(details: string): CallStatus {
  return { code: grpc.status.INTERNAL, details };
}
