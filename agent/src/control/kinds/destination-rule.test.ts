import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MeshState } from '../../state/model.js';
import { applyConfig } from '../apply.js';
import { parseConfig } from '../config-docs.js';
import { ACCEPTED_KINDS } from './index.js';

const apply = (previous: MeshState | null, yaml: string): MeshState =>
  applyConfig(previous, parseConfig(yaml, 'mesh.yaml'), { node: 'node-1', cgroupExists: () => true });

const dr = (spec: string, name = 'web', apiVersion = 'networking.istio.io/v1'): string =>
  `apiVersion: ${apiVersion}\nkind: DestinationRule\nmetadata: { name: ${name}, namespace: shop }\nspec: ${spec}\n`;
const policy = (trafficPolicy: string): string => dr(`{ host: web, trafficPolicy: ${trafficPolicy} }`);

const OUTLIER_DEFAULTS = { consecutive5xxErrors: 5, consecutiveGatewayErrors: 0, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10 };

describe('DestinationRule validation', () => {
  it('is accepted under networking.istio.io v1, v1beta1 and v1alpha3', () => {
    assert.match(ACCEPTED_KINDS, /networking\.istio\.io\/v1 DestinationRule, networking\.istio\.io\/v1beta1 DestinationRule, networking\.istio\.io\/v1alpha3 DestinationRule/);
    const state = apply(null, [
      dr('{ host: web }', 'a'),
      dr('{ host: web.front }', 'b', 'networking.istio.io/v1beta1'),
      dr('{ host: web.front.svc }', 'c', 'networking.istio.io/v1alpha3'),
      dr('{ host: web.front.svc.cluster.local }', 'd'),
    ].join('---\n'));
    assert.deepEqual(state.rejections, []);
    assert.deepEqual(state.destinationRules.get('shop/a'), { namespace: 'shop', name: 'a', host: 'web', service: { namespace: 'shop', name: 'web' }, trafficPolicy: {}, portLevel: [] });
    for (const name of ['b', 'c', 'd']) assert.deepEqual(state.destinationRules.get(`shop/${name}`)?.service, { namespace: 'front', name: 'web' });
  });

  it('reads a full traffic policy, with Istio defaults and aliases', () => {
    const state = apply(null, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: shop, creationTimestamp: "2024-05-01T10:00:00+02:00" }
spec:
  host: web.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer: { simple: LEAST_CONN }
    connectionPool:
      tcp: { maxConnections: 100, connectTimeout: 1.5s }
      http: { http1MaxPendingRequests: 10, http2MaxRequests: 1000, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeout: 1m }
    outlierDetection: { consecutive5xxErrors: 3, consecutiveGatewayErrors: 2, interval: 500ms, baseEjectionTime: 1h, maxEjectionPercent: 50 }
    portLevelSettings:
    - port: { number: 9090 }
      loadBalancer: { consistentHash: { useSourceIp: true } }
      outlierDetection: {}
    - port: { number: 8080 }
      loadBalancer: { consistentHash: { httpHeaderName: X-Session } }
      connectionPool: { http: { http2MaxRequests: 0, idleTimeout: 10ms } }
`);
    assert.deepEqual(state.rejections, []);
    assert.deepEqual(state.destinationRules.get('shop/web'), {
      namespace: 'shop',
      name: 'web',
      createdMs: Date.UTC(2024, 4, 1, 8),
      host: 'web.shop.svc.cluster.local',
      service: { namespace: 'shop', name: 'web' },
      trafficPolicy: {
        loadBalancer: { simple: 'LEAST_REQUEST' },
        connectionPool: { maxConnections: 100, connectTimeoutMs: 1500, http1MaxPendingRequests: 10, http2MaxRequests: 1000, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeoutMs: 60_000 },
        outlierDetection: { consecutive5xxErrors: 3, consecutiveGatewayErrors: 2, intervalMs: 500, baseEjectionTimeMs: 3_600_000, maxEjectionPercent: 50 },
      },
      portLevel: [
        // Istio's 0 means "unset" (its default): left out.
        { port: 8080, policy: { loadBalancer: { consistentHash: { httpHeaderName: 'x-session' } }, connectionPool: { idleTimeoutMs: 10 } } },
        { port: 9090, policy: { loadBalancer: { consistentHash: { useSourceIp: true } }, outlierDetection: OUTLIER_DEFAULTS } },
      ],
    });
  });

  const NOT = 'is not supported by nodemesh';
  const invalid: Array<[string, string, string, string]> = [
    // [what, DestinationRule YAML, field, reason]
    ['no host', dr('{ trafficPolicy: { loadBalancer: { simple: RANDOM } } }'), 'spec.host', 'is required'],
    ['a wildcard host', dr('{ host: "*.shop.svc.cluster.local" }'), 'spec.host', 'wildcard hosts are not supported: name one Service, got "*.shop.svc.cluster.local"'],
    ['an external host', dr('{ host: api.example.com }'), 'spec.host',
      'must name a Service as <name>, <name>.<namespace>, <name>.<namespace>.svc or <name>.<namespace>.svc.cluster.local (nodemesh has no external hosts), got "api.example.com"'],
    ['subsets', dr('{ host: web, subsets: [{ name: v1, labels: { version: v1 } }] }'), 'spec.subsets',
      `${NOT}: give each version its own Service and split traffic with HTTPRoute backendRefs weights`],
    ['exportTo', dr('{ host: web, exportTo: ["."] }'), 'spec.exportTo',
      `${NOT}: a DestinationRule applies to clients in its own namespace, the Service's namespace, or every namespace from nodemesh-system`],
    ['workloadSelector', dr('{ host: web, workloadSelector: { matchLabels: { app: a } } }'), 'spec.workloadSelector', `${NOT}: a DestinationRule applies to every client of the Service`],
    ['tls', policy('{ tls: { mode: ISTIO_MUTUAL } }'), 'spec.trafficPolicy.tls',
      `${NOT}: traffic between node proxies is always mTLS (HBONE), and nodemesh does not originate TLS to Services`],
    ['an empty traffic policy', policy('{}'), 'spec.trafficPolicy', 'must set at least one of loadBalancer, connectionPool, outlierDetection, portLevelSettings'],
    ['PASSTHROUGH', policy('{ loadBalancer: { simple: PASSTHROUGH } }'), 'spec.trafficPolicy.loadBalancer.simple',
      'PASSTHROUGH (send to the address the client asked for) is not supported: nodemesh always balances over the Service endpoints'],
    ['UNSPECIFIED', policy('{ loadBalancer: { simple: UNSPECIFIED } }'), 'spec.trafficPolicy.loadBalancer.simple',
      'must be one of ROUND_ROBIN, LEAST_REQUEST, RANDOM (or LEAST_CONN, Istio\'s old name for LEAST_REQUEST), got "UNSPECIFIED"'],
    ['simple and consistentHash', policy('{ loadBalancer: { simple: RANDOM, consistentHash: { useSourceIp: true } } }'), 'spec.trafficPolicy.loadBalancer',
      'set simple or consistentHash, not both'],
    ['a cookie hash', policy('{ loadBalancer: { consistentHash: { httpHeaderName: x-user, httpCookie: { name: s, ttl: 0s } } } }'), 'spec.trafficPolicy.loadBalancer.consistentHash.httpCookie',
      `${NOT}: hash on httpHeaderName (such as a session header) or useSourceIp`],
    ['a maglev table', policy('{ loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 65537 } } } }'), 'spec.trafficPolicy.loadBalancer.consistentHash.maglev',
      `${NOT}: nodemesh has one consistent hash ring; remove it`],
    ['useSourceIp false', policy('{ loadBalancer: { consistentHash: { useSourceIp: false } } }'), 'spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp',
      'must be true (or set httpHeaderName instead), got boolean false'],
    ['localityLbSetting', policy('{ loadBalancer: { simple: RANDOM, localityLbSetting: { enabled: true } } }'), 'spec.trafficPolicy.loadBalancer.localityLbSetting',
      `${NOT}: endpoints are balanced without locality`],
    ['an empty connection pool', policy('{ connectionPool: {} }'), 'spec.trafficPolicy.connectionPool', 'must set tcp, http or both'],
    ['negative maxConnections', policy('{ connectionPool: { tcp: { maxConnections: -1 } } }'), 'spec.trafficPolicy.connectionPool.tcp.maxConnections',
      'must be an integer between 0 and 2147483647, got number -1'],
    ['a connect timeout below 1ms', policy('{ connectionPool: { tcp: { connectTimeout: 0s } } }'), 'spec.trafficPolicy.connectionPool.tcp.connectTimeout', 'must be at least 1ms, got "0s"'],
    ['a duration in microseconds', policy('{ connectionPool: { http: { idleTimeout: 1.5ms } } }'), 'spec.trafficPolicy.connectionPool.http.idleTimeout',
      'must be a whole number of milliseconds, got "1.5ms"'],
    ['a duration without unit', policy('{ outlierDetection: { interval: 10 } }'), 'spec.trafficPolicy.outlierDetection.interval',
      'must be a duration such as "10s", "1.5s", "250ms", "1m" or "1h" (units h, m, s, ms), got number 10'],
    ['h2UpgradePolicy', policy('{ connectionPool: { http: { h2UpgradePolicy: UPGRADE } } }'), 'spec.trafficPolicy.connectionPool.http.h2UpgradePolicy',
      `${NOT}: the node proxy chooses the upstream protocol`],
    ['consecutiveErrors', policy('{ outlierDetection: { consecutiveErrors: 5 } }'), 'spec.trafficPolicy.outlierDetection.consecutiveErrors',
      'is deprecated by Istio and not supported: use consecutive5xxErrors or consecutiveGatewayErrors'],
    ['maxEjectionPercent above 100', policy('{ outlierDetection: { maxEjectionPercent: 101 } }'), 'spec.trafficPolicy.outlierDetection.maxEjectionPercent',
      'must be an integer between 0 and 100, got number 101'],
    ['minHealthPercent', policy('{ outlierDetection: { minHealthPercent: 50 } }'), 'spec.trafficPolicy.outlierDetection.minHealthPercent',
      `${NOT}: ejection is bounded by maxEjectionPercent only`],
    ['a port-level entry without port', policy('{ portLevelSettings: [{ loadBalancer: { simple: RANDOM } }] }'), 'spec.trafficPolicy.portLevelSettings[0].port',
      'is required: { number: <Service port> }'],
    ['a port-level entry without settings', policy('{ portLevelSettings: [{ port: { number: 80 } }] }'), 'spec.trafficPolicy.portLevelSettings[0]',
      'must set at least one of loadBalancer, connectionPool, outlierDetection'],
    ['a port with a name', policy('{ portLevelSettings: [{ port: { number: 80, name: http }, loadBalancer: { simple: RANDOM } }] }'), 'spec.trafficPolicy.portLevelSettings[0].port.name',
      'unknown field; accepted: number'],
    ['one port twice', policy('{ portLevelSettings: [{ port: { number: 80 }, loadBalancer: { simple: RANDOM } }, { port: { number: 80 }, connectionPool: { tcp: { maxConnections: 1 } } }] }'),
      'spec.trafficPolicy.portLevelSettings[1].port.number', 'duplicate port 80, already set by spec.trafficPolicy.portLevelSettings[0]'],
    ['port-level tls', policy('{ portLevelSettings: [{ port: { number: 80 }, tls: { mode: SIMPLE }, loadBalancer: { simple: RANDOM } }] }'), 'spec.trafficPolicy.portLevelSettings[0].tls',
      `${NOT}: traffic between node proxies is always mTLS (HBONE), and nodemesh does not originate TLS to Services`],
  ];

  for (const [what, yaml, field, reason] of invalid) {
    it(`rejects ${what} alone and keeps the last good version`, () => {
      const good = apply(null, policy('{ loadBalancer: { simple: RANDOM } }'));
      const next = apply(good, [yaml, dr('{ host: cart }', 'cart')].join('---\n'));
      assert.deepEqual(next.rejections, [{ resource: 'DestinationRule shop/web', field, reason }]);
      assert.deepEqual(next.destinationRules.get('shop/web'), good.destinationRules.get('shop/web'));
      assert.ok(next.destinationRules.has('shop/cart'), 'the rest of the file applies');
    });
  }
});
