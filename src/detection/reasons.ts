import type { Reason } from "./evidence.js";

/** What each reason code means, for people (`judge-guard explain`). */
export const REASON_TEXT: Readonly<Record<Reason, string>> = {
  new: "new reply, unlike the recent ones",
  new_short: "new reply, too short to weigh",
  new_related: "new reply, says much the same as a recent one (a paraphrase)",
  real_answer: "new reply, long or paid for: a real answer",
  known_canned: "a known canned line (registered by an episode, or a canned pattern)",
  same_question: "the same answer to the same question",
  same_topic: "both messages ask about one thing, and the reply answers about it",
  on_topic: "the reply names what was asked: an answer that repeats, not a line that ignores the question",
  answered_again: "the same question answered again as before: an answer",
  too_short: "repeat too short to count (an acknowledgement)",
  closer: "a closer after thanks",
  repeat: "repeats an earlier reply to a different message",
  changed_numbers: "repeats an earlier reply with other numbers",
  many_numbers: "many numbers changed, a good part of the reply: data, not a counter",
  quoted_input: "repeats an earlier reply once its quote of the user's message is set aside",
  user_words: "differs only in the user's own words: filled in from the request",
  paid: "the runtime reported cost or tools: real work",
  sdk_session: "ran in an SDK session",
  reads_blocked: "reads as an error, a wait or a limit",
  new_blocked: "new reply that reads as an error, a wait, a limit or a refusal: no sign of an answer",
  monologue: "said again with no new message from the user: no request to fill a template in for",
  free_bounce: "no cost and no SDK session: a runtime bounce",
};
