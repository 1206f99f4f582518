import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { endToEnd, forwardHeaders, shadowAuthority, type HeaderMap } from './headers.js';

describe('endToEnd', () => {
  it('drops hop-by-hop headers and keeps the end-to-end ones, arrays included', () => {
    const out = endToEnd({
      connection: 'keep-alive',
      'keep-alive': 'timeout=5',
      'proxy-connection': 'keep-alive',
      'transfer-encoding': 'chunked',
      upgrade: 'h2c',
      trailer: 'x-checksum',
      'http2-settings': 'AAMAAABkAAQAAP__',
      'content-type': 'application/json',
      'set-cookie': ['a=1', 'b=2'],
      accept: undefined,
    });
    assert.deepEqual({ ...out }, { 'content-type': 'application/json', 'set-cookie': ['a=1', 'b=2'] });
  });

  it('drops the headers the Connection header names, case-insensitively', () => {
    const out = endToEnd({ connection: 'close, X-Secret ,x-other', 'x-secret': 's', 'x-other': 'o', 'x-kept': 'k' });
    assert.deepEqual({ ...out }, { 'x-kept': 'k' });
  });

  it('keeps `te: trailers` (gRPC) and drops any other te value', () => {
    assert.equal(endToEnd({ te: 'trailers' }).te, 'trailers');
    assert.equal(endToEnd({ te: 'Trailers' }).te, 'trailers');
    assert.equal(endToEnd({ te: 'gzip' }).te, undefined);
    assert.equal(endToEnd({ te: 'trailers, deflate' }).te, undefined);
  });

  it('drops host and HTTP/2 pseudo-headers: the authority travels separately', () => {
    const out = endToEnd({ host: 'web.shop', ':authority': 'web.shop', ':method': 'GET', ':path': '/', ':scheme': 'http', 'x-a': '1' });
    assert.deepEqual({ ...out }, { 'x-a': '1' });
  });

  it('copies arrays: editing the result leaves the input alone', () => {
    const input = { 'x-list': ['a', 'b'] };
    const out = endToEnd(input);
    (out['x-list'] as string[]).push('c');
    assert.deepEqual(input['x-list'], ['a', 'b']);
  });
});

describe('forwardHeaders', () => {
  it('keeps an x-request-id the client sent', () => {
    const h: HeaderMap = { 'x-request-id': 'abc-123' };
    forwardHeaders(h, '10.0.0.7');
    assert.equal(h['x-request-id'], 'abc-123');
  });

  it('generates a fresh UUID x-request-id when absent or empty', () => {
    const a: HeaderMap = {};
    const b: HeaderMap = { 'x-request-id': '' };
    forwardHeaders(a, '10.0.0.7');
    forwardHeaders(b, '10.0.0.7');
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    assert.match(String(a['x-request-id']), uuid);
    assert.match(String(b['x-request-id']), uuid);
    assert.notEqual(a['x-request-id'], b['x-request-id']);
  });

  it('sets x-forwarded-for to the client, or appends it to the list already there', () => {
    const fresh: HeaderMap = {};
    forwardHeaders(fresh, '10.0.0.7');
    assert.equal(fresh['x-forwarded-for'], '10.0.0.7');

    const one: HeaderMap = { 'x-forwarded-for': '1.2.3.4' };
    forwardHeaders(one, '10.0.0.7');
    assert.equal(one['x-forwarded-for'], '1.2.3.4, 10.0.0.7');

    const repeated: HeaderMap = { 'x-forwarded-for': ['1.2.3.4', '5.6.7.8, 9.9.9.9'] };
    forwardHeaders(repeated, '10.0.0.7');
    assert.equal(repeated['x-forwarded-for'], '1.2.3.4, 5.6.7.8, 9.9.9.9, 10.0.0.7');
  });

  it('adds to forwarded only when the client already uses it, quoting an IPv6 address', () => {
    const none: HeaderMap = {};
    forwardHeaders(none, '10.0.0.7');
    assert.equal(none.forwarded, undefined);

    const v4: HeaderMap = { forwarded: 'for=192.0.2.60;proto=https' };
    forwardHeaders(v4, '10.0.0.7');
    assert.equal(v4.forwarded, 'for=192.0.2.60;proto=https, for=10.0.0.7;proto=http');

    const v6: HeaderMap = { forwarded: ['for=192.0.2.60', 'for=unknown'] };
    forwardHeaders(v6, 'fd00::7');
    assert.equal(v6.forwarded, 'for=192.0.2.60, for=unknown, for="[fd00::7]";proto=http');
  });

  it('sets x-forwarded-proto to http unless the client said otherwise', () => {
    const plain: HeaderMap = {};
    forwardHeaders(plain, '10.0.0.7');
    assert.equal(plain['x-forwarded-proto'], 'http');
    const tls: HeaderMap = { 'x-forwarded-proto': 'https' };
    forwardHeaders(tls, '10.0.0.7');
    assert.equal(tls['x-forwarded-proto'], 'https');
  });
});

describe('shadowAuthority', () => {
  it('puts -shadow on the host, before the port, as Envoy does (envoyproxy/envoy#2595)', () => {
    assert.equal(shadowAuthority('echo-v2:7070'), 'echo-v2-shadow:7070');
    assert.equal(shadowAuthority('echo-v2'), 'echo-v2-shadow');
    assert.equal(shadowAuthority('10.96.0.13'), '10.96.0.13-shadow');
    assert.equal(shadowAuthority('10.96.0.13:8080'), '10.96.0.13-shadow:8080');
  });
});
