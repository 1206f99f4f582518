// Does a long-running agent keep memory across configuration reloads? One node of the netns
// testbed, a standalone agent following a file of --pods pods (on another node, so they need
// no cgroup) in --namespaces namespaces, the file rewritten --reloads times (each time one pod
// label changes, so each is a new version); the agent's RSS after the first load and after the
// last, and the ratio. Run as root: node dist/scripts/reload-memory.js [--reloads 1000]
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Testbed } from './testbed/testbed.js';
import { AgentProcess } from './testbed/agent.js';
import { testbedDocs, writeConfig, type Doc } from './testbed/mesh-config.js';

const { values } = parseArgs({ options: { reloads: { type: 'string', default: '1000' }, pods: { type: 'string', default: '5000' }, namespaces: { type: 'string', default: '50' } } });
const reloads = Number(values.reloads);
const podCount = Number(values.pods);
const namespaceCount = Number(values.namespaces);

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;

function docs(tb: Testbed, generation: number): Doc[] {
  const out: Doc[] = [
    ...testbedDocs(tb),
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'far' }, status: { addresses: [{ type: 'InternalIP', address: '10.99.0.1' }] } },
  ];
  for (let n = 0; n < namespaceCount; n++) {
    out.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns${n}`, labels: { 'nodemesh.io/mode': 'enabled' } } });
    out.push({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: `ns${n}` }, spec: { clusterIP: `10.97.${n >> 8}.${n & 255}`, selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } });
  }
  for (let i = 0; i < podCount; i++) {
    const labels = { app: 'web', ...(i === 0 ? { generation: String(generation) } : {}) };
    out.push({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `web-${i}`, namespace: `ns${i % namespaceCount}`, labels }, spec: { nodeName: 'far' }, status: { podIP: `10.98.${i >> 8}.${i & 255}` } });
  }
  return out;
}

async function main(): Promise<void> {
  const tb = await Testbed.create({ nodes: [{ name: 'n1', pods: [] }] });
  const agent = new AgentProcess(tb, 'n1', ['--access-log', 'off']);
  try {
    const file = path.join(tb.scratchDir, 'mesh.yaml');
    writeConfig(file, docs(tb, 0));
    await agent.start(file);
    const first = rssMiB(agent.pid!);
    const started = Date.now();
    for (let g = 1; g <= reloads; g++) {
      writeConfig(file, docs(tb, g));
      await agent.waitFor(`"version":${g + 1},`, 60_000);
    }
    const last = rssMiB(agent.pid!);
    process.stdout.write(`${podCount} pods in ${namespaceCount} namespaces, ${reloads} reloads in ${((Date.now() - started) / 1000).toFixed(0)} s: agent RSS ${first.toFixed(0)} MiB after the first load, ${last.toFixed(0)} MiB after the last (${((last / first - 1) * 100).toFixed(0)} %)\n`);
  } finally {
    await agent.remove().catch(() => undefined);
    await tb.destroy();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`reload-memory failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
