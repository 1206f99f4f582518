import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { meshState } from '../testing/mesh.js';
import { serviceEndpoints, type ServiceEndpoint } from './endpoints.js';
import type { MeshEndpointSlice, MeshPod, MeshService, MeshState } from './model.js';

const pod = (name: string, over: Partial<MeshPod> = {}): MeshPod => ({
  namespace: 'demo',
  name,
  nodeName: 'node-1',
  serviceAccount: 'default',
  podIP: `10.1.0.${name.length}`,
  labels: { app: 'web' },
  ready: true,
  containerPorts: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
  ...over,
});

const state = (pods: MeshPod[], endpointSlices: MeshEndpointSlice[] = []): MeshState => meshState({ pods, endpointSlices });

const web: MeshService = {
  namespace: 'demo',
  name: 'web',
  clusterIP: '10.96.0.10',
  selector: { app: 'web' },
  ports: [
    { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' },
    { name: 'admin', port: 9000, targetPort: 9901, protocol: 'TCP' },
  ],
};

const names = (eps: ServiceEndpoint[]): string[] => eps.map((e) => `${e.kind === 'pod' ? e.pod.name : 'external'} ${e.ip}:${e.port}`);

describe('serviceEndpoints', () => {
  it('resolves a named targetPort per pod and skips pods without that port', () => {
    const s = state([
      pod('a'),
      pod('bb', { containerPorts: [{ name: 'http', containerPort: 3000, protocol: 'TCP' }], nodeName: 'node-2' }),
      pod('ccc', { containerPorts: [{ containerPort: 8080, protocol: 'TCP' }] }),
      pod('dddd', { containerPorts: [{ name: 'http', containerPort: 8080, protocol: 'UDP' }] }),
    ]);
    const eps = serviceEndpoints(s, web, web.ports[0]!);
    assert.deepEqual(names(eps), ['a 10.1.0.1:8080', 'bb 10.1.0.2:3000']);
    assert.equal(eps[1]?.kind === 'pod' && eps[1].nodeName, 'node-2');
    // A numeric targetPort needs no declared container port.
    assert.deepEqual(names(serviceEndpoints(s, web, web.ports[1]!)), ['a 10.1.0.1:9901', 'bb 10.1.0.2:9901', 'ccc 10.1.0.3:9901', 'dddd 10.1.0.4:9901']);
  });

  it('leaves out pods that are not ready, have no IP, do not match the selector or live in another namespace', () => {
    const s = state([
      pod('a', { ready: false }),
      pod('bb', { podIP: undefined }),
      pod('ccc', { labels: { app: 'api' } }),
      pod('dddd', { namespace: 'other' }),
      pod('eeeee', { labels: { app: 'web', track: 'canary' } }),
    ]);
    assert.deepEqual(names(serviceEndpoints(s, web, web.ports[0]!)), ['eeeee 10.1.0.5:8080']);
    assert.deepEqual(serviceEndpoints(s, { ...web, selector: null }, web.ports[0]!), []);
  });

  describe('of a Service without a selector: its EndpointSlices', () => {
    const db: MeshService = {
      namespace: 'demo',
      name: 'db',
      clusterIP: '10.96.0.20',
      selector: null,
      ports: [
        { name: 'sql', port: 5432, targetPort: 5432, protocol: 'TCP' },
        { name: 'admin', port: 9000, targetPort: 9000, protocol: 'TCP' },
      ],
    };
    const slice = (name: string, over: Partial<MeshEndpointSlice> = {}): MeshEndpointSlice => ({
      namespace: 'demo',
      name,
      serviceName: 'db',
      addressType: 'IPv4',
      ports: [{ name: 'sql', port: 15432, protocol: 'TCP' }],
      endpoints: [],
      ...over,
    });

    it('reads the ready addresses on the slice port of the same name; an address that is a known pod\'s IP is that pod', () => {
      const s = state(
        [pod('a', { nodeName: 'node-2', labels: {} }), pod('bb', { namespace: 'other' })],
        [
          slice('db-1', {
            endpoints: [
              { address: '192.0.2.10', ready: true },
              { address: '10.1.0.1', ready: true },
              { address: '192.0.2.11', ready: false },
              // A pod of another namespace is still that pod: it is reached through the mesh.
              { address: '10.1.0.2', ready: true },
            ],
          }),
          // Another Service's slice, and one in another namespace, are not read.
          slice('web-1', { serviceName: 'web', endpoints: [{ address: '192.0.2.20', ready: true }] }),
          slice('db-1', { namespace: 'other', endpoints: [{ address: '192.0.2.30', ready: true }] }),
        ],
      );
      const eps = serviceEndpoints(s, db, db.ports[0]!);
      assert.deepEqual(names(eps), ['external 192.0.2.10:15432', 'a 10.1.0.1:15432', 'bb 10.1.0.2:15432']);
      assert.deepEqual(eps[1]?.kind === 'pod' && eps[1].nodeName, 'node-2');
      // No slice port named "admin": that Service port has no endpoint.
      assert.deepEqual(serviceEndpoints(s, db, db.ports[1]!), []);
    });

    it('matches the unnamed Service port to the unnamed slice port, and the protocol too', () => {
      const single: MeshService = { ...db, ports: [{ port: 5432, targetPort: 5432, protocol: 'TCP' }] };
      const endpoints = [{ address: '192.0.2.10', ready: true }];
      const s = state([], [slice('db-1', { ports: [{ name: '', port: 5433, protocol: 'UDP' }, { name: '', port: 5432, protocol: 'TCP' }], endpoints })]);
      assert.deepEqual(names(serviceEndpoints(s, single, single.ports[0]!)), ['external 192.0.2.10:5432']);
      assert.deepEqual(serviceEndpoints(s, db, db.ports[0]!), []);
    });

    it('lists an address:port once across slices, and ignores slices of a Service that has a selector', () => {
      const endpoints = [{ address: '192.0.2.10', ready: true }];
      const s = state([pod('a')], [slice('db-1', { endpoints }), slice('db-2', { endpoints: [...endpoints, { address: '192.0.2.12', ready: true }] })]);
      assert.deepEqual(names(serviceEndpoints(s, db, db.ports[0]!)), ['external 192.0.2.10:15432', 'external 192.0.2.12:15432']);
      const selected: MeshService = { ...db, selector: { app: 'web' }, ports: [{ name: 'sql', port: 5432, targetPort: 8080, protocol: 'TCP' }] };
      assert.deepEqual(names(serviceEndpoints(s, selected, selected.ports[0]!)), ['a 10.1.0.1:8080']);
    });
  });
});
