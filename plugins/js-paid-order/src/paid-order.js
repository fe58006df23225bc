// The condition's logic, free of WIT imports so that Node's test runner can
// load it as is: `src/plugin.js` hands it the event and the config text.

/**
 * An error the host records as the plugin's `error` variant. componentize-js
 * reports a thrown value's own `payload` property as a function's `err`.
 */
export class PluginError extends Error {
  /**
   * @param {'invalid-input' | 'config' | 'failed'} tag
   * @param {string} message
   */
  constructor(tag, message) {
    super(message);
    this.payload = { tag, val: message };
  }
}

const KEYS = new Set(['min_total', 'statuses', 'currency']);

/**
 * Reads the config table (JSON text from `host.config`).
 * @param {string} text
 * @returns {{ minTotal: number, statuses: Set<string>, currency: string | null }}
 */
export function parseConfig(text) {
  let table;
  try {
    table = JSON.parse(text || '{}');
  } catch (error) {
    throw new PluginError('config', `the config is not JSON: ${error.message}`);
  }
  if (table === null || typeof table !== 'object' || Array.isArray(table)) {
    throw new PluginError('config', 'the config is not a table');
  }
  const unknown = Object.keys(table).filter((key) => !KEYS.has(key));
  if (unknown.length > 0) {
    throw new PluginError('config', `unknown config keys: ${unknown.sort().join(', ')}`);
  }
  const minTotal = table.min_total ?? 1000;
  if (typeof minTotal !== 'number' || !Number.isFinite(minTotal)) {
    throw new PluginError('config', '`min_total` must be a number');
  }
  const statuses = table.statuses ?? ['paid'];
  if (
    !Array.isArray(statuses) ||
    statuses.length === 0 ||
    !statuses.every((s) => typeof s === 'string' && s !== '')
  ) {
    throw new PluginError('config', '`statuses` must be a non-empty list of strings');
  }
  const currency = table.currency ?? null;
  if (currency !== null && (typeof currency !== 'string' || currency === '')) {
    throw new PluginError('config', '`currency` must be a string');
  }
  return {
    minTotal,
    statuses: new Set(statuses.map((s) => s.toLowerCase())),
    currency: currency === null ? null : currency.toLowerCase(),
  };
}

/**
 * An amount as a number: a JSON number, or a string holding a decimal
 * number, as databases send NUMERIC columns. `null` when it is neither.
 * @param {unknown} value
 */
export function amountOf(value) {
  if (typeof value === 'number') {
    return Number.isFinite(value) ? value : null;
  }
  if (typeof value === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(value)) {
    return Number(value);
  }
  return null;
}

/**
 * Whether the order matches: its status is listed, its total (or amount)
 * is at least `min_total`, and its currency is the configured one.
 * @param {{ data: string }} event  the WIT `event` record (only `data` is read)
 * @param {string} configText
 * @returns {boolean}
 */
export function evaluate(event, configText) {
  const config = cachedConfig(configText);
  let row;
  try {
    row = JSON.parse(event.data);
  } catch (error) {
    throw new PluginError('invalid-input', `the event's row is not JSON: ${error.message}`);
  }
  if (row === null || typeof row !== 'object' || Array.isArray(row)) {
    throw new PluginError('invalid-input', "the event's row is not a JSON object");
  }
  const raw = 'total' in row ? row.total : row.amount;
  const total = amountOf(raw);
  if (total === null) {
    const what = raw === undefined ? 'has no `total` or `amount`' : `has a total that is not a number (${JSON.stringify(raw)})`;
    throw new PluginError('invalid-input', `the order ${what}`);
  }
  const status = typeof row.status === 'string' ? row.status.toLowerCase() : null;
  if (status === null || !config.statuses.has(status)) {
    return false;
  }
  if (config.currency !== null) {
    const currency = typeof row.currency === 'string' ? row.currency.toLowerCase() : null;
    if (currency !== config.currency) {
      return false;
    }
  }
  return total >= config.minTotal;
}

// A warm instance serves many calls with the same config text: parse it once.
let lastText = null;
let lastConfig = null;
function cachedConfig(text) {
  if (text !== lastText) {
    lastConfig = parseConfig(text);
    lastText = text;
  }
  return lastConfig;
}
