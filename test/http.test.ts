import t from 'tap';
import { buildHttpApp } from '../server/http/app.js';
import { SessionCore } from '../server/session/core.js';
import { newSpmc } from './helpers.js';

t.test('/healthz answers SERVING with the endpoint count, 503 when stopping', async (t) => {
  const spmc = newSpmc();
  const core = SessionCore.for(spmc);
  const app = await buildHttpApp({ core });
  t.teardown(() => app.close());
  let r = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(r.statusCode, 200);
  t.same(r.json(), { status: 'SERVING', endpoints: 4 });
  spmc.attach({});
  r = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(r.statusCode, 200);
  t.same(r.json(), { status: 'SERVING', endpoints: 5 }, 'the attached VM is counted');
  core.stop();
  r = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(r.statusCode, 503);
  t.same(r.json(), { status: 'NOT_SERVING' });
  t.equal((await app.inject({ method: 'GET', url: '/nope' })).statusCode, 404);
});
