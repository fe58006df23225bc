// The component's entry: componentize-js builds this module against the
// `condition-plugin` world. The logic lives in ./paid-order.js.
import { config } from 'wasmhook:plugin/host@0.1.0';
import { evaluate } from './paid-order.js';

export const condition = {
  evaluate(event) {
    return evaluate(event, config());
  },
};
