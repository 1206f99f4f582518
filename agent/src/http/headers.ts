// Header hygiene of the L7 proxy, both directions: hop-by-hop headers never cross the proxy
// (RFC 9110 §7.6.1; `te: trailers` survives for gRPC), every request carries an x-request-id,
// and the client's address is appended to x-forwarded-for (and to forwarded, when the client
// already uses RFC 7239), as Envoy does for a request it forwards.
import { randomUUID } from 'node:crypto';

/** Lower-case names; a repeated header is an array. */
export type HeaderMap = Record<string, string | string[]>;

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'http2-settings',
  'host',
]);

/**
 * A copy of `headers` without pseudo-headers, hop-by-hop headers and the headers the
 * Connection header names; `host` is dropped too (the authority travels separately).
 */
export function endToEnd(headers: Readonly<Record<string, string | string[] | undefined>>): HeaderMap {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: HeaderMap = Object.create(null) as HeaderMap;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':') || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = Array.isArray(value) ? [...value] : value;
  }
  // gRPC needs `te: trailers` end to end; any other te value is hop-by-hop.
  if (String(headers.te ?? '').toLowerCase() === 'trailers') out.te = 'trailers';
  return out;
}

/** Adds what the proxy owes the upstream: request id and the client's address. */
export function forwardHeaders(headers: HeaderMap, clientIP: string): void {
  if (!first(headers['x-request-id'])) headers['x-request-id'] = randomUUID();
  const xff = joined(headers['x-forwarded-for']);
  headers['x-forwarded-for'] = xff ? `${xff}, ${clientIP}` : clientIP;
  headers['x-forwarded-proto'] ??= 'http';
  const forwarded = joined(headers.forwarded);
  if (forwarded) headers.forwarded = `${forwarded}, for=${clientIP.includes(':') ? `"[${clientIP}]"` : clientIP};proto=http`;
}

export function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export function joined(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** A mirrored request's authority, as Envoy marks it: `-shadow` on the host, before any port. */
export function shadowAuthority(authority: string): string {
  const port = /:\d+$/.exec(authority);
  return port ? `${authority.slice(0, port.index)}-shadow${port[0]}` : `${authority}-shadow`;
}

/** Request headers from their raw (name, value) list: a repeated field keeps its values apart. */
export function fromRaw(raw: readonly string[]): HeaderMap {
  const out: HeaderMap = Object.create(null) as HeaderMap;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const had = out[name];
    out[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  return out;
}
