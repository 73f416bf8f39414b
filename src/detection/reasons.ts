import type { Reason } from "./evidence.js";

/** What each reason code means, for people (`judge-guard explain`). */
export const REASON_TEXT: Readonly<Record<Reason, string>> = {
  new: "new reply, unlike the recent ones",
  new_short: "new reply, too short to weigh",
  new_related: "new reply, says much the same as a recent one (a paraphrase)",
  real_answer: "new reply, long or paid for: a real answer",
  known_canned: "a known canned line (registered by an episode, or a canned pattern)",
  same_question: "the same answer to the same question",
  too_short: "repeat too short to count (an acknowledgement)",
  closer: "a closer after thanks",
  repeat: "repeats an earlier reply to a different message",
  changed_numbers: "repeats an earlier reply with other numbers",
  many_numbers: "3 or more numbers changed: data, not a counter",
  quoted_input: "repeats an earlier reply once its quote of the user's message is set aside",
  user_words: "differs only in the user's own words: filled in from the request",
  paid: "the runtime reported cost or tools: real work",
  sdk_session: "ran in an SDK session",
  reads_blocked: "reads as an error, a wait or a limit",
  free_bounce: "no cost and no SDK session: a runtime bounce",
};
