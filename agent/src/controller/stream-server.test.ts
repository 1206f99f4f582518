import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { describe, it, type TestContext } from 'node:test';
import { nodeMayHold } from '../identity/authz-rule.js';
import { MeshCA } from '../identity/ca.js';
import { testKey, tmpDir } from '../testing/pki.js';
import { createCsr, pemCertificates } from '../identity/x509.js';
import type { Rejection } from '../state/model.js';
import { memoryLogger, podsState } from '../testing/mesh.js';
import { controllerPki, portOf, SERVER_NAME, service, startController, tokenOf, waitFor, type TestController } from '../testing/stream.js';
import { ServingCertificate } from './serving-certificate.js';
import { ConfigStreamClient, type ConfigSnapshot, type ConfigStreamClientOptions } from '../control/stream-client.js';
import { meshControl, type ConfigRequest, type ConfigUpdate } from '../control/stream-proto.js';

const pki = controllerPki();
const FAST = { baseMs: 20, maxMs: 100 };

async function controller(t: TestContext, opts: Partial<Parameters<typeof startController>[0]> = {}): Promise<TestController & { lines: Array<Record<string, unknown>> }> {
  const { log, lines } = memoryLogger();
  const c = await startController({ log, credentials: pki.credentials, ...opts });
  t.after(() => c.server.close());
  return { ...c, lines };
}

function agent(
  t: TestContext,
  address: string,
  opts: Partial<ConfigStreamClientOptions> = {},
): { client: ConfigStreamClient; snapshots: ConfigSnapshot[]; lines: Array<Record<string, unknown>> } {
  const { log, lines } = memoryLogger();
  const snapshots: ConfigSnapshot[] = [];
  const client = new ConfigStreamClient({
    address,
    serverName: SERVER_NAME,
    rootPem: pki.rootPem,
    token: () => tokenOf('n1'),
    node: 'n1',
    onSnapshot: (s) => (snapshots.push(s), []),
    log,
    backoff: FAST,
    ...opts,
  });
  t.after(() => client.stop());
  return { client, snapshots, lines };
}

