import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MeshState } from '../../state/model.js';
import { applyConfig } from '../apply.js';
import { parseConfig } from '../config-docs.js';
import { ACCEPTED_KINDS } from './index.js';

const apply = (previous: MeshState | null, yaml: string): MeshState =>
  applyConfig(previous, parseConfig(yaml, 'mesh.yaml'), { node: 'node-1', cgroupExists: () => true });

const PARENT = '[{ group: "", kind: Service, name: web }]';

const httpRoute = (spec: string, name = 'web', apiVersion = 'gateway.networking.k8s.io/v1'): string =>
  `apiVersion: ${apiVersion}\nkind: HTTPRoute\nmetadata: { name: ${name}, namespace: shop }\nspec: ${spec}\n`;
const grpcRoute = (spec: string, name = 'cart'): string =>
  `apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: { name: ${name}, namespace: shop }\nspec: ${spec}\n`;
/** An HTTPRoute with the usual parent and one rule. */
const rule = (body: string): string => httpRoute(`{ parentRefs: ${PARENT}, rules: [${body}] }`);
const grpcRule = (body: string): string => grpcRoute(`{ parentRefs: ${PARENT}, rules: [${body}] }`);

const ROOT = { path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] };

describe('HTTPRoute validation', () => {
  it('is accepted under gateway.networking.k8s.io v1 and v1beta1, and GRPCRoute under v1', () => {
    assert.match(ACCEPTED_KINDS, /gateway\.networking\.k8s\.io\/v1 HTTPRoute, gateway\.networking\.k8s\.io\/v1beta1 HTTPRoute, gateway\.networking\.k8s\.io\/v1 GRPCRoute/);
    const state = apply(null, [httpRoute(`{ parentRefs: ${PARENT} }`, 'a'), httpRoute(`{ parentRefs: ${PARENT} }`, 'b', 'gateway.networking.k8s.io/v1beta1')].join('---\n'));
    assert.deepEqual(state.rejections, []);
    // Without rules, the CRD's default: one rule matching every request, no backend (500).
    assert.deepEqual(state.httpRoutes.get('shop/b'), {
      kind: 'HTTPRoute', namespace: 'shop', name: 'b', parentRefs: [{ namespace: 'shop', name: 'web' }],
      rules: [{ matches: [ROOT], filters: [], backendRefs: [] }],
    });
  });

  it('reads a full route into the model, with Gateway API defaults filled in', () => {
    const state = apply(null, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web, namespace: shop, creationTimestamp: "2024-05-01T10:00:00Z" }
spec:
  parentRefs:
  - { group: "", kind: Service, name: web, port: 80 }
  - { group: "", kind: Service, name: web, namespace: front }
  hostnames: [web.shop.svc.cluster.local, "*.example.com"]
  rules:
  - name: api
    matches:
    - path: { type: PathPrefix, value: /api }
      headers: [{ name: X-User, value: alice }, { type: RegularExpression, name: x-tier, value: "gold|silver" }]
      queryParams: [{ name: Debug, value: "1" }]
      method: GET
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{ name: X-Route, value: api }]
        add: [{ name: X-Trace, value: "on" }]
        remove: [X-Internal]
    - type: ResponseHeaderModifier
      responseHeaderModifier: { remove: [Server] }
    - type: URLRewrite
      urlRewrite: { hostname: api.shop, path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } }
    - type: RequestMirror
      requestMirror: { backendRef: { name: shadow, port: 8080 }, fraction: { numerator: 1, denominator: 8 } }
    - type: RequestMirror
      requestMirror: { backendRef: { name: audit, namespace: ops, port: 80 } }
    backendRefs:
    - name: web-v2
      port: 80
      weight: 90
      filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-version, value: v2 }] } }]
    - { group: "", kind: Service, name: web-v1, port: 80, weight: 0 }
    timeouts: { request: 10s, backendRequest: 1s500ms }
    retry: { codes: [502, 503], attempts: 3, backoff: 100ms }
  - matches:
    - path: { type: Exact, value: /old }
    - headers: [{ name: x-legacy, value: "true" }]
    - path: { type: RegularExpression, value: "/items/[0-9]+" }
    filters:
    - type: RequestRedirect
      requestRedirect: { scheme: https, hostname: new.example.com, port: 8443, statusCode: 301, path: { type: ReplaceFullPath, replaceFullPath: /new } }
  - timeouts: { request: 0s }
    retry: {}
    backendRefs: [{ name: web, port: 80 }]
