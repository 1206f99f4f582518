// The fuzz targets (scripts/fuzz/targets.ts) in the suite: a time-bounded run per target from
// a seed that changes each day, so CI explores new inputs while a finding stays reproducible
// (`npm run fuzz -- --seed <seed>`). `npm run fuzz` runs 100,000 inputs per target.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fuzz } from '../scripts/fuzz/mutate.js';
import { TARGETS } from '../scripts/fuzz/targets.js';

const SEED = Math.floor(Date.now() / 86_400_000);

describe(`fuzz targets (seed ${SEED})`, () => {
  for (const target of TARGETS) {
    it(`${target.name}: no input crashes, hangs or corrupts the parser`, async () => {
      const r = await fuzz(target, 20_000, SEED, 15_000);
      assert.equal(r.finding, undefined, `seed ${SEED}: ${JSON.stringify(r.finding)}`);
      assert.ok(r.inputs >= 1000, `only ${r.inputs} inputs ran`);
    });
  }
});
