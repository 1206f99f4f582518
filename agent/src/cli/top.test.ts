import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceStats, TopSnapshot } from '../telemetry/request-stats.js';
import { renderTop } from './top.js';
import type { Colours } from './table.js';

const plain: Colours = { bold: (s) => s, red: (s) => s, green: (s) => s, dim: (s) => s };
const service = (over: Partial<ServiceStats>): ServiceStats => ({
  reporter: 'source',
  service: 'shop/web',
  namespace: 'shop',
  requests: 60,
  rps: 6,
  successRate: 50 / 60,
  latencyMs: { p50: 1.234, p95: 48.5, p99: 1234 },
  openConnections: 2,
  routes: [],
  ...over,
});
const snapshot = (services: ServiceStats[]): TopSnapshot => ({ time: '2024-01-01T00:00:00.000Z', windowSeconds: 10, services });

describe('nodemesh top layout', () => {
  it('aligns a service row under its headers', () => {
    const [head, row] = renderTop(snapshot([service({})]), plain, 80);
    assert.match(head as string, /^DIR\s+SERVICE\s+RPS\s+SUCCESS\s+P50\s+P95\s+P99\s+CONNS$/);
    assert.match(row as string, /^out\s+shop\/web\s+6\.0\s+83\.3%\s+1\.23ms\s+48\.5ms\s+1\.23s\s+2$/);
    for (const h of ['SERVICE', 'RPS', 'SUCCESS', 'P50', 'P95', 'P99', 'CONNS']) {
      const col = (head as string).indexOf(h);
      assert.notEqual((row as string)[col], ' ', `${h} column starts where its header does`);
      assert.equal((row as string)[col - 1], ' ');
    }
  });

  it('fits 80 columns with long names, abbreviating them and keeping route rows indented', () => {
    const long = 'a-namespace-with-a-very-long-name/and-a-service-name-that-goes-on-and-on';
    const lines = renderTop(
      snapshot([
        service({
          service: long,
          rps: 12345.6,
          successRate: 1,
          routes: [
            { route: 'HTTPRoute a-namespace-with-a-very-long-name/a-route-name-that-is-also-long', requests: 50, rps: 5, successRate: 1, latencyMs: null },
            { route: null, requests: 10, rps: 1, successRate: 1, latencyMs: null },
          ],
        }),
        service({ reporter: 'destination', service: null, successRate: null, latencyMs: null, openConnections: null }),
      ]),
      plain,
      80,
    );
    assert.equal(lines.length, 5);
    for (const l of lines) assert.ok(l.length <= 80, `${l.length} columns: ${l}`);
    assert.match(lines[1] as string, /^out\s+and-a-service-…goes-on-and-on\s+12346\s+100%/);
    assert.match(lines[2] as string, /^\s+ {2}HTTPRoute a-route-…lso-long\s+5\.0\s+100%\s+-\s+-\s+-$/);
    assert.match(lines[3] as string, /^\s+ {2}\(no route\)\s/);
    assert.match(lines[4] as string, /^in\s+\(unknown\)\s+6\.0\s+-\s+-\s+-\s+-\s+-$/);
  });

  it('says so when the window is empty', () => {
    assert.deepEqual(renderTop(snapshot([]), plain, 80), ['no requests in the last 10s']);
  });
});
