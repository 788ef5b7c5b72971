// Switchover dashboard: plain JS, no build step. Reads over POST /graphql, live updates over graphql-transport-ws.
'use strict';

const $ = (id) => document.getElementById(id);
const KEY = 'switchover.token';
const token = () => sessionStorage.getItem(KEY) || '';

// h('p', {class: 'x'}, 'text', child): an element; text is never parsed as HTML.
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k === 'className' ? 'class' : k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid);
  return el;
}

class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

async function gql(query, variables) {
  const headers = {'content-type': 'application/json', accept: 'application/json'};
  if (token()) headers.authorization = 'Bearer ' + token();
  let response, body;
  try {
    response = await fetch('/graphql', {method: 'POST', headers, body: JSON.stringify({query, variables})});
  } catch (e) {
    throw new ApiError('NETWORK', 'cannot reach the server (' + e.message + ')');
  }
  try { body = await response.json(); } catch {
    throw new ApiError('HTTP_' + response.status, 'the server answered ' + response.status + ' ' + response.statusText);
  }
  const error = (body.errors || [])[0];
  if (error) throw new ApiError((error.extensions || {}).code || 'ERROR', error.message);
  return body.data;
}

// `from` says who showed it: a successful load clears only what a load showed.
let errorFrom = null;
function showError(e, from = 'load') {
  const box = $('error');
  if (!e && from !== 'all' && errorFrom !== from) return;
  errorFrom = e ? from : null;
  box.hidden = !e;
  box.replaceChildren(...(e ? [h('strong', {}, e.code || 'ERROR'), ' ', e.message || String(e)] : []));
}
const announce = (text) => { $('announce').textContent = text; };

// ---- time ----
const when = (iso) => iso ? new Date(iso).toLocaleString() : '—';
const time = (iso) => h('time', {datetime: iso, title: iso}, when(iso));
function until(iso) {
  const s = Math.round((new Date(iso) - Date.now()) / 1000);
  if (s <= 0) return 'due now';
  return 'in ' + (s < 120 ? s + ' s' : s < 7200 ? Math.round(s / 60) + ' min' : Math.round(s / 3600) + ' h');
}
setInterval(() => document.querySelectorAll('[data-until]').forEach((el) => {
  el.textContent = until(el.dataset.until);
}), 1000);

// ---- live events: a minimal graphql-transport-ws client ----
const EVENTS = `subscription Events($d: ID, $after: ID) {
  deploymentEvents(deploymentId: $d, after: $after) { id deploymentId history { phase result message } } }`;

const live = {
  ws: null, vars: null, retry: 0, timer: null,
  start(vars) { this.stop(); this.vars = vars; this.connect(); },
  stop() {
    clearTimeout(this.timer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(1000); this.ws = null; }
  },
  state(s, text) { const el = $('live'); el.dataset.state = s; el.textContent = text; },
  connect() {
    const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/graphql', 'graphql-transport-ws');
    const send = (m) => ws.send(JSON.stringify(m));
    this.ws = ws;
    this.state('connecting', 'Connecting…');
    ws.onopen = () => send({type: 'connection_init', payload: token() ? {authorization: 'Bearer ' + token()} : {}});
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === 'connection_ack') {
        send({id: '1', type: 'subscribe', payload: {query: EVENTS, variables: this.vars}});
        if (this.retry) refresh(); // a reconnect: whatever happened meanwhile
        this.retry = 0;
        this.state('live', 'Live');
      } else if (msg.type === 'ping') {
        send({type: 'pong'});
      } else if (msg.type === 'next') {
        const e = msg.payload.errors && msg.payload.errors[0];
        if (e) return this.failed(e);
        const event = msg.payload.data.deploymentEvents;
        this.vars = {...this.vars, after: event.id}; // a reconnect resumes after it
        announce(`${event.history.phase} ${event.history.result}: ${event.history.message}`);
        soon();
      } else if (msg.type === 'error') {
        this.failed(msg.payload[0] || {});
      } else if (msg.type === 'complete') {
        ws.close(); // the server ended the stream: reconnect and resume
      }
    };
    ws.onclose = () => {
      this.ws = null;
      this.retry = Math.min(this.retry + 1, 6);
      this.state('offline', 'Offline, retrying');
      this.timer = setTimeout(() => this.connect(), 500 * 2 ** this.retry);
    };
  },
  failed(e) {
    this.stop();
    this.state('offline', 'Not live');
    showError(new ApiError((e.extensions || {}).code || 'ERROR', 'live updates: ' + e.message), 'live');
  },
};

