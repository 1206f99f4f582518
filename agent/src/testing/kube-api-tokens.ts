// TokenReview for the Kubernetes API server double: tokens a test registers, reviewed the
// way the service-account authenticator does (audiences intersected, errors as it words them).
import type { Json } from './kube-api-store.js';

/** What a registered token authenticates as; audiences default to the API server's. */
export interface TokenInfo {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
  audiences?: string[];
}

export class TokenTable {
  readonly #tokens = new Map<string, TokenInfo>();
  /** The API server's own audiences: a review without spec.audiences checks against them. */
  readonly #apiAudiences: string[];

  constructor(apiAudiences: string[]) {
    this.#apiAudiences = apiAudiences;
  }

  add(token: string, info: TokenInfo): void {
    this.#tokens.set(token, info);
  }

  /** The TokenReview answer; an unauthenticated one omits `authenticated`, as the real server's JSON does. */
  review(body: Json): Json {
    const spec: Json = body.spec ?? {};
    const requested: string[] = spec.audiences?.length ? spec.audiences : this.#apiAudiences;
    const info = this.#tokens.get(spec.token);
    const tokenAudiences = info?.audiences ?? this.#apiAudiences;
    const audiences = tokenAudiences.filter((a) => requested.includes(a));
    let status: Json;
    if (!info) status = { user: {}, error: '[invalid bearer token, token lookup failed]' };
    else if (audiences.length === 0) {
      status = { user: {}, error: `[invalid bearer token, token audiences ${goList(tokenAudiences)} is invalid for the target audiences ${goList(requested)}]` };
    } else {
      const { username, uid, groups = ['system:authenticated'], extra } = info;
      status = { authenticated: true, user: { username, ...(uid ? { uid } : {}), groups, ...(extra ? { extra } : {}) }, audiences };
    }
    return { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status };
  }
}

/** Go's %q of a []string, as the authenticator's message prints audiences. */
const goList = (l: string[]): string => `[${l.map((a) => JSON.stringify(a)).join(' ')}]`;
