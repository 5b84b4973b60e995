'use strict';
// The harness page: plain DOM, no build step. Every call goes to the harness (/harness/...), which
// forwards the token to the API; the page never holds a signing secret.

const $ = (selector) => document.querySelector(selector);
const page = { state: null, lastSeq: 0 };

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? '')));
  return node;
}

async function call(method, path, body) {
  const headers = { 'X-Tenant-Id': $('#tenant').value.trim() };
  const token = $('#token').value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  return { status: response.status, json, text, headers: response.headers };
}

function describeError(reply) {
  const error = reply.json && reply.json.error;
  if (!error) return `HTTP ${reply.status} ${reply.text.slice(0, 200)}`;
  let where = '';
  if (error.field && error.field.startsWith('triggerRule.')) where = ` (rule path ${error.field.slice('triggerRule.'.length)})`;
  else if (error.field) where = ` (field ${error.field})`;
  return `${reply.status} ${error.code}: ${error.message}${where}`;
}

function say(selector, text, ok) {
  const node = $(selector);
  node.textContent = text;
  node.className = `note ${ok === undefined ? '' : ok ? 'ok' : 'error'}`;
}

// -- state -----------------------------------------------------------------------------------------

async function loadState() {
  const reply = await call('GET', '/harness/state');
  page.state = reply.json;
  const state = page.state;
  $('#api-url').textContent = state.apiUrl;
  $('#receiver-url').textContent = state.receiverUrl;
  $('#use-dev-token').hidden = !state.devTokens;
  $('#system-row').hidden = !state.systemEvents;
  const topics = $('#system-topic');
  if (topics.options.length === 0) {
    for (const item of state.producerTopics) topics.append(el('option', { value: item.topic }, `${item.topic} → ${item.eventType}`));
  }
  $('#secrets').textContent = state.secrets.length
    ? `receiver secrets: ${state.secrets.map((s) => `${s.label} ${s.preview}`).join(' · ')}`
    : 'no secret yet';
  const list = $('#endpoints');
  list.replaceChildren(...state.endpoints.map((endpoint) => el('li', { 'data-endpoint': endpoint.endpointId },
    `${endpoint.endpointId} · customer ${endpoint.endCustomerId} · events ${endpoint.events.join(',')} · signed with ${endpoint.secretLabels.join(' + ')} `,
    el('button', { type: 'button', class: 'rotate', onclick: () => rotate(endpoint.endpointId) }, 'rotate secret'))));
  const script = state.script;
  $('#script-status').textContent = script.answer ? `answering ${script.answer} to the next ${script.remaining}` : 'answering normally';
  $('#mode').value = state.mode;
}

// -- 1 catalog -------------------------------------------------------------------------------------

async function useDevToken() {
  const reply = await call('POST', '/harness/dev-token', { tenant: $('#tenant').value.trim() });
  if (reply.status !== 200) { say('#token-status', describeError(reply), false); return; }
  $('#token').value = reply.json.token;
  say('#token-status', `development token for tenant ${reply.json.tenant} (role ADMIN, 1 h)`, true);
  await loadCatalog();
}

async function loadCatalog() {
  const reply = await call('GET', '/harness/api/api/v1/admin/event-definitions');
  const body = $('#catalog-table tbody');
  if (reply.status !== 200) { say('#token-status', describeError(reply), false); body.replaceChildren(); return; }
  say('#token-status', `${reply.json.items.length} event types`, true);
  body.replaceChildren(...reply.json.items.map((definition) => el('tr', { 'data-event-type': definition.eventType },
    el('td', {}, definition.eventType), el('td', {}, definition.source), el('td', {}, definition.category),
    el('td', {}, definition.severity), el('td', {}, definition.mandatory ? 'mandatory' : ''))));
}

