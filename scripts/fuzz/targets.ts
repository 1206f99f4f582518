// Fuzz targets: the places where bytes or documents from outside first meet the agent. Each
// takes one input and throws only when it found a defect: an exception other than the clear
// refusal the code is meant to give, a parser that invents or drops bytes, a loop that does
// not end. The mutator (mutate.ts) turns the seed corpus in test/fuzz-corpus/<target>/ into
// inputs; `npm run fuzz` runs each target for 100,000 of them, the test suite for fewer.
import { NodemeshError } from '../../agent/src/errors.js';
import { applyConfig } from '../../agent/src/control/apply.js';
import { parseConfig } from '../../agent/src/control/config-docs.js';
import { H1Error, H1Framer, parseRequestHead, parseResponseHead, requestBody, responseBody, type FrameEvent } from '../../agent/src/http/h1-framing.js';
import { parseAuthority, parseForwardedFor, parseProtocol } from '../../agent/src/hbone/protocol.js';
import { h2Inbound } from './h2-inbound.js';
import { FuzzFinding, type FuzzTarget } from './mutate.js';

/**
 * Feeds `input` to a framer in random pieces and takes every event: only H1Error may be
 * thrown, the bytes of the events must be the bytes fed, in order (only empty lines before a
 * head may be skipped), and the number of events is bounded by the input's length.
 */
function frame<H>(framer: H1Framer<H>, input: Buffer, rand: () => number): void {
  const taken: Buffer[] = [];
  let fed = 0;
  let events = 0;
  try {
    while (fed < input.length) {
      const n = 1 + Math.floor(rand() * Math.min(64, input.length - fed));
      framer.push(input.subarray(fed, fed + n));
      fed += n;
      for (let ev: FrameEvent<H> | undefined = framer.next(); ev; ev = framer.next()) {
        if (++events > 4 * input.length + 16) throw new FuzzFinding(`more than ${events - 1} events from ${input.length} bytes: a loop`);
        if (ev.type !== 'end') taken.push(ev.raw);
      }
    }
  } catch (err) {
    if (err instanceof H1Error) return;
    throw err;
  }
  const out = Buffer.concat([...taken, framer.takeRest()]);
  // Empty lines before a head are skipped (RFC 9112 §2.2); no other byte may go missing.
  let i = 0;
  for (const byte of out) {
    while (i < input.length && input[i] !== byte && (input[i] === 13 || input[i] === 10)) i++;
    if (input[i] !== byte) throw new FuzzFinding(`framer gave back bytes it was not fed (at ${i} of ${input.length})`);
    i++;
  }
  if (input.subarray(i).some((b) => b !== 13 && b !== 10)) throw new FuzzFinding(`framer dropped ${input.length - i} bytes at the end`);
}

export const TARGETS: readonly FuzzTarget[] = [
  {
    name: 'h1-request',
    run: (input, rand) => frame(new H1Framer(parseRequestHead, requestBody), input, rand),
  },
  {
    name: 'h1-response',
    run: (input, rand) => frame(new H1Framer(parseResponseHead, (h) => responseBody(h, rand() < 0.1 ? 'HEAD' : 'GET')), input, rand),
  },
  {
    name: 'h2-inbound',
    run: h2Inbound,
  },
  {
    // The CONNECT request of an HBONE tunnel: :authority, forwarded, x-nodemesh-protocol.
    name: 'hbone-connect',
    run: (input) => {
      const [authority, forwarded, protocol] = input.toString('latin1').split('\n');
      const target = parseAuthority(authority);
      if (target && !(target.port >= 1 && target.port <= 65535)) throw new FuzzFinding(`port ${target.port} accepted from ${JSON.stringify(authority)}`);
      const source = parseForwardedFor(forwarded);
      if (source !== undefined && !/^[0-9a-fA-F:.]+$/.test(source)) throw new FuzzFinding(`forwarded address ${JSON.stringify(source)} accepted`);
      parseProtocol(protocol);
    },
  },
  {
    // A configuration file: bad YAML is refused whole with a clear error, anything else is
    // applied with each bad resource rejected alone; nothing else may be thrown.
    name: 'config',
    run: (input) => {
      let docs;
      try {
        docs = parseConfig(input.toString('utf8'), 'fuzz.yaml');
      } catch (err) {
        if (err instanceof NodemeshError && err.code === 'NM_ERR_CONFIG_YAML') return;
        throw err;
      }
      const state = applyConfig(null, docs, { node: 'node-1', cgroupExists: () => true });
      for (const r of state.rejections) if (!r.reason) throw new FuzzFinding(`rejection of ${r.resource} without a reason`);
    },
  },
];
