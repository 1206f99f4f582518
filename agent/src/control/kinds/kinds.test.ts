import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Rejection } from '../../state/model.js';
import { applyConfig } from '../apply.js';
import { parseConfig } from '../config-docs.js';

/** The rejections one resource gets, alone in a file. */
const rejections = (yaml: string): Rejection[] =>
  [...applyConfig(null, parseConfig(yaml, 'mesh.yaml'), { node: 'node-1', cgroupExists: () => true }).rejections];

const fields = (yaml: string): string[] => rejections(yaml).map((r) => `${r.field}: ${r.reason}`);

const svc = (spec: string, name = 'web'): string =>
  `apiVersion: v1\nkind: Service\nmetadata: { name: ${name}, namespace: demo }\nspec: ${spec}\n`;

describe('Service validation (Kubernetes rules)', () => {
  it('requires a name on every port when there are several, unique names and unique port/protocol pairs', () => {
    assert.deepEqual(fields(svc('{ clusterIP: 10.96.0.1, ports: [{ port: 80 }, { name: a, port: 81 }, { name: a, port: 81 }, { name: b, port: 81, protocol: UDP }] }')), [
      'spec.ports[0].name: is required when the Service has more than one port',
      'spec.ports[2].name: duplicate name "a", already used by spec.ports[1]',
      'spec.ports[2].port: duplicate port 81/TCP, already used by spec.ports[1]',
    ]);
  });

  it('checks targetPort, protocol and clusterIP, with hints for common YAML slips', () => {
    assert.deepEqual(fields(svc('{ clusterIP: 10.96.0.1, ports: [{ port: 80, targetPort: "8080", protocol: tcp }] }')), [
      'spec.ports[0].protocol: must be one of TCP, UDP, SCTP, got "tcp"',
      'spec.ports[0].targetPort: must be a port number or a container port name, got "8080"; write the number without quotes',
    ]);
    assert.deepEqual(fields(svc('{ ports: [{ port: 80, targetPort: 0 }] }')), [
      'spec.ports[0].targetPort: must be an integer between 1 and 65535, got number 0',
      'spec.clusterIP: is required: an IPv4 address, or None for a headless Service',
    ].reverse());
    assert.deepEqual(fields(svc('{ clusterIP: 10.96.0.1 }')), [
      'spec.ports: must list at least one port (only a headless Service may have none)',
    ]);
  });

  it('checks names and label syntax', () => {
    assert.deepEqual(fields(svc('{ clusterIP: None, selector: { app: "a b", version: 1 } }', '9web')), [
      'metadata.name: must be a DNS-1035 label (at most 63 characters: lowercase letters, digits and \'-\', starting with a letter and ending with a letter or digit), got "9web"',
      'spec.selector[app]: must be a label value (at most 63 letters, digits, \'-\', \'_\' and \'.\', starting and ending with a letter or digit), got "a b"',
      'spec.selector[version]: must be a string, got number 1 (quote it in YAML)',
    ]);
  });
});

describe('Pod validation', () => {
  const pod = (rest: string, metadata = '{ name: p }'): string => `apiVersion: v1\nkind: Pod\nmetadata: ${metadata}\n${rest}\n`;

  it('checks container ports and their names', () => {
    assert.deepEqual(
      fields(pod('spec:\n  nodeName: node-2\n  containers:\n  - ports: [{ name: http, containerPort: 80 }, { name: Http_1, containerPort: 0 }]\n  - ports: [{ name: http, containerPort: 81 }]')),
      [
        'spec.containers[0].ports[1].containerPort: must be an integer between 1 and 65535, got number 0',
        'spec.containers[0].ports[1].name: must be an IANA service name (at most 15 lowercase letters, digits and single \'-\', with at least one letter), got "Http_1"',
        'spec.containers[1].ports[0].name: duplicate port name "http", already used by spec.containers[0].ports[0]',
      ],
    );
  });

  it('requires an absolute, normalized cgroup path', () => {
    assert.deepEqual(fields(pod('spec: { nodeName: node-2 }', '{ name: p, annotations: { nodemesh.io/cgroup: kubepods/p } }')), [
      'metadata.annotations[nodemesh.io/cgroup]: must be an absolute, normalized cgroup v2 directory path, got "kubepods/p"',
    ]);
  });

  it('requires an InternalIP on a Node', () => {
    assert.deepEqual(fields('apiVersion: v1\nkind: Node\nmetadata: { name: n }\nstatus: { addresses: [{ type: Hostname, address: n }] }'), [
      "status.addresses: must contain an address of type InternalIP (where this node's proxy listens)",
    ]);
  });
});

