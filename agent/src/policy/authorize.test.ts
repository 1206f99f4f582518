import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyConfig } from '../control/apply.js';
import { parseConfig } from '../control/config-docs.js';
import type { MeshPod, MeshState } from '../state/model.js';
import { applicablePolicies, authorize, needsHttp, ROOT_NAMESPACE, type AuthzRequest } from './index.js';

const pod = (namespace: string, name: string, app: string): string => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${namespace}, labels: { app: ${app} } }
spec: { nodeName: node-1, serviceAccountName: ${app} }
status: { podIP: 10.1.0.${name.length} }
`;
const PODS = [pod('shop', 'web-1', 'web'), pod('shop', 'db-1', 'db'), pod('other', 'web-9', 'web')];

const policy = (name: string, spec: string, namespace = 'shop'): string =>
  `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ${name}, namespace: ${namespace} }\nspec: ${spec}\n`;

function mesh(...policies: string[]): MeshState {
  const state = applyConfig(null, parseConfig([...PODS, ...policies].join('\n---\n'), 'mesh.yaml'), { node: 'node-1', cgroupExists: () => true });
  assert.deepEqual(state.rejections, []);
  return state;
}

const FRONTEND = 'cluster.local/ns/front/sa/frontend';

interface Over {
  principal?: string | null;
  namespace?: string;
  ip?: string;
  remoteIp?: string;
  pod?: string;
  port?: number;
  http?: Partial<NonNullable<AuthzRequest['http']>> | null;
}

/** An mTLS HTTP request from front/frontend to shop/web-1:8080, unless overridden. */
function request(state: MeshState, over: Over = {}): AuthzRequest {
  const target: MeshPod = state.pods.get(over.pod ?? 'shop/web-1')!;
  const req: AuthzRequest = {
    source: { ip: over.ip ?? '10.2.0.7' },
    destination: { pod: target, ip: target.podIP!, port: over.port ?? 8080 },
  };
  if (over.principal !== null) req.source.principal = over.principal ?? FRONTEND;
  if (over.namespace) req.source.namespace = over.namespace;
  if (over.remoteIp) req.source.remoteIp = over.remoteIp;
  if (over.http !== null) {
    req.http = { method: 'GET', path: '/api/items?page=2', host: 'shop.example.com', headers: { 'x-user': 'alice' }, ...over.http };
  }
  return req;
}

const PLAIN: Over = { principal: null, namespace: 'front' };

describe('authorize: each rule field, its not form and each match form', () => {
  // [rule (YAML), request, matches]: the rule sits in the only ALLOW policy, so a match allows.
  const cases: Array<[string, Over, boolean]> = [
    ['{ from: [{ source: { principals: [cluster.local/ns/front/sa/frontend] } }] }', {}, true],
    ['{ from: [{ source: { principals: [cluster.local/ns/front/sa/other] } }] }', {}, false],
    ['{ from: [{ source: { principals: ["cluster.local/ns/front/*"] } }] }', {}, true],
    ['{ from: [{ source: { principals: ["cluster.local/ns/back/*"] } }] }', {}, false],
    ['{ from: [{ source: { principals: ["*/sa/frontend"] } }] }', {}, true],
    ['{ from: [{ source: { principals: ["*/sa/backend"] } }] }', {}, false],
    ['{ from: [{ source: { principals: ["*"] } }] }', {}, true],
    ['{ from: [{ source: { principals: ["*"] } }] }', PLAIN, false],
    ['{ from: [{ source: { principals: [cluster.local/ns/front/sa/frontend] } }] }', PLAIN, false],
    ['{ from: [{ source: { notPrincipals: [cluster.local/ns/front/sa/frontend] } }] }', {}, false],
    ['{ from: [{ source: { notPrincipals: ["*/sa/backend"] } }] }', {}, true],
    ['{ from: [{ source: { notPrincipals: ["*"] } }] }', PLAIN, true],
    ['{ from: [{ source: { notPrincipals: ["*"] } }] }', {}, false],
    ['{ from: [{ source: { namespaces: [front] } }] }', {}, true],
    ['{ from: [{ source: { namespaces: [back] } }] }', {}, false],
    ['{ from: [{ source: { namespaces: ["fr*"] } }] }', {}, true],
    ['{ from: [{ source: { namespaces: ["*ont"] } }] }', {}, true],
    ['{ from: [{ source: { namespaces: ["*"] } }] }', {}, true],
    // Without an identity the claimed namespace is not trusted.
    ['{ from: [{ source: { namespaces: [front] } }] }', PLAIN, false],
    ['{ from: [{ source: { namespaces: ["*"] } }] }', PLAIN, false],
    ['{ from: [{ source: { notNamespaces: [front] } }] }', {}, false],
    ['{ from: [{ source: { notNamespaces: [back] } }] }', {}, true],
    ['{ from: [{ source: { notNamespaces: [front] } }] }', PLAIN, true],
    ['{ from: [{ source: { ipBlocks: [10.2.0.0/16] } }] }', {}, true],
    ['{ from: [{ source: { ipBlocks: [10.3.0.0/16] } }] }', {}, false],
    ['{ from: [{ source: { ipBlocks: [10.2.0.7] } }] }', {}, true],
    ['{ from: [{ source: { ipBlocks: [10.2.0.8] } }] }', {}, false],
    ['{ from: [{ source: { ipBlocks: [0.0.0.0/0] } }] }', {}, true],
    ['{ from: [{ source: { ipBlocks: [10.2.0.0/16] } }] }', { ip: '::ffff:10.2.0.7' }, true],
    ['{ from: [{ source: { ipBlocks: ["fd00::/8"] } }] }', { ip: 'fd00::1:7' }, true],
    ['{ from: [{ source: { ipBlocks: ["fd00::/8"] } }] }', {}, false],
    ['{ from: [{ source: { ipBlocks: [10.2.0.0/16] } }] }', PLAIN, true],
    ['{ from: [{ source: { notIpBlocks: [10.2.0.0/16] } }] }', {}, false],
    ['{ from: [{ source: { notIpBlocks: [10.3.0.0/16] } }] }', {}, true],
    ['{ from: [{ source: { remoteIpBlocks: [203.0.113.0/24] } }] }', { remoteIp: '203.0.113.9' }, true],
    ['{ from: [{ source: { remoteIpBlocks: [203.0.113.0/24] } }] }', {}, false],
    ['{ from: [{ source: { remoteIpBlocks: [10.2.0.7] } }] }', {}, true],
    ['{ from: [{ source: { notRemoteIpBlocks: [203.0.113.0/24] } }] }', { remoteIp: '203.0.113.9' }, false],
    ['{ to: [{ operation: { hosts: [shop.example.com] } }] }', {}, true],
    ['{ to: [{ operation: { hosts: [shop.example.com] } }] }', { http: { host: 'Shop.Example.COM' } }, true],
    ['{ to: [{ operation: { hosts: ["*.example.com"] } }] }', {}, true],
    ['{ to: [{ operation: { hosts: ["shop.*"] } }] }', {}, true],
    ['{ to: [{ operation: { hosts: ["api.*"] } }] }', {}, false],
    ['{ to: [{ operation: { notHosts: [shop.example.com] } }] }', {}, false],
    ['{ to: [{ operation: { notHosts: [api.example.com] } }] }', {}, true],
    ['{ to: [{ operation: { ports: ["8080"] } }] }', {}, true],
    ['{ to: [{ operation: { ports: [9090] } }] }', {}, false],
    ['{ to: [{ operation: { notPorts: [8080] } }] }', {}, false],
    ['{ to: [{ operation: { notPorts: [9090] } }] }', {}, true],
    ['{ to: [{ operation: { methods: [GET] } }] }', {}, true],
    ['{ to: [{ operation: { methods: [POST] } }] }', {}, false],
    ['{ to: [{ operation: { methods: ["P*"] } }] }', { http: { method: 'PUT' } }, true],
    ['{ to: [{ operation: { notMethods: [GET] } }] }', {}, false],
    // Paths are matched without the query string.
    ['{ to: [{ operation: { paths: [/api/items] } }] }', {}, true],
    ['{ to: [{ operation: { paths: [/api/item] } }] }', {}, false],
    ['{ to: [{ operation: { paths: ["/api/*"] } }] }', {}, true],
    ['{ to: [{ operation: { paths: ["*/items"] } }] }', {}, true],
    ['{ to: [{ operation: { paths: ["*.css"] } }] }', {}, false],
    ['{ to: [{ operation: { paths: ["*"] } }] }', {}, true],
    ['{ to: [{ operation: { notPaths: ["/api/*"] } }] }', {}, false],
    ['{ to: [{ operation: { notPaths: ["/admin*"] } }] }', {}, true],
    ['{ when: [{ key: source.ip, values: [10.2.0.0/16] }] }', {}, true],
    ['{ when: [{ key: source.ip, notValues: [10.2.0.0/16] }] }', {}, false],
    ['{ when: [{ key: remote.ip, values: [203.0.113.9] }] }', { remoteIp: '203.0.113.9' }, true],
    ['{ when: [{ key: remote.ip, notValues: [203.0.113.9] }] }', { remoteIp: '203.0.113.9' }, false],
    ['{ when: [{ key: source.namespace, values: [front] }] }', {}, true],
    ['{ when: [{ key: source.namespace, values: [front] }] }', PLAIN, false],
    ['{ when: [{ key: source.namespace, notValues: [front] }] }', PLAIN, true],
    ['{ when: [{ key: source.principal, values: ["*/sa/frontend"] }] }', {}, true],
    ['{ when: [{ key: source.principal, values: ["*"] }] }', PLAIN, false],
    ['{ when: [{ key: source.principal, notValues: [cluster.local/ns/front/sa/frontend] }] }', {}, false],
    ['{ when: [{ key: destination.ip, values: [10.1.0.0/16] }] }', {}, true],
    ['{ when: [{ key: destination.ip, notValues: [10.1.0.5] }] }', {}, false],
    ['{ when: [{ key: destination.port, values: [8080] }] }', {}, true],
    ['{ when: [{ key: destination.port, values: ["9090"] }] }', {}, false],
    ['{ when: [{ key: destination.port, notValues: ["9090"] }] }', {}, true],
    ['{ when: [{ key: "request.headers[X-User]", values: [alice] }] }', {}, true],
    ['{ when: [{ key: "request.headers[x-user]", values: ["al*"] }] }', {}, true],
    ['{ when: [{ key: "request.headers[x-user]", values: [bob] }] }', {}, false],
    ['{ when: [{ key: "request.headers[x-user]", notValues: [alice] }] }', {}, false],
    ['{ when: [{ key: "request.headers[x-team]", values: ["*"] }] }', {}, false],
    ['{ when: [{ key: "request.headers[x-team]", notValues: [red] }] }', {}, true],
    // Parts of a rule: any from, any to, every when.
    ['{ from: [{ source: { namespaces: [back] } }, { source: { namespaces: [front] } }] }', {}, true],
    ['{ to: [{ operation: { ports: ["9090"] } }, { operation: { methods: [GET] } }] }', {}, true],
    ['{ from: [{ source: { namespaces: [front] } }], to: [{ operation: { methods: [POST] } }] }', {}, false],
    ['{ from: [{ source: { namespaces: [front], ipBlocks: [10.3.0.0/16] } }] }', {}, false],
    ['{ when: [{ key: destination.port, values: ["8080"] }, { key: source.namespace, values: [back] }] }', {}, false],
  ];

  for (const [rule, over, matches] of cases) {
    const who = over.principal === null ? 'plaintext' : 'mTLS';
    it(`${rule} ${matches ? 'matches' : 'does not match'} ${who} ${JSON.stringify({ ...over, principal: undefined, namespace: undefined })}`, () => {
      const state = mesh(policy('allow', `{ rules: [${rule}] }`));
      assert.deepEqual(
        authorize(state, request(state, over)),
        matches
          ? { allowed: true, reason: 'allowed by AuthorizationPolicy shop/allow', policy: 'shop/allow' }
          : { allowed: false, reason: 'no ALLOW policy matched (shop/allow)' },
      );
    });
  }
});

describe('authorize: evaluation order', () => {
  const denyLegacy = policy('deny-legacy', '{ action: DENY, rules: [{ from: [{ source: { namespaces: [legacy] } }] }] }');
  const allowFront = policy('allow-front', '{ rules: [{ from: [{ source: { namespaces: [front] } }] }] }');
  const LEGACY = { principal: 'cluster.local/ns/legacy/sa/app' };

  it('allows when no policy applies', () => {
    const state = mesh();
    assert.deepEqual(authorize(state, request(state)), { allowed: true, reason: 'no policy applies' });
  });

  it('denies on a matching DENY, even when an ALLOW matches too', () => {
    const state = mesh(denyLegacy, allowFront, policy('allow-all', '{ rules: [{}] }'));
    assert.deepEqual(authorize(state, request(state, LEGACY)), {
      allowed: false, reason: 'denied by AuthorizationPolicy shop/deny-legacy', policy: 'shop/deny-legacy',
    });
  });

  it('allows when DENY policies apply but none matches and no ALLOW policy applies', () => {
    const state = mesh(denyLegacy);
    assert.deepEqual(authorize(state, request(state)), { allowed: true, reason: 'no ALLOW policy applies' });
  });

  it('denies when ALLOW policies apply and none matches, naming them', () => {
    const state = mesh(allowFront, policy('allow-back', '{ rules: [{ from: [{ source: { namespaces: [back] } }] }] }'));
    assert.deepEqual(authorize(state, request(state, LEGACY)), {
      allowed: false, reason: 'no ALLOW policy matched (shop/allow-back, shop/allow-front)',
    });
    assert.equal(authorize(state, request(state)).reason, 'allowed by AuthorizationPolicy shop/allow-front');
  });

  it('allows nothing with an ALLOW policy without rules, everything with rules: [{}]', () => {
    const nothing = mesh(policy('allow-nothing', '{}'));
    assert.deepEqual(authorize(nothing, request(nothing)), { allowed: false, reason: 'no ALLOW policy matched (shop/allow-nothing)' });
    const everything = mesh(policy('allow-nothing', '{}'), policy('allow-all', '{ rules: [{}] }'));
    assert.deepEqual(authorize(everything, request(everything, PLAIN)), {
      allowed: true, reason: 'allowed by AuthorizationPolicy shop/allow-all', policy: 'shop/allow-all',
    });
  });

  it('records matching AUDIT policies without changing the decision', () => {
    const audit = policy('audit-legacy', '{ action: AUDIT, rules: [{ from: [{ source: { namespaces: [legacy] } }] }] }');
    const alone = mesh(audit);
    assert.deepEqual(authorize(alone, request(alone, LEGACY)), { allowed: true, reason: 'no ALLOW policy applies', audited: ['shop/audit-legacy'] });
    assert.deepEqual(authorize(alone, request(alone)), { allowed: true, reason: 'no ALLOW policy applies' });
    const withAllow = mesh(audit, allowFront);
    assert.deepEqual(authorize(withAllow, request(withAllow, LEGACY)), {
      allowed: false, reason: 'no ALLOW policy matched (shop/allow-front)', audited: ['shop/audit-legacy'],
    });
    const withDeny = mesh(audit, denyLegacy);
    assert.deepEqual(authorize(withDeny, request(withDeny, LEGACY)), {
      allowed: false, reason: 'denied by AuthorizationPolicy shop/deny-legacy', policy: 'shop/deny-legacy', audited: ['shop/audit-legacy'],
    });
  });

  it("refuses plaintext with Istio's require-mTLS policy (DENY notPrincipals: ['*'])", () => {
    const state = mesh(policy('require-mtls', '{ action: DENY, rules: [{ from: [{ source: { notPrincipals: ["*"] } }] }] }'));
    assert.equal(authorize(state, request(state, PLAIN)).allowed, false);
    assert.equal(authorize(state, request(state, { ...PLAIN, http: null })).allowed, false);
    assert.equal(authorize(state, request(state)).allowed, true);
  });
});

describe('authorize: which policies apply', () => {
  const allowNothing = (name: string, namespace: string, selector = ''): string =>
    policy(name, selector ? `{ selector: { matchLabels: { ${selector} } } }` : '{}', namespace);
  const names = (state: MeshState, target: string): string[] =>
    applicablePolicies(state, state.pods.get(target)!).map((p) => `${p.namespace}/${p.name}`);

  it('applies root-namespace policies without selector to every workload', () => {
    const state = mesh(allowNothing('mesh-wide', ROOT_NAMESPACE));
    assert.equal(ROOT_NAMESPACE, 'nodemesh-system');
    assert.deepEqual(names(state, 'shop/web-1'), ['nodemesh-system/mesh-wide']);
    assert.deepEqual(names(state, 'other/web-9'), ['nodemesh-system/mesh-wide']);
    assert.deepEqual(authorize(state, request(state, { pod: 'other/web-9' })), {
      allowed: false, reason: 'no ALLOW policy matched (nodemesh-system/mesh-wide)',
    });
  });

  it('applies root-namespace policies with a selector to matching workloads of every namespace', () => {
    const state = mesh(allowNothing('web-everywhere', ROOT_NAMESPACE, 'app: web'));
    assert.deepEqual(names(state, 'shop/web-1'), ['nodemesh-system/web-everywhere']);
    assert.deepEqual(names(state, 'other/web-9'), ['nodemesh-system/web-everywhere']);
    assert.deepEqual(names(state, 'shop/db-1'), []);
  });

  it('applies namespace policies to their namespace only, and selector policies to matching pods only', () => {
    const state = mesh(allowNothing('shop-wide', 'shop'), allowNothing('web-only', 'shop', 'app: web'), allowNothing('other-wide', 'other'));
    assert.deepEqual(names(state, 'shop/web-1'), ['shop/shop-wide', 'shop/web-only']);
    assert.deepEqual(names(state, 'shop/db-1'), ['shop/shop-wide']);
    assert.deepEqual(names(state, 'other/web-9'), ['other/other-wide']);
    assert.deepEqual(authorize(state, request(state, { pod: 'shop/db-1' })), { allowed: false, reason: 'no ALLOW policy matched (shop/shop-wide)' });
  });

  it('lists every applicable policy in namespace/name order, whatever the file order', () => {
    const state = mesh(allowNothing('b', 'shop'), allowNothing('z', ROOT_NAMESPACE), allowNothing('a', 'shop'));
    assert.deepEqual(names(state, 'shop/web-1'), ['nodemesh-system/z', 'shop/a', 'shop/b']);
  });
});

describe('authorize: opaque TCP (L4) against rules with HTTP conditions', () => {
  const L4: Over = { http: null };

  it('never matches an ALLOW rule with an HTTP condition (fail closed), but matches its L4-only rules', () => {
    const state = mesh(policy('allow-get', '{ rules: [{ to: [{ operation: { ports: ["8080"], methods: [GET] } }] }] }'));
    assert.equal(authorize(state, request(state)).allowed, true);
    assert.deepEqual(authorize(state, request(state, L4)), { allowed: false, reason: 'no ALLOW policy matched (shop/allow-get)' });
    for (const rule of ['{ to: [{ operation: { hosts: [shop.example.com] } }] }', '{ to: [{ operation: { notPaths: [/admin] } }] }', '{ when: [{ key: "request.headers[x-user]", notValues: [eve] }] }']) {
      const s = mesh(policy('allow-http', `{ rules: [${rule}] }`));
      assert.equal(authorize(s, request(s, L4)).allowed, false, rule);
      assert.equal(authorize(s, request(s)).allowed, true, rule);
    }
    const mixed = mesh(policy('allow', '{ rules: [{ to: [{ operation: { methods: [GET] } }] }, { to: [{ operation: { ports: ["8080"] } }] }] }'));
    assert.equal(authorize(mixed, request(mixed, L4)).reason, 'allowed by AuthorizationPolicy shop/allow');
  });

  it('matches a DENY rule on its L4 parts only, so the deny is widened, never narrowed', () => {
    const denyPost = mesh(policy('deny-post', '{ action: DENY, rules: [{ to: [{ operation: { methods: [POST] } }] }] }'));
    assert.equal(authorize(denyPost, request(denyPost)).allowed, true, 'GET over HTTP is not denied');
    assert.deepEqual(authorize(denyPost, request(denyPost, L4)), {
      allowed: false, reason: 'denied by AuthorizationPolicy shop/deny-post', policy: 'shop/deny-post',
    });

    const denyAdminPort = mesh(policy('deny-admin', '{ action: DENY, rules: [{ to: [{ operation: { ports: ["9901"], paths: ["/admin*"] } }] }] }'));
    assert.equal(authorize(denyAdminPort, request(denyAdminPort, { ...L4, port: 9901 })).allowed, false);
    assert.equal(authorize(denyAdminPort, request(denyAdminPort, { ...L4, port: 8080 })).allowed, true);

    const denyLegacyWrites = mesh(policy('deny', `{ action: DENY, rules: [{
      from: [{ source: { namespaces: [legacy] } }],
      to: [{ operation: { notMethods: [GET] } }],
      when: [{ key: "request.headers[x-user]", values: [eve] }] }] }`));
    assert.equal(authorize(denyLegacyWrites, request(denyLegacyWrites, { ...L4, principal: 'cluster.local/ns/legacy/sa/app' })).allowed, false);
    assert.equal(authorize(denyLegacyWrites, request(denyLegacyWrites, L4)).allowed, true, 'the L4 part (namespace legacy) still has to match');
  });

  it('widens AUDIT rules the same way as DENY', () => {
    const state = mesh(policy('audit-posts', '{ action: AUDIT, rules: [{ to: [{ operation: { methods: [POST] } }] }] }'));
    assert.deepEqual(authorize(state, request(state, L4)), { allowed: true, reason: 'no ALLOW policy applies', audited: ['shop/audit-posts'] });
  });
});

describe('needsHttp: whether a port must be authorized per HTTP request', () => {
  const web = (state: MeshState) => state.pods.get('shop/web-1')!;
  it('is false with no policy or only L4 conditions', () => {
    assert.equal(needsHttp(mesh(), web(mesh()), 8080), false);
    const state = mesh(policy('l4', '{ rules: [{ from: [{ source: { namespaces: [front] } }], to: [{ operation: { ports: ["8080"] } }] }] }'));
    assert.equal(needsHttp(state, web(state), 8080), false);
  });
  it('is true for a path, method, host or header condition that can apply to the port', () => {
    const state = mesh(
      policy('paths', '{ rules: [{ to: [{ operation: { paths: [/admin*], ports: ["8080"] } }] }] }'),
      policy('header', '{ action: DENY, selector: { matchLabels: { app: db } }, rules: [{ when: [{ key: "request.headers[x-debug]", values: ["*"] }] }] }'),
    );
    assert.equal(needsHttp(state, web(state), 8080), true);
    assert.equal(needsHttp(state, web(state), 9000), false, 'the rule is for port 8080 only');
    const db = state.pods.get('shop/db-1')!;
    assert.equal(needsHttp(state, db, 5432), true, 'no `to`: every port');
  });
});
