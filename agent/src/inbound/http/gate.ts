// What the inbound L7 filters ask of the destination: a decision per request, and what they
// tell it: each exchange once over. The proxy side (inbound/inbound.ts) decides on the current
// mesh state, logs denials, records them on the flow and turns exchanges into telemetry; the
// filters only parse, ask, answer and count.
import type { AuthzDecision, AuthzHttp } from '../../policy/index.js';
import type { ResponseFlag } from '../../state/outcome.js';

export interface HttpGate {
  /** One request's decision; without `http`, the connection's (L4) decision. */
  decide(http?: AuthzHttp): AuthzDecision;
  /** Told of each request once its answer has ended or was cut short. */
  exchanged(exchange: HttpExchange): void;
}

/** One request as the destination's filter saw it. */
export interface HttpExchange {
  /** Wall clock at the request head, ms since the epoch. */
  startMs: number;
  /** Until the answer's last byte was handed to the source's side. */
  durationMs: number;
  httpVersion: '1.1' | '2';
  grpc: boolean;
  method: string;
  authority: string;
  /** Path with query, as the source sent it. */
  path: string;
  requestId?: string;
  /** As the request arrived: the source proxy's span, when tracing is on there. */
  traceparent?: string;
  /** The final status sent to the source (the pod's, or a local answer's); 0 when none was. */
  status: number;
  /** From the trailers, or the head of a trailers-only answer. */
  grpcStatus?: number;
  /** Body bytes, without chunked framing. */
  requestBytes: number;
  responseBytes: number;
  /** Absent for a request refused before authorization (malformed). */
  decision?: AuthzDecision;
  /** UR: the pod reset or closed before its answer ended; DC: the source went away first. */
  flag: ResponseFlag;
}

/** Envoy's RBAC filter answers with this body (text/plain) or, for gRPC, grpc-message. */
export const DENIED_BODY = 'RBAC: access denied';

/** Header values for authorization: duplicates joined with ",", as Envoy (and Istio's docs) do. */
export function mergeHeaders(entries: Iterable<[string, string]>): Record<string, string> {
  // No prototype: a header named "constructor" or "__proto__" is just a header.
  const out = Object.create(null) as Record<string, string>;
  for (const [name, value] of entries) out[name] = Object.hasOwn(out, name) ? `${out[name]},${value}` : value;
  return out;
}

/** One exchange's telemetry, filled in as the request and its answer pass; told once, at the end. */
export class ExchangeTally {
  readonly exchange: Omit<HttpExchange, 'durationMs' | 'flag'>;
  readonly #gate: HttpGate;
  readonly #started = performance.now();
  #ended = false;

  constructor(gate: HttpGate, request: Pick<HttpExchange, 'httpVersion' | 'grpc' | 'method' | 'authority' | 'path' | 'requestId' | 'traceparent'>) {
    this.#gate = gate;
    this.exchange = { startMs: Date.now(), ...request, status: 0, requestBytes: 0, responseBytes: 0 };
  }

  end(flag: ResponseFlag): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#gate.exchanged({ ...this.exchange, durationMs: performance.now() - this.#started, flag });
  }
}
