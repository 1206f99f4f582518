import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HeaderModifier, PathModifier, RouteMatch } from '../../state/model.js';
import { applyHeaderModifier, redirectLocation, rewriteUrl, type HeaderRecord, type RequestRedirectFilter } from './filters.js';

const prefix = (value: string): RouteMatch => ({ path: { type: 'PathPrefix', value }, headers: [], queryParams: [] });
const mod = (over: Partial<HeaderModifier>): HeaderModifier => ({ set: [], add: [], remove: [], ...over });
/** On the wire an array is the header repeated; Gateway API conformance compares the values joined with ",". */
const wire = (h: HeaderRecord): Record<string, string> => Object.fromEntries(Object.entries(h).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v]));

describe('applyHeaderModifier (HTTPRouteRequestHeaderModifier and the rewrite conformance cases)', () => {
  const cases: Array<[string, HeaderModifier, HeaderRecord, Record<string, string>]> = [
    ['set adds a missing header', mod({ set: [{ name: 'x-header-set', value: 'set-overwrites-values' }] }), { 'some-other-header': 'val' }, { 'some-other-header': 'val', 'x-header-set': 'set-overwrites-values' }],
    ['set overwrites', mod({ set: [{ name: 'x-header-set', value: 'set-overwrites-values' }] }), { 'some-other-header': 'val', 'x-header-set': 'some-other-value' }, { 'some-other-header': 'val', 'x-header-set': 'set-overwrites-values' }],
    ['add adds a missing header', mod({ add: [{ name: 'x-header-add', value: 'add-appends-values' }] }), { 'some-other-header': 'val' }, { 'some-other-header': 'val', 'x-header-add': 'add-appends-values' }],
    ['add appends', mod({ add: [{ name: 'x-header-add', value: 'add-appends-values' }] }), { 'some-other-header': 'val', 'x-header-add': 'some-other-value' }, { 'some-other-header': 'val', 'x-header-add': 'some-other-value,add-appends-values' }],
    ['remove', mod({ remove: ['x-header-remove'] }), { 'x-header-remove': 'val' }, {}],
    [
      'multiple',
      mod({
        set: [{ name: 'x-header-set-1', value: 'header-set-1' }, { name: 'x-header-set-2', value: 'header-set-2' }],
        add: [{ name: 'x-header-add-1', value: 'header-add-1' }, { name: 'x-header-add-2', value: 'header-add-2' }, { name: 'x-header-add-3', value: 'header-add-3' }],
        remove: ['x-header-remove-1', 'x-header-remove-2'],
      }),
      { 'x-header-set-2': 'set-val-2', 'x-header-add-2': 'add-val-2', 'x-header-remove-2': 'remove-val-2', 'another-header': 'another-header-val' },
      { 'x-header-set-1': 'header-set-1', 'x-header-set-2': 'header-set-2', 'x-header-add-1': 'header-add-1', 'x-header-add-2': 'add-val-2,header-add-2', 'x-header-add-3': 'header-add-3', 'another-header': 'another-header-val' },
    ],
    [
      'rewrite-path-and-modify-headers',
      mod({ set: [{ name: 'x-header-set', value: 'set-overwrites-values' }], add: [{ name: 'x-header-add', value: 'header-val-1' }, { name: 'x-header-add-append', value: 'header-val-2' }], remove: ['x-header-remove'] }),
      { 'x-header-remove': 'remove-val', 'x-header-add-append': 'append-val-1', 'x-header-set': 'set-val' },
      { 'x-header-add': 'header-val-1', 'x-header-add-append': 'append-val-1,header-val-2', 'x-header-set': 'set-overwrites-values' },
    ],
    ['add to a header that already has several values', mod({ add: [{ name: 'x', value: 'c' }] }), { x: ['a', 'b'] }, { x: 'a,b,c' }],
    ['set replaces every value', mod({ set: [{ name: 'x', value: 'only' }] }), { x: ['a', 'b'] }, { x: 'only' }],
    ['remove runs before set and add, as in Envoy', mod({ remove: ['x'], set: [{ name: 'x', value: 's' }], add: [{ name: 'x', value: 'a' }] }), { x: 'old' }, { x: 's,a' }],
  ];
  for (const [name, modifier, input, expected] of cases) {
    it(name, () => assert.deepEqual(wire(applyHeaderModifier(input, modifier)), expected));
  }

  it('keeps an appended value as a separate entry and leaves its input alone', () => {
    const input: HeaderRecord = { 'set-cookie': 'a=1' };
    const out = applyHeaderModifier(input, mod({ add: [{ name: 'set-cookie', value: 'b=2' }], remove: ['set-cookie-x'] }));
    assert.deepEqual(out, { 'set-cookie': ['a=1', 'b=2'] });
    assert.deepEqual(input, { 'set-cookie': 'a=1' });
  });
});

