// What the inbound proxy knows about a connection or request when it asks for a decision.
import type { MeshPod } from '../state/model.js';

export interface AuthzRequest {
  source: {
    /** Verified peer identity "td/ns/x/sa/y" (a "spiffe://" prefix is ignored); absent for plaintext. */
    principal?: string;
    /** Used only when the principal does not name a namespace; never trusted without a principal. */
    namespace?: string;
    /** The connection's peer address. */
    ip: string;
    /** The original client (X-Forwarded-For) when known; defaults to `ip`. */
    remoteIp?: string;
  };
  destination: { pod: MeshPod; ip: string; port: number };
  /** Absent for an opaque TCP connection (L4). */
  http?: AuthzHttp;
}

/** One HTTP request's attributes; `path` already normalized, header names lower case. */
export interface AuthzHttp {
  method: string;
  path: string;
  host: string;
  headers: Record<string, string>;
}

export interface AuthzDecision {
  allowed: boolean;
  /** e.g. "denied by AuthorizationPolicy shop/deny-legacy", "no ALLOW policy matched (shop/a, shop/b)". */
  reason: string;
  /** "namespace/name" of the policy that decided, when one did. */
  policy?: string;
  /** AUDIT policies that matched, whatever the decision. */
  audited?: string[];
}
