import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLoadBalancer, loadBalancerName } from './load-balancer.js';
import type { BalancedEndpoint } from './balancer.js';

interface Fake extends BalancedEndpoint {
  outstanding: number;
  rtt: number;
}

const fakes = (n: number): Fake[] =>
  Array.from({ length: n }, (_, index) => ({
    key: `10.0.0.${index + 1}:80`,
    index,
    outstanding: 0,
    rtt: 30,
    rttEstimateMs(): number {
      return this.rtt;
    },
  }));

/** Returns the given values in turn, forever. */
const sequence = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length]!;
};

/** A small deterministic PRNG (mulberry32) for statistical checks. */
const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

describe('registry', () => {
  it('maps DestinationRule settings to balancer names, LEAST_REQUEST by default', () => {
    assert.equal(loadBalancerName(undefined), 'LEAST_REQUEST');
    assert.equal(loadBalancerName({ simple: 'ROUND_ROBIN' }), 'ROUND_ROBIN');
    assert.equal(loadBalancerName({ consistentHash: { httpHeaderName: 'x-user' } }), 'RING_HASH');
    assert.equal(loadBalancerName({ consistentHash: { useSourceIp: true } }), 'RING_HASH');
    assert.throws(() => createLoadBalancer('MAGLEV', { now: () => 0, random: Math.random }), /MAGLEV/);
  });
});

describe('ROUND_ROBIN', () => {
  it('rotates from a random start and skips endpoints that are not candidates', () => {
    const eps = fakes(3);
    const rr = createLoadBalancer<Fake>('ROUND_ROBIN', { now: () => 0, random: () => 0.5 });
    rr.setEndpoints(eps);
    const order = Array.from({ length: 6 }, () => rr.pick(eps, undefined).index);
    assert.deepEqual(order, [1, 2, 0, 1, 2, 0]);
    assert.equal(rr.pick([eps[0]!, eps[2]!], undefined).index, 2, 'endpoint 1 skipped');
    assert.equal(rr.pick(eps, undefined).index, 0);
  });
});

describe('RANDOM', () => {
  it('picks uniformly by the random source', () => {
    const eps = fakes(4);
    const random = createLoadBalancer<Fake>('RANDOM', { now: () => 0, random: sequence(0, 0.3, 0.99) });
    random.setEndpoints(eps);
    assert.deepEqual([0, 1, 2].map(() => random.pick(eps, undefined).index), [0, 1, 3]);
  });
});

describe('LEAST_REQUEST (P2C over peak EWMA)', () => {
  it('of two random endpoints takes the one with fewer requests in flight', () => {
    const eps = fakes(4);
    eps[2]!.outstanding = 3;
    // first choice index floor(0.5*4)=2, second floor(0.1*3)=0 → endpoints 2 and 0
    const p2c = createLoadBalancer<Fake>('LEAST_REQUEST', { now: () => 0, random: sequence(0.5, 0.1) });
    p2c.setEndpoints(eps);
    assert.equal(p2c.pick(eps, undefined).index, 0);
    eps[2]!.outstanding = 0;
    assert.equal(p2c.pick(eps, undefined).index, 2, 'a tie keeps the first choice');
  });

  it('weighs latency by load: cost = estimate × (outstanding + 1)', () => {
    const eps = fakes(2);
    eps[0]!.rtt = 100;
    eps[1]!.rtt = 30;
    eps[1]!.outstanding = 2;
    const p2c = createLoadBalancer<Fake>('LEAST_REQUEST', { now: () => 0, random: sequence(0, 0) });
    p2c.setEndpoints(eps);
    assert.equal(p2c.pick(eps, undefined).index, 1, '90 < 100');
    eps[1]!.outstanding = 3;
    assert.equal(p2c.pick(eps, undefined).index, 0, '120 > 100');
  });

  it('sends most traffic to the faster endpoint but never compares an endpoint with itself', () => {
    const eps = fakes(3);
    eps[0]!.rtt = 300;
    const p2c = createLoadBalancer<Fake>('LEAST_REQUEST', { now: () => 0, random: seeded(7) });
    p2c.setEndpoints(eps);
    const counts = [0, 0, 0];
    for (let i = 0; i < 3000; i++) counts[p2c.pick(eps, undefined).index]!++;
    assert.equal(counts[0], 0, 'the slow endpoint loses every comparison');
    assert.ok(counts[1]! > 1200 && counts[2]! > 1200, String(counts));
  });
});

describe('RING_HASH', () => {
  const ring = (n: number) => {
    const eps = fakes(n);
    const lb = createLoadBalancer<Fake>('RING_HASH', { now: () => 0, random: () => 0.99 });
    lb.setEndpoints(eps);
    return { eps, lb };
  };
  const keys = Array.from({ length: 2000 }, (_, i) => `user-${i}`);

  it('sends a key to the same endpoint every time and spreads keys evenly', () => {
    const { eps, lb } = ring(5);
    const first = keys.map((k) => lb.pick(eps, k).key);
    assert.deepEqual(
      keys.map((k) => lb.pick(eps, k).key),
      first,
    );
    for (const e of eps) {
      const share = first.filter((k) => k === e.key).length / keys.length;
      assert.ok(share > 0.14 && share < 0.26, `${e.key}: ${share}`);
    }
  });

  it('moves only the keys of a removed endpoint, and they come back when it returns', () => {
    const { eps, lb } = ring(5);
    const before = keys.map((k) => lb.pick(eps, k).key);
    const removed = eps[2]!.key;
    const rest = fakes(5)
      .filter((e) => e.key !== removed)
      .map((e, index) => ({ ...e, index }));
    lb.setEndpoints(rest);
    const after = keys.map((k) => lb.pick(rest, k).key);
    keys.forEach((_, i) => {
      if (before[i] === removed) assert.notEqual(after[i], removed);
      else assert.equal(after[i], before[i], `key ${keys[i]} moved`);
    });
    lb.setEndpoints(eps);
    assert.deepEqual(
      keys.map((k) => lb.pick(eps, k).key),
      before,
    );
  });

  it('walks past non-candidates exactly as a ring without them would', () => {
    const { eps, lb } = ring(5);
    const without2 = eps.filter((e) => e.index !== 2);
    const other = createLoadBalancer<Fake>('RING_HASH', { now: () => 0, random: () => 0 });
    const four = without2.map((e, index) => ({ ...e, index }));
    other.setEndpoints(four);
    for (const k of keys) assert.equal(lb.pick(without2, k).key, other.pick(four, k).key);
  });

  it('picks at random without a hash key (header missing)', () => {
    const { eps, lb } = ring(4);
    assert.equal(lb.pick(eps, undefined).index, 3);
  });
});