async function addDefinition(submitted) {
  submitted.preventDefault();
  let triggerRule = null;
  const ruleText = $('#def-rule').value.trim();
  if (ruleText) {
    try { triggerRule = JSON.parse(ruleText); } catch (error) { say('#definition-result', `the rule is not JSON: ${error.message}`, false); return; }
  }
  const reply = await call('POST', '/harness/api/api/v1/admin/event-definitions', {
    eventType: $('#def-type').value.trim(), displayName: $('#def-name').value.trim(),
    category: $('#def-category').value, severity: $('#def-severity').value, defaultChannels: ['WEBHOOK'], triggerRule,
  });
  if (reply.status !== 201) { say('#definition-result', describeError(reply), false); return; }
  say('#definition-result', `created ${reply.json.eventType}`, true);
  await loadCatalog();
}

// -- 2 webhook -------------------------------------------------------------------------------------

async function generateSecret() {
  const reply = await call('POST', '/harness/secrets');
  say('#webhook-result', `generated ${reply.json.label} (${reply.json.preview}); the receiver checks with it`, true);
  await loadState();
}

async function register() {
  const events = $('#events').value.split(',').map((item) => item.trim()).filter(Boolean);
  const reply = await call('POST', '/harness/webhook/register', { endCustomerId: $('#customer').value.trim(), events });
  if (reply.status !== 201) { say('#webhook-result', describeError(reply), false); return; }
  say('#webhook-result', `registered ${reply.json.endpointId} → ${page.state.receiverUrl}`, true);
  await loadState();
}

async function rotate(endpointId) {
  const reply = await call('POST', `/harness/webhook/${encodeURIComponent(endpointId)}/rotate`);
  if (reply.status !== 200) { say('#webhook-result', describeError(reply), false); return; }
  say('#webhook-result', `rotated ${endpointId}: deliveries now carry both signatures during the overlap`, true);
  await loadState();
}

function newestEndpoint() {
  const endpoints = page.state ? page.state.endpoints : [];
  return endpoints.length ? endpoints[endpoints.length - 1] : null;
}

// -- 3 fire ----------------------------------------------------------------------------------------

async function sendProbe() {
  const endpoint = newestEndpoint();
  if (!endpoint) { say('#fire-result', 'register an endpoint first (section 2)', false); return; }
  const reply = await call('POST', `/harness/api/api/v1/webhook-endpoints/${encodeURIComponent(endpoint.endpointId)}/test`);
  if (reply.status !== 202) { say('#fire-result', describeError(reply), false); return; }
  say('#fire-result', `webhook.test sent, eventId ${reply.headers.get('X-Aforo-Event-Id')}`, true);
}

async function emit() {
  let payload;
  try { payload = JSON.parse($('#emit-payload').value); } catch (error) { say('#fire-result', `the payload is not JSON: ${error.message}`, false); return; }
  const type = $('#emit-type').value.trim();
  const reply = await call('POST', `/harness/api/api/v1/notification-event-definitions/${encodeURIComponent(type)}/emit`,
    { customerId: $('#customer').value.trim(), payload });
  if (reply.status !== 202) { say('#fire-result', describeError(reply), false); return; }
  say('#fire-result', `${type} emitted, eventId ${reply.headers.get('X-Aforo-Event-Id')}`, true);
}

async function produce() {
  let record;
  try { record = JSON.parse($('#system-record').value); } catch (error) { say('#fire-result', `the record is not JSON: ${error.message}`, false); return; }
  record = { ...record, tenantId: $('#tenant').value.trim(), customerId: $('#customer').value.trim() };
  const reply = await call('POST', '/harness/fire/system', { topic: $('#system-topic').value, record });
  if (reply.status !== 202) { say('#fire-result', describeError(reply), false); return; }
  say('#fire-result', `produced to ${reply.json.topic} (partition ${reply.json.partition}, offset ${reply.json.offset}); the bridge takes it from there`, true);
}

// -- 4 inbox ---------------------------------------------------------------------------------------

function badge(delivery) {
  return delivery.verified
    ? el('span', { class: 'badge-ok', title: delivery.explanation }, `✅ ${delivery.explanation}`)
    : el('span', { class: 'badge-bad', title: delivery.explanation }, `❌ ${delivery.explanation}`);
}

