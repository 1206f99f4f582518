import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BackendRef, MeshRoute, MeshState, RouteMatch, RouteParentRef, RouteRule } from '../../state/model.js';
import { meshState } from '../../testing/mesh.js';
import { pickBackend, RouteTable, stripPathPrefix, type RequestHead, type RouteDecision } from './route-table.js';

const state = (routes: MeshRoute[]): MeshState =>
  meshState({ httpRoutes: routes.filter((r) => r.kind === 'HTTPRoute'), grpcRoutes: routes.filter((r) => r.kind === 'GRPCRoute') });

const backend = (name: string, weight = 1): BackendRef => ({ namespace: 'shop', name, port: 80, weight, filters: [] });
const m = (over: Partial<RouteMatch> = {}): RouteMatch => ({ headers: [], queryParams: [], ...over });
const prefix = (value: string, over: Partial<RouteMatch> = {}): RouteMatch => m({ path: { type: 'PathPrefix', value }, ...over });
const exact = (value: string, over: Partial<RouteMatch> = {}): RouteMatch => m({ path: { type: 'Exact', value }, ...over });
const regex = (value: string, over: Partial<RouteMatch> = {}): RouteMatch => m({ path: { type: 'RegularExpression', value }, ...over });
const rule = (name: string, ...matches: RouteMatch[]): RouteRule => ({ name, matches, filters: [], backendRefs: [backend(name)] });
const WEB: RouteParentRef = { namespace: 'shop', name: 'web' };

const route = (name: string, rules: RouteRule[], over: Partial<MeshRoute> = {}): MeshRoute => ({
  kind: 'HTTPRoute',
  namespace: 'shop',
  name,
  parentRefs: [WEB],
  rules,
  ...over,
});

const req = (path: string, over: Partial<RequestHead> = {}): RequestHead => ({ method: 'GET', path, headers: {}, grpc: false, ...over });

/** "<route>#<rule name>" of the decision, or its kind. */
function decide(routes: MeshRoute[], r: RequestHead, opts: { port?: number; client?: string; service?: string } = {}): string {
  const d: RouteDecision = new RouteTable(state(routes)).decide({ namespace: 'shop', name: opts.service ?? 'web' }, opts.port ?? 80, opts.client ?? 'shop', r);
  return d.kind === 'match' ? `${d.route.name}#${d.rule.name ?? d.ruleIndex}` : d.kind;
}

describe('RouteTable: attachment (GAMMA)', () => {
  const all = route('all', [rule('r', prefix('/'))]);

  it('answers none without a route for the Service, and no-match when routes exist but none matches', () => {
    assert.equal(decide([], req('/')), 'none');
    assert.equal(decide([all], req('/'), { service: 'other' }), 'none');
    assert.equal(decide([route('api', [rule('r', prefix('/api'))])], req('/web')), 'no-match');
  });

  it('attaches a parentRef with a port to that port only, and one without a port to every port', () => {
    const p80 = route('p80', [rule('r', prefix('/only80'))], { parentRefs: [{ ...WEB, port: 80 }] });
    assert.equal(decide([p80], req('/only80')), 'p80#r');
    assert.equal(decide([p80], req('/only80'), { port: 8080 }), 'none');
    assert.equal(decide([all], req('/x'), { port: 8080 }), 'all#r');
    // On port 80 both routes are candidates together.
    assert.equal(decide([p80, all], req('/only80')), 'p80#r');
    assert.equal(decide([p80, all], req('/other')), 'all#r');
    assert.equal(decide([p80, all], req('/only80'), { port: 8080 }), 'all#r');
  });

  it('applies producer routes (the Service namespace) to clients of every namespace', () => {
    assert.equal(decide([all], req('/'), { client: 'shop' }), 'all#r');
    assert.equal(decide([all], req('/'), { client: 'billing' }), 'all#r');
  });

  it('applies a consumer route only to clients in its own namespace, instead of the producer routes', () => {
    const consumer = route('mine', [rule('r', prefix('/api'))], { namespace: 'billing' });
    assert.equal(decide([all, consumer], req('/api'), { client: 'billing' }), 'mine#r');
    // The producer route is ignored for billing even where the consumer route does not match.
    assert.equal(decide([all, consumer], req('/web'), { client: 'billing' }), 'no-match');
    assert.equal(decide([all, consumer], req('/api'), { client: 'ops' }), 'all#r');
    assert.equal(decide([all, consumer], req('/api'), { client: 'shop' }), 'all#r');
    assert.equal(decide([consumer], req('/api'), { client: 'ops' }), 'none');
  });

  it('lets a port-scoped consumer route hide the producer routes on that port only', () => {
    const consumer = route('mine', [rule('r', prefix('/'))], { namespace: 'billing', parentRefs: [{ ...WEB, port: 80 }] });
    assert.equal(decide([all, consumer], req('/'), { client: 'billing' }), 'mine#r');
    assert.equal(decide([all, consumer], req('/'), { client: 'billing', port: 9000 }), 'all#r');
  });

  it('ignores routes whose parentRef names another Service', () => {
    const other = route('other', [rule('r', prefix('/'))], { parentRefs: [{ namespace: 'shop', name: 'cart' }] });
    assert.equal(decide([other], req('/')), 'none');
    assert.equal(decide([other], req('/'), { service: 'cart' }), 'other#r');
  });
});

