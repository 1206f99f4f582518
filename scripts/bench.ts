// `npm run bench`: the cost of the mesh path. From a client pod on node 1 to a backend pod on
// node 2, the same loads direct (no agent, no capture) and through the mesh (eBPF capture,
// node 1's proxy, HBONE mTLS to node 2's proxy, the pod): HTTP/1.1 relayed as opaque TCP
// (L4), HTTP/1.1 and HTTP/2 terminated and proxied per request (L7). For each: open-loop
// latency at a fixed rate, then closed-loop throughput (wrk, h2load), and the agents' CPU.
// The L7 paths run twice, with the agents' default telemetry (request metrics and an access
// log line per request) and with a second pair of agents started with both off: the difference
// is what telemetry costs. The anchor, measured in the same run: the same HTTP/1.1 hop through
// a pair of HAProxy processes (one thread each, TLS 1.3 with certificates both ways).
// Median of rounds; writes bench-results/<time>.json and prints a Markdown table.
// Flags: --quick (one short round, to check the benchmark), --rounds N, --seconds N, --rate R.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Testbed, fixturePath } from './testbed/testbed.js';
import { AgentProcess } from './testbed/agent.js';
import { serviceDoc, testbedDocs, writeConfig } from './testbed/mesh-config.js';
import { haproxyUrl, startHaproxyPair } from './bench/haproxy.js';
import { readOptions, type BenchOptions } from './bench/options.js';
import { H2LOAD_CONNECTIONS, H2LOAD_STREAMS, OPEN_LOOP_CONNECTIONS, WRK_CONNECTIONS, openLoop, saturate } from './bench/load.js';
import { overhead, summarize, table, type Measurement, type PathSpec, type Summary, type Telemetry } from './bench/report.js';

const BACKEND_PORT = 8080;
/** Service port declared `appProtocol: tcp`: the proxy skips detection and relays bytes (L4). */
const L4_VIP = '10.96.0.10';
/** Service port without appProtocol: the proxy detects HTTP/1.1 or HTTP/2 from the first bytes and terminates it (L7). */
const L7_VIP = '10.96.0.11';
const BACKEND_READY_MS = 10_000;

interface BenchPath extends PathSpec {
  url: (tb: Testbed) => string;
}

/** The agents' flags for each telemetry setting: the defaults, or no metrics and no access log. */
const AGENT_ARGS: Record<Telemetry, string[]> = { on: [], off: ['--metrics', 'off', '--access-log', 'off'] };

const direct = (tb: Testbed) => `http://${tb.podIP('server')}:${BACKEND_PORT}/`;
// Printed in this order: each protocol's direct row first, then the mesh rows compared to it.
const l4 = () => `http://${L4_VIP}/`;
const l7 = () => `http://${L7_VIP}/`;
const L7_LABEL = 'mesh L7 (per request, HBONE mTLS)';
const PATHS: BenchPath[] = [
  { id: 'direct-h1', protocol: 'h1', label: 'direct', url: direct },
  { id: 'haproxy-h1', protocol: 'h1', label: 'HAProxy pair (HTTP mode, TLS 1.3 mTLS)', anchor: true, baseline: 'direct-h1', url: haproxyUrl },
  { id: 'mesh-l4-h1', protocol: 'h1', label: 'mesh L4 (TCP relay, HBONE mTLS)', telemetry: 'on', baseline: 'direct-h1', url: l4 },
  { id: 'mesh-l7-h1', protocol: 'h1', label: L7_LABEL, telemetry: 'on', baseline: 'direct-h1', url: l7 },
  { id: 'mesh-l7-h1-off', protocol: 'h1', label: L7_LABEL, telemetry: 'off', baseline: 'direct-h1', telemetryOn: 'mesh-l7-h1', url: l7 },
  { id: 'direct-h2', protocol: 'h2', label: 'direct', url: direct },
  { id: 'mesh-l7-h2', protocol: 'h2', label: L7_LABEL, telemetry: 'on', baseline: 'direct-h2', url: l7 },
  { id: 'mesh-l7-h2-off', protocol: 'h2', label: L7_LABEL, telemetry: 'off', baseline: 'direct-h2', telemetryOn: 'mesh-l7-h2', url: l7 },
];

const cpuSeconds = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in USER_HZ (100)
};
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;

