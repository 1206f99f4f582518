import { it } from 'node:test';
import assert from 'node:assert/strict';
import { RoundRobin } from './round-robin.js';

it('round robin spreads picks evenly per key and follows a changed endpoint set', () => {
  const rr = new RoundRobin();
  const picks = Array.from({ length: 6 }, () => rr.pick('svc', ['a', 'b', 'c']));
  assert.deepEqual(picks, ['a', 'b', 'c', 'a', 'b', 'c']);
  assert.equal(rr.pick('other', ['x', 'y']), 'x');
  assert.deepEqual([rr.pick('svc', ['b']), rr.pick('svc', ['b'])], ['b', 'b']);
  assert.equal(rr.pick('svc', []), undefined);
});
