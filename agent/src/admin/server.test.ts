import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NodemeshError } from '../errors.js';
import { adminGet, adminStream } from './client.js';
import { AdminServer, NdjsonRoute } from './server.js';

async function started(routes: ConstructorParameters<typeof AdminServer>[0]) {
  const server = new AdminServer(routes);
  // Port 0 would need the address back; a fixed high port on loopback is enough for one test file.
  const address = { host: '127.0.0.1', port: 20000 + Math.floor(Math.random() * 20000) };
  await server.listen(address);
  return { server, address };
}

describe('admin API streams', () => {
  it('streams one JSON line per value and stops the source when the client goes away', async () => {
    const sends: Array<(v: unknown) => void> = [];
    let stops = 0;
    const { server, address } = await started({
      '/count': () => ({ n: sends.length }),
      '/feed': new NdjsonRoute((query, send) => {
        if (query.get('bad')) throw new NodemeshError('NM_ERR_CLI_ARGUMENT', '--bad is bad');
        sends.push(send);
        return () => (stops += 1);
      }),
    });
    try {
      const got: unknown[] = [];
      const stream = adminStream<{ i: number }>(address, '/feed', (v) => {
        got.push(v);
        if (got.length === 3) stream.stop();
      });
      while (sends.length === 0) await new Promise((r) => setTimeout(r, 5));
      for (let i = 0; i < 3; i++) sends[0]?.({ i });
      await stream.done;
      assert.deepEqual(got, [{ i: 0 }, { i: 1 }, { i: 2 }]);
      while (stops === 0) await new Promise((r) => setTimeout(r, 5));
      assert.equal(stops, 1);
      assert.deepEqual(await adminGet(address, '/count'), { n: 1 }, 'plain views still answer');
      await assert.rejects(adminStream(address, '/feed?bad=1', () => undefined).done, (e: unknown) => e instanceof NodemeshError && e.code === 'NM_ERR_CLI_ARGUMENT' && /--bad/.test(e.message));
    } finally {
      await server.close();
    }
  });

  it('tells the client when the agent ends the stream, and stops the source', async () => {
    let stopped = false;
    let opened = false;
    const { server, address } = await started({
      '/feed': new NdjsonRoute(() => {
        opened = true;
        return () => (stopped = true);
      }),
    });
    const stream = adminStream(address, '/feed', () => undefined);
    while (!opened) await new Promise((r) => setTimeout(r, 5));
    await server.close();
    await assert.rejects(stream.done, /ended the \/feed stream/);
    while (!stopped) await new Promise((r) => setTimeout(r, 5));
  });
});