describe('RouteTable: HTTPRoute matches', () => {
  it('matches PathPrefix by whole segments, ignoring a trailing slash in the prefix and the query', () => {
    for (const value of ['/foo', '/foo/']) {
      const r = [route('p', [rule('r', prefix(value))])];
      for (const path of ['/foo', '/foo/', '/foo/bar', '/foo?x=1', '/foo/bar?x=/y']) assert.equal(decide(r, req(path)), 'p#r', `${value} ~ ${path}`);
      for (const path of ['/foobar', '/fo', '/', '/bar/foo']) assert.equal(decide(r, req(path)), 'no-match', `${value} !~ ${path}`);
    }
    assert.equal(stripPathPrefix('/foo/bar', '/foo'), '/bar');
    assert.equal(stripPathPrefix('/anything', '/'), '/anything');
  });

  it('matches Exact on the path without the query', () => {
    const r = [route('e', [rule('r', exact('/login'))])];
    assert.equal(decide(r, req('/login?next=/')), 'e#r');
    assert.equal(decide(r, req('/login/')), 'no-match');
  });

  it('anchors a RegularExpression to the whole path', () => {
    const r = [route('re', [rule('r', regex('/api/v[0-9]+'))])];
    assert.equal(decide(r, req('/api/v12')), 're#r');
    assert.equal(decide(r, req('/api/v1?q=2')), 're#r');
    assert.equal(decide(r, req('/x/api/v1')), 'no-match');
    assert.equal(decide(r, req('/api/v1/extra')), 'no-match');
    // An alternation is anchored as a whole, not just its first branch.
    assert.equal(decide([route('alt', [rule('r', regex('/a|/b'))])], req('/bb')), 'no-match');
  });

  it('compares the method in upper case', () => {
    const r = [route('m', [rule('r', prefix('/', { method: 'POST' }))])];
    assert.equal(decide(r, req('/', { method: 'post' })), 'm#r');
    assert.equal(decide(r, req('/', { method: 'GET' })), 'no-match');
  });

  it('matches header values case-sensitively, multi-valued headers joined with ","', () => {
    const r = [
      route('h', [
        rule('exact', prefix('/', { headers: [{ type: 'Exact', name: 'x-env', value: 'Canary' }] })),
        rule('re', prefix('/', { headers: [{ type: 'RegularExpression', name: 'x-user', value: 'a.*,b' }] })),
      ]),
    ];
    assert.equal(decide(r, req('/', { headers: { 'x-env': 'Canary' } })), 'h#exact');
    assert.equal(decide(r, req('/', { headers: { 'x-env': 'canary' } })), 'no-match');
    assert.equal(decide(r, req('/', { headers: {} })), 'no-match');
    assert.equal(decide(r, req('/', { headers: { 'x-user': ['alice', 'b'] } })), 'h#re');
    assert.equal(decide(r, req('/', { headers: { 'x-user': ['alice', 'bob'] } })), 'no-match');
  });

  it('matches query parameters on the first value of the name, decoded, names case-sensitive', () => {
    const r = [
      route('q', [
        rule('exact', prefix('/', { queryParams: [{ type: 'Exact', name: 'tier', value: 'gold plus' }] })),
        rule('re', prefix('/', { queryParams: [{ type: 'RegularExpression', name: 'id', value: '[0-9]+' }] })),
      ]),
    ];
    assert.equal(decide(r, req('/?tier=gold%20plus')), 'q#exact');
    assert.equal(decide(r, req('/?a=1&tier=gold+plus&tier=silver')), 'q#exact');
    assert.equal(decide(r, req('/?tier=silver&tier=gold%20plus')), 'no-match');
    assert.equal(decide(r, req('/?Tier=gold%20plus')), 'no-match');
    assert.equal(decide(r, req('/?id=42')), 'q#re');
    assert.equal(decide(r, req('/?id=42x')), 'no-match');
  });

  it('requires every condition of a match, and any match of a rule', () => {
    const r = [route('and', [rule('r', exact('/a', { method: 'GET', headers: [{ type: 'Exact', name: 'x', value: '1' }] }), exact('/b'))])];
    assert.equal(decide(r, req('/a', { headers: { x: '1' } })), 'and#r');
    assert.equal(decide(r, req('/a', { method: 'PUT', headers: { x: '1' } })), 'no-match');
    assert.equal(decide(r, req('/b')), 'and#r');
  });
});

