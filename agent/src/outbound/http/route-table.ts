// L7 route selection for the outbound proxy (GAMMA): which HTTPRoute / GRPCRoute rule a
// request to a Service port takes, and which backend of that rule. Built once per MeshState,
// consulted per request; pure, no I/O.
//
// Choices where Gateway API leaves room:
// - Path match kinds rank Exact > RegularExpression > PathPrefix. Gateway API leaves regex
//   precedence to the implementation; this is Envoy Gateway's order. Istio ranks regex below
//   every prefix, which lets a catch-all PathPrefix "/" shadow any regex rule.
// - Within a kind, the longer value wins (a prefix is measured without its trailing slash,
//   a regex by its pattern length).
// - A header that arrives several times is matched against its values joined with ",".
// - A repeated query parameter is matched by its first value.
// - A gRPC request tries the GRPCRoute rules first, then the HTTPRoute rules (GEP-1294 ranks
//   GRPCRoute above HTTPRoute); a request that is not gRPC sees only HTTPRoutes.
// - Producer or consumer (GEP-1294): a client whose namespace has any route (either kind)
//   attached to the Service port uses only those; other clients use the producer routes.
import { objectKey, type BackendRef, type MeshRoute, type MeshState, type RouteMatch, type RouteRule, type ValueMatch } from '../../state/model.js';

export interface RequestHead {
  method: string;
  /** path with query string, as on the wire */
  path: string;
  /** lower-case names */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  /** content-type application/grpc */
  grpc: boolean;
}

export type RouteDecision =
  /** No route attached to this Service port for this client: send to the Service as a whole. */
  | { kind: 'none' }
  /** Routes attached, none matched: the proxy answers 404. */
  | { kind: 'no-match' }
  | { kind: 'match'; route: MeshRoute; rule: RouteRule; ruleIndex: number; match: RouteMatch };

/**
 * The rest of `path` after a Gateway API PathPrefix `prefix` ("" or starting with "/"), or
 * undefined when the prefix does not match. Whole segments only: "/foo" matches "/foo",
 * "/foo/" and "/foo/bar", not "/foobar"; a trailing slash in the prefix is ignored.
 */
export function stripPathPrefix(path: string, prefix: string): string | undefined {
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (!path.startsWith(p)) return undefined;
  const rest = path.slice(p.length);
  return rest === '' || rest.startsWith('/') ? rest : undefined;
}

/** Weighted random choice; undefined when the rule has no backend or every weight is 0. */
export function pickBackend(rule: RouteRule, random: () => number = Math.random): BackendRef | undefined {
  let total = 0;
  for (const b of rule.backendRefs) total += Math.max(0, b.weight);
  if (total === 0) return undefined;
  let r = random() * total;
  let last: BackendRef | undefined;
  for (const b of rule.backendRefs) {
    if (b.weight <= 0) continue;
    last = b;
    r -= b.weight;
    if (r < 0) return b;
  }
  // Floating-point rounding can leave r at or just above 0 after the last backend.
  return last;
}

/** What the matchers read from a request, computed at most once per request. */
class RequestView {
  readonly method: string;
  readonly path: string;
  readonly #query: string;
  readonly #headers: RequestHead['headers'];
  #params: URLSearchParams | undefined;
  #grpc: { service: string; method: string } | null | undefined;

  constructor(req: RequestHead) {
    this.method = req.method.toUpperCase();
    const q = req.path.indexOf('?');
    this.path = q < 0 ? req.path : req.path.slice(0, q);
    this.#query = q < 0 ? '' : req.path.slice(q + 1);
    this.#headers = req.headers;
  }

  header(name: string): string | undefined {
    const v = this.#headers[name];
    return Array.isArray(v) ? v.join(',') : v;
  }

  query(name: string): string | undefined {
    this.#params ??= new URLSearchParams(this.#query);
    return this.#params.get(name) ?? undefined;
  }

