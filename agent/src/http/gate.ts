// What the inbound L7 filters ask of the destination: a decision per request. The proxy side
// (proxy/inbound.ts) builds it from the current mesh state, logs denials and records them on
// the flow; the filters only parse, ask and answer.
import type { AuthzDecision, AuthzHttp } from '../policy/index.js';

export interface HttpGate {
  /** One request's decision; without `http`, the connection's (L4) decision. */
  decide(http?: AuthzHttp): AuthzDecision;
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
