// The demo: two nodes, an unchanged client pod calling a Service served on its own node and
// one served on the other node, through the eBPF capture and the node proxies; then each
// node's `nodemesh flows`. Everything it builds is removed at the end, also on failure.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Testbed } from './testbed/testbed.js';
import { AgentProcess } from './testbed/agent.js';
import { serviceDoc, testbedDocs, writeConfig } from './testbed/mesh-config.js';

const bold = (text: string) => (process.stdout.isTTY ? `\x1b[1m${text}\x1b[0m` : text);
const say = (text: string) => process.stdout.write(`\n${bold(`== ${text}`)}\n`);

async function main(): Promise<void> {
  await Testbed.sweep();
  const dir = mkdtempSync(path.join(tmpdir(), 'nodemesh-demo-'));
  const tb = await Testbed.create({
    nodes: [
      { name: 'node-1', pods: [{ name: 'client', namespace: 'shop', labels: { app: 'client' } }, { name: 'cart-1', namespace: 'shop', labels: { app: 'cart' } }] },
      { name: 'node-2', pods: [{ name: 'catalog-1', namespace: 'shop', labels: { app: 'catalog' } }] },
    ],
    namespaces: { shop: { 'nodemesh.io/mode': 'enabled' } },
  });
  const agents: AgentProcess[] = [];
  try {
    say('testbed: 2 nodes, 3 pods in namespace "shop" (labelled nodemesh.io/mode=enabled)');
    for (const pod of ['client', 'cart-1', 'catalog-1']) process.stdout.write(`  pod ${pod.padEnd(10)} ${tb.podIP(pod)}\n`);
    await Promise.all(['cart-1', 'catalog-1'].map((p) => tb.startServer(p)));
    const config = path.join(dir, 'mesh.yaml');
    writeConfig(config, [
      ...testbedDocs(tb),
      serviceDoc({ name: 'cart', namespace: 'shop', clusterIP: '10.96.0.10', selector: { app: 'cart' }, ports: [{ port: 80, targetPort: 8080 }] }),
      serviceDoc({ name: 'catalog', namespace: 'shop', clusterIP: '10.96.0.20', selector: { app: 'catalog' }, ports: [{ port: 80, targetPort: 8080 }] }),
    ]);
    for (const node of ['node-1', 'node-2']) {
      const agent = new AgentProcess(tb, node);
      agents.push(agent);
      await agent.start(config);
    }
    say('agents running on node-1 and node-2; services cart=10.96.0.10 (node-1), catalog=10.96.0.20 (node-2)');
    for (const [service, url] of [['cart (same node)', 'http://10.96.0.10/'], ['catalog (other node)', 'http://10.96.0.20/']]) {
      const r = await tb.exec({ pod: 'client' }, ['curl', '-sS', '--max-time', '5', url as string]);
      if (r.code !== 0) throw new Error(`curl ${url} from pod client failed: ${r.stderr}`);
      process.stdout.write(`  client → ${service}: ${r.stdout.trim()}\n`);
    }
    for (const agent of agents) {
      say(`nodemesh flows   (on ${agent.node})`);
      process.stdout.write((await agent.cli(['flows'])).stdout);
    }
  } finally {
    for (const agent of agents) {
      await agent.remove();
    }
    await tb.destroy();
    rmSync(dir, { recursive: true, force: true });
    say('cleaned up: namespaces, cgroups and pinned programs removed');
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
