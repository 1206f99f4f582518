// `npm run bench`: the cost of the mesh path. The same open-loop HTTP/1.1 load from a pod to a
// service on another node, once direct (no agent) and once through the mesh (eBPF capture,
// node proxy, HBONE mTLS tunnel to the other node's proxy), in one run;
// then closed-loop saturation with wrk. Writes bench-results/<time>.json and prints a table.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Testbed } from './testbed/testbed.js';
import { AgentProcess, FIXTURES } from './testbed/agent.js';
import { serviceDoc, testbedDocs, writeConfig } from './testbed/mesh-config.js';

const RATE = 1000;
const SECONDS = 10;
const CONNECTIONS = 16;
const ROUNDS = 3;
const VIP = '10.96.0.10';

interface OpenLoop {
  requests: number;
  ok: number;
  errors: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

interface Phase {
  openLoop: OpenLoop;
  saturationRps: number;
  agentCpuSecondsPer1000?: number;
  agentRssMiB?: number;
}

const cpuSeconds = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in USER_HZ (100)
};
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;

async function openLoop(tb: Testbed, url: string, rate: number, seconds: number): Promise<OpenLoop> {
  const r = await tb.exec({ pod: 'client' }, [process.execPath, path.join(FIXTURES, 'open-loop.mjs'), url, String(rate), String(seconds), String(CONNECTIONS)], {
    timeoutMs: (seconds + 20) * 1000,
  });
  if (r.code !== 0) throw new Error(`load generator failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as OpenLoop;
}

async function saturation(tb: Testbed, url: string): Promise<number> {
  const r = await tb.exec({ pod: 'client' }, ['wrk', '-t1', `-c${CONNECTIONS}`, '-d5s', url], { timeoutMs: 30_000 });
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1];
  if (r.code !== 0 || !rps) throw new Error(`wrk failed: ${r.stderr || r.stdout}`);
  return Number(rps);
}

/** With agents, also measures their CPU (summed: the source and the destination node both work) and largest RSS. */
async function phase(tb: Testbed, url: string, agents: AgentProcess[] = []): Promise<Phase> {
  await openLoop(tb, url, RATE, 2); // warm-up: connections, JIT
  const pids = agents.map((a) => a.pid).filter((p): p is number => p !== undefined);
  const cpuOfAll = () => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const cpuBefore = cpuOfAll();
  const result = await openLoop(tb, url, RATE, SECONDS);
  const cpu = pids.length > 0 ? cpuOfAll() - cpuBefore : undefined;
  const rss = pids.length > 0 ? Math.max(...pids.map(rssMiB)) : undefined;
  return {
    openLoop: result,
    saturationRps: await saturation(tb, url),
    ...(cpu !== undefined ? { agentCpuSecondsPer1000: (cpu / result.requests) * 1000 } : {}),
    ...(rss !== undefined ? { agentRssMiB: rss } : {}),
  };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

/** Median of each figure over the rounds: one noisy second on a shared 2-core machine must not set the result. */
function summarize(phases: Phase[]): Phase {
  const pick = (f: (p: Phase) => number | undefined) => median(phases.map(f).filter((v): v is number => v !== undefined));
  const summary: Phase = {
    openLoop: {
      requests: pick((p) => p.openLoop.requests),
      ok: pick((p) => p.openLoop.ok),
      errors: Math.max(...phases.map((p) => p.openLoop.errors)),
      p50: pick((p) => p.openLoop.p50),
      p90: pick((p) => p.openLoop.p90),
      p99: pick((p) => p.openLoop.p99),
      max: Math.max(...phases.map((p) => p.openLoop.max)),
    },
    saturationRps: pick((p) => p.saturationRps),
  };
  if (phases[0]?.agentCpuSecondsPer1000 !== undefined) {
    summary.agentCpuSecondsPer1000 = pick((p) => p.agentCpuSecondsPer1000);
    summary.agentRssMiB = Math.max(...phases.map((p) => p.agentRssMiB ?? 0));
  }
  return summary;
}

async function main(): Promise<void> {
  await Testbed.sweep();
  const dir = mkdtempSync(path.join(tmpdir(), 'nodemesh-bench-'));
  const tb = await Testbed.create({
    nodes: [
      { name: 'n1', pods: [{ name: 'client', namespace: 'bench', labels: { app: 'client' } }] },
      { name: 'n2', pods: [{ name: 'server', namespace: 'bench', labels: { app: 'server' } }] },
    ],
    namespaces: { bench: { 'nodemesh.io/mode': 'enabled' } },
  });
  const agents = ['n1', 'n2'].map((node) => new AgentProcess(tb, node));
  // Stopping alone would leave the pods captured (and refused): direct rounds need no capture at all.
  const removeAgents = async () => {
    for (const agent of agents) {
      await agent.remove();
    }
  };
  try {
    await tb.startServer('server');
    const config = path.join(dir, 'mesh.yaml');
    writeConfig(config, [
      ...testbedDocs(tb),
      serviceDoc({ name: 'server', namespace: 'bench', clusterIP: VIP, selector: { app: 'server' }, ports: [{ port: 80, targetPort: 8080 }] }),
    ]);
    const directRounds: Phase[] = [];
    const meshRounds: Phase[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      directRounds.push(await phase(tb, `http://${tb.podIP('server')}:8080/`));
      for (const agent of agents) await agent.start(config);
      meshRounds.push(await phase(tb, `http://${VIP}/`, agents));
      await removeAgents();
    }
    const direct = summarize(directRounds);
    const mesh = summarize(meshRounds);
    const results = {
      date: new Date().toISOString(),
      load: { rate: RATE, seconds: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, protocol: 'HTTP/1.1 keep-alive, open loop' },
      direct,
      mesh,
      addedP99Ms: mesh.openLoop.p99 - direct.openLoop.p99,
      rounds: { direct: directRounds, mesh: meshRounds },
    };
    mkdirSync('bench-results', { recursive: true });
    const file = path.join('bench-results', `${results.date.replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    const ms = (v: number) => `${v.toFixed(2)} ms`;
    const row = (name: string, p: Phase) =>
      `${name.padEnd(8)} ${ms(p.openLoop.p50).padStart(10)} ${ms(p.openLoop.p90).padStart(10)} ${ms(p.openLoop.p99).padStart(10)} ${String(p.openLoop.errors).padStart(7)} ${p.saturationRps.toFixed(0).padStart(9)}`;
    process.stdout.write(
      [
        `open loop ${RATE} rps × ${SECONDS} s, ${CONNECTIONS} keep-alive connections, pod on n1 → service on n2; median of ${ROUNDS} rounds`,
        `${'path'.padEnd(8)} ${'p50'.padStart(10)} ${'p90'.padStart(10)} ${'p99'.padStart(10)} ${'errors'.padStart(7)} ${'max rps'.padStart(9)}`,
        row('direct', direct),
        row('mtls', mesh),
        `added p99 at ${RATE} rps: ${ms(results.addedP99Ms)}`,
        `agents (n1 + n2): ${mesh.agentCpuSecondsPer1000?.toFixed(3)} CPU s per 1000 requests; largest RSS ${mesh.agentRssMiB?.toFixed(0)} MiB`,
        `results written to ${file}`,
      ].join('\n') + '\n',
    );
  } finally {
    await removeAgents();
    await tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
