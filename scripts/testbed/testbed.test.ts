// The netns testbed as its users see it: pods on different nodes talk over the underlay,
// unrouted service VIPs fail at once, and destroy leaves nothing behind. Needs root.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { cgroup2Mount, NETNS_DIR } from './host.js';
import { fixturePath, Testbed } from './testbed.js';

const skip = process.getuid?.() === 0 ? false : 'needs root: creates network namespaces and cgroups';

function leftovers(id: string): string[] {
  const netns = existsSync(NETNS_DIR) ? readdirSync(NETNS_DIR).filter((n) => n.startsWith(`nmt-${id}-`)) : [];
  const cgroup = `${cgroup2Mount()}/nodemesh-testbed-${id}`;
  return [...netns, ...(existsSync(cgroup) ? [cgroup] : [])];
}

describe('netns testbed', { skip }, () => {
  let tb: Testbed;

  before(async () => {
    tb = await Testbed.create({
      nodes: [
        { name: 'n1', pods: [{ name: 'client', namespace: 'demo' }, { name: 'web-1', namespace: 'demo' }] },
        { name: 'n2', pods: [{ name: 'web-2', namespace: 'demo' }, { name: 'web-3', namespace: 'demo' }] },
      ],
    });
    await Promise.all(['web-1', 'web-2', 'web-3'].map((pod) => tb.startServer(pod)));
  });

  after(() => tb.destroy());

  it('serves HTTP from a pod on one node to a pod on the other, showing the client pod IP', async () => {
    const r = await tb.exec({ pod: 'client' }, ['curl', '-sS', '--max-time', '5', `http://${tb.podIP('web-2')}:8080/`]);
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout) as { pod: string; peer: string; bytes: number };
    assert.equal(body.pod, 'web-2');
    assert.equal(body.peer.split(':')[0], tb.podIP('client'));
  });

  it('echoes TCP bytes across nodes with the tcp-client fixture', async () => {
    const r = await tb.exec({ pod: 'client' }, [process.execPath, fixturePath('tcp-client.mjs'), tb.podIP('web-3'), '9000', '200000']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual({ ...JSON.parse(r.stdout), localPort: 0 }, { sent: 200000, received: 200000, localPort: 0, error: null });
  });

  it('runs pod commands in the pod cgroup and node commands in none of the testbed cgroups', async () => {
    const pod = await tb.exec({ pod: 'web-1' }, ['cat', '/proc/self/cgroup']);
    assert.match(pod.stdout, new RegExp(`^0::.*/nodemesh-testbed-${tb.id}/n1/web-1$`, 'm'));
    const node = await tb.exec({ node: 'n1' }, ['cat', '/proc/self/cgroup']);
    assert.doesNotMatch(node.stdout, /nodemesh-testbed-/);
  });

  const connectFromNode = (node: string, host: string, port: number) =>
    tb.exec({ node }, [process.execPath, fixturePath('tcp-client.mjs'), host, String(port), '1']);

  it('lets a node reach the other node by InternalIP (a closed port answers with a reset)', async () => {
    const r = await connectFromNode('n1', tb.nodeIP('n2'), 9);
    assert.equal(JSON.parse(r.stdout).error, 'ECONNREFUSED', r.stderr);
  });

  it('fails a connection to an unredirected service VIP at once with "network unreachable"', async () => {
    const started = Date.now();
    const r = await connectFromNode('n1', '10.96.0.1', 80);
    assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms`);
    assert.notEqual(r.code, 0);
    assert.equal(JSON.parse(r.stdout).error, 'ENETUNREACH', r.stderr);
  });

  it('kills a command that outlives its timeout', async () => {
    const r = await tb.exec({ pod: 'client' }, ['sleep', '30'], { timeoutMs: 300 });
    assert.equal(r.timedOut, true);
    assert.notEqual(r.code, 0);
  });

  it('removes every netns and cgroup on destroy, and destroy is idempotent', async () => {
    const other = await Testbed.create({ nodes: [{ name: 'a', pods: [{ name: 'p', namespace: 'x' }] }, { name: 'b', pods: [] }, { name: 'c', pods: [] }] });
    await other.startServer('p');
    assert.ok(leftovers(other.id).length > 0);
    await other.destroy();
    await other.destroy();
    assert.deepEqual(leftovers(other.id), []);
  });

  it('leaves nothing behind when create fails halfway', async () => {
    // A stale netns with the name of the last pod makes `ip netns add` fail after the
    // cgroups and the other namespaces exist.
    const id = `f${process.pid % 100000}`;
    execFileSync('ip', ['netns', 'add', `nmt-${id}-p2`]);
    const spec = { nodes: [{ name: 'n1', pods: [{ name: 'p1', namespace: 'x' }] }, { name: 'n2', pods: [{ name: 'p2', namespace: 'x' }] }] };
    await assert.rejects(Testbed.create(spec, { id }), { code: 'NM_ERR_TESTBED_COMMAND', message: /nmt-.*-p2/ });
    assert.deepEqual(leftovers(id), []);
  });
});
