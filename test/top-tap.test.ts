// `nodemesh top` and `nodemesh tap` end to end on the netns testbed: known HTTP traffic from a
// pod to a Service through the node proxy, then what an operator on that node sees: the JSON
// forms against the traffic sent, the human forms for layout (top in an 80-column tmux pane).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { Testbed } from '../scripts/testbed/testbed.js';
import { AgentProcess, CLI, FIXTURES } from '../scripts/testbed/agent.js';
import { serviceDoc, testbedDocs, writeConfig } from '../scripts/testbed/mesh-config.js';
import type { TopSnapshot } from '../agent/src/telemetry/request-stats.js';
import type { TapEvent } from '../agent/src/telemetry/tap.js';

const isRoot = process.getuid?.() === 0;
const hasTmux = spawnSync('tmux', ['-V']).status === 0;
const VIP = '10.96.0.10';

/** Lines a running CLI prints, as they come. */
class Lines {
  readonly all: string[] = [];
  #partial = '';

  constructor(child: ChildProcess) {
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      const parts = (this.#partial + chunk).split('\n');
      this.#partial = parts.pop() ?? '';
      this.all.push(...parts);
    });
  }
}

describe('nodemesh top and tap: live request views against known traffic', { skip: isRoot ? false : 'needs root: BPF, netns and cgroups' }, () => {
  let tb: Testbed;
  let agent: AgentProcess;

  const load = async (urlPath: string, requests: number) => {
    const r = await tb.exec(
      { pod: 'client' },
      [process.execPath, path.join(FIXTURES, 'http-load.mjs'), '--url', `http://${VIP}${urlPath}`, '--requests', String(requests), '--timeout-ms', '3000', '--max-ms', '20000'],
      { timeoutMs: 25_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { completed: number; statuses: Record<string, number> };
  };
  const curl = async (method: string, urlPath: string) => {
    const r = await tb.exec({ pod: 'client' }, ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', '-X', method, `http://${VIP}${urlPath}`]);
    assert.equal(r.code, 0, r.stderr);
    return Number(r.stdout);
  };
  /** Starts the CLI on the node, as an operator would in a shell there. */
  const spawnCli = (args: string[]) => tb.spawn({ node: 'n1' }, [process.execPath, CLI, ...args]);
  const stop = async (child: ChildProcess) => {
    if (child.exitCode !== null) return child.exitCode;
    const exited = once(child, 'exit');
    child.kill('SIGINT');
    await exited;
    return child.exitCode;
  };
  /** Sends `path` until the tap shows it (its start: the human form cuts it): the tap is then subscribed. Bounded. */
  const untilTapped = async (lines: Lines, method: string, urlPath: string) =>
    agent.until(`the tap to show ${method} ${urlPath}`, async () => {
      await curl(method, urlPath);
      await new Promise((r) => setTimeout(r, 100));
      return lines.all.some((l) => l.includes(urlPath.slice(0, 16))) ? true : undefined;
    }, 15_000);

  before(async () => {
    tb = await Testbed.create({
      nodes: [
        {
          name: 'n1',
          pods: [
            { name: 'client', namespace: 'shop', labels: { app: 'client' } },
            { name: 'web-1', namespace: 'shop', labels: { app: 'web' } },
          ],
        },
      ],
      namespaces: { shop: { 'nodemesh.io/mode': 'enabled' } },
    });
    await tb.startFixture('web-1', 'http-backend.mjs', ['--port', '8080', '--name', 'web-1']);
    const configFile = path.join(tb.scratchDir, 'mesh.yaml');
    writeConfig(configFile, [
      ...testbedDocs(tb),
      serviceDoc({ name: 'web', namespace: 'shop', clusterIP: VIP, selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
    ]);
    agent = new AgentProcess(tb, 'n1', ['--access-log', 'off']);
    await agent.start(configFile);
  });

  after(async () => {
    try {
      await agent?.remove();
    } finally {
      await tb?.destroy();
    }
  });

  it('top --json: 50 × 200 and 10 × 503 to shop/web show as 60 requests at 83.3 % success, with latencies', async () => {
    assert.deepEqual((await load('/ok', 50)).statuses, { 200: 50 });
    assert.deepEqual((await load('/status/503', 10)).statuses, { 503: 10 });
    // The first snapshot comes at once; the window (10 s) still holds all 60.
    const r = await tb.exec({ node: 'n1' }, ['timeout', '--preserve-status', '-s', 'INT', '1.5', process.execPath, CLI, 'top', '--json', '--namespace', 'shop']);
    assert.equal(r.code, 0, r.stderr);
    const snapshots = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as TopSnapshot);
    assert.ok(snapshots.length >= 1 && snapshots.length <= 3, `${snapshots.length} snapshots`);
    const first = snapshots[0] as TopSnapshot;
    assert.equal(first.windowSeconds, 10);
    // Both ends of the same requests: the source's row and the destination's (web-1 is local).
    assert.deepEqual(first.services.map((s) => [s.reporter, s.service]).sort(), [['destination', 'shop/web'], ['source', 'shop/web']]);
    assert.equal(first.services.find((s) => s.reporter === 'destination')?.requests, 60);
    const web = first.services.find((s) => s.reporter === 'source');
    assert.equal(web?.requests, 60);
    assert.equal(web?.successRate, 0.8333);
    assert.ok((web?.rps ?? 0) > 0);
    assert.ok(web?.latencyMs && web.latencyMs.p50 > 0 && web.latencyMs.p50 <= web.latencyMs.p95 && web.latencyMs.p95 <= web.latencyMs.p99, JSON.stringify(web));
    assert.deepEqual(web?.routes, []);
    const other = await tb.exec({ node: 'n1' }, ['timeout', '--preserve-status', '-s', 'INT', '1.5', process.execPath, CLI, 'top', '--json', '--namespace', 'elsewhere']);
    assert.deepEqual((JSON.parse(other.stdout.split('\n')[0] as string) as TopSnapshot).services, []);
  });

  it('tap --json: each matching request as one line, with method, path, status, source and destination; the rest left out', async () => {
    const tap = spawnCli(['tap', '--json', '--to', 'web', '--path', '/status/']);
    const lines = new Lines(tap);
    try {
      await untilTapped(lines, 'GET', '/status/202');
      const before = lines.all.length;
      const sent: Array<[string, string, number]> = [
        ['GET', '/status/200', 200],
        ['POST', '/status/503', 503],
        ['GET', '/elsewhere', 200],
        ['DELETE', '/status/404', 404],
        ['GET', '/status/201?x=1', 201],
      ];
      for (const [method, urlPath, status] of sent) assert.equal(await curl(method, urlPath), status);
      const want = sent.filter(([, p]) => p.startsWith('/status/'));
      // Each request is tapped at both ends: the source's proxy and the destination's.
      const all = await agent.until(`${2 * want.length} tap lines`, async () => {
        const got = lines.all.slice(before).map((l) => JSON.parse(l) as TapEvent);
        return got.length >= 2 * want.length ? got : undefined;
      });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(lines.all.length - before, 2 * want.length, 'nothing else passed the filters');
      const events = all.filter((e) => e.reporter === 'source');
      assert.deepEqual(events.map((e) => [e.method, e.path, e.status]), want);
      assert.deepEqual(all.filter((e) => e.reporter === 'destination').map((e) => [e.method, e.path, e.status]), want);
      for (const e of events) {
        assert.equal(e.authority, VIP);
        assert.equal(e.source.pod, 'shop/client');
        assert.equal(e.destination.service, 'shop/web');
        assert.equal(e.destination.endpoint?.pod, 'shop/web-1');
        assert.equal(e.grpcStatus, null);
        assert.equal(e.responseFlags, '-');
        assert.ok(e.latencyMs > 0 && !Number.isNaN(Date.parse(e.time)));
      }
    } finally {
      assert.equal(await stop(tap), 0, 'Ctrl-C ends the tap cleanly');
    }
  });

  it('tap --max-rps caps what one subscriber gets; a bad flag is refused by name', async () => {
    const tap = spawnCli(['tap', '--json', '--path', '/burst', '--max-rps', '2']);
    const lines = new Lines(tap);
    try {
      await untilTapped(lines, 'GET', '/burst/warm');
      await new Promise((r) => setTimeout(r, 1000));
      const before = lines.all.length;
      const started = Date.now();
      assert.deepEqual((await load('/burst/x', 100)).statuses, { 200: 100 });
      await new Promise((r) => setTimeout(r, 300));
      const seconds = (Date.now() - started) / 1000;
      const got = lines.all.length - before;
      // A burst of 2 then 2 a second.
      assert.ok(got >= 1 && got <= 2 + Math.ceil(2 * seconds), `${got} lines in ${seconds} s at --max-rps 2`);
    } finally {
      await stop(tap);
    }
    const bad = await agent.cli(['tap', '--max-rps', 'fast']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--max-rps.*"fast".*NM_ERR_CLI_ARGUMENT/);
    const badPath = await agent.cli(['tap', '--path', 'api']);
    assert.match(badPath.stderr, /--path.*"api"/);
  });

  it('tap, human form: a header, then one aligned line per request within 80 columns, no colour off a terminal', async () => {
    const tap = spawnCli(['tap', '--to', 'shop/web']);
    const lines = new Lines(tap);
    try {
      await untilTapped(lines, 'PATCH', '/a/rather/long/path/that/will/not/fit/in/eighty/columns/at/all?q=1');
    } finally {
      await stop(tap);
    }
    const [head, ...rows] = lines.all;
    assert.match(head as string, /^TIME\s+DIR\s+METHOD\s+STATUS\s+LATENCY\s+SOURCE\s+DESTINATION\s+REQUEST$/);
    assert.ok(rows.length >= 1);
    for (const row of rows) {
      assert.ok(row.length <= 80, `${row.length} columns: ${row}`);
      assert.doesNotMatch(row, /\x1b\[/);
      assert.match(row, /^\d\d:\d\d:\d\d (in |out) PATCH\s+200\s+\S+ shop\/client shop\/web\s+\/a\/rather\/long\/path.*…$/);
      assert.equal(row.indexOf('shop/client'), (head as string).indexOf('SOURCE'));
    }
  });

  it('top, human form: in an 80-column terminal, redrawn in place, every line fits', { skip: hasTmux ? false : 'tmux missing' }, async () => {
    const socket = `nodemesh-${tb.id}`;
    const tmux = (...args: string[]) => spawnSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
    await load('/ok', 20);
    const started = tmux('new-session', '-d', '-s', 'top', '-x', '80', '-y', '24', 'nsenter', `--net=${tb.netnsPath('n1')}`, '--', process.execPath, CLI, 'top');
    assert.equal(started.status, 0, started.stderr);
    try {
      const screen = await agent.until('top to draw shop/web', async () => {
        const pane = tmux('capture-pane', '-p', '-t', 'top');
        return pane.stdout.includes('shop/web') ? pane.stdout : undefined;
      });
      const lines = screen.split('\n');
      for (const l of lines) assert.ok(l.length <= 80, `${l.length} columns: ${l}`);
      assert.match(lines[0] as string, /services, last 10s, every 1s; Ctrl-C to stop/);
      assert.match(lines[1] as string, /^DIR\s+SERVICE\s+RPS\s+SUCCESS\s+P50\s+P95\s+P99\s+CONNS$/);
      // One row per reporter: in (destination, no connection count) and out (source).
      const rows = lines.slice(2, 4).sort();
      assert.match(rows[0] as string, /^in\s+shop\/web\s+\d+(\.\d)?\s+\d+(\.\d)?%\s+\S+ms\s+\S+\s+\S+\s+-$/);
      assert.match(rows[1] as string, /^out\s+shop\/web\s+\d+(\.\d)?\s+\d+(\.\d)?%\s+\S+ms\s+\S+\s+\S+\s+\d+$/);
      for (const row of rows) assert.equal(row?.indexOf('shop/web'), lines[1]?.indexOf('SERVICE'));
    } finally {
      tmux('kill-server');
    }
  });
});
