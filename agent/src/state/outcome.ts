// The data path's outcome vocabulary, shared by the outbound and inbound directions, the
// flow table and the request records: how an exchange ended (Envoy's response flags), how the
// connection was secured, and what authorization decided.
/** Envoy's response flags, so operators read them as they already know them: UH no healthy
 * upstream, UF upstream connect failure, UT upstream timeout, UR upstream reset, UO overflow
 * (circuit breaker), URX retry limit exceeded, NR no route, DC downstream closed, RL rate
 * limited, FI fault abort. */
export type ResponseFlag = '-' | 'UH' | 'UF' | 'UT' | 'UR' | 'UO' | 'URX' | 'NR' | 'DC' | 'RL' | 'FI';

/** How the connection reached the destination: Istio's connection_security_policy values, plus
 * node_local for a same-node connection whose source identity the kernel vouched for. */
export type Security = 'mutual_tls' | 'node_local' | 'none';

export interface Authorization {
  allowed: boolean;
  /** Which policy decided, or why none did. */
  reason: string;
  policy?: string;
}

/** The part of a policy decision a flow or request record keeps. */
export const authorizationOf = (d: Authorization): Authorization => ({
  allowed: d.allowed,
  reason: d.reason,
  ...(d.policy ? { policy: d.policy } : {}),
});

/** An upstream refusal (HBONE / inbound status) as an Envoy response flag; a policy denial
 * keeps '-' and says so in `authorization`. */
export function flagForStatus(status: number | undefined): ResponseFlag {
  if (status === 403) return '-';
  if (status === 504) return 'UT';
  return 'UF';
}
