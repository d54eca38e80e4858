/**
 * TLS and credentials on TinyKV's gRPC ports. A server may serve TLS (its certificate and key) and
 * may require a credential on every call and stream: the token of libs/auth in the
 * `authorization` metadata (`Bearer <token>`), verified before the handler runs (grpc-js has
 * decoded a unary request by then, within the message bound; a stream's messages stay unread),
 * then checked against the roles the method allows, when a call or stream opens (a stream opened
 * with a token lives on past its expiry; tokens are long-lived). A refused call is
 * answered UNAUTHENTICATED (no token, or one the server does not accept) or PERMISSION_DENIED (a
 * role the method does not allow), with a message, and reaches no handler.
 *
 * Tokens rather than client certificates: a token carries the caller's role and identity to the
 * handler, and the CLI takes one file (`--token-file`). A grpc-js server under Deno 2.9.3 can
 * require client certificates when it is given its CA (security_test.ts checks that it still can),
 * so mutual TLS could be added under the tokens.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { authorize, type Claims, type Role, type Verified } from "@tinykv/auth";
import { type RpcFailure, rpcFailure } from "./status.ts";

/** The metadata key of a call's credential. */
export const AUTHORIZATION_METADATA = "authorization";

/** A server's TLS identity and the CA of the cluster (PEM). */
export interface ServerTls {
  readonly cert: string;
  readonly key: string;
  /**
   * The cluster's CA. Required: with Deno 2.9.3 a grpc-js TLS server given no CA answers the
   * handshake with garbage ("excessive message size").
   */
  readonly ca: string;
}

/** What a client trusts (PEM of the CA), and the name a server's certificate must carry. */
export interface ClientTls {
  readonly ca: string;
  /**
   * The name checked against the server's certificate when it differs from the address's host
   * (always when connecting by IP: Deno's TLS refuses an IP address as server name).
   */
  readonly serverName?: string;
}

/** How a client connects and what it sends: `createGrpcClient`'s `tls` and `token`. */
export interface ClientSecurity {
  readonly tls?: ClientTls;
  readonly token?: string;
}

/** How a server checks credentials. */
export interface ServerAuth {
  /** Verifies a token (a `TokenVerifier` of libs/auth). */
  verify(token: string): Promise<Verified>;
  /** The roles that may call a method (by its path); undefined or empty: nobody. */
  roles(methodPath: string): readonly Role[] | undefined;
}

const callers = new WeakMap<object, Claims>();

/** Who made a call the server authenticated (undefined when the server checks no credentials). */
export function callerOf(call: object): Claims | undefined {
  return callers.get(call);
}

/**
 * Checks a call's credential against `auth`: the caller's claims, or the failure to answer with.
 * On success the claims are remembered for {@linkcode callerOf}.
 */
export async function authenticateCall(
  auth: ServerAuth,
  call: { readonly metadata: grpc.Metadata },
  path: string,
): Promise<{ kind: "ok"; claims: Claims } | RpcFailure> {
  const values = call.metadata.get(AUTHORIZATION_METADATA);
  if (values.length === 0) {
    return rpcFailure(
      "unauthenticated",
      `"${path}" needs a credential: send "authorization: Bearer <token>" (tinykv --token-file)`,
    );
  }
  if (values.length > 1) {
    return rpcFailure("unauthenticated", `"${path}" got ${values.length} credentials: send one`);
  }
  const value = String(values[0]);
  if (!value.startsWith("Bearer ")) {
    return rpcFailure("unauthenticated", `The credential must be "Bearer <token>"`);
  }
  const verified = await auth.verify(value.slice("Bearer ".length));
  if (verified.kind !== "ok") return rpcFailure("unauthenticated", verified.message);
  const refused = authorize(verified.claims, auth.roles(path) ?? [], `call "${path}"`);
  if (refused !== undefined) return rpcFailure("permissionDenied", refused.message);
  callers.set(call, verified.claims);
  return { kind: "ok", claims: verified.claims };
}

/** The server credentials of `tls` (plaintext without). */
export function serverCredentials(tls: ServerTls | undefined): grpc.ServerCredentials {
  if (tls === undefined) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    Buffer.from(tls.ca),
    [{ private_key: Buffer.from(tls.key), cert_chain: Buffer.from(tls.cert) }],
    false,
  );
}

/** The channel credentials of `tls` (plaintext without). */
export function channelCredentials(tls: ClientTls | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(Buffer.from(tls.ca));
}

/** The channel options `tls` needs (the server name to check). */
export function tlsChannelOptions(tls: ClientTls | undefined): grpc.ChannelOptions {
  if (tls?.serverName === undefined) return {};
  return {
    "grpc.ssl_target_name_override": tls.serverName,
    "grpc.default_authority": tls.serverName,
  };
}

/** An interceptor that sends `token` with every call and stream. */
export function tokenInterceptor(token: string): grpc.Interceptor {
  const value = `Bearer ${token}`;
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(AUTHORIZATION_METADATA, value);
        next(metadata, listener);
      },
    });
}
