/**
 * `judge-guard/client`: the guard's interface over HTTP, for runtimes that cannot load the
 * SQLite ledger (Phantom runs on Bun). It uses `fetch` and nothing else, so it runs under Node
 * and Bun alike, and the Phantom adapters (`judge-guard/phantom`) take it in place of a guard.
 */

import { CostEstimator, DEFAULT_ESTIMATOR } from "../budget/estimator.js";
import { LIMITS } from "../domain/limits.js";
import {
  ConfigError,
  InvalidRequestError,
  JudgeGuardError,
  SidecarUnreachableError,
  type SkipDetails,
  skipError,
} from "../errors.js";
import type { Assessment, AssessOptions, SessionState, Settlement, Ticket } from "../guard/guard.js";
import {
  type CallOptions,
  type Outcome,
  outcomeValue,
  type RunOptions,
  SKIP_CODES,
  type SkippedOutcome,
} from "../guard/outcome.js";
import {
  checkTranscriptSize,
  DEFAULT_MAX_TRANSCRIPT_TOKENS,
  type JudgeRequest,
  normalizeRequest,
  type SessionRef,
} from "../guard/request.js";
import { DEFAULT_PRICES, PriceTable } from "../pricing/prices.js";
import { hasUnreadUsage, type ReportedCost, readUsage } from "../pricing/usage.js";
import { toMicros, toUsd } from "../util/money.js";
import { printable } from "../util/printable.js";
import { sleep } from "../util/sleep.js";
import {
  type AdmissionWire,
  type AssessmentWire,
  assessmentFromWire,
  judgesToWire,
  requestToWire,
  type SessionStateWire,
  sessionStateFromWire,
  settlementToWire,
  skippedFromWire,
} from "../wire/map.js";
import { LocalBudget, type LocalBudgetCaps } from "./local-budget.js";

export { SidecarUnreachableError } from "../errors.js";
export type { LocalBudgetCaps } from "./local-budget.js";

export interface ClientOptions {
  /** The sidecar, e.g. http://127.0.0.1:8787. */
  readonly url: string;
  /** JUDGE_GUARD_TOKEN of the sidecar, sent as a bearer token. */
  readonly token?: string;
  /** Per request to the sidecar (not the judge call). @default 2000 */
  readonly timeoutMs?: number;
  /**
   * When the sidecar does not answer: `local` admits calls against a budget kept in this
   * process (`localBudget`), so judging, and learning, goes on within caps; `closed` skips the
   * judge (a LEDGER_UNAVAILABLE skip); `open` calls it unguarded, without any cap.
   * @default "local"
   */
  readonly onUnreachable?: "local" | "closed" | "open";
  /**
   * The caps of `onUnreachable: "local"`, per session key and for all keys over a rolling
   * 24 h. Each defaults to its guard variable (JUDGE_GUARD_SESSION_BUDGET_USD,
   * JUDGE_GUARD_DAILY_BUDGET_USD, JUDGE_GUARD_SESSION_MAX_CALLS: a number or "none") when set,
   * else to the guard's default ($5, $50, 1000 calls).
   */
  readonly localBudget?: LocalBudgetCaps;
  /** Told of every request the sidecar did not answer (the outage itself is logged once). */
  readonly onError?: (error: Error) => void;
  /** Reads the cost from a judge's result. @default readUsage */
  readonly usageOf?: (result: unknown) => ReportedCost | undefined;
  readonly fetch?: typeof fetch;
}

/**
 * The sidecar did not answer a request. It does not leave the client: a judge call falls back
 * (`onUnreachable`), an operator action throws a {@link SidecarUnreachableError}; `onError` is
 * told of it.
 */
class Unreachable extends JudgeGuardError {
  constructor(message: string) {
    super("SIDECAR_UNREACHABLE", message);
  }
}

