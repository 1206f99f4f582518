import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NodemeshError } from '../errors.js';
import { fakePod, fakeRequest } from '../testing/request-record.js';
import type { RequestRecord } from './request-record.js';
import { matchTap, parseTapFilter, TapHub, TokenBucket, type TapEvent } from './tap.js';

const parse = (q: Record<string, string>) => parseTapFilter(new URLSearchParams(q));
const refused = (q: Record<string, string>, flag: RegExp) =>
  assert.throws(() => parse(q), (e: unknown) => e instanceof NodemeshError && e.code === 'NM_ERR_CLI_ARGUMENT' && flag.test(e.message));

describe('tap filters', () => {
  it('parses the query, max-rps 100 by default, and names the flag it refuses', () => {
    assert.deepEqual(parse({}), { maxRps: 100 });
    assert.deepEqual(parse({ to: 'shop/web', namespace: 'shop', method: 'post', path: '/api', 'max-rps': '2.5' }), {
      to: 'shop/web',
      namespace: 'shop',
      method: 'POST',
      path: '/api',
      maxRps: 2.5,
    });
    refused({ 'max-rps': '0' }, /--max-rps .*"0"/);
    refused({ 'max-rps': 'lots' }, /--max-rps .*"lots"/);
    refused({ path: 'api' }, /--path .*"api"/);
    refused({ method: 'GE T' }, /--method .*"GE T"/);
  });

  it('match the destination service or endpoint pod, either end of a namespace, the method and a path prefix', () => {
    const r = fakeRequest({ method: 'POST', path: '/api/items?x=1' });
    const m = (q: Record<string, string>, rec: RequestRecord = r) => matchTap(rec, parse(q));
    assert.equal(m({}), true);
    assert.equal(m({ to: 'web' }), true);
    assert.equal(m({ to: 'shop/web' }), true);
    assert.equal(m({ to: 'web-1' }), true, 'the endpoint pod');
    assert.equal(m({ to: 'bank/web' }), false);
    assert.equal(m({ to: 'client' }), false, 'the source is not a destination');
    assert.equal(m({ method: 'post' }), true);
    assert.equal(m({ method: 'GET' }), false);
    assert.equal(m({ path: '/api' }), true);
    assert.equal(m({ path: '/apix' }), false);
    assert.equal(m({ namespace: 'shop' }), true);
    assert.equal(m({ namespace: 'bank' }), false);
    const fromBank = fakeRequest({ source: { pod: fakePod('bank', 'teller'), ip: '10.0.0.1' } });
    assert.equal(m({ namespace: 'bank' }, fromBank), true, 'the source namespace');
    const byIdentity = fakeRequest({ reporter: 'destination', source: { ip: '10.0.0.1', identity: 'spiffe://cluster.local/ns/ops/sa/x' } });
    assert.equal(m({ namespace: 'ops' }, byIdentity), true, 'the verified identity namespace');
  });
});

describe('TapHub', () => {
  it('costs nothing without a subscriber: the record is not even read', () => {
    const hub = new TapHub();
    const untouchable = new Proxy({} as RequestRecord, {
      get() {
        throw new Error('read');
      },
    });
    assert.doesNotThrow(() => hub.request(untouchable));
  });

  it('sends each subscriber what its filter matches as one event, until it unsubscribes', () => {
    const hub = new TapHub(() => 0);
    const all: TapEvent[] = [];
    const posts: TapEvent[] = [];
    const stopAll = hub.subscribe(parse({}), (e) => all.push(e));
    hub.subscribe(parse({ method: 'POST' }), (e) => posts.push(e));
    hub.request(fakeRequest({ method: 'POST', status: 503, responseFlags: 'UF', durationMs: 12.3456, grpcStatus: 14, route: 'HTTPRoute shop/web' }));
    hub.request(fakeRequest());
    stopAll();
    hub.request(fakeRequest({ method: 'POST' }));
    assert.equal(all.length, 2);
    assert.equal(posts.length, 2);
    assert.equal(all[0], posts[0], 'built once for all subscribers');
    assert.deepEqual(all[0], {
      time: '2023-11-14T22:13:20.000Z',
      reporter: 'source',
      protocol: 'http',
      httpVersion: '1.1',
      method: 'POST',
      authority: 'web.shop',
      path: '/',
      status: 503,
      grpcStatus: 14,
      latencyMs: 12.35,
      responseFlags: 'UF',
      retries: 0,
      route: 'HTTPRoute shop/web',
      source: { pod: 'shop/client', ip: '10.244.1.2', identity: 'spiffe://cluster.local/ns/shop/sa/client' },
      destination: { service: 'shop/web', port: 80, endpoint: { pod: 'shop/web-1', ip: '10.244.2.3', port: 8080, node: 'n2' } },
    });
    assert.equal(hub.subscribers, 1);
  });

  it('caps each subscriber at its max-rps on its own', () => {
    let now = 0;
    const hub = new TapHub(() => now);
    const slow: TapEvent[] = [];
    const fast: TapEvent[] = [];
    hub.subscribe(parse({ 'max-rps': '10' }), (e) => slow.push(e));
    hub.subscribe(parse({ 'max-rps': '1000' }), (e) => fast.push(e));
    // 500 requests evenly over 2 s: 250 rps offered.
    for (let i = 0; i < 500; i++) {
      now = i * 4;
      hub.request(fakeRequest());
    }
    assert.equal(fast.length, 500);
    // A burst of 10, then 10 a second.
    assert.ok(slow.length >= 29 && slow.length <= 31, `${slow.length} sent at max-rps 10 over 2 s`);
  });

  it('refuses a 17th tap', () => {
    const hub = new TapHub();
    for (let i = 0; i < 16; i++) hub.subscribe(parse({}), () => undefined);
    assert.throws(() => hub.subscribe(parse({}), () => undefined), /16 taps/);
  });
});

describe('TokenBucket', () => {
  it('lets a fractional rate through now and then', () => {
    const b = new TokenBucket(0.5, 0);
    assert.equal(b.take(0), true);
    assert.equal(b.take(1000), false);
    assert.equal(b.take(2000), true);
  });
});
