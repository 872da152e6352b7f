// What the command line prints from elsewhere (names, console lines, reasons, a server's error
// details, a trace file's fields) is shown, never obeyed: every control character a terminal acts
// on (C0, DEL, C1) is written as an escape. ESC is one of them, so no escape sequence survives: a
// VM named "\x1b]0;pwned\x07" cannot retitle or clear the operator's terminal.

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
const escapeOne = (c: string): string => NAMED[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;

/** `text` with its control characters escaped (\n, \r, \t, else \xHH). */
export function escapeControl(text: string): string {
  return text.replace(CONTROL, escapeOne);
}

const isPlain = (v: object): boolean => [Object.prototype, null].includes(Object.getPrototypeOf(v) as object | null);

/**
 * A JSON value with every string in it (keys too) escaped: safe to format for a terminal. Only
 * arrays and plain objects are walked; anything else (an Error, a Buffer) is left as it is.
 */
export function escapeDeep<T>(value: T): T {
  if (typeof value === 'string') return escapeControl(value) as T;
  if (Array.isArray(value)) return value.map(escapeDeep) as T;
  if (value && typeof value === 'object' && isPlain(value))
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [escapeControl(k), escapeDeep(v)])) as T;
  return value;
}

/**
 * pino options for a log a person may read on a terminal: JSON escapes C0, but DEL and C1 in a VM's
 * name or a partition's console line would reach the terminal raw.
 */
export const terminalSafeLog = { formatters: { log: (o: Record<string, unknown>) => escapeDeep(o) } };

/**
 * A JSON text for a terminal, on one line. JSON.stringify escapes C0 in strings but leaves DEL and
 * C1 raw; those become \u escapes, which keeps a string valid JSON. (A server's compact JSON has no
 * other control characters; any that a bad one sends are escaped the same way.)
 */
export function jsonForTerminal(json: string): string {
  return json.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Print lines on stdout, escaped. */
export function printLines(...lines: string[]): void {
  process.stdout.write(lines.map((l) => `${escapeControl(l)}\n`).join(''));
}