// ---- views ----
let view = null;
let loading = null;
let again = false;
let debounce = null;

const POLL_MS = 3000;
let poll = null;

function soon() { clearTimeout(debounce); debounce = setTimeout(refresh, 100); }

// One load at a time; a request during a load makes one more load follow it.
function refresh() {
  if (loading) { again = true; return loading; }
  loading = (async () => {
    do {
      again = false;
      const v = view;
      try {
        await (v.id ? loadDeployment(v) : loadList(v));
      } catch (e) {
        if (v === view) failed(v, e);
      }
    } while (again);
  })().finally(() => { loading = null; });
  return loading;
}

function failed(v, e) {
  showError(e);
  if (!v.liveVars) live.state('offline', 'Not live');
  if (!v.first) return; // keep showing the last good data
  const auth = e.code === 'UNAUTHENTICATED' || e.code === 'FORBIDDEN';
  $('main').replaceChildren(h('h1', {tabindex: -1}, v.id ? 'Deployment' : 'Deployments'),
    h('p', {}, auth ? 'Paste an access token (a JWT) in the field above, then press Use.'
      : 'Could not load this page: reload it to try again.'));
  if (auth) $('token').focus();
}

function route() {
  const match = location.hash.match(/^#\/d\/([\w-]+)$/);
  view = match ? {id: match[1], first: true} : {first: true};
  showError(null, 'all');
  $('main').replaceChildren(h('p', {}, 'Loading…'));
  live.stop();
  clearTimeout(poll);
  refresh().then(() => {
    if (view.liveVars) live.start(view.liveVars);
  });
}

// Re-render without losing the keyboard focus of a control that has an id.
function render(v, ...nodes) {
  if (v !== view) return;
  const focused = document.activeElement && document.activeElement.id;
  $('main').replaceChildren(...nodes.filter(Boolean));
  if (v.first) { v.first = false; const h1 = $('main').querySelector('h1'); if (h1) h1.focus(); }
  else if (focused && $(focused)) $(focused).focus();
  showError(null);
}

const badge = (value, kind) => value ? h('span', {className: 'badge ' + (kind || value)}, value) : '—';
const short = (s) => s ? s.replace('DEPLOYING_', '') : '—';
const state = (d) => d.subStep ? d.subStep.replace('DEPLOYING_', '') : null;
const rev = (r) => r ? h('span', {}, 'rev ' + r.number + ' ', h('code', {}, r.image)) : '—';

const LIST = `query List { deployments(first: 100, lifecycle: [PENDING, READY, DEPLOYING, DESTROYING]) {
  edges { node { id name lifecycle subStep strategy { type } updatedAt
    currentRevision { number image } deployingRevision { number image }
    history(first: 1) { edges { node { id createdAt } } } } }
  pageInfo { hasNextPage } } }`;

async function loadList(v) {
  const {deployments} = await gql(LIST);
  const nodes = deployments.edges.map((e) => e.node);
  const newest = nodes.flatMap((d) => d.history.edges.map((e) => e.node))
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt))[0];
  v.liveVars = v.liveVars || {after: newest ? newest.id : null};
  const rows = nodes.map((d) => h('tr', {'data-id': d.id},
    h('th', {scope: 'row'}, h('a', {href: '#/d/' + d.id}, d.name)),
    h('td', {}, badge(d.lifecycle)), h('td', {}, badge(state(d), 'sub')),
    h('td', {}, rev(d.currentRevision)), h('td', {}, rev(d.deployingRevision)),
    h('td', {}, d.strategy.type.replace('_', '-').toLowerCase()), h('td', {}, time(d.updatedAt))));
  render(v, h('h1', {tabindex: -1}, 'Deployments'),
    nodes.length ? h('div', {className: 'scroll'}, h('table', {},
      h('caption', {className: 'sr-only'}, 'Deployments with their lifecycle and revisions'),
      h('thead', {}, h('tr', {}, ['Name', 'Lifecycle', 'Sub-step', 'Current revision', 'Deploying revision',
        'Strategy', 'Updated'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, rows))) : h('p', {}, 'No deployments yet.'),
    deployments.pageInfo.hasNextPage ? h('p', {className: 'note'}, 'Showing the first 100 deployments.') : null);
}

const SHADOW_SECONDS = 300, SHADOW_STEP = 10;
const ONE = `query One($id: ID!) { deployment(id: $id) {
  id name projectId replicas lifecycle subStep phaseStartedAt nextActionAt
  strategy { type blueGreen { autoPromote promoteDelaySeconds scaleDownDelaySeconds shadow { percent } requiredApprovals }
    canary { requiredApprovals scaleDownDelaySeconds steps { setWeight pause { seconds } analysis { count intervalSeconds } }
      analysis { count } } }
  currentRevision { id number image } deployingRevision { id number image }
  waitingFor { reason message }
  approvals { approver comment createdAt } activeFreezeWindow { id reason endsAt }
  canaryStatus { stepIndex weight }
  shadowStats { requests agreed disagreed greenErrors samples { request blueAnswer greenAnswer }
    intervals(seconds: ${SHADOW_SECONDS}, step: ${SHADOW_STEP}) { start requests agreed disagreed greenErrors } }
  analysisRuns(first: 3) { edges { node { id kind phase passedChecks failedChecks nextCheckAt startedAt finishedAt
    revision { number } measurements { metric value passed message at } } } }
  routes(status: [PROVISIONING, HEALTHY, UNHEALTHY, DEGRADED, TERMINATING, FAILED_TO_START]) {
    id status trafficStatus trafficRatio endpointUrl revision { id number image } }
  history(first: 30) { edges { node {
    id phase result fromLifecycle toLifecycle fromSubStep toSubStep message errorCode attempts actor createdAt } } }
} }`;

async function loadDeployment(v) {
  const {deployment: d} = await gql(ONE, {id: v.id});
  if (!d) throw new ApiError('NOT_FOUND', 'there is no deployment ' + v.id);
  const history = d.history.edges.map((e) => e.node);
  v.liveVars = v.liveVars || {d: d.id, after: history.length ? history[0].id : null};
  const cur = d.currentRevision, dep = d.deployingRevision;
  const of = (r) => d.routes.filter((x) => r && x.revision.id === r.id);
  const others = d.routes.filter((x) => ![cur, dep].some((r) => r && r.id === x.revision.id));
  const previous = others.length ? others[0].revision : null;
  const warm = others.filter((x) => x.status === 'HEALTHY' && x.trafficStatus === 'INACTIVE');
  const bg = d.strategy.type === 'BLUE_GREEN', canary = d.strategy.type === 'CANARY';
  const runs = d.analysisRuns.edges.map((e) => e.node);
  const shadow = d.shadowStats && ((bg && d.strategy.blueGreen.shadow) || d.shadowStats.requests) ? d.shadowStats
    : null;
  // A check that passes while its run goes on writes no history row, hence no event: look again while one runs.
  // Mirrored requests are no events either: look again while green takes shadow traffic.
  clearTimeout(poll);
  if (shadow || runs.some((r) => r.phase === 'RUNNING')) poll = setTimeout(() => { if (v === view) soon(); }, POLL_MS);

  const facts = [
    ['Lifecycle', h('span', {id: 'd-lifecycle'}, badge(d.lifecycle), ' ', d.subStep ? badge(state(d), 'sub') : '')],
    ['Current revision', rev(cur)],
    ['Deploying revision', rev(dep)],
    ['Waiting for', d.waitingFor ? h('span', {id: 'd-waiting'}, h('code', {}, d.waitingFor.reason), ' ',
      d.waitingFor.message) : h('span', {id: 'd-waiting'}, 'nothing')],
    ['Approvals', h('span', {id: 'd-approvals'}, approvalsText(d))],
    ['Freeze', h('span', {id: 'd-freeze'}, d.activeFreezeWindow ? h('span', {className: 'frozen'}, 'frozen until ',
      time(d.activeFreezeWindow.endsAt), ': ' + d.activeFreezeWindow.reason) : 'none in force')],
    ['Scheduler acts next', d.nextActionAt ? h('span', {}, time(d.nextActionAt), ' (',
      h('span', {'data-until': d.nextActionAt}, until(d.nextActionAt)), ')') : 'only on events'],
    ['In this state since', time(d.phaseStartedAt)],
    ['Strategy', bg ? `blue-green, ${d.strategy.blueGreen.autoPromote
      ? 'auto-promote after ' + d.strategy.blueGreen.promoteDelaySeconds + ' s' : 'manual promotion'}, old routes kept `
      + d.strategy.blueGreen.scaleDownDelaySeconds + ' s'
      : canary ? `canary, ${d.strategy.canary.steps.length} steps${d.strategy.canary.analysis ? ', background analysis'
        : ''}, old routes kept ${d.strategy.canary.scaleDownDelaySeconds} s` : 'rolling'],
    ['Replicas', String(d.replicas)],
  ];

  const awaiting = d.lifecycle === 'DEPLOYING' && d.subStep === 'DEPLOYING_AWAITING_PROMOTION';
  const actions = [
    {
      id: 'promote', label: !dep ? 'Promote' : canary ? `Resume canary of revision ${dep.number}`
        : `Promote revision ${dep.number}`,
      why: !bg && !canary ? 'Rolling rollouts have nothing to promote: new routes take traffic as they become healthy.'
        : d.lifecycle !== 'DEPLOYING' ? 'No rollout in flight: there is nothing to promote.'
          : canary && !awaiting ? `Not paused: promotion resumes a canary paused until promoted (now ${state(d)}).`
            : !awaiting ? `Not yet: promotion waits until every green route is healthy (now ${state(d)}).`
              : d.waitingFor && d.waitingFor.reason === 'ANALYSIS'
                ? 'Not yet: the pre-promotion analysis is still running; promotion waits for it.'
                : d.waitingFor && ['APPROVALS', 'FREEZE_WINDOW'].includes(d.waitingFor.reason)
                  ? 'Not yet: ' + d.waitingFor.message + '.' : null,
      does: dep && (canary ? `Resumes the canary of revision ${dep.number} after its pause`
        + (d.canaryStatus ? ` at ${d.canaryStatus.weight} % of the traffic` : '') + ': the next steps follow.'
        : `Switches all traffic ${cur ? 'from revision ' + cur.number + ' ' : ''}to revision ${dep.number}`
          + ` (${dep.image}) in one transaction.`),
      mutation: `mutation($d: ID!, $r: ID) { promoteDeployment(input: {deploymentId: $d, expectedRevisionId: $r}) {
        deployment { id } } }`,
      vars: {d: d.id, r: dep && dep.id},
    },
    {
      id: 'rollback', label: dep ? `Roll back revision ${dep.number}` : 'Roll back',
      why: d.lifecycle !== 'DEPLOYING' ? 'No rollout in flight: only a rollout in flight can be rolled back.'
        : d.subStep === 'DEPLOYING_ROLLING_BACK' ? 'Already rolling back.' : null,
      does: dep && `Aborts the rollout of revision ${dep.number}: its routes stop`
        + (cur ? `, revision ${cur.number} keeps all traffic.` : '.'),
      mutation: `mutation($d: ID!) { rollbackDeployment(input: {deploymentId: $d, reason: "from the dashboard"}) {
        deployment { id } } }`,
      vars: {d: d.id},
    },
    {
      id: 'revert', label: previous ? `Revert to revision ${previous.number}` : 'Revert promotion',
      why: d.lifecycle !== 'READY' ? 'Only a READY deployment has a promotion to revert.'
        : warm.length < d.replicas || new Set(warm.map((x) => x.revision.id)).size !== 1
          ? 'No previous revision is kept warm: the scale-down delay has passed, or nothing was promoted yet.' : null,
      does: previous && `Gives all traffic back to revision ${previous.number} (${previous.image}), whose routes are`
        + ` still warm; revision ${cur && cur.number} is kept warm in turn.`,
      mutation: `mutation($d: ID!) { revertPromotion(input: {deploymentId: $d, reason: "from the dashboard"}) {
        deployment { id } } }`,
      vars: {d: d.id},
    },
  ];

  render(v,
    h('p', {className: 'crumbs'}, h('a', {href: '#/'}, '← All deployments')),
    h('h1', {tabindex: -1}, d.name),
    h('dl', {className: 'facts'}, facts.map(([k, val]) => h('div', {}, h('dt', {}, k), h('dd', {}, val)))),
    h('section', {'aria-labelledby': 'actions-h'}, h('h2', {id: 'actions-h'}, 'Actions'),
      h('div', {className: 'actions'}, actions.map((a) => h('div', {className: 'action'},
        h('button', {id: 'act-' + a.id, className: a.id === 'promote' ? 'primary' : null, disabled: !!a.why,
          'aria-describedby': 'why-' + a.id, onclick: () => act(d, a)}, a.label),
        h('p', {id: 'why-' + a.id, className: 'note'}, a.why || a.does))))),
    canary ? canarySection(d) : null,
    shadow ? shadowSection(shadow, cur, dep) : null,
    h('section', {'aria-labelledby': 'analysis-h'}, h('h2', {id: 'analysis-h'}, 'Analysis'),
      runs.length ? h('div', {className: 'runs'}, runs.map(analysisRun))
        : h('p', {className: 'note'}, 'No metric analysis has run for this deployment.')),
    h('section', {'aria-labelledby': 'routes-h'}, h('h2', {id: 'routes-h'}, 'Routes'),
      h('div', {className: 'sides'},
        side('blue', cur ? `Blue · revision ${cur.number}` : 'Blue', cur ? 'serving' : 'no revision serves yet',
          of(cur), d.replicas),
        dep ? side('green', `Green · revision ${dep.number}`, 'deploying', of(dep), d.replicas)
          : side(previous ? 'previous' : 'green', previous ? `Previous · revision ${previous.number}` : 'Green',
            previous ? 'kept warm without traffic' : 'no rollout in flight', others, d.replicas))),
    h('section', {'aria-labelledby': 'history-h'}, h('h2', {id: 'history-h'}, 'History'),
      h('ol', {className: 'timeline'}, history.map(entry))));
}

// Approvals of the rollout in flight against what its strategy requires (SPEC §8).
function approvalsText(d) {
  const spec = d.strategy.type === 'BLUE_GREEN' ? d.strategy.blueGreen : d.strategy.type === 'CANARY'
    ? d.strategy.canary : null;
  const required = spec ? spec.requiredApprovals : 0;
  if (!required && !d.approvals.length) return 'none required';
  const who = d.approvals.map((a) => a.approver + (a.comment ? ` (“${a.comment}”)` : '')).join(', ');
  return `${d.approvals.length} of ${required}` + (who ? ': ' + who : '');
}

function canarySection(d) {
  const steps = d.strategy.canary.steps, st = d.canaryStatus, dep = d.deployingRevision, cur = d.currentRevision;
  const what = (s) => s.setWeight != null ? `Set weight ${s.setWeight} %`
    : s.pause ? (s.pause.seconds != null ? `Pause ${s.pause.seconds} s` : 'Pause until promoted')
      : s.analysis ? `Analysis: ${s.analysis.count} checks, every ${s.analysis.intervalSeconds} s` : 'Unknown step';
  let status = h('p', {id: 'canary-status', className: 'note'}, 'No canary rollout in flight.');
  if (st && dep) {
    const bar = h('div', {className: 'bar', 'aria-hidden': 'true'}, h('span', {className: 'new'}),
      h('span', {className: 'old'}));
    bar.firstChild.style.flexBasis = st.weight + '%'; // CSSOM, allowed by the CSP (no inline style attribute)
    status = h('div', {id: 'canary-status', 'data-weight': st.weight, 'data-step': st.stepIndex},
      h('p', {}, h('strong', {}, st.stepIndex < steps.length ? `Step ${st.stepIndex + 1} of ${steps.length}`
        : 'Full promotion'), ' · ', h('strong', {id: 'canary-weight'}, `${st.weight} %`),
      ` of the traffic on revision ${dep.number} (new)`,
      cur ? [', ', h('strong', {}, `${100 - st.weight} %`), ` on revision ${cur.number}`] : null), bar);
  }
  return h('section', {'aria-labelledby': 'canary-h'}, h('h2', {id: 'canary-h'}, 'Canary'), status,
    h('ol', {className: 'steps', 'aria-label': 'Canary steps'}, steps.map((s, i) => {
      const where = !st ? null : i < st.stepIndex ? 'done' : i === st.stepIndex ? 'current' : null;
      return h('li', {className: where, 'data-step': i, 'aria-current': where === 'current' ? 'step' : null},
        h('span', {className: 'step-n'}, String(i + 1)), ' ', what(s),
        where === 'current' ? h('strong', {className: 'now'}, ' ← now')
          : where === 'done' ? h('span', {className: 'note'}, ' (done)') : null);
    })));
}

// ---- shadow traffic: agreement over time and the newest disagreement, side by side ----
const pct = (n, of) => of ? (100 * n / of).toFixed(1) + ' %' : '—';
const svg = (tag, attrs, ...kids) => {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...kids);
  return el;
};

