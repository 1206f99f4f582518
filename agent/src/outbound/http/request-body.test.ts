import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { RequestBody } from './request-body.js';

/** A sink that records what it was sent and whether it was ended. */
function sink(): { stream: Writable; text(): string; ended(): boolean } {
  const chunks: Buffer[] = [];
  let ended = false;
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk);
      done();
    },
    final(done) {
      ended = true;
      done();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString(), ended: () => ended };
}

/** Lets the streams move (several turns of the event loop). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

describe('RequestBody', () => {
  it('streams to the sink as data arrives, without waiting for the end', async () => {
    const source = new PassThrough();
    const body = new RequestBody(source, false);
    const out = sink();
    body.attach(out.stream);
    source.write('first ');
    await settle();
    assert.equal(out.text(), 'first ');
    assert.equal(out.ended(), false);
    source.end('last');
    await settle();
    assert.equal(out.text(), 'first last');
    assert.equal(out.ended(), true);
  });

  it('holds the data while detached, then replays everything to the next sink and streams the rest', async () => {
    const source = new PassThrough();
    const body = new RequestBody(source, false);
    const first = sink();
    body.attach(first.stream);
    source.write('one,');
    await settle();
    body.detach();
    source.write('two,');
    await settle();
    assert.equal(first.text(), 'one,', 'a detached sink gets nothing more');

    const second = sink();
    body.attach(second.stream);
    await settle();
    assert.equal(second.text(), 'one,two,');
    source.end('three');
    await settle();
    assert.equal(second.text(), 'one,two,three');
    assert.equal(second.ended(), true);
    assert.equal(first.ended(), false);
    assert.equal(body.replayable, true);

    const third = sink();
    body.attach(third.stream);
    await settle();
    assert.equal(third.text(), 'one,two,three', 'a complete body replays whole and ends');
    assert.equal(third.ended(), true);
  });

  it('reads nothing while detached, so a client sending on during a backoff does not overflow it', async () => {
    const source = new PassThrough();
    const body = new RequestBody(source, false, 8);
    body.attach(sink().stream);
    source.write('1234');
    await settle();
    body.detach();
    source.write('5678901234');
    await settle();
    assert.equal(body.replayable, true);
    const next = sink();
    body.attach(next.stream);
    source.end();
    await settle();
    assert.equal(next.text(), '12345678901234');
    assert.equal(body.replayable, false, 'what the attempt read went past the limit');
  });

  it('waits for an attach before reading the source', async () => {
    const source = new PassThrough();
    const body = new RequestBody(source, false);
    source.end('late');
    await settle();
    let whole: string | undefined;
    body.whenComplete((b) => (whole = b.toString()));
    assert.equal(whole, undefined, 'nothing was read yet');
    const out = sink();
    body.attach(out.stream);
    await settle();
    assert.equal(out.text(), 'late');
    assert.equal(whole, 'late');
  });

  it('gives whenComplete the whole body at its end, or at once when already complete', async () => {
    const source = new PassThrough();
    const body = new RequestBody(source, false, 10);
    const seen: string[] = [];
    body.whenComplete((b) => seen.push(`early:${b.toString()}`));
    body.attach(sink().stream);
    source.write('12345');
    await settle();
    assert.equal(seen.length, 0, 'not before the end');
    source.end('67890');
    await settle();
    body.whenComplete((b) => seen.push(`late:${b.toString()}`));
    assert.deepEqual(seen, ['early:1234567890', 'late:1234567890']);
    assert.equal(body.replayable, true, 'exactly the limit is still kept');
  });

  it('past the limit it still streams but can no longer be replayed, and whenComplete never fires', async () => {
    const source = new PassThrough();
    const body = new RequestBody(source, false, 8);
    let completions = 0;
    body.whenComplete(() => (completions += 1));
    const out = sink();
    body.attach(out.stream);
    source.write('12345');
    await settle();
    assert.equal(body.replayable, true);
    source.write('6789');
    await settle();
    assert.equal(body.replayable, false);
    body.whenComplete(() => (completions += 1));
    source.end('0');
    await settle();
    body.whenComplete(() => (completions += 1));
    await settle();
    assert.equal(out.text(), '1234567890', 'the current attempt gets every byte');
    assert.equal(out.ended(), true);
    assert.equal(completions, 0);
  });

  it('is empty when the request had no body: an attached sink just ends', async () => {
    const body = new RequestBody(new PassThrough(), true);
    assert.equal(body.empty, true);
    const out = sink();
    body.attach(out.stream);
    await settle();
    assert.equal(out.text(), '');
    assert.equal(out.ended(), true);
  });

  it('is empty only once a streamed body has ended with no bytes', async () => {
    const source = new PassThrough();
    const body = new RequestBody(source, false);
    assert.equal(body.empty, false, 'more may come');
    body.attach(sink().stream);
    source.end();
    await settle();
    assert.equal(body.empty, true);

    const withData = new PassThrough();
    const nonEmpty = new RequestBody(withData, false);
    nonEmpty.attach(sink().stream);
    withData.end('x');
    await settle();
    assert.equal(nonEmpty.empty, false);
  });

  it('RequestBody.of sends the same bytes to every sink', async () => {
    const body = RequestBody.of(Buffer.from('mirror me'));
    assert.equal(body.empty, false);
    assert.equal(body.replayable, true);
    for (let i = 0; i < 2; i += 1) {
      const out = sink();
      body.attach(out.stream);
      await settle();
      assert.equal(out.text(), 'mirror me');
      assert.equal(out.ended(), true);
    }
    let whole: string | undefined;
    body.whenComplete((b) => (whole = b.toString()));
    assert.equal(whole, 'mirror me');
    assert.equal(RequestBody.of(Buffer.alloc(0)).empty, true);
  });
});
