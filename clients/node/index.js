'use strict';
// Verify aforo-notify webhook deliveries: X-Aforo-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>].
// Each v1 is HMAC-SHA256 over `${t}.` + the raw body, keyed with an endpoint's signing secret; during a
// rotation the header carries one v1 per valid secret. No dependencies: node:crypto only.

const crypto = require('node:crypto');

const SIGNATURE_HEADER = 'X-Aforo-Signature';
const EVENT_ID_HEADER = 'X-Aforo-Event-Id';
const DEFAULT_TOLERANCE_SECONDS = 300;
const MAX_TIMESTAMP_DIGITS = 12;

class WebhookVerificationError extends Error {
  /** reason: header_malformed | no_matching_signature | timestamp_too_old | timestamp_in_future | body_not_json */
  constructor(reason, message) {
    super(message);
    this.name = 'WebhookVerificationError';
    this.reason = reason;
  }
}

function parseHeader(header) {
  let timestamp = null;
  const signatures = [];
  for (const rawItem of header.split(',')) {
    const item = rawItem.trim();
    const at = item.indexOf('=');
    if (at < 0) throw new WebhookVerificationError('header_malformed', `header item ${JSON.stringify(item)} has no '='`);
    const key = item.slice(0, at);
    const value = item.slice(at + 1);
    if (key === 't') {
      if (timestamp !== null) throw new WebhookVerificationError('header_malformed', 'header has more than one t=');
      if (!/^[0-9]+$/.test(value) || value.length > MAX_TIMESTAMP_DIGITS) {
        throw new WebhookVerificationError('header_malformed', 't= is not unix seconds');
      }
      timestamp = Number(value);
    } else if (key === 'v1') {
      signatures.push(value);
    }
    // Other schemes (a future v2) are ignored, so adding one never breaks a receiver.
  }
  if (timestamp === null) throw new WebhookVerificationError('header_malformed', 'header has no t=');
  if (signatures.length === 0) throw new WebhookVerificationError('header_malformed', 'header has no v1= signature');
  return { timestamp, signatures };
}

function secretList(secrets) {
  const listed = typeof secrets === 'string' ? [secrets] : Array.isArray(secrets) ? secrets : null;
  if (!listed || listed.length === 0 || listed.some((secret) => typeof secret !== 'string' || secret === '')) {
    throw new TypeError('secrets: give at least one signing secret, none of them empty');
  }
  return listed;
}

/**
 * The delivered envelope, once `header` proves `rawBody` was signed with one of `secrets` within
 * `toleranceSeconds` (default 300) of `now` (unix seconds; default the clock), in either direction.
 * rawBody must be the bytes as received (a Buffer, or a string that is exactly them in UTF-8).
 * Throws WebhookVerificationError with `reason`.
 */
function verify(rawBody, header, secrets, options = {}) {
  const toleranceSeconds = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  let body;
  if (Buffer.isBuffer(rawBody)) body = rawBody;
  else if (typeof rawBody === 'string') body = Buffer.from(rawBody, 'utf8');
  else throw new TypeError('rawBody must be the raw request body (a Buffer or a string), not a parsed object');
  const keys = secretList(secrets);
  if (typeof header !== 'string' || header === '') {
    throw new WebhookVerificationError('header_malformed', `no ${SIGNATURE_HEADER} header`);
  }
  const { timestamp, signatures } = parseHeader(header);
  const signedPayload = Buffer.concat([Buffer.from(`${timestamp}.`, 'ascii'), body]);
  let matched = false;
  for (const secret of keys) {
    const expected = Buffer.from(crypto.createHmac('sha256', Buffer.from(secret, 'utf8')).update(signedPayload).digest('hex'), 'ascii');
    for (const candidate of signatures) {
      const given = Buffer.from(candidate, 'utf8');
      // timingSafeEqual needs equal lengths; a length mismatch is no match (the length is not secret).
      // No early exit, so the time taken does not tell which entry matched.
      if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) matched = true;
    }
  }
  if (!matched) {
    throw new WebhookVerificationError(
      'no_matching_signature',
      'no v1= signature matches the body with the given secrets (wrong secret, or a body that is not the raw bytes received)',
    );
  }
  const current = options.now ?? Date.now() / 1000;
  if (timestamp < current - toleranceSeconds) {
    throw new WebhookVerificationError('timestamp_too_old', `signed ${Math.floor(current - timestamp)} s ago, more than ${toleranceSeconds} s`);
  }
  if (timestamp > current + toleranceSeconds) {
    throw new WebhookVerificationError(
      'timestamp_in_future',
      `signed ${Math.floor(timestamp - current)} s in the future, more than ${toleranceSeconds} s (check the clock)`,
    );
  }
  let envelope;
  try {
    envelope = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new WebhookVerificationError('body_not_json', `the signed body is not JSON: ${error.message}`);
  }
  if (envelope === null || typeof envelope !== 'object' || Array.isArray(envelope)) {
    throw new WebhookVerificationError('body_not_json', 'the signed body is not a JSON object');
  }
  return envelope;
}

/** The `verify` hook for express.json(): keeps the raw bytes on req.rawBody before JSON parsing. */
function captureRawBody(req, _res, buffer) {
  req.rawBody = Buffer.from(buffer);
}

/**
 * Express middleware: `app.post('/hooks', express.json({ verify: captureRawBody }), verifyWebhook(secrets), handler)`.
 * Verifies req.rawBody, sets req.webhookEnvelope, or answers 400 with the reason.
 */
function verifyWebhook(secrets, options = {}) {
  secretList(secrets);
  return function aforoWebhookVerifier(req, res, next) {
    if (!Buffer.isBuffer(req.rawBody)) {
      next(new Error('req.rawBody is missing: mount express.json({ verify: captureRawBody }) before verifyWebhook'));
      return;
    }
    try {
      req.webhookEnvelope = verify(req.rawBody, req.get(SIGNATURE_HEADER), secrets, options);
    } catch (error) {
      if (error instanceof WebhookVerificationError) {
        res.status(400).json({ error: { code: error.reason, message: error.message } });
        return;
      }
      next(error);
      return;
    }
    next();
  };
}

module.exports = {
  DEFAULT_TOLERANCE_SECONDS,
  EVENT_ID_HEADER,
  SIGNATURE_HEADER,
  WebhookVerificationError,
  captureRawBody,
  verify,
  verifyWebhook,
};
