// `npm run fuzz`: every fuzz target (scripts/fuzz/targets.ts) for --inputs inputs (default
// 100,000) from --seed; prints inputs, time and the first finding per target, exits 1 on any.
import { parseArgs } from 'node:util';
import { fuzz } from './fuzz/mutate.js';
import { TARGETS } from './fuzz/targets.js';

const { values } = parseArgs({ options: { inputs: { type: 'string', default: '100000' }, seed: { type: 'string', default: '1' } } });
const inputs = Number(values.inputs);
const seed = Number(values.seed);
if (!Number.isInteger(inputs) || inputs < 1 || !Number.isInteger(seed)) {
  process.stderr.write(`fuzz: --inputs must be a positive integer and --seed an integer, got "${values.inputs}", "${values.seed}"\n`);
  process.exit(2);
}
let found = false;
for (const target of TARGETS) {
  const r = await fuzz(target, inputs, seed);
  process.stdout.write(`${r.target}: ${r.inputs} inputs in ${r.seconds.toFixed(1)} s${r.finding ? `; FINDING at input ${r.finding.input}: ${r.finding.message}\n  input (base64): ${r.finding.base64}` : ', no finding'}\n`);
  found ||= r.finding !== undefined;
}
process.exit(found ? 1 : 0);
