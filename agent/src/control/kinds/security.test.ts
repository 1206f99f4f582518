import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MeshState, Rejection } from '../../state/model.js';
import { applyConfig } from '../apply.js';
import { parseConfig } from '../config-docs.js';
import { ACCEPTED_KINDS } from './index.js';

const apply = (previous: MeshState | null, yaml: string): MeshState =>
  applyConfig(previous, parseConfig(yaml, 'mesh.yaml'), { node: 'node-1', cgroupExists: () => true });

const authz = (spec: string, name = 'deny-all', apiVersion = 'security.istio.io/v1'): string =>
  `apiVersion: ${apiVersion}\nkind: AuthorizationPolicy\nmetadata: { name: ${name}, namespace: shop }\nspec: ${spec}\n`;

const peer = (spec: string, name = 'mtls'): string =>
  `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: ${name}, namespace: shop }\nspec: ${spec}\n`;

const rejections = (yaml: string): Rejection[] => [...apply(null, yaml).rejections];

const from = (source: string): string => `{ rules: [{ from: [{ source: ${source} }] }] }`;
const to = (operation: string): string => `{ rules: [{ to: [{ operation: ${operation} }] }] }`;
const when = (condition: string): string => `{ rules: [{ when: [${condition}] }] }`;

const IDENTITY = 'must be an identity <trust-domain>/ns/<namespace>/sa/<service-account>, or part of one with * as prefix or suffix match, got';
const STAR = '`*` is allowed only alone (any value), at the start (suffix match) or at the end (prefix match)';
const JWT = 'needs JWT authentication (RequestAuthentication), which nodemesh does not support';
const SRC = 'spec.rules[0].from[0].source';
const OP = 'spec.rules[0].to[0].operation';

