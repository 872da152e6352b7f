// FFA_CONSOLE_LOG: a partition's characters, kept per partition as lines and handed to observers.

import {
  CONSOLE_LOG_MAX_CHARS_32,
  CONSOLE_LOG_MAX_CHARS_64,
  CONSOLE_LOG_MAX_CHARS_64_V1_2,
  FFA_ERRORS,
  FFA_VERSION_1_2,
  ffaError,
  ffaSuccess,
} from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import type { AbiTable, SpmcState } from './state.js';

/** Whole lines kept per partition, and the longest line before it is cut. */
export const CONSOLE_LINES_KEPT = 256;
export const CONSOLE_LINE_MAX = 1024;

function emitLine(state: SpmcState, ep: Endpoint, line: string): void {
  const lines = ep.console.lines;
  lines.push(line);
  if (lines.length > CONSOLE_LINES_KEPT) lines.splice(0, lines.length - CONSOLE_LINES_KEPT);
  for (const o of state.observers) o.console?.(ep.id, line);
}

export const consoleAbis: AbiTable = {
  CONSOLE_LOG: {
    handle({ state, caller }, { width, length, chars }) {
      // Only partitions have a console here; the hypervisor does not forward VMs' (TF-A's SPMD neither).
      if (caller.kind !== 'sp') return ffaError(FFA_ERRORS.NOT_SUPPORTED);
      const max = width === 32 ? CONSOLE_LOG_MAX_CHARS_32 : caller.version >= FFA_VERSION_1_2 ? CONSOLE_LOG_MAX_CHARS_64_V1_2 : CONSOLE_LOG_MAX_CHARS_64;
      if (length === 0 || length > max || length > chars.length) return ffaError(FFA_ERRORS.INVALID_PARAMETERS);
      const con = caller.console;
      for (const c of chars.subarray(0, length)) {
        if (c === 0x0a) {
          emitLine(state, caller, con.partial);
          con.partial = '';
        } else if (c !== 0x0d) {
          con.partial += String.fromCharCode(c);
          if (con.partial.length >= CONSOLE_LINE_MAX) {
            emitLine(state, caller, con.partial);
            con.partial = '';
          }
        }
      }
      return ffaSuccess();
    },
    features: ({ caller }, _w, props) => (props === 0 && caller.kind === 'sp' ? [0, 0] : undefined),
  },
};
