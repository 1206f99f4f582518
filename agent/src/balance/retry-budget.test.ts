import { it } from 'node:test';
import assert from 'node:assert/strict';
import { RetryBudget } from './retry-budget.js';

it('retry budget allows min_retry_concurrency (3) retries at low load, then refuses', () => {
  const budget = new RetryBudget();
  const releases = [1, 2, 3].map(() => budget.tryAcquire(4));
  assert.ok(releases.every((r) => r !== null));
  assert.equal(budget.tryAcquire(4), null);
  assert.equal(budget.inFlight, 3);
  releases[0]!();
  releases[0]!();
  assert.equal(budget.inFlight, 2, 'a second release of the same retry changes nothing');
  assert.notEqual(budget.tryAcquire(4), null);
});

it('retry budget grows with active requests: 20 % of them, truncated', () => {
  const budget = new RetryBudget();
  let granted = 0;
  while (budget.tryAcquire(109)) granted++;
  assert.equal(granted, 21);
  const custom = new RetryBudget({ budgetPercent: 50, minRetryConcurrency: 1 });
  granted = 0;
  while (custom.tryAcquire(7)) granted++;
  assert.equal(granted, 3);
});

it('retry budget also respects DestinationRule maxRetries', () => {
  const budget = new RetryBudget({ maxRetries: 2 });
  assert.notEqual(budget.tryAcquire(1000), null);
  assert.notEqual(budget.tryAcquire(1000), null);
  assert.equal(budget.tryAcquire(1000), null);
  assert.equal(new RetryBudget({ maxRetries: 0 }).tryAcquire(1000), null);
});
