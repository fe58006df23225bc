// The transform's logic: an order event becomes a Discord webhook message.
// It imports only types from the WIT (erased when compiled), so Node's test
// runner loads the compiled module as is; `plugin.ts` hands it the event and
// the config text.

import type { Event, Error as WitError, Payload } from 'wasmhook:plugin/types@0.1.0';

/**
 * An error the host records as the plugin's `error` variant. componentize-js
 * reports a thrown value's own `payload` property as a function's `err`.
 */
export class PluginError extends Error {
  readonly payload: WitError;

  constructor(tag: WitError['tag'], message: string) {
    super(message);
    this.payload = { tag, val: message };
  }
}

export interface Config {
  /** The name the message is posted under. */
  username?: string;
  /** A role id to mention; the only mention the message may ping. */
  mentionRole?: string;
}

type Row = Record<string, unknown>;

/** Discord's limits, in characters (UTF-16 units, as Discord counts). */
const MAX_CONTENT = 2000;
const MAX_TITLE = 256;
const MAX_FIELD_VALUE = 1024;
const MAX_FOOTER = 2048;
/** Item lines shown before "and N more". */
const MAX_ITEMS = 10;

/** Embed colours by status. */
const GREEN = 0x2ecc71;
const AMBER = 0xf1c40f;
const RED = 0xe74c3c;
const BLURPLE = 0x5865f2;
const DONE = new Set(['paid', 'captured', 'completed', 'fulfilled', 'shipped', 'delivered']);
const WAITING = new Set(['pending', 'processing', 'on-hold', 'on_hold', 'authorized']);
const FAILED = new Set(['cancelled', 'canceled', 'refunded', 'failed', 'declined']);

const CONFIG_KEYS = new Set(['username', 'mention_role']);

/** Reads the config table (JSON text from `host.config`). */
export function parseConfig(text: string): Config {
  let table: unknown;
  try {
    table = JSON.parse(text || '{}');
  } catch (error) {
    throw new PluginError('config', `the config is not JSON: ${(error as Error).message}`);
  }
  if (!isObject(table)) {
    throw new PluginError('config', 'the config is not a table');
  }
  const unknown = Object.keys(table).filter((key) => !CONFIG_KEYS.has(key));
  if (unknown.length > 0) {
    throw new PluginError('config', `unknown config keys: ${unknown.sort().join(', ')}`);
  }
  const config: Config = {};
  if (table.username !== undefined) {
    if (typeof table.username !== 'string' || table.username === '' || table.username.length > 80) {
      throw new PluginError('config', '`username` must be a string of 1 to 80 characters');
    }
    config.username = table.username;
  }
  if (table.mention_role !== undefined) {
    if (typeof table.mention_role !== 'string' || !/^\d{1,20}$/.test(table.mention_role)) {
      throw new PluginError('config', '`mention_role` must be a Discord role id (digits, as a string)');
    }
    config.mentionRole = table.mention_role;
  }
  return config;
}

/** The Discord message for an order event, as a JSON-ready object. */
export function discordMessage(event: Event, config: Config): Record<string, unknown> {
  const row = parseRow(event.data, "the event's row");
  const old = event.old === undefined ? undefined : parseRow(event.old, "the event's old row");
  const id = event.meta.entityId ?? (row.id === undefined ? '(no id)' : plain(row.id));
  const headline = `${headlineOf(event.meta.operation)} ${id}`;
  const status = typeof row.status === 'string' ? row.status : undefined;
  const oldStatus = typeof old?.status === 'string' ? old.status : undefined;
  const statusText =
    status === undefined ? '-' : oldStatus !== undefined && oldStatus !== status ? `${oldStatus} → ${status}` : status;
  const total = totalOf(row);
  const customer = customerOf(row);

  const fields: Array<Record<string, unknown>> = [
    { name: 'Status', value: field(statusText), inline: true },
    { name: 'Total', value: field(total), inline: true },
    { name: 'Customer', value: field(customer), inline: false },
  ];
  const items = itemsOf(row);
  if (items !== undefined) {
    fields.push({ name: 'Items', value: field(items), inline: false });
  }
  const embed: Record<string, unknown> = {
    title: clip(escapeMarkdown(headline), MAX_TITLE),
    color: colourOf(event.meta.operation, status),
    fields,
    footer: { text: clip(`${event.meta.entity} ${event.meta.operation} · ${event.meta.source}`, MAX_FOOTER) },
  };
  // Discord refuses a message whose embed timestamp is not ISO 8601.
  if (/^\d{4}-\d{2}-\d{2}T/.test(event.meta.timestamp)) {
    embed.timestamp = event.meta.timestamp;
  }

  const summary = escapeMarkdown(`${headline}: ${statusText}, ${total}, ${customer}`);
  const mention = config.mentionRole === undefined ? '' : `<@&${config.mentionRole}> `;
  const message: Record<string, unknown> = {
    content: clip(mention + summary, MAX_CONTENT),
    embeds: [embed],
    // Order data is not trusted: nothing in it may ping anyone, only the
    // configured role.
    allowed_mentions: config.mentionRole === undefined ? { parse: [] } : { parse: [], roles: [config.mentionRole] },
  };
  if (config.username !== undefined) {
    message.username = config.username;
  }
  return message;
}