/** What a client has done without its sidecar, since it was created. */
export interface ClientStats {
  /** Requests to the sidecar that failed (no answer, a 5xx, a refusal). */
  readonly unreachable: number;
  /** Judge calls made while the sidecar did not answer (under the local budget, or unguarded). */
  readonly degradedCalls: number;
  /** Judge calls skipped while the sidecar did not answer (a local cap, or `closed`). */
  readonly degradedSkips: number;
  /** The sidecar did not answer the last request. */
  readonly degraded: boolean;
  /**
   * Settlements the sidecar did not take within a few seconds, retried in the background until
   * it does (a restart): the calls were made, so their cost must reach the ledger.
   */
  readonly pendingSettlements: number;
}

/** How long a settlement is retried before the caller gets its verdict (and retries go on in the background). */
const SETTLE_PATIENCE_MS = 5_000;
/** How long a settlement is retried in the background: the sidecar's default reservation timeout. */
const SETTLE_GIVE_UP_MS = 600_000;

const POLICY: Record<NonNullable<ClientOptions["onUnreachable"]>, string> = {
  local: "judge calls are admitted against a local budget in this process",
  closed: "judge calls are skipped (LEDGER_UNAVAILABLE)",
  open: "judge calls run unguarded, without any budget",
};

const DEFAULT_TIMEOUT_MS = 2000;

const calls = (n: number): string => `${n} ${n === 1 ? "call" : "calls"}`;

/**
 * A guard reached over HTTP. Same verbs as the in-process guard: `run`, `call`, `assess`,
 * `admit`/`settle`, and the operator actions `session` and `resetSession`.
 */
export class GuardClient {
  readonly #o: ClientOptions;
  readonly #base: string;
  readonly #fetch: typeof fetch;
  readonly #policy: NonNullable<ClientOptions["onUnreachable"]>;
  readonly #local: LocalBudget;
  readonly #prices = new PriceTable(DEFAULT_PRICES);
  readonly #estimator = new CostEstimator(this.#prices);
  #degraded = false;
  readonly #unreadWarned = new Set<string>();
  readonly #stats = { unreachable: 0, degradedCalls: 0, degradedSkips: 0 };
  #pendingSettlements = 0;
  /** Calls admitted by {@link admit}, waiting for {@link settle}. */
  readonly #tickets = new Map<
    string,
    { readonly finish: (s: Settlement) => void; readonly done: Promise<Outcome<Settlement>> }
  >();

