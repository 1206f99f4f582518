// `npm run soak`: the integrity suite at length. The mesh of test/integrity.test.ts (two nodes,
// every path), the checksumming client run over every path and variant in turn, batch after
// batch, until --requests requests in all; then lost, corrupted and misdelivered per path,
// which must all be 0 (exit 1 otherwise), with the bytes moved and the time taken.
// Flags: --requests N (default 1,000,000), --batch N (per path per turn, default 10,000),
// --max-bytes N (largest body each way, default 1 MiB), --concurrency N (default 32).
import { parseArgs } from 'node:util';
import { fixturePath, Testbed } from './testbed/testbed.js';
import { AgentProcess } from './testbed/agent.js';
import { integrityConfig, integrityPaths, type IntegrityResult } from './testbed/integrity.js';

const COUNTS = ['requests', 'ok', 'lost', 'corrupted', 'misdelivered', 'failed', 'expectedFailures'] as const;
type Totals = Record<(typeof COUNTS)[number] | 'bytes', number>;
const zero = (): Totals => ({ requests: 0, ok: 0, lost: 0, corrupted: 0, misdelivered: 0, failed: 0, expectedFailures: 0, bytes: 0 });

function add(into: Totals, counts: Pick<IntegrityResult, (typeof COUNTS)[number]>, bytes: number): void {
  for (const k of COUNTS) into[k] += counts[k];
  into.bytes += bytes;
}

function options(): { requests: number; batch: number; maxBytes: number; concurrency: number } {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '1000000' },
      batch: { type: 'string', default: '10000' },
      'max-bytes': { type: 'string', default: String(1 << 20) },
      concurrency: { type: 'string', default: '32' },
    },
  });
  const integer = (name: keyof typeof values, min: number, max: number): number => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`soak: --${name} must be an integer in [${min}, ${max}], got "${values[name]}"`);
    return n;
  };
  return { requests: integer('requests', 1, 1e9), batch: integer('batch', 1, 1e7), maxBytes: integer('max-bytes', 0, 64 << 20), concurrency: integer('concurrency', 1, 1024) };
}

async function main(): Promise<void> {
  const opts = options();
  const started = Date.now();
  const tb = await Testbed.create(integrityConfig.testbed);
  const agents = ['n1', 'n2'].map((node) => new AgentProcess(tb, node, ['--access-log', 'off']));
  const runs = integrityPaths.flatMap((p) => p.variants.map((v) => ({ p, v, name: `${p.name} ${v.name}` })));
  const totals = new Map<string, Totals>(runs.map((r) => [r.name, zero()]));
  const examples: unknown[] = [];
  let done = 0;
  try {
    await Promise.all(integrityConfig.backends.map((pod) => tb.startFixture(pod, 'integrity-backend.mjs', ['--port', '8080', '--grpc-port', '9090'])));
    const config = integrityConfig.write(tb);
    for (const agent of agents) await agent.start(config);
    while (done < opts.requests) {
      for (const { p, v, name } of runs) {
        const n = Math.min(opts.batch, opts.requests - done);
        if (n <= 0) break;
        const argv = [process.execPath, fixturePath('integrity-client.mjs'), '--url', p.url, '--protocol', p.protocol, '--requests', String(n), '--concurrency', String(opts.concurrency), '--max-bytes', String(opts.maxBytes), '--max-ms', '3600000', ...v.args];
        const r = await tb.exec({ pod: 'client' }, argv, { timeoutMs: 3_600_000 });
        if (r.code !== 0) throw new Error(`integrity-client on ${name} exited ${r.code}: ${r.stderr}`);
        const got = JSON.parse(r.stdout) as IntegrityResult;
        add(totals.get(name)!, got, got.bytesUp + got.bytesDown);
        examples.push(...got.examples.slice(0, Math.max(0, 20 - examples.length)));
        done += got.requests;
        for (const agent of agents) if (!agent.running) throw new Error(`agent on ${agent.node} exited:\n${agent.output.slice(-4000)}`);
      }
      process.stderr.write(`${done} requests after ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    }
  } finally {
    for (const agent of agents) await agent.remove().catch(() => undefined);
    await tb.destroy();
  }
  const all = zero();
  for (const t of totals.values()) add(all, t, t.bytes);
  const rows = [...totals].map(([name, t]) => `| ${name} | ${t.requests} | ${t.ok} | ${t.lost} | ${t.corrupted} | ${t.misdelivered} | ${t.failed} | ${(t.bytes / 2 ** 30).toFixed(2)} |`);
  process.stdout.write(
    [
      `| path | requests | ok | lost | corrupted | misdelivered | failed | GiB moved |`,
      `| --- | --- | --- | --- | --- | --- | --- | --- |`,
      ...rows,
      `| all | ${all.requests} | ${all.ok} | ${all.lost} | ${all.corrupted} | ${all.misdelivered} | ${all.failed} | ${(all.bytes / 2 ** 30).toFixed(2)} |`,
      '',
      `${all.requests} requests (${all.expectedFailures} with an injected fault that ended them), ${(all.bytes / 2 ** 30).toFixed(1)} GiB, ${((Date.now() - started) / 60000).toFixed(1)} min; bodies up to ${opts.maxBytes} bytes each way, ${opts.concurrency} at once`,
      ...(examples.length > 0 ? ['', `examples: ${JSON.stringify(examples)}`] : []),
    ].join('\n') + '\n',
  );
  if (all.lost + all.corrupted + all.misdelivered + all.failed > 0) process.exit(1);
}

main().catch((err: unknown) => {
  process.stderr.write(`soak failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
