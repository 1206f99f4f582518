import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { tmpDir } from '../testing/pki.js';
import type { MeshState } from '../state/model.js';
import { memoryLogger } from '../testing/mesh.js';
import { controllerPki, SERVER_NAME, service, startController, tokenOf, viewResource, waitFor, type TestController } from '../testing/stream.js';
import { StreamSource } from './stream-source.js';
import type { ViewResource } from './view-resource.js';

const pki = controllerPki();

const namespace = viewResource({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'nodemesh.io/mode': 'enabled' } } });
const policy = (action: string): ViewResource =>
  viewResource({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'deny-db', namespace: 'shop' },
    spec: { action, rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] },
  });
const broken: ViewResource = { apiVersion: 'v1', kind: 'Service', namespace: 'shop', name: 'api', json: '{"apiVersion":"v1",' };

async function controller(t: TestContext, resources: ViewResource[]): Promise<TestController & { lines: Array<Record<string, unknown>> }> {
  const { log, lines } = memoryLogger();
  const c = await startController({ log, credentials: pki.credentials, views: new Map([['n1', resources]]) });
  t.after(() => c.server.close());
  return { ...c, lines };
}

function source(
  t: TestContext,
  stateDir: string,
  address: string,
  saveIntervalMs = 0,
): { source: StreamSource; states: MeshState[]; lines: Array<Record<string, unknown>> } {
  const { log, lines } = memoryLogger();
  const states: MeshState[] = [];
  const s = new StreamSource({
    node: 'n1',
    log,
    onState: (state) => states.push(state),
    stateDir,
    saveIntervalMs,
    client: { address, serverName: SERVER_NAME, rootPem: pki.rootPem, token: () => tokenOf('n1'), backoff: { baseMs: 20, maxMs: 100 } },
    applyOptions: { cgroupExists: () => true },
  });
  t.after(() => s.stop());
  return { source: s, states, lines };
}

const messages = (lines: Array<Record<string, unknown>>, re: RegExp) => lines.filter((l) => re.test(String(l['msg'])));
const saved = (dir: string) => JSON.parse(readFileSync(join(dir, 'snapshot.json'), 'utf8')) as { version: number; acked: boolean; resources: ViewResource[] };