/** The serial of the certificate a new TLS connection to the config server is shown. */
function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: SERVER_NAME, ca: pki.rootPem, ALPNProtocols: ['h2'] }, () => {
      resolve(socket.getPeerX509Certificate()!.serialNumber);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

const messages = (lines: Array<Record<string, unknown>>, re: RegExp) => lines.filter((l) => re.test(String(l['msg'])));

describe('config stream', () => {
  it('delivers the node view over TLS, and the ACK shows in the server status', async (t) => {
    const c = await controller(t, { views: new Map([['n1', [service('web', 80)]]]) });
    const { client, snapshots } = agent(t, c.server.address!);
    client.start();
    await waitFor('the first snapshot', () => snapshots.length === 1);
    const [snapshot] = snapshots;
    assert.deepEqual(snapshot!.resources.map((r) => `${r.kind} ${r.namespace}/${r.name}`), ['Service shop/web']);
    assert.ok(snapshot!.version >= Date.now() - 60_000, `version ${snapshot!.version} starts from the controller clock`);
    await waitFor('the ACK', () => c.server.status()[0]?.versionAcked === snapshot!.version);
    const [status] = c.server.status();
    assert.equal(status!.node, 'n1');
    assert.equal(status!.versionSent, snapshot!.version);
    assert.equal(status!.nack, undefined);
    assert.match(status!.peer, /127\.0\.0\.1/);
    assert.ok(client.connected);
    assert.deepEqual(c.checked, [tokenOf('n1')]);
  });

  it('sends a new version within a second of a view change, and nothing when the view is unchanged', async (t) => {
    const c = await controller(t, { views: new Map([['n1', [service('web', 80)]]]) });
    const { client, snapshots } = agent(t, c.server.address!);
    client.start();
    await waitFor('the first snapshot', () => snapshots.length === 1);
    c.server.refresh();
    c.views.set('n1', [service('web', 8080)]);
    const changed = Date.now();
    c.server.refresh();
    await waitFor('the changed view', () => snapshots.length === 2, 1000);
    assert.ok(Date.now() - changed < 1000);
    assert.ok(snapshots[1]!.version > snapshots[0]!.version);
    assert.match(snapshots[1]!.resources[0]!.json, /"port":8080/);
    c.server.refresh();
    await waitFor('the ACK', () => c.server.status()[0]?.versionAcked === snapshots[1]!.version);
    assert.equal(snapshots.length, 2, 'an unchanged view is not resent');
  });

  it('sends only the changes when they are fewer than the whole view; the agent applies the whole view they make', async (t) => {
    const before = [service('web', 80), service('a', 80), service('b', 80), service('c', 80)];
    const c = await controller(t, { views: new Map([['n1', before]]) });
    const { client, snapshots } = agent(t, c.server.address!);
    client.start();
    await waitFor('the first snapshot', () => snapshots.length === 1);
    c.views.set('n1', [service('web', 8080), service('a', 80), service('b', 80), service('d', 80)]);
    c.server.refresh();
    await waitFor('the update', () => snapshots.length === 2);
    const [sent] = messages(c.lines, /the changes since/);
    assert.deepEqual([sent?.['changed'], sent?.['removed'], sent?.['baseVersion']], [2, 1, snapshots[0]!.version], 'web changed, d added, c removed');
    const whole = snapshots[1]!.resources;
    assert.deepEqual(whole.map((r) => r.name).sort(), ['a', 'b', 'd', 'web']);
    assert.match(whole.find((r) => r.name === 'web')!.json, /"port":8080/);
    await waitFor('the ACK', () => c.server.status()[0]?.versionAcked === snapshots[1]!.version);

    // An agent holding the current view (from its disk) gets none, then the changes on top of it.
    const held = { version: snapshots[1]!.version, resources: whole };
    const restarted = agent(t, c.server.address!);
    restarted.client.start(held);
    await waitFor('the second agent', () => c.server.status().length === 2 && c.server.status().every((s) => s.versionAcked === held.version));
    assert.equal(restarted.snapshots.length, 0, 'the view held is not resent');
    c.views.set('n1', [service('web', 8080), service('a', 81), service('b', 80), service('d', 80)]);
    c.server.refresh();
    await waitFor('the update on top of the held view', () => restarted.snapshots.length === 1);
    assert.deepEqual(restarted.snapshots[0]!.resources.map((r) => `${r.name}:${JSON.parse(r.json).spec.ports[0].port}`).sort(), ['a:81', 'b:80', 'd:80', 'web:8080']);
  });

  it('asks for the whole view again when an incremental update does not apply to the view it holds', async (t) => {
    const hellos: number[] = [];
    const server = new grpc.Server();
    server.addService(meshControl().service, {
      streamConfig: (call: grpc.ServerDuplexStream<ConfigRequest, ConfigUpdate>) => {
        call.once('data', (hello: ConfigRequest) => {
          hellos.push(hello.version);
          call.sendMetadata(new grpc.Metadata());
          // The first stream gets changes on a base this agent never had; the next one the whole view.
          if (hellos.length === 1) call.write({ version: 7, resources: [service('web', 81)], incremental: true, baseVersion: 5, removed: [] });
          else call.write({ version: 7, resources: [service('web', 81), service('a', 80)], incremental: false, baseVersion: 0, removed: [] });
        });
      },
      signCertificate: () => undefined,
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', new ServingCertificate(pki.credentials).credentials(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    t.after(() => server.forceShutdown());
    const { client, snapshots, lines } = agent(t, `127.0.0.1:${port}`);
    client.start({ version: 6, resources: [service('web', 80)] });
    await waitFor('the whole view', () => snapshots.length === 1);
    assert.deepEqual(hellos, [6, 0]);
    assert.deepEqual(snapshots[0]!.resources.map((r) => r.name), ['web', 'a']);
    assert.match(String(messages(lines, /asking for the whole view/)[0]?.['msg']), /applies to version 5, not to the 6 held/);
  });

  it('records a NACK with its rejections in the status and logs each at warn; a later ACK clears it', async (t) => {
    const c = await controller(t, { views: new Map([['n1', [service('web', 80)]]]) });
    const rejection: Rejection = { resource: 'AuthorizationPolicy shop/deny', field: 'spec.action', reason: 'must be one of ALLOW, DENY, AUDIT, got "FOO"' };
    let answer: Rejection[] = [rejection];
    const { client, snapshots } = agent(t, c.server.address!, { onSnapshot: (s) => (snapshots.push(s), answer) });
    client.start();
    await waitFor('the NACK', () => c.server.status()[0]?.nack !== undefined);
    assert.deepEqual(c.server.status()[0]!.nack, { version: snapshots[0]!.version, rejections: [rejection] });
    assert.equal(c.server.status()[0]!.versionAcked, 0);
    const [warn] = messages(c.lines, /NACKed/);
    assert.equal(warn!['level'], 40);
    assert.equal(warn!['node'], 'n1');
    assert.equal(warn!['version'], snapshots[0]!.version);
    assert.equal(warn!['resource'], rejection.resource);
    assert.equal(warn!['field'], rejection.field);
    assert.equal(warn!['reason'], rejection.reason);

    answer = [];
    c.views.set('n1', [service('web', 81)]);
    c.server.refresh();
    await waitFor('the ACK of the next version', () => c.server.status()[0]?.versionAcked === snapshots[1]?.version);
    assert.equal(c.server.status()[0]!.nack, undefined);
  });

  it('refuses a bad token with UNAUTHENTICATED; the agent keeps retrying with backoff and warns once', async (t) => {
    const c = await controller(t, { views: new Map([['n1', [service('web', 80)]]]) });
    let token = 'forged';
    const { client, snapshots, lines } = agent(t, c.server.address!, { token: () => token });
    client.start();
    await waitFor('three refusals at the agent', () => messages(lines, /config stream to the controller (failed|still failing)/).length >= 3);
    assert.ok(c.checked.length >= 3);
    assert.equal(snapshots.length, 0);
    assert.ok(!client.connected);
    const warnings = messages(lines, /config stream to the controller failed/);
    assert.equal(warnings.length, 1, 'one warning for the same failure, not one per retry');
    assert.match(String(warnings[0]!['msg']), /UNAUTHENTICATED: token refused: the token is not valid/);
    assert.ok(messages(lines, /still failing/).length >= 2);
    assert.match(String(messages(c.lines, /config stream refused/)[0]!['msg']), /token refused/);

    token = tokenOf('n1');
    await waitFor('the snapshot after the token is fixed (re-read at each retry)', () => snapshots.length === 1);
    assert.equal(messages(lines, /restored/).length, 1);
  });

  it("refuses another node's view with PERMISSION_DENIED naming both, and an unknown node with NOT_FOUND", async (t) => {
    const c = await controller(t, { views: new Map([['n1', [service('web', 80)]]]) });
    const thief = agent(t, c.server.address!, { token: () => tokenOf('n2'), node: 'n1' });
    thief.client.start();
    await waitFor('a refusal', () => messages(thief.lines, /failed/).length === 1);
    assert.match(String(messages(thief.lines, /failed/)[0]!['msg']), /PERMISSION_DENIED: the agent of node n2 may not read the view of node n1/);

    const stranger = agent(t, c.server.address!, { token: () => tokenOf('n9'), node: 'n9' });
    stranger.client.start();
    await waitFor('a refusal', () => messages(stranger.lines, /failed/).length === 1);
    assert.match(String(messages(stranger.lines, /failed/)[0]!['msg']), /NOT_FOUND: node n9 is not known to the controller/);
    assert.equal(thief.snapshots.length + stranger.snapshots.length, 0);
    assert.deepEqual(c.server.status(), []);
  });

  it('streams to every agent of a node (rolling restart)', async (t) => {
    const c = await controller(t, { views: new Map([['n1', [service('web', 80)]]]) });
    const a = agent(t, c.server.address!);
    const b = agent(t, c.server.address!);
    a.client.start();
    b.client.start();
    await waitFor('both ACKs', () => c.server.status().filter((s) => s.versionAcked > 0).length === 2);
    c.views.set('n1', [service('web', 82)]);
    c.server.refresh();
    await waitFor('the change at both', () => a.snapshots.length === 2 && b.snapshots.length === 2, 1000);
    assert.equal(a.snapshots[1]!.version, b.snapshots[1]!.version);
  });

  it('renews its serving certificate while serving: new connections get the new one, open streams go on', async (t) => {
    const c = await controller(t, { views: new Map([['n1', [service('web', 80)]]]) });
    const a = agent(t, c.server.address!);
    a.client.start();
    await waitFor('the first snapshot', () => a.snapshots.length === 1);
    const presented = () => servedSerial(portOf(c.server.address));
    assert.equal(await presented(), new X509Certificate(pki.credentials.cert).serialNumber);

    const renewed = pki.issue(2);
    c.server.replaceServingCertificate(renewed);
    assert.equal(await presented(), new X509Certificate(renewed.cert).serialNumber);
    c.views.set('n1', [service('web', 81)]);
    c.server.refresh();
    await waitFor('the change on the stream opened before the renewal', () => a.snapshots.length === 2, 1000);
    assert.equal(messages(a.lines, /stream to the controller open/).length, 1, 'the stream was not reopened');
    const b = agent(t, c.server.address!);
    b.client.start();
    await waitFor('a new agent, verifying the new certificate', () => b.snapshots.length === 1);
  });

  it('reconnects after the controller restarts on the same port and resyncs', async (t) => {
    const { log } = memoryLogger();
    const views = new Map([['n1', [service('web', 80)]]]);
    const first = await startController({ log, credentials: pki.credentials, views });
    const port = portOf(first.server.address);
    const { client, snapshots, lines } = agent(t, first.server.address!);
    client.start();
    await waitFor('the first snapshot', () => snapshots.length === 1);
    first.server.close();
    await waitFor('the disconnect', () => !client.connected);

    views.set('n1', [service('web', 9090)]);
    const second = await startController({ log, credentials: pki.credentials, views, port });
    t.after(() => second.server.close());
    await waitFor('the resync', () => snapshots.length === 2, 3000);
    assert.match(snapshots[1]!.resources[0]!.json, /"port":9090/);
    assert.ok(snapshots[1]!.version > snapshots[0]!.version, 'versions keep increasing across controller restarts');
    await waitFor('the ACK to the new controller', () => second.server.status()[0]?.versionAcked === snapshots[1]!.version);
    assert.equal(messages(lines, /restored/).length, 1);
  });
});

describe('certificate signing over the config server', () => {
  const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
  const DB = 'spiffe://cluster.local/ns/shop/sa/db';
  const state = podsState([
    { namespace: 'shop', name: 'web-1', nodeName: 'n1', serviceAccount: 'web' },
    { namespace: 'shop', name: 'db-1', nodeName: 'n2', serviceAccount: 'db' },
  ]);

  async function withCa(t: TestContext): Promise<{ c: TestController; ca: MeshCA }> {
    const { log } = memoryLogger();
    const ca = MeshCA.loadOrCreate({ dir: tmpDir(), trustDomain: 'cluster.local', log });
    const c = await controller(t, {
      sign: async (node, csrPem, ttlSeconds) => ca.sign({ node, csrPem, ttlSeconds, authorize: (n, id) => nodeMayHold(state, n, id) }),
    });
    return { c, ca };
  }

  it('returns the chain and the root for an identity of a pod on the node', async (t) => {
    const { c, ca } = await withCa(t);
    const { client } = agent(t, c.server.address!);
    const answer = await client.sign(createCsr({ uris: [WEB], privateKey: testKey(0) }), 3600);
    assert.equal(answer.rootPem, ca.rootPem);
    const [leaf] = pemCertificates(answer.certChainPem).map((p) => new X509Certificate(p));
    assert.equal(leaf!.subjectAltName, `URI:${WEB}`);
    assert.ok(leaf!.verify(new X509Certificate(ca.rootPem).publicKey));
  });

  it('fails with the status and the reason for an identity with no pod on the node, a bad CSR or a bad token', async (t) => {
    const { c } = await withCa(t);
    const { client } = agent(t, c.server.address!);
    await assert.rejects(client.sign(createCsr({ uris: [DB], privateKey: testKey(0) }), 3600), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'NM_ERR_CONTROL_SIGN');
      assert.match(err.message, /PERMISSION_DENIED: refused to sign .*shop\/sa\/db for node n1: no pod on node n1 runs as service account shop\/db \(pods with it run on n2\)/);
      return true;
    });
    await assert.rejects(client.sign('not a csr', 3600), /INVALID_ARGUMENT: CSR from node n1 rejected/);
    const forged = agent(t, c.server.address!, { token: () => 'forged' });
    await assert.rejects(forged.client.sign(createCsr({ uris: [WEB], privateKey: testKey(0) }), 3600), /UNAUTHENTICATED: token refused/);
    const unread = agent(t, c.server.address!, {
      token: () => {
        throw new Error('ENOENT: /var/run/secrets/tokens/nodemesh');
      },
    });
    await assert.rejects(unread.client.sign('csr', 3600), /cannot read the service-account token: ENOENT/);
  });

  it('fails with UNAVAILABLE within the deadline when the controller is down', async (t) => {
    const { log } = memoryLogger();
    const gone = await startController({ log, credentials: pki.credentials });
    const address = gone.server.address!;
    gone.server.close();
    const { client } = agent(t, address, { signTimeoutMs: 500 });
    const started = Date.now();
    await assert.rejects(client.sign('csr', 3600), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'NM_ERR_CONTROL_SIGN');
      assert.match(err.message, new RegExp(`controller ${address} did not sign the certificate: UNAVAILABLE: .*ECONNREFUSED`));
      return true;
    });
    assert.ok(Date.now() - started < 2000);
  });
});