  /** "/<service>/<method>", or null when the path has another shape. */
  get grpcCall(): { service: string; method: string } | null {
    if (this.#grpc === undefined) {
      const m = /^\/([^/]+)\/([^/]+)$/.exec(this.path);
      this.#grpc = m ? { service: m[1]!, method: m[2]! } : null;
    }
    return this.#grpc;
  }
}

type Test = (req: RequestView) => boolean;

interface Candidate {
  route: MeshRoute;
  rule: RouteRule;
  ruleIndex: number;
  match: RouteMatch;
  matchIndex: number;
  /** Specificity, compared element by element, larger first. */
  rank: readonly number[];
  tests: readonly Test[];
}

interface Candidates {
  grpc: readonly Candidate[];
  http: readonly Candidate[];
}

const PRODUCER = '';
const ANY_PORT = '*';
const NONE: RouteDecision = Object.freeze({ kind: 'none' });
const NO_MATCH: RouteDecision = Object.freeze({ kind: 'no-match' });

export class RouteTable {
  /** "<ns>/<name>:<port|*>" → client group (PRODUCER or a consumer namespace) → sorted rules. */
  readonly #entries = new Map<string, Map<string, Candidates>>();

  constructor(state: MeshState) {
    // service → group → port → routes
    const attached = new Map<string, Map<string, Map<string, Set<MeshRoute>>>>();
    for (const route of [...state.grpcRoutes.values(), ...state.httpRoutes.values()]) {
      for (const ref of route.parentRefs) {
        const groups = getOrSet(attached, objectKey(ref.namespace, ref.name), () => new Map());
        const ports = getOrSet(groups, ref.namespace === route.namespace ? PRODUCER : route.namespace, () => new Map());
        getOrSet(ports, ref.port === undefined ? ANY_PORT : String(ref.port), () => new Set()).add(route);
      }
    }
    const compiled = new Map<MeshRoute, Candidate[]>();
    const candidatesOf = (route: MeshRoute): Candidate[] => getOrSet(compiled, route, () => compileRoute(route));
    for (const [service, groups] of attached) {
      const ports = new Set<string>([ANY_PORT]);
      for (const byPort of groups.values()) for (const p of byPort.keys()) ports.add(p);
      for (const port of ports) {
        const entry = new Map<string, Candidates>();
        for (const [group, byPort] of groups) {
          const routes = new Set([...(byPort.get(ANY_PORT) ?? []), ...(byPort.get(port) ?? [])]);
          if (routes.size === 0) continue;
          const all = [...routes].flatMap(candidatesOf);
          const ofKind = (kind: MeshRoute['kind']): Candidate[] => all.filter((c) => c.route.kind === kind).sort(byPrecedence);
          entry.set(group, { grpc: ofKind('GRPCRoute'), http: ofKind('HTTPRoute') });
        }
        if (entry.size > 0) this.#entries.set(`${service}:${port}`, entry);
      }
    }
  }

  decide(service: { namespace: string; name: string }, port: number, clientNamespace: string, req: RequestHead): RouteDecision {
    const key = objectKey(service.namespace, service.name);
    const entry = this.#entries.get(`${key}:${port}`) ?? this.#entries.get(`${key}:${ANY_PORT}`);
    // A consumer group never has the Service's own namespace, so its clients get the producer's.
    const candidates = entry?.get(clientNamespace) ?? entry?.get(PRODUCER);
    if (candidates === undefined) return NONE;
    const view = new RequestView(req);
    const found = (req.grpc ? firstMatch(candidates.grpc, view) : undefined) ?? firstMatch(candidates.http, view);
    if (found === undefined) return NO_MATCH;
    return { kind: 'match', route: found.route, rule: found.rule, ruleIndex: found.ruleIndex, match: found.match };
  }
}

function firstMatch(candidates: readonly Candidate[], req: RequestView): Candidate | undefined {
  return candidates.find((c) => c.tests.every((t) => t(req)));
}