describe('RouteTable: precedence across all rules of all routes', () => {
  const one = (...rules: RouteRule[]): MeshRoute[] => [route('r', rules)];

  it('ranks Exact over RegularExpression over PathPrefix, whatever the order', () => {
    const rules = [rule('prefix', prefix('/a')), rule('regex', regex('/a/.*')), rule('exact', exact('/a/b'))];
    assert.equal(decide(one(...rules), req('/a/b')), 'r#exact');
    assert.equal(decide(one(...rules.reverse()), req('/a/c')), 'r#regex');
    assert.equal(decide(one(...rules), req('/a')), 'r#prefix');
  });

  it('prefers the longest prefix, then the longest regex', () => {
    assert.equal(decide(one(rule('short', prefix('/')), rule('long', prefix('/a/b')), rule('mid', prefix('/a'))), req('/a/b/c')), 'r#long');
    assert.equal(decide(one(rule('short', regex('/.*')), rule('long', regex('/a/.*'))), req('/a/b')), 'r#long');
  });

  it('ranks path above method, method above headers, headers above query parameters', () => {
    const h = [{ type: 'Exact' as const, name: 'x', value: '1' }];
    const q = [{ type: 'Exact' as const, name: 'q', value: '1' }];
    const full = req('/a/b?q=1', { headers: { x: '1' } });
    assert.equal(decide(one(rule('method', prefix('/a', { method: 'GET', headers: h })), rule('path', prefix('/a/b'))), full), 'r#path');
    assert.equal(decide(one(rule('headers', prefix('/a', { headers: h, queryParams: q })), rule('method', prefix('/a', { method: 'GET' }))), full), 'r#method');
    assert.equal(decide(one(rule('query', prefix('/a', { queryParams: q })), rule('headers', prefix('/a', { headers: h }))), full), 'r#headers');
    assert.equal(decide(one(rule('none', prefix('/a')), rule('query', prefix('/a', { queryParams: q }))), full), 'r#query');
  });

  it('prefers more header matches, and more query parameter matches', () => {
    const h1 = [{ type: 'Exact' as const, name: 'x', value: '1' }];
    const h2 = [...h1, { type: 'Exact' as const, name: 'y', value: '2' }];
    assert.equal(decide(one(rule('one', prefix('/', { headers: h1 })), rule('two', prefix('/', { headers: h2 }))), req('/', { headers: { x: '1', y: '2' } })), 'r#two');
    const q1 = [{ type: 'Exact' as const, name: 'a', value: '1' }];
    const q2 = [...q1, { type: 'Exact' as const, name: 'b', value: '2' }];
    assert.equal(decide(one(rule('one', prefix('/', { queryParams: q1 })), rule('two', prefix('/', { queryParams: q2 }))), req('/?a=1&b=2')), 'r#two');
  });

  it('breaks ties by the oldest route, a route without a timestamp last', () => {
    const young = route('a-young', [rule('r', prefix('/'))], { createdMs: 2000 });
    const old = route('z-old', [rule('r', prefix('/'))], { createdMs: 1000 });
    const unknown = route('0-unknown', [rule('r', prefix('/'))]);
    assert.equal(decide([young, old, unknown], req('/')), 'z-old#r');
    assert.equal(decide([unknown, young], req('/')), 'a-young#r');
  });

  it('then by "namespace/name" alphabetically, then rule order, then match order', () => {
    const b = route('b', [rule('r', prefix('/'))], { createdMs: 5 });
    const a = route('a', [rule('first', prefix('/x')), rule('second', prefix('/'))], { createdMs: 5 });
    assert.equal(decide([b, a], req('/')), 'a#second');
    assert.equal(decide([a], req('/x')), 'a#first');
    const twice = route('t', [rule('one', prefix('/')), rule('two', prefix('/'))]);
    assert.equal(decide([twice], req('/')), 't#one');
    const d = new RouteTable(state([route('m', [rule('r', prefix('/', { method: 'GET' }), prefix('/', { method: 'GET' }))])])).decide({ namespace: 'shop', name: 'web' }, 80, 'shop', req('/'));
    assert.ok(d.kind === 'match' && d.match === d.rule.matches[0]);
  });

  it('ranks a match by itself, not by its rule: the more specific match of a later rule wins', () => {
    assert.equal(decide(one(rule('broad', prefix('/'), exact('/z')), rule('narrow', prefix('/a'))), req('/a')), 'r#narrow');
    const d = new RouteTable(state(one(rule('broad', prefix('/'), exact('/z')), rule('narrow', prefix('/a'))))).decide(WEB, 80, 'shop', req('/z'));
    assert.ok(d.kind === 'match' && d.ruleIndex === 0 && d.match.path?.type === 'Exact');
  });
});