describe('AuthorizationPolicy validation', () => {
  it('is accepted under security.istio.io v1 and v1beta1', () => {
    assert.match(ACCEPTED_KINDS, /security\.istio\.io\/v1 AuthorizationPolicy, security\.istio\.io\/v1beta1 AuthorizationPolicy/);
    const state = apply(null, [
      authz('{ selector: { matchLabels: { app: web } }, action: DENY, rules: [{}] }', 'a'),
      authz('{}', 'b', 'security.istio.io/v1beta1'),
    ].join('---\n'));
    assert.deepEqual(state.rejections, []);
    assert.deepEqual(state.authorizationPolicies.get('shop/a'), {
      namespace: 'shop', name: 'a', selector: { app: 'web' }, action: 'DENY', rules: [{}],
    });
    // An empty spec is Istio's allow-nothing: ALLOW without rules.
    assert.deepEqual(state.authorizationPolicies.get('shop/b'), { namespace: 'shop', name: 'b', selector: null, action: 'ALLOW', rules: [] });
  });

  it('keeps every field of a valid policy in Istio form, ports as numbers', () => {
    const state = apply(null, authz(`
  selector: { matchLabels: {} }
  action: AUDIT
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/shop/sa/web, "cluster.local/ns/shop/*", "*/sa/web", "*"]
        notPrincipals: ["*/ns/legacy/sa/old"]
        namespaces: [shop, "front*", "*-prod"]
        notNamespaces: [legacy]
        ipBlocks: [10.0.0.0/8, 192.168.1.7, "fd00::/8"]
        notIpBlocks: [10.9.0.0/16]
        remoteIpBlocks: [203.0.113.0/24]
        notRemoteIpBlocks: [203.0.113.9]
    to:
    - operation:
        hosts: [shop.example.com, "*.example.com"]
        notHosts: [admin.example.com]
        ports: ["8080", 9090]
        notPorts: ["9901"]
        methods: [GET, "P*"]
        notMethods: [DELETE]
        paths: [/api/*, "*.css", /health]
        notPaths: [/api/admin*]
    when:
    - { key: source.ip, values: [10.0.0.0/8] }
    - { key: remote.ip, notValues: [203.0.113.9] }
    - { key: source.namespace, values: [shop] }
    - { key: source.principal, values: [cluster.local/ns/shop/sa/web] }
    - { key: destination.ip, values: [10.1.0.0/16] }
    - { key: destination.port, values: [8080, "9090"] }
    - { key: "request.headers[x-user]", values: ["alice", "bob*"], notValues: ["*-test"] }
`, 'audit-all'));
    assert.deepEqual(state.rejections, []);
    assert.deepEqual(state.authorizationPolicies.get('shop/audit-all'), {
      namespace: 'shop',
      name: 'audit-all',
      selector: null,
      action: 'AUDIT',
      rules: [{
        from: [{
          principals: ['cluster.local/ns/shop/sa/web', 'cluster.local/ns/shop/*', '*/sa/web', '*'],
          notPrincipals: ['*/ns/legacy/sa/old'],
          namespaces: ['shop', 'front*', '*-prod'],
          notNamespaces: ['legacy'],
          ipBlocks: ['10.0.0.0/8', '192.168.1.7', 'fd00::/8'],
          notIpBlocks: ['10.9.0.0/16'],
          remoteIpBlocks: ['203.0.113.0/24'],
          notRemoteIpBlocks: ['203.0.113.9'],
        }],
        to: [{
          hosts: ['shop.example.com', '*.example.com'],
          notHosts: ['admin.example.com'],
          methods: ['GET', 'P*'],
          notMethods: ['DELETE'],
          paths: ['/api/*', '*.css', '/health'],
          notPaths: ['/api/admin*'],
          ports: [8080, 9090],
          notPorts: [9901],
        }],
        when: [
          { key: 'source.ip', values: ['10.0.0.0/8'] },
          { key: 'remote.ip', notValues: ['203.0.113.9'] },
          { key: 'source.namespace', values: ['shop'] },
          { key: 'source.principal', values: ['cluster.local/ns/shop/sa/web'] },
          { key: 'destination.ip', values: ['10.1.0.0/16'] },
          { key: 'destination.port', values: ['8080', '9090'] },
          { key: 'request.headers[x-user]', values: ['alice', 'bob*'], notValues: ['*-test'] },
        ],
      }],
    });
  });

  const invalid: Array<[string, string, string, string]> = [
    // [what, spec, field, reason]
    ['CUSTOM action', '{ action: CUSTOM, rules: [{}] }', 'spec.action', 'CUSTOM needs an external authorizer, not supported'],
    ['unknown action', '{ action: REJECT, rules: [{}] }', 'spec.action', 'must be one of ALLOW, DENY, AUDIT, got "REJECT"'],
    ['DENY without rules', '{ action: DENY }', 'spec.rules', 'is required with action DENY (without rules it never denies); add an empty rule {} to deny every request'],
    ['targetRefs', '{ targetRefs: [{ kind: Service, group: "", name: web }] }', 'spec.targetRefs', 'is not supported: it attaches policies to waypoints and gateways, which nodemesh does not have; use spec.selector'],
    ['selector matchExpressions', '{ selector: { matchExpressions: [] } }', 'spec.selector.matchExpressions', 'unknown field; accepted: matchLabels'],
    ['unknown spec field', '{ rule: [{}] }', 'spec.rule', 'unknown field; accepted: selector, action, rules'],
    ['null rule', '{ rules: [~] }', 'spec.rules[0]', 'must be a mapping; write {} for a rule that matches everything'],
    ['principal without ns/sa', from('{ principals: [cluster.local/ns/shop/sa/web, web] }'), `${SRC}.principals[1]`, `${IDENTITY} "web"`],
    ['principal with spiffe://', from('{ principals: ["spiffe://cluster.local/ns/shop/sa/web"] }'), `${SRC}.principals[0]`, `${IDENTITY} "spiffe://cluster.local/ns/shop/sa/web": write it without "spiffe://"`],
    ['principal with * inside', from('{ notPrincipals: ["cluster.local/ns/*/sa/web"] }'), `${SRC}.notPrincipals[0]`, `${IDENTITY} "cluster.local/ns/*/sa/web": ${STAR}`],
    ['principal prefix off the form', from('{ principals: ["cluster.local/nx/*"] }'), `${SRC}.principals[0]`, `${IDENTITY} "cluster.local/nx/*"`],
    ['principal suffix off the form', from('{ principals: ["*/as/web"] }'), `${SRC}.principals[0]`, `${IDENTITY} "*/as/web"`],
    ['principal not a string', from('{ principals: [42] }'), `${SRC}.principals[0]`, 'must be a non-empty string, got number 42'],
    ['requestPrincipals', from('{ requestPrincipals: ["issuer/subject"] }'), `${SRC}.requestPrincipals`, JWT],
    ['typo in a source field', from('{ principal: [cluster.local/ns/shop/sa/web] }'), `${SRC}.principal`, 'unknown field; accepted: principals, notPrincipals, namespaces, notNamespaces, ipBlocks, notIpBlocks, remoteIpBlocks, notRemoteIpBlocks'],
    ['empty principals', from('{ principals: [] }'), `${SRC}.principals`, 'must not be empty: remove the field to place no condition'],
    ['empty from', '{ rules: [{ from: [] }] }', 'spec.rules[0].from', 'must not be empty: remove the field to place no condition'],
    ['from without source', '{ rules: [{ from: [{}] }] }', 'spec.rules[0].from[0].source', 'is required'],
    ['empty source', from('{}'), SRC, 'must not be empty: set at least one field'],
    ['namespace not a label', from('{ namespaces: [Shop] }'), `${SRC}.namespaces[0]`, 'must be a DNS-1123 label (at most 63 characters: lowercase letters, digits and \'-\', starting and ending with a letter or digit), got "Shop"'],
    ['CIDR prefix too long', from('{ ipBlocks: [10.0.0.0/33] }'), `${SRC}.ipBlocks[0]`, 'must be an IP address or CIDR range such as 10.0.0.0/16, got "10.0.0.0/33": the prefix length is at most 32'],
    ['bad IP', from('{ notIpBlocks: [10.0.0.300] }'), `${SRC}.notIpBlocks[0]`, 'must be an IP address or CIDR range such as 10.0.0.0/16, got "10.0.0.300"'],
    ['bad remote CIDR', from('{ remoteIpBlocks: [10.0.0/8] }'), `${SRC}.remoteIpBlocks[0]`, 'must be an IP address or CIDR range such as 10.0.0.0/16, got "10.0.0/8"'],
    ['port 0', to('{ ports: ["0"] }'), `${OP}.ports[0]`, 'must be a port between 1 and 65535, got "0"'],
    ['port too high', to('{ notPorts: [70000] }'), `${OP}.notPorts[0]`, 'must be a port between 1 and 65535, got number 70000'],
    ['named port', to('{ ports: [http] }'), `${OP}.ports[0]`, 'must be a port between 1 and 65535, got "http"'],
    ['lowercase method', to('{ methods: [get] }'), `${OP}.methods[0]`, 'HTTP methods are case-sensitive and never lowercase: write "GET"'],
    ['relative path', to('{ paths: [api/v1] }'), `${OP}.paths[0]`, 'must start with "/" (a request path always does), got "api/v1"'],
    ['path template', to('{ paths: ["/api/{*}/items"] }'), `${OP}.paths[0]`, 'path templates ({*}, {**}) are not supported, got "/api/{*}/items"'],
    ['empty operation', to('{}'), OP, 'must not be empty: set at least one field'],
    ['unknown when key', when('{ key: source.user, values: [x] }'), 'spec.rules[0].when[0].key', 'unknown key "source.user"; accepted: source.ip, remote.ip, source.namespace, source.principal, destination.ip, destination.port, request.headers[<name>]'],
    ['JWT when key', when('{ key: "request.auth.claims[iss]", values: [x] }'), 'spec.rules[0].when[0].key', `request.auth.claims[iss] ${JWT}`],
    ['connection.sni', when('{ key: connection.sni, values: [x] }'), 'spec.rules[0].when[0].key', 'connection.sni is not supported: nodemesh does not read the TLS server name of proxied connections'],
    ['header key without a name', when('{ key: "request.headers[]", values: [x] }'), 'spec.rules[0].when[0].key', 'must be request.headers[<name>] with a header name between the brackets'],
    ['when without values', when('{ key: source.ip }'), 'spec.rules[0].when[0]', 'must set values or notValues'],
    ['when with a bad IP', when('{ key: destination.ip, notValues: [nope] }'), 'spec.rules[0].when[0].notValues[0]', 'must be an IP address or CIDR range such as 10.0.0.0/16, got "nope"'],
    ['when with a bad port', when('{ key: destination.port, values: ["99999"] }'), 'spec.rules[0].when[0].values[0]', 'must be a port between 1 and 65535, got "99999"'],
    ['empty when', '{ rules: [{ when: [] }] }', 'spec.rules[0].when', 'must not be empty: remove the field to place no condition'],
  ];

  for (const [what, spec, field, reason] of invalid) {
    it(`rejects ${what} alone, naming resource and field, and keeps the last good version`, () => {
      const good = apply(null, authz(`{ action: DENY, rules: [{ from: [{ source: { namespaces: [legacy] } }] }] }`));
      const other = authz('{ rules: [{}] }', 'allow-all');
      const next = apply(good, [authz(spec), other].join('---\n'));
      assert.deepEqual(next.rejections, [{ resource: 'AuthorizationPolicy shop/deny-all', field, reason }]);
      assert.deepEqual(next.authorizationPolicies.get('shop/deny-all'), good.authorizationPolicies.get('shop/deny-all'));
      assert.ok(next.authorizationPolicies.has('shop/allow-all'), 'the rest of the file applies');
    });
  }

  it('reports every problem of one policy at once', () => {
    assert.deepEqual(rejections(authz(from('{ principals: [web], ipBlocks: [x] }'))).map((r) => r.field), [
      `${SRC}.principals[0]`,
      `${SRC}.ipBlocks[0]`,
    ]);
  });

  it('is absent when no version of it was ever valid', () => {
    const state = apply(null, authz('{ action: CUSTOM, rules: [{}] }'));
    assert.equal(state.authorizationPolicies.size, 0);
  });
});

