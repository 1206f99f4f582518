// Gateway API route filters, for a rule or one backend: header modifiers, redirects,
// rewrites and mirrors, with the CRD's rules (each non-mirror filter once, no redirect with
// a rewrite, ReplacePrefixMatch only after a single PathPrefix match).
import type { HeaderModifier, PathModifier, RouteFilter } from '../../state/model.js';
import { FieldErrors, checkFields, readInt, readList, readObject, readString, show, type Obj } from '../fields.js';
import { PATH_CHARS, readHeaderName, readHeaderValue, readMapping, readPreciseHostname, readServicePortRef } from './route-fields.js';

export type FilterType = RouteFilter['type'];

export interface FilterContext {
  /** The route's namespace, where a mirror backend without namespace is. */
  namespace: string;
  kind: 'HTTPRoute' | 'GRPCRoute';
  /** The filter types this kind accepts. */
  allowed: readonly FilterType[];
  /** The rule has exactly one match, of type PathPrefix: what ReplacePrefixMatch replaces. */
  singlePrefixMatch: boolean;
}

// Where each filter type keeps its settings.
const CONFIG_KEY: Readonly<Record<string, string>> = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  RequestMirror: 'requestMirror',
  ExtensionRef: 'extensionRef',
  CORS: 'cors',
  ExternalAuth: 'externalAuth',
};

// Gateway API filter types nodemesh does not implement, and why.
const REFUSED_TYPES: Readonly<Record<string, string>> = {
  ExtensionRef: 'ExtensionRef filters are implementation-specific and nodemesh defines none',
  CORS: 'CORS filters are not supported by nodemesh',
  ExternalAuth: 'ExternalAuth filters are not supported by nodemesh',
};

const STATUS_CODES = [301, 302, 303, 307, 308];
const INT32_MAX = 2_147_483_647;

/** A filter list: at most 16; RequestMirror may repeat, other types appear once. */
export function readFilters(value: unknown, field: string, ctx: FilterContext, errors: FieldErrors): RouteFilter[] {
  const out: RouteFilter[] = [];
  const first = new Map<FilterType, number>();
  readList(value, field, errors, 16).forEach((entry, i) => {
    const at = `${field}[${i}]`;
    const raw = readMapping(entry, at, errors);
    const type = raw && readFilterType(raw.type, `${at}.type`, ctx, errors);
    if (!raw || !type) return;
    if (type !== 'RequestMirror') {
      const earlier = first.get(type);
      if (earlier !== undefined) errors.add(`${at}.type`, `${type} may appear only once in a filter list, already at ${field}[${earlier}]`);
      else first.set(type, i);
    }
    const key = CONFIG_KEY[type]!;
    const others = Object.fromEntries(Object.values(CONFIG_KEY).filter((k) => k !== key).map((k) => [k, `must not be set when type is ${type}`]));
    checkFields(raw, at, ['type', key], errors, others);
    const config = readObject(raw[key], `${at}.${key}`, errors);
    if (!config) {
      if (raw[key] === undefined || raw[key] === null) errors.add(`${at}.${key}`, `is required when type is ${type}`);
      return;
    }
    const filter = readFilter(type, config, `${at}.${key}`, ctx, errors);
    if (filter) out.push(filter);
  });
  if (first.has('RequestRedirect') && first.has('URLRewrite')) {
    errors.add(`${field}[${first.get('URLRewrite')}].type`, 'RequestRedirect and URLRewrite cannot be used together: a redirect answers the request, a rewrite forwards it');
  }
  return out;
}

