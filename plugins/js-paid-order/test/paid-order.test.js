// The condition's contract (README.md), run under Node against the module
// the component is built from.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PluginError, amountOf, evaluate, parseConfig } from '../src/paid-order.js';

const order = (row) => ({
  meta: { id: 'e1', entity: 'Order', operation: 'UPDATE', timestamp: '2026-03-02T14:00:00Z', source: 'test' },
  data: JSON.stringify(row),
});

/** Asserts that `run` throws the plugin error `tag` with a message containing `text`. */
function throwsPluginError(run, tag, text) {
  assert.throws(run, (error) => {
    assert.ok(error instanceof PluginError, `not a PluginError: ${error}`);
    assert.equal(error.payload.tag, tag);
    assert.equal(error.payload.val, error.message);
    assert.match(error.message, new RegExp(text));
    return true;
  });
}

test('a paid order at or over the threshold matches', () => {
  const config = JSON.stringify({ min_total: 1000 });
  for (const [row, expected] of [
    [{ status: 'paid', total: 1000 }, true],
    [{ status: 'paid', total: 1250.5 }, true],
    [{ status: 'PAID', total: '1500.00' }, true],
    [{ status: 'paid', amount: 2000 }, true],
    [{ status: 'paid', total: 999.99 }, false],
    [{ status: 'pending', total: 5000 }, false],
    [{ total: 5000 }, false],
    [{ status: 7, total: 5000 }, false],
  ]) {
    assert.equal(evaluate(order(row), config), expected, JSON.stringify(row));
  }
});

test('the defaults are a threshold of 1000 and the status "paid"', () => {
  assert.equal(evaluate(order({ status: 'paid', total: 1000 }), '{}'), true);
  assert.equal(evaluate(order({ status: 'paid', total: 999 }), ''), false);
  assert.equal(evaluate(order({ status: 'captured', total: 5000 }), '{}'), false);
});

test('statuses and currency come from the config', () => {
  const config = JSON.stringify({ min_total: 50, statuses: ['paid', 'Captured'], currency: 'eur' });
  assert.equal(evaluate(order({ status: 'captured', total: 60, currency: 'EUR' }), config), true);
  assert.equal(evaluate(order({ status: 'paid', total: 60, currency: 'USD' }), config), false);
  assert.equal(evaluate(order({ status: 'paid', total: 60 }), config), false);
});

test('an order without a usable total is invalid input', () => {
  throwsPluginError(() => evaluate(order({ status: 'paid' }), '{}'), 'invalid-input', 'no `total` or `amount`');
  for (const total of ['lots', null, [1], '1e400', '']) {
    throwsPluginError(
      () => evaluate(order({ status: 'paid', total }), '{}'),
      'invalid-input',
      'not a number',
    );
  }
  throwsPluginError(() => evaluate({ data: '[1]' }, '{}'), 'invalid-input', 'not a JSON object');
  throwsPluginError(() => evaluate({ data: '{oops' }, '{}'), 'invalid-input', 'not JSON');
});

test('a bad config table is a config error naming the key', () => {
  for (const [table, text] of [
    ['{"threshold": 5}', 'unknown config keys: threshold'],
    ['{"min_total": "5"}', '`min_total` must be a number'],
    ['{"statuses": []}', '`statuses` must be a non-empty list'],
    ['{"statuses": ["paid", 3]}', '`statuses` must be a non-empty list'],
    ['{"currency": 978}', '`currency` must be a string'],
    ['[1]', 'not a table'],
    ['{', 'not JSON'],
  ]) {
    throwsPluginError(() => parseConfig(table), 'config', text);
    throwsPluginError(() => evaluate(order({ status: 'paid', total: 1 }), table), 'config', text);
  }
});

test('amounts are numbers or decimal strings', () => {
  assert.equal(amountOf(12), 12);
  assert.equal(amountOf(' 12.50 '), 12.5);
  assert.equal(amountOf('-3'), -3);
  assert.equal(amountOf(Infinity), null);
  assert.equal(amountOf('12,50'), null);
  assert.equal(amountOf(true), null);
});