describe('RouteTable: GRPCRoute', () => {
  const grpcReq = (path: string, headers: RequestHead['headers'] = {}): RequestHead => ({ method: 'POST', path, headers, grpc: true });
  const g = (over: NonNullable<RouteMatch['grpc']>, headers: RouteMatch['headers'] = []): RouteMatch => m({ grpc: over, headers });
  const grpcRoute = (name: string, rules: RouteRule[], over: Partial<MeshRoute> = {}): MeshRoute => route(name, rules, { kind: 'GRPCRoute', ...over });

  it('matches service and method of "/<service>/<method>", exactly or by anchored regex', () => {
    const r = [
      grpcRoute('g', [
        rule('both', g({ type: 'Exact', service: 'shop.Cart', method: 'Add' })),
        rule('service', g({ type: 'Exact', service: 'shop.Cart' })),
        rule('method', g({ type: 'Exact', method: 'Ping' })),
        rule('regex', g({ type: 'RegularExpression', service: 'shop\\.v[0-9]+\\.Orders', method: 'Get.*' })),
      ]),
    ];
    assert.equal(decide(r, grpcReq('/shop.Cart/Add')), 'g#both');
    assert.equal(decide(r, grpcReq('/shop.Cart/Remove')), 'g#service');
    assert.equal(decide(r, grpcReq('/any.Svc/Ping')), 'g#method');
    assert.equal(decide(r, grpcReq('/shop.v2.Orders/GetOne')), 'g#regex');
    assert.equal(decide(r, grpcReq('/xshop.v2.Orders/GetOne')), 'no-match');
    assert.equal(decide(r, grpcReq('/shop.v2.Orders/List')), 'no-match');
    assert.equal(decide(r, grpcReq('/shop.Cart/Add/extra')), 'no-match');
  });

  it('matches gRPC headers too', () => {
    const r = [grpcRoute('g', [rule('r', g({ type: 'Exact', service: 's.S' }, [{ type: 'Exact', name: 'x-tenant', value: 'a' }]))])];
    assert.equal(decide(r, grpcReq('/s.S/M', { 'x-tenant': 'a' })), 'g#r');
    assert.equal(decide(r, grpcReq('/s.S/M', { 'x-tenant': 'b' })), 'no-match');
  });

  it('ranks Exact over regex, then longer service, then longer method, then more headers', () => {
    const one = (...rules: RouteRule[]): MeshRoute[] => [grpcRoute('g', rules)];
    assert.equal(decide(one(rule('regex', g({ type: 'RegularExpression', service: 'a\\.Svc', method: 'M' })), rule('exact', g({ type: 'Exact', method: 'M' }))), grpcReq('/a.Svc/M')), 'g#exact');
    assert.equal(decide(one(rule('method', g({ type: 'Exact', method: 'Method' })), rule('service', g({ type: 'Exact', service: 'a.Svc' }))), grpcReq('/a.Svc/Method')), 'g#service');
    assert.equal(decide(one(rule('short', g({ type: 'Exact', service: 'a.Svc', method: 'M' })), rule('long', g({ type: 'Exact', service: 'a.Svc', method: 'Method' }))), grpcReq('/a.Svc/Method')), 'g#long');
    const h = [{ type: 'Exact' as const, name: 'x', value: '1' }];
    assert.equal(decide(one(rule('plain', g({ type: 'Exact', service: 'a.Svc' })), rule('header', g({ type: 'Exact', service: 'a.Svc' }, h))), grpcReq('/a.Svc/M', { x: '1' })), 'g#header');
  });

  it('gives a gRPC request GRPCRoute rules before HTTPRoute rules, and a non-gRPC request HTTPRoutes only', () => {
    const http = route('h', [rule('exact', exact('/a.Svc/M')), rule('all', prefix('/'))]);
    const grpc = grpcRoute('g', [rule('r', g({ type: 'Exact', service: 'a.Svc' }))]);
    assert.equal(decide([http, grpc], grpcReq('/a.Svc/M')), 'g#r');
    assert.equal(decide([http, grpc], grpcReq('/b.Svc/M')), 'h#all');
    assert.equal(decide([http, grpc], req('/a.Svc/M')), 'h#exact');
    assert.equal(decide([grpc], req('/a.Svc/M')), 'no-match');
  });

  it('counts GRPCRoutes as attached routes for producer and consumer groups', () => {
    const producer = route('h', [rule('all', prefix('/'))]);
    const consumer = grpcRoute('g', [rule('r', g({ type: 'Exact', service: 'a.Svc' }))], { namespace: 'billing' });
    assert.equal(decide([producer, consumer], grpcReq('/a.Svc/M'), { client: 'billing' }), 'g#r');
    assert.equal(decide([producer, consumer], req('/'), { client: 'billing' }), 'no-match');
    assert.equal(decide([producer, consumer], grpcReq('/a.Svc/M'), { client: 'ops' }), 'h#all');
  });
});