function compileRoute(route: MeshRoute): Candidate[] {
  return route.rules.flatMap((rule, ruleIndex) =>
    rule.matches.map((match, matchIndex) => {
      const base = route.kind === 'GRPCRoute' ? grpcMatch(match) : httpMatch(match);
      return { route, rule, ruleIndex, match, matchIndex, rank: base.rank, tests: base.tests };
    }),
  );
}

const PATH_RANK = { Exact: 3, RegularExpression: 2, PathPrefix: 1 } as const;

function httpMatch(match: RouteMatch): { rank: number[]; tests: Test[] } {
  const tests: Test[] = [];
  let pathRank = 0;
  let pathLength = 0;
  const path = match.path;
  if (path !== undefined) {
    pathRank = PATH_RANK[path.type];
    if (path.type === 'Exact') {
      pathLength = path.value.length;
      tests.push((r) => r.path === path.value);
    } else if (path.type === 'PathPrefix') {
      pathLength = path.value.replace(/\/$/, '').length;
      tests.push((r) => stripPathPrefix(r.path, path.value) !== undefined);
    } else {
      pathLength = path.value.length;
      const re = fullMatch(path.value);
      tests.push((r) => re(r.path));
    }
  }
  const method = match.method?.toUpperCase();
  if (method !== undefined) tests.push((r) => r.method === method);
  tests.push(...match.headers.map((h) => valueTest(h, (r) => r.header(h.name))));
  tests.push(...match.queryParams.map((q) => valueTest(q, (r) => r.query(q.name))));
  return { rank: [pathRank, pathLength, method === undefined ? 0 : 1, match.headers.length, match.queryParams.length], tests };
}

function grpcMatch(match: RouteMatch): { rank: number[]; tests: Test[] } {
  const tests = match.headers.map((h) => valueTest(h, (r) => r.header(h.name)));
  const grpc = match.grpc;
  if (grpc === undefined) return { rank: [0, 0, 0, match.headers.length], tests };
  const part = (value: string | undefined, pick: (call: { service: string; method: string }) => string): void => {
    if (value === undefined) return;
    const same = grpc.type === 'Exact' ? (s: string) => s === value : fullMatch(value);
    tests.push((r) => {
      const call = r.grpcCall;
      return call !== null && same(pick(call));
    });
  };
  part(grpc.service, (c) => c.service);
  part(grpc.method, (c) => c.method);
  const rank = [grpc.type === 'Exact' ? 2 : 1, grpc.service?.length ?? 0, grpc.method?.length ?? 0, match.headers.length];
  return { rank, tests };
}

function valueTest(m: ValueMatch, read: (r: RequestView) => string | undefined): Test {
  const same = m.type === 'Exact' ? (s: string) => s === m.value : fullMatch(m.value);
  return (r) => {
    const v = read(r);
    return v !== undefined && same(v);
  };
}

/** Gateway API regexes match the whole value. Validation refuses patterns that do not compile; one that slips through matches nothing rather than failing the whole table. */
function fullMatch(pattern: string): (s: string) => boolean {
  try {
    const re = new RegExp(`^(?:${pattern})$`);
    return (s) => re.test(s);
  } catch {
    return () => false;
  }
}

function byPrecedence(a: Candidate, b: Candidate): number {
  for (let i = 0; i < a.rank.length; i++) {
    const d = (b.rank[i] ?? 0) - (a.rank[i] ?? 0);
    if (d !== 0) return d;
  }
  const age = (a.route.createdMs ?? Infinity) - (b.route.createdMs ?? Infinity);
  if (age !== 0 && !Number.isNaN(age)) return age;
  const ka = objectKey(a.route.namespace, a.route.name);
  const kb = objectKey(b.route.namespace, b.route.name);
  if (ka !== kb) return ka < kb ? -1 : 1;
  return a.ruleIndex - b.ruleIndex || a.matchIndex - b.matchIndex;
}

function getOrSet<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let v = map.get(key);
  if (v === undefined) {
    v = make();
    map.set(key, v);
  }
  return v;
}