function shadowSection(st, cur, dep) {
  const n = st.intervals.length, H = 40;
  // One bar per interval, its height the share that agreed; an interval without mirrored requests shows no bar.
  const bars = st.intervals.map((i, x) => i.requests ? svg('rect', {x: x * 10 + 1, width: 8,
    y: H * (1 - i.agreed / i.requests), height: Math.max(1, H * i.agreed / i.requests),
    class: i.agreed === i.requests ? 'agree' : 'drift', 'data-requests': i.requests, 'data-agreed': i.agreed},
  svg('title', {}, `${when(i.start)}: ${pct(i.agreed, i.requests)} of ${i.requests} agreed`)) : null)
    .filter(Boolean);
  const sample = st.samples[0];
  const answer = (cls, title, text) => h('div', {className: 'answer ' + cls}, h('h4', {}, title),
    h('pre', {}, text));
  return h('section', {'aria-labelledby': 'shadow-h', id: 'shadow'}, h('h2', {id: 'shadow-h'}, 'Shadow traffic'),
    h('p', {id: 'shadow-summary', 'data-requests': st.requests, 'data-agreed': st.agreed},
      h('strong', {}, pct(st.agreed, st.requests)), ` agreed of ${st.requests} mirrored requests · `
      + `${st.disagreed} disagreed · ${st.greenErrors} green errors`),
    h('figure', {id: 'shadow-over-time'},
      svg('svg', {viewBox: `0 0 ${n * 10} ${H}`, preserveAspectRatio: 'none', role: 'img',
        'aria-label': `Agreement per ${SHADOW_STEP} s interval over the last ${SHADOW_SECONDS / 60} minutes`},
      svg('line', {x1: 0, x2: n * 10, y1: H, y2: H, class: 'base'}), ...bars),
      h('figcaption', {className: 'note'}, `Share agreed per ${SHADOW_STEP} s, last ${SHADOW_SECONDS / 60} min,`
        + ' oldest left; no bar: nothing mirrored.')),
    sample ? h('article', {id: 'shadow-sample', 'aria-label': 'Newest disagreement'},
      h('h3', {}, 'Newest disagreement'), h('pre', {className: 'request'}, sample.request),
      h('div', {className: 'pair'}, answer('blue', `Blue answer${cur ? ' · revision ' + cur.number : ''}`,
        sample.blueAnswer), answer('green', `Green answer${dep ? ' · revision ' + dep.number : ''}`,
        sample.greenAnswer)))
      : h('p', {className: 'note'}, 'No disagreement so far.'));
}

