import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { diffResources, type ViewResource } from './view-resource.js';

const svc = (name: string, port = 80, apiVersion = 'v1'): ViewResource => ({ apiVersion, kind: 'Service', namespace: 'shop', name, json: JSON.stringify({ port }) });
const names = (d: { changed: ViewResource[]; removed: Array<{ name: string }> }) => ({ changed: d.changed.map((r) => r.name), removed: d.removed.map((r) => r.name) });

describe('diffResources', () => {
  const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map((n) => svc(n));

  it('finds nothing between a view and itself, or an equal copy', () => {
    assert.deepEqual(names(diffResources([a!, b!, c!], [a!, b!, c!])), { changed: [], removed: [] });
    assert.deepEqual(names(diffResources([a!, b!, c!], [svc('a'), svc('b'), svc('c')])), { changed: [], removed: [] });
  });

  it('finds a change, an addition and a removal between unchanged neighbours', () => {
    assert.deepEqual(names(diffResources([a!, b!, c!, d!], [a!, svc('b', 81), c!, d!])), { changed: ['b'], removed: [] });
    assert.deepEqual(names(diffResources([a!, b!, d!], [a!, b!, c!, d!])), { changed: ['c'], removed: [] });
    assert.deepEqual(names(diffResources([a!, b!, c!, d!], [a!, c!, d!])), { changed: [], removed: ['b'] });
    assert.deepEqual(names(diffResources([a!, b!, c!, d!, e!], [svc('a', 1), b!, c!, d!, svc('f')])), { changed: ['a', 'f'], removed: ['e'] });
  });

  it('compares by kind, namespace and name whatever the order, and sees an apiVersion change', () => {
    assert.deepEqual(names(diffResources([a!, b!, c!], [c!, a!, b!])), { changed: [], removed: [] });
    assert.deepEqual(names(diffResources([a!, b!, c!], [c!, svc('b', 80, 'v2'), a!])), { changed: ['b'], removed: [] });
    const pod = { ...a!, kind: 'Pod' };
    assert.deepEqual(names(diffResources([a!], [pod])), { changed: ['a'], removed: ['a'] });
  });

  it('starts from nothing, and ends with nothing', () => {
    assert.deepEqual(names(diffResources([], [a!, b!])), { changed: ['a', 'b'], removed: [] });
    assert.deepEqual(names(diffResources([a!, b!], [])), { changed: [], removed: ['a', 'b'] });
  });
});
