// The fault rules panel (live only): the rules in force with how often each matched and fired, a
// textarea to add one as JSON (the server checks it: its 400 names the bad field), and a remove
// button per rule. /v1/faults is an admin route: api() sends the page's token.

import { api } from './api.js';

const SHOWN = ['id', 'match', 'action', 'times'];

/** `{ caller: 1, function: FFA_X }` on one line, as a rule is written. */
const compact = (v) =>
  v === undefined
    ? ''
    : Array.isArray(v)
      ? `[${v.map(compact).join(', ')}]`
      : v && typeof v === 'object'
        ? `{ ${Object.entries(v)
            .map(([k, x]) => `${k}: ${compact(x)}`)
            .join(', ')} }`
        : String(v);

export class FaultPanel {
  constructor(root) {
    this.root = root;
    this.body = root.querySelector('tbody');
    this.note = root.querySelector('.fault-note');
    this.rule = root.querySelector('textarea');
    /** The listing last drawn (JSON): redrawn only when it changes, so a button stays put under the pointer. */
    this.drawn = '';
    root.querySelector('form').addEventListener('submit', (e) => {
      e.preventDefault();
      void this.add();
    });
  }

  /** Read the rules again (one request at a time: asked again meanwhile, once more after it). */
  async refresh() {
    if (this.reading) return void (this.again = true);
    this.reading = true;
    try {
      do {
        this.again = false;
        await this.read();
      } while (this.again);
    } finally {
      this.reading = false;
    }
  }

  /** A server without fault injection (404) shows no panel. */
  async read() {
    try {
      this.draw(await api('/v1/faults'));
    } catch (e) {
      if (e.status === 404) {
        this.root.hidden = true;
        return;
      }
      this.root.hidden = false;
      this.root.dataset.state = e.status === 401 ? 'unauthorized' : 'error';
      this.drawn = '';
      this.body.replaceChildren();
      this.say(e.status === 401 ? 'the fault rules need the admin token' : `fault rules: ${e.message}`, 'dim');
    }
  }

  draw(set) {
    this.root.hidden = false;
    if (this.root.dataset.state !== 'ready') this.say('', 'dim');
    this.root.dataset.state = 'ready';
    const json = JSON.stringify(set);
    if (json === this.drawn) return;
    this.drawn = json;
    this.root.querySelector('.fault-seed').textContent = `seed ${set.seed}`;
    this.body.replaceChildren(
      ...set.rules.map(({ rule, seen, fired }) => {
        const tr = document.createElement('tr');
        tr.dataset.id = rule.id;
        const extra = Object.fromEntries(Object.entries(rule).filter(([k]) => !SHOWN.includes(k)));
        const cells = [
          rule.id,
          compact(rule.match),
          compact(rule.action) + (Object.keys(extra).length ? ` ${compact(extra)}` : ''),
          rule.times ?? '∞',
          seen,
          fired,
        ];
        cells.forEach((v, i) => {
          const td = tr.insertCell();
          td.textContent = String(v);
          td.className = ['', 'wrap', 'wrap', '', 'seen', 'fired'][i];
        });
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.className = 'remove';
        remove.textContent = 'remove';
        remove.title = `DELETE /v1/faults/${rule.id}`;
        remove.addEventListener('click', () => void this.remove(rule.id));
        tr.insertCell().append(remove);
        return tr;
      }),
    );
  }

  async add() {
    let rule;
    try {
      rule = JSON.parse(this.rule.value);
    } catch (e) {
      return this.say(`not JSON: ${e.message}`, 'err');
    }
    try {
      this.draw(await api('/v1/faults', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rule) }));
      this.rule.value = '';
      this.say(`added ${rule?.id ?? 'the rules'}`, 'dim');
    } catch (e) {
      this.say(e.message, 'err');
    }
  }

  async remove(id) {
    try {
      this.draw(await api(`/v1/faults/${encodeURIComponent(id)}`, { method: 'DELETE' }));
      this.say(`removed ${id}`, 'dim');
    } catch (e) {
      this.say(e.message, 'err');
    }
  }

  say(message, cls) {
    this.note.textContent = message;
    this.note.className = `fault-note ${cls}`;
  }
}
