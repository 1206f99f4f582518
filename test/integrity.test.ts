// The integrity suite: no byte mixed, lost or leaked between requests or connections, on
// every path (L4 and L7, same node and cross node, HTTP/1.1, HTTP/2 and gRPC, with retries
// and mirrors, keep-alive and not) under concurrency, with upstream resets, slow peers and
// clients that give up mixed in. A checksumming client (integrity-client.mjs) in a pod talks
// through real agents to a checksumming backend (integrity-backend.mjs) in a pod; every
// answer must be the one to its own request, whole. `npm run soak` runs the same at length.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fixturePath, Testbed } from '../scripts/testbed/testbed.js';
import { AgentProcess } from '../scripts/testbed/agent.js';
import { integrityPaths, integrityConfig, type IntegrityPath, type IntegrityResult } from '../scripts/testbed/integrity.js';

const isRoot = process.getuid?.() === 0;
/** Requests per path and variant in CI; `npm run soak` raises it. */
const REQUESTS = Number(process.env.NODEMESH_INTEGRITY_REQUESTS ?? 1500);

describe('integrity: every answer is its own request\'s, whole, on every path', { skip: !isRoot && 'needs root (netns, cgroup, BPF)' }, () => {
  let tb: Testbed;
  const agents: AgentProcess[] = [];

  before(async () => {
    tb = await Testbed.create(integrityConfig.testbed);
    await Promise.all(integrityConfig.backends.map((pod) => tb.startFixture(pod, 'integrity-backend.mjs', ['--port', '8080', '--grpc-port', '9090'])));
    const configFile = integrityConfig.write(tb);
    for (const node of ['n1', 'n2']) {
      const agent = new AgentProcess(tb, node, ['--access-log', 'off']);
      agents.push(agent);
      await agent.start(configFile);
    }
  });

  after(async () => {
    for (const agent of agents) await agent.remove().catch(() => undefined);
    await tb?.destroy();
  });

  const run = async (p: IntegrityPath, extra: string[]): Promise<IntegrityResult> => {
    const argv = [process.execPath, fixturePath('integrity-client.mjs'), '--url', p.url, '--protocol', p.protocol, '--requests', String(REQUESTS), ...extra];
    const r = await tb.exec({ pod: 'client' }, argv, { timeoutMs: 240_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as IntegrityResult;
  };

  for (const p of integrityPaths) {
    for (const variant of p.variants) {
      it(`${p.name} ${variant.name}: 0 lost, 0 corrupted, 0 misdelivered`, async () => {
        const r = await run(p, variant.args);
        const summary = JSON.stringify(r);
        for (const agent of agents) assert.ok(agent.running, `agent on ${agent.node} exited:\n${agent.output.slice(-4000)}`);
        assert.equal(r.misdelivered, 0, `answers to another request: ${summary}`);
        assert.equal(r.corrupted, 0, `broken bodies: ${summary}`);
        assert.equal(r.lost, 0, `lost requests: ${summary}`);
        assert.equal(r.failed, 0, `failed requests: ${summary}`);
        assert.equal(r.ok + r.expectedFailures, REQUESTS, summary);
        // A tenth of the requests ask for faults, and only some of those may fail.
        assert.ok(r.ok >= REQUESTS * 0.85, summary);
      });
    }
  }
});