describe('pickBackend', () => {
  /** mulberry32: a small seeded generator, so the distribution test is reproducible. */
  const seeded = (seed: number): (() => number) => () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const withBackends = (...backendRefs: BackendRef[]): RouteRule => ({ matches: [m()], filters: [], backendRefs });

  it('splits 90/10 by weight and never picks a weight-0 backend', () => {
    const r = withBackends(backend('zero-a', 0), backend('v1', 90), backend('zero-b', 0), backend('v2', 10), backend('zero-c', 0));
    const random = seeded(42);
    const counts = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const b = pickBackend(r, random);
      counts.set(b!.name, (counts.get(b!.name) ?? 0) + 1);
    }
    assert.deepEqual([...counts.keys()].sort(), ['v1', 'v2']);
    assert.ok(counts.get('v1')! >= 8800 && counts.get('v1')! <= 9200, `v1 got ${counts.get('v1')}`);
    assert.ok(counts.get('v2')! >= 800 && counts.get('v2')! <= 1200, `v2 got ${counts.get('v2')}`);
  });

  it('maps the ends of the random range to the first and last weighted backends', () => {
    const r = withBackends(backend('zero', 0), backend('a', 1), backend('b', 3), backend('zero-2', 0));
    assert.equal(pickBackend(r, () => 0)?.name, 'a');
    assert.equal(pickBackend(r, () => 0.2499)?.name, 'a');
    assert.equal(pickBackend(r, () => 0.25)?.name, 'b');
    assert.equal(pickBackend(r, () => 0.999999999)?.name, 'b');
  });

  it('returns undefined without backends or when every weight is 0', () => {
    assert.equal(pickBackend(withBackends()), undefined);
    assert.equal(pickBackend(withBackends(backend('a', 0), backend('b', 0))), undefined);
    assert.equal(pickBackend(withBackends(backend('only')))?.name, 'only');
  });
});
