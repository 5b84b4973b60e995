'use strict';
// One verification per input line, for the Python tests: {"body", "header", "secrets", "toleranceSeconds", "now"}
// in, {"envelope": ...} or {"reason": ...} out, in order. Loads the package by path: no install step.
const path = require('node:path');
const readline = require('node:readline');
const { verify, WebhookVerificationError } = require(path.resolve(__dirname, '../../../clients/node'));

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const item = JSON.parse(line);
  let answer;
  try {
    answer = { envelope: verify(item.body, item.header, item.secrets, { toleranceSeconds: item.toleranceSeconds, now: item.now }) };
  } catch (error) {
    if (!(error instanceof WebhookVerificationError)) throw error;
    answer = { reason: error.reason };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
});