describe('PeerAuthentication validation', () => {
  it('keeps mode, selector and port-level modes in port order', () => {
    const state = apply(null, [
      peer('{ selector: { matchLabels: { app: web } }, mtls: { mode: STRICT }, portLevelMtls: { "9090": { mode: DISABLE }, "8080": { mode: UNSET } } }'),
      peer('{}', 'default').replace('security.istio.io/v1', 'security.istio.io/v1beta1'),
    ].join('---\n'));
    assert.deepEqual(state.rejections, []);
    assert.deepEqual(state.peerAuthentications.get('shop/mtls'), {
      namespace: 'shop',
      name: 'mtls',
      selector: { app: 'web' },
      mode: 'STRICT',
      portLevelMtls: [{ port: 8080, mode: 'UNSET' }, { port: 9090, mode: 'DISABLE' }],
    });
    assert.deepEqual(state.peerAuthentications.get('shop/default'), { namespace: 'shop', name: 'default', selector: null, mode: 'UNSET', portLevelMtls: [] });
  });

  const invalid: Array<[string, string, string, string]> = [
    ['lowercase mode', '{ mtls: { mode: strict } }', 'spec.mtls.mode', 'must be one of STRICT, PERMISSIVE, DISABLE, UNSET, got "strict"'],
    ['port-level without selector', '{ mtls: { mode: STRICT }, portLevelMtls: { "8080": { mode: DISABLE } } }', 'spec.portLevelMtls', 'needs spec.selector.matchLabels: mesh-wide and namespace-wide policies cannot set port-level mTLS'],
    ['port 0', '{ selector: { matchLabels: { app: web } }, portLevelMtls: { "0": { mode: DISABLE } } }', 'spec.portLevelMtls[0]', 'the key must be a port between 1 and 65535, got "0"'],
    ['named port', '{ selector: { matchLabels: { app: web } }, portLevelMtls: { http: { mode: DISABLE } } }', 'spec.portLevelMtls[http]', 'the key must be a port between 1 and 65535, got "http"'],
    ['empty port-level', '{ selector: { matchLabels: { app: web } }, portLevelMtls: {} }', 'spec.portLevelMtls', 'must not be empty: remove it, or list ports with their mode'],
    ['unknown mtls field', '{ mtls: { mode: STRICT, strict: true } }', 'spec.mtls.strict', 'unknown field; accepted: mode'],
  ];

  for (const [what, spec, field, reason] of invalid) {
    it(`rejects ${what} alone and keeps the last good version`, () => {
      const good = apply(null, peer('{ mtls: { mode: STRICT } }'));
      const next = apply(good, peer(spec));
      assert.deepEqual(next.rejections, [{ resource: 'PeerAuthentication shop/mtls', field, reason }]);
      assert.equal(next.peerAuthentications.get('shop/mtls')?.mode, 'STRICT');
      assert.equal(next.version, good.version, 'nothing accepted changed');
    });
  }
});
