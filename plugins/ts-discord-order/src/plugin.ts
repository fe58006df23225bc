// The component's entry: compiled to build/plugin.js, which componentize-js
// builds against the `transform-plugin` world. The logic lives in
// ./discord.ts.

import { config } from 'wasmhook:plugin/host@0.1.0';
import type * as World from 'wasmhook:plugin/transform-plugin@0.1.0';
import { transform as toDiscord } from './discord.js';

// Typed by the world's export, so a change in wit/ fails the compile here.
export const transform: typeof World.transform = {
  transform(event, body) {
    return toDiscord(event, body, config());
  },
};