function readFilterType(value: unknown, field: string, ctx: FilterContext, errors: FieldErrors): FilterType | undefined {
  if (value === undefined || value === null || value === '') {
    errors.add(field, `is required; accepted: ${ctx.allowed.join(', ')}`);
    return undefined;
  }
  if (ctx.allowed.includes(value as FilterType)) return value as FilterType;
  const refused = typeof value === 'string' ? REFUSED_TYPES[value] : undefined;
  if (refused) errors.add(field, refused);
  else if (typeof value === 'string' && value in CONFIG_KEY) errors.add(field, `${value} is not a ${ctx.kind} filter; accepted: ${ctx.allowed.join(', ')}`);
  else errors.add(field, `must be one of ${ctx.allowed.join(', ')}, got ${show(value)}`);
  return undefined;
}

function readFilter(type: FilterType, config: Obj, field: string, ctx: FilterContext, errors: FieldErrors): RouteFilter | undefined {
  switch (type) {
    case 'RequestHeaderModifier':
    case 'ResponseHeaderModifier':
      return { type, modifier: readHeaderModifier(config, field, errors) };
    case 'RequestRedirect':
      return readRedirect(config, field, ctx, errors);
    case 'URLRewrite': {
      checkFields(config, field, ['hostname', 'path'], errors);
      const filter: RouteFilter = { type };
      const hostname = readPreciseHostname(config.hostname, `${field}.hostname`, errors);
      const path = readPathModifier(config.path, `${field}.path`, ctx, errors);
      if (hostname !== undefined) filter.hostname = hostname;
      if (path) filter.path = path;
      return filter;
    }
    case 'RequestMirror':
      return readMirror(config, field, ctx, errors);
  }
}

/** set, add and remove: at most 16 each, one action per header name. */
function readHeaderModifier(config: Obj, field: string, errors: FieldErrors): HeaderModifier {
  checkFields(config, field, ['set', 'add', 'remove'], errors);
  const used = new Map<string, string>();
  const claim = (name: string, at: string): boolean => {
    const earlier = used.get(name);
    if (earlier !== undefined) errors.add(at, `header ${show(name)} already has an action at ${earlier}: only one action per header name`);
    else used.set(name, at);
    return earlier === undefined;
  };
  const headers = (key: 'set' | 'add'): Array<{ name: string; value: string }> =>
    readList(config[key], `${field}.${key}`, errors, 16).flatMap((entry, i) => {
      const at = `${field}.${key}[${i}]`;
      const raw = readMapping(entry, at, errors);
      if (!raw) return [];
      checkFields(raw, at, ['name', 'value'], errors);
      const name = readHeaderName(raw.name, `${at}.name`, errors);
      const value = readHeaderValue(raw.value, `${at}.value`, errors, 4096);
      return name !== undefined && value !== undefined && claim(name, `${at}.name`) ? [{ name, value }] : [];
    });
  const set = headers('set');
  const add = headers('add');
  const remove = readList(config.remove, `${field}.remove`, errors, 16).flatMap((entry, i) => {
    const at = `${field}.remove[${i}]`;
    const name = readHeaderName(entry, at, errors);
    return name !== undefined && claim(name, at) ? [name] : [];
  });
  return { set, add, remove };
}

function readRedirect(config: Obj, field: string, ctx: FilterContext, errors: FieldErrors): RouteFilter | undefined {
  checkFields(config, field, ['scheme', 'hostname', 'path', 'port', 'statusCode'], errors);
  let statusCode = 302;
  if (config.statusCode !== undefined && config.statusCode !== null) {
    if (STATUS_CODES.includes(config.statusCode as number)) statusCode = config.statusCode as number;
    else errors.add(`${field}.statusCode`, `must be one of ${STATUS_CODES.join(', ')}, got ${show(config.statusCode)}`);
  }
  const filter: Extract<RouteFilter, { type: 'RequestRedirect' }> = { type: 'RequestRedirect', statusCode };
  const scheme = config.scheme;
  if (scheme === 'http' || scheme === 'https') filter.scheme = scheme;
  else if (scheme !== undefined && scheme !== null) errors.add(`${field}.scheme`, `must be http or https, got ${show(scheme)}`);
  const hostname = readPreciseHostname(config.hostname, `${field}.hostname`, errors);
  const path = readPathModifier(config.path, `${field}.path`, ctx, errors);
  const port = readInt(config.port, `${field}.port`, errors, 1, 65535);
  if (hostname !== undefined) filter.hostname = hostname;
  if (path) filter.path = path;
  if (port !== undefined) filter.port = port;
  return filter;
}

