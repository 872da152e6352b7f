// The dashboard's requests: the admin token (kept in sessionStorage for this tab) goes with each
// one as `Authorization: Bearer`; the live trace is read with a streaming fetch (EventSource cannot
// send a header), its Server-Sent Events parsed here.
/* global fetch, sessionStorage, TextDecoder, AbortController */

const TOKEN_KEY = 'remote-spmc-admin-token';

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || '',
  set: (t) => (t ? sessionStorage.setItem(TOKEN_KEY, t) : sessionStorage.removeItem(TOKEN_KEY)),
};

/** Told when a request is refused for want of a (right) token. */
let onUnauthorized = () => {};
export const whenUnauthorized = (f) => void (onUnauthorized = f);

const headers = (extra = {}) => (token.get() ? { ...extra, authorization: `Bearer ${token.get()}` } : extra);

/** GET (or any method) as JSON; throws with the server's message on an error status. */
export async function api(path, opts = {}) {
  const res = await fetch(path, { ...opts, headers: headers(opts.headers) });
  if (res.status === 401) onUnauthorized();
  if (!res.ok) {
    let message = `${res.status}`;
    try {
      message = (await res.json()).message || message;
    } catch {
      // not JSON
    }
    const e = new Error(message);
    e.status = res.status;
    throw e;
  }
  return res.json();
}

/**
 * Follow an SSE route: `onOpen` once the stream is there, `onEvent(data)` per `data:` event.
 * Returns a function that stops it. `onEnd(status)` when it ends (status 0: network or server).
 */
export function sse(path, { onOpen, onEvent, onEnd }) {
  const abort = new AbortController();
  (async () => {
    let res;
    try {
      res = await fetch(path, { headers: headers({ accept: 'text/event-stream' }), signal: abort.signal });
    } catch {
      return abort.signal.aborted || onEnd(0);
    }
    if (res.status === 401) onUnauthorized();
    if (!res.ok || !res.body) return onEnd(res.status);
    onOpen();
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let text = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        let end;
        while ((end = text.indexOf('\n\n')) >= 0) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          let event = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length > 0 && event === 'message') onEvent(data.join('\n'));
        }
      }
    } catch {
      // aborted or cut
    }
    if (!abort.signal.aborted) onEnd(0);
  })();
  return () => abort.abort();
}
