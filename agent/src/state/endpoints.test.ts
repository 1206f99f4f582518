import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { meshState } from '../testing/mesh.js';
import { serviceEndpoints } from './endpoints.js';
import type { MeshPod, MeshService, MeshState } from './model.js';

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

const state = (pods: MeshPod[]): MeshState => meshState({ pods });

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

const names = (eps: Array<{ pod: MeshPod; ip: string; port: number }>): string[] => eps.map((e) => `${e.pod.name} ${e.ip}:${e.port}`);

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
    assert.equal(eps[1]?.nodeName, 'node-2');
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
});
