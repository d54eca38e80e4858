/**
 * An echo implementation of the `tinykv.testdata.v1.Sample` fixture service (proto/testdata/), for
 * libs/rpc tests that need streaming methods:
 *
 * - `Echo` answers its request;
 * - `Watch` sends 10 messages, `numbers` = `[0]` to `[9]`, and ends;
 * - `Upload` reads the whole stream and answers `Empty`;
 * - `Chat` answers every message with itself, and ends when the client ends.
 *
 * @module
 */

import type * as grpc from "@grpc/grpc-js";
import {
  type Empty,
  SampleService,
  type Scalars,
  type Shapes,
} from "../../../proto/testdata/gen/tinykv/testdata/v1.ts";
import { bindService, rpcOk, type ServiceBinding } from "../mod.ts";

/** How many messages `Watch` sends. */
const WATCH_MESSAGES = 10;

/** A `Shapes` with only `numbers` set. */
export function shapesOf(numbers: number[]): Shapes {
  return { inners: [], numbers, blobs: [], byName: {}, byNumber: {}, color: 0 };
}

/** Builds the echo Sample service. */
export function sampleTestService(): ServiceBinding {
  return bindService(SampleService, {
    Echo: (request) => rpcOk(request),
    Watch: (call: grpc.ServerWritableStream<Empty, Shapes>) => {
      for (let i = 0; i < WATCH_MESSAGES; i++) call.write(shapesOf([i]));
      call.end();
    },
    Upload: (
      call: grpc.ServerReadableStream<Scalars, Empty>,
      callback: grpc.sendUnaryData<Empty>,
    ) => {
      call.on("data", () => {});
      call.on("end", () => callback(null, {}));
      call.on("error", () => {});
    },
    Chat: (call: grpc.ServerDuplexStream<Shapes, Shapes>) => {
      call.on("data", (message: Shapes) => call.write(message));
      call.on("end", () => call.end());
      // A client that cancels its stream is no failure of the server's.
      call.on("error", () => {});
    },
  });
}