/** CPU seconds each node's proxy process spends while `work` runs, per 1000 of the requests it reports. */
async function withCpu<T extends { requests: number }>(pids: number[], work: () => Promise<T>) {
  const before = pids.map(cpuSeconds);
  const result = await work();
  const per1000 = pids.map((pid, i) => ((cpuSeconds(pid) - (before[i] as number)) / result.requests) * 1000);
  return { result, cpu: { n1: per1000[0] as number, n2: per1000[1] as number } };
}

/** `proxies`: the processes of the path on n1 and n2 (agents or HAProxy), none for a direct path. */
async function measure(tb: Testbed, p: BenchPath, opts: BenchOptions, proxies: { pids: number[]; agents: boolean } | undefined): Promise<Measurement> {
  const url = p.url(tb);
  await openLoop(tb, url, p.protocol, opts.rate, opts.warmUpSeconds);
  if (!proxies) {
    return {
      openLoop: await openLoop(tb, url, p.protocol, opts.rate, opts.openLoopSeconds),
      saturation: await saturate(tb, url, p.protocol, opts.saturationSeconds),
    };
  }
  const open = await withCpu(proxies.pids, () => openLoop(tb, url, p.protocol, opts.rate, opts.openLoopSeconds));
  const saturation = await withCpu(proxies.pids, () => saturate(tb, url, p.protocol, opts.saturationSeconds));
  return {
    openLoop: open.result,
    saturation: saturation.result,
    agentCpuPer1000: open.cpu,
    agentCpuPer1000AtSaturation: saturation.cpu,
    ...(proxies.agents ? { agentRssMiB: Math.max(...proxies.pids.map(rssMiB)) } : {}),
  };
}

const pidsOf = (agents: AgentProcess[]): number[] =>
  agents.map((a) => {
    if (a.pid === undefined) throw new Error(`the agent on ${a.node} is not running`);
    return a.pid;
  });

