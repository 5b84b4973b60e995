import type { IncomingMessage, ServerResponse } from 'node:http';

export declare const SIGNATURE_HEADER: 'X-Aforo-Signature';
export declare const EVENT_ID_HEADER: 'X-Aforo-Event-Id';
export declare const DEFAULT_TOLERANCE_SECONDS: 300;

export type Reason =
  | 'header_malformed'
  | 'no_matching_signature'
  | 'timestamp_too_old'
  | 'timestamp_in_future'
  | 'body_not_json';

export declare class WebhookVerificationError extends Error {
  readonly reason: Reason;
  constructor(reason: Reason, message: string);
}

export interface VerifyOptions {
  toleranceSeconds?: number;
  /** unix seconds; default Date.now() / 1000 */
  now?: number;
}

export declare function verify(
  rawBody: Buffer | string,
  header: string | undefined,
  secrets: string | string[],
  options?: VerifyOptions,
): Record<string, unknown>;

export declare function captureRawBody(req: IncomingMessage, res: ServerResponse, buffer: Buffer): void;

export declare function verifyWebhook(
  secrets: string | string[],
  options?: VerifyOptions,
): (req: any, res: any, next: (error?: unknown) => void) => void;
