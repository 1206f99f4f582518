// Field readers shared by HTTPRoute and GRPCRoute (Gateway API, GAMMA profile): references
// to Services as parents and backends, hostnames, header and query parameter matches, with
// the CRD's own limits (maxItems, lengths, patterns) so what Kubernetes refuses is refused here.
import type { BackendRef, RouteParentRef, ValueMatch } from '../../state/model.js';
import { anchoredRegExp } from '../../state/traffic.js';
import {
  FieldErrors,
  checkFields,
  nameProblem,
  readInt,
  readList,
  readObject,
  readRequiredString,
  readString,
  show,
  type Obj,
} from '../fields.js';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

// Gateway API's HeaderName: an RFC 7230 token of 1 to 256 characters.
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const PRECISE_HOSTNAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Characters Gateway API allows in an Exact or PathPrefix path (RFC 3986 pchar and "/"). */
export const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$/;
const CONTROL_CHARS = /[\x00-\x08\x0a-\x1f\x7f]/;

/** A JavaScript regular expression that compiles as the matcher will compile it. */
export function regexProblem(source: string): string | undefined {
  try {
    new RegExp(source);
    anchoredRegExp(source);
    return undefined;
  } catch (err) {
    // V8 repeats the pattern ("Invalid regular expression: /a(/: Unterminated group"); keep the cause.
    const cause = (err as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '');
    return `must be a valid regular expression (JavaScript syntax, matched against the whole value): ${cause}`;
  }
}

/** A required header (or query parameter) name; header names come back lower-cased. */
export function readHeaderName(value: unknown, field: string, errors: FieldErrors, lowerCase = true): string | undefined {
  const name = readRequiredString(value, field, errors);
  if (name === undefined) return undefined;
  if (name.length > 256 || !HEADER_NAME.test(name)) {
    errors.add(field, `must be an HTTP header name (1 to 256 letters, digits and !#$%&'*+-.^_\`|~; no ":" pseudo-headers), got ${show(name)}`);
    return undefined;
  }
  return lowerCase ? name.toLowerCase() : name;
}

/** A header value to match or to write: 1 to `max` characters, no line breaks. */
export function readHeaderValue(value: unknown, field: string, errors: FieldErrors, max: number): string | undefined {
  const text = readRequiredString(value, field, errors);
  if (text === undefined) return undefined;
  if (text.length > max) errors.add(field, `must be at most ${max} characters, got ${text.length}`);
  else if (CONTROL_CHARS.test(text)) errors.add(field, `must not contain control characters such as line breaks, got ${show(text)}`);
  else return text;
  return undefined;
}

/** A hostname without wildcard (redirect and rewrite targets). */
export function readPreciseHostname(value: unknown, field: string, errors: FieldErrors): string | undefined {
  const host = readString(value, field, errors);
  if (host === undefined) return undefined;
  if (host.length >= 1 && host.length <= 253 && PRECISE_HOSTNAME.test(host)) return host;
  errors.add(field, `must be a lowercase DNS hostname without wildcard or IP address, got ${show(host)}`);
  return undefined;
}

/** spec.hostnames: checked, then ignored, as GAMMA asks of routes attached to a Service. */
export function checkHostnames(value: unknown, errors: FieldErrors): void {
  readList(value, 'spec.hostnames', errors, 16).forEach((h, i) => {
    const ok = typeof h === 'string' && h.length >= 1 && h.length <= 253 && HOSTNAME.test(h);
    if (!ok) errors.add(`spec.hostnames[${i}]`, `must be a lowercase DNS hostname, optionally starting with "*.", got ${show(h)}`);
  });
}

/** spec.parentRefs: Services only (GAMMA), at least one, each once. */
export function readParentRefs(value: unknown, namespace: string, errors: FieldErrors): RouteParentRef[] {
  const list = readList(value, 'spec.parentRefs', errors, 32);
  if (value === undefined || value === null || (Array.isArray(value) && value.length === 0)) {
    errors.add('spec.parentRefs', 'is required: name the Service this route attaches to, with group: "" and kind: Service (GAMMA)');
  }
  const out: RouteParentRef[] = [];
  const seen = new Map<string, number>();
  list.forEach((entry, i) => {
    const field = `spec.parentRefs[${i}]`;
    const ref = readMapping(entry, field, errors);
    if (!ref) return;
    checkFields(ref, field, ['group', 'kind', 'namespace', 'name', 'port'], errors, {
      sectionName: 'is not supported: attach to one port of the Service with port (its number)',
    });
    const group = ref.group ?? GATEWAY_GROUP;
    const kind = ref.kind ?? 'Gateway';
    if (group !== '' || kind !== 'Service') {
      const defaulted = ref.group === undefined || ref.kind === undefined ? ' (group and kind default to a gateway.networking.k8s.io Gateway)' : '';
      errors.add(
        `${field}.${kind !== 'Service' ? 'kind' : 'group'}`,
        `nodemesh supports only Service parents (GAMMA): set group: "" and kind: Service; got group ${show(group)}, kind ${show(kind)}${defaulted}`,
      );
      return;
    }
    const target = readServiceName(ref, field, namespace, errors);
    const port = readInt(ref.port, `${field}.port`, errors, 1, 65535);
    if (!target) return;
    const parent: RouteParentRef = port === undefined ? target : { ...target, port };
    const key = `${parent.namespace}/${parent.name}:${port ?? '*'}`;
    const first = seen.get(key);
    if (first !== undefined) return errors.add(field, `duplicate of spec.parentRefs[${first}]`);
    seen.set(key, i);
    out.push(parent);
  });
  return out;
}

