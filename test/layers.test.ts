// The shape of agent/src, kept true: folders are layers, and a module imports only from its
// own folder or a lower layer, never up; no module imports itself back through others; the
// program never imports the test helpers. Read from the TypeScript sources.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../agent/src/', import.meta.url));

/** Lowest first. A folder, or a file directly under agent/src. */
const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts'],
  ['state', 'http', 'transport'],
  ['policy', 'balance', 'identity', 'redirect'],
  ['hbone', 'telemetry'],
  ['control'],
  ['inbound'],
  ['outbound'],
  ['admin'],
  ['controller', 'app.ts'],
  ['cli'],
];
const TEST_HELPERS = 'testing';

/** Every program module (tests left out), with the agent/src modules it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(path.join(SRC, dir), { withFileTypes: true })) {
      const rel = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
        const text = readFileSync(path.join(SRC, rel), 'utf8');
        const targets = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)]
          .map((m) => path.normalize(path.join(dir, m[1]!)).replace(/\.js$/, '.ts'))
          .filter((t) => !t.startsWith('..'));
        graph.set(rel, targets);
      }
    }
  };
  walk('.');
  return graph;
}

const unitOf = (module: string): string => module.split(path.sep)[0]!;
const layerOf = (module: string): number => LAYERS.findIndex((units) => units.includes(unitOf(module)));

describe('agent/src layering', () => {
  const graph = importGraph();

  it('every folder and top-level module has a layer', () => {
    const unplaced = [...new Set([...graph.keys()].map(unitOf))].filter((u) => u !== TEST_HELPERS && layerOf(u) < 0);
    assert.deepEqual(unplaced, []);
  });

  it('no module imports from a higher layer, and the program never imports the test helpers', () => {
    const wrong: string[] = [];
    for (const [from, targets] of graph) {
      if (unitOf(from) === TEST_HELPERS) continue;
      for (const to of targets) {
        if (unitOf(to) === TEST_HELPERS) wrong.push(`${from} -> ${to} (test helpers)`);
        else if (unitOf(to) !== unitOf(from) && layerOf(to) > layerOf(from)) wrong.push(`${from} -> ${to} (up from layer ${layerOf(from)} to ${layerOf(to)})`);
      }
    }
    assert.deepEqual(wrong, []);
  });

  it('no import cycle', () => {
    const state = new Map<string, 'open' | 'done'>();
    const cycles: string[] = [];
    const visit = (module: string, trail: string[]): void => {
      if (state.get(module) === 'done') return;
      if (state.get(module) === 'open') {
        cycles.push([...trail.slice(trail.indexOf(module)), module].join(' -> '));
        return;
      }
      state.set(module, 'open');
      for (const next of graph.get(module) ?? []) visit(next, [...trail, module]);
      state.set(module, 'done');
    };
    for (const module of graph.keys()) visit(module, []);
    assert.deepEqual(cycles, []);
  });
});
