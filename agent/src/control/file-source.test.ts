import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import { NodemeshError } from '../errors.js';
import type { MeshState } from '../state/model.js';
import { FileSource } from './file-source.js';

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger whose JSON lines the test can read. */
function captureLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { log: pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) }), lines };
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

const config = (port: number | string): string => `
apiVersion: v1
kind: Node
metadata: { name: node-1 }
status: { addresses: [{ type: InternalIP, address: 10.0.0.1 }] }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { clusterIP: 10.96.0.10, ports: [{ port: ${port} }] }
`;

describe('FileSource', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'nodemesh-file-source-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('emits the state at start, reloads on change, and keeps the last good state when the file breaks', async (t) => {
    const path = join(dir, 'mesh.yaml');
    writeFileSync(path, config(80));
    const { log, lines } = captureLog();
    const states: MeshState[] = [];
    const source = new FileSource(path, { node: 'node-1', log, onState: (s) => states.push(s), debounceMs: 20 });
    t.after(() => source.stop());
    await source.start();
    assert.equal(states.length, 1);
    assert.equal(states[0]?.services.get('default/web')?.ports[0]?.port, 80);

    // Editors replace the file by rename; the watch on the directory still sees it.
    writeFileSync(`${path}.tmp`, config(8080));
    renameSync(`${path}.tmp`, path);
    await waitFor('the reload after a rename', () => states.length === 2);
    assert.equal(states[1]?.version, 2);
    assert.equal(states[1]?.services.get('default/web')?.ports[0]?.port, 8080);

    writeFileSync(path, 'apiVersion: v1\nkind: [Service\n');
    await waitFor('the YAML error to be logged', () => lines.some((l) => l.code === 'NM_ERR_CONFIG_YAML'));
    const error = lines.find((l) => l.code === 'NM_ERR_CONFIG_YAML');
    assert.equal(error?.level, 50);
    assert.equal(error?.msg, 'configuration not applied; the last good configuration stays in force');
    assert.match(String(error?.err), new RegExp(`^${path}:3:1: invalid YAML`));
    assert.equal(states.length, 2, 'a broken file is not emitted');
    assert.equal(source.state?.services.get('default/web')?.ports[0]?.port, 8080);

    // A rejected resource keeps its last good version, and the rejection is logged at warn.
    writeFileSync(path, config(70000));
    await waitFor('the reload with a rejection', () => states.length === 3);
    assert.equal(states[2]?.version, 2, 'nothing accepted changed');
    assert.equal(states[2]?.services.get('default/web')?.ports[0]?.port, 8080);
    const warning = lines.find((l) => l.level === 40);
    assert.deepEqual(
      { resource: warning?.resource, field: warning?.field, reason: warning?.reason },
      { resource: 'Service default/web', field: 'spec.ports[0].port', reason: 'must be an integer between 1 and 65535, got number 70000' },
    );
  });

  it('refuses to start with a file that cannot be read or parsed', async () => {
    const { log } = captureLog();
    const onState = (): void => assert.fail('nothing must be emitted');
    const missing = new FileSource(join(dir, 'absent.yaml'), { node: 'node-1', log, onState });
    await assert.rejects(missing.start(), (err: unknown) => err instanceof NodemeshError && err.code === 'NM_ERR_CONFIG_READ');

    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, 'kind: Service\n  ports: [\n');
    const source = new FileSource(broken, { node: 'node-1', log, onState });
    await assert.rejects(source.start(), (err: unknown) => err instanceof NodemeshError && err.code === 'NM_ERR_CONFIG_YAML');
  });
});
