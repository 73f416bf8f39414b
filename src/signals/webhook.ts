import { createHmac, timingSafeEqual } from "node:crypto";
import { ConfigError, SignalDeliveryError } from "../errors.js";
import { describe } from "../util/describe.js";
import { sleep } from "../util/sleep.js";
import { eventId, type GuardEvent, type SignalSink } from "./types.js";

export const SIGNATURE_HEADER = "x-judge-guard-signature";
export const IDEMPOTENCY_HEADER = "idempotency-key";

export interface WebhookOptions {
  readonly url: string;
  /** Shared secret for the HMAC-SHA256 signature of each body. */
  readonly secret: string;
  /** Per attempt. @default 5000 */
  readonly timeoutMs?: number;
  /** Further attempts after a timeout, a network error, a 429 or a 5xx. @default 3 */
  readonly retries?: number;
  /** First delay between attempts, doubled each time. @default 500 */
  readonly backoffMs?: number;
  /** Sink name in the ledger. @default "webhook" */
  readonly name?: string;
  /** For tests and runtimes without a global fetch. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
}

/** `sha256=<hex HMAC-SHA256 of the raw body with the secret>`. */
export function sign(body: string | Uint8Array, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/**
 * What is wrong with a webhook's `url` or `secret`, or undefined. The one check of both
 * {@link webhookSink} and JUDGE_GUARD_WEBHOOK_URL / _SECRET, each of which names it its own way.
 */
export function webhookProblem(
  url: unknown,
  secret: unknown,
): { readonly option: "url" | "secret"; readonly expected: string } | undefined {
  let protocol: string | undefined;
  try {
    protocol = new URL(url as string).protocol;
  } catch {}
  if (typeof url !== "string" || (protocol !== "http:" && protocol !== "https:"))
    return { option: "url", expected: "an http or https URL" };
  if (typeof secret !== "string" || secret.length < 16)
    return { option: "secret", expected: "a string of at least 16 characters" };
  return undefined;
}

/**
 * POSTs each event as JSON, signed with `X-Judge-Guard-Signature: sha256=<hex HMAC>` of the raw
 * body. Every delivery of one event (one stuck episode, one budget alert) carries the same
 * `Idempotency-Key`: its `episode_id` or `alert_id`, which the signed body carries too. The
 * header itself is not signed, so a receiver recognises a retry (or a replayed capture) by the
 * id in the verified body, {@link VerifyResult}'s `id`, never by the header alone; see
 * {@link verifyWebhook}. 4xx answers other than 429 are final; timeouts, network errors, 429 and
 * 5xx are retried with exponential backoff.
 */
export function webhookSink(options: WebhookOptions): SignalSink {
  const problem = webhookProblem(options.url, options.secret);
  if (problem !== undefined) {
    // The secret is never shown, nor its length.
    const got = problem.option === "url" ? `, got ${describe(options.url)}` : "";
    throw new ConfigError(problem.option, `webhookSink: ${problem.option} must be ${problem.expected}${got}`);
  }
  const url = new URL(options.url);
  const doFetch = options.fetch ?? globalThis.fetch;
  const timeoutMs = options.timeoutMs ?? 5000;
  const retries = options.retries ?? 3;
  const backoffMs = options.backoffMs ?? 500;

  return {
    name: options.name ?? "webhook",
    async send(event: GuardEvent) {
      const body = JSON.stringify(event);
      const headers = {
        "content-type": "application/json",
        [SIGNATURE_HEADER]: sign(body, options.secret),
        // The episode (or alert), not the body: a delivery retried after the cooldown carries a
        // new ts and count, and must still be recognisable as the same event.
        [IDEMPOTENCY_HEADER]: eventId(event),
        "user-agent": "judge-guard",
      };
      let last = "";
      for (let attempt = 1; ; attempt++) {
        try {
          const res = await doFetch(url, {
            method: "POST",
            headers,
            body,
            signal: AbortSignal.timeout(timeoutMs),
          });
          await res.body?.cancel().catch(() => {});
          if (res.ok) return { attempts: attempt };
          last = `HTTP ${res.status}`;
          if (res.status < 500 && res.status !== 429)
            throw new SignalDeliveryError(`webhook: ${url.host} answered ${last}`, attempt);
        } catch (e) {
          if (e instanceof SignalDeliveryError) throw e;
          last =
            (e as Error)?.name === "TimeoutError"
              ? `no answer within ${timeoutMs} ms`
              : ((e as Error)?.message ?? String(e));
        }
        if (attempt > retries)
          throw new SignalDeliveryError(`webhook: ${url.host}: ${last} (after ${attempt} attempts)`, attempt);
        await sleep(backoffMs * 2 ** (attempt - 1));
      }
    },
  };
}

/**
 * A verified delivery: the event, and `id`, its `episode_id` or `alert_id` read from the signed
 * body: the key to act on once.
 */
export type VerifyResult = { ok: true; event: GuardEvent; id: string } | { ok: false; reason: string };

export interface VerifyOptions {
  /** How far an event's `ts` may be from `now`. @default 300000 (5 minutes) */
  readonly toleranceMs?: number;
  /** @default Date.now() */
  readonly now?: number;
  /**
   * The delivery's `Idempotency-Key` header (absent: `undefined` or `null`): a delivery whose
   * header is not the signed body's id is refused, so the header can be trusted as far as the body.
   */
  readonly idempotencyKey?: string | readonly string[] | null;
}

type Header = string | readonly string[] | null | undefined;

/** One header's value; a header sent twice is not one value. */
function single(h: Header): string | undefined {
  if (typeof h === "string") return h;
  return h?.length === 1 ? h[0] : undefined;
}

/**
 * For the receiving side: checks a delivery's signature (in constant time) against the raw
 * body, exactly as received, and rejects events older than `toleranceMs`.
 *
 * A capture replayed within the tolerance verifies again: act once per `result.id` (the
 * episode or alert id from the signed body), remembered for at least twice the tolerance (a
 * delivery verifies while its `ts` is within the tolerance of the receiver's clock, either
 * side). Give `idempotencyKey` to refuse deliveries whose header does not match the body.
 */
export function verifyWebhook(
  rawBody: string | Uint8Array,
  signatureHeader: Header,
  secret: string,
  options: VerifyOptions = {},
): VerifyResult {
  const signature = single(signatureHeader);
  if (signatureHeader === undefined || signatureHeader === null || signatureHeader.length === 0)
    return { ok: false, reason: `missing ${SIGNATURE_HEADER} header` };
  if (signature === undefined) return { ok: false, reason: `more than one ${SIGNATURE_HEADER} header` };
  const expected = Buffer.from(sign(rawBody, secret));
  const given = Buffer.from(signature.trim());
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    return { ok: false, reason: "bad signature" };
  let event: GuardEvent;
  try {
    event = JSON.parse(typeof rawBody === "string" ? rawBody : Buffer.from(rawBody).toString("utf8"));
  } catch {
    return { ok: false, reason: "body is not JSON" };
  }
  const ts = Date.parse(event?.ts);
  if (Number.isNaN(ts)) return { ok: false, reason: "event has no valid ts" };
  const age = (options.now ?? Date.now()) - ts;
  if (Math.abs(age) > (options.toleranceMs ?? 300_000))
    return { ok: false, reason: "stale event (ts outside the tolerance)" };
  const id = event.type === "stuck_session" ? event.episode_id : event.alert_id;
  if (typeof id !== "string" || id === "")
    return { ok: false, reason: "event has no episode_id or alert_id" };
  const key = options.idempotencyKey;
  if (key !== undefined && key !== null && single(key)?.trim() !== id)
    return { ok: false, reason: `${IDEMPOTENCY_HEADER} does not match the signed event's id` };
  return { ok: true, event, id };
}
