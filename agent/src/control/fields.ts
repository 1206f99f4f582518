// Field-level checks shared by the kind validators: Kubernetes' own syntax rules (names,
// labels, ports) and typed readers that record "field: reason" instead of throwing, so one
// resource can report every problem at once.
import { isIPv4 } from 'node:net';

export type Obj = Record<string, unknown>;

export interface FieldError {
  field: string;
  reason: string;
}

/** Collects the problems of one resource; the resource is accepted only if none were found. */
export class FieldErrors {
  readonly list: FieldError[] = [];

  add(field: string, reason: string): void {
    this.list.push({ field, reason });
  }
}

export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** How a value reads in a message: strings quoted, so `"8080"` and `8080` are told apart. */
export function show(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${String(v)}`;
}

// Regular expressions from k8s.io/apimachinery/pkg/util/validation.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export type NameFormat = 'dns1123-label' | 'dns1123-subdomain' | 'dns1035-label';

/** undefined when `value` is valid, else the reason in Kubernetes' wording. */
export function nameProblem(value: string, format: NameFormat): string | undefined {
  switch (format) {
    case 'dns1123-label':
      if (value.length <= 63 && DNS1123_LABEL.test(value)) return undefined;
      return `must be a DNS-1123 label (at most 63 characters: lowercase letters, digits and '-', starting and ending with a letter or digit), got ${show(value)}`;
    case 'dns1035-label':
      if (value.length <= 63 && DNS1035_LABEL.test(value)) return undefined;
      return `must be a DNS-1035 label (at most 63 characters: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit), got ${show(value)}`;
    case 'dns1123-subdomain':
      if (value.length <= 253 && value.split('.').every((l) => DNS1123_LABEL.test(l))) return undefined;
      return `must be a DNS-1123 subdomain (at most 253 characters: dot-separated lowercase labels of letters, digits and '-'), got ${show(value)}`;
  }
}

/** Label and annotation keys: an optional DNS-1123 subdomain prefix and a name of at most 63 characters. */
export function qualifiedNameProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const [prefix, name] = slash < 0 ? [undefined, key] : [key.slice(0, slash), key.slice(slash + 1)];
  if (prefix !== undefined && nameProblem(prefix, 'dns1123-subdomain')) {
    return `prefix ${show(prefix)} must be a DNS-1123 subdomain`;
  }
  if (name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return `name part ${show(name)} must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit`;
  }
  return undefined;
}

/** Container port names and named targetPorts (IANA service names, as Kubernetes requires). */
export function ianaNameProblem(value: string): string | undefined {
  if (value.length <= 15 && IANA_SVC_NAME.test(value) && !value.includes('--') && /[a-z]/.test(value)) {
    return undefined;
  }
  return `must be an IANA service name (at most 15 lowercase letters, digits and single '-', with at least one letter), got ${show(value)}`;
}

export function readString(value: unknown, field: string, errors: FieldErrors): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  errors.add(field, `must be a string, got ${show(value)}`);
  return undefined;
}

export function readObject(value: unknown, field: string, errors: FieldErrors): Obj | undefined {
  if (value === undefined || value === null) return undefined;
  if (isObj(value)) return value;
  errors.add(field, `must be a mapping, got ${show(value)}`);
  return undefined;
}

export function readArray(value: unknown, field: string, errors: FieldErrors): unknown[] {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value;
  errors.add(field, `must be a list, got ${show(value)}`);
  return [];
}

/** Refuses keys of `obj` outside `known`; `unsupported` maps a known-but-refused key to its reason. */
export function checkFields(
  obj: Obj,
  field: string,
  known: readonly string[],
  errors: FieldErrors,
  unsupported: Readonly<Record<string, string>> = {},
): void {
  for (const key of Object.keys(obj)) {
    const at = field ? `${field}.${key}` : key;
    const reason = unsupported[key];
    if (reason) errors.add(at, reason);
    else if (!known.includes(key)) errors.add(at, `unknown field; accepted: ${known.join(', ')}`);
  }
}

/** A list of at most `max` entries (the CRD's maxItems). */
export function readList(value: unknown, field: string, errors: FieldErrors, max: number): unknown[] {
  const list = readArray(value, field, errors);
  if (list.length > max) errors.add(field, `must have at most ${max} entries, got ${list.length}`);
  return list;
}

/** A string that must be present and non-empty. */
export function readRequiredString(value: unknown, field: string, errors: FieldErrors): string | undefined {
  if (value === undefined || value === null || value === '') {
    errors.add(field, 'is required');
    return undefined;
  }
  return readString(value, field, errors);
}

/** A whole number between `min` and `max`; undefined (and no error) when absent. */
export function readInt(value: unknown, field: string, errors: FieldErrors, min: number, max: number): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
  errors.add(field, `must be an integer between ${min} and ${max}, got ${show(value)}`);
  return undefined;
}

export function readPort(value: unknown, field: string, errors: FieldErrors): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535) return value;
  errors.add(field, `must be an integer between 1 and 65535, got ${show(value)}`);
  return undefined;
}

export function readIPv4(value: unknown, field: string, errors: FieldErrors): string | undefined {
  if (typeof value === 'string' && isIPv4(value)) return value;
  errors.add(field, `must be an IPv4 address, got ${show(value)}`);
  return undefined;
}

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

export function readProtocol(value: unknown, field: string, errors: FieldErrors): Protocol {
  if (value === undefined || value === null) return 'TCP';
  if (value === 'TCP' || value === 'UDP' || value === 'SCTP') return value;
  errors.add(field, `must be one of TCP, UDP, SCTP, got ${show(value)}`);
  return 'TCP';
}

/**
 * A string → string map with label syntax (labels, selectors) or annotation syntax (any
 * value). Fields are named `metadata.labels[app]` so the operator sees which key is wrong.
 */
export function readStringMap(
  value: unknown,
  field: string,
  errors: FieldErrors,
  values: 'label' | 'any',
): Record<string, string> {
  const out: Record<string, string> = {};
  const map = readObject(value, field, errors);
  if (!map) return out;
  for (const [key, v] of Object.entries(map)) {
    const at = `${field}[${key}]`;
    const keyProblem = qualifiedNameProblem(key);
    if (keyProblem) errors.add(at, `invalid key: ${keyProblem}`);
    if (typeof v !== 'string') {
      // YAML reads `version: 1` or `enabled: true` as non-strings; Kubernetes refuses them too.
      errors.add(at, `must be a string, got ${show(v)} (quote it in YAML)`);
      continue;
    }
    if (values === 'label' && v !== '' && (v.length > 63 || !QUALIFIED_NAME.test(v))) {
      errors.add(at, `must be a label value (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit), got ${show(v)}`);
      continue;
    }
    out[key] = v;
  }
  return out;
}