function readPathModifier(value: unknown, field: string, ctx: FilterContext, errors: FieldErrors): PathModifier | undefined {
  const raw = readObject(value, field, errors);
  if (!raw) return undefined;
  checkFields(raw, field, ['type', 'replaceFullPath', 'replacePrefixMatch'], errors);
  const type = raw.type;
  if (type !== 'ReplaceFullPath' && type !== 'ReplacePrefixMatch') {
    errors.add(`${field}.type`, `must be ReplaceFullPath or ReplacePrefixMatch, got ${show(type)}`);
    return undefined;
  }
  const key = type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
  const other = type === 'ReplaceFullPath' ? 'replacePrefixMatch' : 'replaceFullPath';
  if (raw[other] !== undefined) errors.add(`${field}.${other}`, `must not be set when type is ${type}; set ${key}`);
  if (type === 'ReplacePrefixMatch' && !ctx.singlePrefixMatch) {
    errors.add(`${field}.type`, 'ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix (the prefix it replaces)');
  }
  if (raw[key] === undefined || raw[key] === null) {
    errors.add(`${field}.${key}`, `is required when type is ${type}`);
    return undefined;
  }
  const path = readString(raw[key], `${field}.${key}`, errors);
  if (path === undefined) return undefined;
  // ReplacePrefixMatch may be "" (the prefix is removed); a full path must be one.
  if (path.length > 1024) errors.add(`${field}.${key}`, `must be at most 1024 characters, got ${path.length}`);
  else if (path === '' && type === 'ReplacePrefixMatch') return { type, value: path };
  else if (!path.startsWith('/')) errors.add(`${field}.${key}`, `must start with "/", got ${show(path)}`);
  else if (!PATH_CHARS.test(path)) errors.add(`${field}.${key}`, `must be a path of URL characters (no spaces, "?" or "#"; %-encode others), got ${show(path)}`);
  else return { type, value: path };
  return undefined;
}

function readMirror(config: Obj, field: string, ctx: FilterContext, errors: FieldErrors): RouteFilter | undefined {
  checkFields(config, field, ['backendRef', 'percent', 'fraction'], errors);
  const ref = readObject(config.backendRef, `${field}.backendRef`, errors);
  if (!ref && (config.backendRef === undefined || config.backendRef === null)) errors.add(`${field}.backendRef`, 'is required');
  const backend = ref && readServicePortRef(ref, `${field}.backendRef`, ctx.namespace, errors);
  let percent = readInt(config.percent, `${field}.percent`, errors, 0, 100);
  const fraction = readObject(config.fraction, `${field}.fraction`, errors);
  if (fraction) {
    if (config.percent !== undefined && config.percent !== null) errors.add(`${field}.fraction`, 'only one of percent and fraction may be set');
    checkFields(fraction, `${field}.fraction`, ['numerator', 'denominator'], errors);
    if (fraction.numerator === undefined || fraction.numerator === null) errors.add(`${field}.fraction.numerator`, 'is required');
    const numerator = readInt(fraction.numerator, `${field}.fraction.numerator`, errors, 0, INT32_MAX);
    const denominator = readInt(fraction.denominator, `${field}.fraction.denominator`, errors, 1, INT32_MAX) ?? 100;
    if (numerator !== undefined && numerator > denominator) {
      errors.add(`${field}.fraction.numerator`, `must be at most the denominator (${denominator}), got ${numerator}`);
    } else if (numerator !== undefined) percent = (numerator / denominator) * 100;
  }
  return backend ? { type: 'RequestMirror', backend, percent: percent ?? 100 } : undefined;
}
