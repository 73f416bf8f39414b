export * from "./adapters/index.js";
export { admit, type BudgetCaps, type BudgetSnapshot, type Refusal } from "./budget/admission.js";
export { CostEstimator } from "./budget/estimator.js";
export { fromEnv } from "./config/env.js";
export {
  checkVariableNames,
  DOCUMENTED_VARIABLES,
  ENV_VARIABLES,
  KNOWN_VARIABLES,
  OTHER_VARIABLES,
  SERVE_VARIABLES,
  SIGNAL_VARIABLES,
  type Variable,
} from "./config/variables.js";
export {
  CannedCatalog,
  compilePatterns,
  PHANTOM_CANNED_PATTERNS,
  RUNTIME_CANNED_PATTERNS,
} from "./detection/catalog.js";
export type { StuckVerdict } from "./detection/episodes.js";
export {
  type Comparison,
  type DetectionThresholds,
  type MatchKind,
  type Reason,
  type StuckEvidence,
  type Weighing,
  type Work,
  weigh,
} from "./detection/evidence.js";
export {
  type Observation,
  type ReplyFacts,
  SessionTracker,
  type StuckAssessment,
} from "./detection/tracker.js";
export type { EvidenceStep } from "./detection/window.js";
export * from "./errors.js";
export { fingerprint, type ReplySignature, signReply } from "./fingerprint/fingerprint.js";
export { normalize, normalizeLine } from "./fingerprint/normalize.js";
export { DEFAULT_SIMILARITY, type SimilarityLimits, sameReply } from "./fingerprint/similarity.js";
export {
  type Assessment,
  type AssessOptions,
  createGuard,
  Guard,
  type GuardStats,
  type SessionState,
  type Settlement,
  type Ticket,
} from "./guard/guard.js";
export { parseDuration } from "./guard/option-kinds.js";
export {
  type Clock,
  DEFAULTS,
  type GuardMode,
  type GuardOptions,
  type OnLedgerError,
} from "./guard/options.js";
export type {
  CallOptions,
  JudgedOutcome,
  Outcome,
  ReusedOutcome,
  RunOptions,
  SkippedOutcome,
} from "./guard/outcome.js";
export {
  DEFAULT_MAX_TRANSCRIPT_TOKENS,
  type JudgeRequest,
  type PhantomSessionData,
  type PhantomSessionSummary,
} from "./guard/request.js";
export {
  DEFAULT_PRICES,
  LARGEST_CONTEXT_TOKENS,
  type LongContextPrice,
  loadPriceFile,
  type ModelPrice,
  PriceTable,
  type Usage,
} from "./pricing/prices.js";
export { type ReportedCost, readUsage } from "./pricing/usage.js";
export { type ReplayDecision, type ReplaySummary, replay } from "./replay/replay.js";
export { type PhantomSqliteOptions, phantomSqliteSink } from "./signals/phantom-sqlite.js";
export {
  type BudgetAlertEvent,
  callbackSink,
  type DeliveryReport,
  type GuardEvent,
  type SignalSink,
  type StuckSessionEvent,
} from "./signals/types.js";
export {
  IDEMPOTENCY_HEADER,
  SIGNATURE_HEADER,
  sign,
  type VerifyOptions,
  type VerifyResult,
  verifyWebhook,
  type WebhookOptions,
  webhookSink,
} from "./signals/webhook.js";
export { MemoryStore } from "./store/memory.js";
export { DatabaseClock, PostgresStore, type PostgresStoreOptions } from "./store/postgres.js";
export { PostgresReader } from "./store/postgres-reader.js";
export { SqliteStore, type SqliteStoreOptions } from "./store/sqlite.js";
export type {
  BudgetLedger,
  DecisionRecord,
  EpisodeLedger,
  EstimateStats,
  LedgerBase,
  LedgerCheck,
  LedgerStore,
  ReservationLedger,
  ScopeUsage,
  SignalClaim,
  SignalLedger,
  SkipReason,
} from "./store/types.js";