  constructor(options: ClientOptions) {
    try {
      new URL(options.url);
    } catch {
      // The whole URL, however long: it is what the operator must fix.
      throw new ConfigError(
        "url",
        `option url of GuardClient must be a valid URL, got ${JSON.stringify(options.url)}`,
      );
    }
    this.#o = options;
    this.#base = options.url.replace(/\/+$/, "");
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#policy = options.onUnreachable ?? "local";
    if (!(this.#policy in POLICY)) {
      throw ConfigError.option(
        "onUnreachable",
        '"local", "closed" or "open"',
        options.onUnreachable,
        "GuardClient",
      );
    }
    this.#local = new LocalBudget(options.localBudget);
  }

  /** Counters of what was done without the sidecar (a snapshot). */
  get stats(): ClientStats {
    return { ...this.#stats, degraded: this.#degraded, pendingSettlements: this.#pendingSettlements };
  }

  async run<T>(
    request: JudgeRequest,
    judge: () => Promise<T> | T,
    options: RunOptions<T> = {},
  ): Promise<Outcome<T>> {
    let admitted: AdmissionWire;
    try {
      // The sidecar answers within our patience rather than reserve for a client that left.
      const waitMs = Math.max(0, (this.#o.timeoutMs ?? DEFAULT_TIMEOUT_MS) - 500);
      admitted = await this.#post("/v1/admit", { ...requestToWire(request), wait_ms: waitMs });
    } catch (e) {
      if (!(e instanceof Unreachable)) throw e;
      return this.#unreachable(request, judge, options, e);
    }
    if (admitted.decision === "skip") return skippedFromWire(admitted);
    const id = admitted.reservation_id;
    let value: T;
    try {
      value = await judge();
    } catch (error) {
      await this.#settle(id, false, readUsage(error));
      throw error;
    }
    const reported = this.#usageOf(options)(value) ?? (options.knownUsage && { usage: options.knownUsage });
    if (reported?.usage === undefined && reported?.costUsd === undefined && hasUnreadUsage(value))
      this.#warnUnread(request.judge, request.model);
    const charged = await this.#settle(id, true, reported);
    return {
      status: "judged",
      value,
      costUsd: charged ?? 0,
      usage: reported?.usage ?? null,
      reservedUsd: admitted.reserved_usd ?? 0,
      shadowReason: admitted.shadow_reason ?? null,
    };
  }

  async call<T>(
    request: JudgeRequest,
    judge: () => Promise<T> | T,
    options: CallOptions<T> = {},
  ): Promise<T> {
    return outcomeValue(await this.run(request, judge, options), options);
  }

  /**
   * The first half of {@link run}, for a caller that makes one call for several keys (Phantom
   * main's reflection over a batch): admitted (then {@link settle} it) or skipped. It is `run`
   * held open at the judge, so the sidecar, its timeouts and the unreachable policy apply alike.
   */
  async admit(request: JudgeRequest): Promise<Ticket | SkippedOutcome> {
    let finish!: (s: Settlement) => void;
    const settled = new Promise<Settlement>((r) => {
      finish = r;
    });
    let admitted!: () => void;
    const called = new Promise<null>((r) => {
      admitted = () => r(null);
    });
    const done = this.run(
      request,
      async () => {
        admitted();
        const s = await settled;
        // The judge's own failure, as a judge throws it (run charges the cost it carries): not
        // a guard error, so no code of ours.
        if (!s.ok) throw Object.assign(new Error("the call failed"), { usage: s.usage, costUsd: s.costUsd });
        return s;
      },
      {
        usageOf: (s) => ({
          ...(s.usage && { usage: s.usage }),
          ...(s.costUsd !== undefined && { costUsd: s.costUsd }),
          ...(s.model && { model: s.model }),
        }),
      },
    );
    const first = await Promise.race([called, done]);
    if (first !== null) return first as SkippedOutcome;
    const reservationId = globalThis.crypto.randomUUID();
    this.#tickets.set(reservationId, { finish, done });
    return { status: "admitted", reservationId, reservedUsd: 0, shadowReason: null };
  }

  /** The second half: what the admitted call really cost (`ok: false` for a call that failed). */
  async settle(reservationId: string, result: Settlement): Promise<{ costUsd: number }> {
    const t = this.#tickets.get(reservationId);
    if (t === undefined) {
      throw new InvalidRequestError(
        "reservation_id",
        `no open reservation ${JSON.stringify(reservationId)} in this client: it was settled already, or never admitted here`,
      );
    }
    this.#tickets.delete(reservationId);
    t.finish(result);
    const out = await t.done.catch(() => undefined);
    return { costUsd: out?.status === "judged" ? out.costUsd : (result.costUsd ?? 0) };
  }

  /** Is the session stuck? When the sidecar does not answer, the cycle runs (and is guarded per call). */
  async assess(session: SessionRef, options: AssessOptions = {}): Promise<Assessment> {
    try {
      const r = await this.#post<AssessmentWire>("/v1/assess", {
        ...requestToWire(session),
        judges: judgesToWire(options),
      });
      return assessmentFromWire(r);
    } catch (e) {
      if (!(e instanceof Unreachable)) throw e;
      // Not stuck, as far as anyone can tell: the cycle runs, and learning goes on.
      return { stuck: false, skip: false, episodeId: null, fingerprint: null, repeats: 0 };
    }
  }

  /**
   * Operator action: a key's state in the sidecar's ledger (stuck or not, its spend and calls in
   * the window, its caps), as `guard.session(key)` reports it. Throws `SidecarUnreachableError`
   * when the sidecar does not answer: an operator asked, and no local answer would be true.
   */
  async session(sessionKey: string): Promise<SessionState> {
    return sessionStateFromWire(await this.#operator<SessionStateWire>("GET", sessionPath(sessionKey)));
  }

  /**
   * Operator action: ends the key's stuck episode in the sidecar, as `guard.resetSession(key)`
   * does (the replies so far stop counting; judging resumes), and answers the key's state after.
   */
  async resetSession(sessionKey: string): Promise<SessionState> {
    const r = await this.#operator<{ reset: boolean; session: SessionStateWire }>(
      "POST",
      `${sessionPath(sessionKey)}/reset`,
      {},
    );
    return sessionStateFromWire(r.session);
  }

  async #operator<R>(method: "GET" | "POST", path: string, body?: unknown): Promise<R> {
    try {
      return await this.#request<R>(method, path, body);
    } catch (e) {
      if (e instanceof Unreachable) throw new SidecarUnreachableError(this.#base, e.message);
      throw e;
    }
  }

  /**
   * Reports what an admitted call cost. The call was made: its cost must reach the ledger even
   * when the sidecar is restarting (a restarted sidecar takes settlements of the calls its
   * predecessor admitted). Retried for a few seconds while the caller waits, then in the
   * background; the caller gets the judge's own cost meanwhile, or null when it reported none.
   */
  async #settle(id: string, ok: boolean, reported: ReportedCost | undefined): Promise<number | null> {
    const patience = performance.now() + SETTLE_PATIENCE_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#settleOnce(id, ok, reported);
      } catch (e) {
        if (!(e instanceof Unreachable)) {
          this.#o.onError?.(e as Error);
          return null;
        }
        if (performance.now() >= patience) {
          this.#settleLater(id, ok, reported);
          return reported?.costUsd ?? null;
        }
        await sleep(Math.min(1000, 100 * 2 ** (attempt - 1)));
      }
    }
  }

  #settleLater(id: string, ok: boolean, reported: ReportedCost | undefined): void {
    this.#pendingSettlements++;
    const giveUp = performance.now() + SETTLE_GIVE_UP_MS;
    const retry = () => {
      this.#settleOnce(id, ok, reported).then(
        () => this.#pendingSettlements--,
        (e: unknown) => {
          if (e instanceof Unreachable && performance.now() < giveUp) {
            setTimeout(retry, 2000).unref();
            return;
          }
          // Given up: the sidecar charges the reservation's estimate when it times out.
          this.#pendingSettlements--;
          this.#o.onError?.(e as Error);
        },
      );
    };
    setTimeout(retry, 1000).unref();
  }

  async #settleOnce(id: string, ok: boolean, reported: ReportedCost | undefined): Promise<number> {
    const r = await this.#post<{ charged_usd: number }>("/v1/settle", settlementToWire(id, ok, reported));
    return r.charged_usd;
  }

  /** A result whose usage the guard cannot read is charged its estimate: said once per judge kind and model. */
  #warnUnread(judge: string, model: string): void {
    const key = `${judge}\u0000${model}`;
    if (this.#unreadWarned.has(key) || this.#unreadWarned.size >= 1000) return;
    this.#unreadWarned.add(key);
    console.error(
      `judge-guard client: the result of judge ${printable(judge)} (${printable(model)}) has a usage object in a shape the guard does not read: charged its estimate; give usageOf`,
    );
  }

  /** How a judge's result tells its cost: the call's option, the client's, or the guard's default reading. */
  #usageOf<T>(options: RunOptions<T>): (result: T) => ReportedCost | undefined {
    return options.usageOf ?? this.#o.usageOf ?? readUsage;
  }

  /** A judge call the sidecar could not admit: the `onUnreachable` policy decides. */
  async #unreachable<T>(
    request: JudgeRequest,
    judge: () => Promise<T> | T,
    options: RunOptions<T>,
    e: Error,
  ): Promise<Outcome<T>> {
    if (this.#policy === "open") {
      this.#stats.degradedCalls++;
      const value = await judge();
      return {
        status: "judged",
        value,
        costUsd: 0,
        usage: this.#usageOf(options)(value)?.usage ?? null,
        reservedUsd: 0,
        shadowReason: null,
      };
    }
    if (this.#policy === "closed") {
      this.#stats.degradedSkips++;
      const details: SkipDetails = {
        sessionKey: request.sessionKey ?? "",
        judge: request.judge,
        model: request.model,
        savedUsd: 0,
      };
      return {
        status: "skipped",
        reason: "ledger_error",
        code: "LEDGER_UNAVAILABLE",
        error: skipError("LEDGER_UNAVAILABLE", details, e),
        savedUsd: 0,
      };
    }
    return this.#runLocally(request, judge, options, e);
  }

  /** `onUnreachable: "local"`: the call is admitted against this process's budget, and charged to it. */
  async #runLocally<T>(
    request: JudgeRequest,
    judge: () => Promise<T> | T,
    options: RunOptions<T>,
    e: Error,
  ): Promise<Outcome<T>> {
    const req = normalizeRequest(request);
    // As the sidecar would have refused it (with the guard's default limit and estimate).
    checkTranscriptSize(request, req, {
      maxTokens: DEFAULT_MAX_TRANSCRIPT_TOKENS,
      charsPerToken: DEFAULT_ESTIMATOR.charsPerToken,
    });
    let chars = 0;
    for (const m of req.userMessages) chars += m.length;
    for (const m of req.assistantMessages) chars += m.length;
    const estimate = this.#estimator.estimate(req.judge, req.model, chars, req.maxTokens).expectedMicros;
    const refusal = this.#local.admit(req.sessionKey);
    if (refusal !== null) {
      this.#stats.degradedSkips++;
      const code = SKIP_CODES[refusal.reason];
      const calls = refusal.reason === "session_calls";
      const details: SkipDetails = {
        sessionKey: req.sessionKey,
        judge: req.judge,
        model: req.model,
        savedUsd: toUsd(estimate),
        used: calls ? refusal.used : toUsd(refusal.used),
        cap: calls ? refusal.cap : toUsd(refusal.cap),
      };
      return {
        status: "skipped",
        reason: refusal.reason,
        code,
        error: skipError(code, details, e),
        savedUsd: toUsd(estimate),
      };
    }
    this.#stats.degradedCalls++;
    let value: T;
    try {
      value = await judge();
    } catch (error) {
      this.#local.end(req.sessionKey, this.#costMicros(req.model, readUsage(error), null), false);
      throw error;
    }
    const reported = this.#usageOf(options)(value) ?? (options.knownUsage && { usage: options.knownUsage });
    const micros = this.#costMicros(req.model, reported, estimate);
    this.#local.end(req.sessionKey, micros, true);
    return {
      status: "judged",
      value,
      costUsd: toUsd(micros),
      usage: reported?.usage ?? null,
      reservedUsd: 0,
      shadowReason: null,
    };
  }

  /**
   * What a call cost, as the guard reads it: a reported cost in USD, else its tokens at the
   * built-in prices (of the model that really ran), else `fallback` (the estimate; 0 for a
   * failed call).
   */
  #costMicros(model: string, reported: ReportedCost | undefined, fallback: number | null): number {
    const cost = reported?.costUsd;
    const computed = reported?.usage
      ? this.#prices.costMicros(reported.model ?? model, reported.usage)
      : null;
    // A zero beside tokens that cost something is a placeholder, not a free call.
    if (typeof cost === "number" && Number.isFinite(cost) && cost >= 0 && (cost > 0 || computed === null))
      return toMicros(cost);
    return computed ?? fallback ?? 0;
  }

  /** A request the sidecar did not answer: counted, told, and the outage logged once. */
  #down(e: Unreachable): void {
    this.#stats.unreachable++;
    if (!this.#degraded) {
      this.#degraded = true;
      const c = this.#local.caps;
      const caps =
        this.#policy === "local"
          ? ` (per session key $${c.sessionUsd} and ${calls(c.sessionCalls)}, $${c.dailyUsd} for all keys, per 24 h)`
          : "";
      console.error(
        `judge-guard client: the sidecar at ${this.#base} does not answer (${e.message}); onUnreachable "${this.#policy}": ${POLICY[this.#policy]}${caps} until it answers again`,
      );
    }
    this.#o.onError?.(e);
  }

  /** The sidecar answered: after an outage, say so once. */
  #up(): void {
    if (!this.#degraded) return;
    this.#degraded = false;
    const s = this.#stats;
    console.error(
      `judge-guard client: the sidecar at ${this.#base} answers again: judge calls are guarded by it again (${calls(s.degradedCalls)} made and ${s.degradedSkips} skipped without it so far)`,
    );
  }

  async #post<R>(path: string, body: unknown): Promise<R> {
    return this.#request<R>("POST", path, body);
  }

  async #request<R>(method: "GET" | "POST", path: string, body?: unknown): Promise<R> {
    try {
      const r = await this.#send<R>(method, path, body);
      this.#up();
      return r;
    } catch (e) {
      if (e instanceof Unreachable) this.#down(e);
      else this.#up(); // it answered: the request was wrong
      throw e;
    }
  }

  async #send<R>(method: "GET" | "POST", path: string, body: unknown): Promise<R> {
    let res: Response;
    try {
      res = await this.#fetch(`${this.#base}${path}`, {
        method,
        headers: {
          ...(method === "POST" && { "content-type": "application/json" }),
          ...(this.#o.token && { authorization: `Bearer ${this.#o.token}` }),
        },
        ...(method === "POST" && { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.#o.timeoutMs ?? DEFAULT_TIMEOUT_MS),
      });
    } catch (e) {
      throw new Unreachable(`the sidecar at ${this.#base} did not answer (${(e as Error).message})`);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw new Unreachable(
        `the sidecar at ${this.#base} did not finish its answer (${(e as Error).message})`,
      );
    }
    if (res.status >= 500) throw new Unreachable(`the sidecar at ${this.#base} answered HTTP ${res.status}`);
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new Unreachable(
        `the sidecar at ${this.#base} answered something that is not JSON (HTTP ${res.status})`,
      );
    }
    if (!res.ok) {
      const err = (data as { error?: { code?: string; message?: string; field?: string } }).error;
      const what = `${err?.message ?? `HTTP ${res.status}`}${err?.code ? ` (${err.code})` : ""}`;
      // A malformed request is the caller's mistake, as with the in-process guard.
      if (res.status === 400 && err?.field) throw new InvalidRequestError(err.field, what);
      // A sidecar that will not serve us (token, size, route) is handled like one that is down,
      // with what to fix in the message.
      const fix =
        res.status === 401 || res.status === 403
          ? ": give createClient({ token }) the sidecar's JUDGE_GUARD_TOKEN"
          : res.status === 404
            ? ": is the url that of a judge-guard sidecar (judge-guard serve) of the same version?"
            : "";
      throw new Unreachable(`the sidecar at ${this.#base} refused ${path}: ${what}${fix}`);
    }
    return data as R;
  }
}

/** A session key as the sidecar's `/v1/sessions/:key` route takes it. */
function sessionPath(sessionKey: string): string {
  if (typeof sessionKey !== "string" || sessionKey === "" || sessionKey.length > LIMITS.label) {
    throw new InvalidRequestError(
      "sessionKey",
      `sessionKey must be a string of 1 to ${LIMITS.label} characters, got ${typeof sessionKey === "string" ? `${sessionKey.length} characters` : typeof sessionKey}`,
    );
  }
  // The sidecar matches paths exactly as sent and refuses dot segments and encoded slashes.
  if (/[/\\]/.test(sessionKey) || sessionKey === "." || sessionKey === "..") {
    throw new InvalidRequestError(
      "sessionKey",
      "a session key containing / or \\ (or one that is . or ..) cannot be named in the sidecar's /v1/sessions/:key: read it with judge-guard explain KEY, or reset it through the library on the ledger",
    );
  }
  return `/v1/sessions/${encodeURIComponent(sessionKey)}`;
}

export function createClient(options: ClientOptions): GuardClient {
  return new GuardClient(options);
}
