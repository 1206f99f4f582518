// What one attempt upstream is, for the pool, its connections and the forwarder: the request,
// the response as it streams back, and why an attempt got no response.
import type { Readable } from 'node:stream';
import type { ResponseFlag } from '../../state/outcome.js';
import type { HeaderMap } from '../../http/headers.js';
import type { RequestBody } from './request-body.js';

export type FailureKind = 'connect' | 'reset' | 'refused-stream' | 'timeout';

/** Why an attempt got no response head. */
export class UpstreamError extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
    readonly flag: ResponseFlag,
    /** The status the destination refused with (e.g. 403 from its authorization). */
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface UpstreamResponse {
  status: number;
  headers: HeaderMap;
  /** Ends when the response does; errors when the upstream resets it. */
  body: Readable;
  /** The response has no body (HEAD, 204, gRPC trailers-only). */
  endStream: boolean;
  /** Trailers, once the body has ended. */
  trailers(): HeaderMap;
}

export interface UpstreamRequest {
  method: string;
  /** Path with query. */
  path: string;
  authority: string;
  headers: HeaderMap;
  body: RequestBody;
}