describe('EndpointSlice validation', () => {
  const slice = (body: string, labels = '{ kubernetes.io/service-name: db }'): string =>
    `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: { name: db-1, namespace: demo, labels: ${labels} }\n${body}\n`;
  const accepted = (yaml: string) => applyConfig(null, parseConfig(yaml, 'mesh.yaml'), { node: 'node-1', cgroupExists: () => true }).endpointSlices.get('demo/db-1');

  it('reads addresses, readiness (absent = ready) and the ports; targetRef and nodeName are not read', () => {
    const yaml = slice(`addressType: IPv4
endpoints:
- { addresses: [192.0.2.10], nodeName: node-2, targetRef: { kind: Pod, name: db-0 } }
- { addresses: [192.0.2.11], conditions: { ready: false, serving: true, terminating: true }, zone: a }
- { addresses: [192.0.2.12], targetRef: { kind: VirtualMachine, name: vm-1, namespace: demo } }
ports: [{ name: sql, port: 5432, protocol: TCP, appProtocol: postgresql }, { name: any }]`);
    assert.deepEqual(rejections(yaml), []);
    assert.deepEqual(accepted(yaml), {
      namespace: 'demo',
      name: 'db-1',
      serviceName: 'db',
      addressType: 'IPv4',
      endpoints: [
        { address: '192.0.2.10', ready: true },
        { address: '192.0.2.11', ready: false },
        { address: '192.0.2.12', ready: true },
      ],
      // A port-less entry is "not restricted": kube-proxy skips it.
      ports: [{ name: 'sql', port: 5432, protocol: 'TCP' }],
    });
  });

  it('accepts IPv6 and FQDN slices with no endpoint: the mesh is IPv4', () => {
    const yaml = slice('addressType: IPv6\nendpoints: [{ addresses: ["fd00::1"] }]\nports: [{ name: sql, port: 5432 }]');
    assert.deepEqual(rejections(yaml), []);
    assert.deepEqual(accepted(yaml)?.endpoints, []);
    assert.deepEqual(rejections(slice('addressType: FQDN\nendpoints: [{ addresses: [db.example.com] }]')), []);
  });

  const table: Array<[string, string, string[], string?]> = [
    ['no service-name label', 'addressType: IPv4', ['metadata.labels[kubernetes.io/service-name]: is required: the name of the Service this slice gives endpoints to, in the same namespace'], '{ app: db }'],
    ['a bad address type', 'addressType: ipv4', ['addressType: must be one of IPv4, IPv6, FQDN, got "ipv4"']],
    ['a bad IP', 'addressType: IPv4\nendpoints: [{ addresses: [192.0.2.300] }, { addresses: [] }]', [
      'endpoints[0].addresses[0]: must be an IPv4 address, got "192.0.2.300"',
      'endpoints[1].addresses: must list at least one address',
    ]],
    ['a bad port', 'addressType: IPv4\nports: [{ name: sql, port: 70000 }, { name: sql, port: 5432, protocol: tcp }]', [
      'ports[0].port: must be an integer between 1 and 65535, got number 70000',
      'ports[1].name: duplicate name "sql", already used by ports[0]',
      'ports[1].protocol: must be one of TCP, UDP, SCTP, got "tcp"',
    ]],
    ['addresses the Kubernetes API refuses: loopback, link-local, unspecified, multicast', 'addressType: IPv4\nendpoints: [{ addresses: [127.0.0.1] }, { addresses: [169.254.169.254] }, { addresses: [0.0.0.0] }, { addresses: [224.0.0.1] }]', [
      'endpoints[0].addresses[0]: may not be in the loopback range (127.0.0.0/8), got "127.0.0.1"',
      'endpoints[1].addresses[0]: may not be in the link-local range (169.254.0.0/16), got "169.254.169.254"',
      'endpoints[2].addresses[0]: may not be the unspecified address, got "0.0.0.0"',
      'endpoints[3].addresses[0]: may not be in the multicast range (224.0.0.0/4), got "224.0.0.1"',
    ]],
    ['a bad port name and condition', 'addressType: IPv4\nendpoints: [{ addresses: [192.0.2.1], conditions: { ready: "yes" } }]\nports: [{ name: SQL, port: 5432 }]', [
      'endpoints[0].conditions.ready: must be true or false, got "yes"',
      'ports[0].name: must be a DNS-1123 label (at most 63 characters: lowercase letters, digits and \'-\', starting and ending with a letter or digit), got "SQL"',
    ]],
  ];
  for (const [what, body, expected, labels] of table) {
    it(`rejects ${what}, naming the field`, () => {
      assert.deepEqual(fields(slice(body, labels)), expected);
      assert.ok(rejections(slice(body, labels)).every((r) => r.resource === 'EndpointSlice demo/db-1'));
    });
  }
});