`);
    assert.deepEqual(state.rejections, []);
    assert.deepEqual(state.httpRoutes.get('shop/web'), {
      kind: 'HTTPRoute',
      namespace: 'shop',
      name: 'web',
      createdMs: Date.UTC(2024, 4, 1, 10),
      parentRefs: [{ namespace: 'shop', name: 'web', port: 80 }, { namespace: 'front', name: 'web' }],
      rules: [
        {
          name: 'api',
          matches: [{
            path: { type: 'PathPrefix', value: '/api' },
            headers: [{ type: 'Exact', name: 'x-user', value: 'alice' }, { type: 'RegularExpression', name: 'x-tier', value: 'gold|silver' }],
            queryParams: [{ type: 'Exact', name: 'Debug', value: '1' }],
            method: 'GET',
          }],
          filters: [
            { type: 'RequestHeaderModifier', modifier: { set: [{ name: 'x-route', value: 'api' }], add: [{ name: 'x-trace', value: 'on' }], remove: ['x-internal'] } },
            { type: 'ResponseHeaderModifier', modifier: { set: [], add: [], remove: ['server'] } },
            { type: 'URLRewrite', hostname: 'api.shop', path: { type: 'ReplacePrefixMatch', value: '/v2' } },
            { type: 'RequestMirror', backend: { namespace: 'shop', name: 'shadow', port: 8080 }, percent: 12.5 },
            { type: 'RequestMirror', backend: { namespace: 'ops', name: 'audit', port: 80 }, percent: 100 },
          ],
          backendRefs: [
            {
              namespace: 'shop', name: 'web-v2', port: 80, weight: 90,
              filters: [{ type: 'RequestHeaderModifier', modifier: { set: [{ name: 'x-version', value: 'v2' }], add: [], remove: [] } }],
            },
            { namespace: 'shop', name: 'web-v1', port: 80, weight: 0, filters: [] },
          ],
          timeouts: { requestMs: 10_000, backendRequestMs: 1500 },
          retry: { codes: [502, 503], attempts: 3, backoffMs: 100 },
        },
        {
          matches: [
            { path: { type: 'Exact', value: '/old' }, headers: [], queryParams: [] },
            { path: { type: 'PathPrefix', value: '/' }, headers: [{ type: 'Exact', name: 'x-legacy', value: 'true' }], queryParams: [] },
            { path: { type: 'RegularExpression', value: '/items/[0-9]+' }, headers: [], queryParams: [] },
          ],
          filters: [{
            type: 'RequestRedirect', scheme: 'https', hostname: 'new.example.com', port: 8443, statusCode: 301,
            path: { type: 'ReplaceFullPath', value: '/new' },
          }],
          backendRefs: [],
        },
        {
          matches: [ROOT],
          filters: [],
          backendRefs: [{ namespace: 'shop', name: 'web', port: 80, weight: 1, filters: [] }],
          timeouts: { requestMs: 0 },
          retry: { codes: [] },
        },
      ],
    });
  });

  it('fills path defaults and the redirect status code', () => {
    const state = apply(null, rule('{ matches: [{ path: { value: /a } }, { path: { type: Exact } }], filters: [{ type: RequestRedirect, requestRedirect: {} }] }'));
    assert.deepEqual(state.rejections, []);
    const [r] = state.httpRoutes.get('shop/web')!.rules;
    assert.deepEqual(r!.matches.map((m) => m.path), [{ type: 'PathPrefix', value: '/a' }, { type: 'Exact', value: '/' }]);
    assert.deepEqual(r!.filters, [{ type: 'RequestRedirect', statusCode: 302 }]);
  });

  const GAMMA = 'nodemesh supports only Service parents (GAMMA): set group: "" and kind: Service';
  const invalid: Array<[string, string, string, string]> = [
    // [what, route YAML, field, reason]
    ['a Gateway parent by default', httpRoute('{ parentRefs: [{ name: gw }] }'), 'spec.parentRefs[0].kind',
      `${GAMMA}; got group "gateway.networking.k8s.io", kind "Gateway" (group and kind default to a gateway.networking.k8s.io Gateway)`],
    ['a Service parent in another group', httpRoute('{ parentRefs: [{ group: core, kind: Service, name: web }] }'), 'spec.parentRefs[0].group',
      `${GAMMA}; got group "core", kind "Service"`],
    ['no parentRefs', httpRoute('{ rules: [{}] }'), 'spec.parentRefs', 'is required: name the Service this route attaches to, with group: "" and kind: Service (GAMMA)'],
    ['a parent sectionName', httpRoute('{ parentRefs: [{ group: "", kind: Service, name: web, sectionName: http }] }'), 'spec.parentRefs[0].sectionName',
      'is not supported: attach to one port of the Service with port (its number)'],
    ['the same parent twice', httpRoute('{ parentRefs: [{ group: "", kind: Service, name: web }, { group: "", kind: Service, name: web, namespace: shop }] }'),
      'spec.parentRefs[1]', 'duplicate of spec.parentRefs[0]'],
    ['an IP hostname', httpRoute(`{ parentRefs: ${PARENT}, hostnames: [10.0.0.1, Web.Shop] }`), 'spec.hostnames[1]',
      'must be a lowercase DNS hostname, optionally starting with "*.", got "Web.Shop"'],
    ['17 rules', httpRoute(`{ parentRefs: ${PARENT}, rules: [${Array(17).fill('{}').join(', ')}] }`), 'spec.rules', 'must have at most 16 entries, got 17'],
    ['empty rules', httpRoute(`{ parentRefs: ${PARENT}, rules: [] }`), 'spec.rules', 'must not be empty: remove it for the default rule, or list rules'],
    ['a relative path', rule('{ matches: [{ path: { type: PathPrefix, value: api } }] }'), 'spec.rules[0].matches[0].path.value', 'must start with "/" when type is PathPrefix, got "api"'],
    ['a path with //', rule('{ matches: [{}, { path: { type: Exact, value: //a } }] }'), 'spec.rules[0].matches[1].path.value', 'must not contain "//" when type is Exact, got "//a"'],
    ['a path with a query', rule('{ matches: [{ path: { value: "/a?b=c" } }] }'), 'spec.rules[0].matches[0].path.value',
      'must contain only URL path characters (no spaces, "?" or "#"; %-encode others) when type is PathPrefix, got "/a?b=c"'],
    ['an unknown path type', rule('{ matches: [{ path: { type: Prefix, value: /a } }] }'), 'spec.rules[0].matches[0].path.type', 'must be Exact, PathPrefix or RegularExpression, got "Prefix"'],
    ['a regex that does not compile', rule('{ matches: [{ path: { type: RegularExpression, value: "/a(b" } }] }'), 'spec.rules[0].matches[0].path.value',
      'must be a valid regular expression (JavaScript syntax, matched against the whole value): Unterminated group'],
    ['a header name with a colon', rule('{ matches: [{ headers: [{ name: ":authority", value: x }] }] }'), 'spec.rules[0].matches[0].headers[0].name',
      'must be an HTTP header name (1 to 256 letters, digits and !#$%&\'*+-.^_`|~; no ":" pseudo-headers), got ":authority"'],
    ['a header matched twice', rule('{ matches: [{ headers: [{ name: X-A, value: "1" }, { name: x-a, value: "2" }] }] }'), 'spec.rules[0].matches[0].headers[1].name',
      'duplicate header (names are case-insensitive) "x-a", already matched by spec.rules[0].matches[0].headers[0]'],
    ['a header without value', rule('{ matches: [{ headers: [{ name: x-a }] }] }'), 'spec.rules[0].matches[0].headers[0].value', 'is required'],
    ['a lowercase method', rule('{ matches: [{ method: get }] }'), 'spec.rules[0].matches[0].method', 'must be one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH, got "get"'],
    ['a typo in a match', rule('{ matches: [{ paths: { value: /a } }] }'), 'spec.rules[0].matches[0].paths', 'unknown field; accepted: path, headers, queryParams, method'],
    ['RequestRedirect with URLRewrite', rule('{ filters: [{ type: RequestRedirect, requestRedirect: {} }, { type: URLRewrite, urlRewrite: {} }] }'), 'spec.rules[0].filters[1].type',
      'RequestRedirect and URLRewrite cannot be used together: a redirect answers the request, a rewrite forwards it'],
    ['RequestRedirect with backendRefs', rule('{ filters: [{ type: RequestRedirect, requestRedirect: {} }], backendRefs: [{ name: web, port: 80 }] }'), 'spec.rules[0].backendRefs',
      'must be empty when the rule has a RequestRedirect filter: the redirect answers every request of the rule'],
    ['a repeated header modifier', rule('{ filters: [{ type: RequestHeaderModifier, requestHeaderModifier: {} }, { type: RequestHeaderModifier, requestHeaderModifier: {} }] }'),
      'spec.rules[0].filters[1].type', 'RequestHeaderModifier may appear only once in a filter list, already at spec.rules[0].filters[0]'],
    ['ExtensionRef', rule('{ filters: [{ type: ExtensionRef, extensionRef: { group: x.io, kind: F, name: f } }] }'), 'spec.rules[0].filters[0].type',
      'ExtensionRef filters are implementation-specific and nodemesh defines none'],
    ['an unknown filter type', rule('{ filters: [{ type: Rewrite }] }'), 'spec.rules[0].filters[0].type',
      'must be one of RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror, got "Rewrite"'],
    ['settings of another filter type', rule('{ filters: [{ type: URLRewrite, urlRewrite: {}, requestRedirect: {} }] }'), 'spec.rules[0].filters[0].requestRedirect',
      'must not be set when type is URLRewrite'],
    ['a filter without its settings', rule('{ filters: [{ type: RequestMirror }] }'), 'spec.rules[0].filters[0].requestMirror', 'is required when type is RequestMirror'],
    ['two actions on one header', rule('{ filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: X-A, value: "1" }], remove: [x-a] } }] }'),
      'spec.rules[0].filters[0].requestHeaderModifier.remove[0]', 'header "x-a" already has an action at spec.rules[0].filters[0].requestHeaderModifier.set[0].name: only one action per header name'],
    ['a header value with a line break', rule('{ filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { add: [{ name: x-a, value: "a\\r\\nb" }] } }] }'),
      'spec.rules[0].filters[0].requestHeaderModifier.add[0].value', 'must not contain control characters such as line breaks, got "a\\r\\nb"'],
    ['ReplacePrefixMatch after an Exact match', rule('{ matches: [{ path: { type: Exact, value: /a } }], filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /b } } }] }'),
      'spec.rules[0].filters[0].urlRewrite.path.type', 'ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix (the prefix it replaces)'],
    ['ReplacePrefixMatch after two matches, in a backend filter', rule('{ matches: [{ path: { value: /a } }, { path: { value: /b } }], backendRefs: [{ name: web, port: 80, filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /c } } }] }] }'),
      'spec.rules[0].backendRefs[0].filters[0].urlRewrite.path.type', 'ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix (the prefix it replaces)'],
    ['a path modifier value of the other type', rule('{ filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /a, replacePrefixMatch: /b } } }] }'),
      'spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch', 'must not be set when type is ReplaceFullPath; set replaceFullPath'],
    ['a redirect status of 305', rule('{ filters: [{ type: RequestRedirect, requestRedirect: { statusCode: 305 } }] }'), 'spec.rules[0].filters[0].requestRedirect.statusCode',
      'must be one of 301, 302, 303, 307, 308, got number 305'],
    ['a redirect scheme ftp', rule('{ filters: [{ type: RequestRedirect, requestRedirect: { scheme: ftp } }] }'), 'spec.rules[0].filters[0].requestRedirect.scheme', 'must be http or https, got "ftp"'],
    ['a wildcard rewrite hostname', rule('{ filters: [{ type: URLRewrite, urlRewrite: { hostname: "*.shop" } }] }'), 'spec.rules[0].filters[0].urlRewrite.hostname',
      'must be a lowercase DNS hostname without wildcard or IP address, got "*.shop"'],
    ['a mirror with percent and fraction', rule('{ filters: [{ type: RequestMirror, requestMirror: { backendRef: { name: s, port: 80 }, percent: 5, fraction: { numerator: 1 } } }] }'),
      'spec.rules[0].filters[0].requestMirror.fraction', 'only one of percent and fraction may be set'],
    ['a mirror fraction above 1', rule('{ filters: [{ type: RequestMirror, requestMirror: { backendRef: { name: s, port: 80 }, fraction: { numerator: 3, denominator: 2 } } }] }'),
      'spec.rules[0].filters[0].requestMirror.fraction.numerator', 'must be at most the denominator (2), got 3'],
    ['a mirror without port', rule('{ filters: [{ type: RequestMirror, requestMirror: { backendRef: { name: s } } }] }'), 'spec.rules[0].filters[0].requestMirror.backendRef.port',
      'is required for a Service backend'],
    ['a backend without port', rule('{ backendRefs: [{ name: web }] }'), 'spec.rules[0].backendRefs[0].port', 'is required for a Service backend'],
    ['a backend of another kind', rule('{ backendRefs: [{ kind: ServiceImport, group: multicluster.x-k8s.io, name: web, port: 80 }] }'), 'spec.rules[0].backendRefs[0].kind',
      'nodemesh sends only to Services: group must be "" and kind Service, got group "multicluster.x-k8s.io", kind "ServiceImport"'],
    ['a weight above 1000000', rule('{ backendRefs: [{ name: web, port: 80, weight: 1000001 }] }'), 'spec.rules[0].backendRefs[0].weight',
      'must be an integer between 0 and 1000000, got number 1000001'],
    ['a backend name that is no Service name', rule('{ backendRefs: [{ name: Web, port: 80 }] }'), 'spec.rules[0].backendRefs[0].name',
      'must name a Service: must be a DNS-1035 label (at most 63 characters: lowercase letters, digits and \'-\', starting with a letter and ending with a letter or digit), got "Web"'],
    ['a backend timeout longer than the request timeout', rule('{ timeouts: { request: 1s, backendRequest: 2s } }'), 'spec.rules[0].timeouts.backendRequest',
      'must not be longer than the request timeout (1s), which covers every backend request; got "2s"'],
    ['a fractional timeout', rule('{ timeouts: { request: 1.5s } }'), 'spec.rules[0].timeouts.request',
      'must be a Gateway API duration: up to four <number><unit> parts with units h, m, s, ms and at most 5 digits each, such as "10s", "500ms" or "1h30m", got "1.5s"'],
    ['a retry code of 200', rule('{ retry: { codes: [503, 200] } }'), 'spec.rules[0].retry.codes[1]', 'must be an HTTP status code between 400 and 599, got number 200'],
    ['negative retry attempts', rule('{ retry: { attempts: -1 } }'), 'spec.rules[0].retry.attempts', 'must be an integer between 0 and 2147483647, got number -1'],
    ['sessionPersistence', rule('{ sessionPersistence: { type: Cookie } }'), 'spec.rules[0].sessionPersistence', 'is not supported by nodemesh'],
    ['two rules with one name', rule('{ name: a }, { name: a }'), 'spec.rules[1].name', 'duplicate rule name "a", already used by spec.rules[0]'],
    ['a bad creationTimestamp', httpRoute(`{ parentRefs: ${PARENT} }`).replace('namespace: shop }', 'namespace: shop, creationTimestamp: yesterday }'), 'metadata.creationTimestamp',
      'must be an RFC 3339 time such as "2024-05-01T10:00:00Z", got "yesterday"'],
  ];

  for (const [what, yaml, field, reason] of invalid) {
    it(`rejects ${what} alone, naming the field, and keeps the last good version`, () => {
      const good = apply(null, rule('{ backendRefs: [{ name: web, port: 80 }] }'));
      const other = httpRoute(`{ parentRefs: ${PARENT} }`, 'other');
      const next = apply(good, [yaml, other].join('---\n'));
      assert.deepEqual(next.rejections, [{ resource: 'HTTPRoute shop/web', field, reason }]);
      assert.deepEqual(next.httpRoutes.get('shop/web'), good.httpRoutes.get('shop/web'));
      assert.ok(next.httpRoutes.has('shop/other'), 'the rest of the file applies');
    });
  }

  it('refuses more than 128 matches over all rules', () => {
    const matches = `[${Array(64).fill('{}').join(', ')}]`;
    const state = apply(null, rule(`{ matches: ${matches} }, { matches: ${matches} }, { matches: [{}] }`));
    assert.deepEqual(state.rejections, [{ resource: 'HTTPRoute shop/web', field: 'spec.rules', reason: 'must have at most 128 matches over all rules, got 129' }]);
  });
});

