// Kadi load scenarios for k6, for running against a deployed Kadi (a cluster,
// a staging host). The same scenarios as `loadtest full`, with thresholds that
// mirror Kadi's targets. Redirects are never followed.
//
//   k6 run -e BASE_URL=https://sho.rt -e SCENARIO=redirect-hot loadtest/k6/kadi.js
//
// SCENARIO: redirect-hot | redirect-wide | redirect-db | mixed | ramp
// VUS: connections (default 50). DURATION: default 60s. CODES: links created
// by setup for the wide scenarios (default 20000). API_KEY: sent as a bearer
// token when the API requires one.
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const SCENARIO = __ENV.SCENARIO || 'redirect-hot';
const VUS = parseInt(__ENV.VUS || '50', 10);
const DURATION = __ENV.DURATION || '60s';
const HOT = 100;
const WIDE = parseInt(__ENV.CODES || '20000', 10);
const headers = { 'content-type': 'application/json' };
if (__ENV.API_KEY) headers.authorization = `Bearer ${__ENV.API_KEY}`;

const steady = { executor: 'constant-vus', vus: VUS, duration: DURATION };
const ramp = {
  executor: 'ramping-vus',
  startVUs: 10,
  stages: [10, 50, 100, 200, 300, 400, 500].map((target) => ({ duration: '20s', target })),
};

export const options = {
  maxRedirects: 0,
  scenarios: { [SCENARIO]: SCENARIO === 'ramp' ? ramp : steady },
  thresholds: {
    // Zero errors for redirects of existing links.
    'http_req_failed{kind:redirect}': ['rate==0'],
    // Cached redirects: p99 within a few milliseconds of the network.
    'http_req_duration{kind:redirect}': [SCENARIO === 'redirect-db' ? 'p(99)<50' : 'p(99)<10'],
    'http_req_failed{kind:create}': ['rate<0.001'],
  },
};

export function setup() {
  const user = http.post(`${BASE}/users`, JSON.stringify({
    username: `k6-${Date.now()}`, email: `k6-${Date.now()}@example.com`,
  }), { headers }).json();
  const count = SCENARIO === 'redirect-wide' || SCENARIO === 'redirect-db' ? WIDE : HOT;
  const codes = [];
  for (let i = 0; i < count; i++) {
    const res = http.post(`${BASE}/urls`, JSON.stringify({
      user_id: user.id, original_url: `https://example.com/k6/${i}`,
    }), { headers });
    check(res, { 'link created': (r) => r.status === 201 });
    codes.push(res.json('short_code'));
  }
  return { userId: user.id, codes };
}

function redirect(codes) {
  const code = codes[Math.floor(Math.random() * codes.length)];
  const res = http.get(`${BASE}/${code}`, { tags: { kind: 'redirect' }, redirects: 0 });
  check(res, { 'redirected': (r) => r.status >= 301 && r.status <= 308 });
}

export default function (data) {
  if (SCENARIO !== 'mixed') {
    redirect(data.codes);
    return;
  }
  const roll = Math.random() * 100;
  if (roll < 90) {
    redirect(data.codes);
  } else if (roll < 98) {
    const res = http.post(`${BASE}/urls`, JSON.stringify({
      user_id: data.userId, original_url: `https://example.com/k6/new/${Math.random()}`,
    }), { headers, tags: { kind: 'create' } });
    check(res, { 'created': (r) => r.status === 201 });
  } else {
    const res = http.get(`${BASE}/urls?user_id=${data.userId}&per_page=10`, { headers, tags: { kind: 'read' } });
    check(res, { 'read': (r) => r.status === 200 });
  }
}
