// FFA_CONSOLE_LOG (Hafnium's api_ffa_console_log): an endpoint's characters, kept per endpoint as
// lines and handed to observers. Partitions log to the SPMC; a VM logs to the hypervisor, which the
// server also is (Hafnium as hypervisor takes its VMs' console output the same way).

import {
  CONSOLE_LOG_MAX_CHARS_32,
  CONSOLE_LOG_MAX_CHARS_64,
  CONSOLE_LOG_MAX_CHARS_64_V1_2,
  FFA_ERRORS,
  FFA_VERSION_1_2,
  ffaSuccess,
  formatVersion,
} from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import { type AbiTable, refuse, type SpmcState } from './state.js';

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
      // 32-bit: w2..w7; 64-bit: x2..x7, or x2..x17 from a v1.2 caller.
      const max = width === 32 ? CONSOLE_LOG_MAX_CHARS_32 : caller.version >= FFA_VERSION_1_2 ? CONSOLE_LOG_MAX_CHARS_64_V1_2 : CONSOLE_LOG_MAX_CHARS_64;
      if (length === 0 || length > max || length > chars.length) {
        return refuse(
          FFA_ERRORS.INVALID_PARAMETERS,
          'console_log.char_count',
          `CONSOLE_LOG_${width}: character count ${length} is not 1..${max} (a v${formatVersion(caller.version)} caller)`,
        );
      }
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
  },
};