describe('GRPCRoute validation', () => {
  it('reads method and header matches; a rule without matches matches every call', () => {
    const state = apply(null, grpcRoute(`
  parentRefs: [{ group: "", kind: Service, name: cart, port: 50051 }]
  hostnames: [cart.shop]
  rules:
  - matches:
    - method: { service: shop.v1.Cart, method: GetCart }
      headers: [{ name: X-Tenant, value: acme }]
    - method: { type: RegularExpression, service: "shop\\\\.v[0-9]+\\\\.Cart" }
    - method: { method: Ping }
    filters:
    - { type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-route, value: cart }] } }
    - { type: RequestMirror, requestMirror: { backendRef: { name: cart-shadow, port: 50051 }, percent: 10 } }
    backendRefs: [{ name: cart-v2, port: 50051, weight: 3 }, { name: cart, port: 50051 }]
  - backendRefs: [{ name: cart, port: 50051 }]
`));
    assert.deepEqual(state.rejections, []);
    assert.deepEqual(state.grpcRoutes.get('shop/cart'), {
      kind: 'GRPCRoute',
      namespace: 'shop',
      name: 'cart',
      parentRefs: [{ namespace: 'shop', name: 'cart', port: 50051 }],
      rules: [
        {
          matches: [
            { headers: [{ type: 'Exact', name: 'x-tenant', value: 'acme' }], queryParams: [], grpc: { type: 'Exact', service: 'shop.v1.Cart', method: 'GetCart' } },
            { headers: [], queryParams: [], grpc: { type: 'RegularExpression', service: 'shop\\.v[0-9]+\\.Cart' } },
            { headers: [], queryParams: [], grpc: { type: 'Exact', method: 'Ping' } },
          ],
          filters: [
            { type: 'RequestHeaderModifier', modifier: { set: [{ name: 'x-route', value: 'cart' }], add: [], remove: [] } },
            { type: 'RequestMirror', backend: { namespace: 'shop', name: 'cart-shadow', port: 50051 }, percent: 10 },
          ],
          backendRefs: [
            { namespace: 'shop', name: 'cart-v2', port: 50051, weight: 3, filters: [] },
            { namespace: 'shop', name: 'cart', port: 50051, weight: 1, filters: [] },
          ],
        },
        {
          matches: [{ headers: [], queryParams: [] }],
          filters: [],
          backendRefs: [{ namespace: 'shop', name: 'cart', port: 50051, weight: 1, filters: [] }],
        },
      ],
    });
  });

  it('keeps a GRPCRoute and an HTTPRoute of the same name apart', () => {
    const state = apply(null, [grpcRoute(`{ parentRefs: ${PARENT} }`, 'web'), httpRoute(`{ parentRefs: ${PARENT} }`, 'web')].join('---\n'));
    assert.deepEqual(state.rejections, []);
    assert.deepEqual(state.grpcRoutes.get('shop/web')?.rules, []);
    assert.equal(state.httpRoutes.get('shop/web')?.rules.length, 1);
  });

  const invalid: Array<[string, string, string, string]> = [
    ['a method match without service or method', '{ matches: [{ method: { type: Exact } }] }', 'spec.rules[0].matches[0].method', 'must set service, method or both'],
    ['an Exact service with a slash', '{ matches: [{ method: { service: shop.v1/Cart } }] }', 'spec.rules[0].matches[0].method.service',
      'must be a fully qualified gRPC service name such as "shop.v1.Cart" when type is Exact, got "shop.v1/Cart"'],
    ['an Exact method with a dot', '{ matches: [{ method: { service: a.B, method: Get.Cart } }] }', 'spec.rules[0].matches[0].method.method',
      'must be a gRPC method name such as "GetCart" when type is Exact, got "Get.Cart"'],
    ['a method regex that does not compile', '{ matches: [{ method: { type: RegularExpression, method: "Get[" } }] }', 'spec.rules[0].matches[0].method.method',
      'must be a valid regular expression (JavaScript syntax, matched against the whole value): Unterminated character class'],
    ['an unknown method match type', '{ matches: [{ method: { type: Prefix, service: a } }] }', 'spec.rules[0].matches[0].method.type', 'must be Exact or RegularExpression, got "Prefix"'],
    ['a path match', '{ matches: [{ path: { value: /a } }] }', 'spec.rules[0].matches[0].path', 'unknown field; accepted: method, headers'],
    ['timeouts', '{ timeouts: { request: 1s } }', 'spec.rules[0].timeouts', 'unknown field; accepted: name, matches, filters, backendRefs'],
    ['retry', '{ retry: { attempts: 1 } }', 'spec.rules[0].retry', 'unknown field; accepted: name, matches, filters, backendRefs'],
    ['a URLRewrite filter', '{ filters: [{ type: URLRewrite, urlRewrite: {} }] }', 'spec.rules[0].filters[0].type',
      'URLRewrite is not a GRPCRoute filter; accepted: RequestHeaderModifier, ResponseHeaderModifier, RequestMirror'],
    ['a RequestRedirect backend filter', '{ backendRefs: [{ name: cart, port: 80, filters: [{ type: RequestRedirect, requestRedirect: {} }] }] }',
      'spec.rules[0].backendRefs[0].filters[0].type', 'RequestRedirect is not a GRPCRoute filter; accepted: RequestHeaderModifier, ResponseHeaderModifier, RequestMirror'],
  ];

  for (const [what, body, field, reason] of invalid) {
    it(`rejects ${what} and keeps the last good version`, () => {
      const good = apply(null, grpcRule('{ backendRefs: [{ name: cart, port: 50051 }] }'));
      const next = apply(good, grpcRule(body));
      assert.deepEqual(next.rejections, [{ resource: 'GRPCRoute shop/cart', field, reason }]);
      assert.deepEqual(next.grpcRoutes.get('shop/cart'), good.grpcRoutes.get('shop/cart'));
      assert.equal(next.version, good.version, 'nothing accepted changed');
    });
  }
});