/** The backend answers HTTP/1.1 and HTTP/2 prior knowledge on one port. */
async function startBackend(tb: Testbed): Promise<ChildProcess> {
  const child = tb.spawn({ pod: 'server' }, [process.execPath, fixturePath('http-backend.mjs'), '--port', String(BACKEND_PORT), '--name', 'server']);
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const deadline = Date.now() + BACKEND_READY_MS;
  while (!/^ready$/m.test(output)) {
    if (child.exitCode !== null) throw new Error(`http-backend exited ${child.exitCode}: ${output}`);
    if (Date.now() > deadline) throw new Error(`http-backend not ready within ${BACKEND_READY_MS} ms: ${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

/** A generous ceiling on the whole run: each load is bounded too, this catches anything else. */
function deadlineMs(opts: BenchOptions): number {
  const perPath = opts.warmUpSeconds + opts.openLoopSeconds + opts.saturationSeconds + 15;
  return (opts.rounds * (PATHS.length * perPath + 60) + 60) * 1000;
}

async function main(): Promise<void> {
  const opts = readOptions(process.argv.slice(2), process.env);
  const started = Date.now();
  // process.exit runs the testbed's exit hook, which kills its processes and removes it.
  const limit = deadlineMs(opts);
  setTimeout(() => {
    process.stderr.write(`bench failed: not done within ${limit / 1000} s; testbed removed\n`);
    process.exit(1);
  }, limit).unref();
  // No Testbed.sweep(): it would also remove testbeds that tests run beside the benchmark.
  const tb = await Testbed.create({
    nodes: [
      { name: 'n1', pods: [{ name: 'client', namespace: 'bench', labels: { app: 'client' } }] },
      { name: 'n2', pods: [{ name: 'server', namespace: 'bench', labels: { app: 'server' } }] },
    ],
    namespaces: { bench: { 'nodemesh.io/mode': 'enabled' } },
  });
  // One pair of agents per telemetry setting, never both at once (they pin to the same place).
  const agentPairs = {
    on: ['n1', 'n2'].map((node) => new AgentProcess(tb, node, AGENT_ARGS.on)),
    off: ['n1', 'n2'].map((node) => new AgentProcess(tb, node, AGENT_ARGS.off)),
  };
  // Stopping alone would leave the pods captured (and refused): direct rounds need no capture at all.
  const removeAgents = async (agents: AgentProcess[]) => {
    for (const agent of agents) await agent.remove();
  };
  try {
    await startBackend(tb);
    const config = path.join(tb.scratchDir, 'mesh.yaml');
    const backend = { namespace: 'bench', selector: { app: 'server' } };
    writeConfig(config, [
      ...testbedDocs(tb),
      serviceDoc({ ...backend, name: 'server-tcp', clusterIP: L4_VIP, ports: [{ port: 80, targetPort: BACKEND_PORT, appProtocol: 'tcp' }] }),
      serviceDoc({ ...backend, name: 'server', clusterIP: L7_VIP, ports: [{ port: 80, targetPort: BACKEND_PORT }] }),
    ]);
    const rounds = new Map<string, Measurement[]>(PATHS.map((p) => [p.id, []]));
    for (let round = 0; round < opts.rounds; round++) {
      for (const p of PATHS.filter((x) => x.telemetry === undefined && !x.anchor)) rounds.get(p.id)?.push(await measure(tb, p, opts, undefined));
      const haproxy = await startHaproxyPair(tb, `${tb.podIP('server')}:${BACKEND_PORT}`);
      try {
        for (const p of PATHS.filter((x) => x.anchor)) rounds.get(p.id)?.push(await measure(tb, p, opts, { pids: haproxy.pids, agents: false }));
      } finally {
        await haproxy.stop();
      }
      // Alternating which pair goes first keeps a drift of the machine out of the difference.
      for (const telemetry of round % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
        const agents = agentPairs[telemetry];
        for (const agent of agents) await agent.start(config);
        for (const p of PATHS.filter((x) => x.telemetry === telemetry)) rounds.get(p.id)?.push(await measure(tb, p, opts, { pids: pidsOf(agents), agents: true }));
        await removeAgents(agents);
      }
      process.stderr.write(`round ${round + 1}/${opts.rounds} done after ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    }
    const summaries = new Map<string, Summary>([...rounds].map(([id, ms]) => [id, summarize(ms)]));
    const markdown = table(PATHS, summaries);
    const telemetryCost = overhead(PATHS, summaries);
    const rss = Math.max(...[...summaries.values()].map((s) => s.agentRssMiB ?? 0));
    const load = {
      rate: opts.rate,
      openLoopSeconds: opts.openLoopSeconds,
      saturationSeconds: opts.saturationSeconds,
      rounds: opts.rounds,
      openLoop: `http-load.mjs, ${OPEN_LOOP_CONNECTIONS} HTTP/1.1 keep-alive connections or 1 HTTP/2 connection`,
      saturation: `wrk -t1 -c${WRK_CONNECTIONS}; h2load -t1 -c${H2LOAD_CONNECTIONS} -m${H2LOAD_STREAMS}`,
    };
    const results = {
      date: new Date().toISOString(),
      quick: opts.quick,
      load,
      summaries: Object.fromEntries(summaries),
      rounds: Object.fromEntries(rounds),
      table: markdown,
      telemetryOverhead: telemetryCost,
      agentArgs: AGENT_ARGS,
      seconds: Math.round((Date.now() - started) / 1000),
    };
    mkdirSync('bench-results', { recursive: true });
    const file = path.join('bench-results', `${results.date.replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    process.stdout.write(
      [
        `client pod on n1 → backend pod on n2; open loop ${opts.rate} req/s × ${opts.openLoopSeconds} s (${OPEN_LOOP_CONNECTIONS} keep-alive connections for HTTP/1.1, 1 for HTTP/2);`,
        `max req/s: wrk -c${WRK_CONNECTIONS} (HTTP/1.1), h2load -c${H2LOAD_CONNECTIONS} -m${H2LOAD_STREAMS} (HTTP/2), ${opts.saturationSeconds} s; median of ${opts.rounds} round(s)${opts.quick ? ' (--quick: not for publishing)' : ''}`,
        '',
        markdown,
        '',
        'telemetry overhead (request metrics + access log `all`, on minus off):',
        '',
        telemetryCost,
        '',
        `largest agent RSS ${rss.toFixed(0)} MiB; run took ${results.seconds} s; results written to ${file}`,
      ].join('\n') + '\n',
    );
  } finally {
    await removeAgents([...agentPairs.on, ...agentPairs.off]);
    await tb.destroy();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