type Redirect = Omit<RequestRedirectFilter, 'type' | 'statusCode'>;
const redirect = (over: Redirect, req: { scheme?: 'http' | 'https'; host: string; path: string }, match: RouteMatch): string =>
  redirectLocation({ type: 'RequestRedirect', statusCode: 302, ...over }, { scheme: 'http', ...req }, match);

describe('redirectLocation (HTTPRouteRedirect* conformance)', () => {
  const full = (value: string): PathModifier => ({ type: 'ReplaceFullPath', value });
  const replacePrefix = (value: string): PathModifier => ({ type: 'ReplacePrefixMatch', value });

  // [name, filter, request, matched prefix, Location]
  const cases: Array<[string, Redirect, { scheme?: 'http' | 'https'; host: string; path: string }, string, string]> = [
    // HTTPRouteRedirectHostAndStatus (status codes 301/302/303/307/308 are the filter's statusCode, untouched here)
    ['hostname-redirect', { hostname: 'example.org' }, { host: 'echo', path: '/hostname-redirect' }, '/hostname-redirect', 'http://example.org/hostname-redirect'],
    ['host-and-status', { hostname: 'example.org' }, { host: 'echo', path: '/host-and-status' }, '/host-and-status', 'http://example.org/host-and-status'],
    ['303/307/308 keep the request URL', {}, { host: 'echo', path: '/see-other' }, '/see-other', 'http://echo/see-other'],
    // HTTPRouteRedirectPort
    ['port', { port: 8083 }, { host: 'echo', path: '/port' }, '/port', 'http://echo:8083/port'],
    ['port-and-host', { hostname: 'example.org', port: 8083 }, { host: 'echo', path: '/port-and-host' }, '/port-and-host', 'http://example.org:8083/port-and-host'],
    ['port-and-host-and-status', { hostname: 'example.org', port: 8083 }, { host: 'echo', path: '/port-and-host-and-status' }, '/port-and-host-and-status', 'http://example.org:8083/port-and-host-and-status'],
    // HTTPRouteRedirectScheme
    ['scheme', { scheme: 'https' }, { host: 'echo', path: '/scheme' }, '/scheme', 'https://echo/scheme'],
    ['scheme-and-host', { scheme: 'https', hostname: 'example.org' }, { host: 'echo', path: '/scheme-and-host' }, '/scheme-and-host', 'https://example.org/scheme-and-host'],
    // HTTPRouteRedirectPortAndScheme, listener http on 80
    ['80: scheme-nil-and-port-nil', { hostname: 'example.org' }, { host: 'gw', path: '/scheme-nil-and-port-nil' }, '/scheme-nil-and-port-nil', 'http://example.org/scheme-nil-and-port-nil'],
    ['80: scheme-nil-and-port-80', { hostname: 'example.org', port: 80 }, { host: 'gw', path: '/scheme-nil-and-port-80' }, '/scheme-nil-and-port-80', 'http://example.org/scheme-nil-and-port-80'],
    ['80: scheme-nil-and-port-8080', { hostname: 'example.org', port: 8080 }, { host: 'gw', path: '/scheme-nil-and-port-8080' }, '/scheme-nil-and-port-8080', 'http://example.org:8080/scheme-nil-and-port-8080'],
    ['80: scheme-https-and-port-nil', { scheme: 'https', hostname: 'example.org' }, { host: 'gw', path: '/scheme-https-and-port-nil' }, '/scheme-https-and-port-nil', 'https://example.org/scheme-https-and-port-nil'],
    ['80: scheme-https-and-port-443', { scheme: 'https', hostname: 'example.org', port: 443 }, { host: 'gw', path: '/scheme-https-and-port-443' }, '/scheme-https-and-port-443', 'https://example.org/scheme-https-and-port-443'],
    ['80: scheme-https-and-port-8443', { scheme: 'https', hostname: 'example.org', port: 8443 }, { host: 'gw', path: '/scheme-https-and-port-8443' }, '/scheme-https-and-port-8443', 'https://example.org:8443/scheme-https-and-port-8443'],
    // listener http on 8080: the request's port is kept unless the scheme is set
    ['8080: scheme-nil-and-port-nil', { hostname: 'example.org' }, { host: 'gw:8080', path: '/scheme-nil-and-port-nil' }, '/scheme-nil-and-port-nil', 'http://example.org:8080/scheme-nil-and-port-nil'],
    ['8080: scheme-nil-and-port-80', { hostname: 'example.org', port: 80 }, { host: 'gw:8080', path: '/scheme-nil-and-port-80' }, '/scheme-nil-and-port-80', 'http://example.org/scheme-nil-and-port-80'],
    ['8080: scheme-https-and-port-nil', { scheme: 'https', hostname: 'example.org' }, { host: 'gw:8080', path: '/scheme-https-and-port-nil' }, '/scheme-https-and-port-nil', 'https://example.org/scheme-https-and-port-nil'],
    // listener https on 443
    ['443: scheme-nil-and-port-nil', { hostname: 'example.org' }, { scheme: 'https', host: 'example.org', path: '/scheme-nil-and-port-nil' }, '/scheme-nil-and-port-nil', 'https://example.org/scheme-nil-and-port-nil'],
    ['443: scheme-nil-and-port-443', { hostname: 'example.org', port: 443 }, { scheme: 'https', host: 'example.org', path: '/scheme-nil-and-port-443' }, '/scheme-nil-and-port-443', 'https://example.org/scheme-nil-and-port-443'],
    ['443: scheme-nil-and-port-8443', { hostname: 'example.org', port: 8443 }, { scheme: 'https', host: 'example.org', path: '/scheme-nil-and-port-8443' }, '/scheme-nil-and-port-8443', 'https://example.org:8443/scheme-nil-and-port-8443'],
    ['443: scheme-http-and-port-nil', { scheme: 'http', hostname: 'example.org' }, { scheme: 'https', host: 'example.org', path: '/scheme-http-and-port-nil' }, '/scheme-http-and-port-nil', 'http://example.org/scheme-http-and-port-nil'],
    ['443: scheme-http-and-port-80', { scheme: 'http', hostname: 'example.org', port: 80 }, { scheme: 'https', host: 'example.org', path: '/scheme-http-and-port-80' }, '/scheme-http-and-port-80', 'http://example.org/scheme-http-and-port-80'],
    ['443: scheme-http-and-port-8080', { scheme: 'http', hostname: 'example.org', port: 8080 }, { scheme: 'https', host: 'example.org', path: '/scheme-http-and-port-8080' }, '/scheme-http-and-port-8080', 'http://example.org:8080/scheme-http-and-port-8080'],
    // HTTPRouteRedirectPath
    ['original-prefix', { path: replacePrefix('/replacement-prefix') }, { host: 'echo', path: '/original-prefix/lemon' }, '/original-prefix', 'http://echo/replacement-prefix/lemon'],
    ['full', { path: full('/full-path-replacement') }, { host: 'echo', path: '/full/path/original' }, '/full', 'http://echo/full-path-replacement'],
    ['path-and-host', { hostname: 'example.org', path: replacePrefix('/replacement-prefix') }, { host: 'echo', path: '/path-and-host' }, '/path-and-host', 'http://example.org/replacement-prefix'],
    ['path-and-status', { path: replacePrefix('/replacement-prefix') }, { host: 'echo', path: '/path-and-status' }, '/path-and-status', 'http://echo/replacement-prefix'],
    ['full-path-and-host', { hostname: 'example.org', path: full('/replacement-full') }, { host: 'echo', path: '/full-path-and-host' }, '/full-path-and-host', 'http://example.org/replacement-full'],
    ['full-path-and-status', { path: full('/replacement-full') }, { host: 'echo', path: '/full-path-and-status' }, '/full-path-and-status', 'http://echo/replacement-full'],
    // HTTPRouteBackendRequestRedirect
    ['backend full', { path: full('/redirected-full') }, { host: 'echo', path: '/full/original' }, '/full', 'http://echo/redirected-full'],
    ['backend prefix', { path: replacePrefix('/redirected-prefix') }, { host: 'echo', path: '/prefix/original' }, '/prefix', 'http://echo/redirected-prefix/original'],
    // Beyond the conformance suite
    ['query string kept', { path: replacePrefix('/new') }, { host: 'echo', path: '/old/x?a=1&b=/c' }, '/old', 'http://echo/new/x?a=1&b=/c'],
    ['scheme set to the request scheme still takes its well-known port', { scheme: 'http' }, { host: 'echo:8080', path: '/' }, '/', 'http://echo/'],
    ['https request without a port in Host keeps 443 implicit', {}, { scheme: 'https', host: 'echo', path: '/' }, '/', 'https://echo/'],
    ['https request on 80 keeps :80', {}, { scheme: 'https', host: 'echo:80', path: '/' }, '/', 'https://echo:80/'],
    ['IPv6 host', { port: 8083 }, { host: '[fd00::1]:8080', path: '/' }, '/', 'http://[fd00::1]:8083/'],
  ];
  for (const [name, filter, request, matched, location] of cases) {
    it(name, () => assert.equal(redirect(filter, request, prefix(matched)), location));
  }
});