describe('StreamSource', () => {
  it('waits for the first snapshot, applies it and writes it to disk with mode 0600', async (t) => {
    const c = await controller(t, [namespace, service('web', 80)]);
    const dir = join(tmpDir(), 'state');
    const { source: s, states, lines } = source(t, dir, c.server.address!);
    await s.start();
    assert.equal(states.length, 1);
    assert.equal(states[0]!.services.get('shop/web')?.ports[0]?.port, 80);
    assert.ok(states[0]!.namespaces.get('shop')?.enrolled);
    assert.equal(messages(lines, /waits for the controller at 127\.0\.0\.1:\d+/).length, 1);
    assert.equal(statSync(join(dir, 'snapshot.json')).mode & 0o777, 0o600);
    const file = saved(dir);
    assert.equal(file.version, c.server.status()[0]!.versionSent);
    assert.equal(file.acked, true);
    assert.deepEqual(file.resources, [namespace, service('web', 80)]);
    await waitFor('the ACK', () => c.server.status()[0]?.versionAcked === file.version);
  });

  it('writes the snapshot at most once per save interval, the newest one, and at stop', async (t) => {
    const c = await controller(t, [namespace, service('web', 80)]);
    const dir = tmpDir();
    const { source: s, states } = source(t, dir, c.server.address!, 60_000);
    await s.start();
    const first = saved(dir).version;
    for (const port of [81, 82]) {
      c.views.set('n1', [namespace, service('web', port)]);
      c.server.refresh();
      await waitFor(`port ${port} applied`, () => states.at(-1)?.services.get('shop/web')?.ports[0]?.port === port);
    }
    assert.equal(saved(dir).version, first, 'not rewritten within the interval');
    const last = c.server.status()[0]!.versionSent;
    s.stop();
    assert.equal(saved(dir).version, last, 'the newest snapshot is written at stop');
    assert.match(JSON.stringify(saved(dir).resources), /\\"port\\":82/);
  });

  it('NACKs an invalid and an unparseable resource by name, applies the rest, and keeps their last good versions, also on disk', async (t) => {
    const c = await controller(t, [namespace, service('web', 80), policy('DENY'), service('api', 90)]);
    const dir = tmpDir();
    const { source: s, states } = source(t, dir, c.server.address!);
    await s.start();
    assert.equal(states[0]!.authorizationPolicies.get('shop/deny-db')?.action, 'DENY');

    c.views.set('n1', [namespace, service('web', 8080), policy('FOO'), broken]);
    c.server.refresh();
    await waitFor('the NACK', () => c.server.status()[0]?.nack !== undefined, 1000);
    const { nack, versionAcked } = c.server.status()[0]!;
    assert.deepEqual(
      nack!.rejections.map((r) => [r.resource, r.field]),
      [
        ['Service shop/api', ''],
        ['AuthorizationPolicy shop/deny-db', 'spec.action'],
      ],
    );
    assert.match(nack!.rejections[0]!.reason, /JSON cannot be used/);
    assert.match(nack!.rejections[1]!.reason, /must be one of ALLOW, DENY, AUDIT, got "FOO"/);
    assert.ok(versionAcked < nack!.version);

    const state = s.state!;
    assert.equal(state.services.get('shop/web')?.ports[0]?.port, 8080, 'the rest applies');
    assert.equal(state.authorizationPolicies.get('shop/deny-db')?.action, 'DENY', 'the last good policy stays in force');
    assert.equal(state.services.get('shop/api')?.ports[0]?.port, 90, 'the last good service stays in force');
    assert.equal(state.rejections.length, 2);
    const file = saved(dir);
    assert.equal(file.acked, false);
    assert.deepEqual(file.resources, [namespace, service('web', 8080), policy('DENY'), service('api', 90)], 'the file holds what is in force');

    s.stop();
    await waitFor('the disconnect', () => c.server.status().length === 0);
    const again = source(t, dir, c.server.address!);
    await again.source.start();
    assert.equal(again.source.state!.authorizationPolicies.get('shop/deny-db')?.action, 'DENY', 'restarted from disk: still in force');
    await waitFor('the NACK again: a NACKed version is not held, so it is resent', () => c.server.status()[0]?.nack?.rejections.length === 2);
  });

  it('serves from the on-disk snapshot at start with the controller down, then resyncs when it is back', async (t) => {
    const c = await controller(t, [namespace, service('web', 80)]);
    const dir = tmpDir();
    const first = source(t, dir, c.server.address!);
    await first.source.start();
    first.source.stop();
    const address = c.server.address!;
    c.server.close();

    const again = source(t, dir, address);
    const started = Date.now();
    await again.source.start();
    assert.ok(Date.now() - started < 500, 'start does not wait for the controller');
    assert.equal(again.states[0]!.services.get('shop/web')?.ports[0]?.port, 80);
    const [line] = messages(again.lines, /serving from the on-disk snapshot/);
    assert.equal(line!['version'], saved(dir).version);
    assert.equal(typeof line!['ageSeconds'], 'number');

    const back = await startController({
      log: memoryLogger().log,
      credentials: pki.credentials,
      views: new Map([['n1', [namespace, service('web', 81)]]]),
      port: Number(address.split(':')[1]),
    });
    t.after(() => back.server.close());
    await waitFor('the resync', () => again.source.state?.services.get('shop/web')?.ports[0]?.port === 81);
  });

  it('does not resend a view the restarted agent already holds', async (t) => {
    const c = await controller(t, [namespace, service('web', 80)]);
    const dir = tmpDir();
    const first = source(t, dir, c.server.address!);
    await first.source.start();
    const version = saved(dir).version;
    await waitFor('the ACK', () => c.server.status()[0]?.versionAcked === version);
    first.source.stop();
    await waitFor('the disconnect', () => c.server.status().length === 0);

    const again = source(t, dir, c.server.address!);
    await again.source.start();
    await waitFor('the reconnect', () => again.source.connected);
    assert.deepEqual(
      c.server.status().map((s) => [s.versionSent, s.versionAcked]),
      [[version, version]],
    );
    assert.equal(again.states.length, 1, 'only the on-disk state');
  });

  it('logs and ignores a corrupt snapshot file, then waits for the controller', async (t) => {
    const c = await controller(t, [namespace, service('web', 80)]);
    for (const content of ['{"format":1,"node":"n1","vers', '{"format":1,"node":"n1","version":3}', '[]']) {
      const dir = tmpDir();
      writeFileSync(join(dir, 'snapshot.json'), content);
      const { source: s, states, lines } = source(t, dir, c.server.address!);
      await s.start();
      const [error] = messages(lines, /on-disk snapshot is corrupt; ignored/);
      assert.equal(error!['code'], 'NM_ERR_CONTROL_SNAPSHOT');
      assert.equal(error!['level'], 50);
      assert.equal(states[0]!.services.get('shop/web')?.ports[0]?.port, 80);
      assert.equal(saved(dir).acked, true, 'replaced by a good snapshot');
      s.stop();
    }
  });

  it('ignores the snapshot of another node, and rejects start when stopped before the first snapshot', async (t) => {
    const dir = tmpDir();
    writeFileSync(join(dir, 'snapshot.json'), JSON.stringify({ format: 1, node: 'n2', version: 5, acked: true, savedAt: new Date().toISOString(), resources: [] }));
    const { source: s, lines } = source(t, dir, '127.0.0.1:1');
    const starting = s.start();
    assert.equal(messages(lines, /belongs to node n2; ignored/).length, 1);
    s.stop();
    await assert.rejects(starting, (err: Error & { code?: string }) => err.code === 'NM_ERR_CONTROL_STOPPED');
  });
});
