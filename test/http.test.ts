import t from 'tap';
import { buildHttpApp } from '../server/http/app.js';
import { newSpmc } from './helpers.js';

t.test('/healthz answers SERVING with the endpoint count, 503 when stopping', async (t) => {
  const spmc = newSpmc();
  let serving = true;
  const app = await buildHttpApp({ spmc, serving: () => serving });
  t.teardown(() => app.close());
  let r = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(r.statusCode, 200);
  t.same(r.json(), { status: 'SERVING', endpoints: 4 });
  spmc.attach({});
  t.equal(r = await app.inject({ method: 'GET', url: '/healthz' }), r);
  t.same(r.json().endpoints, 5);
  serving = false;
  r = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(r.statusCode, 503);
  t.equal((await app.inject({ method: 'GET', url: '/nope' })).statusCode, 404);
});