describe('ReplacePrefixMatch (the HTTPPathModifier table)', () => {
  const table: Array<[string, string, string, string]> = [
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'],
    ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'],
    ['/foo/', '/foo', '', '/'],
    ['/foo', '/foo', '', '/'],
    ['/foo/', '/foo', '/', '/'],
    ['/foo', '/foo', '/', '/'],
    ['/foo/baz', '/foo', '/bar', '/bar/baz'],
    ['/foo/baz', '/foo', '/', '/baz'],
    ['/anything', '/', '/v2', '/v2/anything'],
  ];
  for (const [path, matched, value, expected] of table) {
    it(`${path} with prefix ${matched} → ${JSON.stringify(value)} gives ${expected}`, () => {
      assert.equal(rewriteUrl({ type: 'URLRewrite', path: { type: 'ReplacePrefixMatch', value } }, { host: 'h', path }, prefix(matched)).path, expected);
    });
  }

  it('leaves the path alone without a PathPrefix match', () => {
    const exact: RouteMatch = { path: { type: 'Exact', value: '/foo' }, headers: [], queryParams: [] };
    assert.equal(rewriteUrl({ type: 'URLRewrite', path: { type: 'ReplacePrefixMatch', value: '/x' } }, { host: 'h', path: '/foo' }, exact).path, '/foo');
  });
});

