// Test fixture: a transform that tries, in the mode its config names, what
// the host must refuse or report. Its body reports what it saw.
import { config } from 'wasmhook:plugin/host@0.1.0';

const encoder = new TextEncoder();

function report(value) {
  return { body: encoder.encode(JSON.stringify(value)), headers: [], contentType: 'application/json' };
}

export const transform = {
  transform(event, body) {
    const { mode, url } = JSON.parse(config());
    switch (mode) {
      case 'ok':
        return report({ entity: event.meta.entity, data: JSON.parse(event.data) });
      case 'fetch': {
        // An outgoing request: the host must refuse it, naming wasi:http.
        let outcome = 'pending';
        fetch(url, { method: 'POST', body: 'from a plugin' }).then(
          (response) => {
            outcome = `granted: status ${response.status}`;
          },
          (error) => {
            outcome = `refused: ${error}`;
          },
        );
        return report({ outcome });
      }
      case 'clock': {
        // Clocks and randomness are linked with what the host offers.
        const bytes = new Uint8Array(8);
        crypto.getRandomValues(bytes);
        console.log('discarded: stdio is not inherited');
        return report({ now: Date.now(), random: Math.random(), bytes: Array.from(bytes) });
      }
      case 'timer': {
        // A timer needs the event loop to wait (wasi:io/poll), which traps.
        let fired = false;
        setTimeout(() => {
          fired = true;
        }, 10);
        return report({ fired });
      }
      case 'throw':
        // Not the WIT `error` variant: a plain exception.
        throw new Error('a plain exception');
      default:
        throw { payload: { tag: 'config', val: `unknown mode ${mode}` } };
    }
  },
};