function showDelivery(delivery) {
  const tbody = $('#inbox-table tbody');
  const marks = [];
  if (delivery.duplicate) marks.push(`duplicate of #${delivery.duplicateOf}`);
  else if (delivery.repeatOf) marks.push(`retry of #${delivery.repeatOf}`);
  const row = el('tr', { 'data-seq': delivery.seq, 'data-verified': String(delivery.verified), 'data-reason': delivery.reason || '',
    'data-event-type': delivery.eventType || '', 'data-event-id': delivery.eventId || '', class: delivery.duplicate ? 'duplicate' : '' },
  el('td', {}, delivery.seq), el('td', {}, delivery.receivedAt), el('td', {}, delivery.eventType),
  el('td', {}, delivery.eventId, marks.length ? el('div', { class: 'note mark' }, marks.join(' · ')) : ''),
  el('td', {}, delivery.attempt), el('td', {}, badge(delivery)), el('td', {}, delivery.answer.label));
  const headers = Object.entries(delivery.headers).map(([name, value]) => `${name}: ${value}`).join('\n');
  const detail = el('tr', { class: 'detail', hidden: '' }, el('td', { colspan: '7' }, el('pre', {}, headers), el('pre', { class: 'raw-body' }, delivery.body)));
  row.addEventListener('click', () => { detail.hidden = !detail.hidden; });
  tbody.prepend(detail);
  tbody.prepend(row);
  $('#inbox-count').textContent = `${delivery.seq} received`;
}

function listen() {
  const source = new EventSource('/harness/inbox/stream');
  source.addEventListener('delivery', (message) => {
    const delivery = JSON.parse(message.data);
    if (delivery.seq <= page.lastSeq) return;
    page.lastSeq = delivery.seq;
    showDelivery(delivery);
    loadState();
  });
}

async function setMode() {
  await call('PUT', '/harness/receiver', { mode: $('#mode').value });
  await loadState();
}

async function applyScript() {
  const count = Number($('#script-count').value);
  const reply = await call('PUT', '/harness/receiver', { script: { answer: $('#script-answer').value, count } });
  if (reply.status !== 200) { $('#script-status').textContent = describeError(reply); return; }
  await loadState();
}

// -- 5 audit ---------------------------------------------------------------------------------------

async function loadAudit() {
  const customer = $('#customer').value.trim();
  const reply = await call('GET', `/harness/audit?endCustomerId=${encodeURIComponent(customer)}&limit=200`);
  const tbody = $('#audit-table tbody');
  if (reply.status !== 200) { say('#audit-result', describeError(reply), false); return; }
  say('#audit-result', `${reply.json.items.length} rows for ${customer}, newest first`, true);
  tbody.replaceChildren(...reply.json.items.map((row) => el('tr', { 'data-status': row.status, 'data-event-id': row.eventId },
    el('td', {}, row.createdAt), el('td', {}, row.eventType), el('td', {}, row.eventId), el('td', {}, row.attempt),
    el('td', {}, row.status), el('td', {}, row.explanation),
    el('td', {}, row.replayable ? el('button', { type: 'button', class: 'replay', onclick: () => replay(row.deliveryId) }, 'replay') : ''))));
}

async function replay(deliveryId) {
  const reply = await call('POST', `/harness/api/api/v1/deliveries/${encodeURIComponent(deliveryId)}/replay`);
  if (reply.status !== 202) { say('#audit-result', describeError(reply), false); return; }
  say('#audit-result', `replay requested: same eventId ${reply.headers.get('X-Aforo-Event-Id')}, new attempts`, true);
}

// -- wiring ----------------------------------------------------------------------------------------

$('#use-dev-token').addEventListener('click', useDevToken);
$('#load-catalog').addEventListener('click', loadCatalog);
$('#definition-form').addEventListener('submit', addDefinition);
$('#generate-secret').addEventListener('click', generateSecret);
$('#register').addEventListener('click', register);
$('#send-probe').addEventListener('click', sendProbe);
$('#emit').addEventListener('click', emit);
$('#produce').addEventListener('click', produce);
$('#mode').addEventListener('change', setMode);
$('#apply-script').addEventListener('click', applyScript);
$('#load-audit').addEventListener('click', loadAudit);
loadState().then(listen);