/** A Service with a port: a backendRef without weight and filters (mirror targets). */
export function readServicePortRef(ref: Obj, field: string, namespace: string, errors: FieldErrors, extra: readonly string[] = []): Omit<BackendRef, 'weight' | 'filters'> | undefined {
  checkFields(ref, field, ['group', 'kind', 'name', 'namespace', 'port', ...extra], errors);
  const group = ref.group ?? '';
  const kind = ref.kind ?? 'Service';
  if (group !== '' || kind !== 'Service') {
    errors.add(`${field}.${kind !== 'Service' ? 'kind' : 'group'}`, `nodemesh sends only to Services: group must be "" and kind Service, got group ${show(group)}, kind ${show(kind)}`);
    return undefined;
  }
  const target = readServiceName(ref, field, namespace, errors);
  const port = readInt(ref.port, `${field}.port`, errors, 1, 65535);
  if (ref.port === undefined || ref.port === null) errors.add(`${field}.port`, 'is required for a Service backend');
  return target && port !== undefined ? { ...target, port } : undefined;
}

/** Header or query parameter matches: at most 16, each name once. */
export function readValueMatches(value: unknown, field: string, errors: FieldErrors, what: 'header' | 'query'): ValueMatch[] {
  const out: ValueMatch[] = [];
  const seen = new Map<string, number>();
  readList(value, field, errors, 16).forEach((entry, i) => {
    const at = `${field}[${i}]`;
    const raw = readMapping(entry, at, errors);
    if (!raw) return;
    checkFields(raw, at, ['type', 'name', 'value'], errors);
    const type = readMatchType(raw.type, `${at}.type`, errors);
    const name = readHeaderName(raw.name, `${at}.name`, errors, what === 'header');
    const text = readHeaderValue(raw.value, `${at}.value`, errors, what === 'header' ? 4096 : 1024);
    if (type === 'RegularExpression' && text !== undefined) {
      const problem = regexProblem(text);
      if (problem) errors.add(`${at}.value`, problem);
    }
    if (name === undefined || type === undefined || text === undefined) return;
    const first = seen.get(name);
    if (first !== undefined) return errors.add(`${at}.name`, `duplicate ${what === 'header' ? 'header (names are case-insensitive)' : 'query parameter'} ${show(name)}, already matched by ${field}[${first}]`);
    seen.set(name, i);
    out.push({ type, name, value: text });
  });
  return out;
}

/** Exact (the default) or RegularExpression. */
export function readMatchType(value: unknown, field: string, errors: FieldErrors): 'Exact' | 'RegularExpression' | undefined {
  if (value === undefined || value === null) return 'Exact';
  if (value === 'Exact' || value === 'RegularExpression') return value;
  errors.add(field, `must be Exact or RegularExpression, got ${show(value)}`);
  return undefined;
}

/** A list entry that must be a mapping; `~` (null) entries are named too. */
export function readMapping(value: unknown, field: string, errors: FieldErrors): Obj | undefined {
  if (value === undefined || value === null) {
    errors.add(field, 'must be a mapping');
    return undefined;
  }
  return readObject(value, field, errors);
}

function readServiceName(ref: Obj, field: string, namespace: string, errors: FieldErrors): { namespace: string; name: string } | undefined {
  const name = readRequiredString(ref.name, `${field}.name`, errors);
  const ns = readString(ref.namespace, `${field}.namespace`, errors) ?? namespace;
  const nameIssue = name === undefined ? undefined : nameProblem(name, 'dns1035-label');
  const nsIssue = nameProblem(ns, 'dns1123-label');
  if (nameIssue) errors.add(`${field}.name`, `must name a Service: ${nameIssue}`);
  if (nsIssue) errors.add(`${field}.namespace`, nsIssue);
  return name === undefined || nameIssue || nsIssue ? undefined : { namespace: ns, name };
}
