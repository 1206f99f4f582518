// Gateway API route filters the node proxy applies once a rule is chosen (route-table.ts):
// header modifiers on the request or response, the Location of a RequestRedirect, and the
// host and path a URLRewrite sends upstream. Pure functions; the proxy does the I/O.
import type { HeaderModifier, PathModifier, RouteFilter, RouteMatch } from '../../state/model.js';
import { stripPathPrefix } from './route-table.js';

export type RequestRedirectFilter = Extract<RouteFilter, { type: 'RequestRedirect' }>;
export type URLRewriteFilter = Extract<RouteFilter, { type: 'URLRewrite' }>;

/** Header names lower-case; an array is one header sent several times (same meaning as joining with ","). */
export type HeaderRecord = Record<string, string | string[]>;

/**
 * A new record with the modifier applied, in Envoy's order (Istio translates to Envoy):
 * remove first, then set (replaces every value), then add (appends a value, keeping the
 * earlier ones). A name both removed and set therefore ends up set.
 */
export function applyHeaderModifier(headers: Readonly<HeaderRecord>, modifier: HeaderModifier): HeaderRecord {
  const out: HeaderRecord = { ...headers };
  for (const name of modifier.remove) delete out[name];
  for (const { name, value } of modifier.set) out[name] = value;
  for (const { name, value } of modifier.add) {
    const prev = out[name];
    out[name] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [prev]), value];
  }
  return out;
}

const WELL_KNOWN_PORT = { http: 80, https: 443 } as const;

/**
 * The Location header of a RequestRedirect. Unset parts come from the request: its scheme,
 * its Host without the port, its path and query. The port is the filter's; else, when the
 * filter sets a scheme, that scheme's well-known port (Gateway API: "If redirect scheme is
 * not-empty, the redirect port MUST be the well-known port"), even when the scheme is the
 * request's own; else the request's port (from Host, or the request scheme's default).
 * :80 with http and :443 with https are left out.
 */
export function redirectLocation(
  filter: RequestRedirectFilter,
  req: { scheme: 'http' | 'https'; host: string; path: string },
  match: RouteMatch,
): string {
  const { hostname, port: requestPort } = splitHost(req.host);
  const scheme = filter.scheme ?? req.scheme;
  const port = filter.port ?? (filter.scheme !== undefined ? WELL_KNOWN_PORT[filter.scheme] : (requestPort ?? WELL_KNOWN_PORT[req.scheme]));
  const portPart = port === WELL_KNOWN_PORT[scheme] ? '' : `:${port}`;
  const { path, query } = splitPath(req.path);
  const newPath = filter.path === undefined ? path : modifyPath(path, filter.path, match);
  return `${scheme}://${filter.hostname ?? hostname}${portPart}${newPath}${query}`;
}

/** Host and path a URLRewrite forwards with: the hostname replaces the whole Host (port included); the query is kept. */
export function rewriteUrl(filter: URLRewriteFilter, req: { host: string; path: string }, match: RouteMatch): { host: string; path: string } {
  const host = filter.hostname ?? req.host;
  if (filter.path === undefined) return { host, path: req.path };
  const { path, query } = splitPath(req.path);
  return { host, path: modifyPath(path, filter.path, match) + query };
}

/**
 * ReplaceFullPath, or ReplacePrefixMatch by whole segments as in the Gateway API table:
 * "/foo/bar" with prefix "/foo" and "/xyz" (or "/xyz/") gives "/xyz/bar"; with "" or "/"
 * gives "/bar"; "/foo" fully matched gives "/xyz", or "/" for "" and "/".
 * ReplacePrefixMatch needs a PathPrefix match (validation refuses other pairings); without
 * one, or when the prefix does not match, the path is left as it is.
 */
function modifyPath(path: string, modifier: PathModifier, match: RouteMatch): string {
  if (modifier.type === 'ReplaceFullPath') return modifier.value;
  if (match.path?.type !== 'PathPrefix') return path;
  const rest = stripPathPrefix(path, match.path.value);
  if (rest === undefined) return path;
  const replaced = modifier.value.replace(/\/$/, '') + rest;
  return replaced === '' ? '/' : replaced;
}

function splitPath(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q) };
}

/** "name", "name:port", "[v6]" or "[v6]:port"; the hostname keeps IPv6 brackets. */
function splitHost(host: string): { hostname: string; port: number | undefined } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(host);
  if (m === null) return { hostname: host, port: undefined };
  return { hostname: m[1]!, port: m[2] === undefined ? undefined : Number(m[2]) };
}