describe('rewriteUrl (HTTPRouteRewritePath, HTTPRouteRewriteHost, HTTPRouteBackendURLRewrite conformance)', () => {
  const cases: Array<[string, { hostname?: string; path?: PathModifier }, string, string, { host: string; path: string }]> = [
    ['prefix/one', { path: { type: 'ReplacePrefixMatch', value: '/one' } }, '/prefix/one', '/prefix/one/two', { host: 'echo', path: '/one/two' }],
    ['strip-prefix', { path: { type: 'ReplacePrefixMatch', value: '/' } }, '/strip-prefix', '/strip-prefix/three', { host: 'echo', path: '/three' }],
    ['strip-prefix whole', { path: { type: 'ReplacePrefixMatch', value: '/' } }, '/strip-prefix', '/strip-prefix', { host: 'echo', path: '/' }],
    ['full/one', { path: { type: 'ReplaceFullPath', value: '/one' } }, '/full/one', '/full/one/two', { host: 'echo', path: '/one' }],
    ['full/rewrite-path-and-modify-headers', { path: { type: 'ReplaceFullPath', value: '/test' } }, '/full/rewrite-path-and-modify-headers', '/full/rewrite-path-and-modify-headers/test', { host: 'echo', path: '/test' }],
    ['prefix/rewrite-path-and-modify-headers', { path: { type: 'ReplacePrefixMatch', value: '/prefix' } }, '/prefix/rewrite-path-and-modify-headers', '/prefix/rewrite-path-and-modify-headers/one', { host: 'echo', path: '/prefix/one' }],
    ['backend full', { path: { type: 'ReplaceFullPath', value: '/rewritten-full' } }, '/full', '/full/original', { host: 'echo', path: '/rewritten-full' }],
    ['backend prefix', { path: { type: 'ReplacePrefixMatch', value: '/rewritten-prefix' } }, '/prefix', '/prefix/original', { host: 'echo', path: '/rewritten-prefix/original' }],
    ['host one', { hostname: 'one.example.org' }, '/one', '/one', { host: 'one.example.org', path: '/one' }],
    ['host two', { hostname: 'example.org' }, '/', '/two', { host: 'example.org', path: '/two' }],
    ['host and headers', { hostname: 'test.example.org' }, '/rewrite-host-and-modify-headers', '/rewrite-host-and-modify-headers', { host: 'test.example.org', path: '/rewrite-host-and-modify-headers' }],
    ['query kept', { path: { type: 'ReplaceFullPath', value: '/new' } }, '/old', '/old/x?q=1', { host: 'echo', path: '/new?q=1' }],
  ];
  for (const [name, filter, matched, path, expected] of cases) {
    it(name, () => assert.deepEqual(rewriteUrl({ type: 'URLRewrite', ...filter }, { host: 'echo', path }, prefix(matched)), expected));
  }

  it('replaces the whole Host, port included', () => {
    assert.deepEqual(rewriteUrl({ type: 'URLRewrite', hostname: 'example.org' }, { host: 'rewrite.example:8080', path: '/' }, prefix('/')), { host: 'example.org', path: '/' });
  });
});
