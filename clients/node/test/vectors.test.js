'use strict';
// `npm test` (node --test): the shared vectors, and the Express middleware without Express.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');
const fs = require('node:fs');
const { verify, verifyWebhook, captureRawBody, WebhookVerificationError } = require('..');

const vectors = JSON.parse(fs.readFileSync(path.join(__dirname, '../../test-vectors/webhook-signatures.json'), 'utf8'));

for (const vector of vectors.verification) {
  test(`vector: ${vector.name}`, () => {
    const options = { toleranceSeconds: vector.toleranceSeconds, now: vector.now };
    if (vector.expected.reason) {
      assert.throws(() => verify(vector.body, vector.header, vector.secrets, options),
        (error) => error instanceof WebhookVerificationError && error.reason === vector.expected.reason);
    } else {
      assert.deepEqual(verify(Buffer.from(vector.body, 'utf8'), vector.header, vector.secrets, options), vector.expected.envelope);
    }
  });
}

test('signing vectors verify with each of their secrets', () => {
  for (const vector of vectors.signing) {
    for (const secret of vector.secrets) {
      assert.ok(verify(vector.body, vector.header, secret, { now: vector.timestamp }));
    }
  }
});

test('no secret is a programming error, not a verification failure', () => {
  assert.throws(() => verify('{}', 't=1,v1=00', []), TypeError);
  assert.throws(() => verify('{}', 't=1,v1=00', ''), TypeError);
  assert.throws(() => verify({}, 't=1,v1=00', 'whsec_x'), TypeError);
});

function delivery(secret, body, timestamp) {
  const signature = crypto.createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return { rawBody: Buffer.from(body), get: (name) => (name === 'X-Aforo-Signature' ? `t=${timestamp},v1=${signature}` : undefined) };
}

function response() {
  return { statusCode: 200, body: null, status(code) { this.statusCode = code; return this; }, json(body) { this.body = body; return this; } };
}

test('verifyWebhook passes a genuine delivery on with its envelope and answers 400 with the reason otherwise', () => {
  const now = Math.floor(Date.now() / 1000);
  const middleware = verifyWebhook(['whsec_node_test_secret']);
  const genuine = delivery('whsec_node_test_secret', '{"eventId":"e1"}', now);
  let called = 0;
  middleware(genuine, response(), (error) => { assert.equal(error, undefined); called += 1; });
  assert.equal(called, 1);
  assert.deepEqual(genuine.webhookEnvelope, { eventId: 'e1' });

  const forged = delivery('whsec_someone_else', '{"eventId":"e1"}', now);
  const answer = response();
  middleware(forged, answer, () => assert.fail('a forged delivery went through'));
  assert.equal(answer.statusCode, 400);
  assert.equal(answer.body.error.code, 'no_matching_signature');
});

test('verifyWebhook without captureRawBody is a configuration error', () => {
  let failure;
  verifyWebhook('whsec_x')({ get: () => undefined }, response(), (error) => { failure = error; });
  assert.match(String(failure), /captureRawBody/);
  const request = {};
  captureRawBody(request, null, Buffer.from('{}'));
  assert.ok(Buffer.isBuffer(request.rawBody));
});
