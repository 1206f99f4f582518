// Field checks shared by the security.istio.io kinds: Istio's value syntax (identities,
// namespaces, CIDR ranges, ports as strings or numbers, `*` prefix/suffix/presence
// matches) and workload selectors. Fields are checked with checkFields: an ignored field
// in an authorization rule widens what the rule matches, so a typo is refused rather than
// silently allowing more.
import { isIP } from 'node:net';
import { FieldErrors, checkFields, nameProblem, readObject, readStringMap, show } from '../fields.js';

/** Both API versions Istio serves for its security kinds. */
export const SECURITY_API_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'] as const;

/** spec.selector: `matchLabels` only; empty or absent selects the whole namespace (null). */
export function readSelector(value: unknown, errors: FieldErrors): Record<string, string> | null {
  const selector = readObject(value, 'spec.selector', errors);
  if (!selector) return null;
  checkFields(selector, 'spec.selector', ['matchLabels'], errors);
  const labels = readStringMap(selector.matchLabels, 'spec.selector.matchLabels', errors, 'label');
  return Object.keys(labels).length > 0 ? labels : null;
}

/** A present list of values; an empty one is refused (it would read as "no condition"). */
export function readValueList(value: unknown, field: string, errors: FieldErrors): unknown[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) {
    errors.add(field, `must be a list, got ${show(value)}`);
    return undefined;
  }
  if (value.length === 0) errors.add(field, 'must not be empty: remove the field to place no condition');
  return value;
}

/** Reads a list of strings, each checked by `problem` (undefined when valid). */
export function readStrings(
  value: unknown,
  field: string,
  errors: FieldErrors,
  problem: (v: string) => string | undefined,
): string[] | undefined {
  const list = readValueList(value, field, errors);
  if (!list) return undefined;
  const out: string[] = [];
  list.forEach((v, i) => {
    const at = `${field}[${i}]`;
    if (typeof v !== 'string' || v === '') return errors.add(at, `must be a non-empty string, got ${show(v)}`);
    const reason = problem(v);
    if (reason) return errors.add(at, reason);
    out.push(v);
  });
  return out;
}

/** Ports as Istio writes them ("8080") or as numbers. */
export function readPorts(value: unknown, field: string, errors: FieldErrors): number[] | undefined {
  const list = readValueList(value, field, errors);
  if (!list) return undefined;
  const out: number[] = [];
  list.forEach((v, i) => {
    const port = typeof v === 'number' ? v : typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : NaN;
    if (Number.isInteger(port) && port >= 1 && port <= 65535) out.push(port);
    else errors.add(`${field}[${i}]`, `must be a port between 1 and 65535, got ${show(v)}`);
  });
  return out;
}

type Pattern = { kind: 'exact' | 'prefix' | 'suffix'; body: string } | { kind: 'presence' };

/** Istio's match forms; undefined when `*` appears anywhere else, which Istio would take literally. */
function pattern(value: string): Pattern | undefined {
  if (value === '*') return { kind: 'presence' };
  const [kind, body] = value.startsWith('*')
    ? (['suffix', value.slice(1)] as const)
    : value.endsWith('*')
      ? (['prefix', value.slice(0, -1)] as const)
      : (['exact', value] as const);
  return body.includes('*') ? undefined : { kind, body };
}

const STAR_RULE = '`*` is allowed only alone (any value), at the start (suffix match) or at the end (prefix match)';

/** "<trust-domain>/ns/<namespace>/sa/<service-account>", whole or as the part a `*` match leaves. */
export function principalProblem(value: string): string | undefined {
  const expected = `must be an identity <trust-domain>/ns/<namespace>/sa/<service-account>, or part of one with * as prefix or suffix match, got ${show(value)}`;
  if (value.startsWith('spiffe://')) return `${expected}: write it without "spiffe://"`;
  const p = pattern(value);
  if (!p) return `${expected}: ${STAR_RULE}`;
  if (p.kind === 'presence') return undefined;
  if (/\s/.test(p.body)) return expected;
  const segments = p.body.split('/');
  if (segments.length > 5) return expected;
  // Positions 1 and 3 are the literals "ns" and "sa"; 0, 2 and 4 are names. A prefix match
  // leaves its last segment partial, a suffix match its first.
  const offset = p.kind === 'suffix' ? 5 - segments.length : 0;
  const partial = p.kind === 'prefix' ? segments.length - 1 : p.kind === 'suffix' ? 0 : -1;
  if (p.kind === 'exact' && segments.length !== 5) return expected;
  const ok = segments.every((segment, i) => {
    const literal = [undefined, 'ns', undefined, 'sa', undefined][i + offset];
    if (i !== partial) return literal ? segment === literal : segment !== '';
    if (!literal) return true;
    return p.kind === 'prefix' ? literal.startsWith(segment) : literal.endsWith(segment);
  });
  return ok ? undefined : expected;
}

export function namespacePatternProblem(value: string): string | undefined {
  const p = pattern(value);
  if (!p) return STAR_RULE;
  if (p.kind === 'presence') return undefined;
  if (p.kind === 'exact') return nameProblem(p.body, 'dns1123-label');
  return /^[a-z0-9-]+$/.test(p.body) ? undefined : `must be a namespace name or part of one (lowercase letters, digits and '-') with *, got ${show(value)}`;
}

export function hostPatternProblem(value: string): string | undefined {
  const p = pattern(value);
  if (!p) return STAR_RULE;
  return /\s/.test(value) ? `must be a host name without spaces, got ${show(value)}` : undefined;
}

const METHOD = /^[A-Z0-9!#$%&'+.^_`|~-]+$/;

export function methodPatternProblem(value: string): string | undefined {
  const p = pattern(value);
  if (!p) return STAR_RULE;
  if (p.kind === 'presence' || METHOD.test(p.body)) return undefined;
  if (METHOD.test(p.body.toUpperCase())) {
    return `HTTP methods are case-sensitive and never lowercase: write ${show(value.toUpperCase())}`;
  }
  return `must be an HTTP method such as "GET", got ${show(value)}`;
}

export function pathPatternProblem(value: string): string | undefined {
  if (value.includes('{*}') || value.includes('{**}')) return `path templates ({*}, {**}) are not supported, got ${show(value)}`;
  const p = pattern(value);
  if (!p) return STAR_RULE;
  if (/\s/.test(value)) return `must be a path without spaces, got ${show(value)}`;
  if ((p.kind === 'exact' || p.kind === 'prefix') && !p.body.startsWith('/')) {
    return `must start with "/" (a request path always does), got ${show(value)}`;
  }
  if (p.kind !== 'presence' && p.body.includes('?')) return `is matched against the path without its query string; remove "?...", got ${show(value)}`;
  return undefined;
}

/** Any string, with Istio's `*` forms (request header values). */
export function valuePatternProblem(value: string): string | undefined {
  return pattern(value) ? undefined : STAR_RULE;
}

/** An IPv4/IPv6 address or CIDR range, as Istio's ValidateIPs accepts. */
export function ipBlockProblem(value: string): string | undefined {
  const bad = `must be an IP address or CIDR range such as 10.0.0.0/16, got ${show(value)}`;
  const slash = value.indexOf('/');
  if (slash < 0) return isIP(value) ? undefined : bad;
  const family = isIP(value.slice(0, slash));
  const bits = value.slice(slash + 1);
  if (!family || !/^[0-9]{1,3}$/.test(bits)) return bad;
  return Number(bits) <= (family === 4 ? 32 : 128) ? undefined : `${bad}: the prefix length is at most ${family === 4 ? 32 : 128}`;
}
