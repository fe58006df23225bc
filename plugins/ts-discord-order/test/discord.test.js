// The transform's contract (README.md), run under Node against the module
// the component is built from (compiled by `npm run compile`).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PluginError, discordMessage, parseConfig, transform } from '../build/discord.js';

// The WIT `event` record as componentize-js hands it over: an absent
// `option` is `undefined`.
const event = (row, { operation = 'INSERT', old, noEntityId = false } = {}) => ({
  meta: {
    id: 'e1',
    entity: 'Order',
    operation,
    entityId: noEntityId ? undefined : 'ord-7',
    timestamp: '2026-03-02T14:00:00Z',
    source: 'nats:fraiseql.order.created',
  },
  data: JSON.stringify(row),
  old: old === undefined ? undefined : JSON.stringify(old),
});

const ada = {
  id: 'ord-7',
  status: 'paid',
  total: 1250.5,
  currency: 'EUR',
  customer: { name: 'Ada', email: 'ada@example.com' },
  items: [{ name: 'Widget', quantity: 2 }, { sku: 'G-1' }],
};

function throwsPluginError(run, tag, text) {
  assert.throws(run, (error) => {
    assert.ok(error instanceof PluginError, `not a PluginError: ${error}`);
    assert.deepEqual(error.payload, { tag, val: error.message });
    assert.match(error.message, new RegExp(text));
    return true;
  });
}

test('a new paid order becomes a message with one green embed', () => {
  const payload = transform(event(ada), undefined, JSON.stringify({ username: 'Orders' }));
  assert.equal(payload.contentType, 'application/json');
  assert.deepEqual(payload.headers, []);
  const message = JSON.parse(new TextDecoder().decode(payload.body));
  assert.deepEqual(message, {
    content: 'New order ord-7: paid, 1250.5 EUR, Ada <ada@example.com>',
    embeds: [
      {
        title: 'New order ord-7',
        color: 0x2ecc71,
        fields: [
          { name: 'Status', value: 'paid', inline: true },
          { name: 'Total', value: '1250.5 EUR', inline: true },
          { name: 'Customer', value: 'Ada <ada@example.com>', inline: false },
          { name: 'Items', value: '2 × Widget\n1 × G-1', inline: false },
        ],
        footer: { text: 'Order INSERT · nats:fraiseql.order.created' },
        timestamp: '2026-03-02T14:00:00Z',
      },
    ],
    allowed_mentions: { parse: [] },
    username: 'Orders',
  });
});

test('an update shows the status change; colours follow the status', () => {
  const message = discordMessage(
    event({ ...ada, status: 'refunded' }, { operation: 'UPDATE', old: { status: 'paid' } }),
    {},
  );
  assert.equal(message.embeds[0].title, 'Order updated ord-7');
  assert.equal(message.embeds[0].fields[0].value, 'paid → refunded');
  assert.equal(message.embeds[0].color, 0xe74c3c);
  for (const [status, colour] of [
    ['pending', 0xf1c40f],
    ['Shipped', 0x2ecc71],
    ['weird', 0x5865f2],
  ]) {
    assert.equal(discordMessage(event({ status }), {}).embeds[0].color, colour, status);
  }
  assert.equal(discordMessage(event(ada, { operation: 'DELETE' }), {}).embeds[0].color, 0xe74c3c);
});

test('missing fields are dashes; the id falls back to the row', () => {
  const message = discordMessage(event({}, { noEntityId: true, operation: 'TRUNCATE' }), {});
  assert.equal(message.content, 'Order (no id): -, -, -');
  assert.deepEqual(
    message.embeds[0].fields.map((f) => f.value),
    ['-', '-', '-'],
  );
  assert.equal(message.username, undefined);
  const byRow = discordMessage(event({ id: 42, amount: '9.90', email: 'b@x' }, { noEntityId: true }), {});
  assert.equal(byRow.content, 'New order 42: -, 9.90, b@x');
});

test('order data cannot format the message or ping anyone', () => {
  const message = discordMessage(
    event({ status: 'paid', customer: '@everyone **free** `x`\n> quoted' }),
    { mentionRole: '1234' },
  );
  assert.equal(message.content, '<@&1234> New order ord-7: paid, -, @everyone \\*\\*free\\*\\* \\`x\\`\n\\> quoted');
  assert.deepEqual(message.allowed_mentions, { parse: [], roles: ['1234'] });
});

test("Discord's length limits are kept", () => {
  const items = Array.from({ length: 25 }, (_, i) => ({ name: `item ${i}`, quantity: 1 }));
  const message = discordMessage(event({ status: 'paid', customer: 'x'.repeat(5000), items }), {});
  assert.equal(message.content.length, 2000);
  assert.ok(message.content.endsWith('…'));
  assert.equal(message.embeds[0].fields[2].value.length, 1024);
  assert.match(message.embeds[0].fields[3].value, /1 × item 9\nand 15 more$/);
});

test('a row that is not a JSON object is invalid input', () => {
  throwsPluginError(() => discordMessage(event([1]), {}), 'invalid-input', "the event's row is not a JSON object");
  throwsPluginError(
    () => discordMessage({ ...event(ada), old: '{oops' }, {}),
    'invalid-input',
    "the event's old row is not JSON",
  );
});

test('a bad config table is a config error naming the key', () => {
  assert.deepEqual(parseConfig(''), {});
  assert.deepEqual(parseConfig('{"username": "Shop", "mention_role": "99"}'), { username: 'Shop', mentionRole: '99' });
  for (const [table, text] of [
    ['{"channel": "#x"}', 'unknown config keys: channel'],
    ['{"username": ""}', '`username` must be a string'],
    ['{"mention_role": 99}', '`mention_role` must be a Discord role id'],
    ['{"mention_role": "<@&1>"}', '`mention_role` must be a Discord role id'],
    ['[]', 'not a table'],
    ['{', 'not JSON'],
  ]) {
    throwsPluginError(() => parseConfig(table), 'config', text);
    throwsPluginError(() => transform(event(ada), undefined, table), 'config', text);
  }
});