/** The transform: the rendered body, if any, is not used. */
export function transform(event: Event, _body: Uint8Array | undefined, configText: string): Payload {
  const message = discordMessage(event, cachedConfig(configText));
  return {
    body: new TextEncoder().encode(JSON.stringify(message)),
    headers: [],
    contentType: 'application/json',
  };
}

// A warm instance serves many calls with the same config text: parse it once.
let lastText: string | undefined;
let lastConfig: Config = {};
function cachedConfig(text: string): Config {
  if (text !== lastText) {
    lastConfig = parseConfig(text);
    lastText = text;
  }
  return lastConfig;
}

function isObject(value: unknown): value is Row {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function parseRow(text: string, what: string): Row {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new PluginError('invalid-input', `${what} is not JSON: ${(error as Error).message}`);
  }
  if (!isObject(value)) {
    throw new PluginError('invalid-input', `${what} is not a JSON object`);
  }
  return value;
}

function headlineOf(operation: string): string {
  switch (operation) {
    case 'INSERT':
      return 'New order';
    case 'UPDATE':
      return 'Order updated';
    case 'DELETE':
      return 'Order deleted';
    default:
      return 'Order';
  }
}

function colourOf(operation: string, status: string | undefined): number {
  const key = status?.toLowerCase();
  if (operation === 'DELETE' || (key !== undefined && FAILED.has(key))) return RED;
  if (key !== undefined && DONE.has(key)) return GREEN;
  if (key !== undefined && WAITING.has(key)) return AMBER;
  return BLURPLE;
}

/** A value as text: strings without their quotes, anything else as JSON. */
function plain(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** `total` (or `amount`), followed by `currency` when the row has one. */
function totalOf(row: Row): string {
  const total = row.total ?? row.amount;
  if (total === undefined || total === null) return '-';
  return typeof row.currency === 'string' ? `${plain(total)} ${row.currency}` : plain(total);
}

/** `customer` as a string, or its `name` and `<email>` when it is an object;
 * else `customer_name` / `customer_email` / `email` on the row. */
function customerOf(row: Row): string {
  let name: unknown;
  let email: unknown;
  if (typeof row.customer === 'string') {
    return row.customer;
  } else if (isObject(row.customer)) {
    name = row.customer.name;
    email = row.customer.email;
  } else {
    name = row.customer_name;
    email = row.customer_email ?? row.email;
  }
  const n = typeof name === 'string' ? name : undefined;
  const e = typeof email === 'string' ? email : undefined;
  if (n !== undefined && e !== undefined) return `${n} <${e}>`;
  return n ?? e ?? '-';
}

/** `items` as "2 × Widget" lines, when it is a list. */
function itemsOf(row: Row): string | undefined {
  if (!Array.isArray(row.items) || row.items.length === 0) return undefined;
  const lines = row.items.slice(0, MAX_ITEMS).map((item: unknown) => {
    if (!isObject(item)) return plain(item);
    const quantity = item.quantity ?? item.qty ?? 1;
    const name = item.name ?? item.title ?? item.sku ?? '?';
    return `${plain(quantity)} × ${plain(name)}`;
  });
  const more = row.items.length - MAX_ITEMS;
  if (more > 0) lines.push(`and ${more} more`);
  return lines.join('\n');
}

/** A field value: escaped, never empty (Discord refuses an empty one). The
 * placeholder for a missing value is left as it is. */
function field(text: string): string {
  if (text === '-') return text;
  return clip(escapeMarkdown(text), MAX_FIELD_VALUE) || '-';
}

/** Discord markdown: a backslash keeps order data from formatting the
 * message. Emphasis, code and spoiler marks count anywhere; quote, heading
 * and list marks only at the start of a line. */
function escapeMarkdown(text: string): string {
  return text.replace(/[\\*_~`|]/g, (c) => `\\${c}`).replace(/^([>#-])/gm, '\\$1');
}

/** At most `max` characters, the last one an ellipsis when cut. */
function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