const KINDS = {PRE_PROMOTION: 'Pre-promotion analysis', POST_PROMOTION: 'Post-promotion analysis',
  CANARY_STEP: 'Canary step analysis', BACKGROUND: 'Background analysis'};
const OUTCOMES = {pass: ['✓', 'pass'], fail: ['✗', 'fail'], none: ['?', 'no number']};
const outcome = (m) => m.passed === true ? 'pass' : m.passed === false ? 'fail' : 'none';
const checkOutcome = (ms) => ms.some((m) => m.passed === false) ? 'fail'
  : ms.some((m) => m.passed == null) ? 'none' : 'pass';
const mark = (o) => h('span', {className: 'mark ' + o, 'data-outcome': o},
  h('span', {'aria-hidden': 'true'}, OUTCOMES[o][0] + ' '), OUTCOMES[o][1]);
const num = (x) => x == null ? '—' : String(Number(x.toPrecision(6)));

function analysisRun(run) {
  const byAt = new Map(); // one check's measurements share their `at` (one transaction)
  for (const m of run.measurements) byAt.set(m.at, [...(byAt.get(m.at) || []), m]);
  const checks = [...byAt.values()], last = checks[checks.length - 1] || [];
  const title = `${KINDS[run.kind] || run.kind} · revision ${run.revision.number}`;
  return h('article', {className: 'run', 'data-kind': run.kind, 'data-phase': run.phase, 'aria-label': title},
    h('h3', {}, title, ' ', badge(run.phase)),
    h('p', {className: 'note'}, `${run.passedChecks} passed · ${run.failedChecks} failed · `,
      run.nextCheckAt ? ['next check ', h('span', {'data-until': run.nextCheckAt}, until(run.nextCheckAt))]
        : ['ended ', time(run.finishedAt)]),
    checks.length ? h('div', {className: 'strip'}, h('span', {className: 'note', id: 'checks-' + run.id}, 'Checks'),
      h('ol', {className: 'checks', 'aria-labelledby': 'checks-' + run.id},
      checks.slice(-20).map((ms) => {
        const o = checkOutcome(ms);
        return h('li', {className: 'mark ' + o, title: `${when(ms[0].at)}: ${OUTCOMES[o][1]}`},
          h('span', {'aria-hidden': 'true'}, OUTCOMES[o][0]), h('span', {className: 'sr-only'}, OUTCOMES[o][1]));
      }))) : null,
    last.length ? h('table', {className: 'measurements'},
      h('caption', {}, 'Latest check ', time(last[0].at)),
      h('thead', {}, h('tr', {}, ['Metric', 'Result', 'Value', 'What was read'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, last.map((m) => h('tr', {'data-metric': m.metric, 'data-outcome': outcome(m)},
        h('th', {scope: 'row'}, m.metric), h('td', {}, mark(outcome(m))), h('td', {}, num(m.value)),
        h('td', {className: 'note'}, m.message)))))
      : h('p', {className: 'note'}, 'No check taken yet.'));
}

function side(color, title, subtitle, routes, replicas) {
  const healthy = routes.filter((x) => x.status === 'HEALTHY').length;
  const traffic = Math.round(100 * routes.reduce((sum, x) => sum + x.trafficRatio, 0));
  return h('section', {className: 'side ' + color, 'aria-label': title},
    h('h3', {}, title, ' ', h('span', {className: 'note'}, subtitle)),
    h('p', {className: 'note'}, `${healthy} of ${replicas} healthy · ${traffic}% of traffic`),
    routes.length ? h('ul', {className: 'routes'}, routes.map((x) => h('li', {
      className: 'route', 'data-revision': x.revision.number, 'data-status': x.status, 'data-traffic': x.trafficStatus,
    }, h('code', {title: x.id}, x.id.slice(0, 8)), ' ', badge(x.status),
    ' ', badge(x.trafficStatus === 'ACTIVE' ? `ACTIVE ${Math.round(100 * x.trafficRatio)}%` : 'INACTIVE',
      x.trafficStatus), x.endpointUrl ? h('span', {className: 'note'}, ' ', x.endpointUrl) : null)))
      : h('p', {className: 'note'}, 'No routes.'));
}

function entry(e) {
  const from = e.fromSubStep || e.fromLifecycle, to = e.toSubStep || e.toLifecycle;
  return h('li', {'data-result': e.result},
    h('div', {}, time(e.createdAt), ' ', h('strong', {}, e.phase), ' ', badge(e.result),
      from !== to ? h('span', {className: 'note'}, ` ${short(from)} → ${short(to)}`) : null,
      e.attempts > 1 ? h('span', {className: 'note'}, ` ×${e.attempts}`) : null),
    h('div', {}, e.message, e.errorCode ? h('code', {}, ' ' + e.errorCode) : null,
      h('span', {className: 'note'}, ' by ' + e.actor)));
}

function confirmed(title, text, label) {
  const dialog = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = label;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), {once: true});
    dialog.showModal();
  });
}

async function act(d, a) {
  if (!await confirmed(`${a.label} of ${d.name}?`, a.does, a.label)) return;
  showError(null, 'action');
  try {
    await gql(a.mutation, a.vars);
    announce(a.label + ': done');
  } catch (e) {
    showError(e, 'action');
  }
  await refresh();
}

// ---- token ----
$('token').value = token();
$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const value = $('token').value.trim().replace(/^Bearer\s+/i, '');
  if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  route();
});
$('forget').addEventListener('click', () => { sessionStorage.removeItem(KEY); $('token').value = ''; route(); });

window.addEventListener('hashchange', route);
route();
